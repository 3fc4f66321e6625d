// loadgen: a TCP load generator for echo servers (epoll-server, or any echo service) that checks
// every byte that comes back. One thread, one level-triggered epoll loop, non-blocking sockets
// and connects; the same source on the kernel stack and on ustack (--stack).
//
//   rr    C connections opened up front; each sends a B-byte request and reads its B-byte echo
//         before sending the next. Latency: first byte sent to last byte of the echo read.
//   cps   each request is a connection of its own: connect, send B bytes, read them back, close;
//         C such exchanges in flight. Latency: connect() to the last byte of the echo read.
//   bulk  C connections each send B-byte blocks back to back (up to --window bytes and 4096
//         blocks not yet echoed) while reading the echo; a request is one block. Latency as for
//         rr, so it includes the time a block waits behind the others in the socket buffers.
//   mixed the servers' test workload: --clients clients in all, --concurrency at once; each
//         connects, sends --requests requests one at a time, each of a size drawn log-uniformly
//         from [--min-size, --max-size] (most small, some large; seeded by --seed), reads the
//         whole echo of each before the next, then closes. Latency as for rr.
//
// Options for benchmarks: --ports N spreads the connections over the server ports port..port+N-1
// (one address has ~64k ephemeral ports per destination port, ustack's 28,232); --idle N (rr)
// opens N more connections first and keeps them open without traffic while the others run;
// --hold S waits S seconds once every connection is up, before measuring (after the line
// "loadgen: N connections open"); --cpu-pid PID reports that process's CPU time over the measured
// stretch (from /proc/PID/stat), next to loadgen's own; --warmup first makes one exchange on a
// connection of its own, not counted (a new link's first frames can be lost while ARP resolves,
// and cps's clock starts at the first connect); --linger S keeps the stack running S seconds after
// the report (a net_memif server may crash when its peer exits while it transmits).
//
// Byte k of connection i's stream is a pseudo-random function of (i, k), so an echo with bytes
// lost, duplicated, corrupted, reordered or crossed with another connection's is caught.
//
// --unix PATH talks to an AF_UNIX stream socket instead (unix-echo). Such a socket is the kernel's
// on both backends, and an ustack epoll instance cannot watch a kernel descriptor, so then the
// loop waits in ustack::poll() rather than in an epoll instance.

#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"
#include "ustack/poll.h"

namespace {

constexpr const char* kProgram = "loadgen";
using Clock = std::chrono::steady_clock;
constexpr size_t kSendChunk = 64 * 1024;  // bytes generated per send
constexpr size_t kRecvChunk = 256 * 1024;  // bytes read and checked per recv
constexpr int kReadsPerEvent = 8;      // then let other connections have a turn
constexpr int kBulkRoundsPerPump = 16;  // sends of new blocks per connection per event, likewise
constexpr size_t kMaxBlocksInFlight = 4096;  // bulk: unechoed blocks per connection (their start times are kept)
constexpr int kMaxErrorsShown = 10;    // errors described on stderr; all are counted

// ---- the payload ----

uint64_t mix64(uint64_t z) {  // SplitMix64's finalizer: a bijection that scatters every input bit
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t stream_key(uint64_t stream) { return mix64(stream + 0x5ca1ab1e); }

// Bytes 8w..8w+7 of the stream with this key.
uint64_t stream_word(uint64_t key, uint64_t w) { return mix64(key + (w + 1) * 0x9e3779b97f4a7c15ULL); }

/// Writes bytes [offset, offset + len) of the stream with key `key`.
void fill_stream(uint64_t key, uint64_t offset, char* out, size_t len) {
  uint64_t w = offset / 8;
  if (size_t skip = offset % 8; skip != 0 && len > 0) {  // the end of a word
    uint64_t word = stream_word(key, w++);
    char bytes[8];
    std::memcpy(bytes, &word, 8);
    size_t n = std::min(len, 8 - skip);
    std::memcpy(out, bytes + skip, n);
    out += n;
    len -= n;
  }
  for (; len >= 8; ++w, out += 8, len -= 8) {  // whole words
    uint64_t word = stream_word(key, w);
    std::memcpy(out, &word, 8);
  }
  if (len > 0) {  // the start of a word
    uint64_t word = stream_word(key, w);
    std::memcpy(out, &word, len);
  }
}

// ---- latencies ----

/// Latencies in nanoseconds, log-linear: exact below 256 ns, then 128 buckets per power of two,
/// so a reported percentile is within 0.4 % of a recorded value. 7,424 counters however long the
/// run.
class Histogram {
 public:
  void record(uint64_t ns) {
    ++counts_[index(ns)];
    ++count_;
    sum_ += static_cast<double>(ns);
    max_ = std::max(max_, ns);
  }
  uint64_t count() const { return count_; }
  double mean_ns() const { return count_ ? sum_ / static_cast<double>(count_) : 0; }
  double max_ns() const { return static_cast<double>(max_); }
  /// The q-quantile (0 < q <= 1): the middle of the bucket holding the ceil(q * count)-th value.
  double quantile_ns(double q) const {
    if (count_ == 0) return 0;
    auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(middle(i), static_cast<double>(max_));
    }
    return static_cast<double>(max_);
  }

 private:
  static constexpr int kLinear = 256;  // values below this have a bucket each
  static constexpr int kSub = 128;     // buckets per power of two above it
  static size_t index(uint64_t v) {
    if (v < kLinear) return v;
    int shift = std::bit_width(v) - 8;  // v >> shift is in [128, 256)
    return kLinear + static_cast<size_t>(shift - 1) * kSub + ((v >> shift) - kSub);
  }
  static double middle(size_t i) {
    if (i < kLinear) return static_cast<double>(i);
    size_t shift = (i - kLinear) / kSub + 1;
    double low = std::ldexp(static_cast<double>((i - kLinear) % kSub + kSub), static_cast<int>(shift));
    return low + (std::ldexp(1.0, static_cast<int>(shift)) - 1) / 2;
  }

  std::vector<uint64_t> counts_ = std::vector<uint64_t>(kLinear + 56 * kSub);
  uint64_t count_ = 0;
  double sum_ = 0;
  uint64_t max_ = 0;
};

// ---- where to connect, and how to wait ----

/// The server: an IPv4 host and port, or an AF_UNIX path (--unix).
struct Target {
  int domain = AF_INET;
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string name;  // "A.B.C.D:PORT" or the path (with --ports: "A.B.C.D:PORT-LAST"), for messages
  uint32_t ports = 1;  // AF_INET: connections spread over ports PORT..PORT+ports-1

