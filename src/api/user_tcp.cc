// The TCP socket calls of the ustack backend: each mirrors Linux's inet_stream_ops/tcp_prot
// behaviour (errno values, blocking and readiness) over a tcp::TcpConnection or TcpListener.

#include <netinet/tcp.h>

#include <algorithm>
#include <array>
#include <csignal>

#include "api/socket_util.h"
#include "api/user_backend.h"

namespace ustack::api {

namespace {

// Linux's limits for the TCP options (include/net/tcp.h).
constexpr int kMaxKeepIdle = 32767;
constexpr int kMaxKeepIntvl = 32767;
constexpr int kMaxKeepCnt = 127;
constexpr int kMinUserMss = 88;    // TCP_MIN_MSS
constexpr int kMaxUserMss = 32767; // MAX_TCP_WINDOW
constexpr int kDefaultMss = 536;   // TCP_MSS_DEFAULT: what TCP_MAXSEG reads before a connection

bool handshaking(const tcp::TcpConnection& c) {
  return c.state() == tcp::State::kSynSent || c.state() == tcp::State::kSynReceived;
}

udp::Endpoint local_of(const tcp::TcpConnection& c) { return {c.tuple().local_addr, c.tuple().local_port}; }
udp::Endpoint remote_of(const tcp::TcpConnection& c) { return {c.tuple().remote_addr, c.tuple().remote_port}; }

}  // namespace

TcpFile::TcpFile(Engine& engine, std::shared_ptr<tcp::TcpConnection> c) : options(c->options()), engine_(engine) {
  attach(std::move(c));
}

TcpFile::~TcpFile() {
  Stack& stack = engine_.stack();
  const Instant now = engine_.now();
  if (conn) {
    conn->set_observer(nullptr);
    conn->close(now);  // the layer keeps it while it finishes (FIN, TIME-WAIT) or resets it
    conn.reset();
  }
  if (listener) {
    stack.tcp().unlisten(now, *listener);
    listener.reset();
  }
  stack.tcp().unbind(binding);
  stack.drain_loopback(now);
  stack.flush();
}

void TcpFile::attach(std::shared_ptr<tcp::TcpConnection> c) {
  conn = std::move(c);
  conn->set_observer(this);
}

uint32_t TcpFile::poll_events() const {
  if (listener) return listener->poll_events();
  if (conn) return conn->poll_events();
  return kPollOut | kPollWrNorm | kPollHup;  // tcp_poll() of a socket in CLOSE
}

void TcpFile::options_changed() {
  if (listener) listener->options() = options;
  if (conn) {
    conn->options() = options;
    conn->options_changed(engine_.now());
    engine_.stack().flush();
  }
}

int UserBackend::tcp_bind(TcpFile& f, const sockaddr* addr, socklen_t len) {
  udp::Endpoint ep;
  if (addr && len >= static_cast<socklen_t>(sizeof(sockaddr_in)) && addr->sa_family == AF_UNSPEC) {
    sockaddr_in sin;
    std::memcpy(&sin, addr, sizeof sin);
    if (sin.sin_addr.s_addr != htonl(INADDR_ANY)) return fail(EAFNOSUPPORT);
    ep = udp::Endpoint{Ipv4Addr::any(), ntohs(sin.sin_port)};
  } else if (int err = decode_inet(addr, len, &ep)) {
    return fail(err);
  }
  if (f.binding.registered || f.listener || f.conn) return fail(EINVAL);
  f.binding.reuse_addr = f.options.reuse_addr;
  f.binding.reuse_port = f.options.reuse_port;
  if (int err = engine_->stack().tcp().bind(f.binding, ep.addr, ep.port)) return fail(err);
  return 0;
}

int UserBackend::tcp_connect(TcpFile& f, const sockaddr* addr, socklen_t len) {
  udp::Endpoint ep;
  if (int err = decode_inet(addr, len, &ep)) return fail(err);
  if (f.listener) return fail(EISCONN);
  Stack& stack = engine_->stack();
  if (f.conn) {
    if (handshaking(*f.conn)) {
      if (f.nonblocking) return fail(EALREADY);
    } else if (f.conn->state() == tcp::State::kClosed) {
      if (f.connecting) {  // the attempt failed and nobody asked yet: report it (sock_error)
        f.connecting = false;
        const int err = f.conn->take_error();
        return fail(err ? err : ECONNABORTED);
      }
      if (f.conn->established_once()) return fail(EISCONN);
      f.conn.reset();  // a failed attempt was reported: a new one may start
    } else {
      if (f.connecting) {  // Linux: the call after a non-blocking connect completed returns 0
        f.connecting = false;
        return 0;
      }
      return fail(EISCONN);
    }
  }
  const Instant now = engine_->now();
  if (!f.conn) {
    auto c = stack.tcp().connect(now, f.binding.registered ? &f.binding : nullptr, ep.addr, ep.port, f.options);
    if (!c) return fail(c.error());
    f.attach(std::move(*c));
    stack.tcp().unbind(f.binding);  // the connection holds the port now
    f.connecting = true;
    stack.drain_loopback(now);
    stack.flush();
    if (f.nonblocking) return fail(EINPROGRESS);
  }
  tcp::TcpConnection& c = *f.conn;
  switch (wait(f, [&] { return !handshaking(c); }, timeout_deadline(engine_->now(), f.send_timeout))) {
    case Engine::RunResult::kReady: break;
    case Engine::RunResult::kTimedOut: return fail(EINPROGRESS);
    case Engine::RunResult::kInterrupted: return fail(EINTR);
  }
  f.connecting = false;
  if (c.state() == tcp::State::kClosed) {
    const int err = c.take_error();
    return fail(err ? err : ECONNABORTED);
  }
  return 0;
}

int UserBackend::tcp_listen(TcpFile& f, int backlog) {
  if (f.conn) return fail(EINVAL);
  if (f.listener) {
    f.listener->set_backlog(backlog);
    return 0;
  }
  tcp::TcpLayer& layer = engine_->stack().tcp();
  if (!f.binding.registered) {  // Linux autobinds an ephemeral port (inet_autobind)
    f.binding.reuse_addr = f.options.reuse_addr;
    f.binding.reuse_port = f.options.reuse_port;
    if (int err = layer.bind(f.binding, Ipv4Addr::any(), 0)) return fail(err == EADDRINUSE ? EAGAIN : err);
  }
  auto l = std::make_unique<tcp::TcpListener>(f.binding, backlog, f.options);
  if (int err = layer.listen(*l)) return fail(err);
  l->set_observer(f.observer());
  f.listener = std::move(l);
  return 0;
}

int UserBackend::tcp_accept(TcpFile& f, sockaddr* addr, socklen_t* len, int flags) {
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return fail(EINVAL);
  if (!f.listener) return fail(EINVAL);
  // Another thread may shut the listener down (SHUT_RD) while this one waits: Linux's accept then
  // fails with EINVAL.
  auto ready = [&] { return !f.listener || f.listener->accept_queue_size() > 0; };
  if (!ready()) {
    engine_->catch_up();
    if (!ready()) {
      if (f.nonblocking || f.recv_timeout.no_wait()) return fail(EAGAIN);
      switch (wait(f, ready, timeout_deadline(engine_->now(), f.recv_timeout))) {
        case Engine::RunResult::kReady: break;
        case Engine::RunResult::kTimedOut: return fail(EAGAIN);
        case Engine::RunResult::kInterrupted: return fail(EINTR);
      }
    }
  }
  if (!f.listener) return fail(EINVAL);
  auto c = f.listener->accept();
  auto nf = std::make_shared<TcpFile>(*engine_, c);
  nf->nonblocking = flags & SOCK_NONBLOCK;
  if (addr || len) {
    if (!addr || !len) return fail(EFAULT);
    encode_inet(remote_of(*c), addr, len);
  }
  return install(std::move(nf), flags & SOCK_CLOEXEC);
}

template <typename Push>
ssize_t UserBackend::tcp_send_loop(TcpFile& f, size_t len, int flags, Push&& push) {
  Stack& stack = engine_->stack();
  auto epipe = [&](int err) -> ssize_t {
    // Linux raises SIGPIPE for EPIPE unless MSG_NOSIGNAL (sk_stream_error).
    if (err == EPIPE && !(flags & MSG_NOSIGNAL)) raise_sigpipe();
    return fail(err);
  };
  if (!f.conn) return epipe(EPIPE);  // never connected (sk_stream_wait_connect)
  tcp::TcpConnection& c = *f.conn;
  const bool no_wait = f.nonblocking || (flags & MSG_DONTWAIT) || f.send_timeout.no_wait();
  if (handshaking(c)) {
    if (no_wait) return fail(EAGAIN);
    wait(f, [&] { return !handshaking(c); }, timeout_deadline(engine_->now(), f.send_timeout));
    if (handshaking(c)) return fail(EAGAIN);
  }
  const Instant deadline = timeout_deadline(engine_->now(), f.send_timeout);
  // One send at a time per socket (threaded mode), so that one call's bytes are never interleaved
  // with another's. The one in progress only waits when the buffer is full: a caller that may
  // not wait gets EAGAIN, as the full buffer would give it anyway.
  if (f.sending) {
    if (no_wait) return fail(EAGAIN);
    ++f.senders_waiting;
    const auto turn = wait(f, [&] { return !f.sending; }, deadline);
    --f.senders_waiting;
    if (turn == Engine::RunResult::kTimedOut) return fail(EAGAIN);
    if (turn == Engine::RunResult::kInterrupted) return fail(EINTR);
  }
  f.sending = true;
  struct EndOfSend {
    TcpFile& f;
    ~EndOfSend() {
      f.sending = false;
      if (f.senders_waiting > 0) f.changed(kPollOut);
    }
  } end_of_send{f};
  size_t done = 0;
  for (;;) {
    const Instant now = engine_->now();
    auto sent = push(now, done);
    stack.drain_loopback(now);
    stack.flush();
    if (!sent) {
      if (done > 0) return static_cast<ssize_t>(done);
      return epipe(sent.error());
    }
    done += *sent;
    if (done == len) return static_cast<ssize_t>(done);
    // The buffer is full: Linux's blocking send waits until all is queued.
    if (no_wait) return done > 0 ? static_cast<ssize_t>(done) : fail(EAGAIN);
    auto room = [&] { return c.send_space() > 0 || c.pending_error() || c.write_shut() || c.state() == tcp::State::kClosed; };
    switch (wait(f, room, deadline)) {
      case Engine::RunResult::kReady: break;
      case Engine::RunResult::kTimedOut: return done > 0 ? static_cast<ssize_t>(done) : fail(EAGAIN);
      case Engine::RunResult::kInterrupted: return done > 0 ? static_cast<ssize_t>(done) : fail(EINTR);
    }
  }
}

ssize_t UserBackend::tcp_send(TcpFile& f, const void* buf, size_t len, int flags) {
  if (flags & MSG_OOB) return fail(EOPNOTSUPP);
  if (len && !buf) return fail(EFAULT);
  const auto* data = static_cast<const uint8_t*>(buf);
  return tcp_send_loop(f, len, flags,
                       [&](Instant now, size_t done) { return f.conn->send(now, {data + done, len - done}); });
}

ssize_t UserBackend::tcp_recv(TcpFile& f, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len) {
  if (flags & MSG_OOB) return fail(EINVAL);  // no urgent data is ever kept (SO_OOBINLINE off)
  if (!f.conn) return fail(ENOTCONN);
  if (len && !buf) return fail(EFAULT);
  if (src_len) *src_len = 0;  // a stream socket reports no source address
  (void)src;
  tcp::TcpConnection& c = *f.conn;
  Stack& stack = engine_->stack();
  const bool peek = flags & MSG_PEEK;
  const bool wait_all = (flags & MSG_WAITALL) && !peek;
  const bool no_wait = f.nonblocking || (flags & MSG_DONTWAIT) || f.recv_timeout.no_wait();
  auto* out = static_cast<uint8_t*>(buf);
  size_t done = 0;
  const Instant deadline = timeout_deadline(engine_->now(), f.recv_timeout);
  if (len == 0) return 0;
  for (;;) {
    if (int err = wait_readable(f, no_wait, deadline)) return done > 0 ? static_cast<ssize_t>(done) : fail(err);
    auto got = c.receive(engine_->now(), {out + done, len - done}, peek);
    stack.drain_loopback(engine_->now());
    stack.flush();
    if (!got) return done > 0 ? static_cast<ssize_t>(done) : fail(got.error());
    done += *got;
    if (*got == 0 || !wait_all || done == len) return static_cast<ssize_t>(done);
  }
}

int UserBackend::wait_readable(TcpFile& f, bool no_wait, Instant deadline) {
  tcp::TcpConnection& c = *f.conn;
  auto ready = [&] {
    if (c.readable() > 0) return true;
    if (handshaking(c)) return false;  // nothing to read yet
    return c.pending_error() || c.read_shut() || c.state() == tcp::State::kClosed;
  };
  if (!ready()) engine_->catch_up();  // a non-blocking caller still sees what already arrived
  while (!ready()) {
    if (no_wait) return EAGAIN;
    switch (wait(f, ready, deadline)) {
      case Engine::RunResult::kReady: break;
      case Engine::RunResult::kTimedOut: return EAGAIN;
      case Engine::RunResult::kInterrupted: return EINTR;
    }
  }
  return 0;
}

int UserBackend::recv_zc(int fd, RecvBuffer* out, int max, int flags) {
  OpenFile* opened = file(fd);
  if (!opened) return fail(EBADF);
  auto* f = dynamic_cast<TcpFile*>(opened);
  if (!f) return fail(EOPNOTSUPP);
  if (flags & ~MSG_DONTWAIT) return fail(EINVAL);
  if (max <= 0) return fail(EINVAL);
  if (!out) return fail(EFAULT);
  if (!f->conn) return fail(ENOTCONN);
  const bool no_wait = f->nonblocking || (flags & MSG_DONTWAIT) || f->recv_timeout.no_wait();
  if (int err = wait_readable(*f, no_wait, timeout_deadline(engine_->now(), f->recv_timeout))) return fail(err);
  std::array<Packet, 32> lent;
  const size_t want = std::min(lent.size(), static_cast<size_t>(max));
  auto got = f->conn->lend(engine_->now(), std::span(lent).first(want));
  Stack& stack = engine_->stack();
  stack.drain_loopback(engine_->now());
  stack.flush();
  if (!got) return fail(got.error());
  for (size_t i = 0; i < *got; ++i) {
    auto* owner = new Packet(std::move(lent[i]));
    out[i] = RecvBuffer{owner->data(), owner->size(), owner};
  }
  return static_cast<int>(*got);
}

int UserBackend::get_send_buffer(int fd, SendBuffer* out) {
  OpenFile* opened = file(fd);
  if (!opened) return fail(EBADF);
  auto* f = dynamic_cast<TcpFile*>(opened);
  if (!f) return fail(EOPNOTSUPP);
  if (!out) return fail(EFAULT);
  if (!f->conn) return fail(ENOTCONN);
  Packet buffer = f->conn->alloc_send_buffer();
  if (!buffer) return fail(ENOBUFS);
  const size_t capacity = std::min<size_t>(buffer.tailroom(), f->conn->mss());
  auto* owner = new Packet(std::move(buffer));
  *out = SendBuffer{owner->data(), capacity, 0, owner};
  return 0;
}

ssize_t UserBackend::send_zc(int fd, SendBuffer* buffers, int count, int flags) {
  OpenFile* opened = file(fd);
  if (!opened) return fail(EBADF);
  auto* f = dynamic_cast<TcpFile*>(opened);
  if (!f) return fail(EOPNOTSUPP);
  if (flags & ~(MSG_DONTWAIT | MSG_NOSIGNAL)) return fail(EINVAL);
  if (count <= 0) return fail(EINVAL);
  if (!buffers) return fail(EFAULT);
  constexpr size_t kMaxBuffers = 64;
  const size_t n = std::min(static_cast<size_t>(count), kMaxBuffers);
  for (size_t i = 0; i < n; ++i) {
    const SendBuffer& b = buffers[i];
    if (!b.owner || b.size == 0 || b.size > b.capacity) return fail(EINVAL);
  }
  // The bytes the caller wrote become the packets' contents; buffers not taken go back empty.
  std::array<Packet, kMaxBuffers> staged;
  for (size_t i = 0; i < n; ++i) {
    Packet& owner = *static_cast<Packet*>(buffers[i].owner);
    owner.append(buffers[i].size);
    staged[i] = std::move(owner);
  }
  const ssize_t taken = tcp_send_loop(*f, n, flags, [&](Instant now, size_t done) {
    return f->conn->send_buffers(now, std::span(staged).subspan(done, n - done));
  });
  for (size_t i = 0; i < n; ++i) {
    if (static_cast<ssize_t>(i) < taken) {
      delete static_cast<Packet*>(buffers[i].owner);
      buffers[i] = SendBuffer{};
    } else {
      Packet& owner = *static_cast<Packet*>(buffers[i].owner);
      owner = std::move(staged[i]);
      owner.truncate(0);
    }
  }
  return taken;
}

int UserBackend::tcp_shutdown(TcpFile& f, int how) {
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) return fail(EINVAL);
  Stack& stack = engine_->stack();
  const Instant now = engine_->now();
  if (f.listener) {
    // Linux (inet_shutdown): SHUT_RD stops a listener, as if it were closed; SHUT_WR does nothing.
    if (how != SHUT_WR) {
      stack.tcp().unlisten(now, *f.listener);
      f.listener.reset();
      f.changed(kPollIn | kPollOut | kPollHup);
    }
    stack.flush();
    return 0;
  }
  if (!f.conn || f.conn->state() == tcp::State::kClosed) return fail(ENOTCONN);
  tcp::TcpConnection& c = *f.conn;
  const bool was_connecting = handshaking(c);
  if (how != SHUT_WR) c.shutdown_read();
  if (how != SHUT_RD) c.shutdown_write(now);
  stack.drain_loopback(now);
  stack.flush();
  return was_connecting ? fail(ENOTCONN) : 0;
}

