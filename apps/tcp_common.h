#pragma once
// What the TCP demo apps share: http-responder's body pattern (which http-fetch verifies), a
// table of connections whose epoll tags cannot be mistaken for a closed connection's, and the
// listening socket of the two servers. Only ustack:: calls, so the apps run on either backend.

#include <arpa/inet.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

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

/// A non-blocking TCP socket listening on `addr` and watched for EPOLLIN by `ep` under `tag`.
/// Returns its descriptor, or -1 after printing why on stderr.
inline int open_listener(const char* program, const sockaddr_in& addr, int backlog, int ep, uint64_t tag) {
  int fd = ustack::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    std::fprintf(stderr, "%s: cannot create a TCP socket: %s\n", program, socket_failure(errno).c_str());
    return -1;
  }
  int one = 1;
  // A restarted server must not wait for the last run's TIME-WAIT connections to expire.
  if (ustack::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    std::fprintf(stderr, "%s: warning: SO_REUSEADDR: %s\n", program, std::strerror(errno));
  }
  const char* step = "bind";
  if (ustack::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    step = "listen";
    if (ustack::listen(fd, backlog) == 0) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = tag;
      step = "epoll_ctl";
      if (ustack::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0) return fd;
    }
  }
  std::fprintf(stderr, "%s: cannot listen on %s (%s): %s\n", program, format_addr(addr).c_str(), step,
               std::strerror(errno));
  ustack::close(fd);
  return -1;
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

}  // namespace app
