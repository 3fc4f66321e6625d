// reuseport-server: a TCP echo server. N threads, each with a listener of its own on the same
// port (SO_REUSEPORT) and an epoll loop of its own; the same source on the kernel stack and on
// ustack (--stack).
//
// The design: nothing is shared between the threads. Each one opens its own listening socket
// with SO_REUSEPORT set before bind(), so that all N can bind the same address and port, and the
// stack spreads the incoming connections across them (Linux hashes each connection's addresses
// and ports to pick a listener). Each thread then runs the level-triggered loop of epoll-server
// (echo_loop.h) over its listener and the connections it accepted, with no lock anywhere.

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "echo_loop.h"

namespace {
constexpr const char* kProgram = "reuseport-server";
}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. --threads threads, each with its own "
      "SO_REUSEPORT listener on the same port and its own level-triggered epoll loop over the "
      "connections it accepts; non-blocking sockets. Prints a summary, with the connections each "
      "thread accepted, on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  unsigned threads = 2;
  cli.add_option("--threads", threads, "threads, each with its own listener and epoll loop")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  if (int status = app::parse_server_command_line(cli, argc, argv, kProgram, opt); status >= 0) return status;

  // Run to completion: each thread drives the engine its loop is on, inside its epoll_wait.
  if (!app::start_backend(opt.common, kProgram)) return 1;
  // One listener and one epoll loop per thread. With --port 0 the first one's port is the one the
  // others share. On ustack with several engines (USTACK_CORES), thread i's listener and epoll
  // instance live on engine i mod N, so each engine accepts the connections that reach it, and
  // with as many threads as engines each engine is driven by its own thread with no lock at all.
  std::vector<int> listeners;
  std::vector<app::ServerStats> stats(threads);  // one per thread: nothing shared
  std::vector<std::unique_ptr<app::EpollEchoLoop>> loops;
  sockaddr_in addr = opt.addr;
  bool serving = true;
  for (unsigned i = 0; serving && i < threads; ++i) {
    if (ustack::engines() > 1) ustack::set_thread_engine(static_cast<int>(i % static_cast<unsigned>(ustack::engines())));
    int fd = app::listen_tcp(kProgram, addr, opt.backlog, SOCK_NONBLOCK, /*reuseport=*/true);
    if (fd < 0) break;
    listeners.push_back(fd);
    addr.sin_port = app::local_addr(fd).sin_port;
    loops.push_back(std::make_unique<app::EpollEchoLoop>(kProgram, app::EpollEchoLoop::Trigger::kLevel, stats[i]));
    serving = loops.back()->open(fd);
  }
  serving = serving && listeners.size() == threads;

  bool ok = false;
  if (serving) {
    app::print_serving(kProgram, opt, listeners[0]);
    std::vector<char> loop_ok(threads, 0);
    std::vector<std::thread> pool;
    for (unsigned i = 0; i < threads; ++i) {
      pool.emplace_back([&, i] {
        loop_ok[i] = loops[i]->run();
        if (!loop_ok[i]) app::g_stop = 1;  // one thread failing stops them all
      });
    }
    for (auto& t : pool) t.join();
    ok = std::all_of(loop_ok.begin(), loop_ok.end(), [](char c) { return c != 0; });
  }
  for (auto& loop : loops) loop->close();
  for (int fd : listeners) ustack::close(fd);
  if (serving) {
    uint64_t accepted = 0, echoed = 0, errors = 0;
    std::string per_thread = "; connections per thread:";
    for (const auto& s : stats) {
      accepted += s.accepted;
      echoed += s.echoed;
      errors += s.errors;
      per_thread += " " + std::to_string(s.accepted.load());
    }
    app::print_summary(kProgram, accepted, echoed, errors, per_thread);
  }
  ustack::shutdown();
  return ok ? 0 : 1;
}
