#include "dev/dpdk/dpdk_port.h"

#include <fcntl.h>
#include <rte_cycles.h>
#include <rte_epoll.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pcapng.h>
#include <rte_version.h>
#include <sys/epoll.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstring>
#include <numeric>
#include <string_view>
#include <thread>

#include "base/flow_hash.h"

// `--log-level=ustack.dpdk:debug` turns this one up or down.
RTE_LOG_REGISTER(ustack_dpdk_logtype, ustack.dpdk, NOTICE);

namespace ustack::dev {
namespace {

static_assert(DpdkPortConfig{}.data_room == RTE_MBUF_DEFAULT_BUF_SIZE);

constexpr uint16_t kBurst = 32;
// rte_eth_tx_burst calls per burst before what the TX ring still refuses is dropped.
constexpr int kTxAttempts = 4;
// Mbufs for capture copies: at most one burst of copies is out at a time.
constexpr unsigned kPcapPoolSize = 127;

constexpr uint64_t kTxChecksumOffloads =
    RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM;

std::string dpdk_error(const char* call, int ret) {
  return std::string(call) + " failed: " + rte_strerror(ret < 0 ? -ret : ret);
}

// The checksum the device should have filled in, done here when it cannot (see TxOffload: the
// stack left the IPv4 checksum zero and put the pseudo-header sum in the L4 checksum field).
void software_checksums(rte_mbuf* m, const TxOffload& ol, bool ip, bool l4) {
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  const uint32_t len = m->data_len;
  if (ol.l3_len < 20 || ol.l2_len + ol.l3_len > len) return;
  uint8_t* l3 = frame + ol.l2_len;
  if (ip) {
    l3[10] = l3[11] = 0;
    const uint16_t sum = static_cast<uint16_t>(~rte_raw_cksum(l3, ol.l3_len));
    std::memcpy(l3 + 10, &sum, 2);  // a one's-complement sum is stored in the order it was summed
  }
  if (l4) {
    const uint32_t total = (uint32_t{l3[2]} << 8) | l3[3];  // IPv4 total length: excludes padding
    if (total < ol.l3_len || ol.l2_len + total > len) return;
    const uint32_t l4_len = total - ol.l3_len;
    const uint32_t field = ol.udp_checksum ? 6 : 16;
    if (l4_len < field + 2) return;
    uint8_t* seg = l3 + ol.l3_len;
    uint16_t sum = static_cast<uint16_t>(~rte_raw_cksum(seg, l4_len));  // field holds the pseudo sum
    if (sum == 0 && ol.udp_checksum) sum = 0xffff;                      // RFC 768: 0 means "none"
    std::memcpy(seg + field, &sum, 2);
  }
}

// A checksum the device verified: GOOD, or NONE ("not correct in the data, but the integrity was
// verified", what virtio and vhost report for frames from the host whose checksum was never
// filled in; checking it again in software would wrongly fail).
bool verified(uint64_t flags, uint64_t mask, uint64_t good, uint64_t none) {
  const uint64_t v = flags & mask;
  return v == good || v == none;
}

// IPv4 flows as base/flow_hash.h hashes them: TCP and UDP by the 4-tuple, the rest (fragments,
// ICMP, other protocols) by the address pair. Where a PMD lists them apart (i40e), leaving out
// fragments and "other" would put those on queue 0 instead of their owner's.
constexpr uint64_t kRssFlowTypes = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_FRAG_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP |
                                   RTE_ETH_RSS_NONFRAG_IPV4_UDP | RTE_ETH_RSS_NONFRAG_IPV4_OTHER;

// net_tap lists RSS flow types and a 40-byte key, accepts mq_mode RSS and ignores it: its RSS is
// an rte_flow action (a BPF program in the kernel's tc, not set up here). The kernel's tun driver
// picks the queue of each frame it sends into the TAP (its own flow hash, or the queue that flow
// last came from).
bool ignores_rss_configuration(const rte_eth_dev_info& info) {
  return std::string_view(info.driver_name) == "net_tap";
}

// DPDK 22.11's net_memif computes a queue's ring address from its region before it checks that
// the link is connected. While its control thread connects, the region exists but is not mapped
// yet: a burst in that window reads a ring at a small offset from address 0 and crashes (seen
// with two queues, under load, about one start in 30). The connect sets the link up last, after
// the mapping, so a queue is not polled until the link has been seen up.
bool polls_only_once_linked(const rte_eth_dev_info& info) {
  return std::string_view(info.driver_name) == "net_memif";
}

// True when a table of `reta_size` entries filled by DpdkPort::set_redirection_table sends every
// hash where engine_for_hash does: always with 128 entries or a multiple; a smaller table only
// when its period agrees.
bool redirects_as_engine_for_hash(uint32_t reta_size, uint32_t queues) {
  if (reta_size == 0) return false;
  const uint32_t period = std::lcm(reta_size, kRedirectionEntries);
  for (uint32_t hash = 0; hash < period; ++hash) {
    if (engine_for_hash(hash % reta_size, queues) != engine_for_hash(hash, queues)) return false;
  }
  return true;
}

// Each queue's ring when several split DpdkPortConfig's descriptors: a ring still holds several
// bursts of 32 while its engine is busy elsewhere.
uint16_t queue_descriptors(uint16_t configured, uint16_t queues) {
  if (queues <= 1) return configured;
  return std::max<uint16_t>(configured / queues, std::min(configured, kMinQueueDescriptors));
}

// config.mempool_size is sized for one queue: its rings and an lcore cache, the rest in flight
// (socket buffers, retransmission queues). Each further queue adds its rings beyond what the one
// queue's took and a cache of its own, so the room in flight stays what one queue has (the
// engines share it; buffers_scarce() makes them copy out when it runs low). Splitting the
// descriptors instead of giving each queue 1024 keeps this modest under -m 512: 2 queues take
// 8575 mbufs, 8 take 12,927, 16 take 20,095 (about 48 MB of 2 KiB buffers, 190 MB of the 9 KiB
// ones MTU 9000 needs), against 8191 for one.
uint32_t pool_size(const DpdkPortConfig& config, uint16_t rx_desc, uint16_t tx_desc) {
  const uint64_t queues = config.queues;
  const uint64_t one_queue_rings = uint64_t{config.rx_descriptors} + config.tx_descriptors;
  const uint64_t rings = queues * (uint64_t{rx_desc} + tx_desc);
  const uint64_t caches = (queues - 1) * config.mempool_cache * 3 / 2;  // a cache grows to 1.5x before it flushes
  const uint64_t size = config.mempool_size + caches + (rings > one_queue_rings ? rings - one_queue_rings : 0);
  return static_cast<uint32_t>(std::min<uint64_t>(size, UINT32_MAX));
}

}  // namespace

void DpdkPort::MbufBridge::release(void* handle) { rte_pktmbuf_free(static_cast<rte_mbuf*>(handle)); }

// The retransmission queue keeps a reference on each sent mbuf; the PMD drops its own reference
// (rte_pktmbuf_free) once the frame is on the wire.
bool DpdkPort::MbufBridge::add_ref(void* handle) {
  rte_mbuf_refcnt_update(static_cast<rte_mbuf*>(handle), 1);
  return true;
}

bool DpdkPort::MbufBridge::shared(void* handle) const {
  return rte_mbuf_refcnt_read(static_cast<rte_mbuf*>(handle)) > 1;
}

DpdkPort::MbufBridge& DpdkPort::bridge() {
  static MbufBridge bridge;  // stateless: an mbuf knows its pool
  return bridge;
}

// One RX/TX queue pair's state. Separate cache lines: queues run on different threads.
struct alignas(64) DpdkPort::Queue {
  explicit Queue(uint16_t queue_id) : id(queue_id) {}
  const uint16_t id;
  DevStats* stats = nullptr;
  int epfd = -1;
  bool rx_intr = false;  // the queue's RX interrupt is in epfd
  int doorbell = -1;     // Device::set_doorbell: wait_rx waits on it too
  Counter rx_dropped_multiseg;
  uint8_t pool_questions = 0;  // buffers_scarce() asked since the pool was last looked at
  bool pool_scarce = false;    // what the pool said then
  bool awaiting_link = false;  // see link_ready()
  uint8_t link_questions = 0;  // bursts since the link was last looked at
};

// Queue k of a port as a Device of its own; the port does the work.
class DpdkPort::QueueDevice final : public Device {
 public:
  QueueDevice(DpdkPort& port, Queue& queue)
      : port_(port), queue_(queue), name_(port.name_ + " queue " + std::to_string(queue.id)),
        live_views_(port.live_views_) {
    ++*live_views_;
  }
  ~QueueDevice() override { --*live_views_; }

