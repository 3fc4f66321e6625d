#pragma once
// The engine: one Stack on one Device.
//
// Run to completion (the default, with any number of engines): no thread of its own and no lock.
// The application's threads drive it: the one inside a call on it holds it (try_drive, a CAS on
// one word) and runs the call there, turning the loop while the call waits (epoll_wait, a
// blocking recv). A thread that calls on an engine another thread drives hands the call over
// through the engine's lock-free ring (hand_over), and the driver runs it between two turns of
// its loop; a call that would wait runs there as attempts that never wait, and its thread sleeps
// between them until a socket it waits on says its readiness changed (CallAttempts). A thread
// waiting in one engine also turns the engines nobody drives, so a process may have fewer
// threads than engines.
//
// Threaded mode (asked for): polled by a thread of its own; every API call holds the engine's
// lock while it runs, and a call that must wait sleeps until a socket it waits on says its
// readiness changed (the engine thread, or another call, tells it).

#include <poll.h>

#include <atomic>
#include <cassert>
#include <optional>
#include <vector>
#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <thread>

#include "api/config.h"
#include "base/instant.h"
#include "base/mpsc_ring.h"
#include "base/waitable.h"
#include "dev/device.h"
#include "dev/doorbell.h"
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
  /// Called by whoever runs the engine the socket is on (holding its lock, or driving it).
  void wake(Waitable&, uint32_t) override { notify(); }
  void source_closed(Waitable&) override {}  // the waiting call pins what it waits on
  /// Sleeps until woken, `max` passes, one of `kernel_fds` is ready or a signal handler runs;
  /// true for the signal. Called without the engine lock.
  bool sleep(Duration max, std::span<const pollfd> kernel_fds);
  /// Ends a sleep (or the next one, if none is in progress). Any thread.
  void notify();
  /// Set while this thread sleeps until a call it handed over is done (Engine::hand_over): the
  /// driver then notifies it.
  std::atomic<bool> awaiting_call{false};

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

/// How a wait for readiness ended.
enum class RunResult { kReady, kTimedOut, kInterrupted };

/// A call a thread handed to an engine that another thread drives (Engine::hand_over).
class HandedCall {
 public:
  explicit HandedCall(ThreadWaiter& caller) : caller_(caller) {}
  HandedCall(const HandedCall&) = delete;
  HandedCall& operator=(const HandedCall&) = delete;
  /// The driver: runs the call, then tells its thread. The caller returns (and its thread may
  /// end) once it sees done(), so nothing here touches the caller or `this` after that store.
  void run_and_complete() {
    run();
    finished_.store(true, std::memory_order_seq_cst);
    // Either the caller saw finished() before it slept, or this sees it waiting (both sides store
    // before they load).
    if (caller_.awaiting_call.load(std::memory_order_seq_cst)) caller_.notify();
    done_.store(true, std::memory_order_release);
  }
  /// The call has run: sleeping would wait for nothing.
  bool finished() const { return finished_.load(std::memory_order_seq_cst); }
  /// The driver is done with the call and with its caller's waiter.
  bool done() const { return done_.load(std::memory_order_acquire); }
  ThreadWaiter& caller() { return caller_; }

 protected:
  ~HandedCall() = default;
  virtual void run() = 0;

 private:
  ThreadWaiter& caller_;
  std::atomic<bool> finished_{false};
  std::atomic<bool> done_{false};
};

/// A call made on an engine that another thread drives: it runs there (HandedCall) as attempts
/// that never wait. An attempt that finds the call must wait registers the calling thread's
/// ThreadWaiter on what it waits for and returns (Engine::wait says kTimedOut and sets
/// would_block); the thread sleeps, then hands over the next attempt. What the attempts share
/// lives here; current() is the one the running attempt belongs to.
class CallAttempts {
 public:
  explicit CallAttempts(ThreadWaiter& waiter) : waiter_(waiter) {}
  CallAttempts(const CallAttempts&) = delete;
  CallAttempts& operator=(const CallAttempts&) = delete;
  ~CallAttempts() { assert(sources_.empty() && pins_.empty()); }

  static CallAttempts* current() { return current_; }
  /// Marks the attempt that runs on this thread for the scope's life, and forgets the waits the
  /// last attempt registered (the engine is held: this is the only place they can be undone).
  class Scope {
   public:
    explicit Scope(CallAttempts& a) : saved_(current_) {
      a.forget_waits();
      a.would_block = false;
      current_ = &a;
    }
    ~Scope() { current_ = saved_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CallAttempts* saved_;
  };

  /// Engine::wait, for an attempt. The first deadline an attempt asks for holds for the rest.
  template <typename Ready>
  RunResult wait(std::span<Waitable* const> sources, Ready&& ready, Instant now, Instant deadline,
                 std::span<const pollfd> kernel_fds) {
    if (ready()) return RunResult::kReady;
    if (!this->deadline) this->deadline = deadline;
    if (now >= *this->deadline) return RunResult::kTimedOut;
    if (interrupted) return RunResult::kInterrupted;
    for (Waitable* s : sources) {
      s->add_waiter(&waiter_);
      sources_.push_back(s);
    }
    kernel_fds_.assign(kernel_fds.begin(), kernel_fds.end());
    would_block = true;
    return RunResult::kTimedOut;
  }
  /// Removes the waiter from what the last attempt waited on, and lets go of what it held.
  void forget_waits();
  /// Holds `file` until the next attempt (what it waits on must outlive the sleep).
  void pin(std::shared_ptr<void> file) { pins_.push_back(std::move(file)); }

