#include "dev/dpdk/eal.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <sstream>

namespace ustack::dev {
namespace {

// rte_eal_init succeeds at most once per process; this remembers that it has been called.
std::atomic<bool> g_eal_initialised{false};

std::string join(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Eal>, std::string> Eal::init(std::vector<std::string> args) {
  if (args.empty()) return unexpected(std::string("EAL: empty argument list (args[0] is the program name)"));
  if (g_eal_initialised.exchange(true)) {
    return unexpected(std::string(
        "EAL: already initialised in this process (DPDK allows rte_eal_init once per process, even after "
        "rte_eal_cleanup); share the first Eal guard"));
  }
  std::unique_ptr<Eal> eal(new Eal());
  eal->args_ = args;
  eal->argv_storage_ = std::move(args);
  std::vector<char*> argv;
  argv.reserve(eal->argv_storage_.size() + 1);
  for (std::string& a : eal->argv_storage_) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int ret = rte_eal_init(static_cast<int>(argv.size() - 1), argv.data());
  if (ret < 0) {
    const int err = rte_errno;
    // A retry is DPDK's call: it answers EALREADY itself when it cannot run again.
    g_eal_initialised.store(false);
    return unexpected("EAL: rte_eal_init(" + join(eal->args_) + ") failed: " + rte_strerror(err));
  }
  eal->runtime_dir_ = rte_eal_get_runtime_dir();
  return eal;
}

Eal::~Eal() {
  const bool primary = rte_eal_process_type() == RTE_PROC_PRIMARY;
  // g_eal_initialised stays set: DPDK cannot be initialised again after cleanup.
  rte_eal_cleanup();
  // rte_eal_cleanup leaves the runtime directory behind (with shared config: 6 MB of fbarray
  // files in tmpfs); one per process id would pile up. A primary owns it: remove what DPDK put
  // there, then the directory if nothing else is left in it.
  if (primary && !runtime_dir_.empty()) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(runtime_dir_, ec)) {
      const std::string name = entry.path().filename().string();
      if (name == "config" || name.starts_with("fbarray_") || name.starts_with("mp_socket") ||
          name.starts_with("dpdk_telemetry")) {
        std::filesystem::remove(entry.path(), ec);
      }
    }
    std::filesystem::remove(runtime_dir_, ec);  // fails, harmlessly, when not empty
  }
}

std::vector<std::string> eal_args(const std::string& program, const std::string& dev, const std::string& extra_eal) {
  std::vector<std::string> extra;
  {
    std::istringstream in(extra_eal);
    std::string token;
    while (in >> token) extra.push_back(token);
  }
  // True when some token of `extra` is `name` itself or starts with `name=` (for long options) or,
  // for a short option, `name` followed by its value in the same token (`-a0000:01:00.0`).
  auto has = [&](std::string_view name) {
    return std::any_of(extra.begin(), extra.end(), [&](const std::string& t) {
      if (t == name) return true;
      if (name.starts_with("--")) return t.starts_with(std::string(name) + "=");
      return t.size() > name.size() && t.starts_with(name);
    });
  };

  std::vector<std::string> args{program};
  if (!has("-a") && !has("--allow") && !has("-b") && !has("--block")) args.push_back("--no-pci");
  if (!has("--no-huge") && !has("--socket-mem") && !has("--huge-dir") && !has("--in-memory")) {
    args.push_back("--no-huge");
  }
  if (!has("-m") && !has("--socket-mem")) {
    args.push_back("-m");
    args.push_back("512");
  }
  // No --no-shconf: telemetry works either way, but with it net_tap logs an error on every start
  // ("tap_mp_req_on_rxtx(): Failed to send start req to secondary"). ~Eal removes the shared
  // config files this leaves in the runtime directory.
  if (!has("--file-prefix")) args.push_back("--file-prefix=ustack-" + std::to_string(::getpid()));
  // Quiet start: EAL prints five INFO lines otherwise. The user's --log-level options come later
  // and win. (22.11's telemetry still warns "No legacy callbacks, legacy socket not created":
  // no --log-level pattern reaches its log type; only a global --log-level=error would hide it.)
  args.push_back("--log-level=lib.eal:warning");
  if (!dev.empty()) args.push_back("--vdev=" + dev);
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace ustack::dev
