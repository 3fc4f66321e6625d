#pragma once
// A hashed timer wheel (Varghese & Lauck): O(1) schedule and cancel, expiry work proportional to
// the ticks that passed plus the timers that fire. Timers are deadlines stored in the objects that
// own them; the wheel only links them, it never allocates.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/instant.h"

namespace ustack {

class TimerWheel;
struct TimerEntry;

/// Whoever owns timers is told when one is due, with the entry so it can tell them apart.
class TimerClient {
 public:
  virtual void on_timer(TimerEntry& entry, Instant now) = 0;

 protected:
  ~TimerClient() = default;
};

/// Embedded in the object a timer belongs to. Destroying an armed entry cancels it.
struct TimerEntry {
  TimerEntry(TimerClient* client, void* context = nullptr) : client(client), context(context) {}
  TimerEntry(const TimerEntry&) = delete;
  TimerEntry& operator=(const TimerEntry&) = delete;
  ~TimerEntry();

  bool armed() const { return wheel != nullptr; }

  TimerClient* client;
  void* context;
  Instant deadline;
  TimerWheel* wheel = nullptr;
  size_t slot = 0;  // which list links it: a wheel slot, or the wheel's firing list
  TimerEntry* prev = nullptr;
  TimerEntry* next = nullptr;
};

class TimerWheel {
 public:
  /// `tick` is the granularity: a timer fires at the first expire() at or after its deadline, and
  /// expire() looks at each tick's slot once per rotation of `slots` ticks.
  explicit TimerWheel(Duration tick = 1ms, size_t slots = 4096);
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;
  ~TimerWheel();

  /// Arms (or re-arms) `entry` to fire at `deadline`.
  void schedule(TimerEntry& entry, Instant deadline);
  void cancel(TimerEntry& entry);
  /// Fires every timer whose deadline is <= now, each once. Timers armed by the callbacks with a
  /// deadline <= now fire on the next call, so one call always ends. Returns how many fired.
  size_t expire(Instant now);

  size_t size() const { return count_; }
  /// When the engine must call expire() next at the latest: the end of the current tick while any
  /// timer is armed (granularity is one tick), never otherwise.
  Instant next_wakeup() const;
  Duration tick() const { return tick_; }

 private:
  int64_t tick_of(Instant t) const { return t.ns() / tick_.count(); }
  TimerEntry*& head_of(size_t slot) { return slot == kFiring ? firing_ : slots_[slot]; }
  void link(TimerEntry& entry, size_t slot);
  void unlink(TimerEntry& entry);

  static constexpr size_t kFiring = SIZE_MAX;
  Duration tick_;
  std::vector<TimerEntry*> slots_;
  TimerEntry* firing_ = nullptr;  // due entries not yet fired; cancel() takes them out too
  int64_t current_tick_ = 0;  // every slot before this tick has been processed
  size_t count_ = 0;
};

}  // namespace ustack
