// Cases that need several application threads: blocking calls in one thread woken by another,
// thread-per-connection servers, concurrent senders on one socket. They run on the kernel and on
// ustack both ways: run to completion (where a call made while another thread drives the engine
// is handed to that thread) and threaded (`--threaded`: an engine thread, calls under its lock).
//
// Every blocking call is bounded (SO_RCVTIMEO/SO_SNDTIMEO, kWaitMs) so that a backend that never
// wakes a thread fails the case instead of hanging the suite. Threads report through EXPECT_*
// (thread-safe in GoogleTest) and through values the main thread checks after joining them.

#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <latch>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api_test.h"
#include "tcp_helpers.h"
#include "ustack/poll.h"

namespace ustack::apitest {

namespace {

using namespace std::chrono_literals;

class ThreadedApi : public testing::Test {
 protected:
  void SetUp() override {
  }
};

ssize_t send_str(int fd, const std::string& s, int flags = MSG_NOSIGNAL) { return ustack::send(fd, s.data(), s.size(), flags); }

/// Receives exactly `n` bytes with blocking recv() calls (each bounded by the socket's
/// SO_RCVTIMEO); stops early, with a failure, on EOF, an error or a timeout.
std::string recv_blocking(int fd, size_t n, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ustack::recv(fd, out.data() + got, n - got, 0);
    if (r <= 0) {
      ADD_FAILURE() << (r == 0 ? "EOF" : std::strerror(errno)) << " after " << got << " of " << n << " bytes";
      break;
    }
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

/// CPU time the calling thread has used.
std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

// ---------------------------------------------------------------------------------------------
// Blocking calls woken from another thread

TEST_F(ThreadedApi, BlockingAcceptReturnsWhenAnotherThreadConnects) {
  Tcp listener;
  const uint16_t port = listen_loopback(listener);  // accept bounded by SO_RCVTIMEO
  int accepted = -1;
  int accept_errno = 0;
  std::atomic<bool> accepting{false};
  std::jthread acceptor([&] {
    accepting = true;
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    accepted = ustack::accept(listener.fd(), sa(peer), &len);
    accept_errno = errno;
  });
  while (!accepting) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // let it block
  Tcp client = connect_loopback(port);
  acceptor.join();
  ASSERT_GE(accepted, 0) << std::strerror(accept_errno);
  Tcp server = Tcp::adopt(accepted);
  bound_blocking_calls(server.fd());
  EXPECT_EQ(ntohs(peer_addr(server.fd()).sin_port), local_port(client.fd()));
  ASSERT_EQ(send_str(client.fd(), "hello"), 5);
  EXPECT_EQ(recv_blocking(server.fd(), 5), "hello");
}

TEST_F(ThreadedApi, BlockedRecvIsWokenByData) {
  Connection c = connected_pair();  // recv bounded by SO_RCVTIMEO (kWaitMs)
  std::string got;
  int64_t blocked_ms = 0;
  std::atomic<bool> receiving{false};
  std::jthread reader([&] {
    char buf[16];
    receiving = true;
    const auto start = std::chrono::steady_clock::now();
    ssize_t n = ustack::recv(c.server.fd(), buf, sizeof buf, 0);
    blocked_ms = ms_since(start);
    got = n >= 0 ? std::string(buf, static_cast<size_t>(n)) : "<error " + std::string(std::strerror(errno)) + ">";
  });
  while (!receiving) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(send_str(c.client.fd(), "wake up"), 7);
  reader.join();
  EXPECT_EQ(got, "wake up");
  EXPECT_GE(blocked_ms, 30);           // it did wait for the data
  EXPECT_LT(blocked_ms, kWaitMs - 500);  // and was woken by it, not by its timeout
}

// Linux: shutdown(SHUT_RD) marks the socket shut for reading and wakes its readers, which then
// see end of file. (close() from another thread would not wake them.)
TEST_F(ThreadedApi, BlockedRecvReturnsZeroWhenAnotherThreadShutsTheSocket) {
  for (int how : {SHUT_RDWR, SHUT_RD}) {
    SCOPED_TRACE(how == SHUT_RD ? "SHUT_RD" : "SHUT_RDWR");
    Connection c = connected_pair();
    ssize_t result = -2;
    int64_t blocked_ms = 0;
    std::atomic<bool> receiving{false};
    std::jthread reader([&] {
      char buf[16];
      receiving = true;
      const auto start = std::chrono::steady_clock::now();
      result = ustack::recv(c.server.fd(), buf, sizeof buf, 0);
      blocked_ms = ms_since(start);
    });
    while (!receiving) std::this_thread::yield();
    std::this_thread::sleep_for(50ms);
    ASSERT_EQ(ustack::shutdown(c.server.fd(), how), 0);
    reader.join();
    EXPECT_EQ(result, 0);
    EXPECT_LT(blocked_ms, kWaitMs - 500);
  }
}

// The way programs end a thread blocked in recvfrom() on a UDP socket: shutdown() fails with
// ENOTCONN (nothing connected) but shuts the socket and wakes the reader, which gets 0.
TEST_F(ThreadedApi, BlockedUdpRecvIsWokenByShutdown) {
  Udp s;
  s.bind_loopback();
  bound_blocking_calls(s.fd());
  ssize_t result = -2;
  int64_t blocked_ms = 0;
  std::atomic<bool> receiving{false};
  std::jthread reader([&] {
    char buf[16];
    receiving = true;
    const auto start = std::chrono::steady_clock::now();
    result = ustack::recvfrom(s.fd(), buf, sizeof buf, 0, nullptr, nullptr);
    blocked_ms = ms_since(start);
  });
  while (!receiving) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  EXPECT_ERRNO(ustack::shutdown(s.fd(), SHUT_RDWR), ENOTCONN);
  reader.join();
  EXPECT_EQ(result, 0);
  EXPECT_LT(blocked_ms, kWaitMs - 500);
}

// Shutting a listener for reading stops it (Linux's inet_shutdown disconnects it), and a thread
// blocked in accept() returns EINVAL: how servers stop an acceptor thread.
TEST_F(ThreadedApi, BlockedAcceptIsWokenByShutdownOfTheListener) {
  Tcp listener;
  listen_loopback(listener);
  int result = -2, err = 0;
  int64_t blocked_ms = 0;
  std::atomic<bool> accepting{false};
  std::jthread acceptor([&] {
    accepting = true;
    const auto start = std::chrono::steady_clock::now();
    result = ustack::accept(listener.fd(), nullptr, nullptr);
    err = errno;
    blocked_ms = ms_since(start);
  });
  while (!accepting) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(ustack::shutdown(listener.fd(), SHUT_RDWR), 0);
  acceptor.join();
  EXPECT_EQ(result, -1);
  EXPECT_EQ(err, EINVAL) << std::strerror(err);
  EXPECT_LT(blocked_ms, kWaitMs - 500);
}

// poll() and select() in one thread over a kernel pipe and a socket, ended by another thread
// writing to either: on ustack the waiting call must watch both kinds of descriptor while it
// sleeps.
TEST_F(ThreadedApi, PollAndSelectAreWokenByAPipeOrASocket) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  Connection c = connected_pair();
  const int sock = c.server.fd();
  for (int round = 0; round < 4; ++round) {
    const bool by_pipe = round % 2 == 0, by_select = round >= 2;
    SCOPED_TRACE(std::string(by_select ? "select" : "poll") + " woken by the " + (by_pipe ? "pipe" : "socket"));
    int result = -2;
    bool pipe_ready = false, sock_ready = false;
    int64_t waited_ms = 0;
    std::atomic<bool> waiting{false};
    std::jthread waiter([&] {
      waiting = true;
      const auto start = std::chrono::steady_clock::now();
      if (by_select) {
        FdSet r;
        r.set(pipe_fds[0]);
        r.set(sock);
        timeval tv{kWaitMs / 1000, 0};
        result = ustack::select(std::max(pipe_fds[0], sock) + 1, &r, nullptr, nullptr, &tv);
        pipe_ready = r.is_set(pipe_fds[0]);
        sock_ready = r.is_set(sock);
      } else {
        pollfd p[2] = {{pipe_fds[0], POLLIN, 0}, {sock, POLLIN, 0}};
        result = ustack::poll(p, 2, kWaitMs);
        pipe_ready = p[0].revents == POLLIN;
        sock_ready = p[1].revents == POLLIN;
      }
      waited_ms = ms_since(start);
    });
    while (!waiting) std::this_thread::yield();
    std::this_thread::sleep_for(30ms);
    if (by_pipe) {
      ASSERT_EQ(::write(pipe_fds[1], "p", 1), 1);
    } else {
      ASSERT_EQ(send_str(c.client.fd(), "s"), 1);
    }
    waiter.join();
    EXPECT_EQ(result, 1);
    EXPECT_EQ(pipe_ready, by_pipe);
    EXPECT_EQ(sock_ready, !by_pipe);
    EXPECT_LT(waited_ms, kWaitMs - 500);
    char ch;
    if (by_pipe) {
      EXPECT_EQ(::read(pipe_fds[0], &ch, 1), 1);
    } else {
      EXPECT_EQ(recv_blocking(sock, 1), "s");
    }
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

// Waiting must sleep: a thread in a 200 ms epoll_wait, poll or blocking recv with nothing to
// come uses a few milliseconds of CPU at most, and returns after about 200 ms.
TEST_F(ThreadedApi, WaitsWithATimeoutSleep) {
  Udp idle;
  idle.bind_loopback();
  Connection c = connected_pair();
  timeval tv{0, 200000};
  ASSERT_EQ(ustack::setsockopt(c.server.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  struct Measured {
    int result = -2;
    int err = 0;
    int64_t wall_ms = 0;
    std::chrono::nanoseconds cpu{};
  };
  auto measure = [](auto call) {
    Measured m;
    std::jthread t([&] {
      const auto cpu0 = thread_cpu_time();
      const auto start = std::chrono::steady_clock::now();
      m.result = call();
      m.err = errno;
      m.wall_ms = ms_since(start);
      m.cpu = thread_cpu_time() - cpu0;
    });
    t.join();
    return m;
  };
  const int ep = ustack::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ASSERT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, idle.fd(), &ev), 0);
  Measured by_epoll = measure([&] {
    epoll_event out[1];
    return ustack::epoll_wait(ep, out, 1, 200);
  });
  Measured by_poll = measure([&] {
    pollfd p{idle.fd(), POLLIN, 0};
    return ustack::poll(&p, 1, 200);
  });
  Measured by_recv = measure([&] {
    char ch;
    return static_cast<int>(ustack::recv(c.server.fd(), &ch, 1, 0));
  });
  ustack::close(ep);
  for (auto [name, m, want] : {std::tuple{"epoll_wait", by_epoll, 0}, std::tuple{"poll", by_poll, 0},
                               std::tuple{"recv", by_recv, -1}}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(m.result, want);
    if (want < 0) {
      EXPECT_EQ(m.err, EAGAIN) << std::strerror(m.err);
    }
    EXPECT_GE(m.wall_ms, 190);
    EXPECT_LT(m.wall_ms, 2000);
    EXPECT_LT(m.cpu, 50ms) << "the waiting thread used "
                           << std::chrono::duration_cast<std::chrono::milliseconds>(m.cpu).count() << " ms of CPU";
  }
}

// ---------------------------------------------------------------------------------------------
// Connections driven from several threads

TEST_F(ThreadedApi, BlockingConnectFromAWorkerThread) {
  Tcp listener;
  const uint16_t port = listen_loopback(listener);
  std::string reply;
  std::jthread worker([&] {
    Tcp c = connect_loopback(port);
    if (!c.valid()) return;
    EXPECT_EQ(send_str(c.fd(), "from worker"), 11);
    reply = recv_blocking(c.fd(), 5);
  });
  Tcp server = accept_one(listener);
  ASSERT_TRUE(server.valid());
  EXPECT_EQ(recv_blocking(server.fd(), 11), "from worker");
  ASSERT_EQ(send_str(server.fd(), "ack!!"), 5);
  worker.join();
  EXPECT_EQ(reply, "ack!!");
}

// A thread per connection on both sides, all blocking: 16 clients each send 64 KiB in 4 KiB
// requests and read each echo back before the next; every byte is checked.
TEST_F(ThreadedApi, ThreadPerConnectionEcho) {
  constexpr int kClients = 16;
  constexpr size_t kChunk = 4096, kPerClient = 64 * 1024;
  Tcp listener;
  const uint16_t port = listen_loopback(listener, kClients);
  std::vector<std::jthread> servers;
  std::vector<std::jthread> clients;
  std::atomic<int> clients_ok{0};
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      Tcp c = connect_loopback(port);
      if (!c.valid()) return;
      const std::string data = pattern(static_cast<size_t>(i) << 20, kPerClient);
      bool ok = true;
      for (size_t off = 0; off < kPerClient && ok; off += kChunk) {
        const std::string chunk = data.substr(off, kChunk);
        ok = send_all(c.fd(), chunk) && recv_blocking(c.fd(), kChunk) == chunk;
      }
      EXPECT_TRUE(ok) << "client " << i << ": the echo differs from what was sent";
      EXPECT_EQ(ustack::shutdown(c.fd(), SHUT_WR), 0);
      char ch;
      EXPECT_EQ(ustack::recv(c.fd(), &ch, 1, 0), 0) << "client " << i << ": " << std::strerror(errno);
      if (ok) ++clients_ok;
    });
  }
  for (int i = 0; i < kClients; ++i) {
    Tcp s = Tcp::adopt(ustack::accept(listener.fd(), nullptr, nullptr));  // blocking, bounded
    ASSERT_TRUE(s.valid()) << "accept " << i << ": " << std::strerror(errno);
    bound_blocking_calls(s.fd());
    servers.emplace_back([s = std::move(s)] {
      std::string buf(kChunk, '\0');
      for (;;) {
        ssize_t n = ustack::recv(s.fd(), buf.data(), buf.size(), 0);
        if (n <= 0) {
          EXPECT_EQ(n, 0) << "server: " << std::strerror(errno);
          return;
        }
        if (!send_all(s.fd(), buf.substr(0, static_cast<size_t>(n)))) return;
      }
    });
  }
  clients.clear();  // joins
  servers.clear();
  EXPECT_EQ(clients_ok.load(), kClients);
}

// Linux holds the socket lock for the whole of a send() unless it must wait for buffer space, so
// blocking sends from two threads that fit in the send buffer arrive whole: each 64 KiB block is
// contiguous in the stream. The send buffer is made large enough for everything.
TEST_F(ThreadedApi, ConcurrentBlockingSendsOnOneSocketDoNotInterleave) {
  constexpr int kThreads = 2, kBlocksPerThread = 3;
  constexpr size_t kBlock = 64 * 1024;
  Connection c = connected_pair();
  ASSERT_EQ(set_int_opt(c.client.fd(), SOL_SOCKET, SO_SNDBUF, 1 << 20), 0);
  ASSERT_GE(get_int_opt(c.client.fd(), SOL_SOCKET, SO_SNDBUF), static_cast<int>(kThreads * kBlocksPerThread * kBlock * 1.05));
  auto block = [](int thread, int seq) { return pattern((static_cast<size_t>(thread) * 16 + static_cast<size_t>(seq)) << 20, kBlock); };
  std::latch start(kThreads);
  std::vector<std::jthread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int seq = 0; seq < kBlocksPerThread; ++seq) {
        const std::string b = block(t, seq);
        ssize_t n = ustack::send(c.client.fd(), b.data(), b.size(), MSG_NOSIGNAL);
        EXPECT_EQ(n, static_cast<ssize_t>(kBlock)) << std::strerror(errno);
      }
    });
  }
  const std::string got = recv_exactly(c.server.fd(), kThreads * kBlocksPerThread * kBlock);
  senders.clear();
  ASSERT_EQ(got.size(), kThreads * kBlocksPerThread * kBlock);
  int next[kThreads] = {};
  for (size_t off = 0; off < got.size(); off += kBlock) {
    const std::string piece = got.substr(off, kBlock);
    bool found = false;
    for (int t = 0; t < kThreads && !found; ++t) {
      if (next[t] < kBlocksPerThread && piece == block(t, next[t])) {
        ++next[t];  // each thread's blocks in its own order
        found = true;
      }
    }
    EXPECT_TRUE(found) << "bytes " << off << ".." << off + kBlock << " are not one whole block";
  }
}

