// The public calls: each one sends a descriptor to the backend that owns it.

#include <sys/resource.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <tuple>
#include <cerrno>
#include <ctime>
#include <vector>
#include <cstdarg>
#include <cstdlib>
#include <mutex>
#include <string>

#include "api/device_factory.h"
#include "api/engine_set.h"
#include "api/user_backend.h"
#include "ustack/epoll.h"
#include "ustack/poll.h"
#include "ustack/socket.h"
#include "ustack/ustack.h"

namespace ustack {
namespace {

struct Global {
  Backend backend = Backend::kKernel;
  /// One per engine; engine k serves the descriptors kUserFdBase + k, + k + N, ...
  std::vector<std::unique_ptr<api::UserBackend>> users;
  std::atomic<uint32_t> next_home{0};
  std::string last_error;
  bool print_stats_at_exit = false;
  bool initialised = false;
};

Global& g() {
  static Global global;
  return global;
}

int fail(int err) {
  errno = err;
  return -1;
}

// Every counter, then the gauges: open descriptors, TCP connections and how many of them are in
// TIME-WAIT (what leak checks read). Summed over the engines. A counter is read while its engine
// runs: each is a relaxed atomic or a word only its engine writes (a torn read cannot happen).
void for_each_stat(const api::CounterVisitor& visit) {
  auto& users = g().users;
  if (users.empty()) return;
  if (users.size() == 1) {
    api::UserBackend* u = users[0].get();
    u->engine().stack().stats().for_each(visit);
  } else {
    std::vector<std::tuple<std::string_view, std::string_view, uint64_t>> sums;
    for (auto& u : users) {
      size_t i = 0;
      u->engine().stack().stats().for_each([&](std::string_view layer, std::string_view name, uint64_t v) {
        if (i == sums.size()) sums.emplace_back(layer, name, 0);  // every engine lists the same counters
        std::get<2>(sums[i++]) += v;
      });
    }
    for (const auto& [layer, name, v] : sums) visit(layer, name, v);
  }
  uint64_t open = 0, connections = 0, time_wait = 0, handed = 0;
  for (auto& u : users) {
    open += static_cast<uint64_t>(u->open_descriptors());
    handed += u->engine().handed_calls();
    connections += u->engine().tcp_connections();
    time_wait += u->engine().tcp_time_wait();
  }
  visit("api", "open_descriptors", open);
  visit("api", "handed_calls", handed);
  visit("tcp", "connections", connections);
  visit("tcp", "time_wait", time_wait);
}

// The backend for a descriptor, or null (errno EBADF) for an ustack descriptor with no backend.
api::UserBackend* user_for(int fd) {
  if (!is_user_fd(fd)) return nullptr;
  auto& users = g().users;
  if (users.empty()) {
    errno = EBADF;
    return nullptr;
  }
  return users[static_cast<uint32_t>(fd - kUserFdBase) % users.size()].get();
}

// The engine of the calling thread: where its new sockets and epoll instances live. Threads are
// given engines round robin at their first call, unless they chose one (set_thread_engine).
thread_local int t_home_engine = -1;
api::UserBackend* home_user() {
  auto& users = g().users;
  if (users.empty()) return nullptr;
  if (t_home_engine < 0 || static_cast<size_t>(t_home_engine) >= users.size()) {
    t_home_engine = static_cast<int>(g().next_home.fetch_add(1, std::memory_order_relaxed) % users.size());
  }
  return users[static_cast<size_t>(t_home_engine)].get();
}

void start_users(std::vector<std::unique_ptr<api::Engine>> engines) {
  const auto count = static_cast<uint32_t>(engines.size());
  for (uint32_t k = 0; k < count; ++k) {
    g().users.push_back(std::make_unique<api::UserBackend>(std::move(engines[k]), k, count));
  }
  std::vector<api::Engine*> all;
  for (auto& u : g().users) all.push_back(&u->engine());
  for (auto& u : g().users) {
    u->engine().set_siblings(all);
    u->start();
  }
}

}  // namespace

namespace api {
/// For tests: run the ustack backend on devices of their choosing (in-memory ports).
void init_user_backends_for_test(std::vector<std::unique_ptr<Engine>> engines);
void init_user_backend_for_test(std::unique_ptr<Engine> engine) {
  std::vector<std::unique_ptr<Engine>> engines;
  engines.push_back(std::move(engine));
  init_user_backends_for_test(std::move(engines));
}
void init_user_backends_for_test(std::vector<std::unique_ptr<Engine>> engines) {
  start_users(std::move(engines));
  g().backend = Backend::kUstack;
  g().initialised = true;
}
UserBackend* user_backend() { return g().users.empty() ? nullptr : g().users[0].get(); }
}  // namespace api

bool parse_backend(std::string_view text, Backend* out) {
  if (text == "kernel") {
    *out = Backend::kKernel;
  } else if (text == "ustack") {
    *out = Backend::kUstack;
  } else {
    return false;
  }
  return true;
}

const char* backend_name(Backend b) { return b == Backend::kKernel ? "kernel" : "ustack"; }

Backend backend() { return g().backend; }
const char* last_error() { return g().last_error.c_str(); }

int init(const InitOptions& options) {
  Global& s = g();
  if (s.initialised) {
    s.last_error = "ustack::init called twice";
    return fail(EALREADY);
  }
  s.print_stats_at_exit = options.print_stats_at_exit;
  if (options.backend == Backend::kKernel) {
    s.backend = Backend::kKernel;
    s.initialised = true;
    return 0;
  }
  // Our descriptors start at kUserFdBase; the kernel's must never reach it.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_max != RLIM_INFINITY && lim.rlim_max >= rlim_t(kUserFdBase)) {
    s.last_error = "RLIMIT_NOFILE allows kernel descriptors >= 2^30, which ustack reserves for its own";
    return fail(EMFILE);
  }
  std::string path = options.config_file;
  if (path.empty()) {
    if (const char* p = std::getenv("USTACK_CONFIG")) path = p;
  }
  auto config = api::load_config(path, api::ustack_environment());
  if (!config) {
    s.last_error = config.error();
    return fail(EINVAL);
  }
  if (options.threaded) config->threaded = true;
  auto opened = api::open_device(*config, options.program_name);
  if (!opened) {
    s.last_error = opened.error();
    return fail(ENODEV);
  }
  start_users(api::make_engines(*config, std::move(opened->queues), std::move(opened->keepalive)));
  s.backend = Backend::kUstack;
  s.initialised = true;
  api::register_stats_telemetry(for_each_stat);
  std::atexit([] { ustack::shutdown(); });
  return 0;
}

