// ustack under packetdrill: the shared object of packetdrill's --so_filename mode.
//
// One ustack stack (the public socket API on the ustack backend) sits on an in-memory port. What
// packetdrill injects (bare IPv4 packets) gets an Ethernet header and is received by the port;
// what the stack transmits loses its Ethernet header and waits in a queue for packetdrill to
// sniff. ARP never reaches packetdrill: the adapter answers the stack's requests itself, at once,
// as the peer (any address but our own).
//
// Time is simulated. The engine reads a ManualClock that only the adapter moves: usleep() moves
// it (stepping through every stack timer on the way, so a retransmission leaves at its own
// instant), gettimeofday() reads it as wall-clock time from 2023-11-14. A script runs as fast as
// the CPU allows and the same way every time.
//
// Threads. packetdrill's main thread (the "driver": the first thread to read the clock, sleep or
// touch the wire) injects and sniffs and makes the non-blocking calls; a second thread makes the
// calls a script marks as blocking ("+0...0.1"), sleeping itself until the call's time while the
// main thread waits for it. One mutex guards every entry into the stack. Inside, every ustack
// descriptor is non-blocking: a call the script expects to block is retried here, and between
// tries it waits on a condition variable that the driver signals whenever the stack may have
// changed (a packet injected, time moved, a call made). Determinism needs one more rule: after
// waking a blocked call, the driver does not move time on until that call has either gone back to
// sleep or returned and read the clock (packetdrill times a blocking call's return with
// gettimeofday right after it returns); otherwise the scheduler would pick the time it is given.
//
// A call that would block on the driver thread itself (the script did not mark it blocking) has
// nobody to move time for it: the adapter moves time itself, timer by timer, up to the call's
// timeout or kSilence, and then fails the call with EAGAIN and a note on stderr.
//
// Descriptors. packetdrill closes the descriptors a script left open with the real close(2) at
// teardown (socket_close() in its socket.c), and scripts expect small numbers; ustack's are
// >= 2^30. So each ustack descriptor is shown to packetdrill as a real kernel descriptor of its
// own (a memfd nobody reads) and translated on every call.
//
// --so_flags: comma-separated, all optional: local_ip=198.18.0.2 (must match packetdrill's
// --local_ip), prefix=24, gateway=<addr>, max_buffer=<bytes> (TcpConfig::max_buffer, default
// defaults.sh's tcp_rmem[2] = 15 MiB), verbose.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/engine.h"
#include "base/bytes.h"
#include "dev/memory_wire.h"
#include "eth/arp_packet.h"
#include "eth/frame.h"
#include "packetdrill_interface.h"
#include "ustack/epoll.h"
#include "ustack/socket.h"
#include "ustack/ustack.h"

namespace ustack::api {
void init_user_backend_for_test(std::unique_ptr<Engine> engine);
}

namespace ustack::packetdrill {
namespace {

/// gettimeofday() of simulated time zero: packetdrill wants wall-clock-like values.
constexpr int64_t kWallClockStartUs = 1'700'000'000LL * 1'000'000;
/// How long simulated time may run on while a sniff finds no packet or a call on the driver
/// thread cannot finish (packetdrill's own sniff gives up 2 s after the packet was due).
constexpr Duration kSilence = 10s;
/// How long (real time) the driver waits for a woken blocked call to settle before going on.
constexpr auto kSettleTimeout = std::chrono::seconds(2);
constexpr MacAddr kPeerMac({0x02, 0x00, 0x00, 0x00, 0x00, 0x01});

struct Options {
  Ipv4Cidr address{Ipv4Addr(198, 18, 0, 2), 24};
  std::optional<Ipv4Addr> gateway;
  size_t max_buffer = 15 * 1024 * 1024;  // defaults.sh's net.ipv4.tcp_rmem[2]
  bool verbose = false;
};

std::optional<Options> parse_flags(const char* flags) {
  Options o;
  if (!flags) return o;
  std::string_view rest(flags);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (key == "verbose") {
      o.verbose = true;
    } else if (key == "local_ip") {
      auto a = Ipv4Addr::parse(value);
      if (!a) return std::nullopt;
      o.address.addr = *a;
    } else if (key == "prefix") {
      const int p = std::atoi(std::string(value).c_str());
      if (p < 1 || p > 32) return std::nullopt;
      o.address.prefix_len = static_cast<uint8_t>(p);
    } else if (key == "max_buffer") {
      const long long v = std::atoll(std::string(value).c_str());
      if (v < 65536) return std::nullopt;
      o.max_buffer = static_cast<size_t>(v);
    } else if (key == "gateway") {
      auto a = Ipv4Addr::parse(value);
      if (!a) return std::nullopt;
      o.gateway = *a;
    } else {
      return std::nullopt;
    }
  }
  return o;
}

/// A packet the stack sent, for packetdrill to sniff.
struct Sent {
  std::vector<uint8_t> ip;
  long long time_usecs;
};

/// A descriptor as packetdrill sees it (a memfd) and the ustack descriptor behind it.
struct Descriptor {
  int user = -1;             // the ustack descriptor (always O_NONBLOCK inside ustack)
  bool nonblocking = false;  // O_NONBLOCK as the script set it
  dev_t dev = 0;             // the memfd's identity, so teardown never closes a reused number
  ino_t ino = 0;
};

class Adapter {
 public:
  explicit Adapter(const Options& options);
  ~Adapter();
  Adapter(const Adapter&) = delete;
  Adapter& operator=(const Adapter&) = delete;

