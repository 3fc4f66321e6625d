#include "base/packet.h"

#include <cstddef>
#include <cstring>
#include <new>

namespace ustack {

namespace {
// A heap buffer starts with its reference count; the bytes follow, aligned for anything.
struct HeapBlock {
  uint32_t refs;
};
constexpr size_t kHeapHeader = alignof(std::max_align_t);
HeapBlock* block(void* handle) { return static_cast<HeapBlock*>(handle); }
}  // namespace

Packet Packet::heap(size_t capacity, size_t headroom) {
  auto* raw = new uint8_t[kHeapHeader + capacity];
  new (raw) HeapBlock{1};
  return Packet(raw + kHeapHeader, static_cast<uint32_t>(capacity), static_cast<uint32_t>(headroom), 0, raw, nullptr);
}

Packet Packet::share() const {
  if (!handle_) return Packet();
  if (!pool_) {
    ++block(handle_)->refs;
  } else if (!pool_->add_ref(handle_)) {
    Packet copy = copy_of(bytes(), offset_);
    copy.rx_checks = rx_checks;
    copy.tx_offload = tx_offload;
    return copy;
  }
  Packet p(buffer_, capacity_, offset_, length_, handle_, pool_);
  p.rx_checks = rx_checks;
  p.tx_offload = tx_offload;
  return p;
}

bool Packet::shared() const {
  if (!handle_) return false;
  return pool_ ? pool_->shared(handle_) : block(handle_)->refs > 1;
}

Packet Packet::copy_of(std::span<const uint8_t> bytes, size_t headroom) {
  Packet p = heap(bytes.size() + headroom, headroom);
  if (!bytes.empty()) std::memcpy(p.append(bytes.size()), bytes.data(), bytes.size());
  return p;
}

void Packet::release_buffer() {
  if (pool_) {
    pool_->release(handle_);
  } else if (--block(handle_)->refs == 0) {
    delete[] static_cast<uint8_t*>(handle_);
  }
  handle_ = nullptr;
  buffer_ = nullptr;
}

}  // namespace ustack
