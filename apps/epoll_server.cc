// epoll-server: a TCP echo server. One thread, one level-triggered epoll loop, non-blocking
// sockets; the same source on the kernel stack and on ustack (--stack).
//
// The design: epoll watches the listener and every connection for what each needs now (EPOLLIN
// while there is room to read, EPOLLOUT while bytes wait to go back) and epoll_wait reports which
// are ready; level-triggered, a socket is reported for as long as it stays ready, so a connection
// may read a little at a time and leave the rest for the next report. The loop is
// app::EpollEchoLoop and the echo itself, its pending buffer and its flow control are
// app::EchoConn (echo_loop.h), shared with epoll-et-server and reuseport-server; so is main().

#include "echo_loop.h"

namespace {
constexpr const char* kProgram = "epoll-server";
constexpr const char* kDescription =
    "TCP echo server: every byte received is sent back. One thread, one level-triggered epoll loop, "
    "non-blocking sockets; at most 1 MiB waits per connection (beyond it the connection is not read "
    "until its peer reads). Prints a summary on SIGINT/SIGTERM.";
}  // namespace

int main(int argc, char** argv) {
  return app::run_epoll_echo_server(argc, argv, kProgram, app::EpollEchoLoop::Trigger::kLevel, kDescription);
}