void shutdown() {
  Global& s = g();
  if (s.users.empty()) return;
  if (s.print_stats_at_exit) print_stats(stderr);
  api::register_stats_telemetry(nullptr);  // the telemetry thread must stop reading first
  // Every engine stops before any goes: a running engine forwards frames to the others.
  int busy = 0;
  for (auto& u : s.users) busy += u->stop();
  if (busy > 0) {
    // Threads are still inside calls (blocked, say, in recv at exit): freeing the backends under
    // them would crash them. The engines have stopped; the process exit reclaims the rest.
    for (auto& u : s.users) (void)u.release();
    s.users.clear();
    return;
  }
  s.users.clear();
}

int engines() { return static_cast<int>(g().users.size()); }

int set_thread_engine(int index) {
  if (g().users.empty()) return fail(ENODEV);
  if (index < 0 || static_cast<size_t>(index) >= g().users.size()) return fail(EINVAL);
  t_home_engine = index;
  return 0;
}

int thread_engine() { return home_user() ? t_home_engine : -1; }

std::string stats_text() {
  std::string out;
  for_each_stat([&](std::string_view layer, std::string_view name, uint64_t v) {
    out += std::string(layer) + "." + std::string(name) + " " + std::to_string(v) + "\n";
  });
  return out;
}

std::string stats_json() {
  std::string out = "{";
  bool first = true;
  for_each_stat([&](std::string_view layer, std::string_view name, uint64_t v) {
    out += (first ? "\"" : ", \"") + std::string(layer) + "." + std::string(name) + "\": " + std::to_string(v);
    first = false;
  });
  return out + "}";
}

