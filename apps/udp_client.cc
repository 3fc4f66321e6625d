// udp-client: sends datagrams to an echo server (udp-echo) and checks every byte that comes back.
// The same source on the kernel stack and on ustack (--stack). Three workloads:
//
//   simple (the default) --count datagrams of --size bytes, one after another on one socket, each
//          waited for up to --timeout-ms; a datagram not echoed in time is lost (no retransmission).
//   rate   (--duration S) a packet rate: datagrams of --size bytes on one socket for S seconds, at
//          most --window of them unanswered at once, paced to --pps a second if given (else as
//          fast as the window allows); one not echoed within --timeout-ms is lost and frees its
//          place in the window. Reports datagrams sent and echoed per second and round trips. One
//          datagram is sent and awaited before the clock starts (ARP).
//   mixed  (--clients N) the servers' test workload over UDP: N clients in all, --concurrency at
//          once, each on a socket of its own; a client sends --requests requests one at a time,
//          each of a size drawn log-uniformly from [--min-size, --max-size] (seeded by --seed),
//          and waits for the echo, sending the request again every --retry-ms up to --retries
//          times. One loop, one epoll instance, non-blocking sockets.
//
// A mixed request starts with its request number (4 bytes) and its client's number (4 bytes),
// as much of those as fits, then bytes that are a pseudo-random function of (seed, client,
// request, offset). An echo must equal the request byte for byte; one equal to an earlier request
// of the same client is a late or duplicated reply (counted, then ignored); anything else is
// corrupted, and fails its client.

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"  // format_addr, parse_command_line
#include "ustack/epoll.h"
#include "ustack/socket.h"

namespace {

constexpr const char* kProgram = "udp-client";
using Clock = std::chrono::steady_clock;
constexpr size_t kMaxDatagram = 65507;  // the largest UDP payload over IPv4
constexpr int kMaxErrorsShown = 10;     // errors described on stderr; all are counted
constexpr size_t kLateWindow = 16;      // earlier requests of a client that a late reply is matched against

// ---- simple ----

// Datagram i carries i in its first 8 bytes, then bytes derived from i: a reply that is late,
// duplicated or corrupted cannot pass for another one.
void fill(std::vector<char>& buf, uint64_t i) {
  std::memcpy(buf.data(), &i, std::min(buf.size(), sizeof i));
  for (size_t k = sizeof i; k < buf.size(); ++k) buf[k] = static_cast<char>((i * 131 + k * 7) & 0xff);
}

struct SimpleOptions {
  uint64_t count = 10;
  size_t size = 64;
  int timeout_ms = 1000;
};

/// A non-blocking UDP socket connected to `addr` (`*fd`) in an epoll instance of its own waiting for
/// EPOLLIN (`*ep`); false, having said why, when either cannot be had.
bool open_connected(const sockaddr_in& addr, int* fd, int* ep) {
  *fd = ustack::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (*fd < 0 || ustack::connect(*fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "%s: cannot reach %s: %s\n", kProgram, app::format_addr(addr).c_str(), std::strerror(errno));
    return false;
  }
  *ep = ustack::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = *fd;
  if (*ep < 0 || ustack::epoll_ctl(*ep, EPOLL_CTL_ADD, *fd, &ev) != 0) {
    std::fprintf(stderr, "%s: epoll: %s\n", kProgram, std::strerror(errno));
    return false;
  }
  return true;
}

int run_simple(const SimpleOptions& o, const sockaddr_in& addr, const std::string& stack) {
  int fd = -1, ep = -1;
  if (!open_connected(addr, &fd, &ep)) return 2;

  std::vector<char> out(o.size), in(65536);
  uint64_t sent = 0, received = 0, mismatched = 0, lost = 0;
  double rtt_total_us = 0;
  int exit_code = 0;
  for (uint64_t i = 0; i < o.count && !app::g_stop; ++i) {
    fill(out, i);
    auto start = Clock::now();
    if (ustack::send(fd, out.data(), out.size(), 0) < 0) {
      std::fprintf(stderr, "%s: send: %s\n", kProgram, std::strerror(errno));
      exit_code = 2;
      break;
    }
    ++sent;
    bool got_it = false;
    auto deadline = start + std::chrono::milliseconds(o.timeout_ms);
    while (!got_it) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() < 0) break;
      epoll_event events[1];
      int n = ustack::epoll_wait(ep, events, 1, static_cast<int>(left.count()));
      if (n <= 0) continue;
      ssize_t got = ustack::recv(fd, in.data(), in.size(), 0);
      if (got < 0) {
        if (errno == EAGAIN) continue;
        std::fprintf(stderr, "%s: recv: %s%s\n", kProgram, std::strerror(errno),
                     errno == ECONNREFUSED ? " (ICMP port unreachable: nothing listens there)" : "");
        exit_code = 2;
        break;
      }
      uint64_t seq = 0;
      std::memcpy(&seq, in.data(), std::min<size_t>(static_cast<size_t>(got), sizeof seq));
      if (seq != i) continue;  // a late echo of an earlier datagram
      got_it = true;
      if (static_cast<size_t>(got) != out.size() || std::memcmp(in.data(), out.data(), out.size()) != 0) {
        ++mismatched;
      } else {
        ++received;
        rtt_total_us += std::chrono::duration<double, std::micro>(Clock::now() - start).count();
      }
    }
    if (exit_code) break;
    if (!got_it) ++lost;
  }
  std::printf("%s: %s on the %s stack: sent %llu, echoed intact %llu, mismatched %llu, lost %llu", kProgram,
              app::format_addr(addr).c_str(), stack.c_str(), static_cast<unsigned long long>(sent),
              static_cast<unsigned long long>(received), static_cast<unsigned long long>(mismatched),
              static_cast<unsigned long long>(lost));
  if (received) std::printf(", mean round trip %.1f us", rtt_total_us / static_cast<double>(received));
  std::printf("\n");
  ustack::close(ep);
  ustack::close(fd);
  if (exit_code) return exit_code;
  return (mismatched || lost) ? 1 : 0;
}

