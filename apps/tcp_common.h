#pragma once
// What the TCP demo apps share: http-responder's body pattern (which http-fetch verifies), a
// table of connections whose epoll tags cannot be mistaken for a closed connection's, the
// listening socket, and accepting on it without spinning when out of descriptors. Only ustack::
// calls, so the apps run on either backend.

#include <arpa/inet.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "app_common.h"
#include "ustack/epoll.h"
#include "ustack/socket.h"

namespace app {

/// Parses the command line like CLI11_PARSE, but every usage error exits with status 2 (CLI11's
/// own codes start at 100). Returns the exit status to leave with (0 after --help), or -1 to go on.
inline int parse_command_line(CLI::App& cli, int argc, char** argv) {
  try {
    cli.parse(argc, argv);
    return -1;
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }
}

// ---- http-responder's body ----

/// Byte i of every body http-responder sends: (i * 131 + 7) mod 256. It repeats every 256 bytes,
/// so it catches lost, inserted and corrupted bytes, and reordering except by multiples of 256.
constexpr uint8_t body_byte(uint64_t i) { return static_cast<uint8_t>((i * 131 + 7) & 0xff); }

/// The body pattern laid out once, so that any stretch of a body is one pointer into it.
class BodyPattern {
 public:
  static constexpr size_t kSpan = 64 * 1024;  // longest stretch at() returns
  BodyPattern() : bytes_(kSpan + 256) {
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<char>(body_byte(i));
  }
  /// Bytes [offset, offset + kSpan) of a body.
  const char* at(uint64_t offset) const { return bytes_.data() + offset % 256; }

 private:
  std::vector<char> bytes_;
};

// ---- connections and their epoll tags ----

/// Owns the connections of an epoll loop. Each one is known by a tag (slot index and the slot's
/// generation) that goes into epoll_event.data.u64: an event still queued for a connection that
/// was closed earlier in the same batch finds nothing, even when a new connection took its slot.
template <class T>
class Slab {
 public:
  static constexpr uint64_t kNoTag = ~uint64_t{0};  // never handed out: free for the listener

  uint64_t insert(T value) {
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    slots_[index].value.emplace(std::move(value));
    ++live_;
    return tag_of(index);
  }
  /// The connection with this tag, or nullptr once it was erased. Stays valid across insert().
  T* find(uint64_t tag) {
    uint32_t index = static_cast<uint32_t>(tag);
    if (index >= slots_.size()) return nullptr;
    Slot& s = slots_[index];
    if (s.generation != static_cast<uint32_t>(tag >> 32) || !s.value) return nullptr;
    return &*s.value;
  }
  void erase(uint64_t tag) {
    uint32_t index = static_cast<uint32_t>(tag);
    if (find(tag) == nullptr) return;
    slots_[index].value.reset();
    ++slots_[index].generation;
    free_.push_back(index);
    --live_;
  }
  /// Calls f(tag, T&) for every connection; f may erase the one it is given.
  template <class F>
  void for_each(F&& f) {
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].value) f(tag_of(i), *slots_[i].value);
    }
  }
  size_t size() const { return live_; }

 private:
  struct Slot {
    std::optional<T> value;
    uint32_t generation = 0;
  };
  uint64_t tag_of(uint32_t index) const { return uint64_t{slots_[index].generation} << 32 | index; }

  std::deque<Slot> slots_;  // a deque: growing it moves no connection
  std::vector<uint32_t> free_;
  size_t live_ = 0;
};

// ---- sockets ----

