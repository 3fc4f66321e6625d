#pragma once
// A bounded lock-free queue with one producer thread and one consumer thread: how engines hand
// frames (and later calls) to each other without a lock. Engines share nothing else. One ring per
// ordered pair of engines keeps every ring single-producer, single-consumer: two atomics, no CAS.
// (rte_ring would do on DPDK builds, but the core and its multi-engine tests are DPDK-free and run
// under ThreadSanitizer, which cannot see into rte_ring's assembly.)

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace ustack {

template <typename T>
class SpscRing {
 public:
  /// Holds up to `capacity` items (rounded up to a power of two).
  explicit SpscRing(size_t capacity) {
    size_t c = 1;
    while (c < capacity) c <<= 1;
    slots_ = std::make_unique<T[]>(c);
    mask_ = c - 1;
  }
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  /// Producer: moves `item` in; false (and `item` untouched) when the ring is full.
  bool push(T& item) {
    const size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ > mask_) return false;
    }
    slots_[tail & mask_] = std::move(item);
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }
  /// Consumer: moves the oldest item out; false when the ring is empty.
  bool pop(T& out) {
    const size_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return false;
    }
    out = std::move(slots_[head & mask_]);
    head_.store(head + 1, std::memory_order_release);
    return true;
  }
  /// Either side: true when nothing is queued (a snapshot).
  bool empty() const { return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire); }
  size_t capacity() const { return mask_ + 1; }

 private:
  static constexpr size_t kLine = 64;
  std::unique_ptr<T[]> slots_;
  size_t mask_ = 0;
  alignas(kLine) std::atomic<size_t> head_{0};  // next to pop; written by the consumer
  size_t tail_cache_ = 0;                       // the consumer's last look at tail_
  alignas(kLine) std::atomic<size_t> tail_{0};  // next free slot; written by the producer
  size_t head_cache_ = 0;                       // the producer's last look at head_
};

}  // namespace ustack