  int socket(int domain, int type, int protocol);
  int bind(int fd, const sockaddr* addr, socklen_t len);
  int listen(int fd, int backlog);
  int accept(int fd, sockaddr* addr, socklen_t* len);
  int connect(int fd, const sockaddr* addr, socklen_t len);
  ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len);
  ssize_t readv(int fd, const iovec* iov, int iovcnt);
  ssize_t recvmsg(int fd, msghdr* msg, int flags);
  ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* dst, socklen_t dst_len);
  ssize_t writev(int fd, const iovec* iov, int iovcnt);
  ssize_t sendmsg(int fd, const msghdr* msg, int flags);
  int fcntl(int fd, int cmd, long arg);
  int ioctl(int fd, unsigned long request);
  int close(int fd);
  int shutdown(int fd, int how);
  int getsockopt(int fd, int level, int name, void* val, socklen_t* len);
  int setsockopt(int fd, int level, int name, const void* val, socklen_t len);
  int poll(pollfd* fds, nfds_t nfds, int timeout_ms);
  int epoll_create(int size);
  int epoll_ctl(int epfd, int op, int fd, epoll_event* event);
  int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms);
  int netdev_send(const void* buf, size_t count);
  int netdev_receive(void* buf, size_t* count, long long* time_usecs);
  int usleep(useconds_t usec);
  int gettimeofday(timeval* tv);

 private:
  using Lock = std::unique_lock<std::mutex>;

  /// Runs `body(lock)` under the mutex, then collects what the stack sent and, on the driver
  /// thread, wakes blocked calls. errno is what `body` left.
  template <typename Body>
  auto entry(Body&& body);
  /// A call that may block: `attempt(final)` tries once and returns the call's result, or nullopt
  /// when it would block (never when `final`). Waits between tries while `may_wait`, until
  /// `deadline` (then one final try).
  template <typename Attempt>
  auto blocking(Lock& lock, bool may_wait, Instant deadline, Attempt&& attempt)
      -> typename decltype(attempt(true))::value_type;
  /// Between two tries of a blocked call: waits for the driver (other threads), or moves time
  /// itself (the driver). False when the driver has moved time for kSilence in vain.
  bool wait_once(Lock& lock, Instant deadline, Instant start, bool& counted_awake);

  bool is_driver() const { return !driver_ || *driver_ == std::this_thread::get_id(); }
  void claim_driver() {
    if (!driver_) driver_ = std::this_thread::get_id();
  }
  /// Polls the stack and moves its frames to `out_` (answering ARP on the way).
  void pump();
  /// One frame the stack transmitted; true when it was an ARP request the adapter answered.
  bool take_frame(std::span<const uint8_t> frame);
  void inject_ip(std::span<const uint8_t> ip);
  /// Whoever moves time or changes the stack for others (the driver; packetdrill's second thread
  /// while it sleeps before its own call): wakes every blocked call and waits until each has
  /// settled (see the file comment).
  void kick(Lock& lock);
  void settle(Lock& lock);
  /// Moves time to `target`, one stack timer (or blocked call's deadline) at a time, stopping
  /// early once `stop()` holds.
  template <typename Stop>
  void advance_to(Lock& lock, Instant target, Stop&& stop);
  void step_to(Lock& lock, Instant t);
  Instant earliest_deadline() const { return deadlines_.empty() ? Instant::max() : *deadlines_.begin(); }
  long long wall_usecs() const { return kWallClockStartUs + clock_.now().ns() / 1000; }

  /// The descriptor behind packetdrill's `fd`, or null with errno EBADF.
  Descriptor* find(int fd);
  /// Shows ustack descriptor `user` to packetdrill as a fresh kernel descriptor.
  int adopt(int user, bool nonblocking);
  /// When a wait bounded by SO_RCVTIMEO / SO_SNDTIMEO of `user` ends (Instant::max(): never).
  Instant socket_deadline(int user, int option);
  /// The poll(2) events of one ustack descriptor (POLLNVAL if it cannot be watched).
  short probe(int user, short events);
  ssize_t recv_locked(Lock& lock, int fd, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len);
  ssize_t send_locked(Lock& lock, int fd, const void* buf, size_t len, int flags);

  const Options options_;
  std::mutex mu_;
  std::condition_variable changed_;  // blocked calls wait here for generation_ to move
  std::condition_variable settled_;  // the driver waits here for woken calls to settle
  ManualClock clock_;
  dev::MemoryPort* port_ = nullptr;  // owned by the engine
  api::Engine* engine_ = nullptr;    // owned by the ustack backend
  std::deque<Sent> out_;
  std::map<int, Descriptor> fds_;  // by packetdrill's (kernel) descriptor
  int probe_epfd_ = -1;            // a ustack epoll instance poll() uses to read readiness
  std::optional<std::thread::id> driver_;
  uint64_t generation_ = 0;
  int sleeping_ = 0;                       // blocked calls waiting for the generation to move
  int awake_ = 0;                          // woken by the driver, not yet asleep again or returned
  std::multiset<std::thread::id> unstamped_;  // returned after a wait; their clock reading is due
  std::multiset<Instant> deadlines_;       // of the blocked calls that sleep
  std::optional<std::thread::id> last_reader_;  // who made the last adapter call, if gettimeofday()
  int reads_in_a_row_ = 0;                 // its consecutive gettimeofday() calls
};

