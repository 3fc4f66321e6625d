// What servers need beyond plain sockets and epoll: poll() and select() readiness, dup() and
// fcntl(F_DUPFD), the visible effects of shutdown(), SO_REUSEPORT listeners and sendfile(). Every
// case holds on Linux and must hold on ustack.
//
// One thread, 127.0.0.1, ports chosen by the system, every wait bounded (tcp_helpers.h). poll()
// and select() cases look at the state through the call under test; where a state takes a
// round trip to reach (a FIN, a RST), the case first waits for it with a bounded poll().

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "api_test.h"
#include "tcp_helpers.h"
#include "ustack/poll.h"

namespace ustack::apitest {
namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

/// Everything a case may ask poll() for; POLLERR, POLLHUP and POLLNVAL come without asking.
constexpr short kAnyPoll = POLLIN | POLLPRI | POLLOUT | POLLRDHUP;

/// poll() bits by name, e.g. "IN|OUT|RDHUP"; "none" if none.
std::string revents_str(short revents) {
  static constexpr std::pair<short, const char*> kNames[] = {
      {POLLIN, "IN"},         {POLLPRI, "PRI"},       {POLLOUT, "OUT"}, {POLLRDHUP, "RDHUP"}, {POLLHUP, "HUP"},
      {POLLERR, "ERR"},       {POLLNVAL, "NVAL"},     {POLLRDNORM, "RDNORM"},
      {POLLRDBAND, "RDBAND"}, {POLLWRNORM, "WRNORM"}, {POLLWRBAND, "WRBAND"}};
  std::string s;
  int rest = static_cast<unsigned short>(revents);
  for (auto [bit, name] : kNames) {
    if ((rest & bit) == 0) continue;
    if (!s.empty()) s += '|';
    s += name;
    rest &= ~bit;
  }
  if (rest != 0) s += (s.empty() ? "" : "|") + std::to_string(rest);
  return s.empty() ? "none" : s;
}

/// One poll() of one descriptor for `events`, waiting up to `ms`: its revents by name. The
/// call's result must agree (1 with revents, 0 without).
std::string poll_one(int fd, short events = kAnyPoll, int ms = 0, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  pollfd p{fd, events, 0};
  int n = ustack::poll(&p, 1, ms);
  EXPECT_GE(n, 0) << "poll: " << std::strerror(errno);
  EXPECT_EQ(n, p.revents != 0 ? 1 : 0) << "poll's count disagrees with revents " << revents_str(p.revents);
  return revents_str(p.revents);
}

/// Waits (bounded) until poll() reports any of `events` on fd; true if it did.
bool poll_until(int fd, short events, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  pollfd p{fd, events, 0};
  return ustack::poll(&p, 1, kWaitMs) == 1 && (p.revents & (events | POLLERR | POLLHUP)) != 0;
}

/// One select() with `fd` in all three sets (nfds = fd + 1), no wait: which sets kept it, as
/// "R", "W", "X" joined by '|' ("none"). The count select() returns must match the bits.
std::string select_one(int fd, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  FdSet r, w, x;
  EXPECT_TRUE(r.set(fd) && w.set(fd) && x.set(fd));
  timeval tv{0, 0};
  int n = ustack::select(fd + 1, &r, &w, &x, &tv);
  EXPECT_GE(n, 0) << "select: " << std::strerror(errno);
  std::string s;
  int bits = 0;
  for (auto [set, name] : {std::pair{&r, "R"}, std::pair{&w, "W"}, std::pair{&x, "X"}}) {
    if (!set->is_set(fd)) continue;
    ++bits;
    s += (s.empty() ? "" : "|") + std::string(name);
  }
  EXPECT_EQ(n, bits) << "select's count disagrees with the sets";
  return s.empty() ? "none" : s;
}

std::string recv_some(int fd, size_t cap, int flags = 0) {
  std::string buf(cap, '\0');
  ssize_t n = ustack::recv(fd, buf.data(), buf.size(), flags);
  if (n < 0) return "<error " + std::string(std::strerror(errno)) + ">";
  buf.resize(static_cast<size_t>(n));
  return buf;
}

ssize_t send_str(int fd, const std::string& s, int flags = MSG_NOSIGNAL) { return ustack::send(fd, s.data(), s.size(), flags); }

/// A descriptor of the backend under test that was open and is closed now (nothing has taken
/// its number since).
int closed_socket_fd() {
  int fd = ustack::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  ustack::close(fd);
  return fd;
}

/// Resets `c`'s client by closing it with SO_LINGER {1, 0}, and waits until the server has seen
/// the RST.
void reset_client(Connection& c, std::source_location loc = std::source_location::current()) {
  CallerTrace trace(loc);
  linger l{1, 0};
  ASSERT_EQ(ustack::setsockopt(c.client.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  ASSERT_EQ(c.client.close(), 0);
  pollfd p{c.server.fd(), POLLIN, 0};
  ASSERT_EQ(ustack::poll(&p, 1, kWaitMs), 1);
  ASSERT_NE(p.revents & POLLERR, 0) << revents_str(p.revents);
}

/// A kernel pipe closed at the end of the scope.
struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() { EXPECT_EQ(::pipe(fds), 0); }
  ~Pipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_end() const { return fds[0]; }
  int write_end() const { return fds[1]; }
};

// ---------------------------------------------------------------------------------------------
// poll and select: readiness by socket state (Linux's tcp_poll / udp_poll through poll's and
// select's masks: select's read set is IN|HUP|ERR, its write set OUT|ERR, its except set PRI)

TEST(PollSelectApi, FreshTcpSocketIsWritableAndHungUp) {
  Tcp fresh, bound;
  bind_loopback(bound);
  for (int fd : {fresh.fd(), bound.fd()}) {
    EXPECT_EQ(poll_one(fd), "OUT|HUP");
    EXPECT_EQ(poll_one(fd, 0), "HUP");  // POLLHUP is reported even when not asked for
    EXPECT_EQ(select_one(fd), "R|W");   // a hang-up counts as readable
  }
}

TEST(PollSelectApi, ListenerIsReadableOnlyWhileAConnectionWaits) {
  Tcp listener;
  uint16_t port = listen_loopback(listener);
  EXPECT_EQ(poll_one(listener.fd()), "none");
  EXPECT_EQ(select_one(listener.fd()), "none");
  Tcp client = connect_loopback(port);
  EXPECT_EQ(poll_one(listener.fd(), POLLIN, kWaitMs), "IN");
  EXPECT_EQ(poll_one(listener.fd()), "IN");
  EXPECT_EQ(select_one(listener.fd()), "R");
  Tcp server = accept_one(listener);
  EXPECT_EQ(poll_one(listener.fd()), "none");
  EXPECT_EQ(select_one(listener.fd()), "none");
}

TEST(PollSelectApi, ConnectedSocketIsWritableThenReadableWithData) {
  Connection c = connected_pair();
  EXPECT_EQ(poll_one(c.server.fd()), "OUT");
  EXPECT_EQ(select_one(c.server.fd()), "W");
  ASSERT_EQ(send_str(c.client.fd(), "data"), 4);
  EXPECT_EQ(poll_one(c.server.fd(), POLLIN, kWaitMs), "IN");
  EXPECT_EQ(poll_one(c.server.fd()), "IN|OUT");
  EXPECT_EQ(poll_one(c.server.fd(), POLLRDNORM | POLLWRNORM), "RDNORM|WRNORM");
  EXPECT_EQ(poll_one(c.server.fd(), POLLOUT), "OUT");  // only what was asked for
  EXPECT_EQ(select_one(c.server.fd()), "R|W");
  EXPECT_EQ(recv_exactly(c.server.fd(), 4), "data");
  EXPECT_EQ(poll_one(c.server.fd()), "OUT");
  EXPECT_EQ(select_one(c.server.fd()), "W");
}

TEST(PollSelectApi, PeerShutdownWriteIsReadableWithRdhup) {
  Connection c = connected_pair();
  ASSERT_EQ(ustack::shutdown(c.client.fd(), SHUT_WR), 0);
  ASSERT_TRUE(poll_until(c.server.fd(), POLLRDHUP));
  EXPECT_EQ(poll_one(c.server.fd()), "IN|OUT|RDHUP");
  EXPECT_EQ(poll_one(c.server.fd(), POLLIN), "IN");  // POLLRDHUP only when asked for
  EXPECT_EQ(select_one(c.server.fd()), "R|W");
  char ch;
  EXPECT_EQ(ustack::recv(c.server.fd(), &ch, 1, 0), 0);
  EXPECT_EQ(select_one(c.server.fd()), "R|W");  // EOF stays readable
}

TEST(PollSelectApi, PeerResetIsErrAndHup) {
  Connection c = connected_pair();
  reset_client(c);
  EXPECT_EQ(poll_one(c.server.fd()), "IN|OUT|RDHUP|HUP|ERR");
  EXPECT_EQ(poll_one(c.server.fd(), 0), "HUP|ERR");  // reported even when not asked for
  EXPECT_EQ(select_one(c.server.fd()), "R|W");
  EXPECT_EQ(poll_one(c.server.fd()), "IN|OUT|RDHUP|HUP|ERR");  // looking does not clear the error
  char ch;
  EXPECT_ERRNO(ustack::recv(c.server.fd(), &ch, 1, 0), ECONNRESET);
  EXPECT_EQ(poll_one(c.server.fd()), "IN|OUT|RDHUP|HUP");
  EXPECT_EQ(select_one(c.server.fd()), "R|W");
}

TEST(PollSelectApi, UdpSocketIsReadableAfterADatagram) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  EXPECT_EQ(poll_one(server.fd()), "OUT");
  EXPECT_EQ(select_one(server.fd()), "W");
  ASSERT_EQ(client.send_to(port, "ping"), 4);
  EXPECT_EQ(poll_one(server.fd(), POLLIN, kWaitMs), "IN");
  EXPECT_EQ(poll_one(server.fd()), "IN|OUT");
  EXPECT_EQ(select_one(server.fd()), "R|W");
  EXPECT_EQ(recv_some(server.fd(), 64), "ping");
  EXPECT_EQ(poll_one(server.fd()), "OUT");
}

// ---------------------------------------------------------------------------------------------
// poll and select: descriptors, timeouts, nfds

TEST(PollSelectApi, PollReportsNvalForAClosedDescriptorAndIgnoresNegativeOnes) {
  Udp writable;
  const int closed = closed_socket_fd();  // after `writable`, which would take its number
  pollfd p[4] = {{closed, POLLIN, 0}, {-1, POLLIN, 77}, {writable.fd(), POLLOUT, 0}, {closed, 0, 0}};
  EXPECT_EQ(ustack::poll(p, 4, 0), 3);  // the two closed entries and the writable one
  EXPECT_EQ(revents_str(p[0].revents), "NVAL");
  EXPECT_EQ(revents_str(p[1].revents), "none");  // negative: skipped, revents cleared
  EXPECT_EQ(revents_str(p[2].revents), "OUT");
  EXPECT_EQ(revents_str(p[3].revents), "NVAL");  // even when nothing was asked for
  // A closed descriptor ends the wait at once.
  const auto start = std::chrono::steady_clock::now();
  pollfd one{closed, POLLIN, 0};
  EXPECT_EQ(ustack::poll(&one, 1, kWaitMs), 1);
  EXPECT_EQ(revents_str(one.revents), "NVAL");
  EXPECT_LT(ms_since(start), 1000);
}

TEST(PollSelectApi, SelectFailsWithEbadfForAClosedDescriptor) {
  Udp writable;
  const int closed = closed_socket_fd();
  const int nfds = std::max(closed, writable.fd()) + 1;
  timeval tv{0, 0};
  FdSet r, w, x;
  r.set(closed);
  w.set(writable.fd());
  EXPECT_ERRNO(ustack::select(nfds, &r, &w, nullptr, &tv), EBADF);
  w.zero();
  w.set(writable.fd());
  x.set(closed);
  EXPECT_ERRNO(ustack::select(nfds, nullptr, &w, &x, &tv), EBADF);
  // A closed descriptor at or above nfds is not looked at.
  ASSERT_GT(closed, writable.fd());
  w.zero();
  w.set(writable.fd());
  r.zero();
  r.set(closed);
  EXPECT_EQ(ustack::select(writable.fd() + 1, &r, &w, nullptr, &tv), 1);
  EXPECT_TRUE(w.is_set(writable.fd()));
}

TEST(PollSelectApi, SelectErrors) {
  Udp s;
  FdSet w;
  w.set(s.fd());
  EXPECT_ERRNO(ustack::select(-1, nullptr, &w, nullptr, nullptr), EINVAL);
  timeval negative_sec{-1, 0};
  EXPECT_ERRNO(ustack::select(s.fd() + 1, nullptr, &w, nullptr, &negative_sec), EINVAL);
  timeval negative_usec{0, -1};
  EXPECT_ERRNO(ustack::select(s.fd() + 1, nullptr, &w, nullptr, &negative_usec), EINVAL);
}

TEST(PollSelectApi, ZeroTimeoutReturnsAtOnce) {
  Udp idle;
  idle.bind_loopback();
  Tcp listener;
  listen_loopback(listener);
  const auto start = std::chrono::steady_clock::now();
  pollfd p[2] = {{idle.fd(), POLLIN, 0}, {listener.fd(), POLLIN, 0}};
  EXPECT_EQ(ustack::poll(p, 2, 0), 0);
  EXPECT_EQ(p[0].revents, 0);
  EXPECT_EQ(p[1].revents, 0);
  FdSet r;
  r.set(idle.fd());
  r.set(listener.fd());
  timeval tv{0, 0};
  EXPECT_EQ(ustack::select(std::max(idle.fd(), listener.fd()) + 1, &r, nullptr, nullptr, &tv), 0);
  EXPECT_FALSE(r.is_set(idle.fd()));  // on return the sets hold the ready descriptors: none
  EXPECT_FALSE(r.is_set(listener.fd()));
  EXPECT_LT(ms_since(start), 1000);
}

TEST(PollSelectApi, TimeoutElapses) {
  Udp idle;
  idle.bind_loopback();
  {
    pollfd p{idle.fd(), POLLIN, 0};
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(ustack::poll(&p, 1, 50), 0);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_LT(ms_since(start), 2000);
  }
  {
    // Only negative descriptors: poll() just sleeps.
    pollfd p{-1, POLLIN, 0};
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(ustack::poll(&p, 1, 50), 0);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_LT(ms_since(start), 2000);
  }
  {
    FdSet r;
    r.set(idle.fd());
    timeval tv{0, 50000};
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(ustack::select(idle.fd() + 1, &r, nullptr, nullptr, &tv), 0);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_LT(ms_since(start), 2000);
    EXPECT_FALSE(r.is_set(idle.fd()));
    EXPECT_EQ(tv.tv_sec, 0);  // all the time was used
    EXPECT_EQ(tv.tv_usec, 0);
  }
}

TEST(PollSelectApi, SelectUpdatesTheTimeoutToTheTimeLeft) {
  Udp s;
  FdSet w;
  w.set(s.fd());
  timeval tv{5, 0};
  ASSERT_EQ(ustack::select(s.fd() + 1, nullptr, &w, nullptr, &tv), 1);  // writable at once
  EXPECT_TRUE(w.is_set(s.fd()));
  const int64_t left_us = int64_t{tv.tv_sec} * 1000000 + tv.tv_usec;
  EXPECT_LE(left_us, 5000000);
  EXPECT_GT(left_us, 4000000);
  EXPECT_LT(tv.tv_usec, 1000000);
}

TEST(PollSelectApi, SelectIgnoresDescriptorsAtOrAboveNfds) {
  Udp a, b;  // both writable
  const int lo = std::min(a.fd(), b.fd()), hi = std::max(a.fd(), b.fd());
  FdSet w;
  w.set(lo);
  w.set(hi);
  timeval tv{0, 0};
  EXPECT_EQ(ustack::select(hi, nullptr, &w, nullptr, &tv), 1);  // hi is not below nfds
  EXPECT_TRUE(w.is_set(lo));
  w.zero();
  w.set(hi);
  EXPECT_EQ(ustack::select(hi, nullptr, &w, nullptr, &tv), 0);
  w.zero();
  w.set(lo);
  w.set(hi);
  EXPECT_EQ(ustack::select(hi + 1, nullptr, &w, nullptr, &tv), 2);
  EXPECT_TRUE(w.is_set(lo));
  EXPECT_TRUE(w.is_set(hi));
}

// A kernel pipe and a socket of the backend under test in one call: on ustack the pipe is polled
// by the kernel and the socket by the engine, and both must be reported.
TEST(PollSelectApi, PollAndSelectMixAKernelPipeAndASocket) {
  Pipe pipe;
  Connection c = connected_pair();
  const int sock = c.server.fd();
  pollfd p[3] = {{pipe.read_end(), POLLIN, 0}, {sock, POLLIN, 0}, {pipe.write_end(), POLLOUT, 0}};
  EXPECT_EQ(ustack::poll(p, 2, 0), 0);

  ASSERT_EQ(::write(pipe.write_end(), "p", 1), 1);
  EXPECT_EQ(ustack::poll(p, 2, kWaitMs), 1);
  EXPECT_EQ(revents_str(p[0].revents), "IN");
  EXPECT_EQ(revents_str(p[1].revents), "none");
  char ch;
  ASSERT_EQ(::read(pipe.read_end(), &ch, 1), 1);

  ASSERT_EQ(send_str(c.client.fd(), "s"), 1);
  EXPECT_EQ(ustack::poll(p, 2, kWaitMs), 1);  // waits for the socket while watching the pipe
  EXPECT_EQ(revents_str(p[0].revents), "none");
  EXPECT_EQ(revents_str(p[1].revents), "IN");

  ASSERT_EQ(::write(pipe.write_end(), "p", 1), 1);
  EXPECT_EQ(ustack::poll(p, 3, kWaitMs), 3);
  EXPECT_EQ(revents_str(p[0].revents), "IN");
  EXPECT_EQ(revents_str(p[1].revents), "IN");
  EXPECT_EQ(revents_str(p[2].revents), "OUT");

  const int nfds = std::max({pipe.read_end(), pipe.write_end(), sock}) + 1;
  FdSet r, w;
  r.set(pipe.read_end());
  r.set(sock);
  w.set(pipe.write_end());
  w.set(sock);
  timeval tv{3, 0};
  EXPECT_EQ(ustack::select(nfds, &r, &w, nullptr, &tv), 4);
  EXPECT_TRUE(r.is_set(pipe.read_end()));
  EXPECT_TRUE(r.is_set(sock));
  EXPECT_TRUE(w.is_set(pipe.write_end()));
  EXPECT_TRUE(w.is_set(sock));

  ASSERT_EQ(::read(pipe.read_end(), &ch, 1), 1);
  EXPECT_EQ(recv_exactly(sock, 1), "s");
  r.zero();
  r.set(pipe.read_end());
  r.set(sock);
  tv = {0, 0};
  EXPECT_EQ(ustack::select(nfds, &r, nullptr, nullptr, &tv), 0);
  EXPECT_FALSE(r.is_set(pipe.read_end()));
  EXPECT_FALSE(r.is_set(sock));

  // Data on the socket ends a select() that also watches the pipe.
  ASSERT_EQ(send_str(c.client.fd(), "t"), 1);
  r.zero();
  r.set(pipe.read_end());
  r.set(sock);
  tv = {3, 0};
  EXPECT_EQ(ustack::select(nfds, &r, nullptr, nullptr, &tv), 1);
  EXPECT_FALSE(r.is_set(pipe.read_end()));
  EXPECT_TRUE(r.is_set(sock));
}

// ---------------------------------------------------------------------------------------------
// dup and F_DUPFD: several descriptors, one open socket

TEST(DupApi, DuplicateReadsAndWritesTheSameSocket) {
  Connection c = connected_pair();
  Tcp d = Tcp::adopt(ustack::dup(c.server.fd()));
  ASSERT_TRUE(d.valid()) << std::strerror(errno);
  EXPECT_NE(d.fd(), c.server.fd());
  EXPECT_EQ(is_user_fd(d.fd()), is_user_fd(c.server.fd()));
  EXPECT_EQ(local_port(d.fd()), local_port(c.server.fd()));
  EXPECT_EQ(ntohs(peer_addr(d.fd()).sin_port), local_port(c.client.fd()));
  ASSERT_EQ(send_str(c.client.fd(), "to-dup"), 6);
  EXPECT_EQ(recv_exactly(d.fd(), 6), "to-dup");
  ASSERT_EQ(send_str(d.fd(), "from-dup "), 9);
  ASSERT_EQ(send_str(c.server.fd(), "from-orig"), 9);
  EXPECT_EQ(recv_exactly(c.client.fd(), 18), "from-dup from-orig");  // one byte stream
  ASSERT_EQ(send_str(c.client.fd(), "ab"), 2);
  EXPECT_EQ(recv_exactly(c.server.fd(), 1), "a");
  EXPECT_EQ(recv_exactly(d.fd(), 1), "b");
}

TEST(DupApi, ClosingOneDescriptorKeepsTheConnectionOpen) {
  Connection c = connected_pair();
  Tcp d = Tcp::adopt(ustack::dup(c.server.fd()));
  ASSERT_TRUE(d.valid()) << std::strerror(errno);
  ASSERT_EQ(c.server.close(), 0);
  // Not the last descriptor: no FIN.
  EXPECT_EQ(wait_for(c.client.fd(), EPOLLIN | EPOLLRDHUP, 100), 0u);
  EXPECT_EQ(events_now(c.client.fd()), "OUT");
  ASSERT_EQ(send_str(c.client.fd(), "still there?"), 12);
  EXPECT_EQ(recv_exactly(d.fd(), 12), "still there?");
  ASSERT_EQ(send_str(d.fd(), "yes"), 3);
  EXPECT_EQ(recv_exactly(c.client.fd(), 3), "yes");
  // The last close ends the connection with a FIN.
  ASSERT_EQ(d.close(), 0);
  ASSERT_NE(wait_for(c.client.fd(), EPOLLRDHUP, kWaitMs) & EPOLLRDHUP, 0u);
  EXPECT_EQ(events_now(c.client.fd()), "IN|OUT|RDHUP");
  char ch;
  EXPECT_EQ(ustack::recv(c.client.fd(), &ch, 1, 0), 0);
}

TEST(DupApi, ShutdownThroughOneDescriptorShutsTheSocket) {
  Connection c = connected_pair();
  Tcp d = Tcp::adopt(ustack::dup(c.server.fd()));
  ASSERT_TRUE(d.valid()) << std::strerror(errno);
  ASSERT_EQ(ustack::shutdown(d.fd(), SHUT_WR), 0);
  ASSERT_NE(wait_for(c.client.fd(), EPOLLRDHUP, kWaitMs) & EPOLLRDHUP, 0u);
  char ch;
  EXPECT_EQ(ustack::recv(c.client.fd(), &ch, 1, 0), 0);
  EXPECT_ERRNO(send_str(c.server.fd(), "x"), EPIPE);
  EXPECT_ERRNO(send_str(d.fd(), "x"), EPIPE);
  EXPECT_EQ(events_now(c.server.fd()), "OUT");
  // Reading still works, through either.
  ASSERT_EQ(send_str(c.client.fd(), "late"), 4);
  EXPECT_EQ(recv_exactly(c.server.fd(), 4), "late");
}

TEST(DupApi, CloexecBelongsToTheDescriptor) {
  Tcp s(SOCK_CLOEXEC);
  ASSERT_EQ(ustack::fcntl(s.fd(), F_GETFD), FD_CLOEXEC);
  Tcp d = Tcp::adopt(ustack::dup(s.fd()));
  ASSERT_TRUE(d.valid()) << std::strerror(errno);
  EXPECT_EQ(ustack::fcntl(d.fd(), F_GETFD), 0);  // dup() never sets it
  Tcp d2 = Tcp::adopt(ustack::fcntl(s.fd(), F_DUPFD, 0));
  ASSERT_TRUE(d2.valid()) << std::strerror(errno);
  EXPECT_EQ(ustack::fcntl(d2.fd(), F_GETFD), 0);
  Tcp d3 = Tcp::adopt(ustack::fcntl(d.fd(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(d3.valid()) << std::strerror(errno);
  EXPECT_EQ(ustack::fcntl(d3.fd(), F_GETFD), FD_CLOEXEC);
  // Changing it on one leaves the others.
  ASSERT_EQ(ustack::fcntl(d.fd(), F_SETFD, FD_CLOEXEC), 0);
  ASSERT_EQ(ustack::fcntl(s.fd(), F_SETFD, 0), 0);
  EXPECT_EQ(ustack::fcntl(d.fd(), F_GETFD), FD_CLOEXEC);
  EXPECT_EQ(ustack::fcntl(s.fd(), F_GETFD), 0);
  EXPECT_EQ(ustack::fcntl(d2.fd(), F_GETFD), 0);
  EXPECT_EQ(ustack::fcntl(d3.fd(), F_GETFD), FD_CLOEXEC);
}

TEST(DupApi, NonBlockIsSharedBetweenDuplicates) {
  Connection c = connected_pair();
  Tcp d = Tcp::adopt(ustack::dup(c.server.fd()));
  ASSERT_TRUE(d.valid()) << std::strerror(errno);
  EXPECT_EQ(ustack::fcntl(c.server.fd(), F_GETFL) & O_NONBLOCK, 0);
  set_nonblocking(d.fd());
  // One open file description: the flag shows, and acts, through the other descriptor.
  EXPECT_NE(ustack::fcntl(c.server.fd(), F_GETFL) & O_NONBLOCK, 0);
  char ch;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_ERRNO(ustack::recv(c.server.fd(), &ch, 1, 0), EAGAIN);
  EXPECT_LT(ms_since(start), 1000);  // no wait for the receive timeout
  ASSERT_EQ(ustack::fcntl(c.server.fd(), F_SETFL, ustack::fcntl(c.server.fd(), F_GETFL) & ~O_NONBLOCK), 0);
  EXPECT_EQ(ustack::fcntl(d.fd(), F_GETFL) & O_NONBLOCK, 0);
}

TEST(DupApi, DupOfABadDescriptorIsEbadf) {
  const int closed = closed_socket_fd();
  EXPECT_ERRNO(ustack::dup(-1), EBADF);
  EXPECT_ERRNO(ustack::dup(closed), EBADF);
  EXPECT_ERRNO(ustack::fcntl(closed, F_DUPFD, 0), EBADF);
  EXPECT_ERRNO(ustack::fcntl(closed, F_DUPFD_CLOEXEC, 0), EBADF);
  EXPECT_ERRNO(ustack::fcntl(-1, F_DUPFD, 0), EBADF);
}

TEST(DupApi, DupTakesTheLowestFreeDescriptor) {
  Tcp s;
  const int lowest = closed_socket_fd();  // socket() took the lowest free one; it is free again
  Tcp d = Tcp::adopt(ustack::dup(s.fd()));
  EXPECT_EQ(d.fd(), lowest);
}

TEST(DupApi, FdupfdStartsAtItsArgument) {
  Connection c = connected_pair();
  const int min = c.server.fd() + 50;  // nothing is open there
  Tcp d1 = Tcp::adopt(ustack::fcntl(c.server.fd(), F_DUPFD, min));
  Tcp d2 = Tcp::adopt(ustack::fcntl(c.server.fd(), F_DUPFD_CLOEXEC, min));
  EXPECT_EQ(d1.fd(), min) << std::strerror(errno);  // the lowest free one at or above min
  EXPECT_EQ(d2.fd(), min + 1) << std::strerror(errno);
  EXPECT_EQ(ustack::fcntl(d2.fd(), F_GETFD), FD_CLOEXEC);
  ASSERT_EQ(send_str(d2.fd(), "via d2"), 6);
  EXPECT_EQ(recv_exactly(c.client.fd(), 6), "via d2");
  EXPECT_ERRNO(ustack::fcntl(c.server.fd(), F_DUPFD, -1), EINVAL);
}

// Linux keys an epoll registration by (open file, descriptor number) and drops it when the open
// file is released, i.e. on the last close. So after closing the registered descriptor while a
// duplicate is open, events keep coming under the old registration, which the duplicate's number
// does not name (ENOENT) and the closed number cannot reach (EBADF); the duplicate can be added
// as a second registration of the same socket.
TEST(DupApi, EpollRegistrationOutlivesTheClosedDescriptorUntilTheLastClose) {
  Connection c = connected_pair();
  const int ep = ustack::epoll_create1(0);
  ASSERT_GE(ep, 0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 111;
  ASSERT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, c.server.fd(), &ev), 0);
  Tcp d = Tcp::adopt(ustack::dup(c.server.fd()));
  ASSERT_TRUE(d.valid()) << std::strerror(errno);
  const int old_fd = c.server.fd();
  ASSERT_EQ(c.server.close(), 0);

  ASSERT_EQ(send_str(c.client.fd(), "a"), 1);
  epoll_event out[4];
  ASSERT_EQ(ustack::epoll_wait(ep, out, 4, kWaitMs), 1);
  EXPECT_EQ(out[0].data.u64, 111u);
  EXPECT_EQ(events_str(out[0].events), "IN");
  EXPECT_ERRNO(ustack::epoll_ctl(ep, EPOLL_CTL_MOD, d.fd(), &ev), ENOENT);
  EXPECT_ERRNO(ustack::epoll_ctl(ep, EPOLL_CTL_DEL, d.fd(), nullptr), ENOENT);
  EXPECT_ERRNO(ustack::epoll_ctl(ep, EPOLL_CTL_DEL, old_fd, nullptr), EBADF);

  ev.data.u64 = 222;
  ASSERT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_ADD, d.fd(), &ev), 0);
  ASSERT_EQ(ustack::epoll_wait(ep, out, 4, 0), 2);
  EXPECT_EQ((std::set<uint64_t>{out[0].data.u64, out[1].data.u64}), (std::set<uint64_t>{111, 222}));
  ASSERT_EQ(ustack::epoll_ctl(ep, EPOLL_CTL_DEL, d.fd(), nullptr), 0);
  ASSERT_EQ(ustack::epoll_wait(ep, out, 4, 0), 1);
  EXPECT_EQ(out[0].data.u64, 111u);

  EXPECT_EQ(recv_exactly(d.fd(), 1), "a");
  EXPECT_EQ(ustack::epoll_wait(ep, out, 4, 0), 0);  // level-triggered: drained
  ASSERT_EQ(send_str(c.client.fd(), "b"), 1);
  ASSERT_EQ(ustack::epoll_wait(ep, out, 4, kWaitMs), 1);
  EXPECT_EQ(out[0].data.u64, 111u);
  EXPECT_EQ(recv_exactly(d.fd(), 1), "b");

  // The last close releases the socket, and with it the registration.
  ASSERT_EQ(d.close(), 0);
  ASSERT_NE(wait_for(c.client.fd(), EPOLLRDHUP, kWaitMs) & EPOLLRDHUP, 0u);
  EXPECT_EQ(ustack::epoll_wait(ep, out, 4, 0), 0);
  ustack::close(ep);
}

// ---------------------------------------------------------------------------------------------
// shutdown: what each kind does, as poll() and the peer see it

TEST(ShutdownApi, ShutReadGivesEofLocallyAndTellsThePeerNothing) {
  Connection c = connected_pair();
  ASSERT_EQ(ustack::shutdown(c.server.fd(), SHUT_RD), 0);
  EXPECT_EQ(poll_one(c.server.fd()), "IN|OUT|RDHUP");
  EXPECT_EQ(select_one(c.server.fd()), "R|W");
  char ch;
  EXPECT_EQ(ustack::recv(c.server.fd(), &ch, 1, 0), 0);
  EXPECT_EQ(ustack::recv(c.server.fd(), &ch, 1, MSG_DONTWAIT), 0);
  EXPECT_EQ(poll_one(c.client.fd(), kAnyPoll, 100), "OUT");  // nothing is sent for SHUT_RD
  ASSERT_EQ(send_str(c.server.fd(), "still"), 5);
  EXPECT_EQ(recv_exactly(c.client.fd(), 5), "still");
}

TEST(ShutdownApi, ShutWriteGivesThePeerEofAndEpipeLocally) {
  Connection c = connected_pair();
  ASSERT_EQ(send_str(c.server.fd(), "last"), 4);
  ASSERT_EQ(ustack::shutdown(c.server.fd(), SHUT_WR), 0);
  EXPECT_ERRNO(ustack::send(c.server.fd(), "x", 1, MSG_NOSIGNAL), EPIPE);
  EXPECT_EQ(poll_one(c.server.fd()), "OUT");
  EXPECT_EQ(select_one(c.server.fd()), "W");
  EXPECT_EQ(recv_exactly(c.client.fd(), 4), "last");
  ASSERT_TRUE(poll_until(c.client.fd(), POLLRDHUP));
  EXPECT_EQ(poll_one(c.client.fd()), "IN|OUT|RDHUP");
  char ch;
  EXPECT_EQ(ustack::recv(c.client.fd(), &ch, 1, 0), 0);
  // The other direction stays open.
  ASSERT_EQ(send_str(c.client.fd(), "reply"), 5);
  EXPECT_EQ(recv_exactly(c.server.fd(), 5), "reply");
}

TEST(ShutdownApi, ShutReadWriteHangsUpLocally) {
  Connection c = connected_pair();
  ASSERT_EQ(ustack::shutdown(c.server.fd(), SHUT_RDWR), 0);
  EXPECT_EQ(poll_one(c.server.fd()), "IN|OUT|RDHUP|HUP");
  EXPECT_EQ(select_one(c.server.fd()), "R|W");
  char ch;
  EXPECT_EQ(ustack::recv(c.server.fd(), &ch, 1, 0), 0);
  EXPECT_ERRNO(ustack::send(c.server.fd(), "x", 1, MSG_NOSIGNAL), EPIPE);
  ASSERT_TRUE(poll_until(c.client.fd(), POLLRDHUP));
  EXPECT_EQ(poll_one(c.client.fd()), "IN|OUT|RDHUP");
  EXPECT_EQ(ustack::recv(c.client.fd(), &ch, 1, 0), 0);
}

TEST(ShutdownApi, ShutWriteOnAListenerChangesNothing) {
  Tcp listener;
  uint16_t port = listen_loopback(listener);
  EXPECT_EQ(ustack::shutdown(listener.fd(), SHUT_WR), 0);
  EXPECT_EQ(poll_one(listener.fd()), "none");
  Tcp client = connect_loopback(port);
  Tcp server = accept_one(listener);
  ASSERT_TRUE(server.valid());
  ASSERT_EQ(send_str(client.fd(), "hi"), 2);
  EXPECT_EQ(recv_exactly(server.fd(), 2), "hi");
}

// Linux's inet_shutdown() disconnects a listener shut for reading: it stops listening (the way a
// server wakes a thread blocked in accept), resets the connections it had not handed out, and is
// a closed socket again: writable and hung up, like a fresh one.
TEST(ShutdownApi, ShutReadOnAListenerStopsIt) {
  Tcp listener;
  uint16_t port = listen_loopback(listener);
  Tcp queued = connect_loopback(port);
  ASSERT_TRUE(poll_until(listener.fd(), POLLIN));
  EXPECT_EQ(ustack::shutdown(listener.fd(), SHUT_RD), 0);
  EXPECT_EQ(poll_one(listener.fd()), "OUT|HUP");
  EXPECT_EQ(get_int_opt(listener.fd(), SOL_SOCKET, SO_ACCEPTCONN), 0);
  EXPECT_ERRNO(ustack::accept(listener.fd(), nullptr, nullptr), EINVAL);
  ASSERT_TRUE(poll_until(queued.fd(), POLLIN));
  EXPECT_EQ(poll_one(queued.fd()), "IN|OUT|RDHUP|HUP|ERR");
  char ch;
  EXPECT_ERRNO(ustack::recv(queued.fd(), &ch, 1, 0), ECONNRESET);
  Tcp late;
  bound_blocking_calls(late.fd());
  sockaddr_in dst = loopback(port);
  EXPECT_ERRNO(ustack::connect(late.fd(), sa(dst), sizeof dst), ECONNREFUSED);
}

TEST(ShutdownApi, UnconnectedSocketsAreEnotconn) {
  Tcp fresh, bound;
  bind_loopback(bound);
  EXPECT_ERRNO(ustack::shutdown(fresh.fd(), SHUT_WR), ENOTCONN);
  EXPECT_ERRNO(ustack::shutdown(bound.fd(), SHUT_RDWR), ENOTCONN);
  Connection c = connected_pair();
  reset_client(c);  // a reset connection is closed: nothing left to shut
  EXPECT_ERRNO(ustack::shutdown(c.server.fd(), SHUT_RDWR), ENOTCONN);
}

// Linux fails shutdown() of an unconnected UDP socket with ENOTCONN, yet shuts it all the same
// ("to wake up other listeners", inet_shutdown): the way programs end a thread blocked in
// recvfrom(). A blocking receive then returns 0 without waiting.
TEST(ShutdownApi, UnconnectedUdpSocketIsShutDespiteEnotconn) {
  Udp s;
  s.bind_loopback();
  bound_blocking_calls(s.fd());
  EXPECT_ERRNO(ustack::shutdown(s.fd(), SHUT_RDWR), ENOTCONN);
  EXPECT_EQ(poll_one(s.fd()), "IN|OUT|RDHUP|HUP");
  char buf[8];
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ustack::recvfrom(s.fd(), buf, sizeof buf, 0, nullptr, nullptr), 0);
  EXPECT_LT(ms_since(start), 1000);
}

