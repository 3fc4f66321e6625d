#pragma once
// The echo of a non-blocking connection, whatever reports its readiness (epoll, poll, select),
// and the epoll loop that epoll-server (level-triggered), epoll-et-server (edge-triggered) and
// each thread of reuseport-server run; the first two share their main() too.
//
// Every byte received is sent back. What the socket does not take at once waits in the
// connection's pending buffer and goes out once the socket is writable again. While more than
// kMaxPending bytes wait, the connection is not read, so a peer that sends without reading is held
// back by TCP's flow control instead of by this process's memory. A peer's EOF is answered by
// sending what is still pending, then closing.

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <optional>
#include <vector>

#include "server_common.h"

namespace app {

constexpr size_t kEchoReadChunk = 64 * 1024;
constexpr size_t kMaxPending = 1 << 20;  // stop reading a connection while this much waits to go back
constexpr int kReadsPerEvent = 16;       // level-triggered: then let other connections have a turn

/// What the connections of one loop share: the program's name for messages, the counters, and
/// the buffer recv() reads into. One per thread.
struct EchoContext {
  EchoContext(const char* program, ServerStats& stats) : program(program), stats(stats), scratch(kEchoReadChunk) {}
  const char* program;
  ServerStats& stats;
  std::vector<char> scratch;
};

/// One non-blocking connection of an echo server. The loop that owns it asks what it waits for
/// (wants_read, wants_write), waits with epoll, poll or select, then calls serve() and closes it
/// once serve() returns false.
class EchoConn {
 public:
  EchoConn(int fd, const sockaddr_in& peer) : fd_(fd), peer_(peer) {}

  int fd() const { return fd_; }
  /// Worth reading: no EOF yet and room in the pending buffer.
  bool wants_read() const { return !peer_done_ && pending_size() < kMaxPending; }
  /// Bytes wait to be sent back.
  bool wants_write() const { return pending_size() > 0; }

  /// After a level-triggered report (epoll without EPOLLET, poll, select): reads if `readable`, at
  /// most kReadsPerEvent times (what is left is reported again), echoes, and sends what waits.
  /// False once the connection is over (the peer is done and all is sent) or failed: close it.
  bool serve(EchoContext& ctx, bool readable) {
    if (readable && read_some(ctx, kReadsPerEvent) == ReadStop::kFailed) return false;
    if (wants_write() && !flush(ctx)) return false;
    return !over();
  }

  /// After an edge-triggered report (EPOLLET): readiness is reported again only after a call has
  /// met EAGAIN, so this reads until recv() gives EAGAIN and sends until the socket is full or
  /// nothing waits. When the pending buffer fills first, it sends; if that empties it, it reads on,
  /// and if the socket fills, send's EAGAIN brings an EPOLLOUT edge later. False as for serve().
  bool serve_until_eagain(EchoContext& ctx) {
    for (;;) {
      ReadStop why = read_some(ctx, INT_MAX);
      if (why == ReadStop::kFailed || !flush(ctx)) return false;
      if (why != ReadStop::kFull || wants_write()) break;
    }
    return !over();
  }

  /// After EPOLLERR or POLLERR: counts the socket's pending error. Returns false: close it.
  bool fail_with_socket_error(EchoContext& ctx) {
    int err = socket_error(fd_);
    ctx.stats.fail(ctx.program, peer_, "socket error", err ? err : EIO);
    return false;
  }

  /// Counts a failed call on the connection. Returns false: close it.
  bool fail(EchoContext& ctx, const char* what, int err) {
    ctx.stats.fail(ctx.program, peer_, what, err);
    return false;
  }

  void close() { ustack::close(fd_); }  // also drops it from any epoll set

 private:
  enum class ReadStop { kAgain, kEof, kFull, kTurnOver, kFailed };

  size_t pending_size() const { return pending_.size() - head_; }
  bool over() const { return peer_done_ && pending_size() == 0; }

  // Reads (at most max_reads times) while the pending buffer has room; echoes at once what the
  // socket takes. Says why it stopped.
  ReadStop read_some(EchoContext& ctx, int max_reads) {
    for (int i = 0; i < max_reads; ++i) {
      if (peer_done_) return ReadStop::kEof;
      if (pending_size() >= kMaxPending) return ReadStop::kFull;
      ssize_t n = ustack::recv(fd_, ctx.scratch.data(), ctx.scratch.size(), 0);
      if (n > 0) {
        if (!echo(ctx, ctx.scratch.data(), static_cast<size_t>(n))) return ReadStop::kFailed;
      } else if (n == 0) {
        peer_done_ = true;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return ReadStop::kAgain;
      } else if (errno != EINTR) {
        fail(ctx, "recv", errno);
        return ReadStop::kFailed;
      }
    }
    return ReadStop::kTurnOver;
  }

  bool echo(EchoContext& ctx, const char* data, size_t len) {
    size_t done = 0;
    if (pending_size() == 0) {  // nothing queued ahead: send straight from the read buffer
      ssize_t n = send_some(ctx, data, len);
      if (n < 0) return false;
      done = static_cast<size_t>(n);
    }
    pending_.insert(pending_.end(), data + done, data + len);
    return true;
  }

