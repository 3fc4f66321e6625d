// file-server: an HTTP/1.0 server of the files under --root, one request per connection. The
// same source on the kernel stack and on ustack (--stack).
//
// One thread runs a level-triggered epoll loop over non-blocking sockets: it accepts connections
// and reads their request heads. A complete head goes, with its connection, to one of --workers
// threads: the loop first takes the socket out of its epoll set, then queues it; the worker makes
// it blocking, opens the file, sends the head and the file's bytes with blocking calls (sendfile,
// or read and send through a buffer with --io readwrite), shuts down its side, reads until the
// client closes (so that unread request bytes cannot turn the close into a reset that destroys
// the end of the response), and closes it. So a slow disk or a slow client stalls one worker,
// never the loop.
//
//   GET /path     200 with Content-Length and the bytes of ROOT/path (%XX decoded, ?query ignored)
//   no such file  404         a directory, an unreadable file, a path out of ROOT  403
//   another method 405        anything malformed  400
//
// A path is out of ROOT if a segment is ".." (also as %2e%2e) or if, with symbolic links
// resolved, it leads out of ROOT's own resolved path. SIGINT or SIGTERM: stop accepting, close
// what waits for a worker, shut down the connections the workers serve (their blocked sends
// fail), join the workers, print a summary, exit 0.

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"

namespace {

constexpr const char* kProgram = "file-server";
using Clock = std::chrono::steady_clock;
constexpr size_t kMaxRequestHead = 8 * 1024;                // a longer request line and headers get 400
constexpr auto kRequestTimeout = std::chrono::seconds(30);  // to send the whole request head
constexpr int kSendTimeoutS = 30;    // a worker gives up on a client that takes nothing for this long
constexpr int kLingerS = 2;          // and waits this long for the client's close after the response
constexpr size_t kCopyBuffer = 256 * 1024;  // --io readwrite: bytes per read()
constexpr size_t kSendfileChunk = size_t{1} << 30;
constexpr int kMaxErrorsShown = 10;

enum class Io { kSendfile, kReadWrite };

// ---- requests ----

/// What the loop hands a worker: a connection whose request head is read, and what it asked for.
struct Job {
  int fd = -1;
  sockaddr_in peer{};
  int status = 0;     // 200: serve `path` (which may still turn out 404 or 403); else this error
  std::string path;   // ROOT + the decoded target
  std::string why;    // the error's explanation, for its body
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Parses the request head and fills job.status (and path or why).
void parse_request(std::string_view head, const std::string& root, Job& job) {
  auto bad = [&](int status, std::string why) {
    job.status = status;
    job.why = std::move(why);
  };
  std::string_view line = head.substr(0, head.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp1 == 0 || sp2 == sp1) return bad(400, "the request line is not METHOD PATH VERSION");
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (char c : method) {
    if (c < 'A' || c > 'Z') return bad(400, "the method is not a token");
  }
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return bad(400, "the version is not HTTP/1.0 or HTTP/1.1");
  if (target.empty() || target[0] != '/' || target.find(' ') != std::string_view::npos) {
    return bad(400, "the target is not an absolute path");
  }
  if (method != "GET") return bad(405, "this server answers GET only");
  target = target.substr(0, target.find('?'));
  std::string path;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] != '%') {
      path += target[i];
      continue;
    }
    int hi = i + 2 < target.size() ? hex_value(target[i + 1]) : -1;
    int lo = hi >= 0 ? hex_value(target[i + 2]) : -1;
    if (lo < 0) return bad(400, "a bad %-escape in the path");
    if (hi == 0 && lo == 0) return bad(400, "a NUL byte in the path");
    path += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  for (size_t start = 0; start <= path.size();) {  // the segments between slashes
    size_t end = std::min(path.find('/', start), path.size());
    if (path.compare(start, end - start, "..") == 0) return bad(403, "the path leads out of the served directory");
    start = end + 1;
  }
  job.status = 200;
  job.path = root + path;
}

// ---- the workers ----

struct Stats {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> ok{0}, bad_request{0}, forbidden{0}, not_found{0}, bad_method{0}, server_error{0};
  std::atomic<uint64_t> body_bytes{0};
  std::atomic<uint64_t> errors{0};

