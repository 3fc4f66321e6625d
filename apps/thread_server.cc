// thread-server: a TCP echo server with a thread per client; the same source on the kernel stack
// and on ustack (--stack).
//
// The design: the main thread blocks in accept(); each connection it accepts gets a thread of
// its own, which receives and sends back with blocking calls until the client closes, then
// closes the socket and ends. Clients no longer wait for each other; the price is a thread (and
// its stack) per connection, so --max-threads bounds them: at the bound, the main thread waits
// for one to end before it accepts again (meanwhile new clients wait in the listen queue).
//
// On SIGINT/SIGTERM the Stopper (server_common.h) shuts down the listener and every connection,
// which wakes the main thread and every client thread from its blocking call; main joins them all.

#include <condition_variable>
#include <list>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "server_common.h"

namespace {

constexpr const char* kProgram = "thread-server";

/// The client threads: started by the main thread, which also joins those that have ended.
class ClientThreads {
 public:
  /// Waits until fewer than `max` threads run. (On a stop they all end: the Stopper has shut
  /// their sockets down.)
  void wait_for_room(size_t max) {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [&] { return running_.size() - ended_.size() < max; });
  }

  /// Starts a thread running serve(); it counts as running until serve() returns. False if no
  /// thread could be started (std::system_error's reason in `error`).
  template <class F>
  bool start(F serve, std::string* error) {
    join_ended();
    std::lock_guard lock(mutex_);
    auto it = running_.emplace(running_.end());
    try {
      it->thread = std::thread([this, it, serve = std::move(serve)] {
        serve();
        std::lock_guard lock(mutex_);
        ended_.push_back(it);
        room_.notify_one();
      });
    } catch (const std::system_error& e) {
      running_.erase(it);
      *error = e.what();
      return false;
    }
    return true;
  }

  /// Joins every thread (they must be ending: the Stopper has shut their sockets down).
  void join_all() {
    for (;;) {
      join_ended();
      std::unique_lock lock(mutex_);
      if (running_.empty()) return;
      room_.wait(lock, [&] { return !ended_.empty(); });
    }
  }

 private:
  struct Client {
    std::thread thread;
  };

  // Joins the threads that have ended, outside the lock they take to say so.
  void join_ended() {
    std::list<Client> done;
    {
      std::lock_guard lock(mutex_);
      for (auto it : ended_) done.splice(done.end(), running_, it);
      ended_.clear();
    }
    for (auto& c : done) c.thread.join();
  }

  std::mutex mutex_;
  std::condition_variable room_;
  std::list<Client> running_;
  std::vector<std::list<Client>::iterator> ended_;  // in running_, their serve() returned
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP echo server: every byte received is sent back. A thread per client: the main thread blocks "
      "in accept(), each connection is served by a thread of its own with blocking calls; at "
      "--max-threads clients the next is accepted when one ends. Prints a summary on SIGINT/SIGTERM."};
  app::ServerOptions opt;
  app::add_server_options(cli, opt);
  size_t max_threads = 256;
  cli.add_option("--max-threads", max_threads, "client threads at most (then accept() waits for one to end)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app::Stopper stopper;
  int listen_fd = -1;
  if (int status = app::start_blocking_server(cli, argc, argv, kProgram, opt, stopper, &listen_fd); status >= 0) {
    return status;
  }
  app::print_serving(kProgram, opt, listen_fd);

  app::ServerStats stats;
  ClientThreads clients;
  for (;;) {
    clients.wait_for_room(max_threads);
    sockaddr_in peer{};
    int fd = app::accept_blocking(kProgram, listen_fd, stopper, stats, &peer);
    if (fd < 0) break;  // stopping
    std::string error;
    bool started = clients.start(
        [fd, peer, &stopper, &stats] { app::echo_and_close(kProgram, fd, peer, stopper, stats); }, &error);
    if (!started) {  // out of threads: this client is refused
      ++stats.errors;
      std::fprintf(stderr, "%s: %s: cannot start a thread: %s\n", kProgram, app::format_addr(peer).c_str(),
                   error.c_str());
      stopper.close(fd);
    }
  }
  stopper.join();  // every connection is shut down now
  clients.join_all();
  ustack::close(listen_fd);
  app::print_summary(kProgram, stats);
  ustack::shutdown();
  return 0;
}
