#pragma once
// Several timers of one owner on a single wheel entry, armed at the earliest of their deadlines.
// A TCP connection has three (retransmission, delayed ACK, keepalive); three entries cost 168
// bytes per connection, this costs 88, and the wheel holds one link per connection instead of up
// to three. The semantics are the wheel's own: a timer fires at the first expiry at or after its
// deadline, once; cancelling or re-arming a due timer that has not fired yet stops it firing;
// a timer armed by a callback with a deadline already passed fires on the next expiry.

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/instant.h"
#include "base/timer_wheel.h"

namespace ustack {

template <size_t N>
class TimerSet {
  static_assert(N <= 8, "the firing set is a byte");

 public:
  /// `owner` is told of the entry's expiry and calls expire() from its on_timer().
  explicit TimerSet(TimerClient* owner) : entry_(owner) { deadlines_.fill(Instant::max()); }

  bool armed(size_t kind) const { return deadlines_[kind] != Instant::max(); }
  /// Another owner for a set that is idle().
  void set_owner(TimerClient* owner) { entry_.client = owner; }
  /// None armed, none due.
  bool idle() const {
    for (const Instant d : deadlines_) {
      if (d != Instant::max()) return false;
    }
    return firing_ == 0;
  }

  void arm(TimerWheel& wheel, size_t kind, Instant deadline) {
    deadlines_[kind] = deadline;
    firing_ &= static_cast<uint8_t>(~(1u << kind));
    if (!entry_.armed() || deadline < entry_.deadline) wheel.schedule(entry_, deadline);
  }

  void disarm(TimerWheel& wheel, size_t kind) {
    firing_ &= static_cast<uint8_t>(~(1u << kind));
    if (!armed(kind)) return;
    const bool was_earliest = entry_.armed() && deadlines_[kind] == entry_.deadline;
    deadlines_[kind] = Instant::max();
    if (was_earliest) rearm(wheel);
  }

  void disarm_all(TimerWheel& wheel) {
    deadlines_.fill(Instant::max());
    firing_ = 0;
    wheel.cancel(entry_);
  }

  /// From the owner's on_timer(): calls fire(kind) for each timer due at `now` (in kind order),
  /// then puts the entry back on the wheel for those still armed.
  template <typename Fire>
  void expire(TimerWheel& wheel, Instant now, Fire&& fire) {
    for (size_t k = 0; k < N; ++k) {
      if (deadlines_[k] <= now) {
        deadlines_[k] = Instant::max();
        firing_ |= static_cast<uint8_t>(1u << k);
      }
    }
    for (size_t k = 0; k < N; ++k) {
      const auto bit = static_cast<uint8_t>(1u << k);
      if (!(firing_ & bit)) continue;
      firing_ &= static_cast<uint8_t>(~bit);
      fire(k);
    }
    rearm(wheel);
  }

 private:
  void rearm(TimerWheel& wheel) {
    Instant earliest = Instant::max();
    for (const Instant d : deadlines_) earliest = d < earliest ? d : earliest;
    if (earliest == Instant::max()) {
      wheel.cancel(entry_);
    } else if (!entry_.armed() || entry_.deadline != earliest) {
      wheel.schedule(entry_, earliest);
    }
  }

  TimerEntry entry_;
  std::array<Instant, N> deadlines_;  // Instant::max(): not armed
  uint8_t firing_ = 0;                // due at this expiry and not fired, cancelled or re-armed yet
};

}  // namespace ustack
