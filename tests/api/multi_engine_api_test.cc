// USTACK_CORES=N through the public calls, without DPDK: two engines share one port (198.18.0.1,
// as api::make_engines sets them up for a device with two queues) and a third engine is the peer
// (198.18.0.2) across a wire that threads may drive at once (ring_wire.h). Every engine polls on
// a thread of its own; the test's threads pick their engine with ustack::set_thread_engine. The
// peer's flows reach the two queues as a device whose hash is not the stack's would put them
// (most land on the other engine's queue), so every case also runs through the steering rings.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api/engine_set.h"
#include "base/rng.h"
#include "ring_wire.h"
#include "ustack/epoll.h"
#include "ustack/poll.h"
#include "ustack/socket.h"
#include "ustack/ustack.h"

namespace ustack::api {
void init_user_backends_for_test(std::vector<std::unique_ptr<Engine>> engines);
}

namespace ustack::apitest {
namespace {

constexpr Ipv4Addr kServerAddr(198, 18, 0, 1);
constexpr Ipv4Addr kPeerAddr(198, 18, 0, 2);
constexpr int kServerEngines = 2;
constexpr int kPeerEngine = 2;

sockaddr_in server_addr(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(kServerAddr.value());
  return a;
}

bool g_threaded = false;  // --threaded: an engine thread each

int engine_of(int fd) { return (fd - kUserFdBase) % ustack::engines(); }

uint64_t counter(const std::string& name) {
  const std::string text = ustack::stats_text();
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::stoull(text.substr(at + name.size() + 2));
}

/// An echo server on its own thread and engine: an epoll loop over a listening socket (with
/// SO_REUSEPORT if asked) and what it accepts, until stop().
class EchoServer {
 public:
  EchoServer(int engine, uint16_t port, bool reuse_port) {
    thread_ = std::thread([=, this] { run(engine, port, reuse_port); });
    while (!listening_.load() && !failed_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~EchoServer() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool failed() const { return failed_; }
  int accepted() const { return accepted_; }
  int accepted_elsewhere() const { return accepted_elsewhere_; }

 private:
  void run(int engine, uint16_t port, bool reuse_port) {
    if (ustack::set_thread_engine(engine) != 0) return fail();
    const int lfd = ustack::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    const int one = 1;
    ustack::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // a rerun finds old connections
    if (reuse_port) ustack::setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in a = server_addr(port);
    if (ustack::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ustack::listen(lfd, 256) != 0) return fail();
    const int ep = ustack::epoll_create1(0);
    epoll_event ev{EPOLLIN, {.fd = lfd}};
    ustack::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    listening_ = true;
    std::vector<char> buf(65536);
    while (!stop_) {
      epoll_event events[64];
      const int n = ustack::epoll_wait(ep, events, 64, 20);
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == lfd) {
          for (int c; (c = ustack::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK)) >= 0;) {
            ++accepted_;
            if (engine_of(c) != engine) ++accepted_elsewhere_;
            epoll_event cev{EPOLLIN, {.fd = c}};
            ustack::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          }
          continue;
        }
        for (;;) {
          const ssize_t got = ustack::recv(fd, buf.data(), buf.size(), 0);
          if (got <= 0) {
            if (got == 0 || errno != EAGAIN) {
              ustack::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
              ustack::close(fd);
            }
            break;
          }
          for (ssize_t sent = 0; sent < got;) {
            const ssize_t k = ustack::send(fd, buf.data() + sent, static_cast<size_t>(got - sent), MSG_NOSIGNAL);
            if (k > 0) sent += k;
            else if (errno != EAGAIN) break;
          }
        }
      }
    }
    ustack::close(ep);
    ustack::close(lfd);
  }
  void fail() {
    std::fprintf(stderr, "echo server: %s\n", std::strerror(errno));
    failed_ = true;
  }

