#pragma once
// RFC 768 UDP header.

#include <cstdint>
#include <span>

#include "base/bytes.h"
#include "base/ipv4_addr.h"
#include "base/result.h"

namespace ustack::udp {

enum class UdpError { kTruncated, kBadLength, kBadChecksum };

class Datagram {
 public:
  static constexpr size_t kHeaderLen = 8;
  /// Checks 8 <= length field <= bytes.size(); bytes past the length field are not the datagram's.
  static Result<Datagram, UdpError> parse(std::span<const uint8_t> bytes) {
    if (bytes.size() < kHeaderLen) return unexpected(UdpError::kTruncated);
    Datagram d(bytes);
    if (d.length() < kHeaderLen) return unexpected(UdpError::kBadLength);
    if (d.length() > bytes.size()) return unexpected(UdpError::kTruncated);
    return d;
  }
  uint16_t src_port() const { return load_be16(b_.data() + 0); }
  uint16_t dst_port() const { return load_be16(b_.data() + 2); }
  uint16_t length() const { return load_be16(b_.data() + 4); }
  uint16_t checksum() const { return load_be16(b_.data() + 6); }
  std::span<const uint8_t> payload() const { return b_.subspan(kHeaderLen, length() - kHeaderLen); }
  std::span<const uint8_t> bytes() const { return b_.first(length()); }

 private:
  explicit Datagram(std::span<const uint8_t> b) : b_(b) {}
  std::span<const uint8_t> b_;
};

struct UdpRepr {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  std::span<const uint8_t> payload;

  /// Parses and, unless `checksum_verified` (by the NIC) or the sender sent none (zero, allowed
  /// over IPv4 by RFC 768), checks the checksum over the pseudo-header.
  static Result<UdpRepr, UdpError> parse(std::span<const uint8_t> bytes, Ipv4Addr src, Ipv4Addr dst,
                                         bool checksum_verified = false);
  size_t len() const { return Datagram::kHeaderLen + payload.size(); }
  /// `out` is the whole datagram, payload already in place after 8 bytes of room (the send path
  /// copies user bytes straight into the frame); writes the header. `fill_checksum` false: put the
  /// pseudo-header sum there for a NIC to finish.
  static void emit_header(std::span<uint8_t> out, uint16_t src_port, uint16_t dst_port, Ipv4Addr src,
                          Ipv4Addr dst, bool fill_checksum = true);
};

}  // namespace ustack::udp
