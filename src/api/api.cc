// The public calls: each one sends a descriptor to the backend that owns it.

#include <sys/resource.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdlib>
#include <mutex>
#include <string>

#include "api/device_factory.h"
#include "api/user_backend.h"
#include "ustack/epoll.h"
#include "ustack/poll.h"
#include "ustack/socket.h"
#include "ustack/ustack.h"

namespace ustack {
namespace {

struct Global {
  Backend backend = Backend::kKernel;
  std::unique_ptr<api::UserBackend> user;
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

// The backend for a descriptor, or null (errno EBADF) for an ustack descriptor with no backend.
api::UserBackend* user_for(int fd) {
  if (!is_user_fd(fd)) return nullptr;
  if (!g().user) errno = EBADF;
  return g().user.get();
}

}  // namespace

namespace api {
/// For tests: run the ustack backend on a device of their choosing (an in-memory port).
void init_user_backend_for_test(std::unique_ptr<Engine> engine) {
  g().user = std::make_unique<UserBackend>(std::move(engine));
  g().backend = Backend::kUstack;
  g().initialised = true;
}
UserBackend* user_backend() { return g().user.get(); }
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
  auto opened = api::open_device(*config, options.program_name);
  if (!opened) {
    s.last_error = opened.error();
    return fail(ENODEV);
  }
  auto engine = std::make_unique<api::Engine>(*config, std::move(opened->device), std::move(opened->keepalive));
  s.user = std::make_unique<api::UserBackend>(std::move(engine));
  s.backend = Backend::kUstack;
  s.initialised = true;
  api::register_stats_telemetry([](const api::CounterVisitor& visit) {
    if (g().user) g().user->engine().stack().stats().for_each(visit);
  });
  std::atexit([] { ustack::shutdown(); });
  return 0;
}

void shutdown() {
  Global& s = g();
  if (!s.user) return;
  if (s.print_stats_at_exit) print_stats(stderr);
  api::register_stats_telemetry(nullptr);  // the telemetry thread must stop reading first
  s.user.reset();
}

std::string stats_text() {
  std::string out;
  if (!g().user) return out;
  g().user->engine().stack().stats().for_each([&](std::string_view layer, std::string_view name, uint64_t v) {
    out += std::string(layer) + "." + std::string(name) + " " + std::to_string(v) + "\n";
  });
  return out;
}

std::string stats_json() {
  std::string out = "{";
  if (g().user) {
    bool first = true;
    g().user->engine().stack().stats().for_each([&](std::string_view layer, std::string_view name, uint64_t v) {
      out += (first ? "\"" : ", \"") + std::string(layer) + "." + std::string(name) + "\": " + std::to_string(v);
      first = false;
    });
  }
  return out + "}";
}

void print_stats(std::FILE* out) {
  std::string text = stats_text();
  std::fprintf(out, "ustack counters:\n%s", text.c_str());
}

int open_descriptors() { return g().user ? g().user->open_descriptors() : 0; }

// ---- sockets ----

int socket(int domain, int type, int protocol) {
  if (g().backend == Backend::kUstack && g().user) {
    if (domain == AF_INET) {
      int fd = g().user->socket(domain, type, protocol);
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

#define USTACK_DISPATCH(fd, user_call, kernel_call) \
  do {                                              \
    if (is_user_fd(fd)) {                           \
      api::UserBackend* u = user_for(fd);           \
      return u ? u->user_call : -1;                 \
    }                                               \
    return kernel_call;                             \
  } while (0)

int bind(int fd, const sockaddr* a, socklen_t l) { USTACK_DISPATCH(fd, bind(fd, a, l), ::bind(fd, a, l)); }
int connect(int fd, const sockaddr* a, socklen_t l) { USTACK_DISPATCH(fd, connect(fd, a, l), ::connect(fd, a, l)); }
int listen(int fd, int backlog) { USTACK_DISPATCH(fd, listen(fd, backlog), ::listen(fd, backlog)); }
int accept(int fd, sockaddr* a, socklen_t* l) { USTACK_DISPATCH(fd, accept4(fd, a, l, 0), ::accept(fd, a, l)); }
int accept4(int fd, sockaddr* a, socklen_t* l, int flags) {
  USTACK_DISPATCH(fd, accept4(fd, a, l, flags), ::accept4(fd, a, l, flags));
}
ssize_t send(int fd, const void* b, size_t n, int flags) {
  USTACK_DISPATCH(fd, sendto(fd, b, n, flags, nullptr, 0), ::send(fd, b, n, flags));
}
ssize_t recv(int fd, void* b, size_t n, int flags) {
  USTACK_DISPATCH(fd, recvfrom(fd, b, n, flags, nullptr, nullptr), ::recv(fd, b, n, flags));
}
ssize_t sendto(int fd, const void* b, size_t n, int flags, const sockaddr* a, socklen_t l) {
  USTACK_DISPATCH(fd, sendto(fd, b, n, flags, a, l), ::sendto(fd, b, n, flags, a, l));
}
ssize_t recvfrom(int fd, void* b, size_t n, int flags, sockaddr* a, socklen_t* l) {
  USTACK_DISPATCH(fd, recvfrom(fd, b, n, flags, a, l), ::recvfrom(fd, b, n, flags, a, l));
}
ssize_t read(int fd, void* b, size_t n) { USTACK_DISPATCH(fd, recvfrom(fd, b, n, 0, nullptr, nullptr), ::read(fd, b, n)); }
ssize_t write(int fd, const void* b, size_t n) {
  USTACK_DISPATCH(fd, sendto(fd, b, n, 0, nullptr, 0), ::write(fd, b, n));
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
  if (g().backend == Backend::kUstack && g().user) return g().user->epoll_create1(flags);
  return ::epoll_create1(flags);
}

int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) {
  if (!is_user_fd(epfd) && is_user_fd(fd)) return fail(EPERM);  // a kernel epoll cannot watch ours
  USTACK_DISPATCH(epfd, epoll_ctl(epfd, op, fd, ev), ::epoll_ctl(epfd, op, fd, ev));
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
  USTACK_DISPATCH(out_fd, sendfile(out_fd, in_fd, offset, count), ::sendfile(out_fd, in_fd, offset, count));
}

// ---- poll, select ----

int poll(pollfd* fds, nfds_t nfds, int timeout_ms) {
  if (g().user) {
    for (nfds_t i = 0; i < nfds; ++i) {
      if (is_user_fd(fds[i].fd)) return g().user->poll(fds, nfds, timeout_ms);
    }
  }
  return ::poll(fds, nfds, timeout_ms);
}

int select(int nfds, FdSet* readfds, FdSet* writefds, FdSet* exceptfds, timeval* timeout) {
  (void)nfds; (void)readfds; (void)writefds; (void)exceptfds; (void)timeout;
  return fail(ENOSYS);
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
