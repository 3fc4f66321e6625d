#pragma once
// Opens the device the configuration names. Built against DPDK (device_factory_dpdk.cc) or
// without it (device_factory_none.cc: the ustack backend then explains it cannot start).

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/config.h"
#include "base/result.h"
#include "base/stats.h"
#include "dev/device.h"

namespace ustack::api {

struct OpenedDevice {
  std::shared_ptr<void> keepalive;  // e.g. the EAL, which must outlive the queues: declared first
  /// One Device per RX/TX queue pair, config.cores of them: queue k is engine k's. queues[0] owns
  /// the port; the others borrow it, so they go first (destroy from the back).
  std::vector<std::unique_ptr<dev::Device>> queues;
};

/// Starts EAL and opens the first DPDK port with config.cores queue pairs. Before EAL, refuses a net_tap/net_tun whose
/// iface=NAME already exists in this network namespace (net_tap would join it as another queue,
/// sharing it with whoever made it). Sizes the port's buffers for the MTU (USTACK_MTU, else the
/// device's) and refuses an MTU the device does not take, naming USTACK_MTU and its range.
/// Errors name the configuration key to change.
Result<OpenedDevice, std::string> open_device(const EngineConfig& config, const std::string& program);

using CounterVisitor = std::function<void(std::string_view layer, std::string_view name, uint64_t value)>;
/// Makes the counters readable while running (DPDK telemetry: /ustack/stats); a null function
/// unregisters (before the stack goes away). No-op without DPDK.
void register_stats_telemetry(std::function<void(const CounterVisitor&)> visit_all);
/// How a user reads the counters of a running process, for --help and logs.
std::string telemetry_hint();

}  // namespace ustack::api
