// poll-server: a TCP echo server. One thread, one poll() loop, non-blocking sockets; the same
// source on the kernel stack and on ustack (--stack).
//
// The design: each turn of the loop builds an array of pollfd, one for the listener and one per
// connection, each asking for what that socket needs now (POLLIN while there is room to read,
// POLLOUT while bytes wait to go back); poll() sleeps until one of them is ready and marks the
// ready ones in revents. The loop accepts if the listener is ready and serves the ready
// connections. Unlike select() there is no bound on the descriptors, but every call hands the
// whole array to the stack and back: each turn costs time in proportion to the connections,
// ready or not, which is what epoll avoids. The echo itself is app::EchoConn (echo_loop.h).

#include <poll.h>

#include <vector>

#include "echo_loop.h"
#include "ustack/poll.h"

namespace {
constexpr const char* kProgram = "poll-server";
}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. One thread, one poll() loop over the listener "
      "and every connection, non-blocking sockets; at most 1 MiB waits per connection (beyond it the "
      "connection is not read until its peer reads). Prints a summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  int listen_fd = -1;
  if (int status = app::start_server(cli, argc, argv, kProgram, opt, &listen_fd); status >= 0) return status;
  app::print_serving(kProgram, opt, listen_fd);

  app::ServerStats stats;
  app::EchoContext ctx(kProgram, stats);
  std::vector<app::EchoConn> conns;  // conns[i] is fds[i + 1]
  std::vector<pollfd> fds;
  app::Clock::time_point accept_again{};  // after a failed accept, the listener rests until then
  bool ok = true;
  while (!app::g_stop) {
    fds.clear();
    // A negative descriptor is skipped by poll(): how the listener rests.
    fds.push_back({app::Clock::now() >= accept_again ? listen_fd : -1, POLLIN, 0});
    for (const auto& c : conns) {
      short events = (c.wants_read() ? POLLIN : 0) | (c.wants_write() ? POLLOUT : 0);
      fds.push_back({c.fd(), events, 0});
    }
    int n = ustack::poll(fds.data(), fds.size(), 100);  // wakes every 100 ms to look at g_stop
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "%s: poll: %s\n", kProgram, std::strerror(errno));
      ok = false;
      break;
    }
    // Backwards, so that moving the last connection into a closed one's place skips none.
    for (size_t i = conns.size(); i-- > 0;) {
      short revents = fds[i + 1].revents;
      if (revents == 0) continue;
      bool open = (revents & (POLLERR | POLLNVAL)) ? conns[i].fail_with_socket_error(ctx)
                                                   : conns[i].serve(ctx, revents & (POLLIN | POLLHUP));
      if (!open) {
        conns[i].close();
        conns[i] = std::move(conns.back());
        conns.pop_back();
      }
    }
    if (fds[0].revents & POLLIN) {
      bool drained =
          app::accept_all(ctx, listen_fd, [&](int fd, const sockaddr_in& peer) { conns.emplace_back(fd, peer); });
      if (!drained) accept_again = app::Clock::now() + app::kAcceptPause;
    }
  }
  for (auto& c : conns) c.close();
  ustack::close(listen_fd);
  app::print_summary(kProgram, stats);
  ustack::shutdown();
  return ok ? 0 : 1;
}
