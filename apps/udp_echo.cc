// udp-echo: sends every datagram back to where it came from. One thread, one epoll loop, the same
// source on the kernel stack and on ustack (--stack).

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "app_common.h"
#include "ustack/epoll.h"
#include "ustack/socket.h"

int main(int argc, char** argv) {
  CLI::App cli{"UDP echo server: every datagram received is sent back to its sender."};
  app::CommonOptions common;
  uint16_t port = 7777;
  std::string bind_addr = "0.0.0.0";
  uint64_t max_datagrams = 0;
  int rcvbuf = 4 << 20;
  app::add_common_options(cli, common);
  cli.add_option("--port", port, "UDP port to serve")->capture_default_str();
  cli.add_option("--bind", bind_addr, "local address to bind")->capture_default_str();
  cli.add_option("--count", max_datagrams, "exit after echoing this many datagrams (0: run until SIGINT/SIGTERM)")
      ->check(app::kNotNegative);
  // The default buffer (208 KiB on Linux) holds three 64 KiB datagrams: a burst from many clients
  // would overflow it and wait for their retransmissions.
  cli.add_option("--rcvbuf", rcvbuf, "SO_RCVBUF to ask for, bytes (the system caps it: Linux at net.core.rmem_max); 0: "
                                     "the system's default")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, bind_addr.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "udp-echo: --bind %s is not an IPv4 address\n", bind_addr.c_str());
    return 2;
  }
  if (!app::start_backend(common, "udp-echo")) return 1;
  int fd = ustack::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0 || ustack::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "udp-echo: cannot bind %s:%u: %s\n", bind_addr.c_str(), port, std::strerror(errno));
    return 1;
  }
  if (rcvbuf > 0 && ustack::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0) {
    std::fprintf(stderr, "udp-echo: warning: SO_RCVBUF %d: %s\n", rcvbuf, std::strerror(errno));
  }
  int ep = ustack::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (ep < 0 || ustack::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    std::fprintf(stderr, "udp-echo: epoll: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("udp-echo: serving %s:%u on the %s stack\n", bind_addr.c_str(), port, common.stack.c_str());
  std::fflush(stdout);

  std::vector<char> buf(65536);
  uint64_t echoed = 0;
  while (!app::g_stop && (max_datagrams == 0 || echoed < max_datagrams)) {
    epoll_event events[8];
    int n = ustack::epoll_wait(ep, events, 8, 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "udp-echo: epoll_wait: %s\n", std::strerror(errno));
      break;
    }
    if (n == 0) continue;
    // Level-triggered: read what is there now; epoll reports the rest next turn.
    for (int i = 0; i < 64; ++i) {
      sockaddr_in peer{};
      socklen_t peer_len = sizeof peer;
      ssize_t got = ustack::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&peer), &peer_len);
      if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          std::fprintf(stderr, "udp-echo: recvfrom: %s\n", std::strerror(errno));
        }
        break;
      }
      if (ustack::sendto(fd, buf.data(), static_cast<size_t>(got), 0, reinterpret_cast<sockaddr*>(&peer), peer_len) < 0) {
        std::fprintf(stderr, "udp-echo: sendto: %s\n", std::strerror(errno));
      }
      ++echoed;
    }
  }
  std::printf("udp-echo: echoed %llu datagrams\n", static_cast<unsigned long long>(echoed));
  ustack::close(ep);
  ustack::close(fd);
  ustack::shutdown();
  return 0;
}
