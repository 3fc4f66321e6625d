#pragma once
// The ustack backend: a descriptor table of open files (UDP sockets, epoll instances) served by
// one Engine. Every method mirrors the POSIX call of the same name: it returns what the call
// returns and sets errno the way Linux would.

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>
#include <set>
#include <string>
#include <vector>

#include "api/engine.h"
#include "api/user_epoll.h"
#include "tcp/tcp_connection.h"
#include "tcp/tcp_listener.h"
#include "udp/udp_socket.h"
#include "ustack/socket.h"

namespace ustack::api {

/// SO_RCVTIMEO/SO_SNDTIMEO as Linux keeps them (net/core/sock.c sock_set_timeout): wait
/// forever, do not wait at all (what a negative tv_sec means), or wait `tv`.
struct SocketTimeout {
  bool forever = true;
  timeval tv{};  // when !forever; {0, 0}: do not wait
  bool no_wait() const { return !forever && tv.tv_sec == 0 && tv.tv_usec == 0; }
};

/// An open file description: what dup'd descriptors share (O_NONBLOCK, the socket itself).
/// FD_CLOEXEC belongs to the descriptor. A call that waits holds a reference (shared_from_this),
/// so that another thread's close() of the last descriptor cannot free the socket under it.
class OpenFile : public std::enable_shared_from_this<OpenFile> {
 public:
  virtual ~OpenFile() = default;
  virtual Waitable& waitable() = 0;
  bool nonblocking = false;
};

class UdpFile final : public OpenFile {
 public:
  explicit UdpFile(Stack& stack) : stack_(stack) {}
  ~UdpFile() override { stack_.udp().unbind(socket); }
  Waitable& waitable() override { return socket; }

  udp::UdpSocket socket;
  SocketTimeout recv_timeout;  // SO_RCVTIMEO
  SocketTimeout send_timeout;  // SO_SNDTIMEO (stored; UDP sends never wait)
  bool keepalive = false;      // SO_KEEPALIVE: stored, meaningless for UDP as on Linux

 private:
  Stack& stack_;
};

/// A TCP socket through its life: fresh (maybe bound), listening, or one connection.
class TcpFile final : public OpenFile, public Waitable, private tcp::ReadinessObserver {
 public:
  TcpFile(Engine& engine, const tcp::SocketOptions& defaults) : options(defaults), engine_(engine) {}
  /// An accepted connection.
  TcpFile(Engine& engine, std::shared_ptr<tcp::TcpConnection> c);
  ~TcpFile() override;
  Waitable& waitable() override { return *this; }
  uint32_t poll_events() const override;
  /// Points the connection's readiness at this socket.
  void attach(std::shared_ptr<tcp::TcpConnection> c);
  /// setsockopt() changed `options`: hand them to the listener or connection.
  void options_changed();
  tcp::ReadinessObserver* observer() { return this; }
  /// Readiness changed without the connection or listener saying so (the listener went).
  void changed(uint32_t events) { notify(events); }

  tcp::SocketOptions options;
  tcp::PortBinding binding;  // bind() or listen() (a connection holds its own)
  std::unique_ptr<tcp::TcpListener> listener;
  std::shared_ptr<tcp::TcpConnection> conn;
  bool connecting = false;   // connect() began and has not reported its outcome (SS_CONNECTING)
  bool sending = false;      // a send() is in progress: another waits, so calls do not interleave
  int senders_waiting = 0;   // sends waiting for the one in progress
  SocketTimeout recv_timeout;
  SocketTimeout send_timeout;

 private:
  void readiness_changed(uint32_t events) override { notify(events); }
  Engine& engine_;
};

class EpollFile final : public OpenFile {
 public:
  Waitable& waitable() override { return epoll; }
  UserEpoll epoll;
};

class UserBackend {
 public:
  /// Engine `index` of `engines`: its descriptors are kUserFdBase + slot * engines + index, so
  /// that the descriptor says which engine serves it.
  explicit UserBackend(std::unique_ptr<Engine> engine, uint32_t index = 0, uint32_t engines = 1);
  ~UserBackend();

  Engine& engine() { return *engine_; }
  /// Open ustack descriptors (readable from any thread: a gauge).
  int open_descriptors() const { return open_count_.load(std::memory_order_relaxed); }