// ---- rate ----

struct RateOptions {
  double duration = 0;
  double pps = 0;  // 0: as fast as the window allows
  uint32_t window = 128;
};

/// A datagram of the rate workload sent and not yet echoed or lost.
struct Outstanding {
  uint64_t seq;
  Clock::time_point sent;
  bool answered;
};

int run_rate(const RateOptions& o, const SimpleOptions& so, const sockaddr_in& addr, const std::string& stack,
             bool json) {
  int fd = -1, ep = -1;
  if (!open_connected(addr, &fd, &ep)) return 2;
  std::vector<char> out(so.size), expect(so.size), in(65536);
  // A first datagram, awaited (sent again every 100 ms, 10 times at most) before the clock starts:
  // the first frames to a neighbour wait for ARP (on ustack at most 16 of them; more are dropped),
  // which would otherwise cost the run a --timeout-ms of an empty window.
  constexpr uint64_t kWarmUp = ~uint64_t{0};
  fill(out, kWarmUp);
  for (int attempt = 0; attempt < 10 && !app::g_stop; ++attempt) {
    ustack::send(fd, out.data(), out.size(), 0);
    epoll_event events[1];
    if (ustack::epoll_wait(ep, events, 1, 100) <= 0) continue;
    ssize_t got = ustack::recv(fd, in.data(), in.size(), 0);
    if (got >= 8 && std::memcmp(in.data(), out.data(), 8) == 0) break;
  }
  std::deque<Outstanding> window;  // in sequence order; answered ones leave from the front
  uint64_t next_seq = 0, unanswered = 0, sent = 0, echoed = 0, lost = 0, mismatched = 0, late = 0, send_full = 0;
  int error = 0;
  std::vector<float> rtt_us;
  const auto timeout = std::chrono::milliseconds(so.timeout_ms);
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  const auto gap = o.pps > 0 ? std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1 / o.pps))
                             : Clock::duration::zero();
  auto next_send = start;
  auto now = start;
  while (!app::g_stop && now < end && error == 0) {
    // Send while the window and the pace allow (a burst of at most 32, then read).
    for (int burst = 0; burst < 32 && unanswered < o.window && now >= next_send; ++burst) {
      fill(out, next_seq);
      if (ustack::send(fd, out.data(), out.size(), 0) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
          ++send_full;  // the socket or the device is full: try again after reading
          break;
        }
        if (errno == EINTR || errno == ECONNREFUSED) continue;  // ECONNREFUSED: an ICMP error, reported by recv too
        std::fprintf(stderr, "%s: send: %s\n", kProgram, std::strerror(errno));
        error = 2;
        break;
      }
      window.push_back(Outstanding{next_seq++, Clock::now(), false});
      ++unanswered;
      ++sent;
      if (gap != Clock::duration::zero()) next_send += gap;
    }
    // Wait for echoes: not at all while more may be sent now, else until the next send is due,
    // the oldest datagram times out or the run ends (at most 100 ms, to notice signals).
    int wait_ms = 0;
    if (unanswered >= o.window || now < next_send) {
      auto until = std::min(end, now + std::chrono::milliseconds(100));
      if (unanswered < o.window) until = std::min(until, next_send);
      if (!window.empty()) until = std::min(until, window.front().sent + timeout);
      auto left = std::max(until - now, Clock::duration::zero());
      wait_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    epoll_event events[1];
    int n = ustack::epoll_wait(ep, events, 1, wait_ms);
    if (n < 0 && errno != EINTR) {
      std::fprintf(stderr, "%s: epoll_wait: %s\n", kProgram, std::strerror(errno));
      error = 2;
    }
    for (int i = 0; n > 0 && i < 64; ++i) {
      ssize_t got = ustack::recv(fd, in.data(), in.size(), 0);
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        std::fprintf(stderr, "%s: recv: %s%s\n", kProgram, std::strerror(errno),
                     errno == ECONNREFUSED ? " (ICMP port unreachable: nothing listens there)" : "");
        error = 2;
        break;
      }
      uint64_t seq = 0;
      std::memcpy(&seq, in.data(), std::min<size_t>(static_cast<size_t>(got), sizeof seq));
      auto arrived = Clock::now();
      if (window.empty() || seq < window.front().seq || seq >= window.front().seq + window.size() ||
          window[seq - window.front().seq].answered) {
        ++late;  // counted lost already, or a duplicate
        continue;
      }
      Outstanding& d = window[seq - window.front().seq];
      fill(expect, seq);
      if (static_cast<size_t>(got) != expect.size() || std::memcmp(in.data(), expect.data(), expect.size()) != 0) {
        ++mismatched;
        continue;
      }
      d.answered = true;
      --unanswered;
      ++echoed;
      rtt_us.push_back(std::chrono::duration<float, std::micro>(arrived - d.sent).count());
    }
    now = Clock::now();
    while (!window.empty() && (window.front().answered || now - window.front().sent >= timeout)) {
      if (!window.front().answered) {
        ++lost;
        --unanswered;
      }
      window.pop_front();
    }
  }
  double seconds = std::chrono::duration<double>(std::min(now, end) - start).count();
  std::sort(rtt_us.begin(), rtt_us.end());
  auto quantile = [&](double q) -> double {
    if (rtt_us.empty()) return 0;
    size_t rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q * static_cast<double>(rtt_us.size()))));
    return rtt_us[rank - 1];
  };
  double sent_ps = seconds > 0 ? static_cast<double>(sent) / seconds : 0;
  double echoed_ps = seconds > 0 ? static_cast<double>(echoed) / seconds : 0;
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  // Still unanswered at the end: neither echoed nor lost (cut off by the end of the run).
  std::string pace =
      o.pps > 0 ? std::to_string(static_cast<uint64_t>(o.pps)) + " a second" : "as fast as the window allows";
  std::printf("%s: rate, %zu-byte datagrams, window %u, %s, %s on the %s stack%s\n", kProgram, so.size, o.window,
              pace.c_str(), app::format_addr(addr).c_str(), stack.c_str(), app::g_stop ? " (interrupted)" : "");
  std::printf("%s: in %.3f s sent %llu (%.0f/s), echoed intact %llu (%.0f/s), lost %llu, mismatched %llu, late %llu, "
              "unanswered at the end %llu\n",
              kProgram, seconds, u(sent), sent_ps, u(echoed), echoed_ps, u(lost), u(mismatched), u(late),
              u(unanswered));
  std::printf("%s: round trip us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", kProgram, quantile(0.5),
              quantile(0.9), quantile(0.99), quantile(0.999), quantile(1.0));
  if (json) {
    std::printf(
        "{\"mode\": \"rate\", \"stack\": \"%s\", \"server\": \"%s\", \"size\": %zu, \"window\": %u, "
        "\"pps_target\": %.0f, \"seconds\": %.6f, \"sent\": %llu, \"echoed\": %llu, \"lost\": %llu, "
        "\"mismatched\": %llu, \"late\": %llu, "
        "\"unanswered_at_end\": %llu, \"send_full\": %llu, \"sent_per_s\": %.3f, \"echoed_per_s\": %.3f, "
        "\"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, \"p999_us\": %.3f, \"max_us\": %.3f, "
        "\"errors\": %llu, \"interrupted\": %s}\n",
        stack.c_str(), app::format_addr(addr).c_str(), so.size, o.window, o.pps, seconds, u(sent), u(echoed), u(lost),
        u(mismatched), u(late), u(unanswered), u(send_full), sent_ps, echoed_ps, quantile(0.5), quantile(0.9),
        quantile(0.99), quantile(0.999), quantile(1.0), u(mismatched + (error ? 1 : 0)),
        app::g_stop ? "true" : "false");
  }
  std::fflush(stdout);
  ustack::close(ep);
  ustack::close(fd);
  if (error) return error;
  return mismatched || echoed == 0 ? 1 : 0;
}

