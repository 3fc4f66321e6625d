// The protocol core's cost per TCP data segment, with no device: two Stacks (A = 198.18.0.1,
// B = 198.18.0.2) joined by a dev::MemoryWire without impairments and driven on a ManualClock,
// as tests/unit/tcp_simulation_test.cc drives them. Everything goes through the stacks' own code
// (Stack::poll, TcpConnection::send/receive, the wire's ports); the benchmark only plays the
// applications and the clock. A regression in the per-segment path shows here as nanoseconds
// and instructions on any machine, DPDK or not.
//
// Each benchmark says above it exactly what its timed region holds. Figures (Google Benchmark
// counters, also in --benchmark_format=json):
//   ns_per_segment            wall time inside the timed regions per data segment: the median
//                             over batches of 32 (BM_RequestResponse64: ns_per_exchange, one
//                             request and its echo, the median over runs of 32 exchanges)
//   mean_ns_per_segment       the same as a mean (what the Time column shows, per batch): equal
//                             on a quiet machine, inflated by every time slice lost to another
//                             process on a busy one
//   instructions_per_segment  user-space instructions inside the timed regions, when this CPU's
//                             counter can be read (perf_event_open); many VMs cannot, and then
//                             bench/core-cost counts them with callgrind: the timed regions toggle
//                             callgrind's collection (run it with --collect-atstart=no), so the
//                             count and the profile cover the timed regions and nothing else
//   peer_ns_per_segment       the other stack's (untimed) share of the same segments (median)
//   acks_per_segment          pure ACKs the receiver sent per data segment (delayed-ACK policy:
//                             every second full-sized segment, Linux's rule for small ones)
//   segments, segment_bytes   how many data segments the timed regions saw, and their payload
// items_per_second counts data segments (exchanges in BM_RequestResponse64); bytes_per_second
// counts payload bytes. The Time column of the /manual_time benchmarks is per batch of 32.
//
// Our flag besides Google Benchmark's: --iterations=N runs every benchmark for exactly N
// iterations (batches of 32 segments, or exchanges), for a fixed amount of work under callgrind
// (Google Benchmark 1.7 has no "--benchmark_min_time=Nx").

#include <benchmark/benchmark.h>

#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_TOGGLE_COLLECT
#endif

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
constexpr uint16_t kPort = 8080;
// Segments per batch: one receive burst of the stack (Stack::kBurst, DPDK's customary 32).
constexpr size_t kBatch = Stack::kBurst;
// Simulated time per data segment, about one 1500-byte frame at 10 Gbit/s: the timer wheel's
// 1 ms ticks, the delayed-ACK timer and the timestamps' 1 ms clock see time pass as under load.
constexpr Duration kSegmentTime = 1us;
constexpr size_t kWarmupBatches = 200;    // before timing: cwnd open, allocator and caches warm
constexpr size_t kWarmupExchanges = 2000;
constexpr size_t kSmallSegment = 64;
constexpr size_t kAppBuffer = 64 * 1024;  // what the applications read into per call

// ---- Measuring ----

/// User-space instructions retired by this thread, when the CPU lets us count them (many VMs do
/// not expose the counter: then ok() is false).
class InstructionCounter {
 public:
  InstructionCounter() {
    perf_event_attr attr{};
    attr.type = PERF_TYPE_HARDWARE;
    attr.size = sizeof(attr);
    attr.config = PERF_COUNT_HW_INSTRUCTIONS;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    fd_ = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
  }
  ~InstructionCounter() {
    if (fd_ >= 0) close(fd_);
  }
  InstructionCounter(const InstructionCounter&) = delete;
  InstructionCounter& operator=(const InstructionCounter&) = delete;

  bool ok() const { return fd_ >= 0; }
  uint64_t read() const {
    uint64_t v = 0;
    return ::read(fd_, &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v)) ? v : 0;
  }

 private:
  int fd_ = -1;
};