  void fail(const sockaddr_in& peer, const std::string& what, int err) {
    uint64_t n = ++errors;
    if (n <= kMaxErrorsShown) {
      std::fprintf(stderr, "%s: %s: %s: %s%s\n", kProgram, app::format_addr(peer).c_str(), what.c_str(),
                   std::strerror(err), n == kMaxErrorsShown ? " (further errors only counted)" : "");
    }
  }
};

/// The queue between the loop and the workers, and the connections the workers hold, which stop()
/// shuts down under the lock that closing them takes too (so no reused descriptor number is hit).
class WorkQueue {
 public:
  void push(Job job) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) {
        ustack::close(job.fd);
        return;
      }
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
  }
  /// The next job, now held by the caller; false once stopping.
  bool pop(Job* job) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return false;
    *job = std::move(jobs_.front());
    jobs_.pop_front();
    held_.insert(job->fd);
    return true;
  }
  void close(int fd) {
    std::lock_guard lock(mutex_);
    held_.erase(fd);
    ustack::close(fd);
  }
  /// Closes what waits, shuts down what the workers hold, wakes the workers.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      for (const Job& job : jobs_) ustack::close(job.fd);
      jobs_.clear();
      for (int fd : held_) ustack::shutdown(fd, SHUT_RDWR);
    }
    ready_.notify_all();
  }
  bool stopping() {
    std::lock_guard lock(mutex_);
    return stopping_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> jobs_;
  std::unordered_set<int> held_;
  bool stopping_ = false;
};

class Worker {
 public:
  Worker(Io io, const std::string& root, WorkQueue& queue, Stats& stats)
      : io_(io), root_(root), queue_(queue), stats_(stats) {}

  void run() {
    sigset_t set;  // SIGINT and SIGTERM go to the loop's thread, whose epoll_wait they wake
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    if (io_ == Io::kReadWrite) buffer_.resize(kCopyBuffer);
    Job job;
    while (queue_.pop(&job)) {
      serve(job);
      queue_.close(job.fd);
    }
  }

