#include "base/timer_wheel.h"

#include <algorithm>

namespace ustack {

TimerEntry::~TimerEntry() {
  if (wheel) wheel->cancel(*this);
}

TimerWheel::TimerWheel(Duration tick, size_t slots) : tick_(tick), slots_(slots, nullptr) {}

TimerWheel::~TimerWheel() {
  for (TimerEntry* head : slots_) {
    while (head) {
      TimerEntry* next = head->next;
      head->wheel = nullptr;
      head = next;
    }
  }
  for (TimerEntry* e = firing_; e; e = e->next) e->wheel = nullptr;
}

void TimerWheel::link(TimerEntry& entry, size_t slot) {
  TimerEntry*& head = head_of(slot);
  entry.wheel = this;
  entry.slot = slot;
  entry.prev = nullptr;
  entry.next = head;
  if (head) head->prev = &entry;
  head = &entry;
  ++count_;
}

void TimerWheel::unlink(TimerEntry& entry) {
  if (entry.prev) {
    entry.prev->next = entry.next;
  } else {
    head_of(entry.slot) = entry.next;
  }
  if (entry.next) entry.next->prev = entry.prev;
  entry.prev = entry.next = nullptr;
  entry.wheel = nullptr;
  --count_;
}

void TimerWheel::schedule(TimerEntry& entry, Instant deadline) {
  if (entry.wheel) entry.wheel->cancel(entry);
  entry.deadline = deadline;
  // A deadline in a tick already passed goes in the current slot, which expire() always rechecks.
  link(entry, static_cast<size_t>(std::max(tick_of(deadline), current_tick_)) % slots_.size());
}

void TimerWheel::cancel(TimerEntry& entry) {
  if (entry.wheel == this) unlink(entry);
}

size_t TimerWheel::expire(Instant now) {
  const int64_t now_tick = tick_of(now);
  if (now_tick < current_tick_ || count_ == 0) {
    current_tick_ = std::max(current_tick_, now_tick);
    return 0;
  }
  // Past one full rotation every slot is due for a look, once.
  const int64_t last = std::min(now_tick, current_tick_ + static_cast<int64_t>(slots_.size()) - 1);
  for (int64_t t = current_tick_; t <= last; ++t) {
    TimerEntry* e = slots_[static_cast<size_t>(t) % slots_.size()];
    while (e) {
      TimerEntry* next = e->next;
      if (e->deadline <= now) {
        unlink(*e);
        link(*e, kFiring);
      }
      e = next;
    }
  }
  current_tick_ = now_tick;
  // Fire one at a time from the firing list: a callback may cancel, re-arm or destroy any other
  // due entry, which takes it off this list before we reach it.
  size_t fired = 0;
  while (firing_) {
    TimerEntry& e = *firing_;
    unlink(e);
    ++fired;
    e.client->on_timer(e, now);
  }
  return fired;
}

Instant TimerWheel::next_wakeup() const {
  if (count_ == 0) return Instant::max();
  return Instant::from_ns((current_tick_ + 1) * tick_.count());
}

}  // namespace ustack
