#include "dev/dpdk/eal.h"

#include <sched.h>

#include <fcntl.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
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

// What DPDK itself puts in a runtime directory: the shared config (and its fbarray files, 6 MB
// with --no-huge), the multi-process sockets, the telemetry sockets, hugepage bookkeeping.
bool is_dpdk_runtime_file(const std::string& name) {
  return name == "config" || name == "hugepage_info" || name == "telemetry" || name.starts_with("fbarray_") ||
         name.starts_with("mp_socket") || name.starts_with("dpdk_telemetry");
}

// Where DPDK puts runtime directories (eal_create_runtime_dir in DPDK 22.11): /var/run/dpdk as
// root, else $XDG_RUNTIME_DIR/dpdk, else /tmp/dpdk.
std::filesystem::path runtime_base() {
  const char* dir = "/var/run";
  if (::getuid() != 0) {
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    dir = xdg != nullptr ? xdg : "/tmp";
  }
  return std::filesystem::path(dir) / "dpdk";
}

// The prefix rte_eal_init will use: the last --file-prefix in `args`, else DPDK's default "rte".
std::string file_prefix(const std::vector<std::string>& args) {
  std::string prefix = "rte";
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i].starts_with("--file-prefix=")) {
      prefix = args[i].substr(std::string_view("--file-prefix=").size());
    } else if (args[i] == "--file-prefix" && i + 1 < args.size()) {
      prefix = args[++i];
    }
  }
  return prefix;
}

// A primary process holds a write lock on its runtime directory's config file for its whole
// life. True when some other process holds a lock on it (our own locks do not count: F_GETLK
// does not report them).
bool config_locked_by_another(const std::filesystem::path& dir) {
  const int fd = ::open((dir / "config").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  const bool locked = ::fcntl(fd, F_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
  ::close(fd);
  return locked;
}

// Removes `dir` when it holds nothing but DPDK's own files (or nothing), and no other process
// holds its config. Anything else in it (a file someone put there) leaves it as it is.
void remove_runtime_dir_if_dpdk_only(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(std::filesystem::symlink_status(dir, ec))) return;
  if (config_locked_by_another(dir)) return;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!is_dpdk_runtime_file(entry.path().filename().string()) || entry.is_directory(ec)) return;
    files.push_back(entry.path());
  }
  if (ec) return;
  for (const auto& f : files) std::filesystem::remove(f, ec);
  std::filesystem::remove(dir, ec);  // fails, harmlessly, if something appeared meanwhile
}

// "ustack-<digits>" with the pid those digits name, or 0 when `name` is not exactly that.
pid_t ustack_dir_pid(const std::string& name) {
  constexpr std::string_view kPrefix = "ustack-";
  if (!name.starts_with(kPrefix) || name.size() == kPrefix.size() || name.size() > kPrefix.size() + 9) return 0;
  const std::string digits = name.substr(kPrefix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return 0;
  if (digits.front() == '0') return 0;  // a pid is never written with a leading zero
  return static_cast<pid_t>(std::stol(digits));
}

// A ustack process killed by a signal it does not handle (SIGKILL, a crash) never runs ~Eal and
// leaves its runtime directory, /var/run/dpdk/ustack-<pid> (6 MB of tmpfs), behind; nothing in
// that process can help it. So every start sweeps up after the dead: a directory named exactly
// ustack-<digits> whose process no longer exists (no /proc/<pid>), whose config no process holds
// locked (a primary keeps it locked while it lives: this spares one in another pid namespace
// that shares /var/run), and that holds only DPDK's own files.
void remove_stale_runtime_dirs(const std::filesystem::path& base) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
    const pid_t pid = ustack_dir_pid(entry.path().filename().string());
    if (pid <= 0 || pid == ::getpid()) continue;
    if (std::filesystem::exists("/proc/" + std::to_string(pid), ec) || ec) continue;
    remove_runtime_dir_if_dpdk_only(entry.path());
  }
}

}  // namespace

Result<std::unique_ptr<Eal>, std::string> Eal::init(std::vector<std::string> args) {
  if (args.empty()) return unexpected(std::string("EAL: empty argument list (args[0] is the program name)"));
  if (g_eal_initialised.exchange(true)) {
    return unexpected(std::string(
        "EAL: already initialised in this process (DPDK allows rte_eal_init once per process, even after "
        "rte_eal_cleanup); share the first Eal guard"));
  }
  remove_stale_runtime_dirs(runtime_base());
  // Our own runtime directory, when it is ours alone: named after this process (the default).
  const std::string prefix = file_prefix(args);
  const bool own_prefix = prefix == "ustack-" + std::to_string(::getpid());

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
    // A failed rte_eal_init leaves the runtime directory it made (empty, or with its config and
    // sockets); remove it when it is this process's own and holds nothing but DPDK's files.
    if (own_prefix) remove_runtime_dir_if_dpdk_only(runtime_base() / prefix);
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
      if (is_dpdk_runtime_file(entry.path().filename().string())) std::filesystem::remove(entry.path(), ec);
    }
    std::filesystem::remove(runtime_dir_, ec);  // fails, harmlessly, when not empty
  }
}

// The CPUs this process may run on (its affinity: taskset narrows it), as "0,1,3".
static std::string allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return "";
  std::string out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    if (!out.empty()) out += ',';
    out += std::to_string(cpu);
  }
  return out;
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
  // Without a core list EAL pins its main thread to the first CPU the process may use, so every
  // ustack process (and whatever the scheduler puts beside it) shares that one core: measured
  // here, a request/response run then had millisecond tails. One engine, free to run on any CPU
  // the process may use (taskset still narrows it), until per-core engines come (USTACK_CORES).
  if (!has("-l") && !has("-c") && !has("--lcores")) {
    if (std::string cpus = allowed_cpus(); !cpus.empty()) args.push_back("--lcores=0@(" + cpus + ")");
  }
  // Quiet start: EAL prints five INFO lines otherwise. The user's --log-level options come later
  // and win. (22.11's telemetry still warns "No legacy callbacks, legacy socket not created":
  // no --log-level pattern reaches its log type; only a global --log-level=error would hide it.)
  args.push_back("--log-level=lib.eal:warning");
  if (!dev.empty()) args.push_back("--vdev=" + dev);
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace ustack::dev
