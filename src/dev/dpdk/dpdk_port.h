#pragma once
// One DPDK ethdev port (a PMD: net_tap, net_af_packet, virtio_user, memif, a real NIC) as a
// Device: one RX/TX queue pair, one mempool, mbufs handed to the stack as Packets without a copy.
// Needs a live Eal (dev/dpdk/eal.h). This header needs no DPDK include.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/stats.h"
#include "dev/device.h"

struct rte_mempool;
struct rte_mbuf;
struct rte_pcapng;

namespace ustack::dev {

struct DpdkPortConfig {
  /// The ethdev port; default: the first one there is (the --vdev, or the first allowed NIC).
  std::optional<uint16_t> port_id;
  uint16_t rx_descriptors = 1024;  ///< adjusted to what the PMD accepts
  uint16_t tx_descriptors = 1024;
  uint32_t mempool_size = 8191;    ///< mbufs in the port's pool (2^n - 1 is the efficient size)
  uint32_t mempool_cache = 256;    ///< per-lcore cache
  /// Bytes of one mbuf's data room, headroom included (RTE_MBUF_DEFAULT_BUF_SIZE). Frames must fit
  /// in one mbuf: no scatter is configured.
  uint16_t data_room = 2048 + 128;
  /// The MTU to set; 0 leaves the device's own (1500 for most PMDs).
  uint16_t mtu = 0;
  /// Write every frame received and transmitted to this pcapng file; empty: no capture.
  std::string pcap_path;
  /// Counters to update (rx/tx frames and bytes, drops); may be null. Must outlive the port.
  DevStats* stats = nullptr;
  /// Try RX interrupts so that wait_rx() sleeps until a frame arrives; without them (or when the
  /// PMD has none) wait_rx() just sleeps.
  bool rx_interrupts = true;
  /// How long open() waits for the link to come up (it does not fail when it stays down).
  std::chrono::milliseconds link_wait{1000};
};

/// A DPDK port as a Device; own it by unique_ptr. Used from one thread at a time (the engine's);
/// its Packets may be destroyed on any thread. A Packet from one DpdkPort may be sent on another
/// without a copy (an mbuf knows its pool).
class DpdkPort final : public Device {
 public:
  /// Creates the mempool, configures one RX/TX queue pair with whatever checksum offloads the
  /// PMD has, starts the port and waits briefly for link up. Errors name the failing DPDK call.
  static Result<std::unique_ptr<DpdkPort>, std::string> open(const DpdkPortConfig& config);

  /// close(), then frees the mempools. No Packet from this port should be alive by then; if some
  /// are, the mbuf pool is leaked (with a warning) so that they stay valid until the Eal goes.
  ~DpdkPort() override;
  DpdkPort(const DpdkPort&) = delete;
  DpdkPort& operator=(const DpdkPort&) = delete;

  const DeviceCaps& caps() const override { return caps_; }
  /// Up to out.size() frames (in bursts of 32). Multi-segment mbufs are dropped and counted.
  size_t rx_burst(std::span<Packet> out) override;
  /// Queues the packets on TX queue 0; heap packets (not from alloc_tx/rx_burst of this port) are
  /// copied into an mbuf first. A refused burst is retried 3 times, then the rest is freed and
  /// counted in DevStats::tx_dropped_queue_full. Offloads the device lacks are done in software.
  size_t tx_burst(std::span<Packet> pkts) override;
  /// A fresh mbuf with RTE_PKTMBUF_HEADROOM of headroom, or an empty Packet (pool exhausted,
  /// counted in DevStats::tx_alloc_failed).
  Packet alloc_tx() override;
  /// With RX interrupts: arms queue 0's interrupt and sleeps on its epoll set until a frame
  /// arrives or `max` passes. Call it only after rx_burst() returned fewer frames than asked for
  /// (the queue is drained: the interrupt is edge-triggered). May return early. Without RX
  /// interrupts: sleeps for `max`. Either way through sleep_interruptibly(), and returns true
  /// when a signal handler ran meanwhile.
  bool wait_rx(Duration max) override;
  bool wakes_on_rx() const override { return rx_intr_; }
  void attach_stats(DevStats* stats) override { stats_ = stats; }
  bool buffers_scarce() const override;
  std::string name() const override { return name_; }

  /// Stops and closes the port (the PMD gives back the mbufs it holds), closes the capture, and
  /// returns how many mbufs of the port's pool are still in use: those are held by live Packets,
  /// leaks if the caller thinks it has freed everything. Idempotent; rx/tx afterwards do nothing.
  size_t close();

  uint16_t port_id() const { return port_id_; }
  /// Mbufs of the port's pool not in the pool: held by Packets, by the PMD's rings, in flight.
  size_t mbufs_in_use() const;
  /// Frames dropped because they came in several segments (DevStats has no counter for it yet).
  uint64_t rx_dropped_multiseg() const { return rx_dropped_multiseg_; }
  /// Frames not written to the capture (no copy buffer, or the write failed).
  uint64_t pcap_dropped() const { return pcap_dropped_; }

 private:
  /// Gives mbufs wrapped as Packets back to their mempool.
  class MbufBridge final : public PacketPool {
   public:
    void release(void* handle) override;
    bool add_ref(void* handle) override;
    bool shared(void* handle) const override;
  };

  DpdkPort() = default;
  static MbufBridge& bridge();
  std::optional<std::string> setup(const DpdkPortConfig& config);
  Packet wrap(rte_mbuf* m);
  rte_mbuf* to_mbuf(Packet& p);
  void capture(rte_mbuf* const* mbufs, uint16_t n, bool outbound);
  void prime_pcapng_clock();

  uint16_t port_id_ = 0;
  std::string name_;
  DeviceCaps caps_;
  DevStats* stats_ = nullptr;
  rte_mempool* pool_ = nullptr;
  rte_mempool* pcap_pool_ = nullptr;
  rte_pcapng* pcap_ = nullptr;
  bool configured_ = false;  // rte_eth_dev_configure succeeded: close() must close the port
  bool started_ = false;
  bool closed_ = false;
  bool rx_intr_ = false;     // queue 0's interrupt is in epfd_
  int epfd_ = -1;
  bool rx_checksum_ = false;  // RX checksum offload enabled: read ol_flags
  uint64_t tx_offloads_ = 0;  // RTE_ETH_TX_OFFLOAD_* enabled
  uint64_t rx_dropped_multiseg_ = 0;
  uint64_t pcap_dropped_ = 0;
  uint64_t pcap_written_ = 0;
};

}  // namespace ustack::dev
