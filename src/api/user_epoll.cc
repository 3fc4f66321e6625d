#include "api/user_epoll.h"

#include <algorithm>
#include <cerrno>
#include <vector>

namespace ustack::api {

constexpr bool same(uint32_t a, uint32_t b) { return a == b; }
static_assert(same(EPOLLIN, kPollIn) && same(EPOLLOUT, kPollOut) && same(EPOLLERR, kPollErr) &&
              same(EPOLLHUP, kPollHup) && same(EPOLLRDHUP, kPollRdHup) && same(EPOLLPRI, kPollPri) &&
              same(EPOLLRDNORM, kPollRdNorm) && same(EPOLLWRNORM, kPollWrNorm));

namespace {
constexpr uint32_t kAlwaysReported = EPOLLERR | EPOLLHUP;  // epoll_ctl(2): reported whether asked or not
constexpr uint32_t kFlagBits = EPOLLET | EPOLLONESHOT | EPOLLWAKEUP | EPOLLEXCLUSIVE;
}  // namespace

UserEpoll::~UserEpoll() {
  for (auto& [key, item] : items_) item->source->remove_waiter(item.get());
}

uint32_t UserEpoll::interest(const Item& item) const { return (item.event.events & ~kFlagBits) | kAlwaysReported; }

void UserEpoll::Item::wake(Waitable&, uint32_t events) {
  if (disabled || !(events & owner->interest(*this))) return;
  owner->enqueue(*this);
}

void UserEpoll::Item::source_closed(Waitable&) {
  // Linux drops an item when the file it watches is finally closed.
  owner->remove(*this, /*detach=*/false);  // the source already let go of us
}

void UserEpoll::enqueue(Item& item) {
  if (item.queued) return;
  const bool was_empty = ready_head_ == nullptr;
  item.queued = true;
  item.next_ready = nullptr;
  if (ready_tail_) {
    ready_tail_->next_ready = &item;
  } else {
    ready_head_ = &item;
  }
  ready_tail_ = &item;
  if (was_empty) notify(kPollIn | kPollRdNorm);
}

void UserEpoll::remove(Item& item, bool detach) {
  if (item.queued) {
    Item* prev = nullptr;
    for (Item* i = ready_head_; i; prev = i, i = i->next_ready) {
      if (i != &item) continue;
      (prev ? prev->next_ready : ready_head_) = i->next_ready;
      if (ready_tail_ == i) ready_tail_ = prev;
      break;
    }
  }
  const Key key{item.source, item.fd};
  if (detach) item.source->remove_waiter(&item);
  items_.erase(key);  // destroys item
}

int UserEpoll::ctl(int op, int fd, Waitable& source, const epoll_event* event) {
  const Key key{&source, fd};
  auto it = items_.find(key);
  switch (op) {
    case EPOLL_CTL_ADD: {
      if (it != items_.end()) return EEXIST;
      auto item = std::make_unique<Item>();
      item->owner = this;
      item->source = &source;
      item->fd = fd;
      item->event = *event;
      Item& ref = *item;
      items_.emplace(key, std::move(item));
      source.add_waiter(&ref);
      if (source.poll_events() & interest(ref)) enqueue(ref);
      return 0;
    }
    case EPOLL_CTL_MOD: {
      if (it == items_.end()) return ENOENT;
      if (event->events & EPOLLEXCLUSIVE) return EINVAL;
      Item& item = *it->second;
      item.event = *event;
      item.disabled = false;
      if (source.poll_events() & interest(item)) enqueue(item);
      return 0;
    }
    case EPOLL_CTL_DEL: {
      if (it == items_.end()) return ENOENT;
      remove(*it->second, /*detach=*/true);
      return 0;
    }
  }
  return EINVAL;
}

int UserEpoll::collect(epoll_event* out, int max) {
  int n = 0;
  // Each item queued now is looked at once; level-triggered ones that are still ready go back on
  // the tail for the next call, as Linux's ep_send_events() does.
  Item* end = ready_tail_;
  while (ready_head_ && n < max) {
    Item& item = *ready_head_;
    ready_head_ = item.next_ready;
    if (!ready_head_) ready_tail_ = nullptr;
    item.queued = false;
    item.next_ready = nullptr;
    const bool last = &item == end;
    const uint32_t revents = item.disabled ? 0 : item.source->poll_events() & interest(item);
    if (revents) {
      out[n].events = revents;
      out[n].data = item.event.data;
      ++n;
      if (item.event.events & EPOLLONESHOT) {
        item.disabled = true;
      } else if (!(item.event.events & EPOLLET)) {
        enqueue(item);
      }
    }
    if (last) break;
  }
  return n;
}

uint32_t UserEpoll::poll_events() const { return ready_head_ ? (kPollIn | kPollRdNorm) : 0; }

bool epoll_add_would_loop(const UserEpoll& ep, const UserEpoll& to, std::span<const UserEpoll* const> all) {
  // The graph is acyclic and at most kMaxEpollNests deep (every ADD was checked), so the walks
  // end; `depth` bounds them anyway, like Linux's. Anything beyond the limit counts as kTooDeep.
  constexpr int kTooDeep = kMaxEpollNests + 1;
  absl::flat_hash_map<const UserEpoll*, int> below_memo;
  // Links below `e`, or kTooDeep if `ep` is among them (a cycle) or they are too many.
  auto below = [&](auto& self, const UserEpoll& e, int depth) -> int {
    if (auto it = below_memo.find(&e); it != below_memo.end()) return it->second;
    int result = 0;
    e.for_each_watched_epoll([&](const UserEpoll& child) {
      if (result >= kTooDeep) return;
      if (&child == &ep || depth > kMaxEpollNests) {
        result = kTooDeep;
      } else {
        result = std::max(result, self(self, child, depth + 1) + 1);
      }
    });
    below_memo[&e] = result;
    return result;
  };
  const int down = below(below, to, 0);
  if (down >= kTooDeep) return true;

  absl::flat_hash_map<const UserEpoll*, std::vector<const UserEpoll*>> watchers;
  for (const UserEpoll* e : all) {
    e->for_each_watched_epoll([&](const UserEpoll& child) { watchers[&child].push_back(e); });
  }
  absl::flat_hash_map<const UserEpoll*, int> above_memo;
  // Links above `e`.
  auto above = [&](auto& self, const UserEpoll& e, int depth) -> int {
    if (auto it = above_memo.find(&e); it != above_memo.end()) return it->second;
    int result = 0;
    if (auto it = watchers.find(&e); it != watchers.end() && depth <= kMaxEpollNests) {
      for (const UserEpoll* parent : it->second) result = std::max(result, self(self, *parent, depth + 1) + 1);
    }
    above_memo[&e] = result;
    return result;
  };
  const int up = above(above, ep, 0);
  return up + 1 + down > kMaxEpollNests;
}

}  // namespace ustack::api