  std::optional<Instant> deadline;
  bool would_block = false;     // the last attempt stopped where it would have waited
  bool interrupted = false;     // a signal handler ran during the last sleep
  bool raise_sigpipe = false;   // the call must end with SIGPIPE, on its own thread
  /// What the call also waits for (poll), besides the sockets.
  std::span<const pollfd> kernel_fds() const { return kernel_fds_; }

 private:
  static thread_local CallAttempts* current_;
  ThreadWaiter& waiter_;
  std::vector<Waitable*> sources_;
  std::vector<std::shared_ptr<void>> pins_;
  std::vector<pollfd> kernel_fds_;
};

/// Linux raises SIGPIPE for EPIPE unless MSG_NOSIGNAL, in the calling thread: an attempt run on
/// the driver's thread leaves it to the caller (CallAttempts::raise_sigpipe).
void raise_sigpipe();

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
  /// What a call that does not wait does first, so that it sees what already arrived: one turn
  /// when run to completion; nothing in threaded mode, where the engine thread keeps polling.
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
  /// Run to completion: takes the engine for this thread, when no thread drives it. Every call
  /// on it runs holding it, so one thread at a time touches the engine; let_go() gives it back.
  bool try_drive() {
    if (driver_.load(std::memory_order_relaxed) != nullptr) return false;
    const void* none = nullptr;
    return driver_.compare_exchange_strong(none, &t_thread_token, std::memory_order_acquire,
                                           std::memory_order_relaxed);
  }
  bool driven_here() const { return driver_.load(std::memory_order_relaxed) == &t_thread_token; }
  /// Runs the calls handed over meanwhile, then lets the engine go.
  void let_go() {
    run_handed_calls();
    driver_.store(nullptr, std::memory_order_release);
  }
  /// Run to completion, by a thread that does not drive the engine: queues `call` on the ring and
  /// returns when it has run, on the driver's thread or (when the engine is let go meanwhile) on
  /// this one. Never blocks on a lock: it waits for the call, not for the engine.
  void hand_over(HandedCall& call);
  /// The driver: runs the calls queued so far; returns how many. Inline: most turns find none.
  size_t run_handed_calls() { return handed_.empty() ? 0 : run_queued_calls(); }
  /// Calls handed over and run (a gauge, readable from any thread).
  uint64_t handed_calls() const { return handed_calls_.load(std::memory_order_relaxed); }
  /// The other engines of the process, which a thread waiting in this one turns when nobody
  /// drives them.
  void set_siblings(std::vector<Engine*> siblings) {
    std::erase(siblings, this);
    siblings_ = std::move(siblings);
  }

  /// TCP connections in the table at the last turn (readable from any thread: a gauge).
  size_t tcp_connections() const { return tcp_connections_.load(std::memory_order_relaxed); }
  /// Of those, the ones in TIME-WAIT.
  size_t tcp_time_wait() const { return tcp_time_wait_.load(std::memory_order_relaxed); }

  using RunResult = api::RunResult;

  /// Waits until `ready()` holds, `deadline` passes or a signal handler runs. `ready()` must read
  /// only state whose changes `sources` announce (their readiness) and `kernel_fds`. Inline mode:
  /// runs the loop (run_until). Threaded mode (the caller holds the lock): sleeps, without the
  /// lock, until a source changes, a kernel descriptor is ready, the deadline or a signal.
  template <typename Ready>
  RunResult wait(std::span<Waitable* const> sources, Ready&& ready, Instant deadline,
                 std::span<const pollfd> kernel_fds = {}) {
    if (!config_.threaded) {
      if (CallAttempts* attempt = CallAttempts::current()) {
        return attempt->wait(sources, ready, now(), deadline, kernel_fds);
      }
      return run_until(ready, deadline);
    }
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
      size_t n = poll_once() + run_handed_calls();
      if (!siblings_.empty() && (n == 0 || (++turns_ & kTurnsPerHelp) == 0)) n += help_siblings();
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
  /// One turn of each sibling no thread drives; returns the frames and calls they processed.
  size_t help_siblings();
  size_t run_queued_calls();
  static constexpr uint32_t kTurnsPerHelp = 15;  // a busy loop helps every 16th turn
  inline static thread_local char t_thread_token = 0;  // its address names the thread

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
  // Run to completion.
  alignas(64) std::atomic<const void*> driver_{nullptr};  // &t_thread_token of the driving thread
  MpscRing<HandedCall*> handed_{256};
  dev::Doorbell* bell_ = nullptr;  // the device's, or own_bell_
  std::unique_ptr<dev::Doorbell> own_bell_;
  std::atomic<uint64_t> handed_calls_{0};
  std::vector<Engine*> siblings_;
  uint32_t turns_ = 0;
};

}  // namespace ustack::api
