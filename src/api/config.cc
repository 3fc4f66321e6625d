#include "api/config.h"

#include <charconv>
#include <functional>
#include <random>

#include <toml++/toml.h>

#include "base/port_directory.h"

extern char** environ;

namespace ustack::api {
namespace {

using Apply = std::function<std::string(EngineConfig&, std::string_view)>;  // "" on success

template <typename T>
std::optional<T> parse_uint(std::string_view text, T min, T max) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < static_cast<uint64_t>(min) || v > static_cast<uint64_t>(max)) return std::nullopt;
  return static_cast<T>(v);
}

template <typename T>
Apply number(T min, T max, std::function<void(EngineConfig&, T)> set) {
  return [=](EngineConfig& c, std::string_view v) -> std::string {
    auto n = parse_uint<T>(v, min, max);
    if (!n) return "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max);
    set(c, *n);
    return "";
  };
}

struct KeyDef {
  ConfigKey key;
  Apply apply;
};

const std::vector<KeyDef>& key_defs() {
  static const std::vector<KeyDef> defs = {
      {{"dev", "USTACK_DEV", "DPDK device as an EAL --vdev string (default net_tap0,iface=ust0)"},
       [](EngineConfig& c, std::string_view v) -> std::string {
         c.dev = std::string(v);
         return "";
       }},
      {{"eal", "USTACK_EAL", "extra EAL arguments, e.g. \"-a 0000:01:00.0\" for a real NIC"},
       [](EngineConfig& c, std::string_view v) -> std::string {
         c.eal = std::string(v);
         return "";
       }},
      {{"ip", "USTACK_IP", "our address and prefix (default 198.18.0.2/24)"},
       [](EngineConfig& c, std::string_view v) -> std::string {
         auto cidr = Ipv4Cidr::parse(v);
         if (!cidr || cidr->prefix_len == 0 || cidr->prefix_len > 30 || cidr->addr.is_multicast() ||
             cidr->addr.is_loopback() || cidr->addr.is_unspecified() || cidr->addr.is_broadcast())
           return "expected a unicast address with a prefix length from 1 to 30, like 198.18.0.2/24";
         if (cidr->addr == cidr->subnet_broadcast() || (cidr->addr.value() & ~cidr->mask()) == 0)
           return "the subnet's network or broadcast address cannot be a host's address";
         c.stack.address = *cidr;
         return "";
       }},
      {{"gw", "USTACK_GW", "default gateway, on our subnet (default: none, only the subnet is reachable)"},
       [](EngineConfig& c, std::string_view v) -> std::string {
         if (v.empty()) {
           c.stack.gateway.reset();
           return "";
         }
         auto a = Ipv4Addr::parse(v);
         if (!a) return "expected an IPv4 address like 198.18.0.1";
         c.stack.gateway = *a;
         return "";
       }},
      {{"mtu", "USTACK_MTU", "IP MTU, 68 to 9000, and at most what the device takes (DPDK 22.11 net_tap: 1504) (default: the device's, usually 1500)"},
       number<uint16_t>(68, 9000, [](EngineConfig& c, uint16_t v) { c.stack.mtu = v; })},
      {{"pcap", "USTACK_PCAP", "write every frame sent and received to this pcapng file"},
       [](EngineConfig& c, std::string_view v) -> std::string {
         c.pcap = std::string(v);
         return "";
       }},
      {{"cores", "USTACK_CORES",
        "engines, 1 to 32: each polls its own queue of the device, driven by the threads that call on "
        "it (threaded: each by a thread of its own) (default 1)"},
       number<int>(1, static_cast<int>(PortDirectory::kMaxEngines), [](EngineConfig& c, int v) { c.cores = v; })},
      {{"seed", "USTACK_SEED", "seed of the stack's random source (default: random per run)"},
       number<uint64_t>(0, UINT64_MAX, [](EngineConfig& c, uint64_t v) { c.stack.seed = v; })},
      {{"ttl", "USTACK_TTL", "TTL of packets we send, 1 to 255 (default 64)"},
       number<uint8_t>(1, 255, [](EngineConfig& c, uint8_t v) { c.stack.ttl = v; })},
      {{"arp_cache_size", "USTACK_ARP_CACHE_SIZE", "neighbour entries kept (default 1024)"},
       number<size_t>(1, 1 << 20, [](EngineConfig& c, size_t v) { c.stack.arp.max_entries = v; })},
      {{"arp_lifetime_s", "USTACK_ARP_LIFETIME_S", "seconds a resolved neighbour is trusted (default 60)"},
       number<uint32_t>(10, 86400, [](EngineConfig& c, uint32_t v) { c.stack.arp.entry_lifetime = std::chrono::seconds(v); })},
      {{"reassembly_timeout_s", "USTACK_REASSEMBLY_TIMEOUT_S", "seconds to wait for missing fragments (default 30)"},
       number<uint32_t>(1, 120, [](EngineConfig& c, uint32_t v) { c.stack.reassembly.timeout = std::chrono::seconds(v); })},
      {{"reassembly_max_bytes", "USTACK_REASSEMBLY_MAX_BYTES", "fragment bytes held at most (default 4194304)"},
       number<size_t>(65536, size_t{1} << 32, [](EngineConfig& c, size_t v) { c.stack.reassembly.max_bytes = v; })},
      {{"icmp_errors_per_s", "USTACK_ICMP_ERRORS_PER_S", "ICMP errors sent per second, 0 = unlimited (default 1000)"},
       number<uint32_t>(0, 1000000, [](EngineConfig& c, uint32_t v) { c.stack.icmp_errors_per_s = v; })},
      {{"tcp_time_wait_s", "USTACK_TCP_TIME_WAIT_S", "seconds in TIME-WAIT, 2 MSL (default 60, like Linux)"},
       number<uint32_t>(1, 600, [](EngineConfig& c, uint32_t v) { c.stack.tcp.time_wait = std::chrono::seconds(v); })},
      {{"tcp_max_time_wait", "USTACK_TCP_MAX_TIME_WAIT", "TIME-WAIT entries kept; the oldest goes beyond (default 16384)"},
       number<size_t>(1, size_t{1} << 24, [](EngineConfig& c, size_t v) { c.stack.tcp.max_time_wait = v; })},
      {{"tcp_fin_timeout_s", "USTACK_TCP_FIN_TIMEOUT_S", "seconds a closed socket waits in FIN-WAIT-2 (default 60)"},
       number<uint32_t>(1, 600, [](EngineConfig& c, uint32_t v) { c.stack.tcp.fin_wait2_timeout = std::chrono::seconds(v); })},
      {{"tcp_rto_min_ms", "USTACK_TCP_RTO_MIN_MS", "floor of the retransmission timeout (default 200, like Linux; RFC 6298 says 1000)"},
       number<uint32_t>(1, 60000, [](EngineConfig& c, uint32_t v) { c.stack.tcp.rto.min = std::chrono::milliseconds(v); })},
      {{"tcp_delayed_ack_ms", "USTACK_TCP_DELAYED_ACK_MS", "longest an ACK is delayed (default 40; RFC 1122 allows 500)"},
       number<uint32_t>(1, 500, [](EngineConfig& c, uint32_t v) { c.stack.tcp.delayed_ack = std::chrono::milliseconds(v); })},
      {{"tcp_syn_retries", "USTACK_TCP_SYN_RETRIES", "SYN retransmissions before connect fails with ETIMEDOUT (default 6: 127 s)"},
       number<int>(1, 20, [](EngineConfig& c, int v) { c.stack.tcp.syn_retries = v; })},
      {{"tcp_rcvbuf", "USTACK_TCP_RCVBUF", "default SO_RCVBUF of TCP sockets; the window is half of it (default 131072)"},
       number<size_t>(4096, size_t{64} << 20, [](EngineConfig& c, size_t v) { c.stack.tcp.rcvbuf = v; })},
      {{"tcp_sndbuf", "USTACK_TCP_SNDBUF", "default SO_SNDBUF of TCP sockets (default 262144)"},
       number<size_t>(4096, size_t{64} << 20, [](EngineConfig& c, size_t v) { c.stack.tcp.sndbuf = v; })},
      {{"threaded", "USTACK_THREADED", "true: each engine runs on a thread of its own and calls take its lock; false: engines run to completion inside the calls, and a call made while another thread drives the engine is handed to it (default false)"},
       [](EngineConfig& c, std::string_view v) -> std::string {
         if (v == "true" || v == "1") {
           c.threaded = true;
         } else if (v == "false" || v == "0") {
           c.threaded = false;
         } else {
           return "expected true or false";
         }
         return "";
       }},
      {{"idle_spin_us", "USTACK_IDLE_SPIN_US", "µs of busy polling after the last frame before the engine naps (default 200)"},
       number<uint32_t>(0, 10000000, [](EngineConfig& c, uint32_t v) { c.idle_spin = std::chrono::microseconds(v); })},
      {{"idle_sleep_us", "USTACK_IDLE_SLEEP_US", "longest nap of an idle engine in µs: its worst added latency (default 1000)"},
       number<uint32_t>(0, 1000000, [](EngineConfig& c, uint32_t v) { c.idle_sleep_max = std::chrono::microseconds(v); })},
  };
  return defs;
}