// Many threads, each with its own connection, 1000 small request/responses each, against one
// server thread that serves them all through epoll (non-blocking, level-triggered).
TEST_F(ThreadedApi, ManyThreadsDoRequestResponseAgainstAnEpollServer) {
  constexpr int kClients = 8, kRounds = 1000;
  constexpr size_t kMsg = 64;
  Tcp listener;
  const uint16_t port = listen_loopback(listener, kClients);
  set_nonblocking(listener.fd());
  std::atomic<bool> stop{false};
  std::jthread server([&] {
    const int ep = ustack::epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener.fd();
    EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, listener.fd(), &ev), 0);
    std::vector<Tcp> conns;
    std::string buf(4096, '\0');
    while (!stop) {
      epoll_event out[16];
      int n = ustack::epoll_wait(ep, out, 16, 50);
      for (int i = 0; i < n; ++i) {
        const int fd = out[i].data.fd;
        if (fd == listener.fd()) {
          int s;
          while ((s = ustack::accept4(listener.fd(), nullptr, nullptr, SOCK_NONBLOCK)) >= 0) {
            conns.push_back(Tcp::adopt(s));
            ev.data.fd = s;
            EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), 0);
          }
          continue;
        }
        ssize_t got = ustack::recv(fd, buf.data(), buf.size(), 0);
        if (got <= 0) {
          if (got == 0 || errno != EAGAIN) {
            EXPECT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr), 0);
          }
          continue;
        }
        // Echo it; the replies are small and the client reads each, so they fit at once.
        EXPECT_EQ(ustack::send(fd, buf.data(), static_cast<size_t>(got), MSG_NOSIGNAL), got) << std::strerror(errno);
      }
    }
    ustack::close(ep);
  });
  std::atomic<int> clients_ok{0};
  {
    std::vector<std::jthread> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([&, i] {
        Tcp c = connect_loopback(port);
        if (!c.valid()) return;
        for (int r = 0; r < kRounds; ++r) {
          const std::string req = pattern((static_cast<size_t>(i) * kRounds + r) * kMsg, kMsg);
          if (send_str(c.fd(), req) != static_cast<ssize_t>(kMsg) || recv_blocking(c.fd(), kMsg) != req) {
            ADD_FAILURE() << "client " << i << " round " << r << ": " << std::strerror(errno);
            return;
          }
        }
        ++clients_ok;
      });
    }
  }
  stop = true;
  server.join();
  EXPECT_EQ(clients_ok.load(), kClients);
}

}  // namespace
// Run to completion (ustack without --threaded): the thread inside a call drives the engine, and
// a call another thread makes meanwhile is handed to it through the engine's ring (api/engine.h).
// Nothing like it on the kernel, and in threaded mode every call takes the engine's lock instead.
class HandedCallsApi : public testing::Test {
 protected:
  void SetUp() override {
    if (g_backend != Backend::kUstack || g_threaded) GTEST_SKIP() << "ustack, run to completion, only";
  }
  static uint64_t handed_calls() {
    const std::string text = ustack::stats_text();
    const std::string name = "\napi.handed_calls ";
    const size_t at = text.find(name);
    return at == std::string::npos ? 0 : std::stoull(text.substr(at + name.size()));
  }
};

