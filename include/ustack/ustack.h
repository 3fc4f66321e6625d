#pragma once
/// ustack: a userspace TCP/IP stack on DPDK behind POSIX-shaped socket and epoll calls.
///
/// A program calls ustack::init() once with the backend it wants, then uses ustack::socket(),
/// ustack::epoll_wait() and friends exactly as it would the libc calls. With the kernel backend
/// every call forwards to Linux; with the ustack backend AF_INET sockets and epoll instances live
/// in this process, on an engine that polls a DPDK port. The same source runs on both.

#include <cstdio>
#include <string>
#include <string_view>

namespace ustack {

enum class Backend { kKernel, kUstack };

struct InitOptions {
  Backend backend = Backend::kKernel;
  /// A TOML configuration file; empty: $USTACK_CONFIG if set, else the defaults. USTACK_*
  /// environment variables override the file (see README, "Configuration").
  std::string config_file;
  /// Print every counter to stderr when shutdown() runs (the apps' --stats flag).
  bool print_stats_at_exit = false;
  /// Threaded mode: each engine polls on a thread of its own, and every call takes the engine's
  /// lock; a blocking call sleeps until the engine makes it ready. Off (run to completion): the
  /// engine runs inside the calls, on any application thread. A call made while another thread
  /// is inside one on the same engine is handed to that thread through the engine's lock-free
  /// ring and runs there (a blocking one as attempts, its thread sleeping between them); one made
  /// from a signal handler that interrupted its own thread's call on that engine fails with EPERM.
  /// The configuration key `threaded` (USTACK_THREADED) turns it on too. See README, "Threads".
  bool threaded = false;
  /// Program name for logs and the EAL's argv[0].
  std::string program_name = "ustack";
};

/// Starts the chosen backend. Returns 0, or -1 with errno set and last_error() saying what went
/// wrong in words (a bad configuration key, a device that would not start). Call once, before any
/// other ustack call (README, "Threads").
int init(const InitOptions& options);
/// Closes every ustack descriptor, stops the engine and the device. Idempotent. Runs at exit.
void shutdown();
/// The backend chosen by init() (kKernel before init).
Backend backend();
/// The last init() failure, or an explanation of the last errno an ustack call set where one is
/// useful (e.g. why a TCP socket is refused on the ustack backend). Empty otherwise.
const char* last_error();

/// "kernel" / "ustack" ⇄ Backend, for --stack flags. Returns false on anything else.
bool parse_backend(std::string_view text, Backend* out);
const char* backend_name(Backend b);

/// Every counter, one "layer.name value" per line (ustack backend; empty on the kernel's).
std::string stats_text();
/// The counters as one JSON object {"layer.name": value, ...}.
std::string stats_json();
/// Writes stats_text() to `out`.
void print_stats(std::FILE* out);
/// How many ustack descriptors are open (sockets and epoll instances): lets tests check leaks.
int open_descriptors();

/// Engines on several cores (USTACK_CORES=N; README, "Engines on several cores"). Each engine
/// polls its own queue, driven by the threads that call on it (threaded: its own thread), and
/// owns the sockets made on it. A thread's new sockets
/// and epoll instances go to its engine: given round robin at the thread's first call, or chosen.
/// Any thread may call on any descriptor; an epoll instance or a poll() call takes the sockets
/// of one engine only (EXDEV otherwise).
/// How many engines run (0 before init() or on the kernel backend).
int engines();
/// Makes engine `index` this thread's: 0, or -1 with errno EINVAL (no such engine) or ENODEV
/// (the ustack backend is not running).
int set_thread_engine(int index);
/// This thread's engine (given now if it had none), or -1 when the ustack backend is not running.
int thread_engine();

}  // namespace ustack