  /// The address connection `id` connects to: with several ports, the (id mod ports)-th.
  sockaddr_storage addr_of(uint64_t id) const {
    sockaddr_storage a = addr;
    if (domain == AF_INET && ports > 1) {
      auto* in = reinterpret_cast<sockaddr_in*>(&a);
      in->sin_port = htons(static_cast<uint16_t>(ntohs(in->sin_port) + id % ports));
    }
    return a;
  }
};

// ---- CPU time ----

/// This process's CPU time (user + system, every thread), in seconds.
double own_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/// Another process's CPU time (utime + stime of /proc/PID/stat, every thread), in seconds; -1 if
/// it cannot be read (the process is gone).
double process_cpu_seconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return -1;
  std::istringstream rest(text.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15 (1-based): utime, stime
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// Readiness of the connections, under the tags of their Slab: an ustack epoll instance, or for
/// AF_UNIX a pollfd array given to ustack::poll() (an ustack epoll instance cannot watch a kernel
/// descriptor). Events are epoll's bits either way (Linux gives poll's the same values).
class Poller {
 public:
  static_assert(POLLIN == EPOLLIN && POLLOUT == EPOLLOUT && POLLERR == EPOLLERR && POLLHUP == EPOLLHUP &&
                POLLRDHUP == EPOLLRDHUP);

  explicit Poller(bool use_poll) : use_poll_(use_poll) {}
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;
  ~Poller() {
    if (ep_ >= 0) ustack::close(ep_);
  }

  /// False with errno set if the epoll instance cannot be made.
  bool open() {
    if (use_poll_) return true;
    ep_ = ustack::epoll_create1(0);
    return ep_ >= 0;
  }
  const char* name() const { return use_poll_ ? "poll" : "epoll_ctl"; }

  /// 0, or -1 with errno.
  int add(int fd, uint64_t tag, uint32_t events) {
    if (!use_poll_) return ctl(EPOLL_CTL_ADD, fd, tag, events);
    index_[tag] = fds_.size();
    fds_.push_back(pollfd{fd, static_cast<short>(events), 0});
    tags_.push_back(tag);
    return 0;
  }
  int modify(int fd, uint64_t tag, uint32_t events) {
    if (!use_poll_) return ctl(EPOLL_CTL_MOD, fd, tag, events);
    fds_[index_.at(tag)].events = static_cast<short>(events);
    return 0;
  }
  /// Forgets a descriptor; call before closing it (closing is enough for epoll, not for poll).
  void remove(uint64_t tag) {
    if (!use_poll_) return;
    auto it = index_.find(tag);
    if (it == index_.end()) return;
    size_t i = it->second, last = fds_.size() - 1;
    index_.erase(it);
    if (i != last) {
      fds_[i] = fds_[last];
      tags_[i] = tags_[last];
      index_[tags_[i]] = i;
    }
    fds_.pop_back();
    tags_.pop_back();
  }

  /// Fills `out` with what is ready (data.u64 = tag); returns how many, or -1 with errno.
  int wait(std::vector<epoll_event>& out, int timeout_ms) {
    if (!use_poll_) return ustack::epoll_wait(ep_, out.data(), static_cast<int>(out.size()), timeout_ms);
    int n = ustack::poll(fds_.data(), fds_.size(), timeout_ms);
    if (n <= 0) return n;
    // More ready than `out` holds: start the scan where the last one stopped, so that none starves.
    int got = 0;
    size_t count = fds_.size();
    for (size_t k = 0; k < count && got < static_cast<int>(out.size()); ++k) {
      size_t i = (scan_from_ + k) % count;
      if (fds_[i].revents == 0) continue;
      out[got].events = static_cast<uint16_t>(fds_[i].revents);
      out[got].data.u64 = tags_[i];
      ++got;
      scan_from_ = i + 1;
    }
    return got;
  }

 private:
  int ctl(int op, int fd, uint64_t tag, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    return ustack::epoll_ctl(ep_, op, fd, &ev);
  }

  bool use_poll_;
  int ep_ = -1;
  std::vector<pollfd> fds_;
  std::vector<uint64_t> tags_;                  // tags_[i] is fds_[i]'s connection
  std::unordered_map<uint64_t, size_t> index_;  // tag → its place in fds_
  size_t scan_from_ = 0;
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", ch);
      out += esc;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

// ---- the run ----

enum class Mode { kRr, kCps, kBulk, kMixed };

struct Options {
  std::string host = "198.18.0.2";
  uint16_t port = 7777;
  std::string unix_path;  // not empty: AF_UNIX instead of host and port
  std::string mode = "rr";
  uint32_t connections = 1;
  uint64_t size = 64;
  uint64_t requests = 0;  // 0: run for `duration`; mixed: per client
  double duration = 0;
  bool json = false;
  double timeout = 10;
  uint64_t window = 4 << 20;
  uint64_t max_errors = 100;
  uint32_t ports = 1;
  uint64_t idle = 0;                 // rr: connections kept open without traffic
  uint32_t connect_window = 1024;    // rr, bulk: connects in progress at once
  double hold = 0;                   // seconds between "connections open" and measuring
  bool warmup = false;               // one exchange on a connection of its own before anything else
  double linger = 0;                 // seconds the stack keeps running after the report
  std::vector<int> cpu_pids;
  // mixed
  uint64_t clients = 200;
  uint32_t concurrency = 20;
  uint64_t min_size = 1;
  uint64_t max_size = 65536;
  uint64_t seed = 1;
};

enum ErrorKind { kConnectError, kReset, kEarlyEof, kMismatch, kStall, kOtherError, kErrorKinds };
constexpr const char* kErrorNames[kErrorKinds] = {"connect", "reset", "early_eof", "mismatch", "stall", "other"};

/// A request issued and not yet completed.
struct Pending {
  Clock::time_point start;  // its latency's start
  uint64_t end = 0;         // the stream offset just past its last byte
};

struct Conn {
  int fd = -1;
  uint64_t id = 0;     // stream number: connection number (rr, bulk), request number (cps), client (mixed)
  uint64_t key = 0;    // stream_key(id); mixed: of --seed too
  uint64_t sizes = 0;  // mixed: the state of the generator of request sizes
  bool connected = false;
  bool idle = false;  // --idle: never sends
  Clock::time_point connect_start{};
  uint64_t issued = 0;    // bytes of the requests issued: what is to be sent
  uint64_t sent = 0;      // bytes the socket took
  uint64_t received = 0;  // bytes echoed back and found right
  uint64_t answered = 0;  // the stream offset just past the last request completed
  uint64_t done = 0;      // requests completed
  std::deque<Pending> starts;  // each request issued and not completed, oldest first
  uint32_t watching = 0;       // the events watched now
  bool blocked = false;        // the socket was full: no send until EPOLLOUT
};

class Loadgen {
 public:
  Loadgen(const Options& o, Mode mode, const Target& server, Poller& poller)
      : o_(o),
        mode_(mode),
        server_(server),
        poller_(poller),
        send_buf_(kSendChunk),
        recv_buf_(kRecvChunk),
        expect_buf_(kRecvChunk) {}

  void run();
  /// Prints the summary (and the JSON line); returns the exit status.
  int report(const std::string& stack);

 private:
  bool can_issue() const {
    if (stopping_ || !measuring_ || mode_ == Mode::kMixed) return false;  // mixed: see wants_more()
    return o_.requests ? issued_ < o_.requests : now_ < deadline_;
  }
  /// Whether more is due on this connection: echo bytes, or requests not issued yet.
  bool wants_more(const Conn& c) const {
    if (!c.starts.empty() || c.received < c.sent) return true;
    if (mode_ == Mode::kMixed) return c.done < o_.requests;
    return !measuring_ || can_issue();
  }
  /// Every request the run asked for is answered or lost.
  bool finished() const {
    if (mode_ == Mode::kMixed) return clients_started_ == o_.clients && conns_.size() == 0;
    if (measuring_ && in_flight_ == 0 && !can_issue()) return true;  // every request answered
    return conns_.size() == 0 && (mode_ != Mode::kCps || !can_issue());  // every connection lost
  }
  void start_measuring();
  void stop_measuring();
  void open_conn(uint64_t id);
  void handle(uint64_t tag, uint32_t events);
  void on_connected(uint64_t tag, Conn& c);
  bool read_some(uint64_t tag, Conn& c);
  bool pump(uint64_t tag, Conn& c);
  bool flush(uint64_t tag, Conn& c);
  void issue(Conn& c, Clock::time_point now, uint64_t size);
  uint64_t next_mixed_size(Conn& c) const;
  bool watch(uint64_t tag, Conn& c);
  void fail(uint64_t tag, Conn& c, ErrorKind kind, const std::string& what);
  void error(ErrorKind kind, const std::string& what);
  void close_conn(uint64_t tag, Conn& c);
  void report_mixed(const std::string& stack, double seconds, double rps, double bps) const;
  // The JSON line's "host" and "port": empty and 0 with --unix (then "unix" names the path).
  std::string json_host() const { return o_.unix_path.empty() ? o_.host : ""; }
  unsigned json_port() const { return o_.unix_path.empty() ? o_.port : 0; }

  const Options& o_;
  Mode mode_;
  const Target& server_;
  Poller& poller_;
  std::vector<char> send_buf_, recv_buf_, expect_buf_;
  app::Slab<Conn> conns_;
  Histogram latency_;

  Clock::time_point now_{};            // refreshed after every wait
  Clock::time_point start_{}, end_{};  // the measured stretch
  Clock::time_point deadline_{};       // --duration's end
  Clock::time_point last_progress_{};  // a connection established or echo bytes received
  bool measuring_ = false;
  bool holding_ = false;               // --hold: every connection is up, measuring starts at hold_end_
  Clock::time_point hold_end_{};
  uint64_t to_open_ = 0;               // rr, bulk: connections to open (--idle ones first)
  uint64_t opened_ = 0;
  double cpu_start_ = 0, cpu_ = 0;     // own CPU seconds at the start of the measured stretch; used in it
  std::vector<double> pid_cpu_start_, pid_cpu_;  // the same for each --cpu-pid (-1: unreadable)
  bool stopping_ = false;
  bool interrupted_ = false;
  uint64_t next_id_ = 0;
  uint64_t connecting_ = 0;  // connections not yet established
  uint64_t issued_ = 0;      // requests issued (cps: connections opened)
  uint64_t in_flight_ = 0;   // issued, neither completed nor lost
  uint64_t completed_ = 0;
  uint64_t completed_bytes_ = 0;  // the sizes of the completed requests
  uint64_t clients_started_ = 0;  // mixed: connections opened (or tried)
  uint64_t clients_done_ = 0;     // mixed: connections that completed all their requests
  uint64_t errors_ = 0;
  uint64_t error_counts_[kErrorKinds] = {};
};

void Loadgen::run() {
  now_ = Clock::now();
  last_progress_ = now_;
  if (mode_ == Mode::kCps || mode_ == Mode::kMixed) {
    start_measuring();
  } else {
    to_open_ = o_.idle + o_.connections;
  }
  std::vector<epoll_event> events(256);
  for (;;) {
    now_ = Clock::now();
    if (app::g_stop) {
      interrupted_ = true;
      break;
    }
    // rr, bulk: the --idle connections first, then the measured ones, --connect-window at a time.
    while (opened_ < to_open_ && connecting_ < o_.connect_window) {
      open_conn(next_id_++);
      ++opened_;
    }
    if (!measuring_ && opened_ == to_open_ && connecting_ == 0) {  // rr, bulk: every connect has resolved
      if (!holding_) {
        holding_ = true;
        hold_end_ = now_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.hold));
        if (o_.idle > 0 || o_.hold > 0) {
          std::printf("%s: %zu connections open (%llu idle), measuring in %g s\n", kProgram, conns_.size(),
                      static_cast<unsigned long long>(o_.idle), o_.hold);
          std::fflush(stdout);
        }
      }
      if (now_ >= hold_end_) start_measuring();
      last_progress_ = now_;  // holding is not stalling
    }
    if (measuring_ && !o_.requests && now_ >= deadline_) break;
    if (mode_ == Mode::kCps) {
      while (conns_.size() < o_.connections && can_issue()) {
        ++issued_;
        open_conn(next_id_++);
      }
    } else if (mode_ == Mode::kMixed) {
      while (conns_.size() < o_.concurrency && clients_started_ < o_.clients) {
        ++clients_started_;
        open_conn(next_id_++);
      }
    }
    if (o_.max_errors && errors_ >= o_.max_errors) {
      std::fprintf(stderr, "%s: stopping after %llu errors (--max-errors)\n", kProgram,
                   static_cast<unsigned long long>(errors_));
      break;
    }
    if (finished()) break;
    auto idle = now_ - last_progress_;
    auto limit = std::chrono::duration<double>(o_.timeout);
    if (idle >= limit) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%g", o_.timeout);
      error(kStall, std::string("no progress for ") + seconds + " s with " + std::to_string(in_flight_) +
                        " requests in flight on " + std::to_string(conns_.size()) + " connections; giving up");
      break;
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(limit - idle) + std::chrono::milliseconds(1);
    if (measuring_ && !o_.requests) {
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - now_) +
                                std::chrono::milliseconds(1));
    }
    wait = std::min<std::chrono::milliseconds>(wait, std::chrono::milliseconds(100));  // to notice signals
    int n = poller_.wait(events, static_cast<int>(wait.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      error(kOtherError, std::string(poller_.name()) + " wait: " + std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      now_ = Clock::now();  // a batch of big reads and writes can take a while: keep --duration
      if (app::g_stop || (measuring_ && !o_.requests && now_ >= deadline_)) break;  // the rest stays reported
      handle(events[i].data.u64, events[i].events);
    }
  }
  // A run that finished ends at its last completed request; one cut short, now.
  bool complete = mode_ == Mode::kMixed ? clients_done_ == o_.clients : o_.requests && in_flight_ == 0;
  if (!measuring_ || !complete || completed_ == 0) end_ = Clock::now();
  stop_measuring();
  stopping_ = true;
  conns_.for_each([&](uint64_t tag, Conn& c) { close_conn(tag, c); });  // in-flight requests are abandoned
}

void Loadgen::start_measuring() {
  measuring_ = true;
  cpu_start_ = own_cpu_seconds();
  for (int pid : o_.cpu_pids) pid_cpu_start_.push_back(process_cpu_seconds(pid));
  start_ = Clock::now();
  end_ = start_;
  now_ = start_;
  deadline_ = start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.duration));
  conns_.for_each([&](uint64_t tag, Conn& c) { pump(tag, c); });
}

