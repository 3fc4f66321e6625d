#pragma once
// The engine's configuration: one table of keys, read from a TOML file and then from USTACK_*
// environment variables (which win). A bad value is an error that names the key and says what
// would be accepted.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/instant.h"
#include "base/result.h"
#include "stack/stack_config.h"

namespace ustack::api {

struct EngineConfig {
  StackConfig stack;
  std::string dev = "net_tap0,iface=ust0";  ///< the DPDK vdev (an EAL --vdev argument)
  std::string eal;                          ///< extra EAL arguments, whitespace-separated
  std::string pcap;                         ///< capture every frame to this pcapng file
  int cores = 1;
  Duration idle_spin = 200us;         ///< busy-poll this long after the last frame before sleeping
  Duration idle_sleep_max = 1000us;   ///< the longest nap of an idle engine (its worst added latency)
  /// Threaded mode: the engine polls on a thread of its own and every application thread may
  /// call; otherwise (inline mode) the engine runs inside the calls of the thread that started it.
  bool threaded = false;
  /// Not a configuration key: when set, the engine reads the time from this clock instead of
  /// steady_clock, and whoever owns it moves it (simulated time: the packetdrill adapter). Such an
  /// engine must only be driven by calls that do not block (non-blocking sockets, epoll_wait with
  /// timeout 0): a blocking call would nap on the device while its clock stands still.
  const ManualClock* clock = nullptr;
};

/// One configuration key, in both spellings, with its help text.
struct ConfigKey {
  const char* toml;
  const char* env;
  const char* help;
};
const std::vector<ConfigKey>& config_keys();

/// Reads `path` (may be empty: no file), then the environment given as name → value.
Result<EngineConfig, std::string> load_config(const std::string& path, const std::map<std::string, std::string>& env);
/// The process environment's USTACK_* variables.
std::map<std::string, std::string> ustack_environment();

}  // namespace ustack::api
