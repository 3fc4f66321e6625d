// epoll-et-server: a TCP echo server. One thread, one edge-triggered epoll loop (EPOLLET),
// non-blocking sockets; the same source on the kernel stack and on ustack (--stack).
//
// The design: every socket is registered once, for everything it may ever want (the listener for
// EPOLLIN, a connection for EPOLLIN, EPOLLOUT and EPOLLRDHUP), with EPOLLET, and never changed.
// Edge-triggered, epoll_wait reports a socket when its readiness changes, not while it lasts; so
// on each report the listener accepts until accept() gives EAGAIN, and a connection reads until
// recv() gives EAGAIN and sends until send() does, or the next change would never be reported.
// The sockets must be non-blocking: the call that meets EAGAIN would otherwise block. The loop is
// app::EpollEchoLoop with Trigger::kEdge and the echo itself app::EchoConn (echo_loop.h), shared
// with epoll-server (also main()) and reuseport-server.

#include "echo_loop.h"

namespace {
constexpr const char* kProgram = "epoll-et-server";
constexpr const char* kDescription =
    "TCP echo server: every byte received is sent back. One thread, one edge-triggered epoll loop "
    "(EPOLLET): accepts until EAGAIN, reads and sends until EAGAIN; non-blocking sockets; at most 1 MiB "
    "waits per connection (beyond it the connection is not read until its peer reads). Prints a "
    "summary on SIGINT/SIGTERM.";
}  // namespace

int main(int argc, char** argv) {
  return app::run_epoll_echo_server(argc, argv, kProgram, app::EpollEchoLoop::Trigger::kEdge, kDescription);
}
