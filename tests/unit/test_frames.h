#pragma once
// Frame builders and a frame reader shared by the unit tests. Builders go through the Repr types'
// emit(); the reader checks every checksum it can, so a test never accepts a frame a real peer
// would drop. Helpers take the caller's std::source_location so failures point at the test line.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/checksum.h"
#include "base/ipv4_addr.h"
#include "base/packet.h"
#include "eth/arp_packet.h"
#include "eth/frame.h"
#include "ip/icmp_message.h"
#include "ip/ipv4_packet.h"
#include "udp/datagram.h"

namespace ustack {
// Readable gtest failure messages for the address types.
inline void PrintTo(Ipv4Addr a, std::ostream* os) { *os << a.to_string(); }
inline void PrintTo(MacAddr m, std::ostream* os) { *os << m.to_string(); }
}  // namespace ustack

namespace ustack::test {

using Bytes = std::vector<uint8_t>;
using Loc = std::source_location;

/// Every gtest assertion made while one of these lives also names the test line that called
/// the helper.
#define USTACK_TRACE_CALLER(loc) ::testing::ScopedTrace ustack_caller_trace((loc).file_name(), (loc).line(), "called from here")

inline Bytes from_hex(std::string_view hex) {
  auto nibble = [](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<uint8_t>(c - 'A' + 10);
    ADD_FAILURE() << "bad hex digit '" << c << "'";
    return 0;
  };
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  return out;
}

inline std::string to_hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

inline Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

/// `n` bytes that are not all alike and never zero (so a truncation always changes a checksum).
inline Bytes pattern(size_t n, uint8_t seed = 0) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(1 + (i * 7 + seed + i / 251) % 255);
  return b;
}