Adapter::Adapter(const Options& options) : options_(options) {
  api::EngineConfig config;
  config.clock = &clock_;
  config.idle_spin = 0ns;
  config.stack.address = options.address;
  config.stack.gateway = options.gateway;
  config.stack.seed = 1;
  config.stack.gratuitous_arp = false;
  // What packetdrill's gtests/net/tcp/common/defaults.sh sets, where ustack has the same knob
  // (the rest of that file tunes Linux features ustack does not have).
  config.stack.tcp.rcvbuf = 540000;                 // net.ipv4.tcp_rmem[1]
  config.stack.tcp.max_buffer = options.max_buffer; // net.ipv4.tcp_rmem[2]
  config.stack.tcp.sndbuf = 256 * 1024;             // net.ipv4.tcp_wmem[1]
  config.stack.tcp.syn_retries = 5;                 // net.ipv4.tcp_syn_retries
  config.stack.tcp.synack_retries = 5;              // net.ipv4.tcp_synack_retries
  auto port = std::make_unique<dev::MemoryPort>(clock_, dev::test_caps(2), "packetdrill");
  port_ = port.get();
  auto engine = std::make_unique<api::Engine>(config, std::move(port), nullptr);
  engine_ = engine.get();
  api::init_user_backend_for_test(std::move(engine));
  probe_epfd_ = ustack::epoll_create1(0);
}

Adapter::~Adapter() {
  for (const auto& [fd, d] : fds_) {
    struct stat st {};
    // packetdrill may have closed the number already (and the kernel reused it): check it is ours.
    if (::fstat(fd, &st) == 0 && st.st_dev == d.dev && st.st_ino == d.ino) ::close(fd);
  }
  fds_.clear();
  ustack::shutdown();  // closes every ustack descriptor, then the engine, then the port
}

template <typename Body>
auto Adapter::entry(Body&& body) {
  Lock lock(mu_);
  last_reader_.reset();
  auto result = body(lock);
  const int saved = errno;
  pump();
  if (is_driver()) kick(lock);
  errno = saved;
  return result;
}

template <typename Attempt>
auto Adapter::blocking(Lock& lock, bool may_wait, Instant deadline, Attempt&& attempt)
    -> typename decltype(attempt(true))::value_type {
  const Instant start = clock_.now();
  bool counted_awake = false;  // the driver woke this thread and waits for it to settle
  bool gave_up = false;
  for (;;) {
    const bool final = !may_wait || gave_up || clock_.now() >= deadline;
    auto result = attempt(final);
    if (result) {
      if (counted_awake) {
        const int saved = errno;
        pump();
        --awake_;
        unstamped_.insert(std::this_thread::get_id());
        settled_.notify_all();
        errno = saved;
      }
      return *result;
    }
    gave_up = !wait_once(lock, deadline, start, counted_awake);
  }
}

bool Adapter::wait_once(Lock& lock, Instant deadline, Instant start, bool& counted_awake) {
  if (is_driver()) {
    const Instant limit = start + kSilence;
    if (clock_.now() >= limit) {
      std::fprintf(stderr,
                   "ustack_packetdrill: a call on packetdrill's main thread would block; %.1f s of simulated time "
                   "went by without it finishing (a script marks a call that blocks with \"...\")\n",
                   std::chrono::duration<double>(kSilence).count());
      return false;
    }
    const Instant next = std::min({engine_->stack().next_wakeup(), deadline, limit});
    step_to(lock, std::max(next, clock_.now() + 1us));
    return true;
  }
  pump();
  if (counted_awake) {
    --awake_;
    counted_awake = false;
  }
  const bool bounded = deadline != Instant::max();
  if (bounded) deadlines_.insert(deadline);
  ++sleeping_;
  settled_.notify_all();
  const uint64_t generation = generation_;
  changed_.wait(lock, [&] { return generation_ != generation; });
  if (bounded) deadlines_.erase(deadlines_.find(deadline));
  counted_awake = true;  // kick() moved us from sleeping_ to awake_
  return true;
}

void Adapter::pump() {
  for (int round = 0; round < 4; ++round) {
    engine_->poll_once();
    bool answered = false;
    for (Packet& frame : port_->take_sent()) answered |= take_frame(frame.bytes());
    if (!answered) return;  // an ARP answer was injected: let the stack send what waited for it
  }
}

