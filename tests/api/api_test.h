#pragma once
// Helpers shared by the API cases: addresses on 127.0.0.1 and small wrappers that keep the cases
// about behaviour, not sockaddr plumbing.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <vector>
#include <string>

#include "ustack/epoll.h"
#include "ustack/socket.h"
#include "ustack/ustack.h"

namespace ustack::apitest {

extern Backend g_backend;
extern bool g_threaded;  // ustack in threaded mode (api_tests --threaded)

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

/// Interrupts the process with SIGALRM after `first`, then every 20 ms, through a handler
/// installed without SA_RESTART (so Linux fails a blocking call with EINTR instead of restarting
/// it); everything is restored at the end of the scope. The repeats are there because the ustack
/// engine does not see a signal that lands while it busy-polls or between two naps (README): the
/// next one ends the call. A blocking call that ignores signals altogether would hang the suite,
/// so after `give_up` the handler ends the process with a message (exit status 3).
class SignalTimer {
 public:
  explicit SignalTimer(std::chrono::milliseconds first, std::chrono::milliseconds give_up = std::chrono::seconds(5)) {
    ticks_ = 0;
    give_up_ticks_ = static_cast<int>((give_up - first) / kEvery) + 1;
    struct sigaction sa {};
    sa.sa_handler = &SignalTimer::on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART
    EXPECT_EQ(::sigaction(SIGALRM, &sa, &old_), 0);
    itimerval it{};
    it.it_value = to_timeval(first);
    it.it_interval = to_timeval(kEvery);
    EXPECT_EQ(::setitimer(ITIMER_REAL, &it, nullptr), 0);
  }
  ~SignalTimer() {
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigaction(SIGALRM, &old_, nullptr);
  }
  SignalTimer(const SignalTimer&) = delete;
  SignalTimer& operator=(const SignalTimer&) = delete;
  /// Signals handled so far.
  int ticks() const { return ticks_; }

 private:
  static constexpr std::chrono::milliseconds kEvery{20};
  static timeval to_timeval(std::chrono::milliseconds ms) {
    return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
  }
  static void on_alarm(int) {
    ticks_ = ticks_ + 1;
    if (ticks_ > give_up_ticks_) {
      static const char msg[] = "SignalTimer: a blocking call ignored SIGALRM for too long; giving up\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(3);
    }
  }
  inline static volatile std::sig_atomic_t ticks_ = 0;
  inline static volatile std::sig_atomic_t give_up_ticks_ = 0;
  struct sigaction old_ {};
};

/// Milliseconds since `start`.
inline int64_t ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace ustack::apitest
