#pragma once
// RFC 792 ICMP messages: echo, destination unreachable, time exceeded. Others are parsed so they
// can be counted, and otherwise ignored (RFC 1122 §3.2.2: silently discard unknown types).

#include <cstdint>
#include <optional>
#include <span>

#include "base/bytes.h"
#include "base/checksum.h"
#include "base/result.h"

namespace ustack::ip {

enum class IcmpType : uint8_t {
  kEchoReply = 0,
  kDestUnreachable = 3,
  kEchoRequest = 8,
  kTimeExceeded = 11,
};

/// Codes of Destination Unreachable (RFC 792, RFC 1122 §3.2.2.1).
enum class UnreachableCode : uint8_t {
  kNet = 0,
  kHost = 1,
  kProtocol = 2,
  kPort = 3,
  kFragmentationNeeded = 4,
  kSourceRouteFailed = 5,
  kNetProhibited = 9,
  kHostProhibited = 10,
  kAdminProhibited = 13,
};

enum class IcmpError { kTruncated, kBadChecksum };

class IcmpMessage {
 public:
  static constexpr size_t kHeaderLen = 8;
  static std::optional<IcmpMessage> parse(std::span<const uint8_t> bytes) {
    if (bytes.size() < kHeaderLen) return std::nullopt;
    return IcmpMessage(bytes);
  }
  uint8_t type() const { return b_[0]; }
  uint8_t code() const { return b_[1]; }
  uint16_t checksum() const { return load_be16(b_.data() + 2); }
  uint32_t rest_of_header() const { return load_be32(b_.data() + 4); }
  std::span<const uint8_t> data() const { return b_.subspan(kHeaderLen); }
  bool checksum_ok() const { return internet_checksum(b_) == 0; }

 private:
  explicit IcmpMessage(std::span<const uint8_t> b) : b_(b) {}
  std::span<const uint8_t> b_;
};

struct IcmpRepr {
  uint8_t type = 0;
  uint8_t code = 0;
  /// The second header word: identifier and sequence for echo, next-hop MTU for code 4, unused
  /// (zero) otherwise.
  uint32_t rest_of_header = 0;
  /// Echo data, or for errors the offending datagram's IP header and leading payload bytes.
  std::span<const uint8_t> data;

  static Result<IcmpRepr, IcmpError> parse(std::span<const uint8_t> bytes);
  uint16_t echo_ident() const { return static_cast<uint16_t>(rest_of_header >> 16); }
  uint16_t echo_seq() const { return static_cast<uint16_t>(rest_of_header); }
  size_t len() const { return IcmpMessage::kHeaderLen + data.size(); }
  /// Writes header and data with the checksum filled. Precondition: out.size() >= len().
  void emit(std::span<uint8_t> out) const;
};

}  // namespace ustack::ip