// ---- mixed ----

uint64_t mix64(uint64_t z) {  // SplitMix64's finalizer: a bijection that scatters every input bit
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct MixedOptions {
  uint64_t clients = 200;
  uint32_t concurrency = 20;
  uint64_t requests = 100;
  size_t min_size = 1;
  size_t max_size = kMaxDatagram;
  uint64_t seed = 1;
  int retries = 10;
  int retry_ms = 200;
  bool json = false;
};

/// Request `request` of client `client`: its number and the client's (little-endian, as much as
/// fits), then pseudo-random bytes of (seed, client, request).
void make_request(uint64_t seed, uint64_t client, uint64_t request, size_t size, char* out) {
  char head[8];
  auto r = static_cast<uint32_t>(request), c = static_cast<uint32_t>(client);
  for (int k = 0; k < 4; ++k) {
    head[k] = static_cast<char>(r >> (8 * k));
    head[4 + k] = static_cast<char>(c >> (8 * k));
  }
  size_t n = std::min(size, sizeof head);
  std::memcpy(out, head, n);
  uint64_t key = mix64(mix64(seed ^ 0x0dd5eed) + mix64(client) * 31 + request);
  for (size_t k = n; k < size; k += 8) {
    uint64_t word = mix64(key + (k / 8 + 1) * 0x9e3779b97f4a7c15ULL);
    std::memcpy(out + k, &word, std::min<size_t>(8, size - k));
  }
}

struct Client {
  int fd = -1;
  uint64_t id = 0;
  uint64_t sizes = 0;    // the state of the generator of request sizes
  uint64_t request = 0;  // the request awaited now; `requests` once all are answered
  std::vector<char> out;  // its bytes
  std::deque<std::pair<uint64_t, size_t>> earlier;  // (number, size) of the last kLateWindow requests answered
  Clock::time_point first_sent{}, last_sent{};
  int retries = 0;  // sends of the current request after its first
};

class MixedRun {
 public:
  MixedRun(const MixedOptions& o, const sockaddr_in& server, int ep)
      : o_(o), server_(server), ep_(ep), slots_(o.concurrency), in_(kMaxDatagram + 1), late_buf_(kMaxDatagram) {}

  void run();
  /// Prints the summary (and the JSON line); returns the exit status.
  int report(const std::string& stack);

 private:
  void start_client(size_t slot);
  void send_request(Client& c, Clock::time_point now);
  void next_request(Client& c, Clock::time_point now);
  void on_readable(size_t slot);
  void on_timeout(size_t slot, Clock::time_point now);
  void finish(size_t slot, bool done);
  void fail(size_t slot, uint64_t& counter, const std::string& what);
  void error(const std::string& what);
  size_t next_size(Client& c) const;

  const MixedOptions& o_;
  sockaddr_in server_;
  int ep_;
  std::vector<Client> slots_;  // fd -1: free
  std::vector<char> in_, late_buf_;
  uint64_t started_ = 0, active_ = 0;
  Clock::time_point start_{}, end_{};
  bool interrupted_ = false;
  // results
  uint64_t clients_done_ = 0, answered_ = 0, bytes_ = 0;
  uint64_t retransmissions_ = 0, late_ = 0, unanswered_ = 0, corrupted_ = 0, refused_ = 0, other_errors_ = 0;
  uint64_t errors_shown_ = 0;
  std::vector<float> rtt_us_;  // from the first send of a request to its echo
};

void MixedRun::run() {
  start_ = end_ = Clock::now();
  std::vector<epoll_event> events(std::min<size_t>(o_.concurrency, 256));
  for (;;) {
    if (app::g_stop) {
      interrupted_ = true;
      break;
    }
    for (size_t s = 0; s < slots_.size() && started_ < o_.clients; ++s) {
      if (slots_[s].fd < 0) start_client(s);
    }
    if (active_ == 0 && started_ == o_.clients) break;
    auto now = Clock::now();
    auto next = now + std::chrono::milliseconds(100);  // to notice signals
    for (auto& c : slots_) {
      if (c.fd >= 0) next = std::min(next, c.last_sent + std::chrono::milliseconds(o_.retry_ms));
    }
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(std::max(next - now, Clock::duration::zero()));
    int n = ustack::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), static_cast<int>(wait.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      error(std::string("epoll_wait: ") + std::strerror(errno));
      ++other_errors_;
      break;
    }
    for (int i = 0; i < n; ++i) on_readable(events[i].data.u32);
    now = Clock::now();
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s].fd >= 0 && now >= slots_[s].last_sent + std::chrono::milliseconds(o_.retry_ms)) on_timeout(s, now);
    }
  }
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s].fd >= 0) finish(s, false);  // interrupted
  }
}

