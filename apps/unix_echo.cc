// unix-echo: an AF_UNIX stream echo server on --path. One thread, one ustack::poll() loop over
// non-blocking sockets; every byte received is sent back.
//
// AF_UNIX is the kernel's on both backends: ustack serves AF_INET only, and every ustack:: call
// on a kernel descriptor goes to the system call. The loop waits in poll() rather than in an
// epoll instance because on the ustack backend an epoll instance is ustack's, and it cannot watch
// a kernel descriptor (EPERM); ustack::poll() takes both kinds. As in epoll-server, what the
// socket does not take at once waits in the connection's pending buffer, and while more than
// kMaxPending bytes wait the connection is not read, so a client that sends without reading is
// held back by the socket's own buffer, not by this process's memory.
//
// A socket file left at --path by an earlier run is removed first (not one that a live server
// answers on, nor a file that is not a socket); ours is removed at exit.

#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"
#include "ustack/poll.h"
#include "ustack/socket.h"

namespace {

constexpr const char* kProgram = "unix-echo";
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxPending = 1 << 20;  // stop reading a connection while this much waits to go back
constexpr int kReadsPerEvent = 16;       // then let other connections have a turn
constexpr int kMaxErrorsShown = 10;

struct Client {
  int fd = -1;
  std::vector<char> pending;  // bytes [head, size) are still to be sent back
  size_t head = 0;
  bool peer_done = false;  // EOF read: send what is pending, then close
  size_t pending_size() const { return pending.size() - head; }
};

class EchoServer {
 public:
  explicit EchoServer(int listen_fd) : listen_fd_(listen_fd), scratch_(kReadChunk) {}

  /// Serves until SIGINT/SIGTERM. False if poll() failed.
  bool run() {
    std::vector<pollfd> fds;
    while (!app::g_stop) {
      fds.clear();
      fds.push_back(pollfd{listen_fd_, POLLIN, 0});
      for (const Client& c : clients_) {
        short want = 0;
        if (!c.peer_done && c.pending_size() < kMaxPending) want |= POLLIN | POLLRDHUP;
        if (c.pending_size() > 0) want |= POLLOUT;
        fds.push_back(pollfd{c.fd, want, 0});
      }
      int n = ustack::poll(fds.data(), fds.size(), 100);  // 100 ms: to notice a signal that poll did not see
      if (n < 0) {
        if (errno == EINTR) continue;
        std::fprintf(stderr, "%s: poll: %s\n", kProgram, std::strerror(errno));
        return false;
      }
      if (n == 0) continue;
      // Clients first (fds[i + 1] is clients_[i]); accepting appends to clients_ afterwards.
      for (size_t i = 0; i < clients_.size(); ++i) {
        if (fds[i + 1].revents != 0) serve(clients_[i], fds[i + 1].revents);
      }
      std::erase_if(clients_, [](const Client& c) { return c.fd < 0; });
      if (fds[0].revents != 0) accept_all();
    }
    return true;
  }

  void close_all() {
    for (Client& c : clients_) ustack::close(c.fd);
    clients_.clear();
  }

  void print_summary() const {
    std::printf("%s: %llu connections accepted, %llu bytes echoed, %llu errors\n", kProgram,
                static_cast<unsigned long long>(accepted_), static_cast<unsigned long long>(echoed_),
                static_cast<unsigned long long>(errors_));
    std::fflush(stdout);
  }

 private:
  void accept_all() {
    for (;;) {
      int fd = ustack::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) error("accept", errno);
        return;
      }
      ++accepted_;
      Client c;
      c.fd = fd;
      clients_.push_back(std::move(c));
    }
  }

  void serve(Client& c, short revents) {
    if (revents & POLLNVAL) return fail(c, "poll", EBADF);
    if (revents & POLLERR) {
      int err = app::socket_error(c.fd);
      return fail(c, "socket error", err ? err : EIO);
    }
    if ((revents & POLLOUT) && !flush(c)) return;
    if (!c.peer_done && (revents & (POLLIN | POLLRDHUP | POLLHUP))) {
      for (int i = 0; i < kReadsPerEvent && c.pending_size() < kMaxPending; ++i) {
        ssize_t n = ustack::recv(c.fd, scratch_.data(), scratch_.size(), 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          return fail(c, "recv", errno);
        }
        if (n == 0) {
          c.peer_done = true;
          break;
        }
        if (!send_back(c, scratch_.data(), static_cast<size_t>(n))) return;
      }
    }
    // Done once all is echoed after the client's EOF; POLLHUP: it closed altogether, so what is
    // pending has no reader.
    if (c.peer_done && (c.pending_size() == 0 || (revents & POLLHUP))) close_client(c);
  }

  // Sends what is pending, then [data, data + len); keeps what the socket does not take.
  bool send_back(Client& c, const char* data, size_t len) {
    if (!flush(c)) return false;
    if (c.pending_size() == 0) {
      while (len > 0) {
        ssize_t n = ustack::send(c.fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          fail(c, "send", errno);
          return false;
        }
        echoed_ += static_cast<uint64_t>(n);
        data += n;
        len -= static_cast<size_t>(n);
      }
    }
    c.pending.insert(c.pending.end(), data, data + len);
    return true;
  }

  bool flush(Client& c) {
    while (c.pending_size() > 0) {
      ssize_t n = ustack::send(c.fd, c.pending.data() + c.head, c.pending_size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        fail(c, "send", errno);
        return false;
      }
      echoed_ += static_cast<uint64_t>(n);
      c.head += static_cast<size_t>(n);
    }
    if (c.pending_size() == 0) {
      c.pending.clear();
      c.head = 0;
    } else if (c.head > kMaxPending) {  // drop what was sent, now and then
      c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<std::ptrdiff_t>(c.head));
      c.head = 0;
    }
    return true;
  }

  void fail(Client& c, const char* what, int err) {
    if (err != ECONNRESET && err != EPIPE) error(what, err);  // a client that left early is no error of ours
    close_client(c);
  }

  void error(const char* what, int err) {
    if (++errors_ <= kMaxErrorsShown) {
      std::fprintf(stderr, "%s: %s: %s%s\n", kProgram, what, std::strerror(err),
                   errors_ == kMaxErrorsShown ? " (further errors only counted)" : "");
    }
  }

  void close_client(Client& c) {
    ustack::close(c.fd);
    c.fd = -1;  // erased after this round
  }

  int listen_fd_;
  std::vector<char> scratch_;
  std::vector<Client> clients_;
  uint64_t accepted_ = 0;
  uint64_t echoed_ = 0;
  uint64_t errors_ = 0;
};

