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

void ThreadWaiter::wake(Waitable&, uint32_t) {
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

Engine::Engine(const EngineConfig& config, std::unique_ptr<dev::Device> device, std::shared_ptr<void> keepalive)
    : config_(config),
      keepalive_(std::move(keepalive)),
      device_(std::move(device)),
      stack_(std::make_unique<Stack>(config.stack, *device_)),
      epoch_(std::chrono::steady_clock::now()) {
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
  return until > t && device_->wait_rx(until - t);
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
