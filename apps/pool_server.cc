// pool-server: a TCP echo server with a fixed pool of worker threads; the same source on the
// kernel stack and on ustack (--stack).
//
// The design: the threads are made once, at the start: --workers of them. The main thread (the
// master) blocks in accept() and puts each connection it accepts in a queue; a worker takes the
// oldest one from the queue (a mutex and a condition variable guard it), serves it with blocking
// calls until the client closes, then takes the next. No thread is created per client, and at
// most --workers clients are served at once: the others wait in the queue, accepted but not yet
// read, until a worker is free.
//
// On SIGINT/SIGTERM the Stopper (server_common.h) shuts down the listener and every connection,
// queued or served, which wakes the master and the workers from their blocking calls; the workers
// close what is left in the queue and end, and the master joins them.

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "server_common.h"

namespace {

constexpr const char* kProgram = "pool-server";

struct Accepted {
  int fd;
  sockaddr_in peer;
};

/// The connections accepted and not yet taken by a worker.
class ConnectionQueue {
 public:
  void push(const Accepted& c) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(c);
    }
    ready_.notify_one();
  }

  /// The oldest connection; waits for one. False once close() was called and the queue is empty.
  bool pop(Accepted* out) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return !queue_.empty() || closed_; });
    if (queue_.empty()) return false;
    *out = queue_.front();
    queue_.pop_front();
    return true;
  }

  /// No more connections will come: wakes every waiting worker.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Accepted> queue_;
  bool closed_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. A fixed pool of worker threads: the main "
      "thread blocks in accept() and queues each connection; --workers threads take them from the "
      "queue and serve them with blocking calls, one client each at a time (the others wait in the "
      "queue). Prints a summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  unsigned workers = 8;
  cli.add_option("--workers", workers, "worker threads, each serving one client at a time")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app::Stopper stopper;
  int listen_fd = -1;
  if (int status = app::start_blocking_server(cli, argc, argv, kProgram, opt, stopper, &listen_fd); status >= 0) {
    return status;
  }

  app::ServerStats stats;
  ConnectionQueue queue;
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < workers; ++i) {
    pool.emplace_back([&] {
      Accepted c;
      while (queue.pop(&c)) {
        // Returns at once if the connection was shut down while queued.
        app::echo_and_close(kProgram, c.fd, c.peer, stopper, stats);
      }
    });
  }
  app::print_serving(kProgram, opt, listen_fd);

  for (;;) {
    Accepted c{};
    c.fd = app::accept_blocking(kProgram, listen_fd, stopper, stats, &c.peer);
    if (c.fd < 0) break;  // stopping
    queue.push(c);
  }
  stopper.join();  // every connection, queued or served, is shut down now
  queue.close();
  for (auto& t : pool) t.join();
  ustack::close(listen_fd);
  app::print_summary(kProgram, stats);
  ustack::shutdown();
  return 0;
}