// The CPU time of the measured stretch (so far as the clock of the CPU times goes: loadgen's own to
// the microsecond, the --cpu-pid processes' to a clock tick, 10 ms).
void Loadgen::stop_measuring() {
  if (!measuring_) return;
  cpu_ = own_cpu_seconds() - cpu_start_;
  for (size_t i = 0; i < o_.cpu_pids.size(); ++i) {
    double now = process_cpu_seconds(o_.cpu_pids[i]);
    pid_cpu_.push_back(now < 0 || pid_cpu_start_[i] < 0 ? -1 : now - pid_cpu_start_[i]);
  }
}

void Loadgen::open_conn(uint64_t id) {
  int fd = ustack::socket(server_.domain, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    error(errno == EMFILE || errno == ENFILE ? kOtherError : kConnectError,
          "socket: " + app::socket_failure(errno));
    return;
  }
  if (server_.domain == AF_INET) app::set_nodelay(kProgram, fd);
  Conn c;
  c.fd = fd;
  c.id = id;
  c.idle = mode_ == Mode::kRr && id < o_.idle;
  if (mode_ == Mode::kMixed) {  // every seed its own bytes and sizes
    c.key = stream_key(mix64(o_.seed) ^ id);
    c.sizes = mix64(o_.seed + 0x51e5) ^ mix64(id);
  } else {
    c.key = stream_key(id);
  }
  c.connect_start = Clock::now();
  sockaddr_storage to = server_.addr_of(id);
  if (ustack::connect(fd, reinterpret_cast<const sockaddr*>(&to), server_.len) == 0) {
    c.connected = true;
  } else if (errno != EINPROGRESS) {
    int err = errno;
    ustack::close(fd);
    std::string why = std::strerror(err);
    if (server_.domain == AF_UNIX && err == EAGAIN) why += " (the server's listen backlog is full)";
    error(kConnectError, "connect to " + server_.name + ": " + why);
    return;
  }
  if (!c.connected) ++connecting_;
  if (mode_ == Mode::kCps) {  // the request's clock starts at connect()
    c.starts.push_back(Pending{c.connect_start, o_.size});
    c.issued = o_.size;
    ++in_flight_;
  }
  bool connected = c.connected;
  uint64_t tag = conns_.insert(std::move(c));
  Conn& conn = *conns_.find(tag);
  conn.watching = connected ? EPOLLIN | EPOLLRDHUP : EPOLLOUT;
  if (poller_.add(fd, tag, conn.watching) != 0) {
    return fail(tag, conn, kOtherError, std::string(poller_.name()) + ": " + std::strerror(errno));
  }
  if (connected) on_connected(tag, conn);
}