void print_stats(std::FILE* out) {
  std::string text = stats_text();
  std::fprintf(out, "ustack counters:\n%s", text.c_str());
}

int open_descriptors() {
  int n = 0;
  for (auto& u : g().users) n += u->open_descriptors();
  return n;
}

// ---- sockets ----

int socket(int domain, int type, int protocol) {
  if (g().backend == Backend::kUstack && !g().users.empty()) {
    if (domain == AF_INET) {
      api::UserBackend* u = home_user();
      const int fd = u->run([&](size_t) { return u->socket(domain, type, protocol); });
      if (fd < 0 && errno == EPROTONOSUPPORT && (type & 0xff) == SOCK_STREAM) {
        g().last_error = "TCP (SOCK_STREAM) is not served by the ustack backend in this release";
      }
      return fd;
    }
    if (domain == AF_INET6) {
      if (int err = api::UserBackend::socket_type_error(type)) return fail(err);  // Linux checks the type first
      g().last_error = "IPv6 is not served by the ustack backend yet";
      return fail(EAFNOSUPPORT);
    }
  }
  return ::socket(domain, type, protocol);  // AF_UNIX and friends: the kernel's, on either backend
}

// `done`: what the attempts of a call handed to another thread did so far (UserBackend::run).
#define USTACK_DISPATCH_PARTIAL(fd, user_call, kernel_call)                         \
  do {                                                                              \
    if (is_user_fd(fd)) {                                                           \
      api::UserBackend* u = user_for(fd);                                           \
      if (!u) return -1;                                                            \
      return u->run([&]([[maybe_unused]] size_t done) { return u->user_call; }, true); \
    }                                                                               \
    return kernel_call;                                                             \
  } while (0)
#define USTACK_DISPATCH(fd, user_call, kernel_call)                \
  do {                                                             \
    if (is_user_fd(fd)) {                                          \
      api::UserBackend* u = user_for(fd);                          \
      if (!u) return -1;                                           \
      return u->run([&](size_t) { return u->user_call; });         \
    }                                                              \
    return kernel_call;                                            \
  } while (0)

int bind(int fd, const sockaddr* a, socklen_t l) { USTACK_DISPATCH(fd, bind(fd, a, l), ::bind(fd, a, l)); }
int connect(int fd, const sockaddr* a, socklen_t l) { USTACK_DISPATCH(fd, connect(fd, a, l), ::connect(fd, a, l)); }
int listen(int fd, int backlog) { USTACK_DISPATCH(fd, listen(fd, backlog), ::listen(fd, backlog)); }
int accept(int fd, sockaddr* a, socklen_t* l) { USTACK_DISPATCH(fd, accept4(fd, a, l, 0), ::accept(fd, a, l)); }
int accept4(int fd, sockaddr* a, socklen_t* l, int flags) {
  USTACK_DISPATCH(fd, accept4(fd, a, l, flags), ::accept4(fd, a, l, flags));
}
namespace {
const void* skip(const void* b, size_t done) { return static_cast<const char*>(b) + done; }
void* skip(void* b, size_t done) { return static_cast<char*>(b) + done; }
}  // namespace

ssize_t send(int fd, const void* b, size_t n, int flags) {
  USTACK_DISPATCH_PARTIAL(fd, sendto(fd, skip(b, done), n - done, flags, nullptr, 0), ::send(fd, b, n, flags));
}
ssize_t recv(int fd, void* b, size_t n, int flags) {
  USTACK_DISPATCH_PARTIAL(fd, recvfrom(fd, skip(b, done), n - done, flags, nullptr, nullptr), ::recv(fd, b, n, flags));
}
ssize_t sendto(int fd, const void* b, size_t n, int flags, const sockaddr* a, socklen_t l) {
  USTACK_DISPATCH_PARTIAL(fd, sendto(fd, skip(b, done), n - done, flags, a, l), ::sendto(fd, b, n, flags, a, l));
}
ssize_t recvfrom(int fd, void* b, size_t n, int flags, sockaddr* a, socklen_t* l) {
  USTACK_DISPATCH_PARTIAL(fd, recvfrom(fd, skip(b, done), n - done, flags, a, l), ::recvfrom(fd, b, n, flags, a, l));
}
namespace {
// A kernel socket's zero-copy calls copy once, through buffers of the heap of this size.
constexpr size_t kKernelSendBuffer = 65536;

int kernel_stream_check(int fd) {
  int type = 0;
  socklen_t type_len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0) return errno;  // EBADF, ENOTSOCK
  return type == SOCK_STREAM ? 0 : EOPNOTSUPP;
}
}  // namespace

