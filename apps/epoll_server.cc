// epoll-server: a TCP echo server. One thread, one level-triggered epoll loop, non-blocking
// sockets; the same source on the kernel stack and on ustack (--stack).
//
// The design: epoll watches the listener and every connection for what each needs now (EPOLLIN
// while there is room to read, EPOLLOUT while bytes wait to go back) and epoll_wait reports which
// are ready; level-triggered, a socket is reported for as long as it stays ready, so a connection
// may read a little at a time and leave the rest for the next report. The echo itself, its
// pending buffer and its flow control are app::EchoConn (echo_loop.h), shared with
// epoll-et-server and reuseport-server.

#include "echo_loop.h"

namespace {
constexpr const char* kProgram = "epoll-server";
}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. One thread, one level-triggered epoll loop, "
      "non-blocking sockets; at most 1 MiB waits per connection (beyond it the connection is not read "
      "until its peer reads). Prints a summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  if (int status = app::parse_server_command_line(cli, argc, argv, kProgram, opt); status >= 0) return status;

  if (!app::start_backend(opt.common, kProgram)) return 1;
  int listen_fd = app::listen_tcp(kProgram, opt.addr, opt.backlog, SOCK_NONBLOCK);
  if (listen_fd < 0) return 1;
  app::ServerStats stats;
  app::EpollEchoLoop loop(kProgram, app::EpollEchoLoop::Trigger::kLevel, stats);
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