// ---------------------------------------------------------------------------------------------
// SO_REUSEPORT

/// A TCP socket with SO_REUSEPORT (if `reuse`), bound to 127.0.0.1:port; the bind's result in *r.
Tcp reuseport_socket(bool reuse, uint16_t port, int* bind_result) {
  Tcp s;
  if (reuse) {
    EXPECT_EQ(set_int_opt(s.fd(), SOL_SOCKET, SO_REUSEPORT, 1), 0);
  }
  sockaddr_in a = loopback(port);
  errno = 0;
  *bind_result = ustack::bind(s.fd(), sa(a), sizeof a);
  return s;
}

TEST(ReusePortApi, TwoListenersShareAPortWhenBothSetIt) {
  int r = -1;
  Tcp a = reuseport_socket(true, 0, &r);
  ASSERT_EQ(r, 0) << std::strerror(errno);
  const uint16_t port = local_port(a.fd());
  ASSERT_EQ(ustack::listen(a.fd(), 16), 0);
  Tcp b = reuseport_socket(true, port, &r);
  ASSERT_EQ(r, 0) << std::strerror(errno);
  EXPECT_EQ(ustack::listen(b.fd(), 16), 0) << std::strerror(errno);
  EXPECT_EQ(local_port(b.fd()), port);
  EXPECT_EQ(get_int_opt(b.fd(), SOL_SOCKET, SO_REUSEPORT), 1);
  EXPECT_EQ(get_int_opt(b.fd(), SOL_SOCKET, SO_ACCEPTCONN), 1);
}

