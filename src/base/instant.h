#pragma once
// Time as data: the protocol core never reads a clock; every entry point is handed `now`.

#include <chrono>
#include <compare>
#include <cstdint>
#include <limits>

namespace ustack {

using Duration = std::chrono::nanoseconds;
using namespace std::chrono_literals;

/// A point in time, in nanoseconds since an arbitrary epoch chosen by whoever drives the stack
/// (the engine uses steady_clock; tests use a ManualClock starting at zero).
class Instant {
 public:
  constexpr Instant() = default;
  static constexpr Instant from_ns(int64_t ns) { return Instant(ns); }
  static constexpr Instant max() { return Instant(std::numeric_limits<int64_t>::max()); }

  constexpr int64_t ns() const { return ns_; }

  constexpr Instant operator+(Duration d) const { return Instant(saturating_add(ns_, d.count())); }
  constexpr Instant operator-(Duration d) const { return Instant(ns_ - d.count()); }
  constexpr Duration operator-(Instant other) const { return Duration(ns_ - other.ns_); }
  constexpr Instant& operator+=(Duration d) { return *this = *this + d; }
  constexpr auto operator<=>(const Instant&) const = default;

 private:
  constexpr explicit Instant(int64_t ns) : ns_(ns) {}
  static constexpr int64_t saturating_add(int64_t a, int64_t b) {
    if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) return std::numeric_limits<int64_t>::max();
    return a + b;
  }
  int64_t ns_ = 0;
};

/// A clock that moves only when told to: the clock of every deterministic test.
class ManualClock {
 public:
  Instant now() const { return now_; }
  void advance(Duration d) { now_ += d; }
  void set(Instant t) { now_ = t; }

 private:
  Instant now_;
};

}  // namespace ustack
