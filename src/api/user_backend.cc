#include "api/user_backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
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

UserBackend::UserBackend(std::unique_ptr<Engine> engine, uint32_t index, uint32_t engines)
    : engine_(std::move(engine)), index_(index), engines_(engines) {}

std::optional<size_t> UserBackend::slot_of(int fd) const {
  if (!is_user_fd(fd)) return std::nullopt;
  const uint32_t offset = static_cast<uint32_t>(fd - kUserFdBase);
  if (offset % engines_ != index_) return std::nullopt;
  return offset / engines_;
}

int UserBackend::fd_of(size_t slot) const {
  return kUserFdBase + static_cast<int>(slot * engines_ + index_);
}

UserBackend::~UserBackend() {
  engine_->stop_thread();  // nothing may run the stack while it is taken apart
  // Sockets first (they unbind from the stack), then epoll instances, then the engine.
  for (auto& d : files_) {
    if (dynamic_cast<UdpFile*>(d.file.get()) || dynamic_cast<TcpFile*>(d.file.get())) d.file.reset();
  }
  files_.clear();
  engine_->stack().flush();
}

OpenFile* UserBackend::file(int fd) {
  const auto i = slot_of(fd);
  return i && *i < files_.size() ? files_[*i].file.get() : nullptr;
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

int UserBackend::install(std::shared_ptr<OpenFile> f, bool cloexec, int min_fd) {
  // Descriptors stop at INT_MAX: F_DUPFD near it finds none (Linux: past RLIMIT_NOFILE).
  if (int64_t{min_fd} > int64_t{INT_MAX} - engines_) return fail(EMFILE);
  open_count_.fetch_add(1, std::memory_order_relaxed);
  // The lowest of this engine's slots whose descriptor is >= min_fd.
  const int64_t above = std::max<int64_t>(int64_t{min_fd} - kUserFdBase - index_, 0);
  const int min_index = static_cast<int>((above + engines_ - 1) / engines_);
  if (auto it = free_.lower_bound(min_index); it != free_.end()) {
    const int i = *it;
    free_.erase(it);
    files_[static_cast<size_t>(i)] = Descriptor{std::move(f), cloexec};
    return fd_of(static_cast<size_t>(i));
  }
  while (static_cast<int>(files_.size()) < min_index) {  // F_DUPFD beyond the end: the gap is free
    free_.insert(static_cast<int>(files_.size()));
    files_.emplace_back();
  }
  files_.push_back(Descriptor{std::move(f), cloexec});
  return fd_of(files_.size() - 1);
}

void UserBackend::start() { engine_->start_thread(); }

int UserBackend::stop() {
  engine_->stop_thread();
  return calls_.load(std::memory_order_relaxed);
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
    return install(std::move(f), flags & SOCK_CLOEXEC);
  }
  if (kind != SOCK_DGRAM) return fail(ESOCKTNOSUPPORT);
  if (protocol != 0 && protocol != IPPROTO_UDP) return fail(EPROTONOSUPPORT);
  auto f = std::make_shared<UdpFile>(engine_->stack());
  f->nonblocking = flags & SOCK_NONBLOCK;
  return install(std::move(f), flags & SOCK_CLOEXEC);
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
    if (sent.error() == EPIPE && !(flags & MSG_NOSIGNAL)) raise_sigpipe();
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
    engine_->catch_up();  // a non-blocking caller still sees what already arrived
    if (!ready()) {
      if (f->nonblocking || (flags & MSG_DONTWAIT) || f->recv_timeout.no_wait()) return fail(EAGAIN);
      switch (wait(*f, ready, timeout_deadline(engine_->now(), f->recv_timeout))) {
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
  const int i = static_cast<int>(*slot_of(fd));
  files_[static_cast<size_t>(i)] = Descriptor{};  // the last reference closes the socket
  free_.insert(i);
  open_count_.fetch_sub(1, std::memory_order_relaxed);
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
    case F_GETFD: return files_[*slot_of(fd)].cloexec ? FD_CLOEXEC : 0;
    case F_SETFD: files_[*slot_of(fd)].cloexec = arg & FD_CLOEXEC; return 0;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      // Linux: the lowest free descriptor >= arg; one beyond RLIMIT_NOFILE is EINVAL. Ours
      // start at kUserFdBase, so any smaller arg means "the lowest of ours".
      if (arg < 0 || arg > INT_MAX) return fail(EINVAL);
      return dup(fd, static_cast<int>(arg), cmd == F_DUPFD_CLOEXEC);
    }
  }
  return fail(EINVAL);
}

int UserBackend::epoll_create1(int flags) {
  if (flags & ~EPOLL_CLOEXEC) return fail(EINVAL);
  auto f = std::make_shared<EpollFile>();
  return install(std::move(f), flags & EPOLL_CLOEXEC);
}

