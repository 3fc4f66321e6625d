#pragma once
// The ustack backend: a descriptor table of open files (UDP sockets, epoll instances) served by
// one Engine. Every method mirrors the POSIX call of the same name: it returns what the call
// returns and sets errno the way Linux would.

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "api/engine.h"
#include "api/user_epoll.h"
#include "tcp/tcp_connection.h"
#include "tcp/tcp_listener.h"
#include "udp/udp_socket.h"

namespace ustack::api {

/// SO_RCVTIMEO/SO_SNDTIMEO as Linux keeps them (net/core/sock.c sock_set_timeout): wait
/// forever, do not wait at all (what a negative tv_sec means), or wait `tv`.
struct SocketTimeout {
  bool forever = true;
  timeval tv{};  // when !forever; {0, 0}: do not wait
  bool no_wait() const { return !forever && tv.tv_sec == 0 && tv.tv_usec == 0; }
};

/// An open file description: what dup'd descriptors share (flags, the socket itself).
class OpenFile {
 public:
  virtual ~OpenFile() = default;
  virtual Waitable& waitable() = 0;
  bool nonblocking = false;
  bool cloexec = false;
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
  TcpFile(Engine& engine, const tcp::SocketOptions& defaults) : engine_(engine), options(defaults) {}
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
  explicit UserBackend(std::unique_ptr<Engine> engine);
  ~UserBackend();

  Engine& engine() { return *engine_; }
  int open_descriptors() const { return static_cast<int>(files_.size() - free_.size()); }

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
  // TCP (user_tcp.cc).
  int tcp_bind(TcpFile& f, const sockaddr* addr, socklen_t len);
  int tcp_connect(TcpFile& f, const sockaddr* addr, socklen_t len);
  int tcp_listen(TcpFile& f, int backlog);
  int tcp_accept(TcpFile& f, sockaddr* addr, socklen_t* len, int flags);
  ssize_t tcp_send(TcpFile& f, const void* buf, size_t len, int flags);
  ssize_t tcp_recv(TcpFile& f, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len);
  int tcp_shutdown(TcpFile& f, int how);
  int tcp_setsockopt(TcpFile& f, int level, int name, const void* val, socklen_t len);
  int tcp_getsockopt(TcpFile& f, int level, int name, void* val, socklen_t* len);
  int tcp_getsockname(TcpFile& f, sockaddr* addr, socklen_t* len);
  int tcp_getpeername(TcpFile& f, sockaddr* addr, socklen_t* len);
  template <typename T>
  T* file_as(int fd, int wrong_type_errno);
  int install(std::shared_ptr<OpenFile> f);

  std::unique_ptr<Engine> engine_;
  std::vector<std::shared_ptr<OpenFile>> files_;  // index = fd - kUserFdBase
  std::set<int> free_;                            // POSIX: the lowest free descriptor is used
};

}  // namespace ustack::api
