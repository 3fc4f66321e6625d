// epoll-et-server: a TCP echo server. One thread, one edge-triggered epoll loop (EPOLLET),
// non-blocking sockets; the same source on the kernel stack and on ustack (--stack).
//
// The design: every socket is registered once, for everything it may ever want (the listener for
// EPOLLIN, a connection for EPOLLIN, EPOLLOUT and EPOLLRDHUP), with EPOLLET, and never changed.
// Edge-triggered, epoll_wait reports a socket when its readiness changes, not while it lasts; so
// on each report the listener accepts until accept() gives EAGAIN, and a connection reads until
// recv() gives EAGAIN and sends until send() does, or the next change would never be reported.
// The sockets must be non-blocking: the call that meets EAGAIN would otherwise block. The echo
// itself is app::EchoConn (echo_loop.h), shared with epoll-server and reuseport-server.

#include "echo_loop.h"

namespace {
constexpr const char* kProgram = "epoll-et-server";
}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. One thread, one edge-triggered epoll loop "
      "(EPOLLET): accepts until EAGAIN, reads and sends until EAGAIN; non-blocking sockets; at most 1 MiB "
      "waits per connection (beyond it the connection is not read until its peer reads). Prints a "
      "summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  if (int status = app::parse_server_command_line(cli, argc, argv, kProgram, opt); status >= 0) return status;

  if (!app::start_backend(opt.common, kProgram)) return 1;
  int listen_fd = app::listen_tcp(kProgram, opt.addr, opt.backlog, SOCK_NONBLOCK);
  if (listen_fd < 0) return 1;
  app::ServerStats stats;
  app::EpollEchoLoop loop(kProgram, app::EpollEchoLoop::Trigger::kEdge, stats);
  bool serving = loop.open(listen_fd);
  bool ok = false;
  if (serving) {
    app::print_serving(kProgram, opt, listen_fd);
    ok = loop.run();
  }
  loop.close();
  ustack::close(listen_fd);
  if (serving) app::print_summary(kProgram, stats);
  ustack::shutdown();
  return ok ? 0 : 1;
}
