#include "api/device_factory.h"

#include <net/if.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "dev/dpdk/dpdk_port.h"
#include "dev/dpdk/eal.h"
#include "dev/dpdk/telemetry.h"

namespace ustack::api {
namespace {

// What a frame needs in a buffer beyond the IP MTU: the Ethernet header, one VLAN tag and the CRC
// (the room DpdkPort::open checks for; frames must fit in one mbuf, there is no scatter).
constexpr uint32_t kFrameOverhead = RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + RTE_ETHER_CRC_LEN;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The kernel interface a net_tap (alias eth_tap) or net_tun vdev string will create, when it
// names one (iface=NAME). Without iface DPDK asks the kernel for dtap%d / dtun%d, which picks a
// free name (dtap0, dtap1, ...): nothing to check then, nor when NAME itself has a %d.
struct TapIface {
  std::string name;
  size_t value_pos = 0;  // where NAME starts in the vdev string
};
std::optional<TapIface> tap_iface(const std::string& dev) {
  const size_t comma = dev.find(',');
  const std::string driver = dev.substr(0, comma);
  if (!driver.starts_with("net_tap") && !driver.starts_with("eth_tap") && !driver.starts_with("net_tun")) {
    return std::nullopt;
  }
  if (comma == std::string::npos) return std::nullopt;
  std::optional<TapIface> found;
  int count = 0;
  size_t pos = comma + 1;
  while (pos <= dev.size()) {
    size_t end = dev.find(',', pos);
    if (end == std::string::npos) end = dev.size();
    const std::string_view kv(dev.data() + pos, end - pos);
    if (kv.starts_with("iface=")) {
      found = TapIface{std::string(kv.substr(6)), pos + 6};
      ++count;
    }
    pos = end + 1;
  }
  // DPDK uses iface only when it is given once (else it falls back to dtap%d).
  if (count != 1 || found->name.empty() || found->name.find('%') != std::string::npos) return std::nullopt;
  return found;
}

// net_tap opens its TAP with IFF_MULTI_QUEUE: when the interface already exists (another ustack
// process in this namespace uses the same name), it silently joins it as one more queue and the
// kernel splits the flows between the two processes. Refuse instead, before EAL starts.
std::optional<std::string> check_tap_free(const std::string& dev) {
  const auto iface = tap_iface(dev);
  if (!iface || ::if_nametoindex(iface->name.c_str()) == 0) return std::nullopt;
  std::string free_name;
  for (int i = 1; i < 1000 && free_name.empty(); ++i) {
    const std::string candidate = "ust" + std::to_string(i);
    if (::if_nametoindex(candidate.c_str()) == 0) free_name = candidate;
  }
  std::string example = dev;
  example.replace(iface->value_pos, iface->name.size(), free_name.empty() ? "ust1" : free_name);
  return "USTACK_DEV: interface " + iface->name +
         " already exists in this network namespace (another ustack process, or a leftover?): give each "
         "process its own, e.g. USTACK_DEV=" + example;
}

// The MTU range the port accepts, by the rule rte_eth_dev_configure and rte_eth_dev_set_mtu
// apply (DPDK 22.11 eth_dev_validate_mtu): min_mtu..max_mtu, and the frame (MTU plus the
// driver's overhead, 18 bytes when it does not say) within max_rx_pktlen. net_tap, for one,
// reports max_rx_pktlen 1522 and no max_mtu: at most 1504.
struct MtuRange {
  uint32_t min = 0;
  uint32_t max = 0;
  uint32_t max_frame = 0;
};
std::optional<MtuRange> mtu_range(uint16_t port_id) {
  rte_eth_dev_info info;
  if (rte_eth_dev_info_get(port_id, &info) != 0) return std::nullopt;
  const uint32_t overhead = info.max_mtu != UINT16_MAX && info.max_rx_pktlen > info.max_mtu
                                ? info.max_rx_pktlen - info.max_mtu
                                : RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
  MtuRange r;
  r.min = info.min_mtu;
  r.max = info.max_rx_pktlen > overhead ? std::min<uint32_t>(info.max_mtu, info.max_rx_pktlen - overhead) : 0;
  r.max_frame = info.max_rx_pktlen;
  return r;
}

// RX/TX queue pairs the port can have: one per engine.
std::optional<uint16_t> queue_pairs(uint16_t port_id) {
  rte_eth_dev_info info;
  if (rte_eth_dev_info_get(port_id, &info) != 0) return std::nullopt;
  return std::min(info.max_rx_queues, info.max_tx_queues);
}

std::string describe_range(const MtuRange& r) {
  std::string out = "from " + std::to_string(r.min) + " to " + std::to_string(r.max);
  if (r.max_frame <= UINT16_MAX) out += " (frames up to " + std::to_string(r.max_frame) + " bytes)";
  return out;
}

}  // namespace

Result<OpenedDevice, std::string> open_device(const EngineConfig& config, const std::string& program) {
  const std::string cores_key = "USTACK_CORES=" + std::to_string(config.cores);
  if (config.cores < 1 || config.cores > UINT16_MAX) {
    return unexpected(cores_key + ": one DPDK queue pair per engine, from 1 to " + std::to_string(UINT16_MAX));
  }
  // One capture file written by N engine threads would need a lock on every frame.
  if (config.cores > 1 && !config.pcap.empty()) {
    return unexpected(cores_key + " with USTACK_PCAP=" + config.pcap +
                      ": a capture works with one engine only; unset USTACK_PCAP or set USTACK_CORES=1");
  }
  if (auto busy = check_tap_free(config.dev)) return unexpected(std::move(*busy));

  auto args = dev::eal_args(program, config.dev, config.eal);
  auto eal = dev::Eal::init(args);
  if (!eal) {
    std::string cmd;
    for (const auto& a : args) cmd += " " + a;
    return unexpected("DPDK EAL did not start (USTACK_DEV / USTACK_EAL; EAL arguments:" + cmd + "): " + eal.error());
  }
  std::shared_ptr<dev::Eal> guard = std::move(*eal);

  dev::DpdkPortConfig port_config;
  port_config.queues = static_cast<uint16_t>(config.cores);
  port_config.mtu = config.stack.mtu;
  port_config.pcap_path = config.pcap;

  // The port DpdkPort::open takes (the first there is); ask it what MTU it accepts before asking
  // it to use one, so that a refusal names USTACK_MTU and the device's limit.
  const std::string mtu_key = "USTACK_MTU=" + std::to_string(config.stack.mtu);
  std::optional<MtuRange> range;
  std::optional<uint16_t> max_queues;
  uint16_t frame_mtu = config.stack.mtu;  // the MTU the buffers must hold
  uint16_t p;
  RTE_ETH_FOREACH_DEV(p) {
    port_config.port_id = p;
    range = mtu_range(p);
    max_queues = queue_pairs(p);
    if (frame_mtu == 0 && rte_eth_dev_get_mtu(p, &frame_mtu) != 0) frame_mtu = 0;
    break;
  }
  if (max_queues && config.cores > *max_queues) {
    std::string error = cores_key + ": the DPDK device '" + config.dev + "' has " + std::to_string(*max_queues) +
                        " RX/TX queue pair" + (*max_queues == 1 ? "" : "s") +
                        ", one per engine; set USTACK_CORES to at most " + std::to_string(*max_queues);
    const std::string driver = lower(config.dev);
    if (driver.starts_with("net_af_packet") || driver.starts_with("eth_af_packet")) {
      error += ", or give net_af_packet more with qpairs=" + std::to_string(config.cores);
    }
    return unexpected(std::move(error));
  }
  if (config.stack.mtu != 0 && range && (config.stack.mtu < range->min || config.stack.mtu > range->max)) {
    return unexpected(mtu_key + ": the DPDK device '" + config.dev + "' takes an MTU " + describe_range(*range) +
                      "; set USTACK_MTU within that, or use a device that takes larger frames");
  }
  // Frames must fit in one mbuf (no scatter): size the buffers for the MTU, never below DPDK's
  // default (RTE_MBUF_DEFAULT_BUF_SIZE: 128 of headroom + 2048). The frame room is rounded up to
  // whole KiB: NICs size RX buffers in 1 KiB steps (rounding down), and virtio wants its 12-byte
  // header on top of the frame. MTU 9000 gives 128 + 9216 = 9344-byte buffers: the pool of 8191
  // then takes ~78 MB of EAL memory (the default -m 512 has room).
  const uint32_t room = (uint32_t{frame_mtu} + kFrameOverhead + 1023) / 1024 * 1024;
  port_config.data_room = static_cast<uint16_t>(
      std::clamp<uint32_t>(RTE_PKTMBUF_HEADROOM + room, uint32_t{port_config.data_room}, UINT16_MAX));

  auto port = dev::DpdkPort::open(port_config);
  if (!port) {
    const bool about_mtu = lower(port.error()).find("mtu") != std::string::npos;
    if (config.stack.mtu != 0 && about_mtu) {
      return unexpected(mtu_key + ": the DPDK device '" + config.dev + "' did not take it" +
                        (range ? " (it takes an MTU " + describe_range(*range) + ")" : std::string()) + ": " +
                        port.error());
    }
    std::string error = "the DPDK device '" + config.dev + "' did not start (USTACK_DEV" +
                        (config.cores > 1 ? ", with " + cores_key + " queue pairs" : std::string()) +
                        "): " + port.error();
    if (about_mtu) error += " (that is the device's own MTU; USTACK_MTU sets a smaller one)";
    return unexpected(std::move(error));
  }
  OpenedDevice opened{std::move(guard), {}};
  dev::DpdkPort& queue0 = **port;
  opened.queues.push_back(std::move(*port));
  for (uint16_t q = 1; q < queue0.queues(); ++q) opened.queues.push_back(queue0.queue_device(q));
  return opened;
}

void register_stats_telemetry(std::function<void(const CounterVisitor&)> visit_all) {
  if (!visit_all) {
    dev::clear_stats_telemetry();
    return;
  }
  dev::register_stats_telemetry([visit_all](std::function<void(std::string_view, std::string_view, uint64_t)> fn) {
    visit_all(fn);
  });
}

std::string telemetry_hint() { return "scripts/ustack-stats <pid> (DPDK telemetry command /ustack/stats)"; }

}  // namespace ustack::api
