#include "api/user_backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include <algorithm>
#include <csignal>
#include <cerrno>
#include <climits>
#include <cstring>
#include <limits>

#include "api/socket_util.h"
#include "ustack/socket.h"

namespace ustack::api {

UserBackend::UserBackend(std::unique_ptr<Engine> engine) : engine_(std::move(engine)) {}

UserBackend::~UserBackend() {
  // Sockets first (they unbind from the stack), then epoll instances, then the engine.
  for (auto& f : files_) {
    if (dynamic_cast<UdpFile*>(f.get()) || dynamic_cast<TcpFile*>(f.get())) f.reset();
  }
  files_.clear();
  engine_->stack().flush();
}

OpenFile* UserBackend::file(int fd) {
  if (!is_user_fd(fd)) return nullptr;
  const size_t i = static_cast<size_t>(fd - kUserFdBase);
  return i < files_.size() ? files_[i].get() : nullptr;
}

template <typename T>
T* UserBackend::file_as(int fd, int wrong_type_errno) {
  OpenFile* f = file(fd);
  if (!f) {
    errno = EBADF;
    return nullptr;
  }
  T* t = dynamic_cast<T*>(f);
  if (!t) errno = wrong_type_errno;
  return t;
}

int UserBackend::install(std::shared_ptr<OpenFile> f) {
  if (!free_.empty()) {
    const int i = *free_.begin();
    free_.erase(free_.begin());
    files_[static_cast<size_t>(i)] = std::move(f);
    return kUserFdBase + i;
  }
  files_.push_back(std::move(f));
  return kUserFdBase + static_cast<int>(files_.size() - 1);
}

int UserBackend::socket_type_error(int type) {
  // __sys_socket_create, then __sock_create: SOCK_TYPE_MASK is 0xf, SOCK_MAX 11 (SOCK_PACKET + 1).
  constexpr int kSockTypeMask = 0xf;
  constexpr int kSockMax = SOCK_PACKET + 1;
  if ((type & ~kSockTypeMask) & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return EINVAL;  // also any negative type
  if ((type & kSockTypeMask) >= kSockMax) return EINVAL;
  return 0;
}

int UserBackend::socket(int domain, int type, int protocol) {
  if (int err = socket_type_error(type)) return fail(err);
  if (domain != AF_INET) return fail(EAFNOSUPPORT);
  const int flags = type & (SOCK_NONBLOCK | SOCK_CLOEXEC);
  const int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (kind == SOCK_STREAM) {
    if (protocol != 0 && protocol != IPPROTO_TCP) return fail(EPROTONOSUPPORT);
    auto f = std::make_shared<TcpFile>(*engine_, tcp::SocketOptions::defaults(engine_->stack().config().tcp));
    f->nonblocking = flags & SOCK_NONBLOCK;
    f->cloexec = flags & SOCK_CLOEXEC;
    return install(std::move(f));
  }
  if (kind != SOCK_DGRAM) return fail(ESOCKTNOSUPPORT);
  if (protocol != 0 && protocol != IPPROTO_UDP) return fail(EPROTONOSUPPORT);
  auto f = std::make_shared<UdpFile>(engine_->stack());
  f->nonblocking = flags & SOCK_NONBLOCK;
  f->cloexec = flags & SOCK_CLOEXEC;
  return install(std::move(f));
}

int UserBackend::bind(int fd, const sockaddr* addr, socklen_t len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_bind(*t, addr, len);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  udp::Endpoint ep;
  if (addr && len >= static_cast<socklen_t>(sizeof(sockaddr_in)) && addr->sa_family == AF_UNSPEC) {
    // Linux (inet_bind): AF_UNSPEC passes for AF_INET, for compatibility, with INADDR_ANY only.
    sockaddr_in sin;
    std::memcpy(&sin, addr, sizeof sin);
    if (sin.sin_addr.s_addr != htonl(INADDR_ANY)) return fail(EAFNOSUPPORT);
    ep = udp::Endpoint{Ipv4Addr::any(), ntohs(sin.sin_port)};
  } else if (int err = decode_inet(addr, len, &ep)) {
    return fail(err);
  }
  if (int err = engine_->stack().udp().bind(f->socket, ep)) return fail(err);
  return 0;
}

int UserBackend::connect(int fd, const sockaddr* addr, socklen_t len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_connect(*t, addr, len);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  if (addr && len >= static_cast<socklen_t>(sizeof(sa_family_t)) && addr->sa_family == AF_UNSPEC) {
    engine_->stack().udp().disconnect(f->socket);
    return 0;
  }
  udp::Endpoint ep;
  if (int err = decode_inet(addr, len, &ep)) return fail(err);
  if (int err = engine_->stack().udp().connect(f->socket, ep)) return fail(err);
  return 0;
}

int UserBackend::listen(int fd, int backlog) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_listen(*t, backlog);
  if (!file_as<UdpFile>(fd, ENOTSOCK)) return -1;
  return fail(EOPNOTSUPP);  // a datagram socket does not listen
}

int UserBackend::accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_accept(*t, addr, len, flags);
  if (!file_as<UdpFile>(fd, ENOTSOCK)) return -1;
  return fail(EOPNOTSUPP);
}

