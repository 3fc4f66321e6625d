#include "api/engine_set.h"

#include "base/port_directory.h"
#include "dev/steering.h"

namespace ustack::api {
namespace {

/// What the engines share; the last one to go takes it down, in this order: the rings (which may
/// hold frames from the queues' buffer pools), then the queues from the back (queue 0 owns the
/// port the others borrow), then the directory, then whatever the queues need (the EAL).
struct SharedQueues {
  std::shared_ptr<void> keepalive;
  std::unique_ptr<PortDirectory> ports;
  std::vector<std::unique_ptr<dev::Device>> queues;
  std::unique_ptr<dev::SteeringGroup> group;
  ~SharedQueues() {
    group.reset();
    while (!queues.empty()) queues.pop_back();
  }
};

}  // namespace

std::vector<std::unique_ptr<Engine>> make_engines(const EngineConfig& config,
                                                  std::vector<std::unique_ptr<dev::Device>> queues,
                                                  std::shared_ptr<void> keepalive) {
  std::vector<std::unique_ptr<Engine>> engines;
  if (queues.size() == 1) {
    engines.push_back(std::make_unique<Engine>(config, std::move(queues[0]), std::move(keepalive)));
    return engines;
  }
  const auto count = static_cast<uint32_t>(queues.size());
  auto shared = std::make_shared<SharedQueues>();
  shared->keepalive = std::move(keepalive);
  shared->ports = std::make_unique<PortDirectory>();
  shared->queues = std::move(queues);
  shared->group = std::make_unique<dev::SteeringGroup>(count, 1024, shared->ports.get());
  for (uint32_t k = 0; k < count; ++k) {
    EngineConfig c = config;
    c.stack.engine = EngineShare{k, count, shared->ports.get()};
    c.stack.seed = config.stack.seed + k;
    auto view = std::make_unique<dev::SteeredDevice>(*shared->queues[k], *shared->group, k);
    engines.push_back(std::make_unique<Engine>(c, std::move(view), shared));
  }
  return engines;
}

}  // namespace ustack::api
