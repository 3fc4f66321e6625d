#pragma once
// IPv4 and Ethernet (MAC) addresses as value types.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"

namespace ustack {

/// An IPv4 address held in host byte order so that comparisons and masks read naturally.
class Ipv4Addr {
 public:
  constexpr Ipv4Addr() = default;
  constexpr explicit Ipv4Addr(uint32_t host_order) : value_(host_order) {}
  constexpr Ipv4Addr(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
      : value_(uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d) {}
  static Ipv4Addr load(const uint8_t* p) { return Ipv4Addr(load_be32(p)); }
  void store(uint8_t* p) const { store_be32(p, value_); }

  /// Parses dotted-quad text ("198.18.0.2"); nothing else is accepted.
  static std::optional<Ipv4Addr> parse(std::string_view text);
  std::string to_string() const;

  constexpr uint32_t value() const { return value_; }
  constexpr bool is_unspecified() const { return value_ == 0; }
  constexpr bool is_broadcast() const { return value_ == 0xffffffff; }
  constexpr bool is_multicast() const { return (value_ >> 28) == 0xe; }
  constexpr bool is_loopback() const { return (value_ >> 24) == 127; }
  constexpr auto operator<=>(const Ipv4Addr&) const = default;

  static constexpr Ipv4Addr any() { return Ipv4Addr(); }
  static constexpr Ipv4Addr broadcast() { return Ipv4Addr(0xffffffff); }

 private:
  uint32_t value_ = 0;
};

/// An address with its prefix length: the interface's subnet ("198.18.0.2/24").
struct Ipv4Cidr {
  Ipv4Addr addr;
  uint8_t prefix_len = 32;

  static std::optional<Ipv4Cidr> parse(std::string_view text);
  constexpr uint32_t mask() const { return prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - prefix_len); }
  constexpr bool contains(Ipv4Addr a) const { return (a.value() & mask()) == (addr.value() & mask()); }
  constexpr Ipv4Addr subnet_broadcast() const { return Ipv4Addr(addr.value() | ~mask()); }
  std::string to_string() const;
};

class MacAddr {
 public:
  constexpr MacAddr() = default;
  constexpr explicit MacAddr(std::array<uint8_t, 6> b) : bytes_(b) {}
  static MacAddr load(const uint8_t* p) {
    MacAddr m;
    for (int i = 0; i < 6; ++i) m.bytes_[i] = p[i];
    return m;
  }
  void store(uint8_t* p) const {
    for (int i = 0; i < 6; ++i) p[i] = bytes_[i];
  }
  static std::optional<MacAddr> parse(std::string_view text);
  std::string to_string() const;

  constexpr const std::array<uint8_t, 6>& bytes() const { return bytes_; }
  constexpr bool is_broadcast() const { return *this == broadcast(); }
  constexpr bool is_multicast() const { return bytes_[0] & 1; }
  constexpr bool is_zero() const { return *this == MacAddr(); }
  constexpr auto operator<=>(const MacAddr&) const = default;
  static constexpr MacAddr broadcast() { return MacAddr({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}); }

 private:
  std::array<uint8_t, 6> bytes_{};
};

template <typename H>
H AbslHashValue(H h, Ipv4Addr a) {
  return H::combine(std::move(h), a.value());
}

}  // namespace ustack