  // Sends what is pending until the socket is full. False if the connection failed.
  bool flush(EchoContext& ctx) {
    while (pending_size() > 0) {
      ssize_t n = send_some(ctx, pending_.data() + head_, pending_size());
      if (n < 0) return false;
      if (n == 0) break;
      head_ += static_cast<size_t>(n);
    }
    if (pending_size() == 0) {
      head_ = 0;
      pending_.clear();
      // An idle connection keeps little.
      if (pending_.capacity() > 2 * kEchoReadChunk) std::vector<char>().swap(pending_);
    } else if (head_ >= kMaxPending / 2) {
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    return true;
  }

  // One send: the bytes taken (0 if the socket is full), or -1 after counting a failure.
  ssize_t send_some(EchoContext& ctx, const char* data, size_t len) {
    for (;;) {
      ssize_t n = ustack::send(fd_, data, len, MSG_NOSIGNAL);
      if (n >= 0) {
        ctx.stats.echoed += static_cast<uint64_t>(n);
        return n;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      fail(ctx, "send", errno);
      return -1;
    }
  }

  int fd_;
  sockaddr_in peer_;
  std::vector<char> pending_;  // bytes [head_, size) are still to be sent back
  size_t head_ = 0;
  bool peer_done_ = false;  // EOF read: send what is pending, then close
};

/// accept_nonblocking() for an echo server: counts each connection accepted, and the failure
/// after which the caller rests the listener for kAcceptPause.
template <class Add>
bool accept_all(EchoContext& ctx, int listen_fd, Add&& add) {
  bool drained = accept_nonblocking(ctx.program, listen_fd, [&](int fd, const sockaddr_in& peer) {
    ++ctx.stats.accepted;
    add(fd, peer);
  });
  if (!drained) ++ctx.stats.errors;
  return drained;
}

/// The epoll loop of one or more listeners (epoll-server --ports: one per port) and their
/// connections.
///
/// Level-triggered (epoll-server): the listener and each connection are watched for what they
/// need now (EPOLLIN while there is room to read, EPOLLOUT while bytes wait), changed with
/// EPOLL_CTL_MOD; a connection reads at most kReadsPerEvent times per report.
/// Edge-triggered (epoll-et-server): each is registered once with EPOLLET, for EPOLLIN, EPOLLOUT
/// and EPOLLRDHUP, and never changed; a report means "something changed", so the listener accepts
/// until EAGAIN and a connection reads and sends until EAGAIN.
class EpollEchoLoop {
 public:
  enum class Trigger { kLevel, kEdge };
  static constexpr size_t kMaxListeners = 65536;  ///< listeners one loop serves, at most

  EpollEchoLoop(const char* program, Trigger trigger, ServerStats& stats)
      : ctx_(program, stats), edge_(trigger == Trigger::kEdge) {}
  EpollEchoLoop(const EpollEchoLoop&) = delete;
  EpollEchoLoop& operator=(const EpollEchoLoop&) = delete;

  /// Creates the epoll instance and watches `listen_fd`, a non-blocking listener that stays the
  /// caller's. False after printing why.
  bool open(int listen_fd) { return open(std::vector<int>{listen_fd}); }

  /// The same for several listeners (at most kMaxListeners), served alike.
  bool open(const std::vector<int>& listen_fds) {
    ep_ = ustack::epoll_create1(0);
    if (ep_ < 0) {
      std::fprintf(stderr, "%s: epoll_create1: %s\n", ctx_.program, std::strerror(errno));
      return false;
    }
    if (listen_fds.empty() || listen_fds.size() > kMaxListeners) {
      std::fprintf(stderr, "%s: %zu listeners: 1 to %zu are served\n", ctx_.program, listen_fds.size(), kMaxListeners);
      return false;
    }
    for (size_t i = 0; i < listen_fds.size(); ++i) {
      epoll_event ev{};
      ev.events = listener_events();
      ev.data.u64 = listener_tag(i);
      if (ustack::epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fds[i], &ev) != 0) {
        std::fprintf(stderr, "%s: epoll_ctl on the listener: %s\n", ctx_.program, std::strerror(errno));
        return false;
      }
      listeners_.push_back(
          Listener{listen_fds[i], ListenerPause(ctx_.program, ep_, listen_fds[i], listener_tag(i), listener_events())});
    }
    return true;
  }

  /// Serves until g_stop is set (true) or epoll_wait fails (false, after printing why).
  bool run() {
    return run_epoll_loop(
        ctx_.program, ep_,
        [&](const epoll_event& e) {
          if (auto i = listener_index(e.data.u64)) {
            accept_waiting(listeners_[*i]);
          } else {
            handle(e.data.u64, e.events);
          }
        },
        [&] {
          // Edge-triggered, the connections that waited meanwhile bring no new edge: accept them now.
          auto now = Clock::now();
          for (Listener& l : listeners_) {
            if (l.pause.resume_if_due(now)) accept_waiting(l);
          }
        });
  }

  /// Closes every connection and the epoll instance (not the listeners).
  void close() {
    conns_.for_each([&](uint64_t tag, Watched& w) { close_conn(tag, w); });
    if (ep_ >= 0) ustack::close(ep_);
    ep_ = -1;
  }

 private:
  struct Watched {
    EchoConn conn;
    uint32_t events;  // what epoll watches now
  };
  struct Listener {
    int fd;
    ListenerPause pause;
  };

  // Listener i's tag is Slab's kNoTag - i: a connection's tag would need a slot index of at least
  // 2^32 - kMaxListeners and generation 2^32 - 1 to collide with one.
  static uint64_t listener_tag(size_t i) { return Slab<Watched>::kNoTag - i; }
  std::optional<size_t> listener_index(uint64_t tag) const {
    uint64_t i = Slab<Watched>::kNoTag - tag;
    if (i < listeners_.size()) return static_cast<size_t>(i);
    return std::nullopt;
  }

  uint32_t listener_events() const { return edge_ ? EPOLLIN | EPOLLET : uint32_t{EPOLLIN}; }

  void accept_waiting(Listener& l) {
    bool drained = accept_all(ctx_, l.fd, [&](int fd, const sockaddr_in& peer) {
      uint32_t events = edge_ ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET : EPOLLIN | EPOLLRDHUP;
      uint64_t tag = conns_.insert(Watched{EchoConn(fd, peer), events});
      epoll_event ev{};
      ev.events = events;
      ev.data.u64 = tag;
      if (ustack::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        Watched& w = *conns_.find(tag);
        w.conn.fail(ctx_, "epoll_ctl", errno);
        close_conn(tag, w);
      }
    });
    if (!drained) l.pause.pause();
  }

  void handle(uint64_t tag, uint32_t events) {
    Watched* w = conns_.find(tag);
    if (w == nullptr) return;  // closed earlier in this batch
    bool open;
    if (events & EPOLLERR) {
      open = w->conn.fail_with_socket_error(ctx_);
    } else if (edge_) {
      open = w->conn.serve_until_eagain(ctx_);
    } else {
      open = w->conn.serve(ctx_, events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP));
    }
    if (!open) return close_conn(tag, *w);
    if (!edge_) update(tag, *w);
  }