  const DeviceCaps& caps() const override { return port_.caps_; }
  size_t rx_burst(std::span<Packet> out) override { return port_.rx_burst(queue_, out); }
  size_t tx_burst(std::span<Packet> pkts) override { return port_.tx_burst(queue_, pkts); }
  Packet alloc_tx() override { return port_.alloc_tx(queue_); }
  bool wait_rx(Duration max) override { return port_.wait_rx(queue_, max); }
  bool wakes_on_rx() const override { return queue_.rx_intr; }
  bool buffers_scarce() const override { return port_.buffers_scarce(queue_); }
  void attach_stats(DevStats* stats) override { queue_.stats = stats; }
  void set_doorbell(int fd) override { queue_.doorbell = fd; }
  void engine_thread_started() override { port_.engine_thread_started(); }
  void engine_thread_stopping() override { port_.engine_thread_stopping(); }
  std::string name() const override { return name_; }

 private:
  DpdkPort& port_;
  Queue& queue_;
  std::string name_;
  std::shared_ptr<std::atomic<int>> live_views_;
};

DpdkPort::DpdkPort() = default;

Result<std::unique_ptr<DpdkPort>, std::string> DpdkPort::open(const DpdkPortConfig& config) {
  std::unique_ptr<DpdkPort> port(new DpdkPort());
  if (auto error = port->setup(config)) return unexpected(std::move(*error));  // ~DpdkPort undoes
  return port;
}

std::unique_ptr<Device> DpdkPort::queue_device(uint16_t queue) {
  if (queue >= queues_.size()) return nullptr;
  return std::make_unique<QueueDevice>(*this, *queues_[queue]);
}

std::optional<std::string> DpdkPort::setup(const DpdkPortConfig& config) {
  // The port.
  if (config.port_id) {
    if (!rte_eth_dev_is_valid_port(*config.port_id)) return "no DPDK port " + std::to_string(*config.port_id);
    port_id_ = *config.port_id;
  } else {
    bool found = false;
    uint16_t p;
    RTE_ETH_FOREACH_DEV(p) {
      port_id_ = p;
      found = true;
      break;
    }
    if (!found) return std::string("no DPDK port: give EAL a --vdev (USTACK_DEV) or an allowed NIC (-a)");
  }
  char name[RTE_ETH_NAME_MAX_LEN] = {};
  if (rte_eth_dev_get_name_by_port(port_id_, name) == 0) name_ = name;
  rte_eth_dev_info info;
  if (int ret = rte_eth_dev_info_get(port_id_, &info); ret != 0) return dpdk_error("rte_eth_dev_info_get", ret);
  int socket = rte_eth_dev_socket_id(port_id_);
  if (socket < 0) socket = static_cast<int>(rte_socket_id());  // vdevs have no NUMA node

  const uint16_t queues = config.queues;
  if (queues == 0) return std::string("0 queues asked for; a port needs at least one");
  if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
    return std::to_string(queues) + " queue pairs asked for, " + name_ + " (" + info.driver_name + ") has at most " +
           std::to_string(info.max_rx_queues) + " RX and " + std::to_string(info.max_tx_queues) + " TX queues";
  }
  if (queues > 1 && !config.pcap_path.empty()) {
    return "a capture (" + config.pcap_path + ") needs a single queue: " + std::to_string(queues) +
           " queues would write it from as many threads";
  }
  for (uint16_t q = 0; q < queues; ++q) {
    queues_.push_back(std::make_unique<Queue>(q));
    queues_.back()->awaiting_link = polls_only_once_linked(info);
  }
  queues_[0]->stats = config.stats;