TEST(ReusePortApi, WithoutItOnBothSidesTheSecondBindIsEaddrinuse) {
  int r = -1;
  Tcp with = reuseport_socket(true, 0, &r);
  ASSERT_EQ(r, 0);
  const uint16_t port = local_port(with.fd());
  ASSERT_EQ(ustack::listen(with.fd(), 16), 0);
  Tcp without = reuseport_socket(false, port, &r);
  EXPECT_EQ(r, -1);
  EXPECT_EQ(errno, EADDRINUSE) << std::strerror(errno);

  Tcp plain = reuseport_socket(false, 0, &r);
  ASSERT_EQ(r, 0);
  const uint16_t plain_port = local_port(plain.fd());
  ASSERT_EQ(ustack::listen(plain.fd(), 16), 0);
  Tcp late = reuseport_socket(true, plain_port, &r);  // the first one did not set it
  EXPECT_EQ(r, -1);
  EXPECT_EQ(errno, EADDRINUSE) << std::strerror(errno);
}

// Linux hashes each new connection's 4-tuple onto one of the group's listeners: 64 connections
// from 64 source ports reach both (the chance that all land on one is 2^-63).
TEST(ReusePortApi, ConnectionsAreSpreadAcrossTheListeners) {
  constexpr int kConnections = 64;
  int r = -1;
  Tcp a = reuseport_socket(true, 0, &r);
  ASSERT_EQ(r, 0);
  const uint16_t port = local_port(a.fd());
  Tcp b = reuseport_socket(true, port, &r);
  ASSERT_EQ(r, 0);
  for (const Tcp* l : {&a, &b}) {
    ASSERT_EQ(ustack::listen(l->fd(), kConnections), 0);
    set_nonblocking(l->fd());
  }
  std::vector<Tcp> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(connect_loopback(port));
    ASSERT_TRUE(clients.back().valid());
    const char id = static_cast<char>(i);
    ASSERT_EQ(ustack::send(clients.back().fd(), &id, 1, MSG_NOSIGNAL), 1);
  }
  // Accept them all from whichever listener has them; each says which client it is.
  std::vector<Tcp> accepted[2];
  std::set<int> ids;
  while (accepted[0].size() + accepted[1].size() < kConnections) {
    pollfd p[2] = {{a.fd(), POLLIN, 0}, {b.fd(), POLLIN, 0}};
    if (ustack::poll(p, 2, kWaitMs) <= 0) {
      ADD_FAILURE() << "accepted only " << accepted[0].size() + accepted[1].size();
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if ((p[i].revents & POLLIN) == 0) continue;
      Tcp s = Tcp::adopt(ustack::accept(p[i].fd, nullptr, nullptr));
      ASSERT_TRUE(s.valid()) << std::strerror(errno);
      std::string id = recv_exactly(s.fd(), 1);
      ASSERT_EQ(id.size(), 1u);
      ids.insert(static_cast<unsigned char>(id[0]));
      accepted[i].push_back(std::move(s));
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kConnections));
  EXPECT_GE(accepted[0].size(), 1u);
  EXPECT_GE(accepted[1].size(), 1u);
  EXPECT_ERRNO(ustack::accept(a.fd(), nullptr, nullptr), EAGAIN);  // nothing left over
  EXPECT_ERRNO(ustack::accept(b.fd(), nullptr, nullptr), EAGAIN);
}