  /// Runs `body(done)`, one call on this backend's engine, as the calling thread may. Threaded
  /// mode: under the engine lock. Run to completion: driving the engine when no other thread
  /// does; else handed over to the thread that does (Engine::hand_over), as attempts that never
  /// wait, between which this thread sleeps until what the call waits for may have changed
  /// (CallAttempts). `partial` calls (send, recv) return what they did when an attempt stops
  /// where it would wait: `done` is the sum so far, from which the next attempt goes on, and the
  /// call returns the total. A call from a signal handler that interrupted a call on the same
  /// engine is refused (EPERM): its own thread drives the engine.
  template <typename Body>
  auto run(Body&& body, bool partial = false) -> decltype(body(size_t{0}));
  /// Threaded mode: starts the engine thread.
  void start();
  /// Stops the engine thread (threaded mode). Returns the calls still in progress in other
  /// threads: the backend must then outlive them (it is left to the process exit).
  int stop();

  /// The errno Linux gives a socket() `type` before it looks at the family (flag bits other than
  /// SOCK_NONBLOCK/SOCK_CLOEXEC, a type beyond SOCK_MAX: EINVAL), or 0.
  static int socket_type_error(int type);
  int socket(int domain, int type, int protocol);
  int bind(int fd, const sockaddr* addr, socklen_t len);
  int connect(int fd, const sockaddr* addr, socklen_t len);
  int listen(int fd, int backlog);
  int accept4(int fd, sockaddr* addr, socklen_t* len, int flags);
  ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* dest, socklen_t dest_len);
  ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len);
  /// ustack::recv_zc: each lent buffer's owner is a Packet allocated with new.
  int recv_zc(int fd, RecvBuffer* out, int max, int flags);
  /// ustack::get_send_buffer and send_zc: each buffer's owner is a Packet allocated with new.
  int get_send_buffer(int fd, SendBuffer* out);
  ssize_t send_zc(int fd, SendBuffer* buffers, int count, int flags);
  int close(int fd);
  int shutdown(int fd, int how);
  int setsockopt(int fd, int level, int name, const void* val, socklen_t len);
  int getsockopt(int fd, int level, int name, void* val, socklen_t* len);
  int getsockname(int fd, sockaddr* addr, socklen_t* len);
  int getpeername(int fd, sockaddr* addr, socklen_t* len);
  int fcntl(int fd, int cmd, long arg);
  /// dup(), and fcntl(F_DUPFD[_CLOEXEC]): the lowest free descriptor >= `min_fd`.
  int dup(int fd, int min_fd, bool cloexec);
  ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count);
  /// poll() over any descriptors; kernel ones are polled by the kernel.
  int poll(pollfd* fds, nfds_t nfds, int timeout_ms);
  int epoll_create1(int flags);
  int epoll_ctl(int epfd, int op, int fd, epoll_event* event);
  int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms);

 private:
  OpenFile* file(int fd);
  /// Where `fd` is in files_, when it is this engine's descriptor.
  std::optional<size_t> slot_of(int fd) const;
  int fd_of(size_t slot) const;
  // TCP (user_tcp.cc).
  int tcp_bind(TcpFile& f, const sockaddr* addr, socklen_t len);
  int tcp_connect(TcpFile& f, const sockaddr* addr, socklen_t len);
  int tcp_listen(TcpFile& f, int backlog);
  int tcp_accept(TcpFile& f, sockaddr* addr, socklen_t* len, int flags);
  ssize_t tcp_send(TcpFile& f, const void* buf, size_t len, int flags);
  /// send()'s loop over `total` units (bytes, or send_zc's buffers): `push(now, done)` queues
  /// from unit `done` on and says how many it took.
  template <typename Push>
  ssize_t tcp_send_loop(TcpFile& f, size_t total, int flags, Push&& push);
  ssize_t tcp_recv(TcpFile& f, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len);
  /// Waits until f's connection has something for a read: bytes, an error or the end of the
  /// stream. 0, or EAGAIN (`no_wait`, or the deadline passed) or EINTR.
  int wait_readable(TcpFile& f, bool no_wait, Instant deadline);
  int tcp_shutdown(TcpFile& f, int how);
  int tcp_setsockopt(TcpFile& f, int level, int name, const void* val, socklen_t len);
  int tcp_getsockopt(TcpFile& f, int level, int name, void* val, socklen_t* len);
  int tcp_getsockname(TcpFile& f, sockaddr* addr, socklen_t* len);
  int tcp_getpeername(TcpFile& f, sockaddr* addr, socklen_t* len);
  template <typename T>
  T* file_as(int fd, int wrong_type_errno);
  /// Puts `f` at the lowest free descriptor >= min_fd; returns it.
  int install(std::shared_ptr<OpenFile> f, bool cloexec, int min_fd = kUserFdBase);
  /// Engine::wait on `f`'s readiness, holding `f` for the duration.
  template <typename Ready>
  Engine::RunResult wait(OpenFile& f, Ready&& ready, Instant deadline) {
    const std::shared_ptr<OpenFile> hold = f.shared_from_this();
    Waitable* source = &f.waitable();
    const auto result = engine_->wait({&source, 1}, ready, deadline);
    CallAttempts* attempt = CallAttempts::current();
    if (attempt && attempt->would_block) attempt->pin(hold);  // what it waits on, until the next attempt
    return result;
  }
  template <typename Body>
  auto run_handed_over(Body& body, bool partial) -> decltype(body(size_t{0}));
  /// The longest sleep between two attempts: a bound on a wake that never comes.
  static constexpr Duration kLongestSleepBetweenAttempts = std::chrono::milliseconds(10);

  struct Descriptor {
    std::shared_ptr<OpenFile> file;
    bool cloexec = false;
  };
  std::unique_ptr<Engine> engine_;
  uint32_t index_;
  uint32_t engines_;
  std::vector<Descriptor> files_;  // by slot_of(fd)
  std::set<int> free_;             // POSIX: the lowest free descriptor is used
  std::atomic<int> open_count_{0};
  std::atomic<int> calls_{0};      // calls in progress
};

