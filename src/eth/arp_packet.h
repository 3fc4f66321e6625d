#pragma once
// RFC 826 ARP for Ethernet hardware and IPv4 protocol addresses: the only pair we speak.

#include <cstdint>
#include <optional>
#include <span>

#include "base/bytes.h"
#include "base/ipv4_addr.h"

namespace ustack::eth {

enum class ArpOp : uint16_t { kRequest = 1, kReply = 2 };

class ArpPacket {
 public:
  static constexpr size_t kLen = 28;
  static std::optional<ArpPacket> parse(std::span<const uint8_t> bytes) {
    if (bytes.size() < kLen) return std::nullopt;
    return ArpPacket(bytes);
  }
  uint16_t hardware_type() const { return load_be16(b_.data() + 0); }
  uint16_t protocol_type() const { return load_be16(b_.data() + 2); }
  uint8_t hardware_len() const { return b_[4]; }
  uint8_t protocol_len() const { return b_[5]; }
  uint16_t operation() const { return load_be16(b_.data() + 6); }
  MacAddr sender_mac() const { return MacAddr::load(b_.data() + 8); }
  Ipv4Addr sender_ip() const { return Ipv4Addr::load(b_.data() + 14); }
  MacAddr target_mac() const { return MacAddr::load(b_.data() + 18); }
  Ipv4Addr target_ip() const { return Ipv4Addr::load(b_.data() + 24); }

 private:
  explicit ArpPacket(std::span<const uint8_t> b) : b_(b) {}
  std::span<const uint8_t> b_;
};

struct ArpRepr {
  ArpOp op = ArpOp::kRequest;
  MacAddr sender_mac;
  Ipv4Addr sender_ip;
  MacAddr target_mac;
  Ipv4Addr target_ip;

  /// Rejects anything but Ethernet/IPv4 with a request or reply operation.
  static std::optional<ArpRepr> parse(std::span<const uint8_t> bytes) {
    auto p = ArpPacket::parse(bytes);
    if (!p || p->hardware_type() != 1 || p->protocol_type() != 0x0800 || p->hardware_len() != 6 ||
        p->protocol_len() != 4)
      return std::nullopt;
    if (p->operation() != 1 && p->operation() != 2) return std::nullopt;
    return ArpRepr{static_cast<ArpOp>(p->operation()), p->sender_mac(), p->sender_ip(), p->target_mac(),
                   p->target_ip()};
  }
  static constexpr size_t len() { return ArpPacket::kLen; }
  /// Precondition: out.size() >= 28.
  void emit(std::span<uint8_t> out) const {
    store_be16(out.data() + 0, 1);
    store_be16(out.data() + 2, 0x0800);
    out[4] = 6;
    out[5] = 4;
    store_be16(out.data() + 6, static_cast<uint16_t>(op));
    sender_mac.store(out.data() + 8);
    sender_ip.store(out.data() + 14);
    target_mac.store(out.data() + 18);
    target_ip.store(out.data() + 24);
  }
  bool operator==(const ArpRepr&) const = default;
};

}  // namespace ustack::eth