bool Adapter::take_frame(std::span<const uint8_t> frame) {
  auto eth = eth::FrameRepr::parse(frame);
  if (!eth) return false;
  const std::span<const uint8_t> payload = frame.subspan(eth::FrameRepr::header_len());
  if (eth->ethertype == static_cast<uint16_t>(eth::EtherType::kArp)) {
    auto arp = eth::ArpRepr::parse(payload);
    if (!arp || arp->op != eth::ArpOp::kRequest || arp->target_ip == options_.address.addr) return false;
    eth::ArpRepr reply{eth::ArpOp::kReply, kPeerMac, arp->target_ip, arp->sender_mac, arp->sender_ip};
    std::vector<uint8_t> bytes(eth::FrameRepr::header_len() + eth::ArpRepr::len());
    eth::FrameRepr{arp->sender_mac, kPeerMac, static_cast<uint16_t>(eth::EtherType::kArp)}.emit(bytes);
    reply.emit(std::span<uint8_t>(bytes).subspan(eth::FrameRepr::header_len()));
    port_->inject(bytes);
    if (options_.verbose) {
      std::fprintf(stderr, "ustack_packetdrill: answered ARP for %s\n", arp->target_ip.to_string().c_str());
    }
    return true;
  }
  if (eth->ethertype != static_cast<uint16_t>(eth::EtherType::kIpv4) || payload.size() < 20) return false;
  // Drop Ethernet padding: the packet is as long as its IPv4 total length says.
  const size_t total = std::min<size_t>(payload.size(), load_be16(payload.data() + 2));
  out_.push_back(Sent{std::vector<uint8_t>(payload.begin(), payload.begin() + static_cast<ptrdiff_t>(total)),
                      wall_usecs()});
  return false;
}

void Adapter::inject_ip(std::span<const uint8_t> ip) {
  std::vector<uint8_t> bytes(eth::FrameRepr::header_len());
  eth::FrameRepr{port_->caps().mac, kPeerMac, static_cast<uint16_t>(eth::EtherType::kIpv4)}.emit(bytes);
  bytes.insert(bytes.end(), ip.begin(), ip.end());
  port_->inject(bytes);
}

void Adapter::kick(Lock& lock) {
  if (sleeping_ > 0) {
    awake_ += sleeping_;
    sleeping_ = 0;
    ++generation_;
    changed_.notify_all();
  }
  settle(lock);
}

void Adapter::settle(Lock& lock) {
  if (awake_ == 0 && unstamped_.empty()) return;
  if (!settled_.wait_for(lock, kSettleTimeout, [&] { return awake_ == 0 && unstamped_.empty(); })) {
    std::fprintf(stderr,
                 "ustack_packetdrill: a woken blocking call did not settle within %lld s; going on (its "
                 "return may be timed late)\n",
                 static_cast<long long>(kSettleTimeout.count()));
    unstamped_.clear();
  }
}

void Adapter::step_to(Lock& lock, Instant t) {
  if (t > clock_.now()) clock_.set(t);
  pump();
  kick(lock);
}

template <typename Stop>
void Adapter::advance_to(Lock& lock, Instant target, Stop&& stop) {
  settle(lock);
  while (clock_.now() < target && !stop()) {
    Instant next = std::min({target, engine_->stack().next_wakeup(), earliest_deadline()});
    // A timer due now has just run (pump): step on by at least a microsecond.
    next = std::min(target, std::max(next, clock_.now() + 1us));
    step_to(lock, next);
  }
}

Descriptor* Adapter::find(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) {
    errno = EBADF;
    return nullptr;
  }
  return &it->second;
}

int Adapter::adopt(int user, bool nonblocking) {
  const int fd = ::memfd_create("ustack-packetdrill-socket", MFD_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    const int err = fd < 0 ? errno : EMFILE;
    if (fd >= 0) ::close(fd);
    ustack::close(user);
    errno = err;
    return -1;
  }
  fds_[fd] = Descriptor{user, nonblocking, st.st_dev, st.st_ino};
  return fd;
}

Instant Adapter::socket_deadline(int user, int option) {
  timeval tv{};
  socklen_t len = sizeof tv;
  const int saved = errno;
  const bool set = ustack::getsockopt(user, SOL_SOCKET, option, &tv, &len) == 0 && (tv.tv_sec != 0 || tv.tv_usec != 0);
  errno = saved;
  if (!set) return Instant::max();
  return clock_.now() + std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
}

short Adapter::probe(int user, short events) {
  epoll_event ev{};
  ev.events = static_cast<uint32_t>(static_cast<unsigned short>(events)) | EPOLLERR | EPOLLHUP;
  if (ustack::epoll_ctl(probe_epfd_, EPOLL_CTL_ADD, user, &ev) != 0) return POLLNVAL;
  epoll_event got{};
  const int n = ustack::epoll_wait(probe_epfd_, &got, 1, 0);
  ustack::epoll_ctl(probe_epfd_, EPOLL_CTL_DEL, user, nullptr);
  if (n <= 0) return 0;
  // poll(2) and epoll share the bit values on Linux; POLLERR and POLLHUP are always reported.
  return static_cast<short>(got.events & (static_cast<unsigned short>(events) | POLLERR | POLLHUP));
}

