#pragma once
// The stack's counters over DPDK telemetry: `/ustack/stats` on the process's telemetry socket
// (/var/run/dpdk/<file-prefix>/dpdk_telemetry.v2), e.g. `dpdk-telemetry.py -f ustack-<pid>`.

#include <cstdint>
#include <functional>
#include <string_view>

namespace ustack::dev {

/// Calls its argument once per counter: (layer, name, value). StackStats::for_each has this shape.
using CounterVisitor =
    std::function<void(std::function<void(std::string_view layer, std::string_view name, uint64_t value)>)>;

/// Registers `/ustack/stats`. Its reply holds one dict per layer:
///   {"/ustack/stats": {"dev": {"rx_frames": 12, ...}, "eth": {...}, ...}}
/// (not flat "layer.name" keys: DPDK 22.11 telemetry refuses '.' in a name, allowing only
/// letters, digits, '_' and '/'; nesting also lifts the 256-entry cap of one dict to 256 per
/// layer). `visit` runs on DPDK's telemetry thread, so it may only read what is safe to read from
/// another thread (the Counter atomics are). Calling it again replaces the visitor (the command
/// is registered once per process). Returns false when DPDK refuses the command. The command may
/// be registered before Eal::init; the socket exists once the EAL is up.
bool register_stats_telemetry(CounterVisitor visit);

/// Drops the visitor (before what it reads is destroyed); `/ustack/stats` then replies with an
/// empty dict.
void clear_stats_telemetry();

}  // namespace ustack::dev