inline std::string format_addr(const sockaddr_in& a) {
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

/// Why socket() failed: strerror, plus ustack's own explanation when it has one (e.g. that the
/// backend does not serve TCP yet). Only right after socket(): last_error() is not reset by
/// calls that succeed.
inline std::string socket_failure(int err) {
  std::string s = std::strerror(err);
  const char* extra = ustack::last_error();
  if (extra != nullptr && *extra != '\0') s += std::string(" (") + extra + ")";
  return s;
}

/// The pending error of a socket (SO_ERROR), which reading also clears; EIO if it cannot be read.
inline int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (ustack::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno ? errno : EIO;
  return err;
}

/// A TCP socket listening on `addr` (SO_REUSEADDR, and SO_REUSEPORT if asked, so that several
/// listeners share the port). `type_flags` is 0 or SOCK_NONBLOCK. Returns its descriptor, or -1
/// after printing why on stderr.
inline int listen_tcp(const char* program, const sockaddr_in& addr, int backlog, int type_flags,
                      bool reuseport = false) {
  int fd = ustack::socket(AF_INET, SOCK_STREAM | type_flags, 0);
  if (fd < 0) {
    std::fprintf(stderr, "%s: cannot create a TCP socket: %s\n", program, socket_failure(errno).c_str());
    return -1;
  }
  int one = 1;
  // A restarted server must not wait for the last run's TIME-WAIT connections to expire.
  if (ustack::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    std::fprintf(stderr, "%s: warning: SO_REUSEADDR: %s\n", program, std::strerror(errno));
  }
  const char* step = "SO_REUSEPORT";
  if (!reuseport || ustack::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0) {
    step = "bind";
    if (ustack::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      step = "listen";
      if (ustack::listen(fd, backlog) == 0) return fd;
    }
  }
  std::fprintf(stderr, "%s: cannot listen on %s (%s): %s\n", program, format_addr(addr).c_str(), step,
               std::strerror(errno));
  ustack::close(fd);
  return -1;
}

/// A non-blocking TCP socket listening on `addr` and watched for EPOLLIN by `ep` under `tag`.
/// Returns its descriptor, or -1 after printing why on stderr.
inline int open_listener(const char* program, const sockaddr_in& addr, int backlog, int ep, uint64_t tag) {
  int fd = listen_tcp(program, addr, backlog, SOCK_NONBLOCK);
  if (fd < 0) return -1;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  if (ustack::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0) return fd;
  std::fprintf(stderr, "%s: cannot listen on %s (epoll_ctl): %s\n", program, format_addr(addr).c_str(),
               std::strerror(errno));
  ustack::close(fd);
  return -1;
}

/// The address a socket is bound to (the port the system chose for --port 0).
inline sockaddr_in local_addr(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ustack::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return a;
}

/// Sets TCP_NODELAY; the first failure is reported once (a backend may not have the option yet).
inline void set_nodelay(const char* program, int fd) {
  static bool warned = false;
  int one = 1;
  if (ustack::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 && !warned) {
    warned = true;
    std::fprintf(stderr, "%s: warning: TCP_NODELAY: %s (going on without it)\n", program, std::strerror(errno));
  }
}

/// Parses an IPv4 address and port into `out`; false if `ip` is not dotted-quad IPv4.
inline bool make_addr(const std::string& ip, uint16_t port, sockaddr_in* out) {
  *out = sockaddr_in{};
  out->sin_family = AF_INET;
  out->sin_port = htons(port);
  return inet_pton(AF_INET, ip.c_str(), &out->sin_addr) == 1;
}

// ---- the epoll loop of a one-thread server ----

/// Waits on `ep` until g_stop is set (true) or epoll_wait fails (false, after printing why), waking
/// at least every 100 ms to look at g_stop; hands each event reported to on_event(const
/// epoll_event&), then calls after_events() (deadlines, a paused listener) once per wait.
template <class OnEvent, class AfterEvents>
bool run_epoll_loop(const char* program, int ep, OnEvent&& on_event, AfterEvents&& after_events) {
  std::vector<epoll_event> events(256);
  while (!g_stop) {
    int n = ustack::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "%s: epoll_wait: %s\n", program, std::strerror(errno));
      return false;
    }
    for (int i = 0; i < n; ++i) on_event(events[i]);
    after_events();
  }
  return true;
}

// ---- accepting on a non-blocking listener ----

using Clock = std::chrono::steady_clock;
constexpr auto kAcceptPause = std::chrono::milliseconds(100);

/// Accepts every connection waiting on a non-blocking listener (until EAGAIN) and hands each one,
/// non-blocking and with TCP_NODELAY, to add(fd, peer). Returns false after a failure that leaves
/// connections waiting (out of descriptors or memory: EMFILE, ENFILE, ENOBUFS, ENOMEM), reported
/// on stderr for the caller to count: a level-triggered listener would report them again at
/// once, so the caller stops watching it for kAcceptPause instead of spinning.
template <class Add>
bool accept_nonblocking(const char* program, int listen_fd, Add&& add) {
  for (;;) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    int fd = ustack::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK);
    if (fd >= 0) {
      set_nodelay(program, fd);  // a request or a reply must not wait for a delayed ACK
      add(fd, peer);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    std::fprintf(stderr, "%s: accept: %s (not accepting for %lld ms)\n", program, std::strerror(errno),
                 static_cast<long long>(kAcceptPause.count()));
    return false;
  }
}

/// The pause of a listener in an epoll set after accept_nonblocking() failed: takes it out of the
/// set (watches it for no event) for kAcceptPause, then watches it again for `events`.
class ListenerPause {
 public:
  ListenerPause() = default;
  /// The listener `listen_fd`, watched by `ep` under `tag` for `events` when not paused.
  ListenerPause(const char* program, int ep, int listen_fd, uint64_t tag, uint32_t events)
      : program_(program), ep_(ep), listen_fd_(listen_fd), tag_(tag), events_(events) {}

  /// Stops watching the listener until kAcceptPause from now (if epoll_ctl fails, said on stderr,
  /// it stays watched).
  void pause() {
    if (!watch(0)) return;
    paused_ = true;
    resume_at_ = Clock::now() + kAcceptPause;
  }

  /// Once the pause is over at `now`, watches the listener again. True when it did just now:
  /// edge-triggered, the connections that waited meanwhile bring no new edge, so accept them.
  bool resume_if_due(Clock::time_point now) {
    if (!paused_ || now < resume_at_ || !watch(events_)) return false;
    paused_ = false;
    return true;
  }

 private:
  bool watch(uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag_;
    if (ustack::epoll_ctl(ep_, EPOLL_CTL_MOD, listen_fd_, &ev) == 0) return true;
    std::fprintf(stderr, "%s: epoll_ctl on the listener: %s\n", program_, std::strerror(errno));
    return false;
  }

  const char* program_ = "";
  int ep_ = -1;
  int listen_fd_ = -1;
  uint64_t tag_ = 0;
  uint32_t events_ = 0;
  bool paused_ = false;
  Clock::time_point resume_at_{};
};

}  // namespace app
