#pragma once
// One DPDK ethdev port (a PMD: net_tap, net_af_packet, virtio_user, memif, a real NIC) as a
// Device: one or more RX/TX queue pairs, one mempool, mbufs handed to the stack as Packets
// without a copy. Needs a live Eal (dev/dpdk/eal.h). This header needs no DPDK include.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/stats.h"
#include "dev/device.h"

struct rte_eth_dev_info;
struct rte_mempool;
struct rte_mbuf;
struct rte_pcapng;

namespace ustack::dev {

struct DpdkPortConfig {
  /// The ethdev port; default: the first one there is (the --vdev, or the first allowed NIC).
  std::optional<uint16_t> port_id;
  /// RX/TX queue pairs (one engine each); at most what the PMD has (net_af_packet: its qpairs=N).
  /// With more than one and a PMD with RSS, the port hashes flows to queues under
  /// kSymmetricRssKey (base/flow_hash.h).
  uint16_t queues = 1;
  /// Descriptors per ring with one queue; several queues split them, kMinQueueDescriptors at
  /// least each. Adjusted to what the PMD accepts.
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  /// Mbufs in the port's pool with one queue (2^n - 1 is the efficient size); each further queue
  /// adds its rings and an lcore cache (pool_size in dpdk_port.cc).
  uint32_t mempool_size = 8191;
  uint32_t mempool_cache = 256;    ///< per-lcore cache
  /// Bytes of one mbuf's data room, headroom included (RTE_MBUF_DEFAULT_BUF_SIZE). Frames must fit
  /// in one mbuf: no scatter is configured.
  uint16_t data_room = 2048 + 128;
  /// The MTU to set; 0 leaves the device's own (1500 for most PMDs).
  uint16_t mtu = 0;
  /// Write every frame received and transmitted to this pcapng file; empty: no capture. Only
  /// with one queue (the capture file would be written from several threads).
  std::string pcap_path;
  /// Queue 0's counters (rx/tx frames and bytes, drops); may be null. Must outlive the port.
  DevStats* stats = nullptr;
  /// Try RX interrupts so that wait_rx() sleeps until a frame arrives; without them (or when the
  /// PMD has none) wait_rx() just sleeps.
  bool rx_interrupts = true;
  /// How long open() waits for the link to come up (it does not fail when it stays down).
  std::chrono::milliseconds link_wait{1000};
};

/// Fewest descriptors a queue's ring gets when several queues split DpdkPortConfig's.
inline constexpr uint16_t kMinQueueDescriptors = 256;

/// A DPDK port as a Device for its queue 0; own it by unique_ptr. queue_device() gives the other
/// queues. Each queue (the port itself or a view) is used from one thread at a time (its
/// engine's); different queues may run on different threads at once. Packets may be destroyed
/// on any thread. A Packet from one DpdkPort may be sent on another, or on another queue, without
/// a copy (an mbuf knows its pool).
class DpdkPort final : public Device {
 public:
  /// Creates the mempool, configures config.queues RX/TX queue pairs (with RSS when there are
  /// several and the PMD has it) and whatever checksum offloads the PMD has, starts the port and
  /// waits briefly for link up. Errors name the failing DPDK call, or the PMD's queue limits.
  static Result<std::unique_ptr<DpdkPort>, std::string> open(const DpdkPortConfig& config);

  /// close(), then frees the mempools. No Packet from this port should be alive by then; if some
  /// are, the mbuf pool is leaked (with a warning) so that they stay valid until the Eal goes.
  /// Views from queue_device() must be destroyed before.
  ~DpdkPort() override;
  DpdkPort(const DpdkPort&) = delete;
  DpdkPort& operator=(const DpdkPort&) = delete;

  const DeviceCaps& caps() const override { return caps_; }
  /// Up to out.size() frames (in bursts of 32). Multi-segment mbufs are dropped and counted.
  size_t rx_burst(std::span<Packet> out) override;
  /// Queues the packets on TX queue 0 (a view: on its own queue); heap packets (not from
  /// alloc_tx/rx_burst of this port) are copied into an mbuf first. A refused burst is retried 3
  /// times, then the rest is freed and counted in DevStats::tx_dropped_queue_full. Offloads the
  /// device lacks are done in software.
  size_t tx_burst(std::span<Packet> pkts) override;
  /// A fresh mbuf with RTE_PKTMBUF_HEADROOM of headroom, or an empty Packet (pool exhausted,
  /// counted in DevStats::tx_alloc_failed).
  Packet alloc_tx() override;
  /// With RX interrupts: arms the queue's interrupt and sleeps on its epoll set until a frame
  /// arrives or `max` passes. Call it only after rx_burst() returned fewer frames than asked for
  /// (the queue is drained: the interrupt is edge-triggered). May return early. Without RX
  /// interrupts: sleeps for `max`. Either way through sleep_interruptibly(), and returns true
  /// when a signal handler ran meanwhile.
  bool wait_rx(Duration max) override;
  bool wakes_on_rx() const override;
  void attach_stats(DevStats* stats) override;
  /// Queue 0's doorbell (a view has its own).
  void set_doorbell(int fd) override;
  /// Registers the calling thread as an lcore unless it is one (rte_thread_register), so that
  /// the mbuf pool keeps a per-thread cache for it; unregisters it when it stops.
  void engine_thread_started() override;
  void engine_thread_stopping() override;
  /// True when the shared pool runs low (under a quarter free), whichever queue took the mbufs.
  bool buffers_scarce() const override;
  std::string name() const override { return name_; }
  static constexpr uint8_t kPoolQuestionsPerLook = 16;