// ---- the socket calls ----

int Adapter::socket(int domain, int type, int protocol) {
  return entry([&](Lock&) {
    const int user = ustack::socket(domain, type | SOCK_NONBLOCK, protocol);
    if (user < 0) return -1;
    return adopt(user, (type & SOCK_NONBLOCK) != 0);
  });
}

int Adapter::bind(int fd, const sockaddr* addr, socklen_t len) {
  return entry([&](Lock&) {
    Descriptor* d = find(fd);
    return d ? ustack::bind(d->user, addr, len) : -1;
  });
}

int Adapter::listen(int fd, int backlog) {
  return entry([&](Lock&) {
    Descriptor* d = find(fd);
    return d ? ustack::listen(d->user, backlog) : -1;
  });
}

int Adapter::accept(int fd, sockaddr* addr, socklen_t* len) {
  return entry([&](Lock& lock) {
    Descriptor* d = find(fd);
    if (!d) return -1;
    const Instant deadline = socket_deadline(d->user, SO_RCVTIMEO);
    return blocking(lock, !d->nonblocking, deadline, [&](bool final) -> std::optional<int> {
      Descriptor* l = find(fd);  // looked up again: another thread may have closed it meanwhile
      if (!l) return -1;
      const int user = ustack::accept4(l->user, addr, len, SOCK_NONBLOCK);
      if (user >= 0) return adopt(user, false);
      if (errno == EAGAIN && !final) return std::nullopt;
      return -1;
    });
  });
}

int Adapter::connect(int fd, const sockaddr* addr, socklen_t len) {
  return entry([&](Lock& lock) {
    Descriptor* d = find(fd);
    if (!d) return -1;
    const bool waits = !d->nonblocking;
    return blocking(lock, waits, socket_deadline(d->user, SO_SNDTIMEO), [&](bool final) -> std::optional<int> {
      Descriptor* c = find(fd);
      if (!c) return -1;
      if (ustack::connect(c->user, addr, len) == 0) return 0;
      // Inside ustack the socket is non-blocking: EINPROGRESS, then EALREADY while the handshake
      // runs. A blocking connect waits for the outcome, which the next connect() reports.
      if (waits && (errno == EINPROGRESS || errno == EALREADY)) {
        if (!final) return std::nullopt;
        errno = EINPROGRESS;  // Linux, when SO_SNDTIMEO ends a blocking connect
      }
      return -1;
    });
  });
}

ssize_t Adapter::recv_locked(Lock& lock, int fd, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len) {
  Descriptor* d = find(fd);
  if (!d) return -1;
  const bool wait_all = (flags & MSG_WAITALL) && !(flags & MSG_PEEK);
  const bool may_wait = !d->nonblocking && !(flags & MSG_DONTWAIT);
  auto* out = static_cast<uint8_t*>(buf);
  size_t done = 0;
  return blocking(lock, may_wait, socket_deadline(d->user, SO_RCVTIMEO), [&](bool final) -> std::optional<ssize_t> {
    Descriptor* r = find(fd);
    if (!r) return done > 0 ? static_cast<ssize_t>(done) : -1;
    const ssize_t n =
        ustack::recvfrom(r->user, out ? out + done : nullptr, len - done, flags & ~MSG_WAITALL, src, src_len);
    if (n > 0) {
      done += static_cast<size_t>(n);
      if (!wait_all || done == len || final) return static_cast<ssize_t>(done);
      return std::nullopt;  // MSG_WAITALL: wait for the rest
    }
    if (n == 0) return static_cast<ssize_t>(done);  // end of stream (or len 0)
    if (errno == EAGAIN && !final) return std::nullopt;
    return done > 0 ? static_cast<ssize_t>(done) : -1;
  });
}

ssize_t Adapter::send_locked(Lock& lock, int fd, const void* buf, size_t len, int flags) {
  Descriptor* d = find(fd);
  if (!d) return -1;
  const bool may_wait = !d->nonblocking && !(flags & MSG_DONTWAIT);
  const auto* in = static_cast<const uint8_t*>(buf);
  size_t done = 0;
  return blocking(lock, may_wait, socket_deadline(d->user, SO_SNDTIMEO), [&](bool final) -> std::optional<ssize_t> {
    Descriptor* s = find(fd);
    if (!s) return done > 0 ? static_cast<ssize_t>(done) : -1;
    const ssize_t n = ustack::send(s->user, in ? in + done : nullptr, len - done, flags);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      // A blocking send returns once everything is queued (Linux's tcp_sendmsg).
      if (done == len || final) return static_cast<ssize_t>(done);
      return std::nullopt;
    }
    if (errno == EAGAIN && !final) return std::nullopt;
    return done > 0 ? static_cast<ssize_t>(done) : -1;
  });
}