 private:
  void serve(Job& job) {
    int flags = ustack::fcntl(job.fd, F_GETFL);
    if (flags < 0 || ustack::fcntl(job.fd, F_SETFL, flags & ~O_NONBLOCK) != 0) return fail(job, "fcntl", errno);
    timeval send_timeout{kSendTimeoutS, 0}, linger{kLingerS, 0};
    ustack::setsockopt(job.fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    ustack::setsockopt(job.fd, SOL_SOCKET, SO_RCVTIMEO, &linger, sizeof linger);
    int file = -1;
    struct stat st {};
    if (job.status == 200) file = open_file(job, &st);
    if (job.status != 200) {
      count(job.status);
      std::string body = std::to_string(job.status) + " " + reason(job.status) + ": " + job.why + "\n";
      std::string head = "HTTP/1.0 " + std::to_string(job.status) + " " + reason(job.status) +
                         "\r\nServer: ustack-file-server\r\nContent-Type: text/plain\r\nContent-Length: " +
                         std::to_string(body.size()) + (job.status == 405 ? "\r\nAllow: GET" : "") +
                         "\r\nConnection: close\r\n\r\n" + body;
      if (send_all(job, head.data(), head.size())) finish(job);
      return;
    }
    count(200);
    auto size = static_cast<uint64_t>(st.st_size);
    std::string head = "HTTP/1.0 200 OK\r\nServer: ustack-file-server\r\nContent-Type: application/octet-stream\r\n"
                       "Content-Length: " + std::to_string(size) + "\r\nConnection: close\r\n\r\n";
    bool sent = send_all(job, head.data(), head.size()) &&
                (io_ == Io::kSendfile ? send_file(job, file, size) : copy_file(job, file, size));
    ::close(file);
    if (sent) finish(job);
  }

  // Opens ROOT/path for reading; on failure sets the job's status to 404, 403 or 500.
  int open_file(Job& job, struct stat* st) {
    auto refuse = [&](int status, std::string why) {
      job.status = status;
      job.why = std::move(why);
      return -1;
    };
    char resolved[PATH_MAX];
    if (realpath(job.path.c_str(), resolved) == nullptr) {
      if (errno == ENOENT || errno == ENOTDIR) return refuse(404, "no such file");
      if (errno == EACCES) return refuse(403, "not readable");
      return refuse(500, std::strerror(errno));
    }
    std::string_view real = resolved;
    if (real != root_ && !(real.starts_with(root_) && real[root_.size()] == '/')) {
      return refuse(403, "the path leads out of the served directory");
    }
    int file = ::open(resolved, O_RDONLY | O_CLOEXEC);
    if (file < 0) {
      if (errno == ENOENT) return refuse(404, "no such file");
      if (errno == EACCES) return refuse(403, "not readable");
      return refuse(500, std::strerror(errno));
    }
    if (fstat(file, st) != 0 || !S_ISREG(st->st_mode)) {
      ::close(file);
      return refuse(403, S_ISDIR(st->st_mode) ? "a directory (no listings here)" : "not a regular file");
    }
    return file;
  }

  // The file's bytes by sendfile: from the page cache into the socket, no copy through here.
  bool send_file(Job& job, int file, uint64_t size) {
    off_t offset = 0;
    while (static_cast<uint64_t>(offset) < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kSendfileChunk, size - static_cast<uint64_t>(offset)));
      ssize_t n = ustack::sendfile(job.fd, file, &offset, want);  // advances offset
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(job, "sendfile", errno);
        return false;
      }
      if (n == 0) {
        fail(job, "sendfile: the file ended early (truncated while being sent)", EIO);
        return false;
      }
      stats_.body_bytes += static_cast<uint64_t>(n);
    }
    return true;
  }

  // The file's bytes by read() into a buffer and send() from it: what sendfile spares.
  bool copy_file(Job& job, int file, uint64_t size) {
    uint64_t done = 0;
    while (done < size) {
      ssize_t n = ustack::read(file, buffer_.data(), static_cast<size_t>(std::min<uint64_t>(buffer_.size(), size - done)));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(job, "read", errno);
        return false;
      }
      if (n == 0) {
        fail(job, "read: the file ended early (truncated while being sent)", EIO);
        return false;
      }
      if (!send_all(job, buffer_.data(), static_cast<size_t>(n))) return false;
      stats_.body_bytes += static_cast<uint64_t>(n);
      done += static_cast<uint64_t>(n);
    }
    return true;
  }

  bool send_all(Job& job, const char* data, size_t len) {
    while (len > 0) {
      ssize_t n = ustack::send(job.fd, data, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(job, errno == EAGAIN || errno == EWOULDBLOCK ? "send: the client takes nothing" : "send", errno);
        return false;
      }
      data += n;
      len -= static_cast<size_t>(n);
    }
    return true;
  }

  // All is sent: shut down our side and wait (up to kLingerS) for the client's close.
  void finish(Job& job) {
    if (ustack::shutdown(job.fd, SHUT_WR) != 0) return;
    char buf[4096];
    for (;;) {
      ssize_t n = ustack::recv(job.fd, buf, sizeof buf, 0);
      if (n > 0 || (n < 0 && errno == EINTR)) continue;
      return;  // EOF, the linger timeout or an error after everything was sent: done either way
    }
  }

  void fail(Job& job, const char* what, int err) {
    if (!queue_.stopping()) stats_.fail(job.peer, what, err);  // else stop() is the cause
  }

  void count(int status) {
    switch (status) {
      case 200: ++stats_.ok; break;
      case 400: ++stats_.bad_request; break;
      case 403: ++stats_.forbidden; break;
      case 404: ++stats_.not_found; break;
      case 405: ++stats_.bad_method; break;
      default: ++stats_.server_error; break;
    }
  }

  static const char* reason(int status) {
    switch (status) {
      case 200: return "OK";
      case 400: return "Bad Request";
      case 403: return "Forbidden";
      case 404: return "Not Found";
      case 405: return "Method Not Allowed";
      default: return "Internal Server Error";
    }
  }

  Io io_;
  const std::string& root_;
  WorkQueue& queue_;
  Stats& stats_;
  std::vector<char> buffer_;
};

// ---- the loop ----

struct Conn {
  int fd = -1;
  sockaddr_in peer{};
  std::string request;  // the request head read so far
  Clock::time_point deadline{};
};

class Acceptor {
 public:
  Acceptor(int ep, int listen_fd, uint64_t listener_tag, const std::string& root, WorkQueue& queue, Stats& stats)
      : ep_(ep),
        listen_fd_(listen_fd),
        root_(root),
        queue_(queue),
        stats_(stats),
        listener_pause_(kProgram, ep, listen_fd, listener_tag, EPOLLIN) {}