void MixedRun::start_client(size_t slot) {
  Client& c = slots_[slot];
  c = Client{};
  c.id = started_++;
  c.sizes = mix64(o_.seed + 0x51e5) ^ mix64(c.id);
  int fd = ustack::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0 || ustack::connect(fd, reinterpret_cast<const sockaddr*>(&server_), sizeof server_) != 0) {
    ++other_errors_;
    error("client " + std::to_string(c.id) + ": cannot reach " + app::format_addr(server_) + ": " + std::strerror(errno));
    if (fd >= 0) ustack::close(fd);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = static_cast<uint32_t>(slot);
  if (ustack::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ++other_errors_;
    error(std::string("epoll_ctl: ") + std::strerror(errno));
    ustack::close(fd);
    return;
  }
  c.fd = fd;
  ++active_;
  if (o_.requests == 0) return finish(slot, true);
  c.request = 0;
  c.out.resize(next_size(c));
  make_request(o_.seed, c.id, 0, c.out.size(), c.out.data());
  c.first_sent = Clock::now();
  send_request(c, c.first_sent);
}

// Sends (or sends again) the current request. A send the socket refuses for room (EAGAIN) is
// treated as a loss: the timeout sends it again.
void MixedRun::send_request(Client& c, Clock::time_point now) {
  c.last_sent = now;
  ssize_t n = ustack::send(c.fd, c.out.data(), c.out.size(), 0);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNREFUSED && errno != EINTR) {
    ++other_errors_;
    error("client " + std::to_string(c.id) + ": send: " + std::strerror(errno));
  }
  // ECONNREFUSED here is an earlier request's ICMP port unreachable: recv reports it too.
}