ssize_t Adapter::recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* src, socklen_t* src_len) {
  return entry([&](Lock& lock) { return recv_locked(lock, fd, buf, len, flags, src, src_len); });
}

ssize_t Adapter::readv(int fd, const iovec* iov, int iovcnt) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(std::max(iovcnt, 0));
  return recvmsg(fd, &msg, 0);
}

ssize_t Adapter::recvmsg(int fd, msghdr* msg, int flags) {
  if (!msg) {
    errno = EFAULT;
    return -1;
  }
  size_t total = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) total += msg->msg_iov[i].iov_len;
  std::vector<uint8_t> tmp(total);
  socklen_t name_len = msg->msg_namelen;
  const ssize_t n = entry([&](Lock& lock) {
    return recv_locked(lock, fd, tmp.data(), total, flags, static_cast<sockaddr*>(msg->msg_name),
                       msg->msg_name ? &name_len : nullptr);
  });
  if (n < 0) return n;
  size_t at = 0;
  for (size_t i = 0; i < msg->msg_iovlen && at < static_cast<size_t>(n); ++i) {
    const size_t k = std::min(msg->msg_iov[i].iov_len, static_cast<size_t>(n) - at);
    std::memcpy(msg->msg_iov[i].iov_base, tmp.data() + at, k);
    at += k;
  }
  if (msg->msg_name) msg->msg_namelen = name_len;
  msg->msg_controllen = 0;  // ustack's API delivers no control messages
  msg->msg_flags = 0;
  return n;
}

ssize_t Adapter::sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* dst, socklen_t dst_len) {
  (void)dst;  // a stream socket ignores the destination, as Linux's TCP does
  (void)dst_len;
  return entry([&](Lock& lock) { return send_locked(lock, fd, buf, len, flags); });
}

ssize_t Adapter::writev(int fd, const iovec* iov, int iovcnt) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(std::max(iovcnt, 0));
  return sendmsg(fd, &msg, 0);
}

ssize_t Adapter::sendmsg(int fd, const msghdr* msg, int flags) {
  if (!msg) {
    errno = EFAULT;
    return -1;
  }
  if (msg->msg_controllen > 0) {
    std::fprintf(stderr, "ustack_packetdrill: sendmsg() with control messages: ustack's API has none\n");
    errno = EOPNOTSUPP;
    return -1;
  }
  std::vector<uint8_t> tmp;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) {
    const auto* p = static_cast<const uint8_t*>(msg->msg_iov[i].iov_base);
    tmp.insert(tmp.end(), p, p + msg->msg_iov[i].iov_len);
  }
  return entry([&](Lock& lock) { return send_locked(lock, fd, tmp.data(), tmp.size(), flags); });
}

int Adapter::fcntl(int fd, int cmd, long arg) {
  return entry([&](Lock&) {
    Descriptor* d = find(fd);
    if (!d) return -1;
    if (cmd == F_GETFL) {
      const int fl = ustack::fcntl(d->user, F_GETFL);
      if (fl < 0) return -1;
      return (fl & ~O_NONBLOCK) | (d->nonblocking ? O_NONBLOCK : 0);
    }
    if (cmd == F_SETFL) {
      if (ustack::fcntl(d->user, F_SETFL, arg | O_NONBLOCK) < 0) return -1;
      d->nonblocking = (arg & O_NONBLOCK) != 0;
      return 0;
    }
    return ustack::fcntl(d->user, cmd, arg);
  });
}

int Adapter::ioctl(int fd, unsigned long request) {
  return entry([&](Lock&) {
    if (!find(fd)) return -1;
    std::fprintf(stderr, "ustack_packetdrill: ioctl(%#lx): ustack's API has no ioctl\n", request);
    errno = ENOTTY;
    return -1;
  });
}

int Adapter::close(int fd) {
  return entry([&](Lock&) {
    Descriptor* d = find(fd);
    if (!d) return -1;
    const int r = ustack::close(d->user);
    const int saved = errno;
    fds_.erase(fd);
    ::close(fd);
    errno = saved;
    return r;
  });
}

int Adapter::shutdown(int fd, int how) {
  return entry([&](Lock&) {
    Descriptor* d = find(fd);
    return d ? ustack::shutdown(d->user, how) : -1;
  });
}

int Adapter::getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
  return entry([&](Lock&) {
    Descriptor* d = find(fd);
    return d ? ustack::getsockopt(d->user, level, name, val, len) : -1;
  });
}

int Adapter::setsockopt(int fd, int level, int name, const void* val, socklen_t len) {
  return entry([&](Lock&) {
    Descriptor* d = find(fd);
    return d ? ustack::setsockopt(d->user, level, name, val, len) : -1;
  });
}

