// epoll readiness on UDP sockets: level- and edge-triggered, one-shot, and the errors of
// epoll_ctl/epoll_wait. Every case holds on Linux and must hold on ustack.

#include <array>
#include <climits>
#include <string>

#include "api_test.h"

namespace ustack::apitest {
namespace {

class Epoll {
 public:
  Epoll() : fd_(ustack::epoll_create1(0)) {}
  ~Epoll() { ustack::close(fd_); }
  int fd() const { return fd_; }
  int add(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = static_cast<uint64_t>(fd) + 1000;
    return ustack::epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &ev);
  }
  int mod(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = static_cast<uint64_t>(fd) + 1000;
    return ustack::epoll_ctl(fd_, EPOLL_CTL_MOD, fd, &ev);
  }
  /// Events reported for one wait of `ms`.
  std::vector<epoll_event> wait(int ms = 0) {
    epoll_event out[8];
    int n = ustack::epoll_wait(fd_, out, 8, ms);
    return n > 0 ? std::vector<epoll_event>(out, out + n) : std::vector<epoll_event>{};
  }

 private:
  int fd_;
};

struct Pair {
  Udp server, client;
  uint16_t port;
  Pair() : port(server.bind_loopback()) { client.bind_loopback(); }
  void send(const std::string& s = "ping") { ASSERT_EQ(client.send_to(port, s), static_cast<ssize_t>(s.size())); }
  void drain_one() {
    char buf[64];
    ASSERT_GE(ustack::recv(server.fd(), buf, sizeof buf, MSG_DONTWAIT), 0);
  }
};

TEST(EpollApi, LevelTriggeredReportsUntilDrained) {
  Pair p;
  Epoll ep;
  ASSERT_EQ(ep.add(p.server.fd(), EPOLLIN), 0);
  EXPECT_TRUE(ep.wait().empty());
  p.send();
  auto ev = ep.wait(1000);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].events, static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(ev[0].data.u64, static_cast<uint64_t>(p.server.fd()) + 1000);
  EXPECT_EQ(ep.wait().size(), 1u);  // still readable: reported again
  p.drain_one();
  EXPECT_TRUE(ep.wait().empty());
}

TEST(EpollApi, EdgeTriggeredReportsOncePerArrival) {
  Pair p;
  Epoll ep;
  ASSERT_EQ(ep.add(p.server.fd(), EPOLLIN | EPOLLET), 0);
  p.send();
  ASSERT_EQ(ep.wait(1000).size(), 1u);
  EXPECT_TRUE(ep.wait().empty());  // not drained, but no new edge
  p.send();
  EXPECT_EQ(ep.wait(1000).size(), 1u);  // a new datagram is a new edge
  p.drain_one();
  p.drain_one();
  EXPECT_TRUE(ep.wait().empty());
}

TEST(EpollApi, OneShotDisarmsUntilModified) {
  Pair p;
  Epoll ep;
  ASSERT_EQ(ep.add(p.server.fd(), EPOLLIN | EPOLLONESHOT), 0);
  p.send();
  ASSERT_EQ(ep.wait(1000).size(), 1u);
  p.send();
  EXPECT_TRUE(ep.wait(20).empty());
  ASSERT_EQ(ep.mod(p.server.fd(), EPOLLIN | EPOLLONESHOT), 0);
  EXPECT_EQ(ep.wait().size(), 1u);  // re-armed and already readable
}

TEST(EpollApi, UdpSocketIsAlwaysWritable) {
  Udp s;
  Epoll ep;
  ASSERT_EQ(ep.add(s.fd(), EPOLLOUT), 0);
  auto ev = ep.wait();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].events, static_cast<uint32_t>(EPOLLOUT));
}

TEST(EpollApi, AlreadyReadableSocketIsReportedAtAdd) {
  Pair p;
  p.send();
  ASSERT_NE(wait_for(p.server.fd(), EPOLLIN), 0u);
  Epoll ep;
  ASSERT_EQ(ep.add(p.server.fd(), EPOLLIN | EPOLLET), 0);
  EXPECT_EQ(ep.wait().size(), 1u);
}

TEST(EpollApi, ClosedSocketLeavesTheInterestSet) {
  Epoll ep;
  {
    Pair p;
    ASSERT_EQ(ep.add(p.server.fd(), EPOLLIN), 0);
    p.send();
    ASSERT_EQ(ep.wait(1000).size(), 1u);
  }
  EXPECT_TRUE(ep.wait().empty());
}

TEST(EpollApi, CtlAndWaitErrors) {
  Epoll ep;
  Udp s;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ASSERT_EQ(ustack::epoll_ctl(ep.fd(), EPOLL_CTL_ADD, s.fd(), &ev), 0);
  EXPECT_ERRNO(ustack::epoll_ctl(ep.fd(), EPOLL_CTL_ADD, s.fd(), &ev), EEXIST);
  Udp other;
  EXPECT_ERRNO(ustack::epoll_ctl(ep.fd(), EPOLL_CTL_MOD, other.fd(), &ev), ENOENT);
  EXPECT_ERRNO(ustack::epoll_ctl(ep.fd(), EPOLL_CTL_DEL, other.fd(), nullptr), ENOENT);
  EXPECT_ERRNO(ustack::epoll_ctl(ep.fd(), EPOLL_CTL_ADD, ep.fd(), &ev), EINVAL);
  EXPECT_ERRNO(ustack::epoll_ctl(ep.fd(), 99, s.fd(), &ev), EINVAL);
  EXPECT_ERRNO(ustack::epoll_ctl(s.fd(), EPOLL_CTL_ADD, other.fd(), &ev), EINVAL);  // not an epoll fd
  EXPECT_EQ(ustack::epoll_ctl(ep.fd(), EPOLL_CTL_DEL, s.fd(), nullptr), 0);
  epoll_event out[1];
  EXPECT_ERRNO(ustack::epoll_wait(ep.fd(), out, 0, 0), EINVAL);
  EXPECT_ERRNO(ustack::epoll_wait(s.fd(), out, 1, 0), EINVAL);
  EXPECT_ERRNO(ustack::epoll_create1(12345), EINVAL);
}