/// Adds up timed regions: wall time (steady_clock, read next to the work so that the counter's
/// read() system calls stay outside), instructions when countable, and, for the benchmark's own
/// timed regions, callgrind's collection switched on inside them only. Each region records its
/// ns per unit (segment or exchange), so that the median shows what one batch costs even on a
/// machine where a compiler preempts us now and then: a preempted batch counts its whole time
/// slice (milliseconds) into the mean, and only into the mean.
class Meter {
 public:
  explicit Meter(bool toggles_callgrind) : toggles_callgrind_(toggles_callgrind) { per_unit_ns_.reserve(1 << 16); }

  void start() {
    if (counter_.ok()) i0_ = counter_.read();
    t0_ = std::chrono::steady_clock::now();
    if (toggles_callgrind_) CALLGRIND_TOGGLE_COLLECT;
  }
  /// Ends the region, which did `units` segments (exchanges) of work; returns its seconds.
  double stop(uint64_t units) {
    if (toggles_callgrind_) CALLGRIND_TOGGLE_COLLECT;
    const auto t1 = std::chrono::steady_clock::now();
    if (counter_.ok()) instructions_ += counter_.read() - i0_;
    const double s = std::chrono::duration<double>(t1 - t0_).count();
    seconds_ += s;
    units_ += units;
    if (units > 0) per_unit_ns_.push_back(s * 1e9 / static_cast<double>(units));
    return s;
  }
  uint64_t units() const { return units_; }
  double mean_ns() const { return units_ ? seconds_ * 1e9 / static_cast<double>(units_) : 0; }
  /// The median over regions of ns per unit.
  double median_ns() {
    if (per_unit_ns_.empty()) return 0;
    auto mid = per_unit_ns_.begin() + static_cast<std::ptrdiff_t>(per_unit_ns_.size() / 2);
    std::nth_element(per_unit_ns_.begin(), mid, per_unit_ns_.end());
    return *mid;
  }
  bool counts_instructions() const { return counter_.ok(); }
  double instructions_per_unit() const {
    return units_ ? static_cast<double>(instructions_) / static_cast<double>(units_) : 0;
  }

 private:
  bool toggles_callgrind_;
  InstructionCounter counter_;
  std::chrono::steady_clock::time_point t0_;
  uint64_t i0_ = 0;
  double seconds_ = 0;
  uint64_t units_ = 0;
  uint64_t instructions_ = 0;
  std::vector<double> per_unit_ns_;
};

// ---- Two stacks on a wire ----

StackConfig config_for(Ipv4Addr addr, uint64_t seed) {
  StackConfig config;
  config.address = Ipv4Cidr{addr, 24};
  config.seed = seed;
  // A run covers minutes of simulated time: no ARP re-probe in the middle of a measurement.
  config.arp.entry_lifetime = 24h;
  return config;
}

const std::vector<uint8_t>& source_bytes() {
  static const std::vector<uint8_t> bytes = [] {
    std::vector<uint8_t> b(kAppBuffer);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 131 + 7);
    return b;
  }();
  return bytes;
}