  // Frames must fit in one mbuf: no scatter.
  if (config.data_room <= RTE_PKTMBUF_HEADROOM) return std::string("data_room must exceed RTE_PKTMBUF_HEADROOM");
  uint16_t mtu = config.mtu;
  if (mtu == 0 && rte_eth_dev_get_mtu(port_id_, &mtu) != 0) mtu = RTE_ETHER_MTU;
  const uint32_t max_frame = mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + RTE_ETHER_CRC_LEN;
  if (max_frame > uint32_t{config.data_room} - RTE_PKTMBUF_HEADROOM) {
    return "mtu " + std::to_string(mtu) + " needs " + std::to_string(max_frame) +
           "-byte buffers, data_room leaves " + std::to_string(config.data_room - RTE_PKTMBUF_HEADROOM) +
           " (no scatter)";
  }

  if (auto error = configure(config, info, mtu)) return error;

  uint16_t rx_desc = queue_descriptors(config.rx_descriptors, queues);
  uint16_t tx_desc = queue_descriptors(config.tx_descriptors, queues);
  int ret = rte_eth_dev_adjust_nb_rx_tx_desc(port_id_, &rx_desc, &tx_desc);
  if (ret < 0) return dpdk_error("rte_eth_dev_adjust_nb_rx_tx_desc", ret);

  // The mempool, which every RX queue fills from.
  const std::string pool_name = "ustack_p" + std::to_string(port_id_);
  const uint32_t pool_mbufs = pool_size(config, rx_desc, tx_desc);
  pool_ = rte_pktmbuf_pool_create(pool_name.c_str(), pool_mbufs, config.mempool_cache, 0, config.data_room, socket);
  if (!pool_) {
    return dpdk_error(("rte_pktmbuf_pool_create(" + pool_name + ", " + std::to_string(pool_mbufs) + " mbufs)").c_str(),
                      rte_errno);
  }

  rte_eth_rxconf rxconf = info.default_rxconf;
  rxconf.offloads = rx_checksum_ ? info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_CHECKSUM : 0;
  rte_eth_txconf txconf = info.default_txconf;
  txconf.offloads = tx_offloads_;
  for (uint16_t q = 0; q < queues; ++q) {
    if (ret = rte_eth_rx_queue_setup(port_id_, q, rx_desc, socket, &rxconf, pool_); ret < 0) {
      return dpdk_error(("rte_eth_rx_queue_setup(queue " + std::to_string(q) + ")").c_str(), ret);
    }
    if (ret = rte_eth_tx_queue_setup(port_id_, q, tx_desc, socket, &txconf); ret < 0) {
      return dpdk_error(("rte_eth_tx_queue_setup(queue " + std::to_string(q) + ")").c_str(), ret);
    }
  }
  // rte_eth_dev_configure records the MTU; only this call makes the PMD apply it (net_tap sets
  // the kernel interface's MTU here).
  if (config.mtu != 0) {
    if (ret = rte_eth_dev_set_mtu(port_id_, config.mtu); ret < 0) return dpdk_error("rte_eth_dev_set_mtu", ret);
  }
  // Promiscuous off: the stack filters by destination MAC anyway, and net_tap hands over every
  // frame the kernel sends into the TAP (unicast to our MAC and broadcast ARP alike) whatever
  // this says; it only sets IFF_PROMISC on the kernel side. Some PMDs cannot change it (ENOTSUP).
  rte_eth_promiscuous_disable(port_id_);

