#pragma once
// RFC 9293 §3.1 TCP header and the options of RFC 9293 §3.2 (MSS), RFC 7323 (window scale,
// timestamps) and RFC 2018 (SACK). Unknown options are skipped by their length; an option whose
// length is malformed makes the whole segment malformed (RFC 9293 §3.2: MUST be prepared to
// handle an illegal option length without crashing; we drop the segment).

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "base/bytes.h"
#include "base/ipv4_addr.h"
#include "base/result.h"
#include "tcp/seq_num.h"

namespace ustack::tcp {

enum TcpFlag : uint8_t {
  kFin = 0x01,
  kSyn = 0x02,
  kRst = 0x04,
  kPsh = 0x08,
  kAck = 0x10,
  kUrg = 0x20,
  kEce = 0x40,
  kCwr = 0x80,
};

enum class SegmentError { kTruncated, kBadDataOffset, kBadChecksum, kBadOption };

class Segment {
 public:
  static constexpr size_t kMinHeaderLen = 20;
  static constexpr size_t kMaxHeaderLen = 60;
  /// Checks 20 <= data offset * 4 <= bytes.size(); the payload is everything after the header.
  static Result<Segment, SegmentError> parse(std::span<const uint8_t> bytes) {
    if (bytes.size() < kMinHeaderLen) return unexpected(SegmentError::kTruncated);
    Segment s(bytes);
    if (s.header_len() < kMinHeaderLen) return unexpected(SegmentError::kBadDataOffset);
    if (s.header_len() > bytes.size()) return unexpected(SegmentError::kTruncated);
    return s;
  }
  uint16_t src_port() const { return load_be16(b_.data() + 0); }
  uint16_t dst_port() const { return load_be16(b_.data() + 2); }
  SeqNum seq() const { return SeqNum(load_be32(b_.data() + 4)); }
  SeqNum ack() const { return SeqNum(load_be32(b_.data() + 8)); }
  size_t header_len() const { return static_cast<size_t>(b_[12] >> 4) * 4; }
  uint8_t flags() const { return b_[13]; }
  uint16_t window() const { return load_be16(b_.data() + 14); }
  uint16_t checksum() const { return load_be16(b_.data() + 16); }
  uint16_t urgent() const { return load_be16(b_.data() + 18); }
  std::span<const uint8_t> options() const { return b_.subspan(kMinHeaderLen, header_len() - kMinHeaderLen); }
  std::span<const uint8_t> payload() const { return b_.subspan(header_len()); }

 private:
  explicit Segment(std::span<const uint8_t> b) : b_(b) {}
  std::span<const uint8_t> b_;
};

/// A SACK block (RFC 2018 §3): [left, right).
struct SackBlock {
  SeqNum left;
  SeqNum right;
  bool operator==(const SackBlock&) const = default;
};

struct TcpOptions {
  std::optional<uint16_t> mss;
  std::optional<uint8_t> window_scale;  ///< as sent; RFC 7323 §2.3 caps its use at 14
  bool sack_permitted = false;
  struct Timestamps {
    uint32_t value;
    uint32_t echo_reply;
    bool operator==(const Timestamps&) const = default;
  };
  std::optional<Timestamps> timestamps;
  std::array<SackBlock, 4> sack{};
  uint8_t sack_count = 0;

  /// Parses an option list; nullopt when an option's length is illegal.
  static std::optional<TcpOptions> parse(std::span<const uint8_t> bytes);
  /// Bytes emit() writes: the options, padded with NOPs/EOL to a multiple of 4.
  size_t len() const;
  /// Writes the options in the order Linux uses (MSS, SACK-permitted + timestamps, window scale,
  /// SACK blocks), aligned with NOPs. Precondition: out.size() >= len().
  void emit(std::span<uint8_t> out) const;
  bool operator==(const TcpOptions&) const = default;
};

struct SegmentRepr {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  SeqNum seq;
  SeqNum ack;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint16_t urgent = 0;
  TcpOptions options;
  std::span<const uint8_t> payload;

  /// Parses and, unless `checksum_verified` by the NIC, checks the checksum over the pseudo-header.
  static Result<SegmentRepr, SegmentError> parse(std::span<const uint8_t> bytes, Ipv4Addr src, Ipv4Addr dst,
                                                 bool checksum_verified = false);
  size_t header_len() const { return Segment::kMinHeaderLen + options.len(); }
  /// The sequence space the segment occupies: payload plus one for SYN and one for FIN.
  uint32_t seq_len() const {
    return static_cast<uint32_t>(payload.size()) + ((flags & kSyn) ? 1 : 0) + ((flags & kFin) ? 1 : 0);
  }
  /// `out` is the whole segment with the payload already in place after header_len() bytes (the
  /// send path copies it there first); writes the header. `fill_checksum` false: the pseudo-header
  /// sum for a NIC to finish.
  void emit_header(std::span<uint8_t> out, Ipv4Addr src, Ipv4Addr dst, bool fill_checksum = true) const;
};

}  // namespace ustack::tcp
