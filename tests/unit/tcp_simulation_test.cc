// TCP over the in-memory wire: two stacks (198.18.0.1 = A, 198.18.0.2 = B) on one ManualClock,
// joined by a dev::MemoryWire whose seeded impairments (loss, duplication, reordering,
// corruption, delay and jitter, a rate limit with tail drop) do their worst. Every transfer is
// checked byte for byte (FNV-1a 64 and length, plus the offset of the first wrong byte) and must
// finish within a bound of simulated time; every connection must end with a FIN each way (one
// end in TIME-WAIT, nothing aborted, no error), and the layer must forget it once TIME-WAIT
// is over.
//
// The loop is an event loop on simulated time: poll both stacks at now(), let the application
// move bytes (send what send_space() allows, read all that is readable), transmit, then jump the
// clock to the next frame arrival or timer tick (1 ms at most). No real clock, no threads: a
// seed fixes the wire's randomness, both stacks' and the data, so a run replays exactly.
//
// Replaying a failure: each failure names its condition and seed. USTACK_SIM_SEED=<n> runs
// seed n alone, in every condition of every test here, e.g.
//   USTACK_SIM_SEED=3 <build>/tests/unit/unit_tests --gtest_filter='TcpSim.ImpairedWire*'

#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/rng.h"
#include "dev/memory_wire.h"
#include "stack/stack.h"
#include "tcp/tcp_layer.h"
#include "tcp/tcp_listener.h"

