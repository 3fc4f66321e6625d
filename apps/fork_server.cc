// fork-server: a TCP echo server with a process per client, on the kernel stack only.
//
// The design, as in the textbooks: the parent blocks in accept(); for each connection it fork()s
// a child. The child closes its copy of the listener, serves the client with blocking calls until
// the client closes, and exits; the parent closes its copy of the connected socket (the child's
// keeps the connection open) and goes back to accept(). A child that exits stays a zombie until
// its parent waits for it, so the parent's SIGCHLD handler reaps every ended child with
// waitpid(-1, ..., WNOHANG) in a loop (one signal may stand for several children). The handler is
// installed with SA_RESTART, so the blocked accept() goes on after it runs. --max-children bounds
// the children: at the bound, the parent waits for one to end before it accepts again.
//
// On SIGINT/SIGTERM the parent shuts the listener down (from the handler: shutdown(2) is
// async-signal-safe), which ends its accept(); it sends SIGTERM to every child, whose handler
// shuts its connection down, waits for them all and prints the summary. The children count
// bytes and errors in a shared memory page that the parent reads.
//
// Why not on ustack: the ustack engine, its DPDK device and every socket's state live in the
// memory of the one process that called ustack::init(). A forked child gets a copy of that memory
// with no device and no engine running, so its sockets could never send or receive.

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <new>
#include <thread>
#include <vector>

#include "server_common.h"

namespace {

constexpr const char* kProgram = "fork-server";

// Read by the signal handlers; set while the signals they handle are blocked.
volatile sig_atomic_t g_wake_fd = -1;  // shut down on SIGINT/SIGTERM: the parent's listener, a child's connection
volatile sig_atomic_t g_live = 0;      // children not yet reaped
pid_t* g_children = nullptr;           // their pids; 0 marks a free slot
int g_max_children = 0;

void on_stop(int) {
  int saved = errno;
  app::g_stop = 1;
  // Wakes the blocked accept (parent) or recv/send (child). On the kernel backend
  // ustack::shutdown is shutdown(2) itself, which a signal handler may call.
  if (g_wake_fd >= 0) ustack::shutdown(g_wake_fd, SHUT_RDWR);
  errno = saved;
}

void on_child(int) {
  int saved = errno;
  pid_t pid;
  while ((pid = waitpid(-1, nullptr, WNOHANG)) > 0) {
    for (int i = 0; i < g_max_children; ++i) {
      if (g_children[i] == pid) {
        g_children[i] = 0;
        g_live = g_live - 1;
        break;
      }
    }
  }
  errno = saved;
}

void install_handler(int sig, void (*handler)(int)) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
  sigaction(sig, &sa, nullptr);
}