  std::thread thread_;
  std::atomic<bool> listening_{false}, failed_{false}, stop_{false};
  std::atomic<int> accepted_{0}, accepted_elsewhere_{0};
};

/// `threads` client threads on the peer engine, `per_thread` connections each: connect, send up to
/// 16 KiB of random bytes, read the echo back and compare, close. Returns the connections that
/// came back whole.
int run_clients(uint16_t port, int threads, int per_thread, std::string* first_error) {
  std::atomic<int> ok{0};
  std::mutex error_mutex;
  std::vector<std::thread> clients;
  for (int t = 0; t < threads; ++t) {
    clients.emplace_back([&, t] {
      auto error = [&](const std::string& what) {
        std::lock_guard lock(error_mutex);
        if (first_error->empty()) *first_error = what + ": " + std::strerror(errno);
      };
      ustack::set_thread_engine(kPeerEngine);
      Rng rng(static_cast<uint64_t>(t) + 1);
      for (int k = 0; k < per_thread; ++k) {
        const int fd = ustack::socket(AF_INET, SOCK_STREAM, 0);
        const timeval tv{10, 0};
        ustack::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in a = server_addr(port);
        if (ustack::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
          error("connect");
          ustack::close(fd);
          continue;
        }
        std::string data(1 + rng.below(16384), '\0');
        for (char& c : data) c = static_cast<char>(rng.next());
        bool whole = ustack::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
        std::string back;
        std::vector<char> buf(16384);
        while (whole && back.size() < data.size()) {
          const ssize_t got = ustack::recv(fd, buf.data(), buf.size(), 0);
          if (got <= 0) {
            error(got == 0 ? "early end of stream" : "recv");
            whole = false;
            break;
          }
          back.append(buf.data(), static_cast<size_t>(got));
        }
        if (whole && back == data) ++ok;
        else if (whole) error("echo differs");
        ustack::close(fd);
      }
    });
  }
  for (auto& c : clients) c.join();
  return ok;
}

TEST(MultiEngineApi, OneListenerGetsEveryConnectionWhicheverQueueItCameOn) {
  const uint64_t resets_before = counter("tcp.tx_resets");
  EchoServer server(1, 7000, /*reuse_port=*/false);
  ASSERT_FALSE(server.failed());
  std::string error;
  const int ok = run_clients(7000, 4, 25, &error);
  server.stop();
  EXPECT_EQ(ok, 100) << error;
  EXPECT_EQ(server.accepted(), 100);
  EXPECT_EQ(server.accepted_elsewhere(), 0) << "every connection lives on the listener's engine";
  EXPECT_EQ(counter("tcp.tx_resets"), resets_before);
  EXPECT_GT(counter("dev.steered_out"), 0u) << "the flows all hashed to engine 1: the test proves nothing";
}

TEST(MultiEngineApi, ReusePortListenersOnEveryEngineEachAcceptTheirShare) {
  const uint64_t resets_before = counter("tcp.tx_resets");
  EchoServer first(0, 7001, /*reuse_port=*/true);
  EchoServer second(1, 7001, /*reuse_port=*/true);
  ASSERT_FALSE(first.failed());
  ASSERT_FALSE(second.failed());
  std::string error;
  const int ok = run_clients(7001, 4, 25, &error);
  first.stop();
  second.stop();
  EXPECT_EQ(ok, 100) << error;
  EXPECT_EQ(first.accepted() + second.accepted(), 100);
  EXPECT_GT(first.accepted(), 20);
  EXPECT_GT(second.accepted(), 20);
  EXPECT_EQ(first.accepted_elsewhere() + second.accepted_elsewhere(), 0) << "accepts never cross engines";
  EXPECT_EQ(counter("tcp.tx_resets"), resets_before);
}

TEST(MultiEngineApi, ASecondListenerOnAnotherEngineIsRefusedWithoutReusePort) {
  ASSERT_EQ(ustack::set_thread_engine(0), 0);
  const int a = ustack::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(ustack::set_thread_engine(1), 0);
  const int b = ustack::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(engine_of(a), 0);
  EXPECT_EQ(engine_of(b), 1);
  sockaddr_in addr = server_addr(7002);
  ASSERT_EQ(ustack::bind(a, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  errno = 0;
  EXPECT_EQ(ustack::bind(b, reinterpret_cast<sockaddr*>(&addr), sizeof addr), -1);
  EXPECT_EQ(errno, EADDRINUSE);
  ustack::close(a);
  EXPECT_EQ(ustack::bind(b, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << "free once the first let go";
  ustack::close(b);
}

TEST(MultiEngineApi, BoundUdpSocketHearsEverySender) {
  ASSERT_EQ(ustack::set_thread_engine(0), 0);
  const int server = ustack::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr = server_addr(5353);
  ASSERT_EQ(ustack::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const timeval tv{5, 0};
  ustack::setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  constexpr int kSenders = 60;
  std::thread peer([&] {
    ustack::set_thread_engine(kPeerEngine);
    for (int k = 0; k < kSenders; ++k) {
      const int s = ustack::socket(AF_INET, SOCK_DGRAM, 0);
      const int payload = k;
      ustack::sendto(s, &payload, sizeof payload, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      ustack::close(s);
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // within the peer's ARP queue
    }
  });
  std::vector<bool> heard(kSenders);
  int count = 0;
  for (int k = 0; k < kSenders; ++k) {
    int payload = -1;
    if (ustack::recv(server, &payload, sizeof payload, 0) != sizeof payload) break;
    if (payload >= 0 && payload < kSenders && !heard[static_cast<size_t>(payload)]) {
      heard[static_cast<size_t>(payload)] = true;
      ++count;
    }
  }
  peer.join();
  ustack::close(server);
  EXPECT_EQ(count, kSenders);
}

TEST(MultiEngineApi, EpollAndPollTakeOneEnginesSocketsAndSayWhy) {
  ASSERT_EQ(ustack::set_thread_engine(0), 0);
  const int ep = ustack::epoll_create1(0);
  const int mine = ustack::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_EQ(ustack::set_thread_engine(1), 0);
  const int theirs = ustack::socket(AF_INET, SOCK_DGRAM, 0);
  epoll_event ev{EPOLLIN, {.fd = theirs}};
  errno = 0;
  EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, theirs, &ev), -1);
  EXPECT_EQ(errno, EXDEV);
  EXPECT_NE(std::string(ustack::last_error()).find("engines"), std::string::npos);
  ev.data.fd = mine;
  EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, mine, &ev), 0);
  pollfd fds[2] = {{mine, POLLOUT, 0}, {theirs, POLLOUT, 0}};
  errno = 0;
  EXPECT_EQ(ustack::poll(fds, 2, 0), -1);
  EXPECT_EQ(errno, EXDEV);
  EXPECT_EQ(ustack::poll(fds, 1, 0), 1) << "one engine's sockets poll as usual";
  // Any thread may call on any engine's socket: this one is engine 1's, the others engine 0's.
  sockaddr_in a = server_addr(0);
  EXPECT_EQ(ustack::bind(mine, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  for (int fd : {ep, mine, theirs}) EXPECT_EQ(ustack::close(fd), 0);
  errno = 0;
  EXPECT_EQ(ustack::set_thread_engine(3), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST(MultiEngineApi, LoopbackConnectionsReachAListenerOnAnotherEngine) {
  // The listener on engine 1; the client on engine 0 connects to 127.0.0.1 and to the stack's
  // own address: each segment goes to the engine that owns its flow.
  ASSERT_EQ(ustack::set_thread_engine(1), 0);
  const int lfd = ustack::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_port = htons(7400);
  ASSERT_EQ(ustack::bind(lfd, reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(ustack::listen(lfd, 64), 0);
  constexpr int kConnections = 10;
  std::thread server([&] {
    for (int k = 0; k < kConnections; ++k) {
      const int c = ustack::accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      char buf[256];
      for (ssize_t got; (got = ustack::recv(c, buf, sizeof buf, 0)) > 0;) ustack::send(c, buf, static_cast<size_t>(got), 0);
      ustack::close(c);
    }
  });
  ASSERT_EQ(ustack::set_thread_engine(0), 0);
  int echoed = 0;
  for (int k = 0; k < kConnections; ++k) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(7400);
    to.sin_addr.s_addr = k % 2 == 0 ? htonl(INADDR_LOOPBACK) : htonl(kServerAddr.value());
    const int fd = ustack::socket(AF_INET, SOCK_STREAM, 0);
    const timeval tv{5, 0};
    ustack::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ASSERT_EQ(ustack::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0)
        << "connection " << k << ": " << std::strerror(errno);
    const std::string msg = "hello over loopback " + std::to_string(k);
    ASSERT_EQ(ustack::send(fd, msg.data(), msg.size(), 0), static_cast<ssize_t>(msg.size()));
    char buf[256];
    const ssize_t got = ustack::recv(fd, buf, sizeof buf, 0);
    if (got == static_cast<ssize_t>(msg.size()) && std::string(buf, static_cast<size_t>(got)) == msg) ++echoed;
    ustack::close(fd);
  }
  server.join();
  ustack::close(lfd);
  EXPECT_EQ(echoed, kConnections);
}

int connect_to_server(uint16_t port) {
  const int fd = ustack::socket(AF_INET, SOCK_STREAM, 0);
  const timeval tv{10, 0};
  ustack::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ustack::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a = server_addr(port);
  if (ustack::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ustack::close(fd);
    return -1;
  }
  return fd;
}

// A thread's calls on the sockets of an engine that another thread drives (blocked in a recv
// there) are handed to that thread through the engine's ring, the blocking ones as attempts
// between which the caller sleeps; every byte gets through. Threaded, they take its lock instead.
TEST(MultiEngineApi, CallsOnAnotherEnginesSocketsAreHandedToTheThreadDrivingIt) {
  EchoServer server(1, 7500, /*reuse_port=*/false);
  ASSERT_FALSE(server.failed());
  ASSERT_EQ(ustack::set_thread_engine(kPeerEngine), 0);
  const int blocked_on = connect_to_server(7500);
  const int used = connect_to_server(7500);
  ASSERT_GE(blocked_on, 0) << std::strerror(errno);
  ASSERT_GE(used, 0) << std::strerror(errno);
  std::atomic<bool> inside{false};
  std::string driver_got;
  std::thread driver([&] {
    ustack::set_thread_engine(kPeerEngine);
    inside = true;
    char buf[8];
    const ssize_t n = ustack::recv(blocked_on, buf, sizeof buf, 0);
    driver_got.assign(buf, static_cast<size_t>(std::max<ssize_t>(n, 0)));
  });
  while (!inside) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(ustack::set_thread_engine(0), 0);  // this thread's own engine is another one now
  const uint64_t handed_before = counter("api.handed_calls");
  Rng rng(99);
  int echoed = 0;
  constexpr int kRounds = 20;
  for (int k = 0; k < kRounds; ++k) {
    std::string data(1 + rng.below(16384), '\0');
    for (char& c : data) c = static_cast<char>(rng.next());
    if (ustack::send(used, data.data(), data.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(data.size())) break;
    std::string back(data.size(), '\0');
    const ssize_t got = ustack::recv(used, back.data(), back.size(), MSG_WAITALL);
    if (got == static_cast<ssize_t>(data.size()) && back == data) ++echoed;
  }
  EXPECT_EQ(echoed, kRounds);
  ASSERT_EQ(ustack::send(blocked_on, "x", 1, MSG_NOSIGNAL), 1);
  driver.join();
  EXPECT_EQ(driver_got, "x");
  if (!g_threaded) {
    EXPECT_GE(counter("api.handed_calls") - handed_before, uint64_t{2 * kRounds + 1});
  }
  ustack::close(used);
  ustack::close(blocked_on);
}

TEST(MultiEngineApi, NewThreadsAreSpreadOverTheEngines) {
  std::vector<int> engines_seen(static_cast<size_t>(ustack::engines()));
  for (int t = 0; t < 6; ++t) {
    std::thread([&] { ++engines_seen[static_cast<size_t>(ustack::thread_engine())]; }).join();
  }
  for (int e : engines_seen) EXPECT_EQ(e, 2);
}

}  // namespace
}  // namespace ustack::apitest

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  using namespace ustack;
  // Run to completion (the default), or --threaded: an engine thread each, calls under its lock.
  const bool threaded = argc > 1 && std::string(argv[1]) == "--threaded";
  apitest::g_threaded = threaded;
  api::EngineConfig config;
  config.stack.seed = 42;
  config.stack.address = Ipv4Cidr{apitest::kServerAddr, 24};
  config.idle_spin = 50us;
  config.idle_sleep_max = 200us;
  config.threaded = threaded;
  apitest::RingWire wire(apitest::kServerEngines, dev::MemoryQueues::Spread::kOtherHash, 1, 2);
  auto engines = api::make_engines(config, wire.take_queues(), nullptr);
  api::EngineConfig peer = config;
  peer.stack.address = Ipv4Cidr{apitest::kPeerAddr, 24};
  peer.stack.seed = 7;
  engines.push_back(std::make_unique<api::Engine>(peer, wire.take_peer(), nullptr));
  api::init_user_backends_for_test(std::move(engines));
  return RUN_ALL_TESTS();
}
