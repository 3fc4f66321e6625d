#pragma once
// What every demo app shares: the --stack/--config/--stats flags, starting the backend, and a
// stop flag set by SIGINT/SIGTERM so that the apps exit cleanly (and print their counters).

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "ustack/ustack.h"

namespace app {

struct CommonOptions {
  std::string stack = "kernel";
  std::string config;
  bool stats = false;
};

/// Set by the SIGINT/SIGTERM handler or a stopping thread, read by every thread: a lock-free
/// atomic is both async-signal-safe and free of data races.
inline std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free);

/// CLI11 reads "-1" into an unsigned option as 2^64-1; counts must refuse it.
inline const CLI::Validator kNotNegative(
    [](const std::string& v) { return !v.empty() && v[0] == '-' ? std::string("must not be negative") : std::string(); },
    "NONNEGATIVE");

inline void add_common_options(CLI::App& cli, CommonOptions& o) {
  cli.add_option("--stack", o.stack, "network stack: kernel (Linux sockets) or ustack (DPDK, userspace)")
      ->check(CLI::IsMember({"kernel", "ustack"}))
      ->capture_default_str();
  cli.add_option("--config", o.config,
                 "ustack TOML configuration file (default: $USTACK_CONFIG; USTACK_* variables override it)");
  cli.add_flag("--stats", o.stats, "print ustack's counters to stderr at exit");
}

/// Starts the chosen backend; on failure prints why and returns false. `threaded`: ustack runs its
/// engine on a thread of its own, which keeps it going while no thread is inside a call (a worker
/// busy with a file). Without it the engine runs to completion inside the calls: any thread may
/// call, and a call made while another thread is inside one is handed to that thread.
inline bool start_backend(const CommonOptions& o, const char* program, bool threaded = false) {
  ustack::InitOptions init;
  ustack::parse_backend(o.stack, &init.backend);
  init.threaded = threaded;
  init.config_file = o.config;
  init.print_stats_at_exit = o.stats;
  init.program_name = program;
  if (ustack::init(init) != 0) {
    std::fprintf(stderr, "%s: cannot start the %s stack: %s\n", program, o.stack.c_str(), ustack::last_error());
    return false;
  }
  auto on_signal = [](int) { g_stop = 1; };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  return true;
}

}  // namespace app