int recv_zc(int fd, RecvBuffer* out, int max, int flags) {
  if (is_user_fd(fd)) {
    api::UserBackend* u = user_for(fd);
    if (!u) return -1;
    return u->run([&](size_t) { return u->recv_zc(fd, out, max, flags); });
  }
  // A kernel socket: one copy, into a buffer released the same way.
  if (int err = kernel_stream_check(fd)) return fail(err);
  if (flags & ~MSG_DONTWAIT || max <= 0) return fail(EINVAL);
  if (!out) return fail(EFAULT);
  constexpr size_t kKernelBuffer = 65536;
  auto* owner = new Packet(Packet::heap(kKernelBuffer, 0));
  const ssize_t got = ::recv(fd, owner->append(kKernelBuffer), kKernelBuffer, flags);
  if (got <= 0) {
    const int err = errno;
    delete owner;
    return got == 0 ? 0 : fail(err);
  }
  owner->truncate(static_cast<size_t>(got));
  out[0] = RecvBuffer{owner->data(), owner->size(), owner};
  return 1;
}

void release_buffer(RecvBuffer& buffer) {
  delete static_cast<Packet*>(buffer.owner);
  buffer = RecvBuffer{};
}

int get_send_buffer(int fd, SendBuffer* out) {
  if (is_user_fd(fd)) {
    api::UserBackend* u = user_for(fd);
    if (!u) return -1;
    return u->run([&](size_t) { return u->get_send_buffer(fd, out); });
  }
  if (int err = kernel_stream_check(fd)) return fail(err);
  if (!out) return fail(EFAULT);
  sockaddr_storage peer;
  socklen_t peer_len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) return -1;  // ENOTCONN, as ustack
  auto* owner = new Packet(Packet::heap(kKernelSendBuffer, 0));
  *out = SendBuffer{owner->data(), kKernelSendBuffer, 0, owner};
  return 0;
}

ssize_t send_zc(int fd, SendBuffer* buffers, int count, int flags) {
  if (is_user_fd(fd)) {
    api::UserBackend* u = user_for(fd);
    if (!u) return -1;
    return u->run([&](size_t done) { return u->send_zc(fd, buffers + done, count - static_cast<int>(done), flags); },
                  true);
  }
  if (int err = kernel_stream_check(fd)) return fail(err);
  if ((flags & ~(MSG_DONTWAIT | MSG_NOSIGNAL)) || count <= 0) return fail(EINVAL);
  if (!buffers) return fail(EFAULT);
  const int n = std::min(count, 64);
  for (int i = 0; i < n; ++i) {
    if (!buffers[i].owner || buffers[i].size == 0 || buffers[i].size > buffers[i].capacity) return fail(EINVAL);
  }
  int taken = 0;
  for (; taken < n; ++taken) {
    SendBuffer& b = buffers[taken];
    const ssize_t sent = ::send(fd, b.data, b.size, flags);
    if (sent < 0) return taken > 0 ? taken : -1;
    if (static_cast<size_t>(sent) < b.size) {  // a non-blocking socket took part of it
      std::memmove(b.data, static_cast<uint8_t*>(b.data) + sent, b.size - static_cast<size_t>(sent));
      b.size -= static_cast<size_t>(sent);
      return taken > 0 ? taken : fail(EAGAIN);
    }
    release_send_buffer(b);
  }
  return taken;
}

void release_send_buffer(SendBuffer& buffer) {
  delete static_cast<Packet*>(buffer.owner);
  buffer = SendBuffer{};
}