/// A connected to B over a clean wire (no loss, no delay: a frame sent is receivable at once).
class Pair {
 public:
  Pair()
      : wire_(clock_, 1, dev::test_caps(1), dev::test_caps(2)),
        a_(config_for(kAddrA, 1), wire_.a()),
        b_(config_for(kAddrB, 2), wire_.b()) {
    a_.start(now());
    b_.start(now());
  }
  ~Pair() {
    if (listener_) b_.tcp().unlisten(now(), *listener_);
    b_.tcp().unbind(binding_);
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;

  /// Connects A to B:kPort (B's connection takes the listener's options) and runs the handshake
  /// (ARP first) on simulated time. False when it did not complete.
  bool connect(const tcp::SocketOptions& a_options, const tcp::SocketOptions& b_options) {
    if (b_.tcp().bind(binding_, Ipv4Addr::any(), kPort) != 0) return false;
    listener_ = std::make_unique<tcp::TcpListener>(binding_, 16, b_options);
    if (b_.tcp().listen(*listener_) != 0) return false;
    auto c = a_.tcp().connect(now(), nullptr, kAddrB, kPort, a_options);
    if (!c) return false;
    a_conn_ = *c;
    a_.flush();
    for (int turn = 0; turn < 1000 && !established(); ++turn) {
      a_.poll(now());
      b_.poll(now());
      if (!b_conn_) b_conn_ = listener_->accept();
      clock_.advance(100us);
    }
    return established();
  }

  Instant now() const { return clock_.now(); }
  void advance(Duration d) { clock_.advance(d); }
  Stack& a() { return a_; }
  Stack& b() { return b_; }
  dev::MemoryPort& a_port() { return wire_.a(); }
  dev::MemoryPort& b_port() { return wire_.b(); }
  TcpConnection& a_conn() { return *a_conn_; }
  TcpConnection& b_conn() { return *b_conn_; }

 private:
  bool established() const {
    return a_conn_ && b_conn_ && a_conn_->state() == State::kEstablished && b_conn_->state() == State::kEstablished;
  }

  ManualClock clock_;
  dev::MemoryWire wire_;
  Stack a_;
  Stack b_;
  tcp::PortBinding binding_;
  std::unique_ptr<tcp::TcpListener> listener_;
  std::shared_ptr<TcpConnection> a_conn_;
  std::shared_ptr<TcpConnection> b_conn_;
};

// ---- The applications ----

/// Reads everything readable, as an event loop does once a poll says the socket is readable.
size_t read_all(TcpConnection& c, Instant now, std::span<uint8_t> buf) {
  size_t total = 0;
  while (c.readable() > 0) {
    auto n = c.receive(now, buf, false);
    if (!n || *n == 0) break;
    total += *n;
  }
  return total;
}

/// The same with recv_zc's core (TcpConnection::lend): the buffers are lent, not copied out, and
/// the application gives each back at once (it read them in place).
size_t lend_all(TcpConnection& c, Instant now) {
  size_t total = 0;
  // Room for a whole batch, as read_all's buffer has: lending a part, then the rest, sends a
  // window update halfway instead of one at the end (receiver SWS avoidance), as recv() does
  // with a small buffer.
  std::array<Packet, 64> lent;
  while (c.readable() > 0) {
    auto n = c.lend(now, lent);
    if (!n || *n == 0) break;
    for (size_t i = 0; i < *n; ++i) {
      total += lent[i].size();
      lent[i] = Packet();
    }
  }
  return total;
}

/// How B's application takes the bytes: recv() copies them out, recv_zc() borrows the buffers.
enum class Reader { kCopy, kLend };
/// How A's application hands over its bytes: send() copies them from the application's memory
/// into the send queue's buffers; with send_zc the application writes them into buffers the stack
/// lent (TcpConnection::send_buffers), here by copying the same source bytes. Either way the
/// bytes are written into the buffer once, inside the timed region.
enum class Writer { kCopy, kLentBuffers };

/// The sender's turn: A takes in what came back (B's ACKs and window updates), then its
/// application writes kBatch chunks of `size` bytes, one write per segment; with TCP_NODELAY and
/// the window open each write leaves as one segment at once. Frames are handed to the wire (and
/// so queued at B's port) by the batch flush after every 32 and by the final flush().
bool sender_turn(Pair& p, size_t size, Writer writer = Writer::kCopy) {
  p.a().poll(p.now());
  const std::span<const uint8_t> chunk = std::span(source_bytes()).first(size);
  for (size_t i = 0; i < kBatch; ++i) {
    if (writer == Writer::kLentBuffers) {
      std::array<Packet, 1> buffer{p.a_conn().alloc_send_buffer()};
      if (!buffer[0] || buffer[0].tailroom() < size) return false;
      std::memcpy(buffer[0].append(size), chunk.data(), size);
      auto n = p.a_conn().send_buffers(p.now(), buffer);
      if (!n || *n != 1) return false;
      continue;
    }
    auto n = p.a_conn().send(p.now(), chunk);
    if (!n || *n != size) return false;
  }
  p.a().flush();
  return true;
}

/// The receiver's turn: B polls (one receive burst takes the whole batch), its application reads
/// all after each poll, and what the reads sent (window updates) is flushed, as the API does after
/// a call. Returns the bytes read.
size_t receiver_turn(Pair& p, std::span<uint8_t> buf, Reader reader = Reader::kCopy) {
  size_t got = 0;
  while (p.b_port().rx_pending() > 0) {
    p.b().poll(p.now());
    got += reader == Reader::kCopy ? read_all(p.b_conn(), p.now(), buf) : lend_all(p.b_conn(), p.now());
  }
  p.b().flush();
  return got;
}

/// A connected pair, warmed up; `size` 0 means the connection's MSS.
struct Flow {
  Pair pair;
  size_t size = 0;
  std::vector<uint8_t> buf = std::vector<uint8_t>(kAppBuffer);
};

/// Bytes written but not sent yet (the send queue runs from SND.UNA to the last byte written).
uint32_t unsent(const TcpConnection& c) {
  return static_cast<uint32_t>(c.snd_una() + static_cast<uint32_t>(c.send_queued()) - c.snd_nxt());
}

/// Sets up a flow from A to B and runs kWarmupBatches through it, until a whole batch leaves A at
/// once (slow start has opened the congestion window past it); an error message or null.
const char* start_flow(Flow& f, size_t requested_size) {
  tcp::SocketOptions a_options = tcp::SocketOptions::defaults(f.pair.a().config().tcp);
  a_options.nodelay = true;  // a 64-byte write is a 64-byte segment, not coalesced by Nagle
  const tcp::SocketOptions b_options = tcp::SocketOptions::defaults(f.pair.b().config().tcp);
  if (!f.pair.connect(a_options, b_options)) return "the handshake did not complete";
  f.size = requested_size ? requested_size : f.pair.a_conn().mss();
  for (size_t i = 0; i < kWarmupBatches; ++i) {
    if (!sender_turn(f.pair, f.size)) return "warm-up: A's application could not write a batch";
    // Until the window has opened, part of the batch waits for ACKs: turn until all is sent.
    for (int turn = 0; turn < 100 && unsent(f.pair.a_conn()) > 0; ++turn) {
      receiver_turn(f.pair, f.buf);
      f.pair.advance(kSegmentTime * kBatch);
      f.pair.a().poll(f.pair.now());
    }
    if (unsent(f.pair.a_conn()) > 0) return "warm-up: A's data did not leave";
    receiver_turn(f.pair, f.buf);
  }
  if (!sender_turn(f.pair, f.size) || f.pair.b_port().rx_pending() != kBatch) {
    return "warm-up: a batch does not leave A at once";
  }
  if (receiver_turn(f.pair, f.buf) != kBatch * f.size) return "warm-up: B did not read a whole batch";
  f.pair.advance(kSegmentTime * kBatch);
  return nullptr;
}

/// What the stacks' counters say about the segments, taken before and after the timed loop.
struct Snapshot {
  uint64_t a_tx_segments, b_rx_segments, b_tx_segments, retransmits;
  explicit Snapshot(Pair& p)
      : a_tx_segments(p.a().stats().tcp.tx_segments),
        b_rx_segments(p.b().stats().tcp.rx_segments),
        b_tx_segments(p.b().stats().tcp.tx_segments),
        retransmits(p.a().stats().tcp.retransmits + p.b().stats().tcp.retransmits) {}
};

void report(benchmark::State& state, Meter& timed, Meter& peer, const Flow& f, const Snapshot& before,
            const Snapshot& after) {
  const uint64_t segments = after.b_rx_segments - before.b_rx_segments;
  if (segments == 0) return;
  const double n = static_cast<double>(segments);
  state.SetItemsProcessed(static_cast<int64_t>(segments));
  state.SetBytesProcessed(static_cast<int64_t>(segments * f.size));
  state.counters["ns_per_segment"] = timed.median_ns();
  state.counters["mean_ns_per_segment"] = timed.mean_ns();
  if (timed.counts_instructions()) state.counters["instructions_per_segment"] = timed.instructions_per_unit();
  state.counters["peer_ns_per_segment"] = peer.median_ns();
  // B sends nothing but ACKs, so its segments are the pure ACKs (window updates included).
  state.counters["acks_per_segment"] = static_cast<double>(after.b_tx_segments - before.b_tx_segments) / n;
  state.counters["segments"] = n;
  state.counters["segment_bytes"] = static_cast<double>(f.size);
  if (after.retransmits != before.retransmits) state.SkipWithError("a segment was retransmitted: not a clean flow");
  if (after.a_tx_segments - before.a_tx_segments != segments || timed.units() != segments) {
    state.SkipWithError("the segments counted do not match what was sent");
  }
}

// ---- The benchmarks ----

enum class TimedSide { kReceiver, kSender };

/// The loop both data-segment benchmarks share: per iteration A sends a batch and B takes it in;
/// `timed` says whose turn is the measured one (the other's is reported as peer ns).
void run_data_segments(benchmark::State& state, size_t requested_size, TimedSide timed_side,
                       Reader reader = Reader::kCopy, Writer writer = Writer::kCopy) {
  Flow f;
  if (const char* err = start_flow(f, requested_size)) {
    state.SkipWithError(err);
    return;
  }
  Meter timed(true), peer(false);
  Meter& sender = timed_side == TimedSide::kSender ? timed : peer;
  Meter& receiver = timed_side == TimedSide::kReceiver ? timed : peer;
  const Snapshot before(f.pair);
  for (auto _ : state) {
    sender.start();
    const bool sent = sender_turn(f.pair, f.size, writer);
    const double sender_s = sender.stop(kBatch);
    if (!sent || f.pair.b_port().rx_pending() != kBatch) {
      state.SkipWithError("A did not send a whole batch (window or buffer closed)");
      break;
    }
    receiver.start();
    const size_t got = receiver_turn(f.pair, f.buf, reader);
    const double receiver_s = receiver.stop(kBatch);
    state.SetIterationTime(timed_side == TimedSide::kSender ? sender_s : receiver_s);
    if (got != kBatch * f.size) {
      state.SkipWithError("B did not read the whole batch");
      break;
    }
    f.pair.advance(kSegmentTime * kBatch);
  }
  report(state, timed, peer, f, before, Snapshot(f.pair));
}

/// B receives in-order data segments of `size` bytes (0: the MSS, 1448 with timestamps) on an
/// established connection. Per iteration (one batch of 32 segments):
///   untimed: A's turn (sender_turn): A processes B's ACKs from the previous batch, its
///     application writes 32 segments, A segments and transmits them; the wire copies each frame
///     (the send queue still references it) and queues it at B's port. These are the frames B
///     receives: captured from A's real transmissions, nothing re-stamped by hand.
///   TIMED: B's turn (receiver_turn): Stack::poll on B (timers; rx_burst from the port; per
///     frame Ethernet → IPv4 (header checksum) → TCP parse (checksum over the payload) → 4-tuple
///     demux → segment_arrives (PAWS, sequence check, ACK field, window, data into the receive
///     queue, ACK policy) → readiness; B's ACKs (every second full segment; for 64-byte segments
///     once more than an MSS is unacknowledged, or the delayed-ACK timer) built, checksummed and
///     handed to the wire (queued at A's port); reap); then B's application reads everything
///     (copy out, buffers freed) and any window update it triggered is flushed to the wire.
void BM_ReceiveDataSegment(benchmark::State& state, size_t requested_size) {
  run_data_segments(state, requested_size, TimedSide::kReceiver);
}

/// BM_ReceiveDataSegment with the application borrowing the buffers (recv_zc) instead of copying
/// the bytes out (recv): what the zero-copy receive saves per segment.
void BM_ReceiveDataSegmentLent(benchmark::State& state, size_t requested_size) {
  run_data_segments(state, requested_size, TimedSide::kReceiver, Reader::kLend);
}

/// A sends data segments of `size` bytes (0: the MSS). Per iteration (one batch of 32 segments):
///   TIMED: A's turn (sender_turn): Stack::poll on A (timers; rx_burst; B's ACKs and window update
///     from the previous batch through Ethernet → IPv4 → TCP → segment_arrives: ACK processing,
///     send queue trimmed and its buffers freed, RTT sample, congestion window, retransmission
///     timer); then 32 application writes, each: copy into a new send-queue buffer (allocated),
///     output() → segment header with timestamps, TCP checksum over the payload, IPv4 header,
///     ARP cache lookup, Ethernet header, the stack's TX batch; the batch's tx_burst into the
///     wire, which copies every data frame (the send queue keeps a reference on the original, as
///     a DPDK NIC would hold the mbuf until TX completion; the memory wire copies instead) and
///     queues it at B's port.
///   untimed: B's turn (receiver_turn), which produces the ACKs that A takes in at the start of
///     the next timed turn. Its cost is reported as peer_ns_per_segment.
void BM_SendDataSegment(benchmark::State& state, size_t requested_size) {
  run_data_segments(state, requested_size, TimedSide::kSender);
}

/// BM_SendDataSegment with the application filling buffers the stack lent (send_zc) instead of
/// having send() copy its bytes: what the zero-copy send saves per segment.
void BM_SendDataSegmentLent(benchmark::State& state, size_t requested_size) {
  run_data_segments(state, requested_size, TimedSide::kSender, Reader::kCopy, Writer::kLentBuffers);
}

/// One 64-byte request from A and its 64-byte echo from B, both stacks' costs, all timed (the
/// whole loop body; one iteration = one exchange): A's application writes the request (which
/// carries A's delayed ACK of the previous echo), A flushes it to the wire; B polls (receive path
/// as above), its application reads the 64 bytes and writes them back (the echo carries B's ACK
/// of the request: no pure ACK goes either way), B flushes; A polls, its application reads the
/// echo. Nagle is on, as in a default socket: each side's previous segment is acknowledged by
/// the time it writes, so nothing waits. The clock advances 2 µs per exchange.
void BM_RequestResponse64(benchmark::State& state) {
  Pair p;
  const tcp::SocketOptions options = tcp::SocketOptions::defaults(p.a().config().tcp);
  if (!p.connect(options, options)) {
    state.SkipWithError("the handshake did not complete");
    return;
  }
  std::vector<uint8_t> buf(kAppBuffer);
  const std::span<const uint8_t> request = std::span(source_bytes()).first(kSmallSegment);
  auto exchange = [&]() -> bool {
    auto sent = p.a_conn().send(p.now(), request);
    if (!sent || *sent != kSmallSegment) return false;
    p.a().flush();
    p.b().poll(p.now());
    const size_t got = read_all(p.b_conn(), p.now(), buf);
    if (got != kSmallSegment) return false;
    auto echoed = p.b_conn().send(p.now(), std::span(buf).first(got));
    if (!echoed || *echoed != got) return false;
    p.b().flush();
    p.a().poll(p.now());
    return read_all(p.a_conn(), p.now(), buf) == kSmallSegment;
  };
  for (size_t i = 0; i < kWarmupExchanges; ++i) {
    if (!exchange()) {
      state.SkipWithError("warm-up: an exchange did not complete");
      return;
    }
    p.advance(2 * kSegmentTime);
  }
  const uint64_t segments_before = p.a().stats().tcp.tx_segments + p.b().stats().tcp.tx_segments;
  const uint64_t retransmits_before = p.a().stats().tcp.retransmits + p.b().stats().tcp.retransmits;
  // Timed as regions of kBatch exchanges back to back (for the median; nothing runs between them).
  Meter timed(true);
  int64_t exchanges = 0;
  uint64_t in_region = 0;
  timed.start();
  for (auto _ : state) {
    if (!exchange()) {
      state.SkipWithError("an exchange did not complete");
      break;
    }
    p.advance(2 * kSegmentTime);
    ++exchanges;
    if (++in_region == kBatch) {
      timed.stop(in_region);
      in_region = 0;
      timed.start();
    }
  }
  timed.stop(in_region);
  if (exchanges == 0) return;
  const double n = static_cast<double>(exchanges);
  state.SetItemsProcessed(exchanges);
  state.SetBytesProcessed(exchanges * 2 * static_cast<int64_t>(kSmallSegment));
  state.counters["ns_per_exchange"] = timed.median_ns();
  state.counters["mean_ns_per_exchange"] = timed.mean_ns();
  if (timed.counts_instructions()) state.counters["instructions_per_exchange"] = timed.instructions_per_unit();
  // Two data segments per exchange when every ACK rides on data.
  state.counters["segments_per_exchange"] =
      static_cast<double>(p.a().stats().tcp.tx_segments + p.b().stats().tcp.tx_segments - segments_before) / n;
  state.counters["exchanges"] = n;
  if (p.a().stats().tcp.retransmits + p.b().stats().tcp.retransmits != retransmits_before) {
    state.SkipWithError("a segment was retransmitted: not a clean exchange");
  }
}

void print_help() {
  std::printf(
      "core_bench: the ustack protocol core's cost per TCP data segment over the in-memory wire\n"
      "(no device). Benchmarks: BM_ReceiveDataSegment/{mss,64}, BM_ReceiveDataSegmentLent/mss,\n"
      "BM_SendDataSegment/{mss,64}, BM_SendDataSegmentLent/mss,\n"
      "BM_RequestResponse64. Counters: ns_per_segment (ns_per_exchange; median over batches),\n"
      "mean_ns_per_segment, instructions_per_segment (when the CPU's counter is readable),\n"
      "peer_ns_per_segment, acks_per_segment, segments. What is timed: see the source.\n"
      "\n"
      "Own flag:\n"
      "  --iterations=N   exactly N iterations per benchmark (a batch of 32 segments, or one\n"
      "                   exchange), e.g. under valgrind --tool=callgrind --collect-atstart=no\n"
      "\n"
      "Google Benchmark's flags:\n");
  benchmark::PrintDefaultHelp();
}

}  // namespace
}  // namespace ustack