int Adapter::poll(pollfd* fds, nfds_t nfds, int timeout_ms) {
  return entry([&](Lock& lock) {
    const Instant deadline = timeout_ms > 0 ? clock_.now() + std::chrono::milliseconds(timeout_ms) : Instant::max();
    return blocking(lock, timeout_ms != 0, deadline, [&](bool final) -> std::optional<int> {
      int ready = 0;
      for (nfds_t i = 0; i < nfds; ++i) {
        fds[i].revents = 0;
        if (fds[i].fd < 0) continue;
        auto it = fds_.find(fds[i].fd);
        fds[i].revents = it == fds_.end() ? short{POLLNVAL} : probe(it->second.user, fds[i].events);
        if (fds[i].revents) ++ready;
      }
      if (ready > 0 || final) return ready;
      return std::nullopt;
    });
  });
}

int Adapter::epoll_create(int size) {
  return entry([&](Lock&) {
    if (size <= 0) {
      errno = EINVAL;
      return -1;
    }
    const int user = ustack::epoll_create1(0);
    return user < 0 ? -1 : adopt(user, false);
  });
}

int Adapter::epoll_ctl(int epfd, int op, int fd, epoll_event* event) {
  return entry([&](Lock&) {
    Descriptor* ep = find(epfd);
    Descriptor* d = ep ? find(fd) : nullptr;
    return d ? ustack::epoll_ctl(ep->user, op, d->user, event) : -1;
  });
}

int Adapter::epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  return entry([&](Lock& lock) {
    const Instant deadline = timeout_ms > 0 ? clock_.now() + std::chrono::milliseconds(timeout_ms) : Instant::max();
    return blocking(lock, timeout_ms != 0, deadline, [&](bool final) -> std::optional<int> {
      Descriptor* ep = find(epfd);
      if (!ep) return -1;
      const int n = ustack::epoll_wait(ep->user, events, max, 0);
      if (n != 0 || final) return n;
      return std::nullopt;
    });
  });
}

// ---- the wire and the clock ----

int Adapter::netdev_send(const void* buf, size_t count) {
  return entry([&](Lock&) {
    claim_driver();
    const std::span<const uint8_t> ip(static_cast<const uint8_t*>(buf), count);
    if (ip.empty() || (ip[0] >> 4) != 4) {
      std::fprintf(stderr, "ustack_packetdrill: only IPv4 packets can be injected (ustack has no IPv6)\n");
      errno = EAFNOSUPPORT;
      return -1;
    }
    inject_ip(ip);
    return 0;
  });
}

int Adapter::netdev_receive(void* buf, size_t* count, long long* time_usecs) {
  return entry([&](Lock& lock) {
    claim_driver();
    settle(lock);
    pump();
    if (out_.empty()) advance_to(lock, clock_.now() + kSilence, [&] { return !out_.empty(); });
    if (out_.empty()) {
      std::fprintf(stderr, "ustack_packetdrill: the stack sent nothing in %.1f s of simulated time\n",
                   std::chrono::duration<double>(kSilence).count());
      *count = 0;
      return 0;
    }
    Sent& p = out_.front();
    const size_t n = std::min(*count, p.ip.size());
    std::memcpy(buf, p.ip.data(), n);
    *count = n;
    *time_usecs = p.time_usecs;
    out_.pop_front();
    return 0;
  });
}

int Adapter::usleep(useconds_t usec) {
  return entry([&](Lock& lock) {
    claim_driver();
    advance_to(lock, clock_.now() + std::chrono::microseconds(usec), [] { return false; });
    return 0;
  });
}

int Adapter::gettimeofday(timeval* tv) {
  Lock lock(mu_);
  claim_driver();
  if (auto it = unstamped_.find(std::this_thread::get_id()); it != unstamped_.end()) {
    unstamped_.erase(it);  // a blocked call's return is timed now: the driver may move time on
    settled_.notify_all();
  } else {
    // packetdrill spins on gettimeofday() for the last 20 us before an event (wait_for_event in
    // its run.c, on either thread). On a clock only usleep() moved the spin would never end: a
    // thread that reads the clock twice with no other call in between moves it 1 us.
    const std::thread::id me = std::this_thread::get_id();
    reads_in_a_row_ = last_reader_ == me ? reads_in_a_row_ + 1 : 1;
    last_reader_ = me;
    if (reads_in_a_row_ >= 2) advance_to(lock, clock_.now() + 1us, [] { return false; });
  }
  if (tv) {
    const long long us = wall_usecs();
    tv->tv_sec = static_cast<time_t>(us / 1'000'000);
    tv->tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  }
  return 0;
}

// ---- the C entry points ----

std::atomic<bool> g_live{false};

Adapter& self(void* userdata) { return *static_cast<Adapter*>(userdata); }

int pd_fcntl(void* u, int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const long arg = va_arg(ap, long);  // packetdrill passes at most one integer argument
  va_end(ap);
  return self(u).fcntl(fd, cmd, arg);
}

int pd_ioctl(void* u, int fd, unsigned long request, ...) { return self(u).ioctl(fd, request); }

int unsupported(const char* what) {
  std::fprintf(stderr, "ustack_packetdrill: %s: not in ustack's API\n", what);
  errno = ENOSYS;
  return -1;
}

}  // namespace
}  // namespace ustack::packetdrill

