#pragma once
// Everything the protocol core can be told, as one runtime struct (no #if matrices). The API
// layer fills it from the TOML file and the USTACK_* environment variables.

#include <cstdint>
#include <optional>

#include "base/flow_hash.h"
#include "base/ipv4_addr.h"
#include "eth/arp_cache.h"
#include "ip/reassembler.h"
#include "tcp/tcp_config.h"
#include "udp/udp_layer.h"

namespace ustack {

struct StackConfig {
  Ipv4Cidr address{Ipv4Addr(198, 18, 0, 2), 24};
  std::optional<Ipv4Addr> gateway;
  uint16_t mtu = 0;         ///< 0: the device's; otherwise at most the device's
  uint64_t seed = 0;        ///< the random source (ephemeral ports, IP IDs); fixed in tests
  uint8_t ttl = 64;         ///< RFC 1122 §3.2.1.7: never 0
  uint32_t icmp_errors_per_s = 1000;
  uint32_t icmp_error_burst = 50;
  size_t loopback_queue_limit = 4096;  ///< frames to 127/8 or to ourselves awaiting the next poll
  bool gratuitous_arp = true;          ///< announce our address at start (RFC 5227 §2.3)
  /// One of several engines on one device (USTACK_CORES): each sees every ARP frame and keeps its
  /// own cache, engine 0 alone answers requests and announces the address, and active opens take
  /// source ports whose flows hash to this engine (base/flow_hash.h).
  EngineShare engine;
  eth::ArpConfig arp;
  ip::ReassemblyConfig reassembly;
  udp::UdpConfig udp;
  tcp::TcpConfig tcp;
};

}  // namespace ustack
