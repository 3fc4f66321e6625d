#include "base/port_directory.h"

namespace ustack {

PortDirectory::PortDirectory()
    : claimed_(new std::atomic<uint32_t>[kSlots]), in_use_(new std::atomic<uint32_t>[kSlots]) {
  for (size_t i = 0; i < kSlots; ++i) {
    claimed_[i].store(0, std::memory_order_relaxed);
    in_use_[i].store(0, std::memory_order_relaxed);
  }
}

bool PortDirectory::claim(PortProtocol protocol, uint16_t port, uint32_t engine, bool shareable) {
  const size_t slot = index(protocol, port);
  const uint32_t bit = uint32_t{1} << engine;
  std::lock_guard lock(mutex_);
  const uint32_t others =
      (claimed_[slot].load(std::memory_order_relaxed) | in_use_[slot].load(std::memory_order_acquire)) & ~bit;
  for (uint32_t e = 0; others >> e; ++e) {
    if (!((others >> e) & 1u)) continue;
    if (!shareable) return false;
    auto theirs = claims_.find(Key{static_cast<uint32_t>(slot), e});
    if (theirs == claims_.end() || theirs->second.exclusive > 0) return false;
  }
  Claims& mine = claims_[Key{static_cast<uint32_t>(slot), engine}];
  ++mine.sockets;
  if (!shareable) ++mine.exclusive;
  claimed_[slot].fetch_or(bit, std::memory_order_release);
  return true;
}

void PortDirectory::release(PortProtocol protocol, uint16_t port, uint32_t engine, bool shareable) {
  const size_t slot = index(protocol, port);
  std::lock_guard lock(mutex_);
  auto it = claims_.find(Key{static_cast<uint32_t>(slot), engine});
  if (it == claims_.end()) return;
  if (!shareable && it->second.exclusive > 0) --it->second.exclusive;
  if (--it->second.sockets == 0) {
    claims_.erase(it);
    claimed_[slot].fetch_and(~(uint32_t{1} << engine), std::memory_order_release);
  }
}

}  // namespace ustack