inline Bytes concat(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  Bytes out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

// ---- builders ----------------------------------------------------------------------------

inline Bytes eth_frame(MacAddr dst, MacAddr src, uint16_t ethertype, std::span<const uint8_t> payload) {
  Bytes out(eth::FrameRepr::header_len());
  eth::FrameRepr{dst, src, ethertype}.emit(out);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

inline Bytes arp_payload(const eth::ArpRepr& r) {
  Bytes out(eth::ArpRepr::len());
  r.emit(out);
  return out;
}

/// A 20-byte header (payload_len set from `payload`) followed by `payload`.
inline Bytes ipv4_packet(ip::Ipv4Repr h, std::span<const uint8_t> payload) {
  h.payload_len = static_cast<uint16_t>(payload.size());
  Bytes out(ip::Ipv4Repr::emitted_header_len());
  h.emit(out);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

/// Recomputes the IPv4 header checksum of the packet starting at `ip[0]` (after a test edits it).
/// A header length field a test broke on purpose is clamped to the bytes there are.
inline void fix_ipv4_checksum(Bytes& ip) {
  const size_t ihl = std::clamp(size_t{ip[0] & 0x0fu} * 4, size_t{20}, ip.size());
  store_be16(ip.data() + 10, 0);
  store_be16(ip.data() + 10, internet_checksum({ip.data(), ihl}));
}

inline Bytes icmp_message(uint8_t type, uint8_t code, uint32_t rest, std::span<const uint8_t> data) {
  ip::IcmpRepr r{type, code, rest, data};
  Bytes out(r.len());
  r.emit(out);
  return out;
}

inline Bytes icmp_echo_request(uint16_t ident, uint16_t seq, std::span<const uint8_t> data) {
  return icmp_message(static_cast<uint8_t>(ip::IcmpType::kEchoRequest), 0, uint32_t{ident} << 16 | seq, data);
}

inline Bytes udp_datagram(Ipv4Addr src, Ipv4Addr dst, uint16_t src_port, uint16_t dst_port,
                          std::span<const uint8_t> payload) {
  Bytes out(udp::Datagram::kHeaderLen);
  out.insert(out.end(), payload.begin(), payload.end());
  udp::UdpRepr::emit_header(out, src_port, dst_port, src, dst);
  return out;
}

inline ip::Ipv4Repr ip_header(Ipv4Addr src, Ipv4Addr dst, ip::Protocol protocol, uint16_t ident = 0x4321) {
  ip::Ipv4Repr h;
  h.src = src;
  h.dst = dst;
  h.protocol = static_cast<uint8_t>(protocol);
  h.ident = ident;
  return h;
}

/// Splits an IP payload into fragments of `chunk` bytes (a multiple of 8), each a whole packet.
inline std::vector<Bytes> fragment(ip::Ipv4Repr h, std::span<const uint8_t> payload, size_t chunk) {
  std::vector<Bytes> out;
  for (size_t off = 0; off < payload.size(); off += chunk) {
    const size_t len = std::min(chunk, payload.size() - off);
    h.fragment_offset = static_cast<uint16_t>(off);
    h.more_fragments = off + len < payload.size();
    out.push_back(ipv4_packet(h, payload.subspan(off, len)));
  }
  return out;
}

// ---- reader ------------------------------------------------------------------------------

struct IcmpFields {
  uint8_t type = 0;
  uint8_t code = 0;
  uint32_t rest = 0;
  Bytes data;
  uint16_t ident() const { return static_cast<uint16_t>(rest >> 16); }
  uint16_t seq() const { return static_cast<uint16_t>(rest); }
};

struct UdpFields {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint16_t checksum = 0;
  Bytes payload;
};

/// One frame as a peer would read it. L4 fields are filled for unfragmented IPv4 only.
struct ParsedFrame {
  eth::FrameRepr eth;
  std::optional<eth::ArpRepr> arp;
  std::optional<ip::Ipv4Repr> ip;
  Bytes ip_packet;   ///< the IPv4 header and payload (total-length bytes)
  Bytes ip_payload;  ///< after the header
  std::optional<IcmpFields> icmp;
  std::optional<UdpFields> udp;
};

/// Reads an ICMP message; a bad checksum is a test failure.
inline std::optional<IcmpFields> read_icmp(std::span<const uint8_t> bytes, const Loc& loc = Loc::current()) {
  USTACK_TRACE_CALLER(loc);
  auto icmp = ip::IcmpRepr::parse(bytes);
  if (!icmp) {
    ADD_FAILURE() << "ICMP message does not parse (error " << static_cast<int>(icmp.error()) << "): " << to_hex(bytes);
    return std::nullopt;
  }
  return IcmpFields{icmp->type, icmp->code, icmp->rest_of_header, Bytes(icmp->data.begin(), icmp->data.end())};
}

/// Reads a UDP datagram, checking its checksum over the pseudo-header.
inline std::optional<UdpFields> read_udp(std::span<const uint8_t> bytes, Ipv4Addr src, Ipv4Addr dst,
                                         const Loc& loc = Loc::current()) {
  USTACK_TRACE_CALLER(loc);
  auto udp = udp::UdpRepr::parse(bytes, src, dst);
  if (!udp) {
    ADD_FAILURE() << "UDP datagram does not parse (error " << static_cast<int>(udp.error()) << "): " << to_hex(bytes);
    return std::nullopt;
  }
  const uint16_t checksum = load_be16(bytes.data() + 6);
  EXPECT_NE(checksum, 0) << "a datagram we send always carries a checksum";
  return UdpFields{udp->src_port, udp->dst_port, checksum, Bytes(udp->payload.begin(), udp->payload.end())};
}

inline ParsedFrame parse_frame(std::span<const uint8_t> frame, const Loc& loc = Loc::current()) {
  USTACK_TRACE_CALLER(loc);
  ParsedFrame out;
  auto eth = eth::FrameRepr::parse(frame);
  if (!eth) {
    ADD_FAILURE() << "frame shorter than an Ethernet header: " << to_hex(frame);
    return out;
  }
  out.eth = *eth;
  auto payload = frame.subspan(eth::FrameRepr::header_len());
  if (eth->ethertype == static_cast<uint16_t>(eth::EtherType::kArp)) {
    out.arp = eth::ArpRepr::parse(payload);
    if (!out.arp) ADD_FAILURE() << "ARP payload does not parse: " << to_hex(payload);
    return out;
  }
  if (eth->ethertype != static_cast<uint16_t>(eth::EtherType::kIpv4)) return out;
  auto ip = ip::Ipv4Repr::parse(payload);  // checks the header checksum
  if (!ip) {
    ADD_FAILURE() << "IPv4 packet does not parse (error " << static_cast<int>(ip.error()) << "): " << to_hex(payload);
    return out;
  }
  out.ip = *ip;
  out.ip_packet.assign(payload.begin(), payload.begin() + ip->header_len + ip->payload_len);
  out.ip_payload.assign(out.ip_packet.begin() + ip->header_len, out.ip_packet.end());
  if (ip->is_fragment()) return out;
  if (ip->protocol == static_cast<uint8_t>(ip::Protocol::kIcmp)) out.icmp = read_icmp(out.ip_payload, loc);
  if (ip->protocol == static_cast<uint8_t>(ip::Protocol::kUdp)) out.udp = read_udp(out.ip_payload, ip->src, ip->dst, loc);
  return out;
}

/// Puts fragments (any order) back together: the IP payload, or nothing (and a failure) if they
/// do not make exactly one whole datagram.
inline std::optional<Bytes> reassemble(const std::vector<ParsedFrame>& fragments, const Loc& loc = Loc::current()) {
  USTACK_TRACE_CALLER(loc);
  std::map<uint16_t, const ParsedFrame*> by_offset;
  for (const ParsedFrame& f : fragments) {
    if (!f.ip) {
      ADD_FAILURE() << "not an IPv4 fragment";
      return std::nullopt;
    }
    by_offset[f.ip->fragment_offset] = &f;
  }
  Bytes whole;
  for (auto [offset, f] : by_offset) {
    if (offset != whole.size()) {
      ADD_FAILURE() << "fragment at offset " << offset << " after " << whole.size() << " bytes";
      return std::nullopt;
    }
    EXPECT_EQ(f->ip->ident, fragments.front().ip->ident);
    EXPECT_EQ(f->ip->more_fragments, f != by_offset.rbegin()->second) << "offset " << offset;
    whole.insert(whole.end(), f->ip_payload.begin(), f->ip_payload.end());
  }
  return whole;
}

/// Stands in for a device's buffer pool (a DPDK mempool): counts the buffers given back, so a
/// test sees whether a layer let a device buffer go or kept it.
struct CountingPool : PacketPool {
  int released = 0;
  void release(void* handle) override {
    ++released;
    delete[] static_cast<uint8_t*>(handle);
  }
  /// `bytes` in a 2048-byte buffer of this pool, as a device would receive them.
  Packet packet(std::span<const uint8_t> bytes) {
    auto* buffer = new uint8_t[2048];
    std::copy(bytes.begin(), bytes.end(), buffer);
    return Packet(buffer, 2048, 0, static_cast<uint32_t>(bytes.size()), buffer, this);
  }
};

}  // namespace ustack::test