ssize_t UserBackend::sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* dest,
                            socklen_t dest_len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_send(*t, buf, len, flags);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  if (flags & MSG_OOB) return fail(EOPNOTSUPP);
  if (len && !buf) return fail(EFAULT);
  std::optional<udp::Endpoint> dst;
  if (dest) {
    udp::Endpoint ep;
    if (int err = decode_inet(dest, dest_len, &ep, /*unspec_ok=*/true)) return fail(err);
    dst = ep;
  }
  Stack& stack = engine_->stack();
  const Instant now = engine_->now();
  auto sent = stack.udp().send(now, f->socket, {static_cast<const uint8_t*>(buf), len}, dst);
  stack.drain_loopback(now);
  stack.flush();
  if (!sent) {
    // Linux raises SIGPIPE on EPIPE unless MSG_NOSIGNAL; for UDP after shutdown(SHUT_WR) too.
    if (sent.error() == EPIPE && !(flags & MSG_NOSIGNAL)) ::raise(SIGPIPE);
    return fail(sent.error());
  }
  return static_cast<ssize_t>(*sent);
}

ssize_t UserBackend::recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_recv(*t, buf, len, flags, src, src_len);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  // MSG_OOB: udp_recvmsg does not look at it; the call is an ordinary receive, as on Linux.
  udp::UdpSocket& s = f->socket;
  auto ready = [&] { return !s.rx_queue.empty() || s.pending_error || s.shut_rd; };
  if (!ready()) {
    engine_->poll_once();  // a non-blocking caller still sees what already arrived
    if (!ready()) {
      if (f->nonblocking || (flags & MSG_DONTWAIT) || f->recv_timeout.no_wait()) return fail(EAGAIN);
      switch (engine_->run_until(ready, timeout_deadline(engine_->now(), f->recv_timeout))) {
        case Engine::RunResult::kReady: break;
        case Engine::RunResult::kTimedOut: return fail(EAGAIN);
        // Linux restarts the call instead when the handler has SA_RESTART and no SO_RCVTIMEO is
        // set; we cannot see the handler's flags, so it is always EINTR here (README).
        case Engine::RunResult::kInterrupted: return fail(EINTR);
      }
    }
  }
  // Linux checks the socket error before the queue (__skb_try_recv_datagram).
  if (int err = s.take_error()) return fail(err);
  if (s.rx_queue.empty()) return 0;  // shut down for reading
  udp::UdpSocket::Received& d = s.rx_queue.front();
  const size_t full = d.payload.size();
  const size_t n = std::min(len, full);
  if (n && !buf) return fail(EFAULT);
  if (n) std::memcpy(buf, d.payload.data(), n);
  encode_inet(d.from, src, src_len);
  if (!(flags & MSG_PEEK)) {
    s.pop_front();
  }
  return static_cast<ssize_t>((flags & MSG_TRUNC) ? full : n);
}

