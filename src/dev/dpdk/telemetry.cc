#include "dev/dpdk/telemetry.h"

#include <rte_telemetry.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ustack::dev {
namespace {

// The C callback has no user pointer, so the visitor lives here. The mutex keeps a query on the
// telemetry thread from racing a replacement or a clear on another thread.
std::mutex g_mutex;
CounterVisitor g_visit;
bool g_registered = false;

int handle_stats(const char* /*cmd*/, const char* /*params*/, rte_tel_data* d) {
  rte_tel_data_start_dict(d);
  std::lock_guard lock(g_mutex);
  if (!g_visit) return 0;
  // One dict per layer, made as the layer first appears (StackStats visits layer by layer, but
  // nothing here depends on it).
  std::vector<std::pair<std::string, rte_tel_data*>> layers;
  std::string name;
  g_visit([&](std::string_view layer, std::string_view counter, uint64_t value) {
    rte_tel_data* dict = nullptr;
    for (auto& [n, ld] : layers) {
      if (n == layer) dict = ld;
    }
    if (!dict) {
      if (layers.size() >= RTE_TEL_MAX_DICT_ENTRIES || !(dict = rte_tel_data_alloc())) return;
      rte_tel_data_start_dict(dict);
      layers.emplace_back(std::string(layer), dict);
    }
    // Fails (and leaves the counter out) for a name too long or with characters telemetry
    // refuses, or past 256 counters in one layer.
    name.assign(counter);
    rte_tel_data_add_dict_u64(dict, name.c_str(), value);
  });
  for (auto& [n, dict] : layers) {
    // keep = 0: the telemetry library frees the layer's dict once the reply is written.
    if (rte_tel_data_add_dict_container(d, n.c_str(), dict, 0) != 0) rte_tel_data_free(dict);
  }
  return 0;
}

}  // namespace

bool register_stats_telemetry(CounterVisitor visit) {
  std::lock_guard lock(g_mutex);
  g_visit = std::move(visit);
  if (!g_registered) {
    g_registered = rte_telemetry_register_cmd("/ustack/stats", handle_stats,
                                              "Returns every ustack counter, by layer: {\"dev\": {\"rx_frames\": n}}.") == 0;
  }
  return g_registered;
}

void clear_stats_telemetry() {
  std::lock_guard lock(g_mutex);
  g_visit = nullptr;
}

}  // namespace ustack::dev
