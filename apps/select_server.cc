// select-server: a TCP echo server. One thread, one select() loop, non-blocking sockets; the
// same source on the kernel stack and on ustack (--stack).
//
// The design: each turn of the loop fills two descriptor sets, the descriptors to watch for
// reading (the listener, and each connection with room to read) and for writing (each connection
// with bytes waiting to go back), and calls select() with nfds = the highest descriptor + 1;
// select() sleeps until one is ready and leaves in the sets only the ready ones. The loop accepts
// if the listener is ready and serves the ready connections. A set is a bitmap of FD_SETSIZE
// (1024) descriptors, so a connection whose descriptor does not fit is refused (closed at once).
// ustack's descriptors start at 2^30, beyond any fd_set, hence ustack::FdSet: FD_SETSIZE kernel
// descriptors and FD_SETSIZE ustack ones; with ustack descriptors nfds is above 2^30. The echo
// itself is app::EchoConn (echo_loop.h).

#include <algorithm>
#include <vector>

#include "echo_loop.h"
#include "ustack/poll.h"

namespace {
constexpr const char* kProgram = "select-server";
}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. One thread, one select() loop over the "
      "listener and every connection, non-blocking sockets; a connection whose descriptor does not fit "
      "a descriptor set (FD_SETSIZE) is refused. At most 1 MiB waits per connection (beyond it the "
      "connection is not read until its peer reads). Prints a summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  int listen_fd = -1;
  if (int status = app::start_server(cli, argc, argv, kProgram, opt, &listen_fd); status >= 0) return status;
  if (ustack::FdSet probe; !probe.set(listen_fd)) {
    std::fprintf(stderr, "%s: the listener's descriptor %d does not fit a descriptor set\n", kProgram, listen_fd);
    return 1;
  }
  app::print_serving(kProgram, opt, listen_fd);

  app::ServerStats stats;
  app::EchoContext ctx(kProgram, stats);
  std::vector<app::EchoConn> conns;
  uint64_t refused = 0;
  app::Clock::time_point accept_again{};  // after a failed accept, the listener rests until then
  bool ok = true;
  while (!app::g_stop) {
    ustack::FdSet readable, writable;
    int max_fd = -1;
    if (app::Clock::now() >= accept_again) {
      readable.set(listen_fd);
      max_fd = listen_fd;
    }
    for (const auto& c : conns) {
      if (c.wants_read()) readable.set(c.fd());
      if (c.wants_write()) writable.set(c.fd());
      max_fd = std::max(max_fd, c.fd());
    }
    timeval timeout{0, 100 * 1000};  // wakes every 100 ms to look at g_stop
    int n = ustack::select(max_fd + 1, &readable, &writable, nullptr, &timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "%s: select: %s\n", kProgram, std::strerror(errno));
      ok = false;
      break;
    }
    // Backwards, so that moving the last connection into a closed one's place skips none.
    for (size_t i = conns.size(); i-- > 0;) {
      bool can_read = readable.is_set(conns[i].fd());
      if (!can_read && !writable.is_set(conns[i].fd())) continue;
      if (!conns[i].serve(ctx, can_read)) {  // an error shows as readable: recv() reports it
        conns[i].close();
        conns[i] = std::move(conns.back());
        conns.pop_back();
      }
    }
    if (readable.is_set(listen_fd)) {
      bool drained = app::accept_all(ctx, listen_fd, [&](int fd, const sockaddr_in& peer) {
        if (ustack::FdSet probe; probe.set(fd)) {
          conns.emplace_back(fd, peer);
          return;
        }
        if (++refused <= app::ServerStats::kMaxErrorsShown) {
          std::fprintf(stderr, "%s: %s: refused: descriptor %d does not fit a descriptor set (FD_SETSIZE %d)%s\n",
                       kProgram, app::format_addr(peer).c_str(), fd, FD_SETSIZE,
                       refused == app::ServerStats::kMaxErrorsShown ? " (further refusals only counted)" : "");
        }
        ustack::close(fd);
      });
      if (!drained) accept_again = app::Clock::now() + app::kAcceptPause;
    }
  }
  for (auto& c : conns) c.close();
  ustack::close(listen_fd);
  app::print_summary(kProgram, stats, ", " + std::to_string(refused) + " refused (beyond FD_SETSIZE)");
  ustack::shutdown();
  return ok ? 0 : 1;
}