ssize_t read(int fd, void* b, size_t n) {
  USTACK_DISPATCH_PARTIAL(fd, recvfrom(fd, skip(b, done), n - done, 0, nullptr, nullptr), ::read(fd, b, n));
}
ssize_t write(int fd, const void* b, size_t n) {
  USTACK_DISPATCH_PARTIAL(fd, sendto(fd, skip(b, done), n - done, 0, nullptr, 0), ::write(fd, b, n));
}
int close(int fd) { USTACK_DISPATCH(fd, close(fd), ::close(fd)); }
int shutdown(int fd, int how) { USTACK_DISPATCH(fd, shutdown(fd, how), ::shutdown(fd, how)); }
int setsockopt(int fd, int level, int name, const void* v, socklen_t l) {
  USTACK_DISPATCH(fd, setsockopt(fd, level, name, v, l), ::setsockopt(fd, level, name, v, l));
}
int getsockopt(int fd, int level, int name, void* v, socklen_t* l) {
  USTACK_DISPATCH(fd, getsockopt(fd, level, name, v, l), ::getsockopt(fd, level, name, v, l));
}
int getsockname(int fd, sockaddr* a, socklen_t* l) { USTACK_DISPATCH(fd, getsockname(fd, a, l), ::getsockname(fd, a, l)); }
int getpeername(int fd, sockaddr* a, socklen_t* l) { USTACK_DISPATCH(fd, getpeername(fd, a, l), ::getpeername(fd, a, l)); }

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);  // every command we or the kernel take here has at most one int/long
  va_end(ap);
  USTACK_DISPATCH(fd, fcntl(fd, cmd, arg), ::fcntl(fd, cmd, arg));
}

// ---- epoll ----

int epoll_create1(int flags) {
  if (g().backend == Backend::kUstack && !g().users.empty()) {
    api::UserBackend* u = home_user();
    return u->run([&](size_t) { return u->epoll_create1(flags); });
  }
  return ::epoll_create1(flags);
}

int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) {
  if (!is_user_fd(epfd) && is_user_fd(fd)) return fail(EPERM);  // a kernel epoll cannot watch ours
  const int result = [&] { USTACK_DISPATCH(epfd, epoll_ctl(epfd, op, fd, ev), ::epoll_ctl(epfd, op, fd, ev)); }();
  if (result < 0 && errno == EXDEV) {
    g().last_error = "epoll_ctl: the socket and the epoll instance are on different engines";
  }
  return result;
}

int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout_ms) {
  USTACK_DISPATCH(epfd, epoll_wait(epfd, events, maxevents, timeout_ms),
                  ::epoll_wait(epfd, events, maxevents, timeout_ms));
}

}  // namespace ustack

// ---- dup, sendfile ----

namespace ustack {

int dup(int fd) { USTACK_DISPATCH(fd, dup(fd, 0, false), ::dup(fd)); }

ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count) {
  if (is_user_fd(in_fd)) return fail(EINVAL);  // Linux: in_fd must support mmap-like reads; a socket does not
  // The attempts of a call handed over move the offset (or the file position) as they go.
  USTACK_DISPATCH_PARTIAL(out_fd, sendfile(out_fd, in_fd, offset, count - done), ::sendfile(out_fd, in_fd, offset, count));
}

// ---- poll, select ----

int poll(pollfd* fds, nfds_t nfds, int timeout_ms) {
  if (!g().users.empty()) {
    api::UserBackend* u = nullptr;
    for (nfds_t i = 0; i < nfds; ++i) {
      if (!is_user_fd(fds[i].fd)) continue;
      api::UserBackend* owner = user_for(fds[i].fd);
      if (u && owner != u) {
        g().last_error = "poll() over descriptors of two engines: each engine's sockets are polled on their own";
        return fail(EXDEV);
      }
      u = owner;
    }
    if (u) return u->run([&](size_t) { return u->poll(fds, nfds, timeout_ms); });
  }
  return ::poll(fds, nfds, timeout_ms);
}