/// The child: serves one client and exits. Entered with SIGCHLD, SIGINT and SIGTERM blocked.
[[noreturn]] void serve_child(int listen_fd, int fd, const sockaddr_in& peer, app::ServerStats& stats,
                              const sigset_t& unblocked) {
  g_wake_fd = fd;  // SIGINT/SIGTERM now shut down this client's connection
  install_handler(SIGCHLD, SIG_DFL);
  ustack::close(listen_fd);  // the child never accepts
  sigprocmask(SIG_SETMASK, &unblocked, nullptr);
  app::echo_blocking(kProgram, fd, peer, stats);
  ustack::close(fd);
  _exit(0);  // not exit(): the parent's atexit handlers and stdio buffers are not the child's
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. A process per client: the parent blocks in "
      "accept() and fork()s a child for each connection, which serves it with blocking calls and exits; "
      "SIGCHLD reaps the children. Kernel stack only (--stack ustack is refused: a forked child has no "
      "ustack engine). Prints a summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  int max_children = 256;
  cli.add_option("--max-children", max_children, "child processes at most (then accept() waits for one to end)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  if (int status = app::parse_server_command_line(cli, argc, argv, kProgram, opt); status >= 0) return status;
  if (opt.common.stack == "ustack") {
    std::fprintf(stderr,
                 "%s: refusing --stack ustack: the ustack engine, its DPDK device and every socket's state live "
                 "in this one process's memory; a child made by fork() would get a copy of that memory with no "
                 "device and no engine running, so its sockets could not work. On ustack, use thread-server or "
                 "pool-server (a thread per client, or a pool of threads) instead.\n",
                 kProgram);
    return 3;
  }

  if (!app::start_backend(opt.common, kProgram)) return 1;
  int listen_fd = app::listen_tcp(kProgram, opt.addr, opt.backlog, 0);
  if (listen_fd < 0) return 1;
  // The counters live in a page shared with every child (fork() copies all other memory).
  static_assert(std::atomic<uint64_t>::is_always_lock_free, "counters shared between processes must be lock-free");
  void* page = mmap(nullptr, sizeof(app::ServerStats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    std::fprintf(stderr, "%s: mmap: %s\n", kProgram, std::strerror(errno));
    return 1;
  }
  auto& stats = *new (page) app::ServerStats;
  std::vector<pid_t> children(static_cast<size_t>(max_children), 0);
  g_children = children.data();
  g_max_children = max_children;
  g_wake_fd = listen_fd;
  install_handler(SIGCHLD, on_child);
  install_handler(SIGINT, on_stop);
  install_handler(SIGTERM, on_stop);
  sigset_t guarded, unblocked;
  sigemptyset(&guarded);
  sigaddset(&guarded, SIGCHLD);
  sigaddset(&guarded, SIGINT);
  sigaddset(&guarded, SIGTERM);
  sigprocmask(SIG_SETMASK, nullptr, &unblocked);
  app::print_serving(kProgram, opt, listen_fd);

  while (!app::g_stop) {
    // At the bound, wait for a child to end: sigsuspend unblocks the signals and sleeps at once.
    sigprocmask(SIG_BLOCK, &guarded, nullptr);
    while (g_live >= max_children && !app::g_stop) sigsuspend(&unblocked);
    sigprocmask(SIG_SETMASK, &unblocked, nullptr);

    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    int fd = ustack::accept(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len);
    if (fd < 0) {
      if (app::g_stop) break;  // the handler shut the listener down
      if (errno == EINTR || errno == ECONNABORTED) continue;
      ++stats.errors;
      std::fprintf(stderr, "%s: accept: %s (retrying in 100 ms)\n", kProgram, std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    ++stats.accepted;
    app::set_nodelay(kProgram, fd);
    // With the signals blocked, the child's pid is in the table before its SIGCHLD can be handled.
    sigprocmask(SIG_BLOCK, &guarded, nullptr);
    pid_t pid = fork();
    if (pid == 0) serve_child(listen_fd, fd, peer, stats, unblocked);
    if (pid > 0) {
      for (auto& slot : children) {
        if (slot == 0) {
          slot = pid;
          break;
        }
      }
      g_live = g_live + 1;
    } else {
      ++stats.errors;
      std::fprintf(stderr, "%s: %s: fork: %s\n", kProgram, app::format_addr(peer).c_str(), std::strerror(errno));
    }
    sigprocmask(SIG_SETMASK, &unblocked, nullptr);
    ustack::close(fd);  // the child has its own descriptor for the connection
  }

  // Stop every child and wait until the handler has reaped them all. A pid still in the table is
  // not reaped yet, so it cannot have been reused by another process.
  sigprocmask(SIG_BLOCK, &guarded, nullptr);
  for (pid_t pid : children) {
    if (pid != 0) kill(pid, SIGTERM);
  }
  while (g_live > 0) sigsuspend(&unblocked);
  sigprocmask(SIG_SETMASK, &unblocked, nullptr);
  ustack::close(listen_fd);
  app::print_summary(kProgram, stats);
  ustack::shutdown();
  return 0;
}