extern "C" __attribute__((visibility("default"))) void packetdrill_interface_init(const char* flags,
                                                                                   packetdrill_interface* ifc) {
  using ustack::packetdrill::Adapter;
  using ustack::packetdrill::self;
  *ifc = packetdrill_interface{};
  auto options = ustack::packetdrill::parse_flags(flags);
  if (!options) {
    std::fprintf(stderr,
                 "ustack_packetdrill: bad --so_flags \"%s\" (want local_ip=A,prefix=N,gateway=A,max_buffer=N,verbose)\n",
                 flags);
    std::abort();
  }
  if (ustack::packetdrill::g_live.exchange(true)) {
    std::fprintf(stderr, "ustack_packetdrill: one instance per process (ustack's API is process-wide)\n");
    std::abort();
  }
  ifc->userdata = new Adapter(*options);
  ifc->free = [](void* u) {
    delete static_cast<Adapter*>(u);
    ustack::packetdrill::g_live = false;
  };
  ifc->socket = [](void* u, int d, int t, int p) { return self(u).socket(d, t, p); };
  ifc->bind = [](void* u, int fd, const sockaddr* a, socklen_t l) { return self(u).bind(fd, a, l); };
  ifc->listen = [](void* u, int fd, int backlog) { return self(u).listen(fd, backlog); };
  ifc->accept = [](void* u, int fd, sockaddr* a, socklen_t* l) { return self(u).accept(fd, a, l); };
  ifc->connect = [](void* u, int fd, const sockaddr* a, socklen_t l) { return self(u).connect(fd, a, l); };
  ifc->read = [](void* u, int fd, void* b, size_t n) { return self(u).recvfrom(fd, b, n, 0, nullptr, nullptr); };
  ifc->readv = [](void* u, int fd, const iovec* iov, int n) { return self(u).readv(fd, iov, n); };
  ifc->recv = [](void* u, int fd, void* b, size_t n, int f) { return self(u).recvfrom(fd, b, n, f, nullptr, nullptr); };
  ifc->recvfrom = [](void* u, int fd, void* b, size_t n, int f, sockaddr* a, socklen_t* l) {
    return self(u).recvfrom(fd, b, n, f, a, l);
  };
  ifc->recvmsg = [](void* u, int fd, msghdr* m, int f) { return self(u).recvmsg(fd, m, f); };
  ifc->write = [](void* u, int fd, const void* b, size_t n) { return self(u).sendto(fd, b, n, 0, nullptr, 0); };
  ifc->writev = [](void* u, int fd, const iovec* iov, int n) { return self(u).writev(fd, iov, n); };
  ifc->send = [](void* u, int fd, const void* b, size_t n, int f) { return self(u).sendto(fd, b, n, f, nullptr, 0); };
  ifc->sendto = [](void* u, int fd, const void* b, size_t n, int f, const sockaddr* a, socklen_t l) {
    return self(u).sendto(fd, b, n, f, a, l);
  };
  ifc->sendmsg = [](void* u, int fd, const msghdr* m, int f) { return self(u).sendmsg(fd, m, f); };
  ifc->fcntl = ustack::packetdrill::pd_fcntl;
  ifc->ioctl = ustack::packetdrill::pd_ioctl;
  ifc->close = [](void* u, int fd) { return self(u).close(fd); };
  ifc->shutdown = [](void* u, int fd, int how) { return self(u).shutdown(fd, how); };
  ifc->getsockopt = [](void* u, int fd, int level, int name, void* v, socklen_t* l) {
    return self(u).getsockopt(fd, level, name, v, l);
  };
  ifc->setsockopt = [](void* u, int fd, int level, int name, const void* v, socklen_t l) {
    return self(u).setsockopt(fd, level, name, v, l);
  };
  ifc->poll = [](void* u, pollfd* fds, nfds_t n, int timeout) { return self(u).poll(fds, n, timeout); };
  ifc->netdev_send = [](void* u, const void* b, size_t n) { return self(u).netdev_send(b, n); };
  ifc->netdev_receive = [](void* u, void* b, size_t* n, long long* t) { return self(u).netdev_receive(b, n, t); };
  ifc->usleep = [](void* u, useconds_t us) { return self(u).usleep(us); };
  ifc->gettimeofday = [](void* u, timeval* tv, struct timezone*) { return self(u).gettimeofday(tv); };
  ifc->epoll_create = [](void* u, int size) { return self(u).epoll_create(size); };
  ifc->epoll_ctl = [](void* u, int epfd, int op, int fd, epoll_event* e) { return self(u).epoll_ctl(epfd, op, fd, e); };
  ifc->epoll_wait = [](void* u, int epfd, epoll_event* e, int max, int timeout) {
    return self(u).epoll_wait(epfd, e, max, timeout);
  };
  ifc->pipe = [](void*, int*) { return ustack::packetdrill::unsupported("pipe"); };
  ifc->splice = [](void*, int, loff_t*, int, loff_t*, size_t, unsigned int) {
    return ustack::packetdrill::unsupported("splice");
  };
}