int UserBackend::tcp_setsockopt(TcpFile& f, int level, int name, const void* val, socklen_t len) {
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    if (!val) return fail(EFAULT);
    if (len < static_cast<socklen_t>(sizeof(timeval))) return fail(EINVAL);
    timeval tv;
    std::memcpy(&tv, val, sizeof tv);
    if (int err = parse_timeout(tv, name == SO_RCVTIMEO ? &f.recv_timeout : &f.send_timeout)) return fail(err);
    return 0;
  }
  if (level == SOL_SOCKET && name == SO_LINGER) {
    if (!val) return fail(EFAULT);
    if (len < static_cast<socklen_t>(sizeof(linger))) return fail(EINVAL);
    linger l;
    std::memcpy(&l, val, sizeof l);
    f.options.linger = l.l_onoff != 0;
    f.options.linger_seconds = std::max(l.l_linger, 0);
    f.options_changed();
    return 0;
  }
  if (level != SOL_SOCKET && level != IPPROTO_TCP) return fail(ENOPROTOOPT);
  if (!val) return fail(EFAULT);
  if (len < static_cast<socklen_t>(sizeof(int))) return fail(EINVAL);
  int v;
  std::memcpy(&v, val, sizeof v);
  tcp::SocketOptions& o = f.options;
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_REUSEADDR: o.reuse_addr = v != 0; break;
      case SO_REUSEPORT: o.reuse_port = v != 0; break;
      case SO_KEEPALIVE: o.keepalive = v != 0; break;
      case SO_RCVBUF:
        o.rcvbuf = static_cast<uint32_t>(
            std::max(udp::kMinRcvbuf, 2 * std::min(static_cast<size_t>(std::max(v, 0)), udp::kMaxBufOption)));
        break;
      case SO_SNDBUF:
        o.sndbuf = static_cast<uint32_t>(
            std::max(udp::kMinSndbuf, 2 * std::min(static_cast<size_t>(std::max(v, 0)), udp::kMaxBufOption)));
        break;
      default: return fail(ENOPROTOOPT);
    }
    if (name == SO_REUSEADDR || name == SO_REUSEPORT) {
      f.binding.reuse_addr = o.reuse_addr;
      f.binding.reuse_port = o.reuse_port;
    }
    f.options_changed();
    return 0;
  }
  switch (name) {
    case TCP_NODELAY: o.nodelay = v != 0; break;
    case TCP_KEEPIDLE:
      if (v < 1 || v > kMaxKeepIdle) return fail(EINVAL);
      o.keepalive_idle = tcp::SocketOptions::Seconds(v);
      break;
    case TCP_KEEPINTVL:
      if (v < 1 || v > kMaxKeepIntvl) return fail(EINVAL);
      o.keepalive_interval = tcp::SocketOptions::Seconds(v);
      break;
    case TCP_KEEPCNT:
      if (v < 1 || v > kMaxKeepCnt) return fail(EINVAL);
      o.keepalive_probes = static_cast<uint8_t>(v);
      break;
    case TCP_MAXSEG:
      if (v != 0 && (v < kMinUserMss || v > kMaxUserMss)) return fail(EINVAL);
      o.user_mss = static_cast<uint16_t>(v);
      break;
    default: return fail(ENOPROTOOPT);
  }
  f.options_changed();
  return 0;
}