void Loadgen::handle(uint64_t tag, uint32_t events) {
  Conn* c = conns_.find(tag);
  if (c == nullptr) return;  // closed earlier in this batch
  if (!c->connected) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (int err = app::socket_error(c->fd)) {
      return fail(tag, *c, kConnectError, "connect to " + server_.name + ": " + std::strerror(err));
    }
    --connecting_;
    c->connected = true;
    return on_connected(tag, *c);
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !read_some(tag, *c)) return;
  if (events & EPOLLOUT) c->blocked = false;
  pump(tag, *c);
}

void Loadgen::on_connected(uint64_t tag, Conn& c) {
  last_progress_ = Clock::now();
  pump(tag, c);
}

// Reads and checks what has come back, completing requests. False if the connection is gone.
bool Loadgen::read_some(uint64_t tag, Conn& c) {
  for (int i = 0; i < kReadsPerEvent; ++i) {
    ssize_t n = ustack::recv(c.fd, recv_buf_.data(), recv_buf_.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      int err = errno;
      fail(tag, c, err == ECONNRESET || err == EPIPE ? kReset : kOtherError, std::string("recv: ") + std::strerror(err));
      return false;
    }
    if (n == 0) {
      if (wants_more(c)) {
        fail(tag, c, kEarlyEof,
             "the server closed the connection; " + std::to_string(c.received) + " of the " + std::to_string(c.sent) +
                 " bytes sent came back" + (c.starts.empty() ? ", and more requests were due" : ""));
      } else {
        close_conn(tag, c);  // nothing more was wanted from it
      }
      return false;
    }
    auto len = static_cast<size_t>(n);
    if (c.received + len > c.sent) {
      fail(tag, c, kMismatch,
           "received " + std::to_string(c.received + len) + " bytes, more than the " + std::to_string(c.sent) + " sent");
      return false;
    }
    fill_stream(c.key, c.received, expect_buf_.data(), len);
    if (std::memcmp(recv_buf_.data(), expect_buf_.data(), len) != 0) {
      size_t k = 0;
      while (recv_buf_[k] == expect_buf_[k]) ++k;
      char what[160];
      std::snprintf(what, sizeof what, "byte %llu of the echo is 0x%02x, expected 0x%02x",
                    static_cast<unsigned long long>(c.received + k), static_cast<unsigned char>(recv_buf_[k]),
                    static_cast<unsigned char>(expect_buf_[k]));
      fail(tag, c, kMismatch, what);
      return false;
    }
    c.received += len;
    auto now = Clock::now();
    last_progress_ = now;
    while (!c.starts.empty() && c.received >= c.starts.front().end) {
      const Pending& p = c.starts.front();
      latency_.record(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - p.start).count()));
      completed_bytes_ += p.end - c.answered;
      c.answered = p.end;
      c.starts.pop_front();
      ++c.done;
      --in_flight_;
      ++completed_;
      end_ = now;
    }
    if (mode_ == Mode::kCps && c.done == 1) {
      close_conn(tag, c);
      return false;
    }
    if (mode_ == Mode::kMixed && !wants_more(c)) {  // every request answered: the client is done
      ++clients_done_;
      close_conn(tag, c);
      return false;
    }
  }
  return true;
}