  /// Queue `queue` (1 .. queues() - 1; 0 gives a second handle on the port's own) as a Device:
  /// its own RX interrupt and counters (attach_stats), the port's caps and pool. Borrows the
  /// port: destroy every view before the port, and before close(). Null when out of range.
  std::unique_ptr<Device> queue_device(uint16_t queue);

  /// Stops and closes the port (the PMD gives back the mbufs it holds), closes the capture, and
  /// returns how many mbufs of the port's pool are still in use: those are held by live Packets,
  /// leaks if the caller thinks it has freed everything. Idempotent; rx/tx afterwards do nothing.
  /// Not while views from queue_device() exist: they may be polling on other threads.
  size_t close();

  uint16_t port_id() const { return port_id_; }
  uint16_t queues() const { return static_cast<uint16_t>(queues_.size()); }
  /// True when the port spreads flows over its queues by RSS under kSymmetricRssKey: both
  /// directions of a flow land on one queue. False with one queue, without RSS, with the PMD's
  /// own key, and on net_tap (which takes an RSS configuration and ignores it).
  bool symmetric_rss() const { return symmetric_rss_; }
  /// Mbufs of the port's pool not in the pool: held by Packets, by the PMD's rings, in flight.
  size_t mbufs_in_use() const;
  /// Frames dropped, on all queues, because they came in several segments (also counted in each
  /// queue's DevStats::rx_dropped_multisegment).
  uint64_t rx_dropped_multiseg() const;
  /// Frames not written to the capture (no copy buffer, or the write failed).
  uint64_t pcap_dropped() const { return pcap_dropped_; }

 private:
  struct Queue;  // one RX/TX queue pair's state, touched only by the thread polling it
  class QueueDevice;
  /// Gives mbufs wrapped as Packets back to their mempool.
  class MbufBridge final : public PacketPool {
   public:
    void release(void* handle) override;
    bool add_ref(void* handle) override;
    bool shared(void* handle) const override;
  };

  DpdkPort();
  static MbufBridge& bridge();
  std::optional<std::string> setup(const DpdkPortConfig& config);
  std::optional<std::string> configure(const DpdkPortConfig& config, const rte_eth_dev_info& info, uint16_t mtu);
  bool set_redirection_table(const rte_eth_dev_info& info);
  void enable_rx_interrupts(Queue& q);
  void disable_rx_interrupts(Queue& q);
  Packet wrap(rte_mbuf* m);
  rte_mbuf* to_mbuf(Queue& q, Packet& p);
  size_t rx_burst(Queue& q, std::span<Packet> out);
  size_t tx_burst(Queue& q, std::span<Packet> pkts);
  Packet alloc_tx(Queue& q);
  bool buffers_scarce(Queue& q) const;
  /// False while `q` must not be polled yet (polls_only_once_linked): it looks at the link every
  /// kBurstsPerLinkLook-th burst until it is up.
  bool link_ready(Queue& q);
  static constexpr uint8_t kBurstsPerLinkLook = 64;
  bool wait_rx(Queue& q, Duration max);
  void capture(Queue& q, rte_mbuf* const* mbufs, uint16_t n, bool outbound);
  void prime_pcapng_clock();

  uint16_t port_id_ = 0;
  std::string name_;
  DeviceCaps caps_;
  std::vector<std::unique_ptr<Queue>> queues_;  // [0] is this Device's own
  bool symmetric_rss_ = false;
  rte_mempool* pool_ = nullptr;
  rte_mempool* pcap_pool_ = nullptr;
  rte_pcapng* pcap_ = nullptr;
  bool configured_ = false;  // rte_eth_dev_configure succeeded: close() must close the port
  bool started_ = false;
  bool closed_ = false;
  bool rx_interrupts_ = false;  // configured with intr_conf.rxq: each queue tries its own
  bool rx_checksum_ = false;    // RX checksum offload enabled: read ol_flags
  uint64_t tx_offloads_ = 0;    // RTE_ETH_TX_OFFLOAD_* enabled
  // Live QueueDevices, to catch a close() under them; shared so that a view destroyed after the
  // port (a vector of queues destroyed front to back) touches nothing freed.
  std::shared_ptr<std::atomic<int>> live_views_ = std::make_shared<std::atomic<int>>(0);
  uint64_t pcap_dropped_ = 0;
  uint64_t pcap_written_ = 0;
};

}  // namespace ustack::dev
