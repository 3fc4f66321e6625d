#include "api/engine.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace ustack::api {

ThreadWaiter& ThreadWaiter::current() {
  thread_local ThreadWaiter waiter;
  return waiter;
}

ThreadWaiter::ThreadWaiter() : eventfd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (eventfd_ < 0) {
    // Without it a blocked call could never be woken; this is a process out of descriptors.
    std::perror("ustack: eventfd for a waiting thread");
    std::abort();
  }
}

ThreadWaiter::~ThreadWaiter() { ::close(eventfd_); }

void ThreadWaiter::notify() {
  if (signalled_.exchange(true, std::memory_order_acq_rel)) return;  // already pending
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(eventfd_, &one, sizeof one);
}

bool ThreadWaiter::sleep(Duration max, std::span<const pollfd> kernel_fds) {
  fds_.assign(1, pollfd{eventfd_, POLLIN, 0});
  fds_.insert(fds_.end(), kernel_fds.begin(), kernel_fds.end());
  const auto ns = std::max<int64_t>(max.count(), 0);
  const timespec timeout{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  const int n = ::ppoll(fds_.data(), fds_.size(), &timeout, nullptr);
  const bool signal = n < 0 && errno == EINTR;
  // Drain before the caller takes the lock again: every wake comes with the lock held, so a wake
  // from now on either is seen by the caller's next ready() or writes the eventfd anew.
  uint64_t count;
  [[maybe_unused]] ssize_t r = ::read(eventfd_, &count, sizeof count);
  signalled_.store(false, std::memory_order_release);
  return signal;
}

thread_local CallAttempts* CallAttempts::current_ = nullptr;

void CallAttempts::forget_waits() {
  for (Waitable* s : sources_) s->remove_waiter(&waiter_);
  sources_.clear();
  pins_.clear();  // may close a socket its last holder closed meanwhile: the engine is held here
  kernel_fds_.clear();
}

void raise_sigpipe() {
  if (CallAttempts* attempt = CallAttempts::current()) {
    attempt->raise_sigpipe = true;
  } else {
    ::raise(SIGPIPE);
  }
}

Engine::Engine(const EngineConfig& config, std::unique_ptr<dev::Device> device, std::shared_ptr<void> keepalive)
    : config_(config),
      keepalive_(std::move(keepalive)),
      device_(std::move(device)),
      stack_(std::make_unique<Stack>(config.stack, *device_)),
      epoch_(std::chrono::steady_clock::now()) {
  bell_ = device_->doorbell();
  if (!bell_) {
    own_bell_ = std::make_unique<dev::Doorbell>();
    device_->set_doorbell(own_bell_->fd());
    bell_ = own_bell_.get();
  }
  stack_->start(now());
}

Engine::~Engine() {
  stop_thread();
  stack_->flush();
  stack_.reset();
  device_.reset();  // before the EAL guard in keepalive_
}

Instant Engine::now() const {
  if (config_.clock) return config_.clock->now();
  return Instant::from_ns(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - epoch_).count());
}

bool Engine::nap(Instant t, Instant deadline, Duration idle_for) {
  const Duration longest = nap_limit(idle_for, config_.idle_sleep_max, device_->wakes_on_rx());
  const Instant until = std::min({deadline, t + longest, stack_->next_wakeup()});
  if (until <= t) return false;
  // A call handed over from now on rings the doorbell, which the device's wait answers to.
  bell_->arm();
  if (!handed_.empty()) {
    bell_->disarm();
    return false;
  }
  const bool signal = device_->wait_rx(until - t);
  bell_->disarm();
  return signal;
}

void Engine::hand_over(HandedCall& call) {
  HandedCall* queued = &call;
  while (!handed_.push(queued)) {  // full: run them here if the engine is let go, else wait for room
    if (try_drive()) {
      let_go();
    } else {
      std::this_thread::yield();
    }
  }
  bell_->ring();
  // Spin a little (the driver usually runs it within a turn), then sleep until it says it is done.
  constexpr int kSpins = 2000;
  ThreadWaiter& waiter = call.caller();
  for (int spins = 0; !call.done(); ++spins) {
    if (try_drive()) {  // the driver let go before running it: run the ring here
      let_go();
      continue;
    }
    if (spins < kSpins) {
      if (spins % 64 == 63) std::this_thread::yield();
      continue;
    }
    waiter.awaiting_call.store(true, std::memory_order_seq_cst);
    if (!call.finished()) waiter.sleep(std::chrono::microseconds(200), {});
    waiter.awaiting_call.store(false, std::memory_order_relaxed);
  }
}

size_t Engine::run_queued_calls() {
  size_t n = 0;
  HandedCall* call = nullptr;
  while (handed_.pop(call)) {
    call->run_and_complete();
    ++n;
  }
  if (n > 0) handed_calls_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

size_t Engine::help_siblings() {
  size_t n = 0;
  for (Engine* other : siblings_) {
    if (!other->try_drive()) continue;
    n += other->poll_once();
    other->let_go();
  }
  return n;
}

void Engine::start_thread() {
  if (!config_.threaded || thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { thread_main(); });
}

void Engine::stop_thread() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  thread_.join();
}

void Engine::thread_main() {
  // Signals belong to the application's threads: a handler must interrupt their calls (EINTR),
  // and never run here, where it could find the engine lock held.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  device_->engine_thread_started();
  lock();
  Instant last_busy = now();
  while (!stopping_.load(std::memory_order_relaxed)) {
    const size_t n = poll_once();
    const Instant t = now();
    if (n > 0) last_busy = t;
    if (n == 0 && t - last_busy >= config_.idle_spin) {
      // Idle: nap without the lock, until a frame may have come or the next timer. A timer a
      // call arms meanwhile waits at most idle_sleep_max for the nap to end.
      const Duration longest = nap_limit(t - last_busy, config_.idle_sleep_max, device_->wakes_on_rx());
      const Instant until = std::min(t + longest, stack_->next_wakeup());
      unlock();
      if (until > t) device_->wait_rx(until - t);
      lock();
      continue;
    }
    // Busy: let the calls waiting for the lock have it before the next turn.
    unlock();
    if (contenders_.load(std::memory_order_relaxed) > 0) std::this_thread::yield();
    lock();
  }
  unlock();
  device_->engine_thread_stopping();
}

}  // namespace ustack::api