namespace ustack {
namespace {

using tcp::State;
using tcp::TcpConnection;

constexpr Ipv4Addr kAddrA(198, 18, 0, 1);
constexpr Ipv4Addr kAddrB(198, 18, 0, 2);
constexpr uint16_t kServerPort = 8080;
constexpr uint16_t kClosedPort = 9;  // nobody listens: resolve() connects here to learn MACs
constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;
// Every bulk transfer's size. The whole file takes about 5 s in a debugoptimized build and
// 11-16 s under ASan+UBSan, so the sanitised suite runs the same sizes and seeds.
constexpr size_t kBulkBytes = 10 * kMiB;

// ---- Data and its check ----

class Fnv64 {
 public:
  void add(std::span<const uint8_t> bytes) {
    for (uint8_t b : bytes) h_ = (h_ ^ b) * 0x100000001b3ULL;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

uint64_t fnv1a(std::span<const uint8_t> bytes) {
  Fnv64 h;
  h.add(bytes);
  return h.value();
}

/// `len` bytes drawn from `seed`: every transfer's content differs with its seed.
std::vector<uint8_t> make_data(uint64_t seed, size_t len) {
  std::vector<uint8_t> d(len);
  Rng rng(seed * 0x9e3779b97f4a7c15ULL + 0x5eed);
  for (size_t i = 0; i < len; i += 8) {
    const uint64_t v = rng.next();
    std::memcpy(d.data() + i, &v, std::min<size_t>(8, len - i));
  }
  return d;
}

// ---- Seeds ----

/// The seeds to run: USTACK_SIM_SEED alone when set (to replay a failure), else `defaults`.
std::vector<uint64_t> seeds(std::vector<uint64_t> defaults) {
  if (const char* s = std::getenv("USTACK_SIM_SEED")) return {std::strtoull(s, nullptr, 0)};
  return defaults;
}

std::string replay(const std::string& condition, uint64_t seed) {
  return "condition '" + condition + "', seed " + std::to_string(seed) + " (replay with USTACK_SIM_SEED=" +
         std::to_string(seed) + ")";
}

double mbit_per_s(size_t bytes, Duration d) {
  const double s = std::chrono::duration<double>(d).count();
  return s > 0 ? static_cast<double>(bytes) * 8 / s / 1e6 : 0;
}

double ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool final_state(const TcpConnection& c) { return c.state() == State::kTimeWait || c.state() == State::kClosed; }

StackConfig config_for(Ipv4Addr addr, uint64_t seed) {
  StackConfig config;
  config.address = Ipv4Cidr{addr, 24};
  config.seed = seed;
  // ARP carries no checksum: a corrupted reply would teach a wrong MAC, which tests the wire, not
  // TCP. resolve() learns both MACs over a clean wire; the entries then last the whole test.
  config.arp.entry_lifetime = 24h;
  return config;
}

// ---- The application at each end ----

/// One end of a connection as its application drives it: it writes `tx` (or, as an echo server,
/// what it read), then does `then`; it reads everything, checking it against `rx_expect` as it
/// arrives; once it has read the end of stream and written everything it closes.
struct Peer {
  enum class Then { kNothing, kShutdown, kClose };

  std::shared_ptr<TcpConnection> conn;
  // Writing.
  std::span<const uint8_t> tx;
  bool echo = false;
  std::vector<uint8_t> echoed;
  size_t tx_done = 0;
  Then then = Then::kShutdown;
  bool tx_ended = false;  // `then` was done
  // Reading.
  bool check_rx = true;
  std::span<const uint8_t> rx_expect;
  size_t rx_done = 0;
  Fnv64 rx_hash;
  size_t first_bad = SIZE_MAX;  // offset of the first byte that differs from rx_expect
  Instant last_rx;
  bool eof = false;
  // Closing.
  bool close_at_eof = true;
  bool closed = false;
  int error = 0;  // the first error a call returned

  std::span<const uint8_t> source() const { return echo ? std::span<const uint8_t>(echoed) : tx; }
  bool finished() const { return error != 0 || (closed && conn && final_state(*conn)); }

  void take(Instant now, std::span<const uint8_t> got) {
    if (echo) echoed.insert(echoed.end(), got.begin(), got.end());
    if (check_rx && first_bad == SIZE_MAX) {
      const size_t expected_left = rx_expect.size() - std::min(rx_done, rx_expect.size());
      const size_t n = std::min(got.size(), expected_left);
      if (std::memcmp(got.data(), rx_expect.data() + rx_done, n) != 0) {
        for (size_t i = 0; i < n; ++i) {
          if (got[i] != rx_expect[rx_done + i]) {
            first_bad = rx_done + i;
            break;
          }
        }
      } else if (n < got.size()) {
        first_bad = rx_done + n;  // more than was sent
      }
    }
    rx_hash.add(got);
    rx_done += got.size();
    last_rx = now;
  }

  /// One turn of the application: read all that is there, write what the buffer takes.
  void pump(Instant now) {
    if (!conn || closed || error) return;
    TcpConnection& c = *conn;
    const bool handshaking = c.state() == State::kSynSent || c.state() == State::kSynReceived;
    std::array<uint8_t, 16 * kKiB> buf;
    while (!eof && !handshaking) {
      if (c.readable() == 0 && !c.read_shut() && !c.pending_error() && c.state() != State::kClosed) break;
      auto got = c.receive(now, buf, false);
      if (!got) {
        if (got.error() != EAGAIN) error = got.error();
        break;
      }
      if (*got == 0) {
        eof = true;
        break;
      }
      take(now, {buf.data(), *got});
    }
    if (error || handshaking) return;
    if (!tx_ended) {
      const std::span<const uint8_t> src = source();
      while (tx_done < src.size() && c.send_space() > 0) {
        auto sent = c.send(now, src.subspan(tx_done));
        if (!sent) {
          error = sent.error();
          return;
        }
        if (*sent == 0) break;
        tx_done += *sent;
      }
      if (tx_done == src.size() && (!echo || eof)) {
        tx_ended = true;
        if (then == Then::kShutdown) c.shutdown_write(now);
        if (then == Then::kClose) {
          c.close(now);
          closed = true;
        }
      }
    }
    if (!closed && close_at_eof && eof && tx_ended) {
      c.close(now);
      closed = true;
    }
  }
};

/// Everything `p` read is what was sent: length, hash and every byte.
void expect_received_exactly(const Peer& p, const char* who) {
  EXPECT_EQ(p.error, 0) << who << ": a call failed";
  EXPECT_TRUE(p.eof) << who << ": no end of stream";
  EXPECT_EQ(p.rx_done, p.rx_expect.size()) << who << ": length";
  EXPECT_EQ(p.rx_hash.value(), fnv1a(p.rx_expect)) << who << ": FNV-1a 64";
  EXPECT_EQ(p.first_bad, SIZE_MAX) << who << ": first wrong byte at offset " << p.first_bad;
}

// ---- Two stacks on a wire ----

class TcpSim {
 public:
  explicit TcpSim(uint64_t seed)
      : wire_(clock_, seed, dev::test_caps(1), dev::test_caps(2)),
        a_(config_for(kAddrA, seed), wire_.a()),
        b_(config_for(kAddrB, seed + 1), wire_.b()),
        options_(tcp::SocketOptions::defaults(a_.config().tcp)) {
    a_.start(now());
    b_.start(now());
  }
  ~TcpSim() {
    if (listener_) b_.tcp().unlisten(now(), *listener_);
    b_.tcp().unbind(listen_binding_);
  }

  Instant now() const { return clock_.now(); }
  Stack& a() { return a_; }
  Stack& b() { return b_; }
  dev::MemoryWire& wire() { return wire_; }
  tcp::SocketOptions& options() { return options_; }
  uint64_t steps() const { return steps_; }
  /// Moves the clock forward with nothing in flight (the wraparound test picks its ISN this way).
  void jump_to(Instant t) {
    ASSERT_GE(t, now());
    clock_.set(t);
  }

  /// Runs until `done()` or the clock reaches `deadline`. Each turn polls both stacks at now(),
  /// lets `app` move data between the application and the connections, transmits what that
  /// queued, then moves the clock to the next event: a frame arriving at either port or a timer
  /// tick of either stack, at most `max_step` ahead. Returns done().
  template <typename App, typename Done>
  bool run(Instant deadline, App&& app, Done&& done, Duration max_step = 1ms) {
    uint64_t turns_without_time = 0;
    while (!done()) {
      if (now() >= deadline) return false;
      a_.poll(now());
      b_.poll(now());
      app(now());
      a_.flush();
      b_.flush();
      ++steps_;
      const Instant next = std::min({wire_.a().next_arrival(), wire_.b().next_arrival(), a_.next_wakeup(),
                                     b_.next_wakeup(), now() + max_step, deadline});
      if (next > now()) {
        clock_.set(next);
        turns_without_time = 0;
      } else if (++turns_without_time > 1'000'000) {
        ADD_FAILURE() << "a million turns without time passing: the stacks feed each other forever";
        return false;
      }
    }
    return true;
  }
  template <typename Done>
  bool run(Instant deadline, Done&& done) {
    return run(deadline, [](Instant) {}, std::forward<Done>(done));
  }

  /// Both sides learn each other's MAC over the clean wire: A's SYN to a port nobody listens on
  /// makes A ask for B (B learns A from the request) and B answer with a RST.
  void resolve() {
    auto c = a_.tcp().connect(now(), nullptr, kAddrB, kClosedPort, options_);
    ASSERT_TRUE(c);
    ASSERT_TRUE(run(now() + 100ms, [&] { return (*c)->state() == State::kClosed; }));
    EXPECT_EQ((*c)->take_error(), ECONNREFUSED);
    ASSERT_EQ(a_.arp_entries(), 1u);
    ASSERT_EQ(b_.arp_entries(), 1u);
    resets_before_ = resets();
  }
  /// Nothing was aborted: no timeout, no close with unread data, no data after close. (RSTs
  /// themselves are no sign: a late or duplicated ACK reaching a LAST-ACK that has just closed
  /// finds only the listener, which answers with a RST, as Linux's does; that RST may end the
  /// peer's TIME-WAIT early, which Linux's default, tcp_rfc1337 = 0, allows too. A RST that
  /// reset a live connection shows as ECONNRESET at its Peer.)
  void expect_no_aborts() {
    for (int i = 0; i < 2; ++i) {
      const char* who = i == 0 ? "A" : "B";
      const TcpStats& t = (i == 0 ? a_ : b_).stats().tcp;
      EXPECT_EQ(t.timeouts, 0u) << who;
      EXPECT_EQ(t.aborts_on_close, 0u) << who;
      EXPECT_EQ(t.rx_after_close, 0u) << who;
    }
  }
  /// RSTs either stack sent since resolve().
  uint64_t resets() const { return a_.stats().tcp.tx_resets + b_.stats().tcp.tx_resets - resets_before_; }

  void listen(uint16_t port, int backlog = 128) {
    ASSERT_EQ(b_.tcp().bind(listen_binding_, Ipv4Addr::any(), port), 0);
    listener_ = std::make_unique<tcp::TcpListener>(listen_binding_, backlog, options_);
    ASSERT_EQ(b_.tcp().listen(*listener_), 0);
  }
  std::shared_ptr<TcpConnection> accept() { return listener_ ? listener_->accept() : nullptr; }
  /// A connects to B:port, from `bound` (null: an ephemeral port).
  std::shared_ptr<TcpConnection> connect(uint16_t port, const tcp::PortBinding* bound = nullptr) {
    auto c = a_.tcp().connect(now(), bound, kAddrB, port, options_);
    EXPECT_TRUE(c) << "connect: errno " << (c ? 0 : c.error());
    a_.flush();
    return c ? *c : nullptr;
  }

  /// Lets TIME-WAIT run out (and anything else finish): both layers must end up empty.
  void expect_all_connections_go() {
    const Instant deadline = now() + a_.config().tcp.time_wait + 5s;
    EXPECT_TRUE(run(deadline, [&] { return a_.tcp().connections() == 0 && b_.tcp().connections() == 0; }))
        << "connections left: A " << a_.tcp().connections() << " (TIME-WAIT " << a_.tcp().time_wait_connections()
        << "), B " << b_.tcp().connections();
    EXPECT_EQ(a_.tcp().time_wait_connections(), 0u);
    EXPECT_EQ(b_.tcp().time_wait_connections(), 0u);
  }

 private:
  ManualClock clock_;
  dev::MemoryWire wire_;
  Stack a_;
  Stack b_;
  tcp::SocketOptions options_;
  tcp::PortBinding listen_binding_;
  std::unique_ptr<tcp::TcpListener> listener_;
  uint64_t resets_before_ = 0;
  uint64_t steps_ = 0;
};

/// What a bulk transfer took, for the report line.
struct BulkResult {
  bool completed = false;
  Duration elapsed{0};  // from connect() to the last byte read, both directions
};

/// A connects to B; A sends `a_data` and B sends `b_data` at once; whoever is done writing shuts
/// down its side (or, writing only, closes), and each end closes once it has read the other's
/// FIN. Checks every byte, that both ends finish in TIME-WAIT or CLOSED with no RST, and that
/// the transfer and the close finish within `limit`.
BulkResult run_bulk(TcpSim& sim, std::span<const uint8_t> a_data, std::span<const uint8_t> b_data, Duration limit,
                    std::function<void(TcpSim&, Peer&, Peer&)> observe = {}) {
  BulkResult result;
  sim.listen(kServerPort);
  const Instant start = sim.now();
  Peer a, b;
  a.conn = sim.connect(kServerPort);
  if (!a.conn) return result;
  a.tx = a_data;
  a.rx_expect = b_data;
  b.tx = b_data;
  b.rx_expect = a_data;
  // Only A writes: it closes once all is queued, like an application that writes a file and
  // exits; B closes when it has read the end of the stream.
  if (b_data.empty()) {
    a.then = Peer::Then::kClose;
    b.then = Peer::Then::kNothing;
  }
  result.completed = sim.run(
      start + limit,
      [&](Instant now) {
        if (!b.conn) b.conn = sim.accept();
        a.pump(now);
        b.pump(now);
        if (observe) observe(sim, a, b);
      },
      [&] { return a.finished() && b.finished(); });
  EXPECT_TRUE(result.completed) << "not done after " << ms(limit) << " ms simulated: A read " << a.rx_done << "/"
                                << b_data.size() << " wrote " << a.tx_done << " state "
                                << state_name(a.conn->state()) << "; B read " << b.rx_done << "/" << a_data.size()
                                << " wrote " << b.tx_done << " state "
                                << (b.conn ? state_name(b.conn->state()) : "not accepted");
  if (!b.conn) return result;
  result.elapsed = std::max(a.last_rx, b.last_rx) - start;
  EXPECT_EQ(a.error, 0);
  if (!b_data.empty() || a.then != Peer::Then::kClose) expect_received_exactly(a, "A");
  expect_received_exactly(b, "B");
  for (const Peer* p : {&a, &b}) {
    EXPECT_TRUE(final_state(*p->conn)) << state_name(p->conn->state());
    EXPECT_EQ(p->conn->pending_error(), 0);
    EXPECT_EQ(p->conn->send_queued(), 0u);
    EXPECT_EQ(p->conn->readable(), 0u);
  }
  // The end that sent the first FIN waits in TIME-WAIT (unless a RST for a stray duplicate
  // ended it: see expect_no_aborts); the other is gone. A connection its user closed waits as a
  // compact entry, its TCB CLOSED.
  const bool a_waits = a.conn->state() == State::kTimeWait || sim.a().tcp().in_time_wait(a.conn->tuple());
  const bool b_waits = b.conn->state() == State::kTimeWait || sim.b().tcp().in_time_wait(b.conn->tuple());
  EXPECT_TRUE(a_waits || b_waits || sim.resets() > 0)
      << "A " << state_name(a.conn->state()) << ", B " << state_name(b.conn->state());
  sim.expect_no_aborts();
  return result;
}

// ---- 1. A clean wire ----

/// A LAN that loses nothing: 1 Gbit/s, 50 µs each way. (A wire without any delay or rate would
/// deliver everything at the instant it is sent, and simulated throughput would mean nothing.)
dev::Impairments clean_link() {
  dev::Impairments imp;
  imp.delay = 50us;
  imp.rate_bytes_per_s = 125'000'000;
  return imp;
}

TEST(TcpSim, CleanWireOneWayBulkTransfer) {
  TcpSim sim(1);
  sim.resolve();
  sim.wire().set_impairments(clean_link());
  const auto data = make_data(1, kBulkBytes);
  const BulkResult r = run_bulk(sim, data, {}, 2s);
  ASSERT_TRUE(r.completed);
  const double mbps = mbit_per_s(data.size(), r.elapsed);
  std::printf("[ TcpSim   ] clean 1 Gbit/s, 100 us RTT, one way: %zu MiB in %.1f ms simulated = %.0f Mbit/s\n",
              data.size() / kMiB, ms(r.elapsed), mbps);
  // Nothing is lost, so nothing is sent twice, and the window (64 KiB over a 0.1 ms RTT) keeps
  // the link mostly busy.
  EXPECT_EQ(sim.wire().counters().dropped + sim.wire().counters().queue_full, 0u);
  EXPECT_EQ(sim.a().stats().tcp.retransmits, 0u);
  EXPECT_GT(mbps, 500.0);
  sim.expect_all_connections_go();
}

TEST(TcpSim, CleanWireBothDirectionsAtOnce) {
  TcpSim sim(2);
  sim.resolve();
  sim.wire().set_impairments(clean_link());
  const auto a_data = make_data(21, kBulkBytes);
  const auto b_data = make_data(22, kBulkBytes);
  const BulkResult r = run_bulk(sim, a_data, b_data, 2s);
  ASSERT_TRUE(r.completed);
  std::printf("[ TcpSim   ] clean 1 Gbit/s, 100 us RTT, both ways: 2 x %zu MiB in %.1f ms simulated = %.0f + %.0f Mbit/s\n",
              a_data.size() / kMiB, ms(r.elapsed), mbit_per_s(a_data.size(), r.elapsed),
              mbit_per_s(b_data.size(), r.elapsed));
  EXPECT_EQ(sim.a().stats().tcp.retransmits + sim.b().stats().tcp.retransmits, 0u);
  EXPECT_GT(mbit_per_s(a_data.size() + b_data.size(), r.elapsed), 500.0);
  sim.expect_all_connections_go();
}

// ---- 2. Impaired wires ----

struct Condition {
  std::string name;
  std::function<dev::Impairments(uint64_t seed)> impairments;
  /// What must show that the wire did its worst (so the test is not vacuous).
  std::function<void(TcpSim&)> check;
};

/// Every condition runs on a LAN-like base: 100 µs each way.
dev::Impairments base_link() {
  dev::Impairments imp;
  imp.delay = 100us;
  return imp;
}

std::vector<Condition> conditions() {
  auto retransmitted = [](TcpSim& sim) {
    EXPECT_GT(sim.a().stats().tcp.retransmits, 0u);
  };
  std::vector<Condition> list;
  list.push_back({"loss 1%",
                  [](uint64_t) {
                    auto imp = base_link();
                    imp.drop = 0.01;
                    return imp;
                  },
                  [=](TcpSim& sim) {
                    EXPECT_GT(sim.wire().counters().dropped, 0u);
                    retransmitted(sim);
                  }});
  list.push_back({"loss 5%",
                  [](uint64_t) {
                    auto imp = base_link();
                    imp.drop = 0.05;
                    return imp;
                  },
                  [=](TcpSim& sim) {
                    EXPECT_GT(sim.wire().counters().dropped, 0u);
                    retransmitted(sim);
                  }});
  list.push_back({"reorder 5% by 1-3 ms",
                  [](uint64_t seed) {
                    auto imp = base_link();
                    imp.reorder = 0.05;
                    imp.reorder_delay = 1ms + std::chrono::milliseconds(seed % 3);
                    return imp;
                  },
                  [](TcpSim& sim) {
                    EXPECT_GT(sim.wire().counters().reordered, 0u);
                    EXPECT_GT(sim.b().stats().tcp.ooo_segments, 0u);
                  }});
  list.push_back({"duplicate 2%",
                  [](uint64_t) {
                    auto imp = base_link();
                    imp.duplicate = 0.02;
                    return imp;
                  },
                  [](TcpSim& sim) { EXPECT_GT(sim.wire().counters().duplicated, 0u); }});
  list.push_back({"corrupt 1%",
                  [](uint64_t) {
                    auto imp = base_link();
                    imp.corrupt = 0.01;
                    return imp;
                  },
                  [](TcpSim& sim) {
                    EXPECT_GT(sim.wire().counters().corrupted, 0u);
                    // The checksums caught it (a flipped byte in the IP header is the IP
                    // checksum's, in the Ethernet header a wrong address or type).
                    EXPECT_GT(sim.a().stats().tcp.rx_bad_checksum + sim.b().stats().tcp.rx_bad_checksum, 0u);
                  }});
  list.push_back({"delay 1 ms + jitter 0.5 ms",
                  [](uint64_t) {
                    dev::Impairments imp;
                    imp.delay = 1ms;
                    imp.jitter = 500us;
                    return imp;
                  },
                  [](TcpSim&) {}});
  list.push_back({"rate 100 Mbit/s, 16-28 frame queue",
                  [](uint64_t seed) {
                    auto imp = base_link();
                    imp.rate_bytes_per_s = 12'500'000;
                    // Less than the 45 frames of a 64 KiB window: slow start overflows it. The
                    // queue's size and a little jitter vary with the seed (the rest would not).
                    imp.queue_limit = 16 + 4 * (seed % 4);
                    imp.jitter = 20us;
                    return imp;
                  },
                  [=](TcpSim& sim) {
                    EXPECT_GT(sim.wire().counters().queue_full, 0u) << "no tail drop";
                    retransmitted(sim);
                  }});
  return list;
}

TEST(TcpSim, ImpairedWireTransfersEveryByteAndClosesCleanly) {
  const auto data_seeds = seeds({1, 2, 3, 4, 5});
  for (const Condition& condition : conditions()) {
    for (uint64_t seed : data_seeds) {
      SCOPED_TRACE(replay(condition.name, seed));
      TcpSim sim(seed);
      sim.resolve();
      sim.wire().set_impairments(condition.impairments(seed));
      const auto data = make_data(seed, kBulkBytes);
      const BulkResult r = run_bulk(sim, data, {}, 120s);
      if (!r.completed) continue;
      condition.check(sim);
      const TcpStats& tx = sim.a().stats().tcp;
      std::printf("[ TcpSim   ] %-34s seed %" PRIu64 ": %zu MiB in %8.1f ms = %6.1f Mbit/s; %" PRIu64
                  " retransmits (%" PRIu64 " fast, %" PRIu64 " RTO)\n",
                  condition.name.c_str(), seed, data.size() / kMiB, ms(r.elapsed), mbit_per_s(data.size(), r.elapsed),
                  tx.retransmits.get(), tx.fast_retransmits.get(), tx.rto_timeouts.get());
      EXPECT_LE(sim.a().tcp().connections(), 1u);  // A, which closed first, in TIME-WAIT
      EXPECT_EQ(sim.b().tcp().connections(), 0u);
    }
  }
}

// A failure must replay exactly from its seed: the same run twice gives the same frames, the
// same counters and the same finishing time; another seed does not.
TEST(TcpSim, SameSeedReplaysExactly) {
  auto run = [](uint64_t seed) {
    TcpSim sim(seed);
    sim.resolve();
    dev::Impairments imp = base_link();
    imp.drop = 0.03;
    imp.duplicate = 0.02;
    imp.reorder = 0.03;
    imp.corrupt = 0.01;
    imp.jitter = 200us;
    sim.wire().set_impairments(imp);
    const auto data = make_data(seed, kMiB);
    const BulkResult r = run_bulk(sim, data, data, 60s);
    std::ostringstream out;
    const dev::WireCounters& w = sim.wire().counters();
    out << r.completed << "|" << r.elapsed.count() << "|" << sim.now().ns() << "|" << sim.steps() << "|" << w.sent
        << "," << w.dropped << "," << w.duplicated << "," << w.reordered << "," << w.corrupted << "|";
    for (Stack* s : {&sim.a(), &sim.b()}) {
      s->stats().for_each([&](std::string_view layer, std::string_view name, uint64_t v) {
        out << layer << "." << name << "=" << v << ";";
      });
    }
    return out.str();
  };
  const std::string first = run(11);
  EXPECT_EQ(run(11), first);
  EXPECT_NE(run(12), first) << "another seed, another run";
}

// ---- 3. Many short connections ----

TEST(TcpSim, ManyShortEchoConnectionsUnderLossLeakNothing) {
  constexpr size_t kConnections = 200;
  for (uint64_t seed : seeds({1, 2, 3})) {
    SCOPED_TRACE(replay("200 echo connections, loss 1%", seed));
    TcpSim sim(seed);
    sim.resolve();
    dev::Impairments imp = base_link();
    imp.drop = 0.01;
    sim.wire().set_impairments(imp);
    sim.listen(kServerPort, 256);

    Rng sizes(seed);
    std::vector<std::vector<uint8_t>> data(kConnections);
    for (size_t i = 0; i < kConnections; ++i) data[i] = make_data(seed * 1000 + i, 1 + sizes.below(64 * kKiB));
    std::vector<Peer> clients(kConnections);
    std::vector<Peer> servers;
    servers.reserve(kConnections);
    size_t opened = 0;
    const Instant start = sim.now();
    Instant next_open = start;
    // One new connection every 100 µs: many run at once, all in different phases.
    const bool ok = sim.run(
        sim.now() + 120s,
        [&](Instant now) {
          while (opened < kConnections && now >= next_open) {
            Peer& c = clients[opened];
            c.conn = sim.connect(kServerPort);
            c.tx = data[opened];
            c.rx_expect = data[opened];
            ++opened;
            next_open += 100us;
          }
          while (auto conn = sim.accept()) {
            Peer& s = servers.emplace_back();
            s.conn = std::move(conn);
            s.echo = true;
            s.check_rx = false;
            s.then = Peer::Then::kNothing;
          }
          for (Peer& c : clients) c.pump(now);
          for (Peer& s : servers) s.pump(now);
        },
        [&] {
          if (opened < kConnections || servers.size() < kConnections) return false;
          for (const Peer& c : clients) {
            if (!c.finished()) return false;
          }
          for (const Peer& s : servers) {
            if (!s.finished()) return false;
          }
          return true;
        });
    ASSERT_TRUE(ok) << "opened " << opened << ", accepted " << servers.size() << ", unfinished clients "
                    << std::count_if(clients.begin(), clients.end(), [](const Peer& p) { return !p.finished(); })
                    << ", unfinished servers "
                    << std::count_if(servers.begin(), servers.end(), [](const Peer& p) { return !p.finished(); });
    std::printf("[ TcpSim   ] 200 echo connections, loss 1%%, seed %" PRIu64 ": done in %.1f ms simulated, %" PRIu64
                " retransmits\n",
                seed, ms(sim.now() - start), sim.a().stats().tcp.retransmits + sim.b().stats().tcp.retransmits);
    EXPECT_GT(sim.wire().counters().dropped, 0u);
    for (size_t i = 0; i < kConnections; ++i) {
      SCOPED_TRACE("client " + std::to_string(i));
      expect_received_exactly(clients[i], "client");
      // The client's FIN went first: TIME-WAIT (or CLOSED, by a RST answering a stray ACK).
      EXPECT_TRUE(final_state(*clients[i].conn)) << state_name(clients[i].conn->state());
      EXPECT_EQ(clients[i].conn->pending_error(), 0);
    }
    for (const Peer& s : servers) {
      EXPECT_EQ(s.error, 0);
      EXPECT_EQ(s.conn->state(), State::kClosed);
    }
    for (const std::vector<Peer>* side : {&clients, &servers}) {
      for (const Peer& p : *side) {
        EXPECT_EQ(p.conn->send_queued(), 0u);
        EXPECT_EQ(p.conn->readable(), 0u);
      }
    }
    sim.expect_no_aborts();
    EXPECT_EQ(sim.a().tcp().connections(), sim.a().tcp().time_wait_connections());
    EXPECT_GE(sim.a().tcp().time_wait_connections(), kConnections * 9 / 10);
    EXPECT_EQ(sim.b().tcp().connections(), 0u);

    // After TIME-WAIT the layers hold nothing, and once the application lets go, every
    // connection (and the buffers of its queues) is freed: the layer keeps no reference.
    sim.expect_all_connections_go();
    std::vector<std::weak_ptr<TcpConnection>> gone;
    for (Peer& p : clients) gone.push_back(std::exchange(p.conn, nullptr));
    for (Peer& p : servers) gone.push_back(std::exchange(p.conn, nullptr));
    sim.a().poll(sim.now());
    sim.b().poll(sim.now());
    EXPECT_EQ(std::count_if(gone.begin(), gone.end(), [](const auto& w) { return !w.expired(); }), 0)
        << "connections still referenced after they closed";
  }
}

// ---- 4. Simultaneous close and half-close ----

dev::Impairments close_test_link() {
  dev::Impairments imp = base_link();
  imp.drop = 0.05;
  imp.duplicate = 0.02;
  imp.reorder = 0.05;
  return imp;
}

TEST(TcpSim, SimultaneousCloseUnderLossEndsInTimeWaitOnBothSides) {
  for (uint64_t seed : seeds({1, 2, 3, 4, 5})) {
    SCOPED_TRACE(replay("simultaneous close, loss 5%", seed));
    TcpSim sim(seed);
    sim.resolve();
    sim.wire().set_impairments(close_test_link());
    sim.listen(kServerPort);
    const auto a_data = make_data(seed, 256 * kKiB);
    const auto b_data = make_data(seed + 100, 256 * kKiB);
    Peer a, b;
    a.conn = sim.connect(kServerPort);
    a.tx = a_data;
    a.rx_expect = b_data;
    b.tx = b_data;
    b.rx_expect = a_data;
    for (Peer* p : {&a, &b}) {
      p->then = Peer::Then::kNothing;
      p->close_at_eof = false;
    }
    // Phase 1: data both ways until everything is read and acknowledged.
    auto app = [&](Instant now) {
      if (!b.conn) b.conn = sim.accept();
      a.pump(now);
      b.pump(now);
    };
    ASSERT_TRUE(sim.run(sim.now() + 60s, app, [&] {
      return b.conn && a.rx_done == b_data.size() && b.rx_done == a_data.size() && a.tx_ended && b.tx_ended &&
             a.conn->send_queued() == 0 && b.conn->send_queued() == 0;
    })) << "A read " << a.rx_done << " wrote " << a.tx_done << " queued " << a.conn->send_queued() << " "
        << state_name(a.conn->state()) << " err " << a.error << "; B read " << b.rx_done << " wrote " << b.tx_done
        << " " << (b.conn ? state_name(b.conn->state()) : "-") << " err " << b.error;
    // Phase 2: both close in the same instant; the FINs cross (or one is lost and retransmitted).
    a.conn->close(sim.now());
    b.conn->close(sim.now());
    a.closed = b.closed = true;
    bool saw_closing = false;
    ASSERT_TRUE(sim.run(
        sim.now() + 60s,
        [&](Instant) {
          saw_closing |= a.conn->state() == State::kClosing || b.conn->state() == State::kClosing;
        },
        [&] { return final_state(*a.conn) && final_state(*b.conn); }))
        << "A " << state_name(a.conn->state()) << ", B " << state_name(b.conn->state());
    // Each sent its FIN before it knew of the other's: both wait in TIME-WAIT (RFC 9293 figure 6),
    // as compact entries (their users closed them).
    EXPECT_TRUE(sim.a().tcp().in_time_wait(a.conn->tuple()));
    EXPECT_TRUE(sim.b().tcp().in_time_wait(b.conn->tuple()));
    EXPECT_EQ(a.conn->state(), State::kClosed);
    EXPECT_EQ(b.conn->state(), State::kClosed);
    EXPECT_EQ(a.first_bad, SIZE_MAX);
    EXPECT_EQ(b.first_bad, SIZE_MAX);
    EXPECT_EQ(a.rx_hash.value(), fnv1a(b_data));
    EXPECT_EQ(b.rx_hash.value(), fnv1a(a_data));
    EXPECT_EQ(sim.resets(), 0u);
    sim.expect_no_aborts();
    std::printf("[ TcpSim   ] simultaneous close, seed %" PRIu64 ": CLOSING %s\n", seed,
                saw_closing ? "seen" : "not seen");
    sim.expect_all_connections_go();
  }
}

TEST(TcpSim, HalfCloseUnderLossKeepsTheOtherDirectionFlowing) {
  for (uint64_t seed : seeds({1, 2, 3, 4, 5})) {
    SCOPED_TRACE(replay("half close, loss 5%", seed));
    TcpSim sim(seed);
    sim.resolve();
    sim.wire().set_impairments(close_test_link());
    const auto request = make_data(seed, 10 * kKiB);
    const auto response = make_data(seed + 100, kMiB);
    size_t read_after_shutdown = 0;
    size_t written_in_close_wait = 0;
    bool epipe_checked = false;
    size_t a_read_at_shutdown = 0;
    const BulkResult r = run_bulk(sim, request, response, 120s, [&](TcpSim& s, Peer& a, Peer& b) {
      if (a.tx_ended && !epipe_checked) {
        // A's side is shut: it may not write again.
        a_read_at_shutdown = a.rx_done;
        const uint8_t byte = 0;
        auto sent = a.conn->send(s.now(), {&byte, 1});
        EXPECT_FALSE(sent);
        if (!sent) {
          EXPECT_EQ(sent.error(), EPIPE);
        }
        epipe_checked = true;
      }
      if (epipe_checked) read_after_shutdown = a.rx_done - a_read_at_shutdown;
      if (b.conn && b.eof && b.conn->state() == State::kCloseWait) written_in_close_wait = b.tx_done;
    });
    ASSERT_TRUE(r.completed);
    EXPECT_TRUE(epipe_checked);
    EXPECT_GT(read_after_shutdown, response.size() / 2) << "A shut down early: most of the response came after";
    EXPECT_GT(written_in_close_wait, 0u) << "B wrote while in CLOSE-WAIT";
  }
}

// ---- 5. Sequence numbers across 2^32 ----

// RFC 6528's ISN is a 4 µs clock plus a keyed hash of the 4-tuple. A probe stack with the same
// seed tells the hash for a fixed 4-tuple; the clock is then moved to where A's ISS falls 3 MiB
// below 2^32, so that the transfer crosses the wrap (with loss, so retransmissions, duplicate
// ACKs and reassembly all straddle it).
TEST(TcpSim, TransferAcrossSequenceWrapUnderLoss) {
  constexpr uint16_t kClientPort = 40000;
  constexpr uint32_t kBeforeWrap = 3 * kMiB;
  for (uint64_t seed : seeds({1, 2, 3})) {
    SCOPED_TRACE(replay("sequence wrap, loss 1%", seed));
    uint32_t hash_part;
    {
      TcpSim probe(seed);
      tcp::PortBinding bound;
      ASSERT_EQ(probe.a().tcp().bind(bound, Ipv4Addr::any(), kClientPort), 0);
      auto c = probe.connect(kServerPort, &bound);
      probe.a().tcp().unbind(bound);
      ASSERT_TRUE(c);
      hash_part = c->iss().raw() - static_cast<uint32_t>(probe.now().ns() / 4000);
    }
    TcpSim sim(seed);
    sim.resolve();
    dev::Impairments imp = base_link();
    imp.drop = 0.01;
    imp.reorder = 0.02;
    sim.wire().set_impairments(imp);
    sim.listen(kServerPort);
    const uint32_t target = static_cast<uint32_t>(0) - kBeforeWrap;
    const int64_t tick = (sim.now().ns() + 3999) / 4000;
    const uint32_t ahead = target - hash_part - static_cast<uint32_t>(tick);
    sim.jump_to(Instant::from_ns((tick + ahead) * 4000));
    tcp::PortBinding bound;
    ASSERT_EQ(sim.a().tcp().bind(bound, Ipv4Addr::any(), kClientPort), 0);
    auto conn = sim.connect(kServerPort, &bound);
    sim.a().tcp().unbind(bound);
    ASSERT_TRUE(conn);
    ASSERT_EQ(conn->iss().raw(), target) << "the ISN is not the clock plus the 4-tuple's hash any more";

    const auto a_data = make_data(seed, kBulkBytes);
    const auto b_data = make_data(seed + 100, kMiB);
    Peer a, b;
    a.conn = conn;
    a.tx = a_data;
    a.rx_expect = b_data;
    b.tx = b_data;
    b.rx_expect = a_data;
    bool a_snd_una_wrapped = false, b_rcv_nxt_wrapped = false;
    uint32_t a_snd_una = a.conn->snd_una().raw();
    uint32_t b_rcv_nxt = 0;
    const bool ok = sim.run(
        sim.now() + 120s,
        [&](Instant now) {
          if (!b.conn && (b.conn = sim.accept())) b_rcv_nxt = b.conn->rcv_nxt().raw();
          a.pump(now);
          b.pump(now);
          a_snd_una_wrapped |= a.conn->snd_una().raw() < a_snd_una;
          a_snd_una = a.conn->snd_una().raw();
          if (b.conn) {
            b_rcv_nxt_wrapped |= b.conn->rcv_nxt().raw() < b_rcv_nxt;
            b_rcv_nxt = b.conn->rcv_nxt().raw();
          }
        },
        [&] { return a.finished() && b.finished(); });
    ASSERT_TRUE(ok) << "A read " << a.rx_done << " wrote " << a.tx_done << " " << state_name(a.conn->state())
                    << "; B read " << b.rx_done << " " << (b.conn ? state_name(b.conn->state()) : "-");
    EXPECT_TRUE(a_snd_una_wrapped) << "A's SND.UNA never crossed 2^32";
    EXPECT_TRUE(b_rcv_nxt_wrapped) << "B's RCV.NXT never crossed 2^32";
    expect_received_exactly(a, "A");
    expect_received_exactly(b, "B");
    EXPECT_GT(sim.wire().counters().dropped, 0u);
    EXPECT_GT(sim.a().stats().tcp.retransmits, 0u);
    sim.expect_no_aborts();
    sim.expect_all_connections_go();
  }
}

// ---- 6. What an idle connection costs ----

/// Heap bytes in use, malloc's own chunk headers included (what the process really pays), and
/// large blocks malloc mapped on their own (which of the two holds a big table depends on the
/// allocations before it).
/// Opens `total` connections to kServerPort a batch at a time, so that the accept queue never
/// overflows, and accepts them: call once per step of TcpSim::run.
void open_in_batches(TcpSim& sim, size_t total, std::vector<std::shared_ptr<TcpConnection>>& clients,
                     std::vector<std::shared_ptr<TcpConnection>>& servers) {
  constexpr size_t kBatch = 500;
  if (clients.size() < total && clients.size() - servers.size() < kBatch) {
    for (size_t i = 0; i < kBatch && clients.size() < total; ++i) {
      clients.push_back(sim.connect(kServerPort));
      ASSERT_TRUE(clients.back());
    }
  }
  while (auto conn = sim.accept()) servers.push_back(std::move(conn));
}

size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// The memory bound of an idle established connection: everything the core allocates for it (the
// TcpConnection, its share of the 4-tuple table, of the port table and of the shared_ptr's control
// block) on one side, measured over 10,000 connections that have each carried one 64-byte
// exchange. It was 2,095 bytes before the queues stopped holding memory while empty and the three
// timers shared one wheel entry; 728 before the queues, timers and loss recovery moved to a block
// an idle connection gives back; 363 now, the TcpConnection 248 of them (issue 6 asks for 256:
// static_assert in tcp_connection.cc). README "Memory per connection" has the breakdown;
// bench/suite reports the same at 100,000 connections through the API.
constexpr size_t kIdleConnectionBudget = 390;
constexpr size_t kIdleTcbBudget = 256;

TEST(TcpSim, IdleConnectionsCostABoundedFewBytesEach) {
  constexpr size_t kConnections = 10'000;
  TcpSim sim(1);
  sim.resolve();
  sim.listen(kServerPort, 4096);
  std::vector<std::shared_ptr<TcpConnection>> clients;
  std::vector<std::shared_ptr<TcpConnection>> servers;
  std::vector<size_t> echoed(kConnections, 0);  // bytes each client read back
  clients.reserve(kConnections);
  servers.reserve(kConnections);
  const std::vector<uint8_t> request = make_data(7, 64);
  std::array<uint8_t, 256> buf;

  const size_t heap_before = heap_in_use();
  const Instant start = sim.now();
  const bool ok = sim.run(
      sim.now() + 60s,
      [&](Instant now) {
        open_in_batches(sim, kConnections, clients, servers);
        for (auto& s : servers) {  // echo what arrived
          while (s->readable() > 0) {
            auto got = s->receive(now, buf, false);
            ASSERT_TRUE(got);
            auto sent = s->send(now, {buf.data(), *got});
            ASSERT_TRUE(sent);
            ASSERT_EQ(*sent, *got);
          }
        }
        for (size_t i = 0; i < clients.size(); ++i) {
          TcpConnection& c = *clients[i];
          if (c.state() != State::kEstablished) continue;
          if (c.send_queued() == 0 && echoed[i] == 0 && c.snd_nxt() == c.iss() + 1) {
            auto sent = c.send(now, request);
            ASSERT_TRUE(sent);
            ASSERT_EQ(*sent, request.size());
          }
          while (c.readable() > 0) {
            auto got = c.receive(now, buf, false);
            ASSERT_TRUE(got);
            ASSERT_EQ(std::memcmp(buf.data(), request.data() + echoed[i], *got), 0) << "client " << i;
            echoed[i] += *got;
          }
        }
      },
      [&] {
        return servers.size() == kConnections &&
               std::all_of(echoed.begin(), echoed.end(), [&](size_t n) { return n == request.size(); });
      });
  ASSERT_TRUE(ok) << "opened " << clients.size() << ", accepted " << servers.size();
  // Let the delayed ACKs go out and every timer but the idle ones settle.
  sim.run(sim.now() + 1s, [] { return false; });
  for (size_t i = 0; i < kConnections; ++i) {
    ASSERT_EQ(clients[i]->state(), State::kEstablished);
    ASSERT_EQ(servers[i]->state(), State::kEstablished);
    ASSERT_EQ(clients[i]->send_queued() + servers[i]->send_queued(), 0u);
    ASSERT_EQ(clients[i]->readable() + servers[i]->readable(), 0u);
    ASSERT_FALSE(clients[i]->holds_transfer_state()) << "client " << i;
    ASSERT_FALSE(servers[i]->holds_transfer_state()) << "server " << i;
  }
  const size_t heap_after = heap_in_use();
  const size_t per_connection = (heap_after - heap_before) / (2 * kConnections);
  std::printf("[ TcpSim   ] %zu idle connections each side after one 64-byte exchange (%.0f ms simulated): "
              "%zu heap bytes per connection (sizeof(TcpConnection) %zu)\n",
              kConnections, ms(sim.now() - start), per_connection, sizeof(TcpConnection));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer's allocator does not keep mallinfo2's counts; the main build checks the bound";
#else
  EXPECT_LE(per_connection, kIdleConnectionBudget);
#endif
  EXPECT_LE(sizeof(TcpConnection), kIdleTcbBudget);
}

// TIME-WAIT's bound: a connection its user closed waits 2 MSL as a compact entry (tcp/time_wait.h),
// not as a TCB. 10,000 connections, closed by their clients first: the clients' heap afterwards,
// every TCB freed, is what the TIME-WAIT entries cost: 260 bytes each, of which the entry 112 (96
// and malloc's header), its slots in the TIME-WAIT table and in the port table (it holds its
// ephemeral port) about 41 each, and the 4-tuple table's slots left from the peak (a hash table
// keeps its capacity) 54. As TCBs with their transfer blocks they cost over 700 each;
// README "Memory per connection".
constexpr size_t kTimeWaitBudget = 280;

TEST(TcpSim, TimeWaitEntriesCostAFewBytesEach) {
  constexpr size_t kConnections = 10'000;
  TcpSim sim(2);
  sim.resolve();
  sim.listen(kServerPort, 4096);
  std::vector<std::shared_ptr<TcpConnection>> clients;
  std::vector<std::shared_ptr<TcpConnection>> servers;
  clients.reserve(kConnections);
  servers.reserve(kConnections);
  std::array<uint8_t, 64> buf;
  const size_t heap_before = heap_in_use();
  const bool ok = sim.run(
      sim.now() + 120s,
      [&](Instant now) {
        open_in_batches(sim, kConnections, clients, servers);
        for (auto& c : clients) {  // the client closes first: its end waits in TIME-WAIT
          if (c->state() == State::kEstablished && !c->orphaned()) c->close(now);
        }
        for (auto& s : servers) {  // the server closes once it reads the end of the stream
          if (!s->orphaned() && s->read_shut()) {
            auto got = s->receive(now, buf, false);
            ASSERT_TRUE(got);
            ASSERT_EQ(*got, 0u);
            s->close(now);
          }
        }
      },
      [&] {
        return servers.size() == kConnections && sim.a().tcp().time_wait_connections() == kConnections &&
               std::all_of(servers.begin(), servers.end(), [](const auto& s) { return s->state() == State::kClosed; });
      });
  ASSERT_TRUE(ok) << "accepted " << servers.size() << ", TIME-WAIT " << sim.a().tcp().time_wait_connections();
  for (const auto& c : clients) ASSERT_TRUE(sim.a().tcp().in_time_wait(c->tuple()));
  clients.clear();
  servers.clear();
  sim.run(sim.now() + 1s, [] { return false; });  // the graveyards are reaped
  EXPECT_EQ(sim.b().tcp().connections(), 0u);
  EXPECT_EQ(sim.a().tcp().connections(), kConnections) << "only the TIME-WAIT entries";
  const size_t heap_after = heap_in_use();
  const size_t per_entry = heap_after > heap_before ? (heap_after - heap_before) / kConnections : 0;
  std::printf("[ TcpSim   ] %zu connections in TIME-WAIT: %zu heap bytes each (sizeof(TimeWaitEntry) %zu)\n",
              kConnections, per_entry, sizeof(tcp::TimeWaitEntry));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer's allocator does not keep mallinfo2's counts; the main build checks the bound";
#else
  EXPECT_LE(per_entry, kTimeWaitBudget);
#endif
}

}  // namespace
}  // namespace ustack
