#pragma once
// The engines of one process (USTACK_CORES=N): one per queue pair of the device, sharing nothing
// but the steering rings between them and the directory of the ports their sockets hold.

#include <memory>
#include <vector>

#include "api/engine.h"
#include "dev/device.h"

namespace ustack::api {

/// An engine for each of `queues` (queue k is engine k's). With one queue, the engine owns it.
/// With several, each engine sees its queue through a dev::SteeredDevice, and the queues, the
/// rings and the port directory live as long as the last engine (they hold `keepalive` too,
/// which must outlive the queues). Engines take `config` with their EngineShare filled in and
/// the seed varied per engine.
std::vector<std::unique_ptr<Engine>> make_engines(const EngineConfig& config,
                                                  std::vector<std::unique_ptr<dev::Device>> queues,
                                                  std::shared_ptr<void> keepalive);

}  // namespace ustack::api