int UserBackend::close(int fd) {
  if (!file(fd)) return fail(EBADF);
  const int i = fd - kUserFdBase;
  files_[static_cast<size_t>(i)].reset();  // the last reference closes the socket
  free_.insert(i);
  engine_->stack().flush();
  return 0;
}

int UserBackend::shutdown(int fd, int how) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_shutdown(*t, how);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) return fail(EINVAL);
  udp::UdpSocket& s = f->socket;
  // Linux (inet_shutdown) records the shutdown even on an unconnected datagram socket, then
  // answers ENOTCONN for it.
  if (how != SHUT_WR) s.shut_rd = true;
  if (how != SHUT_RD) s.shut_wr = true;
  s.changed(kPollIn | kPollRdHup | kPollHup);
  return s.connected() ? 0 : fail(ENOTCONN);
}

int UserBackend::setsockopt(int fd, int level, int name, const void* val, socklen_t len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_setsockopt(*t, level, name, val, len);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  udp::UdpSocket& s = f->socket;
  if (level != SOL_SOCKET) return fail(ENOPROTOOPT);
  if (name == SO_RCVTIMEO || name == SO_SNDTIMEO) {
    if (!val) return fail(EFAULT);
    if (len < static_cast<socklen_t>(sizeof(timeval))) return fail(EINVAL);
    timeval tv;
    std::memcpy(&tv, val, sizeof tv);
    if (int err = parse_timeout(tv, name == SO_RCVTIMEO ? &f->recv_timeout : &f->send_timeout)) return fail(err);
    return 0;
  }
  if (!val) return fail(EFAULT);
  if (len < static_cast<socklen_t>(sizeof(int))) return fail(EINVAL);
  int v;
  std::memcpy(&v, val, sizeof v);
  switch (name) {
    case SO_REUSEADDR: s.reuse_addr = v != 0; return 0;
    case SO_REUSEPORT: s.reuse_port = v != 0; return 0;
    case SO_BROADCAST: s.broadcast = v != 0; return 0;
    case SO_KEEPALIVE: f->keepalive = v != 0; return 0;
    // Linux doubles the request (room for bookkeeping), bounded by rmem_max/wmem_max and a floor.
    case SO_RCVBUF:
      s.rcvbuf = std::max(udp::kMinRcvbuf, 2 * std::min(static_cast<size_t>(std::max(v, 0)), udp::kMaxBufOption));
      return 0;
    case SO_SNDBUF:
      s.sndbuf = std::max(udp::kMinSndbuf, 2 * std::min(static_cast<size_t>(std::max(v, 0)), udp::kMaxBufOption));
      return 0;
  }
  return fail(ENOPROTOOPT);
}

int UserBackend::getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_getsockopt(*t, level, name, val, len);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  udp::UdpSocket& s = f->socket;
  if (level != SOL_SOCKET) return fail(ENOPROTOOPT);
  switch (name) {
    case SO_RCVTIMEO: return get_option(val, len, timeout_timeval(f->recv_timeout));
    case SO_SNDTIMEO: return get_option(val, len, timeout_timeval(f->send_timeout));
    case SO_REUSEADDR: return get_option(val, len, int{s.reuse_addr});
    case SO_REUSEPORT: return get_option(val, len, int{s.reuse_port});
    case SO_BROADCAST: return get_option(val, len, int{s.broadcast});
    case SO_KEEPALIVE: return get_option(val, len, int{f->keepalive});
    case SO_RCVBUF: return get_option(val, len, static_cast<int>(s.rcvbuf));
    case SO_SNDBUF: return get_option(val, len, static_cast<int>(s.sndbuf));
    case SO_ERROR: return get_option(val, len, s.take_error());
    case SO_TYPE: return get_option(val, len, int{SOCK_DGRAM});
    case SO_DOMAIN: return get_option(val, len, int{AF_INET});
    case SO_PROTOCOL: return get_option(val, len, int{IPPROTO_UDP});
    case SO_ACCEPTCONN: return get_option(val, len, 0);
  }
  return fail(ENOPROTOOPT);
}

