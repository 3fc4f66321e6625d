#pragma once
// How one thread wakes an engine that another thread is napping in.

#include <atomic>

namespace ustack::dev {

/// Wakes an engine napping in wait_rx() when another engine hands it a frame or another thread
/// hands it a call: an eventfd its device also waits on, written only while the engine has said
/// it naps (no write per frame or call).
class Doorbell {
 public:
  Doorbell();
  ~Doorbell();
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;
  /// -1 when no eventfd could be made: the engine then finds forwarded frames at the end of naps.
  int fd() const { return fd_; }
  /// The engine is about to nap: a ring() from now on wakes it. It checks its rings after this.
  /// Arming twice before one disarm() is harmless.
  void arm() {
    armed_.store(true, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the store before the rings' loads
  }
  /// The nap is over: drains the eventfd.
  void disarm();
  /// A frame or a call was queued for the engine (after the push): wakes it if it naps.
  void ring();

 private:
  int fd_;
  std::atomic<bool> armed_{false};
};

}  // namespace ustack::dev
