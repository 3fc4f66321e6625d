#pragma once
// An epoll instance of the ustack backend, built like Linux's: an interest set keyed by
// (file, descriptor), and a ready list that sockets put items on when they wake them. epoll_wait
// looks only at the ready list: its cost follows the events, not the number of sockets watched.

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include <absl/container/flat_hash_map.h>

#include "base/waitable.h"

namespace ustack::api {

class UserEpoll final : public Waitable {
 public:
  ~UserEpoll() override;

  /// EPOLL_CTL_ADD/MOD/DEL of `fd`, whose readiness `source` reports. Returns 0 or an errno:
  /// EEXIST, ENOENT, EINVAL (unknown op, EPOLLEXCLUSIVE with MOD).
  int ctl(int op, int fd, Waitable& source, const epoll_event* event);
  /// Moves up to `max` ready events into `out`; returns how many.
  int collect(epoll_event* out, int max);
  /// An epoll instance is itself readable when it has events (so it can be nested or polled).
  uint32_t poll_events() const override;
  size_t watched() const { return items_.size(); }
  /// Calls f(const UserEpoll&) for each epoll instance in the interest set (nested epoll).
  template <typename F>
  void for_each_watched_epoll(F&& f) const {
    for (const auto& [key, item] : items_) {
      if (const auto* e = dynamic_cast<const UserEpoll*>(item->source)) f(*e);
    }
  }

 private:
  struct Item final : Waiter {
    UserEpoll* owner = nullptr;
    Waitable* source = nullptr;
    int fd = -1;
    epoll_event event{};
    bool disabled = false;  // EPOLLONESHOT fired; re-armed by EPOLL_CTL_MOD
    bool queued = false;
    Item* next_ready = nullptr;
    void wake(Waitable&, uint32_t events) override;
    void source_closed(Waitable&) override;
  };
  using Key = std::pair<Waitable*, int>;

  void enqueue(Item& item);
  void remove(Item& item, bool detach);
  uint32_t interest(const Item& item) const;

  absl::flat_hash_map<Key, std::unique_ptr<Item>> items_;
  Item* ready_head_ = nullptr;
  Item* ready_tail_ = nullptr;
};

/// Linux's EP_MAX_NESTS: the longest chain of epoll instances watching each other has this many
/// links (so kMaxEpollNests + 1 instances).
inline constexpr int kMaxEpollNests = 4;

/// Linux's ep_loop_check (fs/eventpoll.c, as fixed in 2025 to count the whole chain): true when
/// making `ep` watch `to` would close a cycle (`to` reaches `ep`) or make a chain longer than
/// kMaxEpollNests links (the instances above `ep` + 1 + the instances below `to`); epoll_ctl then
/// fails with ELOOP. `all` lists every epoll instance, to find those watching `ep`.
bool epoll_add_would_loop(const UserEpoll& ep, const UserEpoll& to, std::span<const UserEpoll* const> all);

}  // namespace ustack::api
