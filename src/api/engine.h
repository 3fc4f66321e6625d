#pragma once
// The engine: one Stack on one Device. Inline mode: driven (run to completion) by whichever API
// call is waiting — epoll_wait, a blocking recvfrom — on the application's own thread, the only
// one that may call. Threaded mode: polled by a thread of its own; every API call holds the
// engine's lock while it runs, and a call that must wait sleeps until a socket it waits on says
// its readiness changed (the engine thread, or another call, tells it).

#include <poll.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <thread>

#include "api/config.h"
#include "base/instant.h"
#include "base/waitable.h"
#include "dev/device.h"
#include "stack/stack.h"

namespace ustack::api {

/// What a thread blocked in a threaded-mode call sleeps on: an eventfd that the readiness change
/// of a socket it waits on writes, polled together with any kernel descriptors the call also
/// waits for (poll()). One per thread, registered with the sockets only while the call waits.
class ThreadWaiter final : public Waiter {
 public:
  static ThreadWaiter& current();
  ThreadWaiter(const ThreadWaiter&) = delete;
  ThreadWaiter& operator=(const ThreadWaiter&) = delete;
  ~ThreadWaiter();
  /// Called with the engine lock held, from any thread.
  void wake(Waitable&, uint32_t) override;
  void source_closed(Waitable&) override {}  // the waiting call pins what it waits on
  /// Sleeps until woken, `max` passes, one of `kernel_fds` is ready or a signal handler runs;
  /// true for the signal. Called without the engine lock.
  bool sleep(Duration max, std::span<const pollfd> kernel_fds);

 private:
  ThreadWaiter();
  int eventfd_;
  std::atomic<bool> signalled_{false};  // a wake wrote the eventfd and sleep() has not drained it
  std::vector<pollfd> fds_;
};

/// How long an idle engine may nap at most, having been idle for `idle_for`. A device that wakes it
/// when a frame comes allows the whole `idle_sleep_max`. On one that cannot (net_memif, net_ring)
/// a frame arriving during a nap waits for its end, so naps grow with the idle spell, a quarter
/// of it, from kShortestNap up to `idle_sleep_max`: an engine idle for 400 µs answers within
/// ~100 µs, one idle for seconds sleeps in idle_sleep_max steps.
inline constexpr Duration kShortestNap = 20us;
constexpr Duration nap_limit(Duration idle_for, Duration idle_sleep_max, bool wakes_on_rx) {
  if (wakes_on_rx) return idle_sleep_max;
  return std::clamp(idle_for / 4, std::min(kShortestNap, idle_sleep_max), idle_sleep_max);
}

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
  size_t poll_once() {
    // Frames only forwarded to another engine are work too: an engine that forwards is not idle.
    const size_t n = stack_->poll(now()) + device_->handed_on();
    tcp_connections_.store(stack_->tcp().connections(), std::memory_order_relaxed);
    tcp_time_wait_.store(stack_->tcp().time_wait_connections(), std::memory_order_relaxed);
    return n;
  }
  /// What a call that does not wait does first, so that it sees what already arrived: one turn in
  /// inline mode; nothing in threaded mode, where the engine thread keeps polling.
  void catch_up() {
    if (!config_.threaded) poll_once();
  }

  bool threaded() const { return config_.threaded; }
  /// Threaded mode: starts and stops the engine thread. stop_thread() is idempotent.
  void start_thread();
  void stop_thread();
  /// Threaded mode: the lock every call holds while it runs (waits release it).
  void lock() {
    contenders_.fetch_add(1, std::memory_order_relaxed);
    mutex_.lock();
    contenders_.fetch_sub(1, std::memory_order_relaxed);
  }
  void unlock() { mutex_.unlock(); }
  /// TCP connections in the table at the last turn (readable from any thread: a gauge).
  size_t tcp_connections() const { return tcp_connections_.load(std::memory_order_relaxed); }
  /// Of those, the ones in TIME-WAIT.
  size_t tcp_time_wait() const { return tcp_time_wait_.load(std::memory_order_relaxed); }

  enum class RunResult { kReady, kTimedOut, kInterrupted };

  /// Waits until `ready()` holds, `deadline` passes or a signal handler runs. `ready()` must read
  /// only state whose changes `sources` announce (their readiness) and `kernel_fds`. Inline mode:
  /// runs the loop (run_until). Threaded mode (the caller holds the lock): sleeps, without the
  /// lock, until a source changes, a kernel descriptor is ready, the deadline or a signal.
  template <typename Ready>
  RunResult wait(std::span<Waitable* const> sources, Ready&& ready, Instant deadline,
                 std::span<const pollfd> kernel_fds = {}) {
    if (!config_.threaded) return run_until(ready, deadline);
    ThreadWaiter& waiter = ThreadWaiter::current();
    for (Waitable* s : sources) s->add_waiter(&waiter);
    RunResult result;
    bool interrupted = false;
    for (;;) {
      if (ready()) {
        result = RunResult::kReady;
        break;
      }
      const Instant t = now();
      if (t >= deadline) {
        result = RunResult::kTimedOut;
        break;
      }
      if (interrupted) {
        result = RunResult::kInterrupted;
        break;
      }
      mutex_.unlock();
      interrupted = waiter.sleep(deadline - t, kernel_fds);
      lock();
    }
    for (Waitable* s : sources) s->remove_waiter(&waiter);
    return result;
  }

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
      interrupted = nap(t, deadline, t - last_busy);
    }
  }

 private:
  /// Sleeps until a frame may have come, the deadline or the next timer; true if a signal
  /// handler cut the sleep short.
  bool nap(Instant now, Instant deadline, Duration idle_for);
  void thread_main();

  EngineConfig config_;
  std::shared_ptr<void> keepalive_;
  std::unique_ptr<dev::Device> device_;
  std::unique_ptr<Stack> stack_;
  std::chrono::steady_clock::time_point epoch_;
  std::mutex mutex_;
  std::atomic<int> contenders_{0};  // calls waiting for the lock: the engine thread yields to them
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> tcp_connections_{0};
  std::atomic<size_t> tcp_time_wait_{0};
  std::thread thread_;
};

}  // namespace ustack::api