  // Level-triggered: watches what the connection needs now.
  void update(uint64_t tag, Watched& w) {
    uint32_t want = 0;
    if (w.conn.wants_read()) want |= EPOLLIN | EPOLLRDHUP;
    if (w.conn.wants_write()) want |= EPOLLOUT;
    if (want == w.events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = tag;
    if (ustack::epoll_ctl(ep_, EPOLL_CTL_MOD, w.conn.fd(), &ev) != 0) {
      w.conn.fail(ctx_, "epoll_ctl", errno);
      return close_conn(tag, w);
    }
    w.events = want;
  }

  void close_conn(uint64_t tag, Watched& w) {
    w.conn.close();
    conns_.erase(tag);
  }

  EchoContext ctx_;
  bool edge_;
  int ep_ = -1;
  std::vector<Listener> listeners_;
  Slab<Watched> conns_;
};

/// The main() of epoll-server (Trigger::kLevel) and epoll-et-server (Trigger::kEdge): one
/// EpollEchoLoop over a non-blocking listener (--ports N: one on each of N ports from --port on,
/// which lets a client open more connections than one port's ephemeral ports allow) until SIGINT
/// or SIGTERM, then the summary line.
inline int run_epoll_echo_server(int argc, char** argv, const char* program, EpollEchoLoop::Trigger trigger,
                                 const char* description) {
  CLI::App cli{description};
  ServerOptions opt;
  add_server_options(cli, opt);
  uint32_t ports = 1;
  cli.add_option("--ports", ports, "listen on this many ports, --port to --port + N - 1 (all served alike)")
      ->check(CLI::Range(1, static_cast<int>(EpollEchoLoop::kMaxListeners)))
      ->capture_default_str();
  int listen_fd = -1;
  if (int status = start_server(cli, argc, argv, program, opt, &listen_fd); status >= 0) return status;
  std::vector<int> listeners{listen_fd};
  bool serving = true;
  if (ports > 1 && (opt.port == 0 || uint32_t{opt.port} + ports - 1 > 65535)) {
    std::fprintf(stderr, "%s: --ports %u needs a --port from 1 to %u\n", program, ports, 65536 - ports);
    serving = false;
  }
  for (uint32_t i = 1; serving && i < ports; ++i) {
    sockaddr_in addr = opt.addr;
    addr.sin_port = htons(static_cast<uint16_t>(opt.port + i));
    int fd = listen_tcp(program, addr, opt.backlog, SOCK_NONBLOCK);
    if (fd < 0) serving = false;
    if (fd >= 0) listeners.push_back(fd);
  }
  ServerStats stats;
  EpollEchoLoop loop(program, trigger, stats);
  serving = serving && loop.open(listeners);
  bool ok = false;
  if (serving) {
    print_serving(program, opt, listen_fd, ports);
    ok = loop.run();
  }
  loop.close();
  for (int fd : listeners) ustack::close(fd);
  if (serving) print_summary(program, stats);
  ustack::shutdown();
  return ok ? 0 : 1;
}

}  // namespace app
