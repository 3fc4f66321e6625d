#pragma once
// RFC 791 IPv4 header. Options are accepted and skipped (RFC 1122 §3.2.1.8 lets a host ignore
// the ones it does not implement), never emitted.

#include <cstdint>
#include <span>

#include "base/bytes.h"
#include "base/checksum.h"
#include "base/ipv4_addr.h"
#include "base/result.h"

namespace ustack::ip {

enum class Protocol : uint8_t { kIcmp = 1, kTcp = 6, kUdp = 17 };

enum class Ipv4Error { kTruncated, kBadVersion, kBadHeaderLength, kBadTotalLength, kBadChecksum };

class Ipv4Packet {
 public:
  static constexpr size_t kMinHeaderLen = 20;
  static constexpr uint16_t kDontFragment = 0x4000;
  static constexpr uint16_t kMoreFragments = 0x2000;
  static constexpr uint16_t kOffsetMask = 0x1fff;

  /// Checks everything that bounds the accessors: version 4, IHL >= 5, IHL*4 <= total length <=
  /// bytes.size(). Bytes past the total length (Ethernet padding) are not part of the packet.
  static Result<Ipv4Packet, Ipv4Error> parse(std::span<const uint8_t> bytes);

  uint8_t version() const { return b_[0] >> 4; }
  size_t header_len() const { return size_t{b_[0] & 0x0fu} * 4; }
  uint8_t tos() const { return b_[1]; }
  uint16_t total_len() const { return load_be16(b_.data() + 2); }
  uint16_t ident() const { return load_be16(b_.data() + 4); }
  uint16_t flags_fragment() const { return load_be16(b_.data() + 6); }
  uint8_t ttl() const { return b_[8]; }
  uint8_t protocol() const { return b_[9]; }
  uint16_t checksum() const { return load_be16(b_.data() + 10); }
  Ipv4Addr src() const { return Ipv4Addr::load(b_.data() + 12); }
  Ipv4Addr dst() const { return Ipv4Addr::load(b_.data() + 16); }
  bool header_checksum_ok() const { return internet_checksum(b_.first(header_len())) == 0; }
  std::span<const uint8_t> header() const { return b_.first(header_len()); }
  std::span<const uint8_t> payload() const { return b_.subspan(header_len(), total_len() - header_len()); }

 private:
  explicit Ipv4Packet(std::span<const uint8_t> b) : b_(b) {}
  std::span<const uint8_t> b_;
};

struct Ipv4Repr {
  Ipv4Addr src;
  Ipv4Addr dst;
  uint8_t protocol = 0;
  uint8_t ttl = 64;
  uint8_t tos = 0;
  uint16_t ident = 0;
  bool dont_fragment = false;
  bool more_fragments = false;
  uint16_t fragment_offset = 0;  ///< in bytes (a multiple of 8)
  uint16_t payload_len = 0;
  uint8_t header_len = 20;  ///< as received; emit() always writes 20 (no options)

  /// Parses and checks the header. `checksum_verified`: the NIC already checked it.
  static Result<Ipv4Repr, Ipv4Error> parse(std::span<const uint8_t> bytes, bool checksum_verified = false);
  bool is_fragment() const { return more_fragments || fragment_offset != 0; }
  static constexpr size_t emitted_header_len() { return 20; }
  /// Writes a 20-byte header into out[0, 20). With `fill_checksum` false the checksum field is
  /// left zero for the NIC to fill. Precondition: out.size() >= 20.
  void emit(std::span<uint8_t> out, bool fill_checksum = true) const;
  bool operator==(const Ipv4Repr&) const = default;
};

}  // namespace ustack::ip