std::string validate(const EngineConfig& c) {
  if (c.stack.gateway && *c.stack.gateway == c.stack.address.addr) {
    return "gw / USTACK_GW: the gateway " + c.stack.gateway->to_string() + " is our own address";
  }
  if (c.stack.gateway && !c.stack.address.contains(*c.stack.gateway)) {
    return "gw / USTACK_GW: gateway " + c.stack.gateway->to_string() + " is not on our subnet " +
           c.stack.address.to_string();
  }
  return "";
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = [] {
    std::vector<ConfigKey> k;
    for (const KeyDef& d : key_defs()) k.push_back(d.key);
    return k;
  }();
  return keys;
}

Result<EngineConfig, std::string> load_config(const std::string& path,
                                              const std::map<std::string, std::string>& env) {
  EngineConfig c;
  c.stack.seed = std::random_device{}() | uint64_t{std::random_device{}()} << 32;
  if (!path.empty()) {
    toml::table table;
    try {
      table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      return unexpected(std::string("config file ") + path + ": " + std::string(e.description()));
    }
    for (const auto& [name, node] : table) {
      auto def = std::find_if(key_defs().begin(), key_defs().end(),
                              [&](const KeyDef& d) { return name.str() == d.key.toml; });
      if (def == key_defs().end()) {
        return unexpected(path + ": unknown key '" + std::string(name.str()) + "'");
      }
      std::string text;
      if (auto s = node.value<std::string>(); s && node.is_string()) {
        text = *s;
      } else if (auto i = node.value<int64_t>(); i && node.is_integer()) {
        text = std::to_string(*i);
      } else if (auto b = node.value<bool>(); b && node.is_boolean()) {
        text = *b ? "true" : "false";
      } else {
        return unexpected(path + ": key '" + std::string(name.str()) + "' must be a string, an integer or a boolean");
      }
      if (std::string err = def->apply(c, text); !err.empty()) {
        return unexpected(path + ": key '" + std::string(def->key.toml) + "' = '" + text + "': " + err);
      }
    }
  }
  for (const KeyDef& d : key_defs()) {
    auto it = env.find(d.key.env);
    if (it == env.end()) continue;
    if (std::string err = d.apply(c, it->second); !err.empty()) {
      return unexpected(std::string(d.key.env) + "='" + it->second + "': " + err);
    }
  }
  if (std::string err = validate(c); !err.empty()) return unexpected(err);
  return c;
}

std::map<std::string, std::string> ustack_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (!kv.starts_with("USTACK_")) continue;
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

}  // namespace ustack::api