  // Before the start, so that the first frames land right (the ixgbe family keeps a table set
  // then rather than refill it round robin at start); again after it for PMDs that take one only
  // when started.
  bool table_set = symmetric_rss_ && set_redirection_table(info);
  if (ret = rte_eth_dev_start(port_id_); ret < 0) return dpdk_error("rte_eth_dev_start", ret);
  started_ = true;
  if (symmetric_rss_ && !table_set) table_set = set_redirection_table(info);
  if (symmetric_rss_) {
    const bool owners = table_set && redirects_as_engine_for_hash(info.reta_size, queues);
    rte_log(RTE_LOG_INFO, ustack_dpdk_logtype, "USTACK: %s: redirection table of %u entries %s\n", name_.c_str(),
            info.reta_size,
            owners ? "as engine_for_hash reads it: each frame lands on its flow owner's queue"
                   : "not as engine_for_hash reads it: a flow's frames share a queue, software steering forwards "
                     "them when it is not the owner's");
  }

  // RX interrupts into an epoll set per queue (not RTE_EPOLL_PER_THREAD): wait_rx() then works
  // from whichever thread runs the queue's engine, not only the one that opened the port, and
  // wakes only for its own queue. net_null and net_ring have none; this fails with
  // ENOTSUP/EPERM and wait_rx() sleeps instead.
  if (rx_interrupts_) {
    // ethdev logs an error ("Rx Intr handle unset") for a PMD without interrupts: not one here.
    const int ethdev_log = rte_log_register("lib.ethdev");
    const int ethdev_level = ethdev_log >= 0 ? rte_log_get_level(ethdev_log) : -1;
    if (ethdev_level >= 0) rte_log_set_level(ethdev_log, RTE_LOG_CRIT);
    for (auto& q : queues_) enable_rx_interrupts(*q);
    if (ethdev_level >= 0) rte_log_set_level(ethdev_log, static_cast<uint32_t>(ethdev_level));
  }