/// Removes a socket file that an earlier run left at `path`. False (after saying why) if `path`
/// is something else, or if a server answers there.
bool remove_stale_socket(const sockaddr_un& addr, socklen_t len) {
  struct stat st {};
  if (lstat(addr.sun_path, &st) != 0) {
    if (errno == ENOENT) return true;
    std::fprintf(stderr, "%s: %s: %s\n", kProgram, addr.sun_path, std::strerror(errno));
    return false;
  }
  if (!S_ISSOCK(st.st_mode)) {
    std::fprintf(stderr, "%s: %s exists and is not a socket; not removing it\n", kProgram, addr.sun_path);
    return false;
  }
  int probe = ustack::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    bool live = ustack::connect(probe, reinterpret_cast<const sockaddr*>(&addr), len) == 0;
    ustack::close(probe);
    if (live) {
      std::fprintf(stderr, "%s: a server already answers on %s\n", kProgram, addr.sun_path);
      return false;
    }
  }
  if (unlink(addr.sun_path) != 0 && errno != ENOENT) {
    std::fprintf(stderr, "%s: cannot remove the stale socket %s: %s\n", kProgram, addr.sun_path, std::strerror(errno));
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "AF_UNIX stream echo server: every byte received is sent back. AF_UNIX is the kernel's on both --stack "
      "backends (ustack serves AF_INET only; its calls forward kernel descriptors to the system calls). Removes a "
      "stale socket file at --path first and its own at exit; prints a summary on SIGINT/SIGTERM."};
  app::CommonOptions common;
  std::string path = "/tmp/unix-echo.sock";
  int backlog = 128;
  app::add_common_options(cli, common);
  cli.add_option("--path", path, "the socket's path")->capture_default_str();
  cli.add_option("--backlog", backlog, "listen() backlog")->check(CLI::Range(1, 65535))->capture_default_str();
  if (int status = app::parse_command_line(cli, argc, argv); status >= 0) return status;

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    std::fprintf(stderr, "%s: --path: a path of 1 to %zu bytes\n", kProgram, sizeof addr.sun_path - 1);
    return 2;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);

  if (!app::start_backend(common, kProgram)) return 1;
  if (ustack::backend() == ustack::Backend::kUstack) {
    std::fprintf(stderr, "%s: note: ustack serves AF_INET only; this AF_UNIX socket and its connections are the "
                         "kernel's, reached through ustack:: calls that forward to the system calls\n", kProgram);
  }
  if (!remove_stale_socket(addr, len)) {
    ustack::shutdown();
    return 1;
  }
  int listen_fd = ustack::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const char* step = "socket";
  struct stat ours {};
  if (listen_fd >= 0) {
    step = "bind";
    if (ustack::bind(listen_fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
      lstat(path.c_str(), &ours);
      step = "listen";
      if (ustack::listen(listen_fd, backlog) == 0) step = nullptr;
    }
  }
  if (step != nullptr) {
    std::fprintf(stderr, "%s: cannot listen on %s (%s): %s\n", kProgram, path.c_str(), step, std::strerror(errno));
    if (listen_fd >= 0) ustack::close(listen_fd);
    ustack::shutdown();
    return 1;
  }
  std::printf("%s: serving %s on the %s stack (AF_UNIX is the kernel's on both backends)\n", kProgram, path.c_str(),
              common.stack.c_str());
  std::fflush(stdout);

  EchoServer server(listen_fd);
  int exit_code = server.run() ? 0 : 1;
  server.close_all();
  ustack::close(listen_fd);
  struct stat now {};
  if (lstat(path.c_str(), &now) == 0 && now.st_dev == ours.st_dev && now.st_ino == ours.st_ino) {
    unlink(path.c_str());  // ours still, not a later server's
  }
  server.print_summary();
  ustack::shutdown();
  return exit_code;
}
