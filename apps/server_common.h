#pragma once
// What the TCP echo servers (the server designs of a sockets course, one program each) share:
// their flags, the serving line, the counters and the summary line, the blocking echo of one
// connection, the Stopper that ends a server whose threads block in accept, recv and send, and
// the start of main() (command line, backend, listener).
// Only ustack:: calls, so every server runs on either backend (--stack).

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"

namespace app {

// ---- flags ----

struct ServerOptions {
  CommonOptions common;
  uint16_t port = 7777;
  std::string bind = "0.0.0.0";
  int backlog = 128;
  sockaddr_in addr{};  // --bind and --port, once parsed
};

/// --stack --config --stats --port --bind --backlog.
inline void add_server_options(CLI::App& cli, ServerOptions& o) {
  add_common_options(cli, o.common);
  cli.add_option("--port", o.port, "TCP port to serve")->capture_default_str();
  cli.add_option("--bind", o.bind, "local IPv4 address to bind")->capture_default_str();
  cli.add_option("--backlog", o.backlog, "listen() backlog")->check(CLI::Range(1, 65535))->capture_default_str();
}

/// Parses the command line and fills o.addr. Returns the exit status to leave with (0 after
/// --help, 2 on a usage error), or -1 to go on.
inline int parse_server_command_line(CLI::App& cli, int argc, char** argv, const char* program, ServerOptions& o) {
  if (int status = parse_command_line(cli, argc, argv); status >= 0) return status;
  if (!make_addr(o.bind, o.port, &o.addr)) {
    std::fprintf(stderr, "%s: --bind %s is not an IPv4 address\n", program, o.bind.c_str());
    return 2;
  }
  return -1;
}

// ---- the serving line ----

/// The one line test scripts wait for (they look for "serving"). `ports` > 1: the server listens
/// on that many ports from listen_fd's on (epoll-server --ports).
inline void print_serving(const char* program, const ServerOptions& o, int listen_fd, uint32_t ports = 1) {
  unsigned port = ntohs(local_addr(listen_fd).sin_port);
  std::string last = ports > 1 ? "-" + std::to_string(port + ports - 1) : "";
  std::printf("%s: serving %s:%u%s on the %s stack\n", program, o.bind.c_str(), port, last.c_str(),
              o.common.stack.c_str());
  std::fflush(stdout);
}

// ---- counters ----

/// What a server counts. Atomic: the threads of a server share one.
struct ServerStats {
  static constexpr uint64_t kMaxErrorsShown = 10;  // errors described on stderr; all are counted

  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> echoed{0};  // bytes sent back
  std::atomic<uint64_t> errors{0};

  /// Counts an error of a connection and describes the first kMaxErrorsShown.
  void fail(const char* program, const sockaddr_in& peer, const char* what, int err) {
    uint64_t n = ++errors;
    if (n <= kMaxErrorsShown) {
      std::fprintf(stderr, "%s: %s: %s: %s%s\n", program, format_addr(peer).c_str(), what, std::strerror(err),
                   n == kMaxErrorsShown ? " (further errors only counted)" : "");
    }
  }
};

/// The summary line at exit; `extra` (e.g. ", 3 refused") goes after the error count.
inline void print_summary(const char* program, uint64_t accepted, uint64_t echoed, uint64_t errors,
                          const std::string& extra = "") {
  std::printf("%s: %llu connections accepted, %llu bytes echoed, %llu errors%s\n", program,
              static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(echoed),
              static_cast<unsigned long long>(errors), extra.c_str());
  std::fflush(stdout);
}

inline void print_summary(const char* program, const ServerStats& s, const std::string& extra = "") {
  print_summary(program, s.accepted.load(), s.echoed.load(), s.errors.load(), extra);
}

// ---- blocking echo ----

/// Sends all of [data, data + len) on a blocking socket. False on an error (counted unless the
/// server is stopping, whose shutdown() is the cause).
inline bool send_all(const char* program, int fd, const sockaddr_in& peer, const char* data, size_t len,
                     ServerStats& stats) {
  while (len > 0) {
    ssize_t n = ustack::send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!g_stop) stats.fail(program, peer, "send", errno);
      return false;
    }
    stats.echoed += static_cast<uint64_t>(n);
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

/// The echo of one connection on a blocking socket: receive, send it all back, until the peer
/// closes (or resets) the connection or a shutdown() wakes the call. Does not close `fd`.
inline void echo_blocking(const char* program, int fd, const sockaddr_in& peer, ServerStats& stats) {
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = ustack::recv(fd, buf.data(), buf.size(), 0);
    if (n == 0) return;  // the peer closed its side (or the Stopper shut ours)
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!g_stop) stats.fail(program, peer, "recv", errno);
      return;
    }
    if (!send_all(program, fd, peer, buf.data(), static_cast<size_t>(n), stats)) return;
  }
}

// ---- stopping a blocking server ----