// Issues what the mode allows, sends it and watches what is needed. False if the connection is gone.
bool Loadgen::pump(uint64_t tag, Conn& c) {
  if (!c.connected) return true;
  if (mode_ == Mode::kRr) {
    if (!c.idle && c.starts.empty() && can_issue()) issue(c, Clock::now(), o_.size);
  } else if (mode_ == Mode::kMixed) {
    if (c.starts.empty() && c.done < o_.requests && !stopping_) issue(c, Clock::now(), next_mixed_size(c));
  } else if (mode_ == Mode::kBulk) {
    // New blocks only once everything issued is sent, so that a block's clock starts as its first
    // byte goes out; blocks smaller than kSendChunk are issued together, to go out in one send().
    for (int round = 0; round < kBulkRoundsPerPump && c.sent == c.issued && !c.blocked; ++round) {
      auto now = Clock::now();
      uint64_t batch = 0;
      while (batch < kSendChunk && c.issued - c.received < o_.window && c.starts.size() < kMaxBlocksInFlight &&
             can_issue()) {
        issue(c, now, o_.size);
        batch += o_.size;
      }
      if (batch == 0) break;
      if (!flush(tag, c)) return false;
    }
  }
  if (!flush(tag, c)) return false;
  return watch(tag, c);
}

void Loadgen::issue(Conn& c, Clock::time_point now, uint64_t size) {
  c.issued += size;
  c.starts.push_back(Pending{now, c.issued});
  ++issued_;
  ++in_flight_;
}

// Mixed: the size of the connection's next request, log-uniform on [min_size, max_size]: size s
// comes with probability ln((s + 1) / s) / ln((max + 1) / min), so each doubling of the size is
// about as likely as the one before (half the requests of 1..65536 are under 256 bytes).
uint64_t Loadgen::next_mixed_size(Conn& c) const {
  if (o_.min_size == o_.max_size) return o_.min_size;
  c.sizes += 0x9e3779b97f4a7c15ULL;                                       // SplitMix64
  double u = static_cast<double>(mix64(c.sizes) >> 11) * 0x1.0p-53;  // [0, 1)
  double lo = std::log(static_cast<double>(o_.min_size));
  double hi = std::log(static_cast<double>(o_.max_size) + 1);
  auto size = static_cast<uint64_t>(std::exp(lo + u * (hi - lo)));
  return std::clamp(size, o_.min_size, o_.max_size);
}

// Sends until everything issued is sent or the socket is full. False if the connection is gone.
bool Loadgen::flush(uint64_t tag, Conn& c) {
  while (c.sent < c.issued && !c.blocked) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(kSendChunk, c.issued - c.sent));
    fill_stream(c.key, c.sent, send_buf_.data(), len);
    ssize_t n = ustack::send(c.fd, send_buf_.data(), len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c.blocked = true;
        return true;
      }
      int err = errno;
      fail(tag, c, err == ECONNRESET || err == EPIPE ? kReset : kOtherError, std::string("send: ") + std::strerror(err));
      return false;
    }
    c.sent += static_cast<uint64_t>(n);
    if (static_cast<size_t>(n) < len) c.blocked = true;  // the socket is full: wait for EPOLLOUT
  }
  return true;
}

bool Loadgen::watch(uint64_t tag, Conn& c) {
  uint32_t want = EPOLLIN | EPOLLRDHUP;
  if (c.sent < c.issued) want |= EPOLLOUT;
  if (want == c.watching) return true;
  if (poller_.modify(c.fd, tag, want) != 0) {
    fail(tag, c, kOtherError, std::string(poller_.name()) + ": " + std::strerror(errno));
    return false;
  }
  c.watching = want;
  return true;
}

void Loadgen::fail(uint64_t tag, Conn& c, ErrorKind kind, const std::string& what) {
  error(kind, (mode_ == Mode::kMixed ? "client " : "connection ") + std::to_string(c.id) + ": " + what);
  close_conn(tag, c);
}

void Loadgen::error(ErrorKind kind, const std::string& what) {
  ++error_counts_[kind];
  if (++errors_ <= kMaxErrorsShown) {
    std::fprintf(stderr, "%s: %s%s\n", kProgram, what.c_str(),
                 errors_ == kMaxErrorsShown ? " (further errors only counted)" : "");
  }
}

void Loadgen::close_conn(uint64_t tag, Conn& c) {
  in_flight_ -= c.starts.size();  // lost (on an error) or abandoned (at the end of the run)
  if (!c.connected) --connecting_;
  poller_.remove(tag);
  ustack::close(c.fd);  // also drops it from an epoll set
  conns_.erase(tag);
}

