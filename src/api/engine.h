#pragma once
// The engine: one Stack on one Device, driven inline (run to completion) by whichever API call
// is waiting — epoll_wait, a blocking recvfrom — on the application's own thread.

#include <chrono>
#include <memory>

#include "api/config.h"
#include "base/instant.h"
#include "dev/device.h"
#include "stack/stack.h"

namespace ustack::api {

class Engine {
 public:
  /// `keepalive` holds whatever must outlive the device (the EAL guard); may be null.
  Engine(const EngineConfig& config, std::unique_ptr<dev::Device> device, std::shared_ptr<void> keepalive);
  ~Engine();

  Instant now() const;
  Stack& stack() { return *stack_; }
  dev::Device& device() { return *device_; }
  const EngineConfig& config() const { return config_; }

  /// One turn: poll the device, run the stack and timers. Returns frames processed.
  size_t poll_once() { return stack_->poll(now()); }

  /// Runs the loop until `ready()` holds or `deadline` passes; returns ready(). Busy-polls while
  /// traffic flows and for idle_spin after it stops, then naps (device RX interrupt or sleep) for
  /// at most idle_sleep_max at a time, never past the deadline or the next timer.
  template <typename Ready>
  bool run_until(Ready&& ready, Instant deadline) {
    Instant last_busy = now();
    for (;;) {
      const size_t n = poll_once();
      if (ready()) return true;
      const Instant t = now();
      if (t >= deadline) return false;
      if (n > 0) {
        last_busy = t;
        continue;
      }
      if (t - last_busy < config_.idle_spin) continue;
      nap(t, deadline);
    }
  }

 private:
  void nap(Instant now, Instant deadline);

  EngineConfig config_;
  std::shared_ptr<void> keepalive_;
  std::unique_ptr<dev::Device> device_;
  std::unique_ptr<Stack> stack_;
  std::chrono::steady_clock::time_point epoch_;
};

}  // namespace ustack::api