  void accept_all() {
    bool drained = app::accept_nonblocking(kProgram, listen_fd_, [&](int fd, const sockaddr_in& peer) {
      ++stats_.accepted;
      Conn c;
      c.fd = fd;
      c.peer = peer;
      c.deadline = Clock::now() + kRequestTimeout;
      uint64_t tag = conns_.insert(std::move(c));
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = tag;
      if (ustack::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) fail(tag, *conns_.find(tag), "epoll_ctl", errno);
    });
    if (!drained) {
      ++stats_.errors;
      listener_pause_.pause();
    }
  }

  /// Reads the request head; once it is whole, hands the connection to a worker.
  void handle(uint64_t tag) {
    Conn* c = conns_.find(tag);
    if (c == nullptr) return;  // closed earlier in this batch
    char buf[4096];
    for (;;) {
      ssize_t n = ustack::recv(c->fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) fail(tag, *c, "recv", errno);
        return;
      }
      if (n == 0) {  // closed before asking anything whole (a port probe, or a client giving up)
        close_conn(tag, *c);
        return;
      }
      size_t scan_from = c->request.size() < 3 ? 0 : c->request.size() - 3;
      c->request.append(buf, static_cast<size_t>(n));
      size_t end = c->request.find("\r\n\r\n", scan_from);
      if (end == std::string::npos) end = c->request.find("\n\n", scan_from);  // bare LF lines, as from nc
      if (end == std::string::npos && c->request.size() <= kMaxRequestHead) continue;
      Job job;
      job.fd = c->fd;
      job.peer = c->peer;
      if (end != std::string::npos && end <= kMaxRequestHead) {
        parse_request(std::string_view(c->request).substr(0, end), root_, job);
      } else {
        job.status = 400;
        job.why = "the request head is longer than " + std::to_string(kMaxRequestHead) + " bytes";
      }
      if (ustack::epoll_ctl(ep_, EPOLL_CTL_DEL, c->fd, nullptr) != 0) return fail(tag, *c, "epoll_ctl", errno);
      conns_.erase(tag);  // the worker owns the descriptor now
      queue_.push(std::move(job));
      return;
    }
  }

  /// Once a second is enough: closes connections without a whole request in time, and watches
  /// the listener again after a pause.
  void tick(Clock::time_point now) {
    listener_pause_.resume_if_due(now);
    if (now < next_sweep_) return;
    next_sweep_ = now + std::chrono::seconds(1);
    conns_.for_each([&](uint64_t tag, Conn& c) {
      if (now >= c.deadline) fail(tag, c, "no complete request head", ETIMEDOUT);
    });
  }

  void close_all() {
    conns_.for_each([&](uint64_t tag, Conn& c) { close_conn(tag, c); });
  }

 private:
  void fail(uint64_t tag, Conn& c, const char* what, int err) {
    stats_.fail(c.peer, what, err);
    close_conn(tag, c);
  }

  void close_conn(uint64_t tag, Conn& c) {
    ustack::close(c.fd);  // also drops it from the epoll set
    conns_.erase(tag);
  }

  int ep_;
  int listen_fd_;
  const std::string& root_;
  WorkQueue& queue_;
  Stats& stats_;
  app::ListenerPause listener_pause_;
  app::Slab<Conn> conns_;
  Clock::time_point next_sweep_{};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "HTTP/1.0 file server: GET /PATH answers with the file ROOT/PATH (200 and Content-Length), 404 if there is "
      "none, 403 for a directory or a path out of ROOT (..), 405 for another method, 400 for a malformed request; "
      "one request per connection. One epoll loop accepts and reads requests; --workers threads open the files and "
      "send them with blocking calls (--io sendfile, or read/send through a buffer). Prints a summary on "
      "SIGINT/SIGTERM."};
  app::CommonOptions common;
  std::string root;
  uint16_t port = 8080;
  std::string bind_addr = "0.0.0.0";
  int workers = 4;
  std::string io = "sendfile";
  int backlog = 128;
  app::add_common_options(cli, common);
  cli.add_option("--root", root, "the directory served")->required();
  cli.add_option("--port", port, "TCP port to serve (0: any free one, printed)")->capture_default_str();
  cli.add_option("--bind", bind_addr, "local IPv4 address to bind")->capture_default_str();
  cli.add_option("--workers", workers, "threads that send the responses")->check(CLI::Range(1, 1024))->capture_default_str();
  cli.add_option("--io", io, "sendfile (file to socket in the kernel or the stack) or readwrite (read() and send() "
                             "through a buffer)")
      ->check(CLI::IsMember({"sendfile", "readwrite"}))
      ->capture_default_str();
  cli.add_option("--backlog", backlog, "listen() backlog")->check(CLI::Range(1, 65535))->capture_default_str();
  if (int status = app::parse_command_line(cli, argc, argv); status >= 0) return status;

  char resolved[PATH_MAX];
  struct stat st {};
  if (realpath(root.c_str(), resolved) == nullptr || stat(resolved, &st) != 0) {
    std::fprintf(stderr, "%s: --root %s: %s\n", kProgram, root.c_str(), std::strerror(errno));
    return 2;
  }
  if (!S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "%s: --root %s is not a directory\n", kProgram, root.c_str());
    return 2;
  }
  root = std::string(resolved) == "/" ? "" : resolved;  // "/" + path, never "//" + path
  sockaddr_in addr{};
  if (!app::make_addr(bind_addr, port, &addr)) {
    std::fprintf(stderr, "%s: --bind %s is not an IPv4 address\n", kProgram, bind_addr.c_str());
    return 2;
  }
  if (!app::start_backend(common, kProgram, /*threaded=*/true)) return 1;  // the workers make calls
  // sendfile has no MSG_NOSIGNAL: a client that leaves mid-file would kill us with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  int ep = ustack::epoll_create1(0);
  if (ep < 0) {
    std::fprintf(stderr, "%s: epoll_create1: %s\n", kProgram, std::strerror(errno));
    ustack::shutdown();
    return 1;
  }
  constexpr uint64_t kListenerTag = app::Slab<Conn>::kNoTag;
  int listen_fd = app::open_listener(kProgram, addr, backlog, ep, kListenerTag);
  if (listen_fd < 0) {
    ustack::close(ep);
    ustack::shutdown();
    return 1;
  }
  sockaddr_in bound = app::local_addr(listen_fd);

  Stats stats;
  WorkQueue queue;
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Worker>> pool;
  for (int i = 0; i < workers; ++i) {
    pool.push_back(std::make_unique<Worker>(io == "sendfile" ? Io::kSendfile : Io::kReadWrite, root, queue, stats));
    threads.emplace_back([w = pool.back().get()] { w->run(); });
  }
  std::printf("%s: serving %s:%u on the %s stack (root %s, %d workers, --io %s)\n", kProgram, bind_addr.c_str(),
              ntohs(bound.sin_port), common.stack.c_str(), root.empty() ? "/" : root.c_str(), workers, io.c_str());
  std::fflush(stdout);

  Acceptor acceptor(ep, listen_fd, kListenerTag, root, queue, stats);
  bool ok = app::run_epoll_loop(
      kProgram, ep,
      [&](const epoll_event& e) {
        if (e.data.u64 == kListenerTag) {
          acceptor.accept_all();
        } else {
          acceptor.handle(e.data.u64);
        }
      },
      [&] { acceptor.tick(Clock::now()); });
  ustack::close(listen_fd);
  acceptor.close_all();
  queue.stop();
  for (auto& t : threads) t.join();
  ustack::close(ep);
  auto u = [](const std::atomic<uint64_t>& v) { return static_cast<unsigned long long>(v.load()); };
  std::printf("%s: %llu connections accepted, %llu responses (200: %llu, 400: %llu, 403: %llu, 404: %llu, 405: %llu, "
              "500: %llu), %llu body bytes sent, %llu errors\n",
              kProgram, u(stats.accepted),
              u(stats.ok) + u(stats.bad_request) + u(stats.forbidden) + u(stats.not_found) + u(stats.bad_method) +
                  u(stats.server_error),
              u(stats.ok), u(stats.bad_request), u(stats.forbidden), u(stats.not_found), u(stats.bad_method),
              u(stats.server_error), u(stats.body_bytes), u(stats.errors));
  std::fflush(stdout);
  ustack::shutdown();
  return ok ? 0 : 1;
}