// ---------------------------------------------------------------------------------------------
// sendfile

/// A temporary file holding pattern(0, size), already unlinked; its position is 0.
class TempFile {
 public:
  explicit TempFile(size_t size, int reopen_flags = -1) {
    const char* dir = std::getenv("TMPDIR");
    std::string path = std::string(dir && *dir ? dir : "/tmp") + "/ustack-sendfile-XXXXXX";
    fd_ = ::mkstemp(path.data());
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    const std::string data = pattern(0, size);
    EXPECT_EQ(::write(fd_, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    EXPECT_EQ(::lseek(fd_, 0, SEEK_SET), 0);
    if (reopen_flags >= 0) other_ = ::open(path.c_str(), reopen_flags);
    ::unlink(path.c_str());
  }
  ~TempFile() {
    ::close(fd_);
    if (other_ >= 0) ::close(other_);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  int fd() const { return fd_; }
  /// The same file opened again with the constructor's `reopen_flags`.
  int other() const { return other_; }
  off_t position() const { return ::lseek(fd_, 0, SEEK_CUR); }

 private:
  int fd_ = -1;
  int other_ = -1;
};

constexpr size_t kFileSize = 100000;

TEST(SendfileApi, WithAnOffsetItAdvancesTheOffsetNotTheFilePosition) {
  TempFile file(kFileSize);
  Connection c = connected_pair();
  off_t off = 1000;
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), &off, 5000), 5000) << std::strerror(errno);
  EXPECT_EQ(off, 6000);
  EXPECT_EQ(file.position(), 0);
  EXPECT_TRUE(recv_exactly(c.server.fd(), 5000) == pattern(1000, 5000));
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), &off, 70000), 70000) << std::strerror(errno);
  EXPECT_EQ(off, 76000);
  EXPECT_EQ(file.position(), 0);
  EXPECT_TRUE(recv_exactly(c.server.fd(), 70000) == pattern(6000, 70000));
  char ch;
  EXPECT_ERRNO(ustack::recv(c.server.fd(), &ch, 1, MSG_DONTWAIT), EAGAIN);  // nothing more
}

