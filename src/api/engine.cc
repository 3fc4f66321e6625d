#include "api/engine.h"

#include <algorithm>

namespace ustack::api {

Engine::Engine(const EngineConfig& config, std::unique_ptr<dev::Device> device, std::shared_ptr<void> keepalive)
    : config_(config),
      keepalive_(std::move(keepalive)),
      device_(std::move(device)),
      stack_(std::make_unique<Stack>(config.stack, *device_)),
      epoch_(std::chrono::steady_clock::now()) {
  stack_->start(now());
}

Engine::~Engine() {
  stack_->flush();
  stack_.reset();
  device_.reset();  // before the EAL guard in keepalive_
}

Instant Engine::now() const {
  if (config_.clock) return config_.clock->now();
  return Instant::from_ns(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - epoch_).count());
}

bool Engine::nap(Instant t, Instant deadline) {
  Instant until = std::min({deadline, t + config_.idle_sleep_max, stack_->next_wakeup()});
  return until > t && device_->wait_rx(until - t);
}

}  // namespace ustack::api