TEST(EpollApi, WaitRejectsMoreEventsThanLinuxCanCount) {
  Epoll ep;
  // EP_MAX_EVENTS: INT_MAX / sizeof(epoll_event). The buffer is on the heap so that Linux's
  // access_ok() of the largest valid size passes (nothing is ready, nothing is written).
  const int max_events = static_cast<int>(INT_MAX / sizeof(epoll_event));
  std::vector<epoll_event> out(1);
  EXPECT_EQ(ustack::epoll_wait(ep.fd(), out.data(), max_events, 0), 0);
  EXPECT_ERRNO(ustack::epoll_wait(ep.fd(), out.data(), max_events + 1, 0), EINVAL);
  EXPECT_ERRNO(ustack::epoll_wait(ep.fd(), out.data(), INT_MAX, 0), EINVAL);
}

int add_epoll(int watcher, int watched) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  return ustack::epoll_ctl(watcher, EPOLL_CTL_ADD, watched, &ev);
}

TEST(EpollApi, NestingThatClosesACycleIsEloop) {
  Epoll a, b, c;
  ASSERT_EQ(add_epoll(a.fd(), b.fd()), 0);
  ASSERT_EQ(add_epoll(b.fd(), c.fd()), 0);
  EXPECT_ERRNO(add_epoll(c.fd(), a.fd()), ELOOP);
  EXPECT_ERRNO(add_epoll(b.fd(), a.fd()), ELOOP);
  EXPECT_EQ(add_epoll(a.fd(), c.fd()), 0);  // a second path down is no cycle
  EXPECT_ERRNO(add_epoll(a.fd(), b.fd()), EEXIST);
  // The nesting still works: c's socket makes c, then b, then a readable.
  Pair p;
  ASSERT_EQ(c.add(p.server.fd(), EPOLLIN), 0);
  p.send();
  auto ev = a.wait(1000);
  EXPECT_EQ(ev.size(), 2u);  // b and c
}

// fs/eventpoll.c ep_loop_check() with EP_MAX_NESTS = 4: a chain of epoll instances watching each
// other has at most 4 links, counted through the whole chain (above the watcher and below the
// watched). Kernels before the 2025 fix ("eventpoll: Fix semi-unbounded recursion") only counted
// the part below the watched instance, and allowed more.
TEST(EpollApi, NestingDeeperThanFourLinksIsEloop) {
  {
    std::array<Epoll, 6> e;  // built bottom-up: e4 watches e5, then e3 watches e4, ...
    for (int i = 4; i >= 1; --i) ASSERT_EQ(add_epoll(e[i].fd(), e[i + 1].fd()), 0) << i;
    const int r = add_epoll(e[0].fd(), e[1].fd());  // a fifth link
    if (r == 0 && g_backend == Backend::kKernel) GTEST_SKIP() << "this kernel predates the 2025 epoll nesting fix";
    EXPECT_EQ(r, -1);
    EXPECT_EQ(errno, ELOOP);
  }
  {
    std::array<Epoll, 6> e;  // built top-down: e0 watches e1, then e1 watches e2, ...
    for (int i = 0; i < 4; ++i) ASSERT_EQ(add_epoll(e[i].fd(), e[i + 1].fd()), 0) << i;
    EXPECT_ERRNO(add_epoll(e[4].fd(), e[5].fd()), ELOOP);
  }
  {
    std::array<Epoll, 6> e;  // two chains of one link joined in the middle: 3 links, then a 4th
    ASSERT_EQ(add_epoll(e[0].fd(), e[1].fd()), 0);
    ASSERT_EQ(add_epoll(e[2].fd(), e[3].fd()), 0);
    ASSERT_EQ(add_epoll(e[1].fd(), e[2].fd()), 0);
    ASSERT_EQ(add_epoll(e[3].fd(), e[4].fd()), 0);
    EXPECT_ERRNO(add_epoll(e[4].fd(), e[5].fd()), ELOOP);
    EXPECT_ERRNO(add_epoll(e[5].fd(), e[0].fd()), ELOOP);
    EXPECT_EQ(add_epoll(e[5].fd(), e[1].fd()), 0);  // 1 + 3 links
  }
}

TEST(EpollApi, WaitHonoursItsTimeout) {
  Udp s;
  s.bind_loopback();
  Epoll ep;
  ASSERT_EQ(ep.add(s.fd(), EPOLLIN), 0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(ep.wait(100).empty());
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(95));
  EXPECT_LT(waited, std::chrono::seconds(2));
}

}  // namespace
}  // namespace ustack::apitest
