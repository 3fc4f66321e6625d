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

  enum class RunResult { kReady, kTimedOut, kInterrupted };

  /// Runs the loop until `ready()` holds, `deadline` passes or a signal handler runs during a nap.
  /// Busy-polls while traffic flows and for idle_spin after it stops, then naps (device RX
  /// interrupt or sleep) for at most idle_sleep_max at a time, never past the deadline or the next
  /// timer. After an interrupted nap the loop turns once more and reports kReady if that made
  /// `ready()` hold (a datagram that came with the signal wins, as on Linux), else kTimedOut if
  /// the deadline has passed, else kInterrupted. A signal that lands while the loop busy-polls or
  /// between two naps is not seen (README, "Using it from a program").
  template <typename Ready>
  RunResult run_until(Ready&& ready, Instant deadline) {
    Instant last_busy = now();
    bool interrupted = false;
    for (;;) {
      const size_t n = poll_once();
      if (ready()) return RunResult::kReady;
      const Instant t = now();
      if (t >= deadline) return RunResult::kTimedOut;
      if (interrupted) return RunResult::kInterrupted;
      if (n > 0) {
        last_busy = t;
        continue;
      }
      if (t - last_busy < config_.idle_spin) continue;
      interrupted = nap(t, deadline);
    }
  }

 private:
  /// Sleeps until a frame may have come, the deadline or the next timer; true if a signal
  /// handler cut the sleep short.
  bool nap(Instant now, Instant deadline);

  EngineConfig config_;
  std::shared_ptr<void> keepalive_;
  std::unique_ptr<dev::Device> device_;
  std::unique_ptr<Stack> stack_;
  std::chrono::steady_clock::time_point epoch_;
};

}  // namespace ustack::api
