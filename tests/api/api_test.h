#pragma once
// Helpers shared by the API cases: addresses on 127.0.0.1 and small wrappers that keep the cases
// about behaviour, not sockaddr plumbing.

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>
#include <string>

#include "ustack/epoll.h"
#include "ustack/socket.h"
#include "ustack/ustack.h"

namespace ustack::apitest {

extern Backend g_backend;

inline sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}
inline sockaddr* sa(sockaddr_in& a) { return reinterpret_cast<sockaddr*>(&a); }

/// A UDP socket closed at the end of the scope.
class Udp {
 public:
  explicit Udp(int extra_type = 0) : fd_(ustack::socket(AF_INET, SOCK_DGRAM | extra_type, 0)) {}
  ~Udp() {
    if (fd_ >= 0) ustack::close(fd_);
  }
  Udp(const Udp&) = delete;
  Udp& operator=(const Udp&) = delete;
  int fd() const { return fd_; }
  /// Binds 127.0.0.1:port (0: any free port) and returns the bound port.
  uint16_t bind_loopback(uint16_t port = 0) {
    sockaddr_in a = loopback(port);
    EXPECT_EQ(ustack::bind(fd_, sa(a), sizeof a), 0) << std::strerror(errno);
    return local_port();
  }
  uint16_t local_port() const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    EXPECT_EQ(ustack::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    return ntohs(a.sin_port);
  }
  ssize_t send_to(uint16_t port, const std::string& data, int flags = 0) {
    sockaddr_in a = loopback(port);
    return ustack::sendto(fd_, data.data(), data.size(), flags, sa(a), sizeof a);
  }

 private:
  int fd_;
};

/// errno after a call expected to fail (-1), or 0 if it did not fail.
#define EXPECT_ERRNO(call, err)                              \
  do {                                                       \
    errno = 0;                                               \
    auto _r = (call);                                        \
    EXPECT_EQ(_r, -1) << #call " should fail";               \
    EXPECT_EQ(errno, err) << #call ": " << std::strerror(errno); \
  } while (0)

/// Waits (epoll, up to `ms`) for `events` on fd; returns the events seen (0: timeout).
inline uint32_t wait_for(int fd, uint32_t events, int ms = 1000) {
  int ep = ustack::epoll_create1(0);
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  ustack::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  epoll_event out{};
  int n = ustack::epoll_wait(ep, &out, 1, ms);
  ustack::close(ep);
  return n == 1 ? out.events : 0;
}

}  // namespace ustack::apitest