void MixedRun::next_request(Client& c, Clock::time_point now) {
  c.earlier.emplace_back(c.request, c.out.size());
  if (c.earlier.size() > kLateWindow) c.earlier.pop_front();
  ++c.request;
  c.retries = 0;
  c.out.resize(next_size(c));
  make_request(o_.seed, c.id, c.request, c.out.size(), c.out.data());
  c.first_sent = now;
  send_request(c, now);
}

void MixedRun::on_readable(size_t slot) {
  Client& c = slots_[slot];
  for (int i = 0; i < 16 && c.fd >= 0; ++i) {
    ssize_t got = ustack::recv(c.fd, in_.data(), in_.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == ECONNREFUSED) {
        return fail(slot, refused_, "recv: " + std::string(std::strerror(errno)) +
                                        " (ICMP port unreachable: nothing listens there)");
      }
      return fail(slot, other_errors_, std::string("recv: ") + std::strerror(errno));
    }
    auto len = static_cast<size_t>(got);
    auto now = Clock::now();
    if (len == c.out.size() && std::memcmp(in_.data(), c.out.data(), len) == 0) {
      rtt_us_.push_back(std::chrono::duration<float, std::micro>(now - c.first_sent).count());
      ++answered_;
      bytes_ += len;
      end_ = now;
      if (c.request + 1 == o_.requests) return finish(slot, true);
      next_request(c, now);
      continue;
    }
    bool late = false;  // an echo of an earlier request, sent again, or duplicated on the way?
    for (auto& [number, size] : c.earlier) {
      if (size != len) continue;
      make_request(o_.seed, c.id, number, size, late_buf_.data());
      if (std::memcmp(in_.data(), late_buf_.data(), len) == 0) late = true;
    }
    if (late) {
      ++late_;
      continue;
    }
    std::string what = "request " + std::to_string(c.request) + " (" + std::to_string(c.out.size()) +
                       " bytes): a corrupted echo of " + std::to_string(len) + " bytes";
    size_t k = 0;
    while (k < std::min(len, c.out.size()) && in_[k] == c.out[k]) ++k;
    if (k < std::min(len, c.out.size())) {
      char detail[96];
      std::snprintf(detail, sizeof detail, ", byte %zu is 0x%02x, expected 0x%02x", k, static_cast<unsigned char>(in_[k]),
                    static_cast<unsigned char>(c.out[k]));
      what += detail;
    }
    return fail(slot, corrupted_, what);
  }
}

