#include "base/packet.h"

#include <cstring>

namespace ustack {

Packet Packet::heap(size_t capacity, size_t headroom) {
  auto* buffer = new uint8_t[capacity];
  return Packet(buffer, static_cast<uint32_t>(capacity), static_cast<uint32_t>(headroom), 0, buffer, nullptr);
}

Packet Packet::copy_of(std::span<const uint8_t> bytes, size_t headroom) {
  Packet p = heap(bytes.size() + headroom, headroom);
  if (!bytes.empty()) std::memcpy(p.append(bytes.size()), bytes.data(), bytes.size());
  return p;
}

void Packet::reset() {
  if (!handle_) return;
  if (pool_) {
    pool_->release(handle_);
  } else {
    delete[] static_cast<uint8_t*>(handle_);
  }
  handle_ = nullptr;
  buffer_ = nullptr;
}

}  // namespace ustack