int Loadgen::report(const std::string& stack) {
  double seconds = measuring_ ? std::chrono::duration<double>(end_ - start_).count() : 0;
  double rps = seconds > 0 ? static_cast<double>(completed_) / seconds : 0;
  double bps = seconds > 0 ? static_cast<double>(completed_bytes_) / seconds : 0;
  if (mode_ == Mode::kMixed) {
    report_mixed(stack, seconds, rps, bps);
    return errors_ > 0 || clients_done_ < o_.clients ? 1 : 0;
  }
  double p50 = latency_.quantile_ns(0.5) / 1e3, p90 = latency_.quantile_ns(0.9) / 1e3;
  double p99 = latency_.quantile_ns(0.99) / 1e3, p999 = latency_.quantile_ns(0.999) / 1e3;
  std::printf("%s: %s, %u connection%s, %llu-byte requests, %s on the %s stack%s\n", kProgram, o_.mode.c_str(),
              o_.connections, o_.connections == 1 ? "" : "s", static_cast<unsigned long long>(o_.size),
              server_.name.c_str(), stack.c_str(), interrupted_ ? " (interrupted)" : "");
  std::printf("%s: %llu requests in %.3f s: %.0f requests/s, %.2f MB/s echoed\n", kProgram,
              static_cast<unsigned long long>(completed_), seconds, rps, bps / 1e6);
  std::printf("%s: latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n", kProgram, p50, p90,
              p99, p999, latency_.max_ns() / 1e3, latency_.mean_ns() / 1e3);
  std::printf("%s: errors %llu (", kProgram, static_cast<unsigned long long>(errors_));
  for (int k = 0; k < kErrorKinds; ++k) {
    std::printf("%s%s %llu", k ? ", " : "", kErrorNames[k], static_cast<unsigned long long>(error_counts_[k]));
  }
  std::printf(")\n");
  if (!o_.cpu_pids.empty()) {
    std::printf("%s: CPU seconds while measuring: loadgen %.3f", kProgram, cpu_);
    for (size_t i = 0; i < o_.cpu_pids.size(); ++i) std::printf(", pid %d %.2f", o_.cpu_pids[i], pid_cpu_[i]);
    std::printf("\n");
  }
  if (o_.json) {
    std::printf(
        "{\"mode\": \"%s\", \"stack\": \"%s\", \"host\": \"%s\", \"port\": %u, \"connections\": %u, \"size\": %llu, "
        "\"requests\": %llu, \"seconds\": %.6f, \"requests_per_s\": %.3f, \"bytes_per_s\": %.3f, "
        "\"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, \"p999_us\": %.3f, \"max_us\": %.3f, \"mean_us\": %.3f, "
        "\"errors\": %llu",
        o_.mode.c_str(), stack.c_str(), json_host().c_str(), json_port(), o_.connections,
        static_cast<unsigned long long>(o_.size), static_cast<unsigned long long>(completed_), seconds, rps, bps, p50,
        p90, p99, p999, latency_.max_ns() / 1e3, latency_.mean_ns() / 1e3, static_cast<unsigned long long>(errors_));
    for (int k = 0; k < kErrorKinds; ++k) {
      std::printf(", \"errors_%s\": %llu", kErrorNames[k], static_cast<unsigned long long>(error_counts_[k]));
    }
    if (!o_.unix_path.empty()) std::printf(", \"unix\": %s", json_string(o_.unix_path).c_str());
    std::printf(", \"ports\": %u, \"idle\": %llu, \"cpu_s\": %.6f, \"cpu_s_pids\": {", server_.ports,
                static_cast<unsigned long long>(o_.idle), cpu_);
    for (size_t i = 0; i < o_.cpu_pids.size(); ++i) {
      std::printf("%s\"%d\": %.3f", i ? ", " : "", o_.cpu_pids[i], pid_cpu_[i]);
    }
    std::printf("}, \"interrupted\": %s}\n", interrupted_ ? "true" : "false");
  }
  std::fflush(stdout);
  return errors_ > 0 || completed_ == 0 ? 1 : 0;
}

void Loadgen::report_mixed(const std::string& stack, double seconds, double rps, double bps) const {
  double p50 = latency_.quantile_ns(0.5) / 1e3, p90 = latency_.quantile_ns(0.9) / 1e3;
  double p99 = latency_.quantile_ns(0.99) / 1e3, p999 = latency_.quantile_ns(0.999) / 1e3;
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("%s: mixed, %llu clients (%u at once) of %llu requests of %llu to %llu bytes (log-uniform, seed %llu), "
              "%s on the %s stack%s\n",
              kProgram, u(o_.clients), o_.concurrency, u(o_.requests), u(o_.min_size), u(o_.max_size), u(o_.seed),
              server_.name.c_str(), stack.c_str(), interrupted_ ? " (interrupted)" : "");
  std::printf("%s: %llu of %llu clients done, %llu requests, %llu bytes echoed in %.3f s: %.0f requests/s, %.2f MB/s\n",
              kProgram, u(clients_done_), u(o_.clients), u(completed_), u(completed_bytes_), seconds, rps, bps / 1e6);
  std::printf("%s: latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n", kProgram, p50, p90,
              p99, p999, latency_.max_ns() / 1e3, latency_.mean_ns() / 1e3);
  std::printf("%s: errors %llu (", kProgram, u(errors_));
  for (int k = 0; k < kErrorKinds; ++k) std::printf("%s%s %llu", k ? ", " : "", kErrorNames[k], u(error_counts_[k]));
  std::printf(")\n");
  if (o_.json) {
    std::printf(
        "{\"mode\": \"mixed\", \"stack\": \"%s\", \"host\": \"%s\", \"port\": %u, \"clients\": %llu, "
        "\"concurrency\": %u, \"requests_per_client\": %llu, \"min_size\": %llu, \"max_size\": %llu, \"seed\": %llu, "
        "\"clients_done\": %llu, \"requests\": %llu, \"bytes\": %llu, \"seconds\": %.6f, \"requests_per_s\": %.3f, "
        "\"bytes_per_s\": %.3f, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, \"p999_us\": %.3f, "
        "\"max_us\": %.3f, \"mean_us\": %.3f, \"errors\": %llu",
        stack.c_str(), json_host().c_str(), json_port(), u(o_.clients), o_.concurrency, u(o_.requests), u(o_.min_size),
        u(o_.max_size), u(o_.seed), u(clients_done_), u(completed_), u(completed_bytes_), seconds, rps, bps, p50, p90,
        p99, p999, latency_.max_ns() / 1e3, latency_.mean_ns() / 1e3, u(errors_));
    for (int k = 0; k < kErrorKinds; ++k) std::printf(", \"errors_%s\": %llu", kErrorNames[k], u(error_counts_[k]));
    if (!o_.unix_path.empty()) std::printf(", \"unix\": %s", json_string(o_.unix_path).c_str());
    std::printf(", \"interrupted\": %s}\n", interrupted_ ? "true" : "false");
  }
  std::fflush(stdout);
}

