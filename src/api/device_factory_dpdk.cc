#include "api/device_factory.h"

#include "dev/dpdk/dpdk_port.h"
#include "dev/dpdk/eal.h"
#include "dev/dpdk/telemetry.h"

namespace ustack::api {

Result<OpenedDevice, std::string> open_device(const EngineConfig& config, const std::string& program) {
  auto args = dev::eal_args(program, config.dev, config.eal);
  auto eal = dev::Eal::init(args);
  if (!eal) {
    std::string cmd;
    for (const auto& a : args) cmd += " " + a;
    return unexpected("DPDK EAL did not start (USTACK_DEV / USTACK_EAL; EAL arguments:" + cmd + "): " + eal.error());
  }
  std::shared_ptr<dev::Eal> guard = std::move(*eal);
  dev::DpdkPortConfig port_config;
  port_config.mtu = config.stack.mtu;
  port_config.pcap_path = config.pcap;
  auto port = dev::DpdkPort::open(port_config);
  if (!port) {
    return unexpected("the DPDK device '" + config.dev + "' did not start (USTACK_DEV): " + port.error());
  }
  return OpenedDevice{std::move(guard), std::move(*port)};
}

void register_stats_telemetry(std::function<void(const CounterVisitor&)> visit_all) {
  if (!visit_all) {
    dev::clear_stats_telemetry();
    return;
  }
  dev::register_stats_telemetry([visit_all](std::function<void(std::string_view, std::string_view, uint64_t)> fn) {
    visit_all(fn);
  });
}

std::string telemetry_hint() { return "scripts/ustack-stats <pid> (DPDK telemetry command /ustack/stats)"; }

}  // namespace ustack::api