int select(int nfds, FdSet* readfds, FdSet* writefds, FdSet* exceptfds, timeval* timeout) {
  // Linux implements select() over each file's poll: these are its POLLIN_SET, POLLOUT_SET and
  // POLLEX_SET (fs/select.c).
  constexpr short kReadable = POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR;
  constexpr short kWritable = POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR;
  constexpr short kExceptional = POLLPRI;
  if (nfds < 0) return fail(EINVAL);
  int timeout_ms = -1;
  timespec start{};
  if (timeout) {
    if (timeout->tv_sec < 0 || timeout->tv_usec < 0) return fail(EINVAL);
    const int64_t us = int64_t{timeout->tv_sec} * 1'000'000 + timeout->tv_usec;
    timeout_ms = static_cast<int>(std::min<int64_t>((us + 999) / 1000, INT32_MAX));
    clock_gettime(CLOCK_MONOTONIC, &start);
  }
  std::vector<pollfd> fds;
  auto add = [&](int fd) {
    short events = 0;
    if (readfds && readfds->is_set(fd)) events |= POLLIN;
    if (writefds && writefds->is_set(fd)) events |= POLLOUT;
    if (exceptfds && exceptfds->is_set(fd)) events |= POLLPRI;
    if (events) fds.push_back(pollfd{fd, events, 0});
  };
  for (int fd = 0; fd < std::min(nfds, FD_SETSIZE); ++fd) add(fd);
  if (nfds > kUserFdBase) {
    for (int i = 0; i < std::min(nfds - kUserFdBase, FD_SETSIZE); ++i) add(kUserFdBase + i);
  }
  int n = ustack::poll(fds.data(), fds.size(), timeout_ms);
  const int saved_errno = errno;
  if (timeout) {  // Linux writes back the time left, also after an error
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t elapsed_us = (now.tv_sec - start.tv_sec) * 1'000'000 + (now.tv_nsec - start.tv_nsec) / 1000;
    const int64_t left = std::max<int64_t>(int64_t{timeout->tv_sec} * 1'000'000 + timeout->tv_usec - elapsed_us, 0);
    timeout->tv_sec = static_cast<time_t>(left / 1'000'000);
    timeout->tv_usec = static_cast<suseconds_t>(left % 1'000'000);
  }
  if (n < 0) return fail(saved_errno);
  for (const pollfd& p : fds) {
    if (p.revents & POLLNVAL) return fail(EBADF);
  }
  if (readfds) readfds->zero();
  if (writefds) writefds->zero();
  if (exceptfds) exceptfds->zero();
  n = 0;
  for (const pollfd& p : fds) {
    if ((p.events & POLLIN) && (p.revents & kReadable)) n += readfds->set(p.fd);
    if ((p.events & POLLOUT) && (p.revents & kWritable)) n += writefds->set(p.fd);
    if ((p.events & POLLPRI) && (p.revents & kExceptional)) n += exceptfds->set(p.fd);
  }
  return n;
}

void FdSet::zero() {
  FD_ZERO(&kernel_);
  for (auto& w : user_) w = 0;
}

bool FdSet::set(int fd) {
  if (fd >= 0 && fd < FD_SETSIZE) {
    FD_SET(fd, &kernel_);
    return true;
  }
  const int64_t i = int64_t{fd} - kUserFdBase;
  if (i < 0 || i >= FD_SETSIZE) return false;
  user_[i / 64] |= uint64_t{1} << (i % 64);
  return true;
}

void FdSet::clear(int fd) {
  if (fd >= 0 && fd < FD_SETSIZE) {
    FD_CLR(fd, &kernel_);
    return;
  }
  const int64_t i = int64_t{fd} - kUserFdBase;
  if (i >= 0 && i < FD_SETSIZE) user_[i / 64] &= ~(uint64_t{1} << (i % 64));
}

bool FdSet::is_set(int fd) const {
  if (fd >= 0 && fd < FD_SETSIZE) return FD_ISSET(fd, &kernel_);
  const int64_t i = int64_t{fd} - kUserFdBase;
  return i >= 0 && i < FD_SETSIZE && (user_[i / 64] >> (i % 64)) & 1;
}

}  // namespace ustack