int UserBackend::epoll_ctl(int epfd, int op, int fd, epoll_event* event) {
  auto* ep = file_as<EpollFile>(epfd, EINVAL);
  if (!ep) return -1;
  if (fd == epfd) return fail(EINVAL);
  if (!is_user_fd(fd)) return fail(EPERM);  // kernel descriptors: not in this release (README)
  if (!slot_of(fd)) return fail(EXDEV);      // another engine's socket (README, "Engines on several cores")
  OpenFile* target = file(fd);
  if (!target) return fail(EBADF);
  if (op != EPOLL_CTL_DEL && !event) return fail(EFAULT);
  if (op == EPOLL_CTL_ADD) {
    if (auto* nested = dynamic_cast<EpollFile*>(target)) {
      std::vector<const UserEpoll*> all;
      for (const auto& d : files_) {
        if (auto* e = dynamic_cast<const EpollFile*>(d.file.get())) all.push_back(&e->epoll);
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
  const auto result = wait(*ep, [&] { return (n = ep->epoll.collect(events, max)) > 0; },
                           deadline_after(engine_->now(), timeout_ms));
  // Linux: a signal handler always ends epoll_wait with EINTR, SA_RESTART or not.
  if (result == Engine::RunResult::kInterrupted) return fail(EINTR);
  return n;
}

}  // namespace ustack::api

namespace ustack::api {

int UserBackend::dup(int fd, int min_fd, bool cloexec) {
  if (!file(fd)) return fail(EBADF);
  return install(files_[*slot_of(fd)].file, cloexec, min_fd);
}

ssize_t UserBackend::sendfile(int out_fd, int in_fd, off_t* offset, size_t count) {
  // Linux's order (do_sendfile): the input file (EBADF unless open for reading), the output
  // (EBADF unless open for writing), then the offset.
  const int in_flags = ::fcntl(in_fd, F_GETFL);
  if (in_flags < 0 || (in_flags & O_ACCMODE) == O_WRONLY) return fail(EBADF);
  OpenFile* out = file(out_fd);
  if (!out) return fail(EBADF);
  auto* tcp = dynamic_cast<TcpFile*>(out);
  if (!tcp) return fail(EINVAL);  // UDP and epoll descriptors: not in this release (README)
  off_t pos;
  if (offset) {
    if (*offset < 0) return fail(EINVAL);
    pos = *offset;
  } else {
    pos = ::lseek(in_fd, 0, SEEK_CUR);
    if (pos < 0) return fail(errno == ESPIPE ? EINVAL : errno);
  }
  constexpr size_t kMaxCount = 0x7ffff000;  // Linux's MAX_RW_COUNT
  count = std::min(count, kMaxCount);
  // The file is read through a buffer of this thread's (another thread's sendfile may run while
  // this one waits for room), then copied into the send buffer like any send().
  constexpr size_t kChunk = 64 * 1024;
  thread_local std::vector<uint8_t> chunk(kChunk);
  size_t done = 0;
  int err = 0;
  while (done < count) {
    const size_t want = std::min(count - done, kChunk);
    const ssize_t got = ::pread(in_fd, chunk.data(), want, pos + static_cast<off_t>(done));
    if (got < 0) {
      if (errno == EINTR) continue;
      err = errno == ESPIPE ? EINVAL : errno;
      break;
    }
    if (got == 0) break;  // end of file
    const ssize_t sent = tcp_send(*tcp, chunk.data(), static_cast<size_t>(got), 0);
    if (sent < 0) {
      err = errno;
      break;
    }
    done += static_cast<size_t>(sent);
    if (sent < got) break;  // the socket took less: non-blocking and full, or a timeout
  }
  if (offset) {
    *offset = pos + static_cast<off_t>(done);
  } else if (done > 0) {
    ::lseek(in_fd, pos + static_cast<off_t>(done), SEEK_SET);
  }
  if (done == 0 && err) return fail(err);
  return static_cast<ssize_t>(done);
}

int UserBackend::poll(pollfd* fds, nfds_t nfds, int timeout_ms) {
  if (nfds > 0 && !fds) return fail(EFAULT);
  // What each entry polls: an ustack file (held for the call), or a slot in `kernel`.
  std::vector<std::shared_ptr<OpenFile>> held(nfds);
  std::vector<Waitable*> sources;
  std::vector<pollfd> kernel;
  std::vector<size_t> kernel_slot(nfds, SIZE_MAX);
  for (nfds_t i = 0; i < nfds; ++i) {
    if (fds[i].fd < 0) continue;  // ignored, as POSIX says
    if (!is_user_fd(fds[i].fd)) {
      kernel_slot[i] = kernel.size();
      kernel.push_back(pollfd{fds[i].fd, fds[i].events, 0});
    } else if (OpenFile* f = file(fds[i].fd)) {
      held[i] = f->shared_from_this();
      sources.push_back(&f->waitable());
    }
  }
  auto scan = [&]() -> int {
    if (!kernel.empty()) {
      for (pollfd& k : kernel) k.revents = 0;
      ::poll(kernel.data(), kernel.size(), 0);
    }
    int ready = 0;
    for (nfds_t i = 0; i < nfds; ++i) {
      short revents = 0;
      if (fds[i].fd < 0) {
        revents = 0;
      } else if (kernel_slot[i] != SIZE_MAX) {
        revents = kernel[kernel_slot[i]].revents;
      } else if (!held[i]) {
        revents = POLLNVAL;
      } else {
        // Linux: POLLERR and POLLHUP are reported whether asked for or not.
        const uint32_t mask = static_cast<uint16_t>(fds[i].events) | POLLERR | POLLHUP;
        revents = static_cast<short>(held[i]->waitable().poll_events() & mask);
      }
      fds[i].revents = revents;
      if (revents) ++ready;
    }
    return ready;
  };
  engine_->catch_up();
  int n = scan();
  if (n > 0 || timeout_ms == 0) return n;
  const auto result = engine_->wait(sources, [&] { return (n = scan()) > 0; },
                                    deadline_after(engine_->now(), timeout_ms), kernel);
  if (CallAttempts* attempt = CallAttempts::current(); attempt && attempt->would_block) {
    for (auto& h : held) {
      if (h) attempt->pin(std::move(h));  // what it waits on, until the next attempt
    }
  }
  if (result == Engine::RunResult::kInterrupted) return fail(EINTR);
  return n;
}

}  // namespace ustack::api