void MixedRun::on_timeout(size_t slot, Clock::time_point now) {
  Client& c = slots_[slot];
  if (c.retries >= o_.retries) {
    return fail(slot, unanswered_,
                "request " + std::to_string(c.request) + " (" + std::to_string(c.out.size()) + " bytes) unanswered after " +
                    std::to_string(c.retries + 1) + " sends " + std::to_string(o_.retry_ms) + " ms apart");
  }
  ++c.retries;
  ++retransmissions_;
  send_request(c, now);
}

void MixedRun::finish(size_t slot, bool done) {
  Client& c = slots_[slot];
  if (done) ++clients_done_;
  ustack::close(c.fd);  // also drops it from the epoll set
  c.fd = -1;
  --active_;
}

void MixedRun::fail(size_t slot, uint64_t& counter, const std::string& what) {
  ++counter;
  error("client " + std::to_string(slots_[slot].id) + ": " + what);
  finish(slot, false);
}

void MixedRun::error(const std::string& what) {
  if (++errors_shown_ <= kMaxErrorsShown) {
    std::fprintf(stderr, "%s: %s%s\n", kProgram, what.c_str(),
                 errors_shown_ == kMaxErrorsShown ? " (further errors only counted)" : "");
  }
}

// The size of the client's next request, log-uniform on [min_size, max_size]: size s comes with
// probability ln((s + 1) / s) / ln((max + 1) / min), so each doubling is about as likely as the
// one before (half the requests of 1..65507 are under 256 bytes). As loadgen --mode mixed.
size_t MixedRun::next_size(Client& c) const {
  if (o_.min_size == o_.max_size) return o_.min_size;
  c.sizes += 0x9e3779b97f4a7c15ULL;  // SplitMix64
  double u = static_cast<double>(mix64(c.sizes) >> 11) * 0x1.0p-53;  // [0, 1)
  double lo = std::log(static_cast<double>(o_.min_size));
  double hi = std::log(static_cast<double>(o_.max_size) + 1);
  auto size = static_cast<size_t>(std::exp(lo + u * (hi - lo)));
  return std::clamp(size, o_.min_size, o_.max_size);
}

