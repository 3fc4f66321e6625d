// iterative-server: a TCP echo server that serves one client at a time; the same source on the
// kernel stack and on ustack (--stack).
//
// The design: one loop, blocking calls. accept() waits for a connection; the server then
// receives and sends back until that client closes it, and only then accepts the next. While
// one client is served, the others wait in the listen queue (up to --backlog of them, then
// their SYNs go unanswered): simple, and the slowest client holds up everyone.
//
// A blocked accept() or recv() looks at no flag, so SIGINT/SIGTERM are taken by the Stopper
// (server_common.h), a second thread that shuts the sockets down to wake the call.

#include "server_common.h"

namespace {
constexpr const char* kProgram = "iterative-server";
}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. Iterative: blocking sockets, one client at "
      "a time (the next is accepted when the current one closes; the others wait in the listen "
      "queue). Prints a summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  app::Stopper stopper;
  int listen_fd = -1;
  if (int status = app::start_blocking_server(cli, argc, argv, kProgram, opt, stopper, &listen_fd); status >= 0) {
    return status;
  }
  app::print_serving(kProgram, opt, listen_fd);

  app::ServerStats stats;
  for (;;) {
    sockaddr_in peer{};
    int fd = app::accept_blocking(kProgram, listen_fd, stopper, stats, &peer);
    if (fd < 0) break;  // stopping
    app::echo_and_close(kProgram, fd, peer, stopper, stats);
  }
  stopper.join();
  ustack::close(listen_fd);
  app::print_summary(kProgram, stats);
  ustack::shutdown();
  return 0;
}
