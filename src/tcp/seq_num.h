#pragma once
// RFC 9293 §3.4 sequence numbers: 32-bit, compared modulo 2^32 (a is "before" b when b - a, as a
// signed 32-bit difference, is positive). Never compare raw uint32_t with `<`.

#include <compare>
#include <cstdint>

namespace ustack::tcp {

class SeqNum {
 public:
  constexpr SeqNum() = default;
  constexpr explicit SeqNum(uint32_t v) : v_(v) {}
  constexpr uint32_t raw() const { return v_; }

  constexpr SeqNum operator+(uint32_t n) const { return SeqNum(v_ + n); }
  constexpr SeqNum operator-(uint32_t n) const { return SeqNum(v_ - n); }
  constexpr SeqNum& operator+=(uint32_t n) { return *this = *this + n; }
  /// The signed distance from `other` to this (positive: this is after other).
  constexpr int32_t operator-(SeqNum other) const { return static_cast<int32_t>(v_ - other.v_); }

  constexpr bool operator==(const SeqNum&) const = default;
  constexpr std::strong_ordering operator<=>(SeqNum other) const { return (*this - other) <=> 0; }

  /// RFC 9293's "lo <= x < hi" over the wrapping space (an empty window holds nothing).
  constexpr bool in_window(SeqNum lo, uint32_t size) const { return static_cast<uint32_t>(v_ - lo.v_) < size; }

 private:
  uint32_t v_ = 0;
};

constexpr SeqNum max(SeqNum a, SeqNum b) { return a < b ? b : a; }
constexpr SeqNum min(SeqNum a, SeqNum b) { return a < b ? a : b; }

}  // namespace ustack::tcp