int main(int argc, char** argv) {
  using namespace ustack;
  int64_t iterations = 0;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i > 0 && arg.starts_with("--iterations=")) {
      iterations = std::strtoll(argv[i] + std::strlen("--iterations="), nullptr, 10);
      if (iterations <= 0) {
        std::fprintf(stderr, "core_bench: --iterations takes a positive whole number\n");
        return 2;
      }
      continue;
    }
    args.push_back(argv[i]);
  }
  std::vector<benchmark::internal::Benchmark*> all;
  for (const auto& [name, size] : {std::pair{"mss", size_t{0}}, std::pair{"64", kSmallSegment}}) {
    all.push_back(benchmark::RegisterBenchmark(("BM_ReceiveDataSegment/" + std::string(name)).c_str(),
                                               BM_ReceiveDataSegment, size)->UseManualTime());
  }
  all.push_back(benchmark::RegisterBenchmark("BM_ReceiveDataSegmentLent/mss", BM_ReceiveDataSegmentLent, size_t{0})
                    ->UseManualTime());
  for (const auto& [name, size] : {std::pair{"mss", size_t{0}}, std::pair{"64", kSmallSegment}}) {
    all.push_back(benchmark::RegisterBenchmark(("BM_SendDataSegment/" + std::string(name)).c_str(),
                                               BM_SendDataSegment, size)->UseManualTime());
  }
  all.push_back(benchmark::RegisterBenchmark("BM_SendDataSegmentLent/mss", BM_SendDataSegmentLent, size_t{0})
                    ->UseManualTime());
  all.push_back(benchmark::RegisterBenchmark("BM_RequestResponse64", BM_RequestResponse64));
  for (size_t i = 0; i < all.size(); ++i) {
    all[i]->Unit(i + 1 < all.size() ? benchmark::kMicrosecond : benchmark::kNanosecond);  // batches; exchanges
    if (iterations > 0) all[i]->Iterations(iterations);
  }
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data(), print_help);
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
