// UDP through the socket API: every case holds on Linux and must hold on ustack.

#include <fcntl.h>

#include <chrono>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "api_test.h"

namespace ustack::apitest {
namespace {

std::string recv_string(int fd, size_t cap = 65536, int flags = 0, sockaddr_in* from = nullptr) {
  std::string buf(cap, '\0');
  sockaddr_in src{};
  socklen_t len = sizeof src;
  ssize_t n = ustack::recvfrom(fd, buf.data(), buf.size(), flags, reinterpret_cast<sockaddr*>(&src), &len);
  if (from) *from = src;
  if (n < 0) return "<error " + std::string(std::strerror(errno)) + ">";
  buf.resize(static_cast<size_t>(std::min<ssize_t>(n, static_cast<ssize_t>(cap))));
  return buf;
}

TEST(UdpApi, DescriptorsOfTheTwoBackendsCannotBeConfused) {
  Udp s;
  ASSERT_GE(s.fd(), 0);
  EXPECT_EQ(is_user_fd(s.fd()), g_backend == Backend::kUstack);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  EXPECT_FALSE(is_user_fd(pipefd[0]));
  // A kernel descriptor goes to the kernel through the same calls.
  EXPECT_EQ(ustack::write(pipefd[1], "x", 1), 1);
  char c = 0;
  EXPECT_EQ(ustack::read(pipefd[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  EXPECT_EQ(ustack::close(pipefd[0]), 0);
  EXPECT_EQ(ustack::close(pipefd[1]), 0);
  EXPECT_ERRNO(ustack::close(kUserFdBase + 100000), EBADF);
}

TEST(UdpApi, BindPicksAnEphemeralPortAndReportsIt) {
  Udp s;
  uint16_t port = s.bind_loopback(0);
  EXPECT_GE(port, 32768);
  EXPECT_LE(port, 60999);
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ASSERT_EQ(ustack::getsockname(s.fd(), sa(a), &len), 0);
  EXPECT_EQ(len, sizeof(sockaddr_in));
  EXPECT_EQ(a.sin_family, AF_INET);
  EXPECT_EQ(ntohl(a.sin_addr.s_addr), INADDR_LOOPBACK);
}

TEST(UdpApi, UnboundSocketNameIsWildcard) {
  Udp s;
  sockaddr_in a{};
  a.sin_port = 1234;
  socklen_t len = sizeof a;
  ASSERT_EQ(ustack::getsockname(s.fd(), sa(a), &len), 0);
  EXPECT_EQ(a.sin_port, 0);
  EXPECT_EQ(a.sin_addr.s_addr, 0u);
}

TEST(UdpApi, BindErrors) {
  Udp a, b, c;
  uint16_t port = a.bind_loopback(0);
  sockaddr_in same = loopback(port);
  EXPECT_ERRNO(ustack::bind(b.fd(), sa(same), sizeof same), EADDRINUSE);
  sockaddr_in other = loopback(0);
  EXPECT_ERRNO(ustack::bind(a.fd(), sa(other), sizeof other), EINVAL);  // already bound
  EXPECT_ERRNO(ustack::bind(c.fd(), sa(other), sizeof other - 1), EINVAL);  // short address
  sockaddr_in foreign = loopback(0);
  inet_pton(AF_INET, "198.51.100.7", &foreign.sin_addr);
  EXPECT_ERRNO(ustack::bind(c.fd(), sa(foreign), sizeof foreign), EADDRNOTAVAIL);
  sockaddr_in wrong_family = loopback(0);
  wrong_family.sin_family = AF_INET6;
  EXPECT_ERRNO(ustack::bind(c.fd(), sa(wrong_family), sizeof wrong_family), EAFNOSUPPORT);
}

TEST(UdpApi, BindTakesAfUnspecOnlyWithTheWildcardAddress) {
  Udp a, b;
  sockaddr_in any{};
  any.sin_family = AF_UNSPEC;
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  EXPECT_EQ(ustack::bind(a.fd(), sa(any), sizeof any), 0);
  EXPECT_NE(a.local_port(), 0);
  sockaddr_in lo = loopback(0);
  lo.sin_family = AF_UNSPEC;
  EXPECT_ERRNO(ustack::bind(b.fd(), sa(lo), sizeof lo), EAFNOSUPPORT);
}

TEST(UdpApi, ReuseAddrLetsTwoSocketsShareAPort) {
  Udp a, b;
  int one = 1;
  ASSERT_EQ(ustack::setsockopt(a.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
  ASSERT_EQ(ustack::setsockopt(b.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
  uint16_t port = a.bind_loopback(0);
  sockaddr_in same = loopback(port);
  EXPECT_EQ(ustack::bind(b.fd(), sa(same), sizeof same), 0);
  int v = 0;
  socklen_t len = sizeof v;
  ASSERT_EQ(ustack::getsockopt(b.fd(), SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
  EXPECT_EQ(v, 1);
}

TEST(UdpApi, DatagramsKeepTheirBoundariesAndSource) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  uint16_t client_port = client.bind_loopback();
  ASSERT_EQ(client.send_to(port, "one"), 3);
  ASSERT_EQ(client.send_to(port, ""), 0);
  ASSERT_EQ(client.send_to(port, std::string(1000, 'z')), 1000);
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  sockaddr_in from{};
  EXPECT_EQ(recv_string(server.fd(), 65536, 0, &from), "one");
  EXPECT_EQ(ntohs(from.sin_port), client_port);
  EXPECT_EQ(ntohl(from.sin_addr.s_addr), INADDR_LOOPBACK);
  EXPECT_EQ(recv_string(server.fd()), "");
  EXPECT_EQ(recv_string(server.fd()), std::string(1000, 'z'));
}

TEST(UdpApi, TruncationDiscardsTheRestAndMsgTruncReportsTheRealLength) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  client.send_to(port, "0123456789");
  client.send_to(port, "abcdefghij");
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  char buf[4];
  EXPECT_EQ(ustack::recv(server.fd(), buf, sizeof buf, 0), 4);
  EXPECT_EQ(std::string(buf, 4), "0123");
  EXPECT_EQ(ustack::recv(server.fd(), buf, sizeof buf, MSG_TRUNC), 10);  // real length
  EXPECT_EQ(std::string(buf, 4), "abcd");
  EXPECT_ERRNO(ustack::recv(server.fd(), buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
}

TEST(UdpApi, PeekLeavesTheDatagramQueued) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  client.send_to(port, "peek");
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  EXPECT_EQ(recv_string(server.fd(), 64, MSG_PEEK), "peek");
  EXPECT_EQ(recv_string(server.fd(), 64), "peek");
  char c;
  EXPECT_ERRNO(ustack::recv(server.fd(), &c, 1, MSG_DONTWAIT), EAGAIN);
}

TEST(UdpApi, NonBlockingReceiveOnAnEmptyQueueIsEagain) {
  Udp by_type(SOCK_NONBLOCK), by_fcntl, by_flag;
  by_type.bind_loopback();
  by_fcntl.bind_loopback();
  by_flag.bind_loopback();
  char c;
  EXPECT_ERRNO(ustack::recv(by_type.fd(), &c, 1, 0), EAGAIN);
  EXPECT_NE(ustack::fcntl(by_type.fd(), F_GETFL) & O_NONBLOCK, 0);
  int fl = ustack::fcntl(by_fcntl.fd(), F_GETFL);
  EXPECT_EQ(fl & O_NONBLOCK, 0);
  ASSERT_EQ(ustack::fcntl(by_fcntl.fd(), F_SETFL, fl | O_NONBLOCK), 0);
  EXPECT_ERRNO(ustack::recv(by_fcntl.fd(), &c, 1, 0), EAGAIN);
  EXPECT_ERRNO(ustack::recv(by_flag.fd(), &c, 1, MSG_DONTWAIT), EAGAIN);
}

TEST(UdpApi, ReceiveTimeoutExpiresWithEagain) {
  Udp s;
  s.bind_loopback();
  timeval tv{0, 100000};
  ASSERT_EQ(ustack::setsockopt(s.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  auto start = std::chrono::steady_clock::now();
  char c;
  EXPECT_ERRNO(ustack::recv(s.fd(), &c, 1, 0), EAGAIN);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(90));
  EXPECT_LT(waited, std::chrono::seconds(2));
}

timeval get_timeout(int fd, int name) {
  timeval tv{-7, -7};
  socklen_t len = sizeof tv;
  EXPECT_EQ(ustack::getsockopt(fd, SOL_SOCKET, name, &tv, &len), 0);
  EXPECT_EQ(len, sizeof(timeval));
  return tv;
}

int set_timeout(int fd, int name, time_t sec, suseconds_t usec) {
  timeval tv{sec, usec};
  return ustack::setsockopt(fd, SOL_SOCKET, name, &tv, sizeof tv);
}

// net/core/sock.c sock_set_timeout()/sock_get_timeout(). The values read back are whole multiples
// of 10 ms so that they do not depend on the kernel's HZ (Linux rounds up to whole jiffies).
TEST(UdpApi, ReceiveTimeoutValuesLikeLinux) {
  Udp s;
  s.bind_loopback();
  for (int name : {SO_RCVTIMEO, SO_SNDTIMEO}) {
    SCOPED_TRACE(name == SO_RCVTIMEO ? "SO_RCVTIMEO" : "SO_SNDTIMEO");
    ASSERT_EQ(set_timeout(s.fd(), name, 2, 500000), 0);
    timeval tv = get_timeout(s.fd(), name);
    EXPECT_EQ(tv.tv_sec, 2);
    EXPECT_EQ(tv.tv_usec, 500000);
    // tv_usec outside [0, 1 s) is EDOM, whatever tv_sec says; the old value stays.
    EXPECT_ERRNO(set_timeout(s.fd(), name, 0, 1000000), EDOM);
    EXPECT_ERRNO(set_timeout(s.fd(), name, 0, -1), EDOM);
    EXPECT_ERRNO(set_timeout(s.fd(), name, -5, -1), EDOM);
    EXPECT_EQ(get_timeout(s.fd(), name).tv_sec, 2);
    // Long but finite: read back as set.
    ASSERT_EQ(set_timeout(s.fd(), name, 1000000000000, 0), 0);
    EXPECT_EQ(get_timeout(s.fd(), name).tv_sec, 1000000000000);
    // Beyond what the kernel can count: forever, read back as {0, 0}.
    ASSERT_EQ(set_timeout(s.fd(), name, std::numeric_limits<time_t>::max(), 999999), 0);
    tv = get_timeout(s.fd(), name);
    EXPECT_EQ(tv.tv_sec, 0);
    EXPECT_EQ(tv.tv_usec, 0);
    // A negative tv_sec: timeout zero (do not wait), also read back as {0, 0}.
    ASSERT_EQ(set_timeout(s.fd(), name, -1, 500000), 0);
    tv = get_timeout(s.fd(), name);
    EXPECT_EQ(tv.tv_sec, 0);
    EXPECT_EQ(tv.tv_usec, 0);
  }
}

TEST(UdpApi, NegativeReceiveTimeoutMeansDoNotWait) {
  Udp s;
  s.bind_loopback();
  ASSERT_EQ(set_timeout(s.fd(), SO_RCVTIMEO, -1, 0), 0);
  SignalTimer guard(std::chrono::milliseconds(500));  // ends the call if it blocks after all
  const auto start = std::chrono::steady_clock::now();
  char c;
  EXPECT_ERRNO(ustack::recv(s.fd(), &c, 1, 0), EAGAIN);
  EXPECT_LT(ms_since(start), 250);
}

TEST(UdpApi, HugeAndZeroReceiveTimeoutsBlockUntilASignal) {
  Udp s;
  s.bind_loopback();
  char c;
  // Huge: must not overflow into a timeout in the past (an immediate EAGAIN).
  ASSERT_EQ(set_timeout(s.fd(), SO_RCVTIMEO, std::numeric_limits<time_t>::max(), 0), 0);
  {
    SignalTimer timer(std::chrono::milliseconds(150));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_ERRNO(ustack::recv(s.fd(), &c, 1, 0), EINTR);
    EXPECT_GE(ms_since(start), 140);
  }
  // {0, 0} after a short timeout: back to blocking for ever, not for the old 100 ms.
  ASSERT_EQ(set_timeout(s.fd(), SO_RCVTIMEO, 0, 100000), 0);
  ASSERT_EQ(set_timeout(s.fd(), SO_RCVTIMEO, 0, 0), 0);
  {
    SignalTimer timer(std::chrono::milliseconds(300));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_ERRNO(ustack::recv(s.fd(), &c, 1, 0), EINTR);
    EXPECT_GE(ms_since(start), 290);
  }
}

TEST(UdpApi, MsgOobIsIgnoredOnReceiveAndRefusedOnSend) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  ASSERT_EQ(client.send_to(port, "oob"), 3);
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  char buf[16];
  EXPECT_EQ(ustack::recv(server.fd(), buf, sizeof buf, MSG_OOB), 3);  // udp_recvmsg ignores it
  EXPECT_EQ(std::string(buf, 3), "oob");
  EXPECT_ERRNO(ustack::recv(server.fd(), buf, sizeof buf, MSG_OOB | MSG_DONTWAIT), EAGAIN);
  EXPECT_ERRNO(client.send_to(port, "x", MSG_OOB), EOPNOTSUPP);  // udp_sendmsg refuses it
}

TEST(UdpApi, SendtoTakesAfUnspecForAfInet) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  sockaddr_in dst = loopback(port);
  dst.sin_family = AF_UNSPEC;
  ASSERT_EQ(ustack::sendto(client.fd(), "unspec", 6, 0, sa(dst), sizeof dst), 6);
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  EXPECT_EQ(recv_string(server.fd()), "unspec");
  dst.sin_family = AF_UNIX;
  EXPECT_ERRNO(ustack::sendto(client.fd(), "x", 1, 0, sa(dst), sizeof dst), EAFNOSUPPORT);
  dst.sin_family = AF_UNSPEC;
  EXPECT_ERRNO(ustack::sendto(client.fd(), "x", 1, 0, sa(dst), sizeof dst - 1), EINVAL);
}

TEST(UdpApi, SocketTypeOutOfRangeIsEinval) {
  // __sys_socket_create/__sock_create: unknown flag bits or a type >= SOCK_MAX (11).
  for (int type : {11, 15, -1, SOCK_DGRAM | 0x100, 11 | SOCK_NONBLOCK}) {
    SCOPED_TRACE(type);
    EXPECT_ERRNO(ustack::socket(AF_INET, type, 0), EINVAL);
    EXPECT_ERRNO(ustack::socket(AF_INET6, type, 0), EINVAL);
  }
}

TEST(UdpApi, ConnectedSocketLearnsPortUnreachableAsEconnrefused) {
  Udp closed;
  uint16_t dead_port = closed.bind_loopback();
  ustack::close(closed.fd());
  new (&closed) Udp;  // nothing listens on dead_port now
  Udp client;
  sockaddr_in dst = loopback(dead_port);
  ASSERT_EQ(ustack::connect(client.fd(), sa(dst), sizeof dst), 0);
  ASSERT_EQ(ustack::send(client.fd(), "hello", 5, 0), 5);
  EXPECT_NE(wait_for(client.fd(), EPOLLIN) & EPOLLERR, 0u);
  char c;
  EXPECT_ERRNO(ustack::recv(client.fd(), &c, 1, MSG_DONTWAIT), ECONNREFUSED);
  int err = -1;
  socklen_t len = sizeof err;
  ASSERT_EQ(ustack::getsockopt(client.fd(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, 0);  // reported once
  // The next send raises the refusal again, on the send this time.
  ASSERT_EQ(ustack::send(client.fd(), "again", 5, 0), 5);
  ASSERT_NE(wait_for(client.fd(), EPOLLERR), 0u);
  EXPECT_ERRNO(ustack::send(client.fd(), "third", 5, 0), ECONNREFUSED);
}

TEST(UdpApi, UnconnectedSocketIsNotToldOfPortUnreachable) {
  Udp closed;
  uint16_t dead_port = closed.bind_loopback();
  ustack::close(closed.fd());
  new (&closed) Udp;
  Udp client(SOCK_NONBLOCK);
  ASSERT_EQ(client.send_to(dead_port, "x"), 1);
  EXPECT_EQ(wait_for(client.fd(), EPOLLIN, 50), 0u);
  char c;
  EXPECT_ERRNO(ustack::recv(client.fd(), &c, 1, 0), EAGAIN);
}

TEST(UdpApi, ConnectAddressesAndDisconnect) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  sockaddr_in peer{};
  socklen_t len = sizeof peer;
  EXPECT_ERRNO(ustack::getpeername(client.fd(), sa(peer), &len), ENOTCONN);
  EXPECT_ERRNO(ustack::send(client.fd(), "x", 1, 0), EDESTADDRREQ);
  sockaddr_in dst = loopback(port);
  ASSERT_EQ(ustack::connect(client.fd(), sa(dst), sizeof dst), 0);
  len = sizeof peer;
  ASSERT_EQ(ustack::getpeername(client.fd(), sa(peer), &len), 0);
  EXPECT_EQ(ntohs(peer.sin_port), port);
  sockaddr_in local{};
  len = sizeof local;
  ASSERT_EQ(ustack::getsockname(client.fd(), sa(local), &len), 0);
  EXPECT_EQ(ntohl(local.sin_addr.s_addr), INADDR_LOOPBACK);  // source chosen at connect
  EXPECT_NE(local.sin_port, 0);
  EXPECT_EQ(ustack::write(client.fd(), "via write", 9), 9);
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  char buf[32];
  EXPECT_EQ(ustack::read(server.fd(), buf, sizeof buf), 9);
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  ASSERT_EQ(ustack::connect(client.fd(), &unspec, sizeof unspec), 0);
  len = sizeof peer;
  EXPECT_ERRNO(ustack::getpeername(client.fd(), sa(peer), &len), ENOTCONN);
}

TEST(UdpApi, ConnectedSocketOnlyHearsItsPeer) {
  Udp server, peer, stranger;
  uint16_t port = server.bind_loopback();
  uint16_t peer_port = peer.bind_loopback();
  stranger.bind_loopback();
  sockaddr_in p = loopback(peer_port);
  ASSERT_EQ(ustack::connect(server.fd(), sa(p), sizeof p), 0);
  stranger.send_to(port, "stranger");
  peer.send_to(port, "peer");
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  EXPECT_EQ(recv_string(server.fd()), "peer");
  char c;
  EXPECT_ERRNO(ustack::recv(server.fd(), &c, 1, MSG_DONTWAIT), EAGAIN);
}

TEST(UdpApi, ShutdownSemantics) {
  Udp unconnected;
  unconnected.bind_loopback();
  EXPECT_ERRNO(ustack::shutdown(unconnected.fd(), SHUT_RDWR), ENOTCONN);
  EXPECT_ERRNO(ustack::shutdown(unconnected.fd(), 42), EINVAL);
  Udp server, client;
  uint16_t port = server.bind_loopback();
  sockaddr_in dst = loopback(port);
  ASSERT_EQ(ustack::connect(client.fd(), sa(dst), sizeof dst), 0);
  ASSERT_EQ(ustack::shutdown(client.fd(), SHUT_WR), 0);
  EXPECT_ERRNO(ustack::send(client.fd(), "x", 1, MSG_NOSIGNAL), EPIPE);
  ASSERT_EQ(ustack::shutdown(client.fd(), SHUT_RD), 0);
  char c;
  EXPECT_EQ(ustack::recv(client.fd(), &c, 1, 0), 0);  // shut for reading: EOF, no wait
  EXPECT_EQ(wait_for(client.fd(), EPOLLIN | EPOLLRDHUP, 0) & (EPOLLIN | EPOLLRDHUP | EPOLLHUP),
            EPOLLIN | EPOLLRDHUP | EPOLLHUP);
}

TEST(UdpApi, SocketOptionsLikeLinux) {
  Udp s;
  int v = 4096;
  ASSERT_EQ(ustack::setsockopt(s.fd(), SOL_SOCKET, SO_RCVBUF, &v, sizeof v), 0);
  socklen_t len = sizeof v;
  ASSERT_EQ(ustack::getsockopt(s.fd(), SOL_SOCKET, SO_RCVBUF, &v, &len), 0);
  EXPECT_EQ(v, 8192);  // doubled
  v = 1;
  ASSERT_EQ(ustack::setsockopt(s.fd(), SOL_SOCKET, SO_RCVBUF, &v, sizeof v), 0);
  ASSERT_EQ(ustack::getsockopt(s.fd(), SOL_SOCKET, SO_RCVBUF, &v, &len), 0);
  EXPECT_EQ(v, 2304);  // the floor
  ASSERT_EQ(ustack::getsockopt(s.fd(), SOL_SOCKET, SO_TYPE, &v, &len), 0);
  EXPECT_EQ(v, SOCK_DGRAM);
  EXPECT_EQ(len, sizeof(int));
  short tiny = 1;
  EXPECT_ERRNO(ustack::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &tiny, sizeof tiny), EINVAL);
  EXPECT_ERRNO(ustack::setsockopt(s.fd(), SOL_SOCKET, 9999, &v, sizeof v), ENOPROTOOPT);
}

TEST(UdpApi, FullReceiveQueueDropsDatagrams) {
  Udp server(SOCK_NONBLOCK), client;
  int v = 4096;  // 8 KiB after doubling: a few datagrams
  ASSERT_EQ(ustack::setsockopt(server.fd(), SOL_SOCKET, SO_RCVBUF, &v, sizeof v), 0);
  uint16_t port = server.bind_loopback();
  const std::string payload(1000, 'q');
  for (int i = 0; i < 100; ++i) ASSERT_EQ(client.send_to(port, payload), 1000);
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  int received = 0;
  char buf[2000];
  while (ustack::recv(server.fd(), buf, sizeof buf, 0) == 1000) ++received;
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_GT(received, 0);
  EXPECT_LT(received, 100);
}

TEST(UdpApi, LargestDatagramFitsAndOneMoreByteIsTooBig) {
  Udp server, client;
  uint16_t port = server.bind_loopback();
  const std::string big(65507, 'b');
  ASSERT_EQ(client.send_to(port, big), 65507);
  EXPECT_ERRNO(client.send_to(port, big + "b"), EMSGSIZE);
  ASSERT_NE(wait_for(server.fd(), EPOLLIN), 0u);
  EXPECT_EQ(recv_string(server.fd()), big);
}

TEST(UdpApi, ClosedDescriptorIsEbadfAndNumbersAreReused) {
  int fd = ustack::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ustack::close(fd), 0);
  char c;
  EXPECT_ERRNO(ustack::recv(fd, &c, 1, MSG_DONTWAIT), EBADF);
  EXPECT_ERRNO(ustack::close(fd), EBADF);
  int again = ustack::socket(AF_INET, SOCK_DGRAM, 0);
  EXPECT_EQ(again, fd);  // POSIX: the lowest free descriptor
  ustack::close(again);
}

TEST(UdpApi, UdpSocketCannotListenOrAccept) {
  Udp s;
  EXPECT_ERRNO(ustack::listen(s.fd(), 5), EOPNOTSUPP);
  EXPECT_ERRNO(ustack::accept(s.fd(), nullptr, nullptr), EOPNOTSUPP);
}

}  // namespace
}  // namespace ustack::apitest
