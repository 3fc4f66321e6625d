#pragma once
// The boundary between transports and IPv4: what UDP (and TCP) need to send a datagram.

#include <cstdint>

#include "base/instant.h"
#include "base/ipv4_addr.h"
#include "base/packet.h"
#include "base/result.h"

namespace ustack::ip {

/// Where a datagram to one destination goes, decided once per send (or once per connect).
struct Route {
  Ipv4Addr src;        ///< the source address to use
  Ipv4Addr dst;
  Ipv4Addr next_hop;   ///< dst on the local subnet, else the gateway
  uint16_t mtu = 1500;
  bool loopback = false;   ///< delivered inside the stack, never reaches the device
  bool broadcast = false;
  bool udp_checksum_offload = false;  ///< the device will finish UDP checksums
  bool tcp_checksum_offload = false;  ///< the device will finish TCP checksums
};

class IpOutput {
 public:
  /// Routes `dst`; ENETUNREACH when neither the subnet nor a gateway reaches it.
  virtual Result<Route, int> route(Ipv4Addr dst) = 0;
  /// A buffer for `payload_len` transport bytes with room in front for the IP and link headers.
  /// Larger than one device buffer: a heap buffer, fragmented (copied) on send.
  virtual Packet alloc_datagram(size_t payload_len) = 0;
  /// Prepends the IPv4 header (src/dst from `route`, `protocol`, `tos`, DF when `dont_fragment`) and
  /// sends, fragmenting when the packet is larger than the route's MTU and DF is clear. Returns 0
  /// or an errno (EMSGSIZE: too big with DF, ENOBUFS: no buffer).
  virtual int send_datagram(Instant now, const Route& route, uint8_t protocol, Packet payload,
                            bool dont_fragment, uint8_t tos = 0) = 0;
  /// Hands a received IP packet (from its IP header) to another engine of the same device, which
  /// receives it as if it had come there (Device::hand_over_to). False: not taken.
  virtual bool hand_over(uint32_t engine, Packet& ip_packet) {
    (void)engine;
    (void)ip_packet;
    return false;
  }

 protected:
  ~IpOutput() = default;
};

}  // namespace ustack::ip
