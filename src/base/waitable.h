#pragma once
// Readiness: a socket says when what poll_events() returns may have changed; whoever waits on it
// (an epoll instance, a blocking call) is told and re-reads poll_events(). Nothing scans sockets.

#include <algorithm>
#include <cstdint>

#include <absl/container/inlined_vector.h>

namespace ustack {

/// Readiness bits, equal to Linux's EPOLL* values (the API layer checks it at compile time).
enum PollEvent : uint32_t {
  kPollIn = 0x001,
  kPollPri = 0x002,
  kPollOut = 0x004,
  kPollErr = 0x008,
  kPollHup = 0x010,
  kPollRdNorm = 0x040,
  kPollWrNorm = 0x100,
  kPollRdHup = 0x2000,
};

class Waitable;

class Waiter {
 public:
  /// `source`'s readiness may have changed; `events` hints which bits (may be more than changed).
  virtual void wake(Waitable& source, uint32_t events) = 0;
  /// `source` is being destroyed (its last descriptor closed): forget it.
  virtual void source_closed(Waitable& source) = 0;

 protected:
  ~Waiter() = default;
};

class Waitable {
 public:
  Waitable() = default;
  Waitable(const Waitable&) = delete;
  Waitable& operator=(const Waitable&) = delete;
  virtual ~Waitable() {
    while (!waiters_.empty()) {
      Waiter* w = waiters_.back();
      waiters_.pop_back();
      w->source_closed(*this);
    }
  }

  /// The readiness now, as PollEvent bits.
  virtual uint32_t poll_events() const = 0;

  void add_waiter(Waiter* w) { waiters_.push_back(w); }
  void remove_waiter(Waiter* w) {
    auto it = std::find(waiters_.begin(), waiters_.end(), w);
    if (it != waiters_.end()) waiters_.erase(it);
  }
  bool has_waiters() const { return !waiters_.empty(); }

 protected:
  void notify(uint32_t events) {
    // Waking never adds or removes waiters (epoll items only queue themselves), so plain iteration.
    for (Waiter* w : waiters_) w->wake(*this, events);
  }

 private:
  // Nearly always one (the epoll instance watching a socket) or none: inline, no heap per socket.
  absl::InlinedVector<Waiter*, 1> waiters_;
};

}  // namespace ustack
