#pragma once
// The DPDK Environment Abstraction Layer as an RAII guard: rte_eal_init when made, rte_eal_cleanup
// when destroyed. Everything else in src/dev/dpdk needs a live Eal.

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace ustack::dev {

class Eal {
 public:
  /// Runs rte_eal_init with `args` (args[0] is the program name, as in argv).
  ///
  /// DPDK allows one successful rte_eal_init per process, and none after rte_eal_cleanup, so
  /// there is no reuse: a second init() in the same process returns an error, whether or not the
  /// first guard is still alive. Share the one guard instead. A failed init() may be retried only
  /// when DPDK itself allows it (a bad argument does; most later failures do not).
  /// Not thread-safe against a concurrent init() of its own.
  ///
  /// Runtime directories: first removes stale ones, /var/run/dpdk/ustack-<pid> (the base as DPDK
  /// picks it: $XDG_RUNTIME_DIR/dpdk or /tmp/dpdk when not root) whose process is gone, left by
  /// ustack processes killed by a signal (they never ran ~Eal; 6 MB of tmpfs each). Only names
  /// that are exactly ustack-<digits>, with no /proc/<pid>, no process holding their config
  /// locked, and nothing in them but DPDK's own files. When rte_eal_init fails, removes this
  /// process's own runtime directory (prefix ustack-<getpid()>) on the same terms.
  static Result<std::unique_ptr<Eal>, std::string> init(std::vector<std::string> args);

  /// rte_eal_cleanup. Precondition: every DpdkPort (and every Packet from one) is gone.
  ~Eal();
  Eal(const Eal&) = delete;
  Eal& operator=(const Eal&) = delete;

  /// The arguments rte_eal_init was given, in order (for logs and error messages).
  const std::vector<std::string>& args() const { return args_; }
  /// The runtime directory (/var/run/dpdk/<file-prefix> as root), where the telemetry socket
  /// dpdk_telemetry.v2 lives.
  const std::string& runtime_dir() const { return runtime_dir_; }

 private:
  Eal() = default;

  std::vector<std::string> args_;
  std::vector<std::string> argv_storage_;  // rte_eal_init may keep pointers into argv
  std::string runtime_dir_;
};

/// The EAL argument list for one ustack process:
///  - `program` first;
///  - `--no-pci`, unless `extra_eal` names PCI devices itself (`-a`, `--allow`, `-b`, `--block`):
///    tests and the default setup must never probe the host's own NIC;
///  - `--no-huge` unless `extra_eal` picks a memory model (`--no-huge`, `--socket-mem`,
///    `--huge-dir`, `--in-memory`), and `-m 512` unless it sizes memory (`-m`, `--socket-mem`);
///  - `--file-prefix=ustack-<pid>` unless it has `--file-prefix`: several ustack processes run
///    side by side, each with a runtime directory of its own (/var/run/dpdk/ustack-<pid>), which
///    holds its telemetry socket. No `--no-shconf`: telemetry would work with it too, but net_tap
///    then logs an error at every start; ~Eal removes the shared-config files (6 MB with
///    --no-huge) that DPDK leaves in the directory. Add `--no-shconf` to `extra_eal` if you like;
///  - `--log-level=lib.eal:warning`: EAL's start prints only warnings and errors (a
///    `--log-level` in `extra_eal` comes later and wins);
///  - `--vdev=<dev>` when `dev` is not empty;
///  - then `extra_eal`, split on whitespace (no quoting).
std::vector<std::string> eal_args(const std::string& program, const std::string& dev, const std::string& extra_eal);

}  // namespace ustack::dev
