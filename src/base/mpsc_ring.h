#pragma once
// A bounded lock-free queue that any number of threads push to and one thread at a time pops
// from: how a thread hands a call to the engine another thread drives (api/engine.h). Each slot
// carries a sequence number that says whose turn it is (Dmitry Vyukov's bounded queue), so a
// push is one CAS on the tail and a pop none. Like SpscRing, it is our own rather than rte_ring
// because the core is DPDK-free and its tests run under ThreadSanitizer.

#include <atomic>
#include <cstddef>
#include <memory>
#include <utility>

namespace ustack {

template <typename T>
class MpscRing {
 public:
  /// Holds up to `capacity` items (rounded up to a power of two, at least 2).
  explicit MpscRing(size_t capacity) {
    size_t c = 2;
    while (c < capacity) c <<= 1;
    slots_ = std::make_unique<Slot[]>(c);
    for (size_t i = 0; i < c; ++i) slots_[i].sequence.store(i, std::memory_order_relaxed);
    mask_ = c - 1;
  }
  MpscRing(const MpscRing&) = delete;
  MpscRing& operator=(const MpscRing&) = delete;

  /// Any thread: moves `item` in; false (and `item` untouched) when the ring is full.
  bool push(T& item) {
    size_t tail = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Slot& slot = slots_[tail & mask_];
      const size_t sequence = slot.sequence.load(std::memory_order_acquire);
      const auto lag = static_cast<std::ptrdiff_t>(sequence - tail);
      if (lag == 0) {
        if (tail_.compare_exchange_weak(tail, tail + 1, std::memory_order_relaxed)) {
          slot.item = std::move(item);
          slot.sequence.store(tail + 1, std::memory_order_release);
          return true;
        }
      } else if (lag < 0) {
        return false;  // the slot still holds an item a lap behind: full
      } else {
        tail = tail_.load(std::memory_order_relaxed);  // another producer took this slot
      }
    }
  }
  /// The consumer (one thread at a time): moves the oldest item out; false when none is ready.
  /// An item whose producer has claimed its slot but not yet filled it counts as not ready.
  bool pop(T& out) {
    const size_t head = head_.load(std::memory_order_relaxed);
    Slot& slot = slots_[head & mask_];
    if (slot.sequence.load(std::memory_order_acquire) != head + 1) return false;
    out = std::move(slot.item);
    slot.sequence.store(head + mask_ + 1, std::memory_order_release);
    head_.store(head + 1, std::memory_order_relaxed);
    return true;
  }
  /// Any thread: true when nothing is queued or being queued (a snapshot).
  bool empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
  }
  size_t capacity() const { return mask_ + 1; }

 private:
  static constexpr size_t kLine = 64;
  struct Slot {
    std::atomic<size_t> sequence;
    T item{};
  };
  std::unique_ptr<Slot[]> slots_;
  size_t mask_ = 0;
  alignas(kLine) std::atomic<size_t> head_{0};  // next to pop; the consumer's
  alignas(kLine) std::atomic<size_t> tail_{0};  // next to claim; producers CAS it
};

}  // namespace ustack