// --warmup: one connection, one request of `size` bytes and its echo (checked), closed; blocking
// calls, each given `timeout` seconds. Not counted anywhere. False (after saying why) if it failed.
bool warm_up(const Target& server, uint64_t size, double timeout) {
  int fd = ustack::socket(server.domain, SOCK_STREAM, 0);
  if (fd < 0) {
    std::fprintf(stderr, "%s: warm-up: socket: %s\n", kProgram, app::socket_failure(errno).c_str());
    return false;
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout);
  tv.tv_usec = static_cast<suseconds_t>((timeout - static_cast<double>(tv.tv_sec)) * 1e6);
  ustack::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ustack::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto len = static_cast<size_t>(std::min<uint64_t>(size, kSendChunk));
  std::vector<char> out(len), in(len);
  uint64_t key = stream_key(~uint64_t{0});
  fill_stream(key, 0, out.data(), len);
  const char* step = "connect";
  bool ok = ustack::connect(fd, reinterpret_cast<const sockaddr*>(&server.addr), server.len) == 0;
  if (ok) {
    step = "send";
    ok = ustack::send(fd, out.data(), len, MSG_NOSIGNAL) == static_cast<ssize_t>(len);
  }
  size_t got = 0;
  if (ok) step = "recv";
  while (ok && got < len) {
    ssize_t n = ustack::recv(fd, in.data() + got, len - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    if (n > 0) got += static_cast<size_t>(n);
  }
  if (ok && std::memcmp(in.data(), out.data(), len) != 0) {
    step = "the echo";
    errno = EBADMSG;
    ok = false;
  }
  if (!ok) std::fprintf(stderr, "%s: warm-up: %s: %s (going on)\n", kProgram, step, std::strerror(errno));
  ustack::close(fd);
  return ok;
}

// Room for one descriptor per connection on the kernel backend: raise the soft limit as far as
// needed, never past the hard one (ustack::init relies on the limit staying below 2^30).
void make_room_for(uint64_t descriptors) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= descriptors) return;
  lim.rlim_cur = std::min<rlim_t>(descriptors, lim.rlim_max);
  setrlimit(RLIMIT_NOFILE, &lim);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "TCP load generator for echo servers; checks every byte echoed (a pseudo-random pattern per connection "
      "and offset).\n"
      "  rr    C connections; each sends a B-byte request and reads the echo before the next\n"
      "  cps   every request a new connection: connect, send B bytes, read them back, close; C in flight\n"
      "  bulk  C connections stream B-byte blocks (up to --window bytes unechoed) while reading the echo\n"
      "  mixed --clients connections in all, --concurrency at once; each sends --requests requests one at a\n"
      "        time, of sizes drawn log-uniformly from --min-size to --max-size (--seed), reads each echo\n"
      "        before the next, then closes\n"
      "Latency: from the request's first byte sent (cps: from connect()) to the last byte of its echo.\n"
      "For benchmarks: --ports spreads the connections over several server ports, --idle (rr) adds connections "
      "that stay open without traffic, --hold waits before measuring, --warmup makes one exchange first, --linger "
      "stays after the report, --cpu-pid reports another process's CPU time.\n"
      "Exit status 0 if every request was answered intact (mixed: and every client finished), 1 on any error "
      "or if none completed, 2 on bad usage."};
  app::CommonOptions common;
  Options o;
  app::add_common_options(cli, common);
  auto* host = cli.add_option("--host", o.host, "server IPv4 address")->capture_default_str();
  auto* port = cli.add_option("--port", o.port, "server TCP port")->capture_default_str();
  auto* unix_path = cli.add_option("--unix", o.unix_path,
                                   "connect to this AF_UNIX stream socket instead of --host and --port (e.g. unix-echo's; "
                                   "the kernel's on either --stack)")
                        ->excludes(host)
                        ->excludes(port);
  cli.add_option("--mode", o.mode, "rr (request/response), cps (connection per request), bulk (streaming) or mixed")
      ->check(CLI::IsMember({"rr", "cps", "bulk", "mixed"}))
      ->capture_default_str();
  auto* connections = cli.add_option("--connections", o.connections, "connections (cps: exchanges in flight; not mixed)")
                          ->check(CLI::Range(1, 100000))
                          ->capture_default_str();
  auto* size = cli.add_option("--size", o.size, "bytes per request (bulk: per block; not mixed)")
                   ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
                   ->capture_default_str();
  auto* requests =
      cli.add_option("--requests", o.requests, "requests in all, across connections (default 1000); mixed: per client (default 100)")
          ->check(CLI::Range(uint64_t{1}, ~uint64_t{0} >> 1));
  auto* duration = cli.add_option("--duration", o.duration,
                                  "run for this many seconds instead; requests in flight then are not counted (not mixed)")
                       ->check(CLI::Range(0.001, 1e6));
  requests->excludes(duration);
  auto* window = cli.add_option("--window", o.window,
                                "bulk: bytes sent and not yet echoed, per connection, before waiting (and at most 4096 blocks)")
                     ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
                     ->capture_default_str();
  const char* kMixedOnly = "mixed: ";
  std::vector<CLI::Option*> mixed_only = {
      cli.add_option("--clients", o.clients, std::string(kMixedOnly) + "connections in all, one after another")
          ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
          ->capture_default_str(),
      cli.add_option("--concurrency", o.concurrency, std::string(kMixedOnly) + "connections at once")
          ->check(CLI::Range(1, 100000))
          ->capture_default_str(),
      cli.add_option("--min-size", o.min_size, std::string(kMixedOnly) + "smallest request, bytes")
          ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
          ->capture_default_str(),
      cli.add_option("--max-size", o.max_size, std::string(kMixedOnly) + "largest request, bytes")
          ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
          ->capture_default_str(),
      cli.add_option("--seed", o.seed, std::string(kMixedOnly) + "seed of the request sizes and bytes; a seed replays a run")
          ->check(app::kNotNegative)
          ->capture_default_str(),
  };
  cli.add_flag("--json", o.json, "also print one JSON object with the results as the last line of stdout");
  cli.add_option("--timeout", o.timeout, "give up (an error) after this many seconds without progress")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  cli.add_option("--max-errors", o.max_errors, "stop the run after this many errors (0: never)")
      ->check(app::kNotNegative)
      ->capture_default_str();
  cli.add_option("--ports", o.ports,
                 "spread the connections over this many server ports, --port to --port + N - 1 (round robin)")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str()
      ->excludes(unix_path);
  auto* idle = cli.add_option("--idle", o.idle,
                              "rr: open this many more connections first and keep them open, without traffic, for the "
                              "whole run (an EOF or reset on one is an error)")
                   ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 24))
                   ->capture_default_str();
  auto* connect_window = cli.add_option("--connect-window", o.connect_window,
                                        "rr, bulk: connects in progress at once while opening the connections")
                             ->check(CLI::Range(1, 1 << 20))
                             ->capture_default_str();
  auto* hold = cli.add_option("--hold", o.hold,
                              "rr, bulk: once every connection is up, print \"N connections open\" and wait this many "
                              "seconds before measuring")
                   ->check(CLI::Range(0.0, 3600.0))
                   ->capture_default_str();
  auto* warmup = cli.add_flag("--warmup", o.warmup,
                              "first make one exchange (connect, one request, its echo, close) on a connection of its "
                              "own, not counted: a new link's first frames may be lost while ARP resolves (cps's "
                              "clock starts at the first connect)");
  cli.add_option("--linger", o.linger,
                 "after the report, keep the stack running this many seconds before exiting, so that the server "
                 "finishes closing the connections while this process is still there (over net_memif, DPDK 22.11's "
                 "server can crash when its peer process exits while it transmits)")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  cli.add_option("--cpu-pid", o.cpu_pids,
                 "also report the CPU time this process (e.g. the server) used while measuring, from /proc/PID/stat "
                 "(repeatable); loadgen's own is always in the JSON (cpu_s)")
      ->check(CLI::PositiveNumber);
  if (int status = app::parse_command_line(cli, argc, argv); status >= 0) return status;
  Mode mode = o.mode == "rr"    ? Mode::kRr
              : o.mode == "cps" ? Mode::kCps
              : o.mode == "bulk" ? Mode::kBulk
                                 : Mode::kMixed;
  // An option of another mode would be silently ignored: refuse it instead.
  std::vector<CLI::Option*> foreign = mode == Mode::kMixed
                                         ? std::vector<CLI::Option*>{connections, size, duration, window}
                                         : mixed_only;
  if (mode != Mode::kRr) foreign.push_back(idle);
  if (mode == Mode::kMixed) foreign.push_back(warmup);
  if (mode != Mode::kRr && mode != Mode::kBulk) {
    foreign.push_back(hold);
    foreign.push_back(connect_window);
  }
  for (CLI::Option* opt : foreign) {
    if (opt->count() > 0) {
      std::fprintf(stderr, "%s: %s does not apply to --mode %s\n", kProgram, opt->get_name().c_str(), o.mode.c_str());
      return 2;
    }
  }
  if (uint32_t{o.port} + o.ports - 1 > 65535) {
    std::fprintf(stderr, "%s: --port %u with --ports %u goes beyond port 65535\n", kProgram, o.port, o.ports);
    return 2;
  }
  if (mode == Mode::kMixed) {
    if (o.min_size > o.max_size) {
      std::fprintf(stderr, "%s: --min-size %llu is above --max-size %llu\n", kProgram,
                   static_cast<unsigned long long>(o.min_size), static_cast<unsigned long long>(o.max_size));
      return 2;
    }
    if (o.requests == 0) o.requests = 100;
  } else if (o.requests == 0 && o.duration == 0) {
    o.requests = 1000;
  }

  Target server;
  if (unix_path->count() > 0) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (o.unix_path.empty() || o.unix_path.size() >= sizeof un.sun_path) {
      std::fprintf(stderr, "%s: --unix: a path of 1 to %zu bytes\n", kProgram, sizeof un.sun_path - 1);
      return 2;
    }
    std::memcpy(un.sun_path, o.unix_path.data(), o.unix_path.size());
    server.domain = AF_UNIX;
    std::memcpy(&server.addr, &un, sizeof un);
    server.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + o.unix_path.size() + 1);
    server.name = o.unix_path;
  } else {
    sockaddr_in in{};
    if (!app::make_addr(o.host, o.port, &in)) {
      std::fprintf(stderr, "%s: --host %s is not an IPv4 address\n", kProgram, o.host.c_str());
      return 2;
    }
    std::memcpy(&server.addr, &in, sizeof in);
    server.len = sizeof in;
    server.name = app::format_addr(in);
    server.ports = o.ports;
    if (o.ports > 1) server.name += "-" + std::to_string(o.port + o.ports - 1);
  }
  make_room_for((mode == Mode::kMixed ? o.concurrency : o.connections + o.idle) + 64);
  if (!app::start_backend(common, kProgram)) return 1;
  int status = 1;
  {
    Poller poller(server.domain == AF_UNIX);
    if (o.warmup) warm_up(server, o.size, o.timeout);
    if (poller.open()) {
      Loadgen gen(o, mode, server, poller);
      gen.run();
      status = gen.report(common.stack);
    } else {
      std::fprintf(stderr, "%s: epoll_create1: %s\n", kProgram, std::strerror(errno));
    }
  }  // the poller's epoll instance closes before the backend stops
  if (o.linger > 0) {  // an epoll_wait on ustack runs the engine: the closing handshakes finish
    int ep = ustack::epoll_create1(0);
    auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.linger));
    for (auto now = Clock::now(); ep >= 0 && !app::g_stop && now < end; now = Clock::now()) {
      epoll_event ev{};
      auto left = std::chrono::ceil<std::chrono::milliseconds>(end - now).count();
      ustack::epoll_wait(ep, &ev, 1, static_cast<int>(std::min<long long>(left, 100)));
    }
    if (ep >= 0) ustack::close(ep);
  }
  ustack::shutdown();
  return status;
}
