#pragma once
// Helpers for the TCP API cases: an RAII stream socket, a loopback listener, connect/accept with
// bounded waits, and byte-exact send/receive loops. Every helper that can fail reports the line of
// the case that called it (std::source_location), and every wait is bounded so that a broken
// backend fails the case instead of hanging the suite.

#include <fcntl.h>
#include <netinet/tcp.h>

#include <chrono>
#include <cstring>
#include <source_location>
#include <string>
#include <utility>

#include "api_test.h"

namespace ustack::apitest {

/// The file and line of the case that called a helper, for gtest's failure messages.
class CallerTrace {
 public:
  explicit CallerTrace(const std::source_location& loc) : trace_(loc.file_name(), static_cast<int>(loc.line()), "called from here") {}

 private:
  testing::ScopedTrace trace_;
};

/// Upper bound on every wait in the TCP cases: long enough never to fire on a working backend,
/// short enough that a broken one fails the case.
inline constexpr int kWaitMs = 3000;

/// Every readiness bit a case may ask for; EPOLLERR and EPOLLHUP are reported without asking.
inline constexpr uint32_t kAnyEvent = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI;

/// Readiness bits by name, e.g. "IN|OUT|RDHUP"; "none" if none.
inline std::string events_str(uint32_t events) {
  static constexpr std::pair<uint32_t, const char*> kNames[] = {
      {EPOLLIN, "IN"}, {EPOLLPRI, "PRI"}, {EPOLLOUT, "OUT"}, {EPOLLRDHUP, "RDHUP"}, {EPOLLHUP, "HUP"}, {EPOLLERR, "ERR"}};
  std::string s;
  for (auto [bit, name] : kNames) {
    if ((events & bit) == 0) continue;
    if (!s.empty()) s += '|';
    s += name;
    events &= ~bit;
  }
  if (events != 0) s += (s.empty() ? "" : "|") + std::to_string(events);
  return s.empty() ? "none" : s;
}

/// The events `fd` reports right now (no wait), by name.
inline std::string events_now(int fd) { return events_str(wait_for(fd, kAnyEvent, 0)); }

/// A TCP socket closed at the end of the scope; move-only.
class Tcp {
 public:
  /// A new AF_INET SOCK_STREAM socket; `extra_type` may add SOCK_NONBLOCK/SOCK_CLOEXEC.
  explicit Tcp(int extra_type = 0) : fd_(ustack::socket(AF_INET, SOCK_STREAM | extra_type, 0)) {}
  /// Takes ownership of `fd` (from accept(), say); -1 is an empty Tcp.
  static Tcp adopt(int fd) {
    Tcp t(kAdopt);
    t.fd_ = fd;
    return t;
  }
  ~Tcp() { reset(); }
  Tcp(Tcp&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Tcp& operator=(Tcp&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Tcp(const Tcp&) = delete;
  Tcp& operator=(const Tcp&) = delete;

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  /// Closes now (what a case does to close "first"); returns close()'s result.
  int close() {
    int r = fd_ >= 0 ? ustack::close(fd_) : 0;
    fd_ = -1;
    return r;
  }
  void reset() { close(); }

 private:
  struct AdoptTag {};
  static constexpr AdoptTag kAdopt{};
  explicit Tcp(AdoptTag) : fd_(-1) {}
  int fd_;
};

inline sockaddr_in local_addr(int fd, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  sockaddr_in a{};
  socklen_t len = sizeof a;
  EXPECT_EQ(ustack::getsockname(fd, sa(a), &len), 0) << std::strerror(errno);
  EXPECT_EQ(len, sizeof(sockaddr_in));
  return a;
}

inline sockaddr_in peer_addr(int fd, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  sockaddr_in a{};
  socklen_t len = sizeof a;
  EXPECT_EQ(ustack::getpeername(fd, sa(a), &len), 0) << std::strerror(errno);
  EXPECT_EQ(len, sizeof(sockaddr_in));
  return a;
}

inline uint16_t local_port(int fd, std::source_location loc = std::source_location::current()) {
  return ntohs(local_addr(fd, loc).sin_port);
}

/// getsockopt() of an int option; -12345 if the call failed.
inline int get_int_opt(int fd, int level, int name, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  int v = -12345;
  socklen_t len = sizeof v;
  EXPECT_EQ(ustack::getsockopt(fd, level, name, &v, &len), 0) << std::strerror(errno);
  EXPECT_EQ(len, sizeof(int));
  return v;
}

inline int set_int_opt(int fd, int level, int name, int v) { return ustack::setsockopt(fd, level, name, &v, sizeof v); }

/// SO_ERROR: reading it clears it.
inline int so_error(int fd, std::source_location loc = std::source_location::current()) {
  return get_int_opt(fd, SOL_SOCKET, SO_ERROR, loc);
}

/// Bounds the blocking calls on `fd` (connect, send, recv, accept) to `ms`.
inline void bound_blocking_calls(int fd, int ms = kWaitMs, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  EXPECT_EQ(ustack::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  EXPECT_EQ(ustack::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
}

inline void set_nonblocking(int fd, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  int fl = ustack::fcntl(fd, F_GETFL);
  ASSERT_GE(fl, 0);
  ASSERT_EQ(ustack::fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/// Binds `s` to 127.0.0.1:port (0: a free port chosen by the system) and returns the bound port.
inline uint16_t bind_loopback(const Tcp& s, uint16_t port = 0, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  sockaddr_in a = loopback(port);
  EXPECT_EQ(ustack::bind(s.fd(), sa(a), sizeof a), 0) << std::strerror(errno);
  return local_port(s.fd(), loc);
}

/// Binds `s` to 127.0.0.1 on a free port, listens, and returns the port. A blocking accept() on it
/// gives up after kWaitMs (SO_RCVTIMEO).
inline uint16_t listen_loopback(const Tcp& s, int backlog = 16, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  bound_blocking_calls(s.fd(), kWaitMs, loc);
  uint16_t port = bind_loopback(s, 0, loc);
  EXPECT_EQ(ustack::listen(s.fd(), backlog), 0) << std::strerror(errno);
  return port;
}

/// A blocking connect to 127.0.0.1:port (bounded by SO_SNDTIMEO); the socket stays blocking with
/// its blocking calls bounded (bound_blocking_calls). An empty Tcp if connect failed.
inline Tcp connect_loopback(uint16_t port, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  Tcp c;
  EXPECT_TRUE(c.valid()) << std::strerror(errno);
  bound_blocking_calls(c.fd(), kWaitMs, loc);
  sockaddr_in dst = loopback(port);
  if (ustack::connect(c.fd(), sa(dst), sizeof dst) != 0) {
    ADD_FAILURE() << "connect to port " << port << ": " << std::strerror(errno);
    return Tcp::adopt(-1);
  }
  return c;
}

/// A non-blocking connect to 127.0.0.1:port: returns the socket once connect() said EINPROGRESS
/// (or 0); the handshake may still be under way.
inline Tcp start_connect(uint16_t port, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  Tcp c(SOCK_NONBLOCK);
  EXPECT_TRUE(c.valid()) << std::strerror(errno);
  sockaddr_in dst = loopback(port);
  errno = 0;
  int r = ustack::connect(c.fd(), sa(dst), sizeof dst);
  EXPECT_TRUE(r == 0 || errno == EINPROGRESS) << "connect: " << std::strerror(errno);
  return c;
}

/// Waits (bounded) until the listener has a connection ready, accepts it, and bounds the new
/// socket's blocking calls. An empty Tcp if none came.
inline Tcp accept_one(const Tcp& listener, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  if ((wait_for(listener.fd(), EPOLLIN, kWaitMs) & EPOLLIN) == 0) {
    ADD_FAILURE() << "no connection to accept";
    return Tcp::adopt(-1);
  }
  int fd = ustack::accept(listener.fd(), nullptr, nullptr);
  EXPECT_GE(fd, 0) << "accept: " << std::strerror(errno);
  Tcp s = Tcp::adopt(fd);
  if (s.valid()) bound_blocking_calls(s.fd(), kWaitMs, loc);
  return s;
}

/// Both ends of one established connection over 127.0.0.1, blocking with bounded blocking calls.
/// The listener is closed once the connection is accepted.
struct Connection {
  Tcp client;
  Tcp server;
};

inline Connection connected_pair(std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  Tcp listener;
  uint16_t port = listen_loopback(listener, 16, loc);
  Connection c;
  c.client = connect_loopback(port, loc);
  c.server = accept_one(listener, loc);
  return c;
}

/// The byte at offset i of the test streams: not periodic at any small power of two, so a lost,
/// repeated or reordered chunk shows.
inline char pattern_byte(size_t i) { return static_cast<char>((i * 2654435761u) >> 11 ^ (i >> 16)); }

inline std::string pattern(size_t offset, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = pattern_byte(offset + i);
  return s;
}

/// Sends all of `data` on a blocking socket (bounded by SO_SNDTIMEO); true if all went.
inline bool send_all(int fd, const std::string& data, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ustack::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ADD_FAILURE() << "send after " << off << " bytes: " << std::strerror(errno);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

/// Receives exactly `n` bytes (or until EOF/error), waiting at most kWaitMs for each piece;
/// works on blocking and non-blocking sockets.
inline std::string recv_exactly(int fd, size_t n, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  std::string out;
  std::string buf(65536, '\0');
  while (out.size() < n) {
    ssize_t r = ustack::recv(fd, buf.data(), std::min(buf.size(), n - out.size()), MSG_DONTWAIT);
    if (r > 0) {
      out.append(buf.data(), static_cast<size_t>(r));
      continue;
    }
    if (r == 0) {
      ADD_FAILURE() << "EOF after " << out.size() << " of " << n << " bytes";
      break;
    }
    if (errno != EAGAIN) {
      ADD_FAILURE() << "recv after " << out.size() << " of " << n << " bytes: " << std::strerror(errno);
      break;
    }
    if (wait_for(fd, EPOLLIN, kWaitMs) == 0) {
      ADD_FAILURE() << "timed out after " << out.size() << " of " << n << " bytes";
      break;
    }
  }
  return out;
}

/// Moves `data` from `from` to `to` in one thread: sends and receives with MSG_DONTWAIT (so
/// neither socket's blocking mode matters and the data may exceed what the buffers hold), waiting
/// on epoll (at most kWaitMs each time) when neither end can make progress. Returns what `to`
/// received; stops early, with a failure, on an error, EOF or a stall.
inline std::string transfer(int from, int to, const std::string& data, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  std::string got;
  std::string buf(65536, '\0');
  size_t sent = 0;
  const int ep = ustack::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.fd = from;
  EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, from, &ev), 0);
  ev.events = EPOLLIN;
  ev.data.fd = to;
  EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, to, &ev), 0);
  while (got.size() < data.size()) {
    bool progress = false;
    if (sent < data.size()) {
      ssize_t n = ustack::send(from, data.data() + sent, data.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        progress = true;
        if (sent == data.size()) {
          EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_DEL, from, nullptr), 0);  // nothing left to write
        }
      } else if (errno != EAGAIN) {
        ADD_FAILURE() << "send after " << sent << " bytes: " << std::strerror(errno);
        break;
      }
    }
    ssize_t n = ustack::recv(to, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      got.append(buf.data(), static_cast<size_t>(n));
      progress = true;
    } else if (n == 0) {
      ADD_FAILURE() << "EOF after " << got.size() << " of " << data.size() << " bytes";
      break;
    } else if (errno != EAGAIN) {
      ADD_FAILURE() << "recv after " << got.size() << " bytes: " << std::strerror(errno);
      break;
    }
    epoll_event out[2];
    if (!progress && ustack::epoll_wait(ep, out, 2, kWaitMs) <= 0) {
      ADD_FAILURE() << "stalled: sent " << sent << ", received " << got.size() << " of " << data.size();
      break;
    }
  }
  ustack::close(ep);
  return got;
}

}  // namespace ustack::apitest
