// epoll-server: a TCP echo server. One thread, one level-triggered epoll loop, non-blocking
// sockets; the same source on the kernel stack and on ustack (--stack).
//
// Every byte received is sent back. What the socket does not take at once waits in the
// connection's pending buffer, and only then does epoll watch the socket for EPOLLOUT. While more
// than kMaxPending bytes wait, the connection is not read, so a peer that sends without reading
// is held back by TCP's flow control instead of by this process's memory. A peer's EOF is answered
// by sending what is still pending, then closing.

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"

namespace {

constexpr const char* kProgram = "epoll-server";
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxPending = 1 << 20;  // stop reading a connection while this much waits to go back
constexpr int kReadsPerEvent = 16;       // then let other connections have a turn
constexpr int kMaxErrorsShown = 10;      // per-connection errors printed; all are counted
using Clock = std::chrono::steady_clock;
constexpr auto kAcceptPause = std::chrono::milliseconds(100);

struct Conn {
  int fd = -1;
  sockaddr_in peer{};
  std::vector<char> pending;  // bytes [head, size) are still to be sent back
  size_t head = 0;
  bool peer_done = false;  // EOF read: send what is pending, then close
  uint32_t watching = 0;   // the events epoll watches now
  size_t pending_size() const { return pending.size() - head; }
};

class EchoServer {
 public:
  EchoServer(int ep, int listen_fd, uint64_t listener_tag)
      : ep_(ep), listen_fd_(listen_fd), listener_tag_(listener_tag), scratch_(kReadChunk) {}

