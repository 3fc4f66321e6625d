// Blocking calls and signals: a handler installed without SA_RESTART ends a blocking receive or
// epoll_wait with EINTR. Every case holds on Linux and must hold on ustack.

#include <chrono>

#include "api_test.h"

namespace ustack::apitest {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

TEST(SignalApi, BlockingReceiveIsInterrupted) {
  Udp s;
  s.bind_loopback();
  char buf[16];
  {
    SignalTimer timer(milliseconds(100));
    const auto start = Clock::now();
    EXPECT_ERRNO(ustack::recv(s.fd(), buf, sizeof buf, 0), EINTR);
    EXPECT_GE(ms_since(start), 90);
    EXPECT_LT(ms_since(start), 1000);
    EXPECT_GE(timer.ticks(), 1);
  }
  {
    SignalTimer timer(milliseconds(100));
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const auto start = Clock::now();
    EXPECT_ERRNO(ustack::recvfrom(s.fd(), buf, sizeof buf, 0, sa(from), &len), EINTR);
    EXPECT_LT(ms_since(start), 1000);
  }
  {
    SignalTimer timer(milliseconds(100));
    const auto start = Clock::now();
    EXPECT_ERRNO(ustack::read(s.fd(), buf, sizeof buf), EINTR);
    EXPECT_LT(ms_since(start), 1000);
  }
}

TEST(SignalApi, ReceiveWithATimeoutIsInterruptedBeforeTheTimeout) {
  Udp s;
  s.bind_loopback();
  timeval tv{5, 0};
  ASSERT_EQ(ustack::setsockopt(s.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  SignalTimer timer(milliseconds(100));
  const auto start = Clock::now();
  char c;
  EXPECT_ERRNO(ustack::recv(s.fd(), &c, 1, 0), EINTR);
  EXPECT_LT(ms_since(start), 1000);
}

TEST(SignalApi, DatagramIsStillThereAfterAnInterruptedReceive) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  char buf[16];
  {
    SignalTimer timer(milliseconds(50));
    EXPECT_ERRNO(ustack::recv(server.fd(), buf, sizeof buf, 0), EINTR);
  }
  ASSERT_EQ(client.send_to(port, "after"), 5);
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  EXPECT_EQ(ustack::recv(server.fd(), buf, sizeof buf, 0), 5);
}

TEST(SignalApi, EpollWaitIsInterrupted) {
  Udp s;
  s.bind_loopback();
  int ep = ustack::epoll_create1(0);
  ASSERT_GE(ep, 0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ASSERT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, s.fd(), &ev), 0);
  epoll_event out[4];
  for (int timeout_ms : {-1, 5000}) {
    SCOPED_TRACE(timeout_ms);
    SignalTimer timer(milliseconds(100));
    const auto start = Clock::now();
    EXPECT_ERRNO(ustack::epoll_wait(ep, out, 4, timeout_ms), EINTR);
    EXPECT_GE(ms_since(start), 90);
    EXPECT_LT(ms_since(start), 1000);
  }
  ustack::close(ep);
}

}  // namespace
}  // namespace ustack::apitest