int UserBackend::tcp_getsockopt(TcpFile& f, int level, int name, void* val, socklen_t* len) {
  const tcp::SocketOptions& o = f.options;
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_RCVTIMEO: return get_option(val, len, timeout_timeval(f.recv_timeout));
      case SO_SNDTIMEO: return get_option(val, len, timeout_timeval(f.send_timeout));
      case SO_LINGER: return get_option(val, len, linger{o.linger ? 1 : 0, o.linger_seconds});
      case SO_REUSEADDR: return get_option(val, len, int{o.reuse_addr});
      case SO_REUSEPORT: return get_option(val, len, int{o.reuse_port});
      case SO_KEEPALIVE: return get_option(val, len, int{o.keepalive});
      case SO_RCVBUF: return get_option(val, len, static_cast<int>(o.rcvbuf));
      case SO_SNDBUF: return get_option(val, len, static_cast<int>(o.sndbuf));
      case SO_ERROR: return get_option(val, len, f.conn ? f.conn->take_error() : 0);
      case SO_TYPE: return get_option(val, len, int{SOCK_STREAM});
      case SO_DOMAIN: return get_option(val, len, int{AF_INET});
      case SO_PROTOCOL: return get_option(val, len, int{IPPROTO_TCP});
      case SO_ACCEPTCONN: return get_option(val, len, int{f.listener != nullptr});
    }
    return fail(ENOPROTOOPT);
  }
  if (level != IPPROTO_TCP) return fail(ENOPROTOOPT);
  switch (name) {
    case TCP_NODELAY: return get_option(val, len, int{o.nodelay});
    case TCP_KEEPIDLE: return get_option(val, len, static_cast<int>(o.keepalive_idle.count()));
    case TCP_KEEPINTVL: return get_option(val, len, static_cast<int>(o.keepalive_interval.count()));
    case TCP_KEEPCNT: return get_option(val, len, int{o.keepalive_probes});
    case TCP_MAXSEG: {
      int mss = o.user_mss ? o.user_mss : kDefaultMss;
      if (f.conn && f.conn->synchronized()) mss = f.conn->mss();
      return get_option(val, len, mss);
    }
  }
  return fail(ENOPROTOOPT);
}

int UserBackend::tcp_getsockname(TcpFile& f, sockaddr* addr, socklen_t* len) {
  if (!addr || !len) return fail(EFAULT);
  udp::Endpoint ep{f.binding.addr, f.binding.port};
  if (f.conn) ep = local_of(*f.conn);
  encode_inet(ep, addr, len);
  return 0;
}

int UserBackend::tcp_getpeername(TcpFile& f, sockaddr* addr, socklen_t* len) {
  if (!f.conn || f.conn->state() == tcp::State::kClosed || f.conn->state() == tcp::State::kSynSent) {
    return fail(ENOTCONN);
  }
  if (!addr || !len) return fail(EFAULT);
  encode_inet(remote_of(*f.conn), addr, len);
  return 0;
}

}  // namespace ustack::api