template <typename Body>
auto UserBackend::run(Body&& body, bool partial) -> decltype(body(size_t{0})) {
  using Result = decltype(body(size_t{0}));
  struct InProgress {
    std::atomic<int>& calls;
    explicit InProgress(std::atomic<int>& c) : calls(c) { calls.fetch_add(1, std::memory_order_relaxed); }
    ~InProgress() { calls.fetch_sub(1, std::memory_order_relaxed); }
  } in_progress{calls_};
  Engine& e = *engine_;
  auto holding = [&](auto let_go) {  // body(0), the engine held; the body's errno survives let_go
    const Result r = body(0);
    const int err = errno;
    let_go();
    errno = err;
    return r;
  };
  if (e.threaded()) {
    e.lock();
    return holding([&] { e.unlock(); });
  }
  if (e.try_drive()) return holding([&] { e.let_go(); });
  if (e.driven_here()) {
    errno = EPERM;
    return -1;
  }
  return run_handed_over(body, partial);
}

template <typename Body>
auto UserBackend::run_handed_over(Body& body, bool partial) -> decltype(body(size_t{0})) {
  using Result = decltype(body(size_t{0}));
  Engine& e = *engine_;
  ThreadWaiter& waiter = ThreadWaiter::current();
  CallAttempts attempts(waiter);
  size_t done = 0;
  Result r{};
  int err = 0;
  for (;;) {
    if (e.try_drive()) {  // nobody drives it now: finish the call here, waiting as a driver does
      attempts.forget_waits();
      r = body(done);
      err = errno;
      e.let_go();
      break;
    }
    struct Attempt final : HandedCall {
      Attempt(ThreadWaiter& w, CallAttempts& a, Body& b, size_t d, Result& r, int& e)
          : HandedCall(w), attempts(a), body(b), done(d), result(r), err(e) {}
      void run() override {
        const CallAttempts::Scope scope(attempts);
        result = body(done);
        err = errno;
      }
      CallAttempts& attempts;
      Body& body;
      size_t done;
      Result& result;
      int& err;
    } attempt(waiter, attempts, body, done, r, err);
    e.hand_over(attempt);
    if (!attempts.would_block) break;
    if (partial && r > 0) done += static_cast<size_t>(r);
    const Duration left = std::min(*attempts.deadline - e.now(), kLongestSleepBetweenAttempts);
    if (left > Duration::zero() && waiter.sleep(left, attempts.kernel_fds())) attempts.interrupted = true;
  }
  if (partial && done > 0) return static_cast<Result>(r >= 0 ? done + static_cast<size_t>(r) : done);
  if (attempts.raise_sigpipe) ::raise(SIGPIPE);
  errno = err;
  return r;
}

}  // namespace ustack::api