TEST(SendfileApi, WithoutAnOffsetItAdvancesTheFilePosition) {
  TempFile file(kFileSize);
  Connection c = connected_pair();
  ASSERT_EQ(::lseek(file.fd(), 200, SEEK_SET), 200);
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), nullptr, 300), 300) << std::strerror(errno);
  EXPECT_EQ(file.position(), 500);
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), nullptr, 100), 100) << std::strerror(errno);
  EXPECT_EQ(file.position(), 600);
  EXPECT_TRUE(recv_exactly(c.server.fd(), 400) == pattern(200, 400));
  char ch;
  EXPECT_ERRNO(ustack::recv(c.server.fd(), &ch, 1, MSG_DONTWAIT), EAGAIN);
}

TEST(SendfileApi, ACountBeyondTheEndSendsWhatIsLeftThenZero) {
  TempFile file(kFileSize);
  Connection c = connected_pair();
  off_t off = kFileSize - 100;
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), &off, 1000), 100) << std::strerror(errno);
  EXPECT_EQ(off, static_cast<off_t>(kFileSize));
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), &off, 1000), 0);  // at the end
  EXPECT_EQ(off, static_cast<off_t>(kFileSize));
  off = 2 * kFileSize;
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), &off, 1000), 0);  // past the end
  EXPECT_EQ(off, static_cast<off_t>(2 * kFileSize));
  off = 10;
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), &off, 0), 0);  // nothing asked
  EXPECT_EQ(off, 10);
  ASSERT_EQ(::lseek(file.fd(), -50, SEEK_END), static_cast<off_t>(kFileSize - 50));
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), nullptr, 1000), 50);
  EXPECT_EQ(file.position(), static_cast<off_t>(kFileSize));
  EXPECT_EQ(ustack::sendfile(c.client.fd(), file.fd(), nullptr, 1000), 0);
  EXPECT_TRUE(recv_exactly(c.server.fd(), 150) == pattern(kFileSize - 100, 100) + pattern(kFileSize - 50, 50));
  char ch;
  EXPECT_ERRNO(ustack::recv(c.server.fd(), &ch, 1, MSG_DONTWAIT), EAGAIN);
}