// The calls of a thread that connects while another is blocked in accept run on the blocked
// thread, which goes on waiting for its connection: neither call fails or waits for the other.
TEST_F(HandedCallsApi, ACallWhileAnotherThreadDrivesTheEngineRunsOnThatThread) {
  Tcp listener;
  const uint16_t port = listen_loopback(listener);
  std::atomic<bool> inside{false};
  int accepted = -1;
  std::thread blocked([&] {
    inside = true;
    accepted = ustack::accept(listener.fd(), nullptr, nullptr);  // bounded by kWaitMs
  });
  while (!inside) std::this_thread::yield();
  std::this_thread::sleep_for(100ms);  // inside accept, driving the engine
  const uint64_t before = handed_calls();
  const auto start = std::chrono::steady_clock::now();
  Tcp client = connect_loopback(port);  // socket, setsockopt and a blocking connect, handed over
  blocked.join();
  EXPECT_LT(ms_since(start), kWaitMs / 2) << "the connect waited for the accept to end";
  ASSERT_TRUE(client.valid());
  ASSERT_GE(accepted, 0) << std::strerror(errno);
  Tcp server = Tcp::adopt(accepted);
  EXPECT_GE(handed_calls() - before, 3u);
  EXPECT_EQ(transfer(client.fd(), server.fd(), "after"), "after");
}

