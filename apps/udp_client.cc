// udp-client: sends numbered datagrams to an echo server and checks every byte that comes back.
// The same source on the kernel stack and on ustack (--stack).

#include <arpa/inet.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "app_common.h"
#include "ustack/epoll.h"
#include "ustack/socket.h"

namespace {

// Datagram i carries i in its first 8 bytes, then bytes derived from i: a reply that is late,
// duplicated or corrupted cannot pass for another one.
void fill(std::vector<char>& buf, uint64_t i) {
  std::memcpy(buf.data(), &i, std::min(buf.size(), sizeof i));
  for (size_t k = sizeof i; k < buf.size(); ++k) buf[k] = static_cast<char>((i * 131 + k * 7) & 0xff);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"UDP echo client: sends datagrams, waits for each echo and verifies it byte for byte."};
  app::CommonOptions common;
  std::string host = "198.18.0.2";
  uint16_t port = 7777;
  uint64_t count = 10;
  size_t size = 64;
  int timeout_ms = 1000;
  app::add_common_options(cli, common);
  cli.add_option("--host", host, "server address")->capture_default_str();
  cli.add_option("--port", port, "server UDP port")->capture_default_str();
  cli.add_option("--count", count, "datagrams to send")->check(app::kNotNegative)->capture_default_str();
  cli.add_option("--size", size, "bytes per datagram (8 to 65507)")->check(CLI::Range(8, 65507))->capture_default_str();
  cli.add_option("--timeout-ms", timeout_ms, "wait this long for each echo")->check(CLI::Range(1, 3600000))->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "udp-client: --host %s is not an IPv4 address\n", host.c_str());
    return 2;
  }
  if (!app::start_backend(common, "udp-client")) return 2;
  int fd = ustack::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0 || ustack::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "udp-client: cannot reach %s:%u: %s\n", host.c_str(), port, std::strerror(errno));
    return 2;
  }
  int ep = ustack::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  ustack::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);

  std::vector<char> out(size), in(65536);
  uint64_t sent = 0, received = 0, mismatched = 0, lost = 0;
  double rtt_total_us = 0;
  int exit_code = 0;
  for (uint64_t i = 0; i < count && !app::g_stop; ++i) {
    fill(out, i);
    auto start = std::chrono::steady_clock::now();
    if (ustack::send(fd, out.data(), out.size(), 0) < 0) {
      std::fprintf(stderr, "udp-client: send: %s\n", std::strerror(errno));
      exit_code = 2;
      break;
    }
    ++sent;
    bool got_it = false;
    auto deadline = start + std::chrono::milliseconds(timeout_ms);
    while (!got_it) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) break;
      epoll_event events[1];
      int n = ustack::epoll_wait(ep, events, 1, static_cast<int>(left.count()));
      if (n <= 0) continue;
      ssize_t got = ustack::recv(fd, in.data(), in.size(), 0);
      if (got < 0) {
        if (errno == EAGAIN) continue;
        std::fprintf(stderr, "udp-client: recv: %s%s\n", std::strerror(errno),
                     errno == ECONNREFUSED ? " (ICMP port unreachable: nothing listens there)" : "");
        exit_code = 2;
        break;
      }
      uint64_t seq = 0;
      std::memcpy(&seq, in.data(), std::min<size_t>(static_cast<size_t>(got), sizeof seq));
      if (seq != i) continue;  // a late echo of an earlier datagram
      got_it = true;
      if (static_cast<size_t>(got) != out.size() || std::memcmp(in.data(), out.data(), out.size()) != 0) {
        ++mismatched;
      } else {
        ++received;
        rtt_total_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
      }
    }
    if (exit_code) break;
    if (!got_it) ++lost;
  }
  std::printf("udp-client: %s:%u on the %s stack: sent %llu, echoed intact %llu, mismatched %llu, lost %llu",
              host.c_str(), port, common.stack.c_str(), static_cast<unsigned long long>(sent),
              static_cast<unsigned long long>(received), static_cast<unsigned long long>(mismatched),
              static_cast<unsigned long long>(lost));
  if (received) std::printf(", mean round trip %.1f us", rtt_total_us / static_cast<double>(received));
  std::printf("\n");
  ustack::close(ep);
  ustack::close(fd);
  ustack::shutdown();
  if (exit_code) return exit_code;
  return (mismatched || lost) ? 1 : 0;
}