TEST(SendfileApi, NonBlockingSocketTakesWhatFitsThenEagain) {
  constexpr size_t kBig = 1u << 20;  // far more than the buffers below hold
  TempFile file(kBig);
  Connection c = connected_pair();
  ASSERT_EQ(set_int_opt(c.client.fd(), SOL_SOCKET, SO_SNDBUF, 65536), 0);
  set_nonblocking(c.client.fd());
  // The peer does not read: the first call queues part, later ones what room is left, then EAGAIN.
  off_t off = 0;
  ssize_t first = ustack::sendfile(c.client.fd(), file.fd(), &off, kBig);
  ASSERT_GT(first, 0) << std::strerror(errno);
  EXPECT_LT(static_cast<size_t>(first), kBig);
  EXPECT_EQ(off, first);
  int calls = 0;
  for (;;) {
    ASSERT_LT(++calls, 1000) << "sendfile never said EAGAIN";
    const off_t before = off;
    errno = 0;
    ssize_t n = ustack::sendfile(c.client.fd(), file.fd(), &off, kBig - static_cast<size_t>(off));
    if (n < 0) {
      EXPECT_EQ(errno, EAGAIN) << std::strerror(errno);
      EXPECT_EQ(off, before);  // nothing sent, offset unchanged
      break;
    }
    ASSERT_GT(n, 0);
    EXPECT_EQ(off, before + n);
  }
  ASSERT_LT(static_cast<size_t>(off), kBig);
  // Now the peer reads, and the rest goes out as room opens; every byte arrives, in order.
  std::string got;
  std::string buf(65536, '\0');
  while (got.size() < kBig) {
    bool progress = false;
    if (static_cast<size_t>(off) < kBig) {
      ssize_t n = ustack::sendfile(c.client.fd(), file.fd(), &off, kBig - static_cast<size_t>(off));
      if (n > 0) {
        progress = true;
      } else {
        ASSERT_EQ(n, -1);
        ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
      }
    }
    ssize_t n = ustack::recv(c.server.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      got.append(buf.data(), static_cast<size_t>(n));
      progress = true;
    } else {
      ASSERT_EQ(n, -1) << "EOF after " << got.size();
      ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
    }
    if (!progress) {
      ASSERT_NE(wait_for(c.server.fd(), EPOLLIN, kWaitMs), 0u) << "stalled at " << got.size();
    }
  }
  EXPECT_EQ(off, static_cast<off_t>(kBig));
  EXPECT_EQ(file.position(), 0);
  ASSERT_EQ(got.size(), kBig);
  EXPECT_TRUE(got == pattern(0, kBig)) << "the received stream differs from the file";
}

