#pragma once
// A double-ended queue in one growable circular array, which it allocates at the first push and
// keeps until release_memory() or its end. A connection's queues live in its transfer block,
// which only a busy connection holds (TcpConnection::Transfer), and spare blocks are reused with
// their arrays: a request/response connection allocates nothing per exchange. std::deque keeps a
// map and a 512-byte block per queue.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

namespace ustack {

template <typename T>
class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { release_memory(); }

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return slots_[(head_ + i) & (capacity_ - 1)]; }
  const T& operator[](size_t i) const { return slots_[(head_ + i) & (capacity_ - 1)]; }
  T& front() { return (*this)[0]; }
  T& back() { return (*this)[size_ - 1]; }
  const T& front() const { return (*this)[0]; }
  const T& back() const { return (*this)[size_ - 1]; }

  void push_back(T value) {
    if (size_ == capacity_) grow();
    ::new (&slots_[(head_ + size_) & (capacity_ - 1)]) T(std::move(value));
    ++size_;
  }
  void pop_front() {
    slots_[head_].~T();
    head_ = (head_ + 1) & (capacity_ - 1);
    if (--size_ == 0) head_ = 0;
  }
  /// Destroys the elements; keeps the array.
  void clear() {
    for (size_t i = 0; i < size_; ++i) (*this)[i].~T();
    size_ = head_ = 0;
  }
  /// clear(), and frees the array.
  void release_memory() {
    clear();
    release();
  }
  size_t capacity() const { return capacity_; }

 private:
  static constexpr uint32_t kFirstCapacity = 4;

  void grow() {
    const uint32_t capacity = capacity_ == 0 ? kFirstCapacity : capacity_ * 2;
    T* slots = std::allocator<T>().allocate(capacity);
    for (uint32_t i = 0; i < size_; ++i) {
      T& from = (*this)[i];
      ::new (&slots[i]) T(std::move(from));
      from.~T();
    }
    if (slots_) std::allocator<T>().deallocate(slots_, capacity_);
    slots_ = slots;
    capacity_ = capacity;
    head_ = 0;
  }
  void release() {
    if (slots_) std::allocator<T>().deallocate(slots_, capacity_);
    slots_ = nullptr;
    capacity_ = head_ = 0;
  }

  T* slots_ = nullptr;
  uint32_t capacity_ = 0;  // a power of two, or 0 with no array
  uint32_t head_ = 0;
  uint32_t size_ = 0;
};

}  // namespace ustack