// A blocking call handed over runs as attempts: between them its thread sleeps until the socket
// says it changed, so it uses little CPU, and what each attempt did adds up (MSG_WAITALL here).
TEST_F(HandedCallsApi, AHandedOverBlockingRecvSleepsAndAddsUpWhatItsAttemptsGot) {
  Connection driven = connected_pair();  // a thread blocks in its recv, driving the engine
  Connection waited = connected_pair();  // the recv handed over waits on this one
  std::atomic<bool> inside{false};
  std::string driver_got;
  std::thread driver([&] {
    inside = true;
    char buf[8];
    const ssize_t n = ustack::recv(driven.server.fd(), buf, sizeof buf, 0);  // bounded by kWaitMs
    driver_got.assign(buf, static_cast<size_t>(std::max<ssize_t>(n, 0)));
  });
  while (!inside) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  const uint64_t before = handed_calls();
  ssize_t got = -2;
  char buf[5] = {};
  std::chrono::nanoseconds cpu{};
  int64_t wall_ms = 0;
  std::thread waiter([&] {
    const auto cpu0 = thread_cpu_time();
    const auto start = std::chrono::steady_clock::now();
    got = ustack::recv(waited.server.fd(), buf, sizeof buf, MSG_WAITALL);
    wall_ms = ms_since(start);
    cpu = thread_cpu_time() - cpu0;
  });
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(send_str(waited.client.fd(), "hel"), 3);
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(send_str(waited.client.fd(), "lo"), 2);
  waiter.join();
  EXPECT_EQ(got, 5) << std::strerror(errno);
  EXPECT_EQ(std::string(buf, sizeof buf), "hello");
  EXPECT_GE(wall_ms, 290);
  EXPECT_LT(cpu, 50ms) << "the waiting thread used "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(cpu).count() << " ms of CPU";
  EXPECT_EQ(send_str(driven.client.fd(), "x"), 1);
  driver.join();
  EXPECT_EQ(driver_got, "x");
  EXPECT_GE(handed_calls() - before, 4u);  // at least: the recv's three attempts, a send
}

}  // namespace ustack::apitest