TEST(SendfileApi, BadDescriptorsAreEbadf) {
  TempFile file(kFileSize, O_WRONLY);
  Connection c = connected_pair();
  const int closed = closed_socket_fd();
  off_t off = 0;
  EXPECT_ERRNO(ustack::sendfile(c.client.fd(), -1, &off, 10), EBADF);
  EXPECT_ERRNO(ustack::sendfile(c.client.fd(), -1, nullptr, 10), EBADF);
  EXPECT_ERRNO(ustack::sendfile(-1, file.fd(), &off, 10), EBADF);
  EXPECT_ERRNO(ustack::sendfile(closed, file.fd(), &off, 10), EBADF);
  ASSERT_GE(file.other(), 0) << std::strerror(errno);
  EXPECT_ERRNO(ustack::sendfile(c.client.fd(), file.other(), &off, 10), EBADF);  // in_fd write-only
  TempFile read_only(10, O_RDONLY);
  ASSERT_GE(read_only.other(), 0) << std::strerror(errno);
  EXPECT_ERRNO(ustack::sendfile(read_only.other(), file.fd(), &off, 10), EBADF);  // out_fd read-only
  EXPECT_EQ(off, 0);
  char ch;
  EXPECT_ERRNO(ustack::recv(c.server.fd(), &ch, 1, MSG_DONTWAIT), EAGAIN);  // nothing was sent
}