/// Ends a server whose threads block in accept, recv and send, where no flag is ever looked at:
/// SIGINT and SIGTERM are blocked in every thread, and one thread of the Stopper waits for them
/// (sigwait). Then it sets g_stop and shuts down the listener (a blocked accept fails) and every
/// connection registered with it (a blocked recv returns 0, a blocked send fails), under a lock
/// that close() takes too, so it never shuts down a descriptor number that was reused.
class Stopper {
 public:
  /// Blocks SIGINT and SIGTERM in the calling thread and so in every thread it starts later. Call
  /// it before start_backend(), so that ustack's engine thread has them blocked too.
  static void block_signals() {
    sigset_t set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }

  /// Starts the thread that waits for SIGINT or SIGTERM.
  void start(int listen_fd) {
    listen_fd_ = listen_fd;
    thread_ = std::thread([this] {
      sigset_t set = stop_signals();
      int sig = 0;
      while (sigwait(&set, &sig) != 0) {
      }
      stop();
    });
  }

  /// Registers an accepted connection. False when the server is stopping: the caller closes it.
  bool add(int fd) {
    std::lock_guard lock(mutex_);
    if (g_stop) return false;
    fds_.insert(fd);
    return true;
  }

  /// Forgets a connection and closes it.
  void close(int fd) {
    std::lock_guard lock(mutex_);
    fds_.erase(fd);
    ustack::close(fd);
  }

  /// Stops the server, if no signal did, and joins the thread. Call once the listener's
  /// thread is done accepting, before closing the listener.
  void join() {
    if (!thread_.joinable()) return;
    pthread_kill(thread_.native_handle(), SIGTERM);  // harmless if it has stopped already: SIGTERM stays blocked
    thread_.join();
  }

 private:
  static sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
  }

  void stop() {
    std::lock_guard lock(mutex_);
    g_stop = 1;
    ustack::shutdown(listen_fd_, SHUT_RDWR);
    for (int fd : fds_) ustack::shutdown(fd, SHUT_RDWR);
  }

  std::mutex mutex_;
  std::unordered_set<int> fds_;
  int listen_fd_ = -1;
  std::thread thread_;
};

/// Waits for the next connection on a blocking listener and registers it with the Stopper.
/// Returns its descriptor, or -1 once the server is stopping. A failure other than a connection
/// that went away before it was accepted (out of descriptors, say) is counted and retried 100 ms
/// later.
inline int accept_blocking(const char* program, int listen_fd, Stopper& stopper, ServerStats& stats,
                           sockaddr_in* peer) {
  while (!g_stop) {
    socklen_t len = sizeof *peer;
    int fd = ustack::accept(listen_fd, reinterpret_cast<sockaddr*>(peer), &len);
    if (fd >= 0) {
      if (!stopper.add(fd)) {
        ustack::close(fd);
        return -1;
      }
      ++stats.accepted;
      set_nodelay(program, fd);
      return fd;
    }
    if (g_stop) break;  // the Stopper shut the listener down
    if (errno == EINTR || errno == ECONNABORTED) continue;
    ++stats.errors;
    std::fprintf(stderr, "%s: accept: %s (retrying in 100 ms)\n", program, std::strerror(errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return -1;
}

/// Serves a connection from accept_blocking() with blocking calls (echo_blocking), then closes it.
inline void echo_and_close(const char* program, int fd, const sockaddr_in& peer, Stopper& stopper,
                           ServerStats& stats) {
  echo_blocking(program, fd, peer, stats);
  stopper.close(fd);
}

// ---- the start of a server ----

/// What a one-thread server with non-blocking sockets does first: parses the command line (the
/// options of `cli`, add_server_options' among them), starts the backend and opens a non-blocking
/// listener, in *listen_fd. Returns the exit status to leave with (0 after --help, 2 on a usage
/// error, 1 if the backend or the listener failed), or -1 to go on.
inline int start_server(CLI::App& cli, int argc, char** argv, const char* program, ServerOptions& o,
                        int* listen_fd) {
  if (int status = parse_server_command_line(cli, argc, argv, program, o); status >= 0) return status;
  if (!start_backend(o.common, program)) return 1;
  *listen_fd = listen_tcp(program, o.addr, o.backlog, SOCK_NONBLOCK);
  return *listen_fd < 0 ? 1 : -1;
}

/// The same for a server of blocking calls: SIGINT and SIGTERM are blocked for the Stopper
/// before the backend starts (threaded: the Stopper's thread makes calls, shutdown, too), the
/// listener is blocking, and `stopper` is started on it.
inline int start_blocking_server(CLI::App& cli, int argc, char** argv, const char* program, ServerOptions& o,
                                 Stopper& stopper, int* listen_fd) {
  if (int status = parse_server_command_line(cli, argc, argv, program, o); status >= 0) return status;
  Stopper::block_signals();
  if (!start_backend(o.common, program, /*threaded=*/true)) return 1;
  *listen_fd = listen_tcp(program, o.addr, o.backlog, 0);
  if (*listen_fd < 0) return 1;
  stopper.start(*listen_fd);
  return -1;
}

}  // namespace app