  // The link: wait a little (a TAP is up at once; a NIC may take a second or more), never fail.
  rte_eth_link link{};
  const uint64_t deadline = rte_get_timer_cycles() + rte_get_timer_hz() * config.link_wait.count() / 1000;
  while (rte_eth_link_get_nowait(port_id_, &link) == 0 && link.link_status != RTE_ETH_LINK_UP &&
         rte_get_timer_cycles() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  rte_ether_addr mac{};
  if (ret = rte_eth_macaddr_get(port_id_, &mac); ret != 0) return dpdk_error("rte_eth_macaddr_get", ret);
  caps_.mac = MacAddr::load(mac.addr_bytes);
  if (rte_eth_dev_get_mtu(port_id_, &mtu) == 0) caps_.mtu = mtu;
  caps_.tx_ipv4_checksum = tx_offloads_ & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
  caps_.tx_udp_checksum = tx_offloads_ & RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
  caps_.tx_tcp_checksum = tx_offloads_ & RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
  caps_.rx_checksum = rx_checksum_;
  caps_.tx_headroom = RTE_PKTMBUF_HEADROOM;
  caps_.buffer_size = config.data_room;

  // The capture. rte_pcapng_fdopen writes one interface block per port that exists now, so it
  // comes after the port is up (to record its link speed). 22.11 has no rte_pcapng_add_interface.
  if (!config.pcap_path.empty()) {
    const std::string pcap_pool_name = "ustack_pcap_p" + std::to_string(port_id_);
    const uint32_t snap = config.data_room - RTE_PKTMBUF_HEADROOM;
    pcap_pool_ = rte_pktmbuf_pool_create(pcap_pool_name.c_str(), kPcapPoolSize, 0, 0,
                                         static_cast<uint16_t>(rte_pcapng_mbuf_size(snap)), socket);
    if (!pcap_pool_) return dpdk_error(("rte_pktmbuf_pool_create(" + pcap_pool_name + ")").c_str(), rte_errno);
    const int fd = ::open(config.pcap_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return "cannot create " + config.pcap_path + ": " + std::strerror(errno);
    utsname un{};
    std::string os;
    if (uname(&un) == 0) os = std::string(un.sysname) + " " + un.release;
    const std::string app = std::string("ustack (") + rte_version() + ")";
    pcap_ = rte_pcapng_fdopen(fd, os.empty() ? nullptr : os.c_str(), nullptr, app.c_str(), nullptr);
    if (!pcap_) {
      const int err = rte_errno;
      ::close(fd);
      return "rte_pcapng_fdopen(" + config.pcap_path + ") failed: " + rte_strerror(err);
    }
    prime_pcapng_clock();
  }
  return std::nullopt;
}

// Tries RSS and RX interrupts, then without each, then without both: a PMD refuses either, and
// neither is needed for correctness (software steering, sleeping waits).
std::optional<std::string> DpdkPort::configure(const DpdkPortConfig& config, const rte_eth_dev_info& info,
                                               uint16_t mtu) {
  const uint16_t queues = config.queues;
  const uint64_t rss_types = info.flow_type_rss_offloads & kRssFlowTypes;
  const bool want_rss = queues > 1 && rss_types != 0 && !ignores_rss_configuration(info);
  // hash_key_size 0: the PMD does not say (net_null); it takes 40 bytes like nearly all.
  const bool key_fits = info.hash_key_size == kSymmetricRssKey.size() || info.hash_key_size == 0;
  std::array<uint8_t, 40> key = kSymmetricRssKey;  // rte_eth_rss_conf points to a mutable key

  rte_eth_conf conf{};
  conf.rxmode.mtu = mtu;  // 0 would make rte_eth_dev_configure reset it to 1500
  conf.rxmode.offloads = info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_CHECKSUM;
  conf.txmode.offloads = info.tx_offload_capa & kTxChecksumOffloads;
  auto attempt = [&](bool rss, bool interrupts) {
    conf.rxmode.mq_mode = rss ? RTE_ETH_MQ_RX_RSS : RTE_ETH_MQ_RX_NONE;
    conf.rx_adv_conf.rss_conf = {};
    if (rss) {
      conf.rx_adv_conf.rss_conf.rss_hf = rss_types;
      if (key_fits) {
        conf.rx_adv_conf.rss_conf.rss_key = key.data();
        conf.rx_adv_conf.rss_conf.rss_key_len = static_cast<uint8_t>(key.size());
      }
    }
    conf.intr_conf.rxq = interrupts ? 1 : 0;
    return rte_eth_dev_configure(port_id_, queues, queues, &conf);
  };
  int ret = attempt(want_rss, config.rx_interrupts);
  if (ret < 0 && config.rx_interrupts) ret = attempt(want_rss, false);
  int rss_refused = 0;
  if (ret < 0 && want_rss) {
    rss_refused = ret;
    ret = attempt(false, config.rx_interrupts);
    if (ret < 0 && config.rx_interrupts) ret = attempt(false, false);
  }
  if (ret < 0) {
    std::string call = "rte_eth_dev_configure";
    if (queues > 1) call += " (" + std::to_string(queues) + " queue pairs)";
    return dpdk_error(call.c_str(), ret);
  }
  configured_ = true;
  rx_checksum_ = conf.rxmode.offloads != 0;
  tx_offloads_ = conf.txmode.offloads;
  rx_interrupts_ = conf.intr_conf.rxq != 0;
  const bool rss = conf.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS;
  symmetric_rss_ = rss && key_fits;

  if (queues == 1) return std::nullopt;
  const char* dev = name_.c_str();
  if (symmetric_rss_) {
    rte_log(RTE_LOG_INFO, ustack_dpdk_logtype,
            "USTACK: %s: %u queues, symmetric RSS (Toeplitz under the 0x6d5a key, flow types 0x%" PRIx64 ")\n", dev,
            queues, rss_types);
  } else if (rss) {
    rte_log(RTE_LOG_INFO, ustack_dpdk_logtype,
            "USTACK: %s: %u queues, RSS under the PMD's own %u-byte key, not symmetric: software steering forwards "
            "what lands on another engine's queue\n",
            dev, queues, info.hash_key_size);
  } else {
    const char* why = rss_refused != 0                  ? "the PMD refused the RSS configuration"
                      : ignores_rss_configuration(info) ? "net_tap ignores RSS; the kernel picks the queue"
                                                        : "the PMD has no RSS for IPv4";
    rte_log(RTE_LOG_INFO, ustack_dpdk_logtype,
            "USTACK: %s: %u queues without RSS (%s%s%s): software steering forwards what lands on another engine's "
            "queue\n",
            dev, queues, why, rss_refused ? ": " : "", rss_refused ? rte_strerror(-rss_refused) : "");
  }
  return std::nullopt;
}

// Fills the redirection table as engine_for_hash reads one (entry e holds queue e % 128 % N),
// rather than trusting the PMD's round robin over however many entries it has (512 on i40e:
// hash % 512 % N is not hash % 128 % N unless N divides 128). False when the PMD refuses.
bool DpdkPort::set_redirection_table(const rte_eth_dev_info& info) {
  const uint32_t size = info.reta_size;
  if (size == 0 || size % RTE_ETH_RETA_GROUP_SIZE != 0) return false;
  std::vector<rte_eth_rss_reta_entry64> table(size / RTE_ETH_RETA_GROUP_SIZE);
  for (uint32_t i = 0; i < size; ++i) {
    auto& group = table[i / RTE_ETH_RETA_GROUP_SIZE];
    group.mask |= uint64_t{1} << (i % RTE_ETH_RETA_GROUP_SIZE);
    group.reta[i % RTE_ETH_RETA_GROUP_SIZE] = static_cast<uint16_t>(engine_for_hash(i, queues()));
  }
  return rte_eth_dev_rss_reta_update(port_id_, table.data(), static_cast<uint16_t>(size)) == 0;
}

void DpdkPort::enable_rx_interrupts(Queue& q) {
  q.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (q.epfd < 0) return;
  if (rte_eth_dev_rx_intr_ctl_q(port_id_, q.id, q.epfd, RTE_INTR_EVENT_ADD, nullptr) == 0) {
    q.rx_intr = true;
  } else {
    ::close(q.epfd);
    q.epfd = -1;
  }
}

void DpdkPort::disable_rx_interrupts(Queue& q) {
  if (q.rx_intr) rte_eth_dev_rx_intr_ctl_q(port_id_, q.id, q.epfd, RTE_INTR_EVENT_DEL, nullptr);
  q.rx_intr = false;
  if (q.epfd >= 0) ::close(q.epfd);
  q.epfd = -1;
}

DpdkPort::~DpdkPort() {
  const size_t in_use = close();
  if (in_use != 0 && pool_) {
    // Packets still point into the pool: leak it rather than let them free into freed memory.
    rte_log(RTE_LOG_WARNING, ustack_dpdk_logtype,
            "USTACK: %s: %zu mbufs still held by Packets at close; not freeing the mempool\n", name_.c_str(),
            in_use);
    pool_ = nullptr;
  }
  rte_mempool_free(pool_);
  rte_mempool_free(pcap_pool_);
}

size_t DpdkPort::close() {
  if (!closed_) {
    closed_ = true;
    if (const int views = live_views_->load(); views != 0) {
      rte_log(RTE_LOG_ERR, ustack_dpdk_logtype,
              "USTACK: %s: closed while %d queue views remain (destroy them first: they may still poll)\n",
              name_.c_str(), views);
    }
    if (pcap_) {
      rte_pcapng_write_stats(pcap_, port_id_, nullptr, 0, 0, pcap_written_, pcap_dropped_);
      rte_pcapng_close(pcap_);  // closes the fd too
      pcap_ = nullptr;
    }
    for (auto& q : queues_) disable_rx_interrupts(*q);
    if (started_) rte_eth_dev_stop(port_id_);
    started_ = false;
    // Closing frees the queues and the mbufs the PMD holds; for a vdev it also releases the port.
    if (configured_) rte_eth_dev_close(port_id_);
    configured_ = false;
  }
  return mbufs_in_use();
}

size_t DpdkPort::mbufs_in_use() const { return pool_ ? rte_mempool_in_use_count(pool_) : 0; }

uint64_t DpdkPort::rx_dropped_multiseg() const {
  uint64_t total = 0;
  for (const auto& q : queues_) total += q->rx_dropped_multiseg;
  return total;
}

size_t DpdkPort::rx_burst(std::span<Packet> out) { return rx_burst(*queues_[0], out); }
size_t DpdkPort::tx_burst(std::span<Packet> pkts) { return tx_burst(*queues_[0], pkts); }
Packet DpdkPort::alloc_tx() { return alloc_tx(*queues_[0]); }
bool DpdkPort::wait_rx(Duration max) { return wait_rx(*queues_[0], max); }
bool DpdkPort::wakes_on_rx() const { return !queues_.empty() && queues_[0]->rx_intr; }
void DpdkPort::set_doorbell(int fd) { queues_[0]->doorbell = fd; }

namespace {
thread_local bool t_registered_lcore = false;  // engine_thread_started made this thread an lcore
}  // namespace

void DpdkPort::engine_thread_started() {
  if (rte_lcore_id() != LCORE_ID_ANY || t_registered_lcore) return;
  // Without a free lcore slot the thread goes on without a cache, as before.
  t_registered_lcore = rte_thread_register() == 0;
}

void DpdkPort::engine_thread_stopping() {
  if (!t_registered_lcore) return;
  rte_thread_unregister();
  t_registered_lcore = false;
}

void DpdkPort::attach_stats(DevStats* stats) {
  if (!queues_.empty()) queues_[0]->stats = stats;
}

Packet DpdkPort::wrap(rte_mbuf* m) {
  return Packet(static_cast<uint8_t*>(m->buf_addr), m->buf_len, m->data_off, m->data_len, m, &bridge());
}

bool DpdkPort::link_ready(Queue& q) {
  if (!q.awaiting_link) return true;
  if (q.link_questions++ % kBurstsPerLinkLook != 0) return false;
  rte_eth_link link{};
  if (rte_eth_link_get_nowait(port_id_, &link) != 0 || link.link_status != RTE_ETH_LINK_UP) return false;
  q.awaiting_link = false;  // for good: a later disconnect is one net_memif's bursts see themselves
  return true;
}

size_t DpdkPort::rx_burst(Queue& q, std::span<Packet> out) {
  if (!started_ || !link_ready(q)) return 0;
  DevStats* const stats = q.stats;
  size_t n = 0;
  uint64_t bytes = 0;
  while (n < out.size()) {
    rte_mbuf* mbufs[kBurst];
    const uint16_t want = static_cast<uint16_t>(std::min<size_t>(kBurst, out.size() - n));
    const uint16_t got = rte_eth_rx_burst(port_id_, q.id, mbufs, want);
    if (got == 0) break;
    if (pcap_) capture(q, mbufs, got, false);
    for (uint16_t i = 0; i < got; ++i) {
      rte_mbuf* m = mbufs[i];
      if (m->nb_segs != 1) {  // no scatter is configured; a PMD that chains anyway loses the frame
        rte_pktmbuf_free(m);
        ++q.rx_dropped_multiseg;
        if (stats) stats->rx_dropped_multisegment.inc();
        continue;
      }
      Packet p = wrap(m);
      if (rx_checksum_) {
        p.rx_checks.ip_checksum_good = verified(m->ol_flags, RTE_MBUF_F_RX_IP_CKSUM_MASK,
                                                RTE_MBUF_F_RX_IP_CKSUM_GOOD, RTE_MBUF_F_RX_IP_CKSUM_NONE);
        p.rx_checks.l4_checksum_good = verified(m->ol_flags, RTE_MBUF_F_RX_L4_CKSUM_MASK,
                                                RTE_MBUF_F_RX_L4_CKSUM_GOOD, RTE_MBUF_F_RX_L4_CKSUM_NONE);
      }
      bytes += m->data_len;
      out[n++] = std::move(p);
    }
    if (got < want) break;
  }
  if (stats && n) {
    stats->rx_frames.inc(n);
    stats->rx_bytes.inc(bytes);
  }
  return n;
}

Packet DpdkPort::alloc_tx(Queue& q) {
  rte_mbuf* m = started_ ? rte_pktmbuf_alloc(pool_) : nullptr;
  if (!m) {
    if (q.stats) q.stats->tx_alloc_failed.inc();
    return Packet();
  }
  return wrap(m);  // data_off = RTE_PKTMBUF_HEADROOM, length 0
}

// Takes `p` (it is empty afterwards) and returns its frame as an mbuf ready for the PMD, or
// nullptr (counted) when there is no buffer for a heap packet.
rte_mbuf* DpdkPort::to_mbuf(Queue& q, Packet& p) {
  const TxOffload ol = p.tx_offload;
  rte_mbuf* m;
  if (p.pool() == &bridge()) {  // one of ours (any DpdkPort's): hand over the mbuf itself
    const uint32_t offset = p.offset();
    const uint32_t length = static_cast<uint32_t>(p.size());
    m = static_cast<rte_mbuf*>(p.release());
    m->data_off = static_cast<uint16_t>(offset);
    m->data_len = static_cast<uint16_t>(length);
    m->pkt_len = length;
  } else {  // heap (reassembled, test-made): copy into a fresh mbuf
    m = rte_pktmbuf_alloc(pool_);
    char* dst = m && p.size() <= UINT16_MAX ? rte_pktmbuf_append(m, static_cast<uint16_t>(p.size())) : nullptr;
    if (!dst) {  // no mbuf, or the frame is bigger than one
      if (m) rte_pktmbuf_free(m);
      if (q.stats) q.stats->tx_alloc_failed.inc();
      p = Packet();
      return nullptr;
    }
    std::memcpy(dst, p.data(), p.size());
    p = Packet();
  }

  // RX flags of a reused received mbuf must not read as TX requests.
  m->ol_flags = 0;
  const bool any = ol.ip_checksum || ol.udp_checksum || ol.tcp_checksum;
  if (any) {
    bool hw_ip = ol.ip_checksum && (tx_offloads_ & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM);
    bool hw_udp = ol.udp_checksum && (tx_offloads_ & RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
    bool hw_tcp = ol.tcp_checksum && (tx_offloads_ & RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
    // The stack asked for what caps() said the device lacks: finish the job here, not on the wire.
    const bool sw_ip = ol.ip_checksum && !hw_ip;
    const bool sw_l4 = (ol.udp_checksum && !hw_udp) || (ol.tcp_checksum && !hw_tcp);
    if (sw_ip || sw_l4) software_checksums(m, ol, sw_ip, sw_l4);
    if ((hw_ip || hw_udp || hw_tcp) && (ol.l2_len == 0 || ol.l3_len < 20)) {
      // The device would checksum at the wrong place; software_checksums refuses too.
      hw_ip = hw_udp = hw_tcp = false;
    }
    if (hw_ip || hw_udp || hw_tcp) {
      m->ol_flags |= RTE_MBUF_F_TX_IPV4;
      if (hw_ip) m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
      if (hw_udp) m->ol_flags |= RTE_MBUF_F_TX_UDP_CKSUM;
      if (hw_tcp) m->ol_flags |= RTE_MBUF_F_TX_TCP_CKSUM;
      m->l2_len = ol.l2_len;
      m->l3_len = ol.l3_len;
    }
  }
  // No rte_eth_tx_prepare: the stack already leaves what the Intel-style PMDs expect (a zero IPv4
  // checksum, the pseudo-header sum in the L4 field), and nothing here segments (no TSO).
  return m;
}

size_t DpdkPort::tx_burst(Queue& q, std::span<Packet> pkts) {
  DevStats* const stats = q.stats;
  size_t queued = 0;
  size_t i = 0;
  while (i < pkts.size()) {
    rte_mbuf* mbufs[kBurst];
    uint32_t lengths[kBurst];
    uint16_t k = 0;
    const bool linked = started_ && link_ready(q);
    for (; i < pkts.size() && k < kBurst; ++i) {
      if (!pkts[i]) continue;
      if (!linked) {
        pkts[i] = Packet();
        if (started_ && stats) stats->tx_dropped_link_down.inc();
        continue;
      }
      if (rte_mbuf* m = to_mbuf(q, pkts[i])) {
        lengths[k] = m->pkt_len;
        mbufs[k++] = m;
      }
    }
    if (k == 0) continue;
    if (pcap_) capture(q, mbufs, k, true);
    uint16_t sent = 0;
    for (int attempt = 0; attempt < kTxAttempts && sent < k; ++attempt) {
      sent += rte_eth_tx_burst(port_id_, q.id, mbufs + sent, k - sent);
    }
    if (sent < k) {
      rte_pktmbuf_free_bulk(mbufs + sent, k - sent);
      if (stats) stats->tx_dropped_queue_full.inc(k - sent);
    }
    if (stats && sent) {
      uint64_t bytes = 0;
      for (uint16_t j = 0; j < sent; ++j) bytes += lengths[j];
      stats->tx_frames.inc(sent);
      stats->tx_bytes.inc(bytes);
    }
    queued += sent;
  }
  return queued;
}

// 22.11's rte_pcapng_copy sets its TSC-to-wall-clock base lazily, inside the first call, from a
// TSC read taken there. The timestamp of that first call was read before, so it lies before the
// base, the unsigned difference wraps, and the base jumps ~280 years ahead for good (tcpdump
// showed frames from 2305). So make the first call here, with a timestamp 100 ms ahead (after
// the base, less than the 1 s after which the base moves), and throw its copy away.
void DpdkPort::prime_pcapng_clock() {
  rte_mbuf* probe = rte_pktmbuf_alloc(pcap_pool_);
  if (!probe) return;
  if (char* d = rte_pktmbuf_append(probe, RTE_ETHER_HDR_LEN)) std::memset(d, 0, RTE_ETHER_HDR_LEN);
  const uint64_t ahead = rte_get_tsc_cycles() + rte_get_tsc_hz() / 10;
  rte_pktmbuf_free(rte_pcapng_copy(port_id_, 0, probe, pcap_pool_, UINT32_MAX, ahead, RTE_PCAPNG_DIRECTION_UNKNOWN));
  rte_pktmbuf_free(probe);
}

void DpdkPort::capture(Queue& q, rte_mbuf* const* mbufs, uint16_t n, bool outbound) {
  rte_mbuf* copies[kBurst];
  uint16_t k = 0;
  const uint64_t now = rte_get_tsc_cycles();  // 22.11's rte_pcapng_copy wants TSC cycles
  const auto direction = outbound ? RTE_PCAPNG_DIRECTION_OUT : RTE_PCAPNG_DIRECTION_IN;
  for (uint16_t i = 0; i < n && k < kBurst; ++i) {
    rte_mbuf* c = rte_pcapng_copy(port_id_, q.id, mbufs[i], pcap_pool_, UINT32_MAX, now, direction);
    if (c) {
      copies[k++] = c;
    } else {
      ++pcap_dropped_;
      if (q.stats) q.stats->pcap_dropped.inc();
    }
  }
  if (k == 0) return;
  if (rte_pcapng_write_packets(pcap_, copies, k) < 0) {
    pcap_dropped_ += k;
    if (q.stats) q.stats->pcap_dropped.inc(k);
  } else {
    pcap_written_ += k;
  }
  // 22.11's rte_pcapng_write_packets only writes (its header says it frees; its code does not).
  rte_pktmbuf_free_bulk(copies, k);
}

// Measured on net_tap in a netns (2-vCPU VM, 250 frames sent into the TAP from the kernel side
// 10-30 ms apart, none lost), when this slept in rte_epoll_wait(): from the kernel-side sendto()
// to the frame out of rx_burst took a median 52-85 us (p99 160-235 us) when the engine slept here,
// against 20-48 us (p99 120-200 us) when it busy-polled: waking costs some 30-50 us. The TAP's fd
// is edge-triggered and stays in the epoll set, so frames taken while polling left an event
// behind: ~3% of waits (5-6 of ~170) returned at once with nothing to receive. A timeout
// overshot by ~0.1 ms.
//
// It now sleeps in ppoll() on that epoll set (an epoll fd polls readable while it has events),
// through sleep_interruptibly(), for its atomic signal mask: rte_epoll_wait() restarts after
// EINTR, and even rte_epoll_wait_interruptible() cannot tell a signal that lands as the timeout
// ends. When the set is readable, rte_epoll_wait_interruptible() with no timeout then takes the
// event the way DPDK expects (its status and callback).
bool DpdkPort::wait_rx(Queue& q, Duration max) {
  if (max <= Duration::zero()) return false;
  if (!q.rx_intr) return sleep_interruptibly(max, q.doorbell) == SleepEnd::kSignal;
  // net_tap has no per-queue enable (ENOTSUP): its queue's fd stays in the epoll set, armed.
  const int enabled = rte_eth_dev_rx_intr_enable(port_id_, q.id);
  if (enabled != 0 && enabled != -ENOTSUP) return sleep_interruptibly(max, q.doorbell) == SleepEnd::kSignal;
  // The doorbell stays out of the epoll set: DPDK reads every event there as one of its own.
  const SleepEnd end = sleep_interruptibly(max, q.epfd, q.doorbell);
  if (end != SleepEnd::kTimedOut) {
    rte_epoll_event event{};
    rte_epoll_wait_interruptible(q.epfd, &event, 1, 0);
  }
  if (enabled == 0) rte_eth_dev_rx_intr_disable(port_id_, q.id);
  return end == SleepEnd::kSignal;
}

bool DpdkPort::buffers_scarce() const { return buffers_scarce(*queues_[0]); }

bool DpdkPort::buffers_scarce(Queue& q) const {
  // The stack asks once per burst, and rte_mempool_avail_count walks every lcore's cache
  // (RTE_MAX_LCORE of them: hundreds of instructions, a tenth of a small request's cost in the
  // server's profile). So the pool is looked at on every 16th question while it has plenty (16
  // bursts cannot drain a pool more than a quarter free) and on every one once it runs low.
  if (!pool_) return false;
  if (!q.pool_scarce && ++q.pool_questions < kPoolQuestionsPerLook) return false;
  q.pool_questions = 0;
  q.pool_scarce = rte_mempool_avail_count(pool_) * 4 < pool_->size;
  return q.pool_scarce;
}

}  // namespace ustack::dev