TEST(SendfileApi, NegativeOffsetIsEinval) {
  TempFile file(kFileSize);
  Connection c = connected_pair();
  off_t off = -1;
  EXPECT_ERRNO(ustack::sendfile(c.client.fd(), file.fd(), &off, 10), EINVAL);
  EXPECT_EQ(off, -1);
  char ch;
  EXPECT_ERRNO(ustack::recv(c.server.fd(), &ch, 1, MSG_DONTWAIT), EAGAIN);
}

// Linux's sendfile reads through the page cache: a socket is no source (splice_direct_to_actor
// takes regular files and block devices only).
TEST(SendfileApi, ASocketAsTheSourceIsEinval) {
  Connection c = connected_pair();
  ASSERT_EQ(send_str(c.client.fd(), "data"), 4);
  ASSERT_NE(wait_for(c.server.fd(), EPOLLIN, kWaitMs), 0u);
  EXPECT_ERRNO(ustack::sendfile(c.client.fd(), c.server.fd(), nullptr, 4), EINVAL);
  EXPECT_EQ(recv_exactly(c.server.fd(), 4), "data");  // still there
}

// sendfile has no MSG_NOSIGNAL: into a socket that cannot send it fails with EPIPE and raises
// SIGPIPE (blocked here, so it stays pending where the case can take it).
TEST(SendfileApi, IntoASocketThatCannotSendIsEpipeWithSigpipe) {
  TempFile file(kFileSize);
  Connection c = connected_pair();
  ASSERT_EQ(ustack::shutdown(c.client.fd(), SHUT_WR), 0);
  Tcp fresh;
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ASSERT_EQ(::sigprocmask(SIG_BLOCK, &pipe_only, &old), 0);
  const timespec no_wait{0, 0};
  while (::sigtimedwait(&pipe_only, nullptr, &no_wait) == SIGPIPE) {
  }
  for (int fd : {c.client.fd(), fresh.fd()}) {
    off_t off = 0;
    EXPECT_ERRNO(ustack::sendfile(fd, file.fd(), &off, 10), EPIPE);
    EXPECT_EQ(off, 0);
    EXPECT_EQ(::sigtimedwait(&pipe_only, nullptr, &no_wait), SIGPIPE);
  }
  ASSERT_EQ(::sigprocmask(SIG_SETMASK, &old, nullptr), 0);
}

}  // namespace
}  // namespace ustack::apitest