int MixedRun::report(const std::string& stack) {
  if (interrupted_ || clients_done_ < o_.clients) end_ = Clock::now();  // else: the last echo
  double seconds = std::chrono::duration<double>(end_ - start_).count();
  double rps = seconds > 0 ? static_cast<double>(answered_) / seconds : 0;
  double bps = seconds > 0 ? static_cast<double>(bytes_) / seconds : 0;
  std::sort(rtt_us_.begin(), rtt_us_.end());
  auto quantile = [&](double q) -> double {
    if (rtt_us_.empty()) return 0;
    size_t rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q * static_cast<double>(rtt_us_.size()))));
    return rtt_us_[rank - 1];
  };
  double mean = 0;
  for (float v : rtt_us_) mean += v;
  if (!rtt_us_.empty()) mean /= static_cast<double>(rtt_us_.size());
  uint64_t errors = unanswered_ + corrupted_ + refused_ + other_errors_;
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("%s: mixed, %llu clients (%u at once) of %llu requests of %zu to %zu bytes (log-uniform, seed %llu), "
              "%s on the %s stack%s\n",
              kProgram, u(o_.clients), o_.concurrency, u(o_.requests), o_.min_size, o_.max_size, u(o_.seed),
              app::format_addr(server_).c_str(), stack.c_str(), interrupted_ ? " (interrupted)" : "");
  std::printf("%s: %llu of %llu clients done, %llu requests answered, %llu bytes echoed in %.3f s: %.0f requests/s, "
              "%.2f MB/s\n",
              kProgram, u(clients_done_), u(o_.clients), u(answered_), u(bytes_), seconds, rps, bps / 1e6);
  std::printf("%s: round trip us: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  mean %.1f\n", kProgram, quantile(0.5),
              quantile(0.9), quantile(0.99), quantile(1.0), mean);
  std::printf("%s: retransmissions %llu, late or duplicated replies %llu; errors %llu (unanswered %llu, corrupted %llu, "
              "refused %llu, other %llu)\n",
              kProgram, u(retransmissions_), u(late_), u(errors), u(unanswered_), u(corrupted_), u(refused_),
              u(other_errors_));
  if (o_.json) {
    std::printf(
        "{\"mode\": \"mixed\", \"stack\": \"%s\", \"server\": \"%s\", \"clients\": %llu, \"concurrency\": %u, "
        "\"requests_per_client\": %llu, \"min_size\": %zu, \"max_size\": %zu, \"seed\": %llu, \"clients_done\": %llu, "
        "\"requests\": %llu, \"bytes\": %llu, \"seconds\": %.6f, \"requests_per_s\": %.3f, \"bytes_per_s\": %.3f, "
        "\"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, \"max_us\": %.3f, \"mean_us\": %.3f, "
        "\"retransmissions\": %llu, \"late\": %llu, \"errors\": %llu, \"errors_unanswered\": %llu, "
        "\"errors_corrupted\": %llu, \"errors_refused\": %llu, \"errors_other\": %llu, \"interrupted\": %s}\n",
        stack.c_str(), app::format_addr(server_).c_str(), u(o_.clients), o_.concurrency, u(o_.requests), o_.min_size,
        o_.max_size, u(o_.seed), u(clients_done_), u(answered_), u(bytes_), seconds, rps, bps, quantile(0.5),
        quantile(0.9), quantile(0.99), quantile(1.0), mean, u(retransmissions_), u(late_), u(errors), u(unanswered_),
        u(corrupted_), u(refused_), u(other_errors_), interrupted_ ? "true" : "false");
  }
  std::fflush(stdout);
  return errors > 0 || clients_done_ < o_.clients ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "UDP echo client: sends datagrams, waits for each echo and verifies it byte for byte.\n"
      "  simple (default)  --count datagrams of --size bytes on one socket, one at a time; no retransmission\n"
      "  rate (--duration) datagrams of --size bytes on one socket for --duration seconds, at most --window\n"
      "                    unanswered, paced to --pps if given; one not echoed in --timeout-ms is lost\n"
      "  mixed (--clients) --clients clients in all, --concurrency at once, each on its own socket sending\n"
      "                    --requests requests one at a time, of sizes drawn log-uniformly from --min-size to\n"
      "                    --max-size (--seed); a request unanswered for --retry-ms is sent again, up to\n"
      "                    --retries times\n"
      "Exit status 0 if every datagram came back intact (mixed: and every client finished; rate: none corrupted and "
      "some echoed, losses allowed), 1 otherwise (mixed: also when nothing listens there), 2 on bad usage (simple "
      "and rate: also when the server cannot be reached)."};
  app::CommonOptions common;
  std::string host = "198.18.0.2";
  uint16_t port = 7777;
  SimpleOptions simple;
  RateOptions rate;
  MixedOptions mixed;
  app::add_common_options(cli, common);
  cli.add_option("--host", host, "server address")->capture_default_str();
  cli.add_option("--port", port, "server UDP port")->capture_default_str();
  auto* count = cli.add_option("--count", simple.count, "simple: datagrams to send")
                    ->check(app::kNotNegative)
                    ->capture_default_str();
  // simple and rate
  std::vector<CLI::Option*> not_mixed = {
      cli.add_option("--size", simple.size, "simple, rate: bytes per datagram (8 to 65507)")
          ->check(CLI::Range(size_t{8}, kMaxDatagram))
          ->capture_default_str(),
      cli.add_option("--timeout-ms", simple.timeout_ms, "simple, rate: wait this long for each echo")
          ->check(CLI::Range(1, 3600000))
          ->capture_default_str(),
  };
  auto* duration = cli.add_option("--duration", rate.duration, "rate (selects it): seconds to send for")
                       ->check(CLI::Range(0.001, 1e6));
  std::vector<CLI::Option*> rate_only = {
      cli.add_option("--pps", rate.pps, "rate: datagrams a second to send (0: as fast as the window allows)")
          ->check(CLI::Range(0.0, 1e9))
          ->capture_default_str(),
      cli.add_option("--window", rate.window, "rate: datagrams sent and not yet echoed (or lost), at most")
          ->check(CLI::Range(1, 1 << 20))
          ->capture_default_str(),
  };
  auto* clients = cli.add_option("--clients", mixed.clients, "mixed (selects it): clients in all, one after another")
                      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
                      ->capture_default_str();
  std::vector<CLI::Option*> mixed_only = {
      cli.add_option("--concurrency", mixed.concurrency, "mixed: clients at once")
          ->check(CLI::Range(1, 10000))
          ->capture_default_str(),
      cli.add_option("--requests", mixed.requests, "mixed: requests per client")
          ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
          ->capture_default_str(),
      cli.add_option("--min-size", mixed.min_size, "mixed: smallest request, bytes")
          ->check(CLI::Range(size_t{1}, kMaxDatagram))
          ->capture_default_str(),
      cli.add_option("--max-size", mixed.max_size, "mixed: largest request, bytes")
          ->check(CLI::Range(size_t{1}, kMaxDatagram))
          ->capture_default_str(),
      cli.add_option("--seed", mixed.seed, "mixed: seed of the request sizes and bytes")
          ->check(app::kNotNegative)
          ->capture_default_str(),
      cli.add_option("--retries", mixed.retries, "mixed: sends of a request after its first before it counts as unanswered")
          ->check(CLI::Range(0, 1000))
          ->capture_default_str(),
      cli.add_option("--retry-ms", mixed.retry_ms, "mixed: wait this long for an echo before sending again")
          ->check(CLI::Range(1, 3600000))
          ->capture_default_str(),
  };
  auto* json = cli.add_flag("--json", mixed.json,
                            "mixed, rate: also print one JSON object with the results as the last line of stdout");
  if (int status = app::parse_command_line(cli, argc, argv); status >= 0) return status;
  bool is_mixed = clients->count() > 0, is_rate = duration->count() > 0;
  if (is_mixed && is_rate) {
    std::fprintf(stderr, "%s: --clients (mixed) and --duration (rate) are two workloads: pick one\n", kProgram);
    return 2;
  }
  const char* workload = is_mixed  ? "--clients (the mixed workload)"
                         : is_rate ? "--duration (the rate workload)"
                                   : "the simple workload";
  std::vector<std::pair<CLI::Option*, bool>> belongs;  // (option, whether it applies to this workload)
  belongs.emplace_back(count, !is_mixed && !is_rate);
  for (auto* opt : not_mixed) belongs.emplace_back(opt, !is_mixed);
  for (auto* opt : rate_only) belongs.emplace_back(opt, is_rate);
  for (auto* opt : mixed_only) belongs.emplace_back(opt, is_mixed);
  belongs.emplace_back(json, is_mixed || is_rate);
  for (auto [opt, applies] : belongs) {
    if (opt->count() > 0 && !applies) {
      std::fprintf(stderr, "%s: %s does not apply to %s\n", kProgram, opt->get_name().c_str(), workload);
      return 2;
    }
  }
  if (mixed.min_size > mixed.max_size) {
    std::fprintf(stderr, "%s: --min-size %zu is above --max-size %zu\n", kProgram, mixed.min_size, mixed.max_size);
    return 2;
  }

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "%s: --host %s is not an IPv4 address\n", kProgram, host.c_str());
    return 2;
  }
  if (!app::start_backend(common, kProgram)) return 2;
  int status;
  if (is_rate) {
    status = run_rate(rate, simple, addr, common.stack, mixed.json);
  } else if (!is_mixed) {
    status = run_simple(simple, addr, common.stack);
  } else {
    int ep = ustack::epoll_create1(0);
    if (ep < 0) {
      std::fprintf(stderr, "%s: epoll_create1: %s\n", kProgram, std::strerror(errno));
      status = 2;
    } else {
      MixedRun run(mixed, addr, ep);
      run.run();
      status = run.report(common.stack);
      ustack::close(ep);
    }
  }
  ustack::shutdown();
  return status;
}
