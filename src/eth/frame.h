#pragma once
// Ethernet II frames (IEEE 802.3 with an EtherType). No VLAN tags: tagged frames are an unknown
// EtherType and are dropped and counted.

#include <cstdint>
#include <optional>
#include <span>

#include "base/bytes.h"
#include "base/ipv4_addr.h"

namespace ustack::eth {

enum class EtherType : uint16_t { kIpv4 = 0x0800, kArp = 0x0806 };

/// A length-checked view of a received frame: after parse() no accessor reads out of bounds.
class Frame {
 public:
  static constexpr size_t kHeaderLen = 14;
  static std::optional<Frame> parse(std::span<const uint8_t> bytes) {
    if (bytes.size() < kHeaderLen) return std::nullopt;
    return Frame(bytes);
  }
  MacAddr dst() const { return MacAddr::load(b_.data() + kDst); }
  MacAddr src() const { return MacAddr::load(b_.data() + kSrc); }
  uint16_t ethertype() const { return load_be16(b_.data() + kType); }
  std::span<const uint8_t> payload() const { return b_.subspan(kHeaderLen); }

 private:
  explicit Frame(std::span<const uint8_t> b) : b_(b) {}
  static constexpr size_t kDst = 0, kSrc = 6, kType = 12;
  std::span<const uint8_t> b_;
};

/// The header's fields, checked and typed.
struct FrameRepr {
  MacAddr dst;
  MacAddr src;
  uint16_t ethertype = 0;

  static std::optional<FrameRepr> parse(std::span<const uint8_t> bytes) {
    auto f = Frame::parse(bytes);
    if (!f) return std::nullopt;
    return FrameRepr{f->dst(), f->src(), f->ethertype()};
  }
  static constexpr size_t header_len() { return Frame::kHeaderLen; }
  /// Writes the header into out[0, 14). Precondition: out.size() >= 14.
  void emit(std::span<uint8_t> out) const {
    dst.store(out.data());
    src.store(out.data() + 6);
    store_be16(out.data() + 12, ethertype);
  }
  bool operator==(const FrameRepr&) const = default;
};

}  // namespace ustack::eth
