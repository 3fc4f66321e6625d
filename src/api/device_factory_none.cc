#include "api/device_factory.h"

namespace ustack::api {

Result<OpenedDevice, std::string> open_device(const EngineConfig&, const std::string&) {
  return unexpected(std::string(
      "this ustack was built without DPDK (meson -Ddpdk=disabled or libdpdk-dev missing): "
      "the ustack backend has no device; install libdpdk-dev and rebuild"));
}

void register_stats_telemetry(std::function<void(const CounterVisitor&)>) {}

std::string telemetry_hint() { return "(no live counters: built without DPDK)"; }

}  // namespace ustack::api