int UserBackend::getsockname(int fd, sockaddr* addr, socklen_t* len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_getsockname(*t, addr, len);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  if (!addr || !len) return fail(EFAULT);
  encode_inet(f->socket.local, addr, len);
  return 0;
}

int UserBackend::getpeername(int fd, sockaddr* addr, socklen_t* len) {
  if (auto* t = dynamic_cast<TcpFile*>(file(fd))) return tcp_getpeername(*t, addr, len);
  auto* f = file_as<UdpFile>(fd, ENOTSOCK);
  if (!f) return -1;
  if (!f->socket.remote) return fail(ENOTCONN);
  if (!addr || !len) return fail(EFAULT);
  encode_inet(*f->socket.remote, addr, len);
  return 0;
}

int UserBackend::fcntl(int fd, int cmd, long arg) {
  OpenFile* f = file(fd);
  if (!f) return fail(EBADF);
  switch (cmd) {
    case F_GETFL: return O_RDWR | (f->nonblocking ? O_NONBLOCK : 0);
    case F_SETFL: f->nonblocking = arg & O_NONBLOCK; return 0;
    case F_GETFD: return f->cloexec ? FD_CLOEXEC : 0;
    case F_SETFD: f->cloexec = arg & FD_CLOEXEC; return 0;
  }
  return fail(EINVAL);
}

int UserBackend::epoll_create1(int flags) {
  if (flags & ~EPOLL_CLOEXEC) return fail(EINVAL);
  auto f = std::make_shared<EpollFile>();
  f->cloexec = flags & EPOLL_CLOEXEC;
  return install(std::move(f));
}

int UserBackend::epoll_ctl(int epfd, int op, int fd, epoll_event* event) {
  auto* ep = file_as<EpollFile>(epfd, EINVAL);
  if (!ep) return -1;
  if (fd == epfd) return fail(EINVAL);
  if (!is_user_fd(fd)) return fail(EPERM);  // kernel descriptors: not in this release (README)
  OpenFile* target = file(fd);
  if (!target) return fail(EBADF);
  if (op != EPOLL_CTL_DEL && !event) return fail(EFAULT);
  if (op == EPOLL_CTL_ADD) {
    if (auto* nested = dynamic_cast<EpollFile*>(target)) {
      std::vector<const UserEpoll*> all;
      for (const auto& f : files_) {
        if (auto* e = dynamic_cast<const EpollFile*>(f.get())) all.push_back(&e->epoll);
      }
      if (epoll_add_would_loop(ep->epoll, nested->epoll, all)) return fail(ELOOP);
    }
  }
  if (int err = ep->epoll.ctl(op, fd, target->waitable(), event)) return fail(err);
  return 0;
}

int UserBackend::epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  auto* ep = file_as<EpollFile>(epfd, EINVAL);
  if (!ep) return -1;
  // Linux's EP_MAX_EVENTS: the byte size of the array must fit an int.
  constexpr int kMaxEvents = static_cast<int>(INT_MAX / sizeof(epoll_event));
  if (max <= 0 || max > kMaxEvents) return fail(EINVAL);
  if (!events) return fail(EFAULT);
  int n = 0;
  const auto result = engine_->run_until([&] { return (n = ep->epoll.collect(events, max)) > 0; },
                                         deadline_after(engine_->now(), timeout_ms));
  // Linux: a signal handler always ends epoll_wait with EINTR, SA_RESTART or not.
  if (result == Engine::RunResult::kInterrupted) return fail(EINTR);
  return n;
}

}  // namespace ustack::api

namespace ustack::api {

int UserBackend::dup(int fd, int min_fd, bool cloexec) {
  (void)min_fd;
  (void)cloexec;
  if (!file(fd)) return fail(EBADF);
  return install(files_[static_cast<size_t>(fd - kUserFdBase)]);
}

ssize_t UserBackend::sendfile(int, int, off_t*, size_t) { return fail(ENOSYS); }
int UserBackend::poll(pollfd*, nfds_t, int) { return fail(ENOSYS); }

}  // namespace ustack::api
