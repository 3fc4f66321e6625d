#include "dev/doorbell.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace ustack::dev {

Doorbell::Doorbell() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

Doorbell::~Doorbell() {
  if (fd_ >= 0) ::close(fd_);
}

void Doorbell::disarm() {
  armed_.store(false, std::memory_order_relaxed);
  if (fd_ >= 0) {
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(fd_, &count, sizeof count);
  }
}

void Doorbell::ring() {
  // Pairs with arm(): either the napping engine sees the frame when it checks its rings after
  // arming, or this sees it armed (both sides order their store before their load).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (fd_ < 0 || !armed_.load(std::memory_order_relaxed) || !armed_.exchange(false)) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
}

}  // namespace ustack::dev