  /// Accepts every connection waiting on the listener.
  void accept_all() {
    for (;;) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      int fd = ustack::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) pause_listener(errno);
        return;
      }
      ++accepted_;
      app::set_nodelay(kProgram, fd);
      Conn c;
      c.fd = fd;
      c.peer = peer;
      c.watching = EPOLLIN | EPOLLRDHUP;
      uint64_t tag = conns_.insert(std::move(c));
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = tag;
      if (ustack::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) fail(tag, *conns_.find(tag), errno, "epoll_ctl");
    }
  }

  /// Watches the listener again once a pause after a failed accept is over.
  void maybe_resume_listener(Clock::time_point now) {
    if (!listener_paused_ || now < resume_at_) return;
    if (watch_listener(EPOLLIN)) listener_paused_ = false;
  }

  void handle(uint64_t tag, uint32_t events) {
    Conn* c = conns_.find(tag);
    if (c == nullptr) return;  // closed earlier in this batch
    if (events & EPOLLERR) {
      int err = app::socket_error(c->fd);
      return fail(tag, *c, err ? err : EIO, "socket error");
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !read_some(tag, *c)) return;
    if (c->pending_size() > 0 && !flush(tag, *c)) return;
    update(tag, *c);
  }

  /// Closes every connection (at exit).
  void close_all() {
    conns_.for_each([&](uint64_t tag, Conn& c) { close_conn(tag, c); });
  }

  void print_summary() const {
    std::printf("%s: %llu connections accepted, %llu bytes echoed, %llu errors\n", kProgram,
                static_cast<unsigned long long>(accepted_), static_cast<unsigned long long>(echoed_),
                static_cast<unsigned long long>(errors_));
    std::fflush(stdout);
  }

 private:
  // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the connection stays queued
  // and a level-triggered listener would report it again at once, so stop watching the listener
  // for kAcceptPause instead of spinning.
  void pause_listener(int err) {
    ++errors_;
    std::fprintf(stderr, "%s: accept: %s (not accepting for %lld ms)\n", kProgram, std::strerror(err),
                 static_cast<long long>(kAcceptPause.count()));
    if (watch_listener(0)) {
      listener_paused_ = true;
      resume_at_ = Clock::now() + kAcceptPause;
    }
  }

  bool watch_listener(uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = listener_tag_;
    if (ustack::epoll_ctl(ep_, EPOLL_CTL_MOD, listen_fd_, &ev) == 0) return true;
    std::fprintf(stderr, "%s: epoll_ctl on the listener: %s\n", kProgram, std::strerror(errno));
    return false;
  }

  // Reads while the pending buffer has room; echoes at once what the socket takes. False if the
  // connection was closed.
  bool read_some(uint64_t tag, Conn& c) {
    for (int i = 0; i < kReadsPerEvent && !c.peer_done && c.pending_size() < kMaxPending; ++i) {
      ssize_t n = ustack::recv(c.fd, scratch_.data(), scratch_.size(), 0);
      if (n > 0) {
        if (!echo(tag, c, scratch_.data(), static_cast<size_t>(n))) return false;
        continue;
      }
      if (n == 0) {
        c.peer_done = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail(tag, c, errno, "recv");
      return false;
    }
    return true;
  }

  bool echo(uint64_t tag, Conn& c, const char* data, size_t len) {
    size_t done = 0;
    if (c.pending_size() == 0) {  // nothing queued ahead: send straight from the read buffer
      ssize_t n = send_some(tag, c, data, len);
      if (n < 0) return false;
      done = static_cast<size_t>(n);
    }
    c.pending.insert(c.pending.end(), data + done, data + len);
    return true;
  }

  // Sends what is pending until the socket is full. False if the connection was closed.
  bool flush(uint64_t tag, Conn& c) {
    while (c.pending_size() > 0) {
      ssize_t n = send_some(tag, c, c.pending.data() + c.head, c.pending_size());
      if (n < 0) return false;
      if (n == 0) break;
      c.head += static_cast<size_t>(n);
    }
    if (c.pending_size() == 0) {
      c.head = 0;
      c.pending.clear();
      if (c.pending.capacity() > 2 * kReadChunk) std::vector<char>().swap(c.pending);  // an idle connection keeps little
    } else if (c.head >= kMaxPending / 2) {
      c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<std::ptrdiff_t>(c.head));
      c.head = 0;
    }
    return true;
  }

  // One send: the bytes taken (0 if the socket is full), or -1 after closing the connection.
  ssize_t send_some(uint64_t tag, Conn& c, const char* data, size_t len) {
    for (;;) {
      ssize_t n = ustack::send(c.fd, data, len, MSG_NOSIGNAL);
      if (n >= 0) {
        echoed_ += static_cast<uint64_t>(n);
        return n;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      fail(tag, c, errno, "send");
      return -1;
    }
  }

  // Watches what the connection needs now; closes it once the peer is done and all is sent.
  void update(uint64_t tag, Conn& c) {
    uint32_t want = 0;
    if (!c.peer_done && c.pending_size() < kMaxPending) want |= EPOLLIN | EPOLLRDHUP;
    if (c.pending_size() > 0) want |= EPOLLOUT;
    if (want == 0) return close_conn(tag, c);  // peer done, everything echoed
    if (want == c.watching) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = tag;
    if (ustack::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) return fail(tag, c, errno, "epoll_ctl");
    c.watching = want;
  }

  void fail(uint64_t tag, Conn& c, int err, const char* what) {
    if (++errors_ <= kMaxErrorsShown) {
      std::fprintf(stderr, "%s: %s: %s: %s%s\n", kProgram, app::format_addr(c.peer).c_str(), what,
                   std::strerror(err), errors_ == kMaxErrorsShown ? " (further errors only counted)" : "");
    }
    close_conn(tag, c);
  }

  void close_conn(uint64_t tag, Conn& c) {
    ustack::close(c.fd);  // also drops it from the epoll set
    conns_.erase(tag);
  }

  int ep_;
  int listen_fd_;
  uint64_t listener_tag_;
  std::vector<char> scratch_;
  app::Slab<Conn> conns_;
  bool listener_paused_ = false;
  Clock::time_point resume_at_{};
  uint64_t accepted_ = 0;
  uint64_t echoed_ = 0;
  uint64_t errors_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. One thread, one level-triggered epoll loop, "
      "non-blocking sockets; at most 1 MiB waits per connection (beyond it the connection is not read "
      "until its peer reads). Prints a summary on SIGINT/SIGTERM."};
  app::CommonOptions common;
  uint16_t port = 7777;
  std::string bind_addr = "0.0.0.0";
  int backlog = 128;
  app::add_common_options(cli, common);
  cli.add_option("--port", port, "TCP port to serve")->capture_default_str();
  cli.add_option("--bind", bind_addr, "local IPv4 address to bind")->capture_default_str();
  cli.add_option("--backlog", backlog, "listen() backlog")->check(CLI::Range(1, 65535))->capture_default_str();
  if (int status = app::parse_command_line(cli, argc, argv); status >= 0) return status;

  sockaddr_in addr{};
  if (!app::make_addr(bind_addr, port, &addr)) {
    std::fprintf(stderr, "%s: --bind %s is not an IPv4 address\n", kProgram, bind_addr.c_str());
    return 2;
  }
  if (!app::start_backend(common, kProgram)) return 1;
  int ep = ustack::epoll_create1(0);
  if (ep < 0) {
    std::fprintf(stderr, "%s: epoll_create1: %s\n", kProgram, std::strerror(errno));
    ustack::shutdown();
    return 1;
  }
  constexpr uint64_t kListenerTag = app::Slab<Conn>::kNoTag;
  int listen_fd = app::open_listener(kProgram, addr, backlog, ep, kListenerTag);
  if (listen_fd < 0) {
    ustack::shutdown();
    return 1;
  }
  std::printf("%s: serving %s:%u on the %s stack\n", kProgram, bind_addr.c_str(), port, common.stack.c_str());
  std::fflush(stdout);

  EchoServer server(ep, listen_fd, kListenerTag);
  int exit_code = 0;
  std::vector<epoll_event> events(256);
  while (!app::g_stop) {
    int n = ustack::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "%s: epoll_wait: %s\n", kProgram, std::strerror(errno));
      exit_code = 1;
      break;
    }
    server.maybe_resume_listener(Clock::now());
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kListenerTag) {
        server.accept_all();
      } else {
        server.handle(events[i].data.u64, events[i].events);
      }
    }
  }
  server.close_all();
  ustack::close(listen_fd);
  ustack::close(ep);
  server.print_summary();
  ustack::shutdown();
  return exit_code;
}
