// Two stacks over the in-memory wire, on one ManualClock. With the wire's seeded impairments
// (loss, duplication, reordering, corruption, delay, jitter) every datagram that arrives must be
// byte for byte what was sent: corruption is the checksums' to catch, never the application's.
// A failure names its seed; USTACK_SIM_SEED=<n> runs that seed alone and replays it exactly.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/rng.h"
#include "dev/memory_wire.h"
#include "stack/stack.h"
#include "test_frames.h"

namespace ustack {
namespace {

using test::Bytes;

constexpr Ipv4Addr kAddrA(198, 18, 0, 1);
constexpr Ipv4Addr kAddrB(198, 18, 0, 2);
constexpr uint16_t kPortA = 5000;
constexpr uint16_t kPortB = 6000;

uint64_t fnv1a(std::span<const uint8_t> bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ULL;
  return h;
}

/// The seeds to run: USTACK_SIM_SEED alone when set (to replay a failure), else a fixed list.
std::vector<uint64_t> seeds() {
  if (const char* s = std::getenv("USTACK_SIM_SEED")) return {std::strtoull(s, nullptr, 0)};
  return {1, 2, 3, 4, 5, 6};
}

std::string seed_trace(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (replay with USTACK_SIM_SEED=" + std::to_string(seed) + ")";
}

StackConfig config_for(Ipv4Addr addr, uint64_t seed) {
  StackConfig config;
  config.address = Ipv4Cidr{addr, 24};
  config.seed = seed;
  return config;
}

/// Datagram `index` of one direction: its index, then bytes drawn from (seed, index).
Bytes make_payload(uint64_t seed, uint32_t index, size_t len) {
  Bytes b(len);
  store_be32(b.data(), index);
  Rng rng(seed * 0x9e3779b97f4a7c15ULL + index);
  for (size_t i = 4; i < len; ++i) b[i] = static_cast<uint8_t>(rng.next());
  return b;
}

/// One direction's bookkeeping: what was sent, what arrived.
struct Flow {
  std::vector<uint64_t> sent_hash;
  std::vector<size_t> sent_len;
  std::map<uint32_t, int> arrivals;  // index → copies received
  uint64_t mismatches = 0;
  std::string trace;  // arrival order, for the replay check

  void check(std::span<const uint8_t> got, udp::Endpoint from, udp::Endpoint expected_from) {
    EXPECT_EQ(from.addr, expected_from.addr);
    EXPECT_EQ(from.port, expected_from.port);
    if (got.size() < 4) {
      ADD_FAILURE() << "a " << got.size() << "-byte datagram arrived; every one sent has at least 4";
      ++mismatches;
      return;
    }
    const uint32_t index = load_be32(got.data());
    if (index >= sent_hash.size() || got.size() != sent_len[index] || fnv1a(got) != sent_hash[index]) {
      ADD_FAILURE() << "datagram claiming index " << index << " (" << got.size()
                    << " bytes) is not what was sent: corruption got through";
      ++mismatches;
      return;
    }
    ++arrivals[index];
    trace += std::to_string(index) + ",";
  }
  size_t distinct() const { return arrivals.size(); }
};

class Simulation {
 public:
  explicit Simulation(uint64_t seed)
      : wire_(clock_, seed, dev::test_caps(1), dev::test_caps(2)),
        a_(config_for(kAddrA, seed), wire_.a()),
        b_(config_for(kAddrB, seed + 1), wire_.b()) {
    a_.start(now());
    b_.start(now());
    EXPECT_EQ(a_.udp().bind(sock_a_, {Ipv4Addr::any(), kPortA}), 0);
    EXPECT_EQ(b_.udp().bind(sock_b_, {Ipv4Addr::any(), kPortB}), 0);
    sock_a_.rcvbuf = sock_b_.rcvbuf = 1 << 20;
  }
  ~Simulation() {
    a_.udp().unbind(sock_a_);
    b_.udp().unbind(sock_b_);
  }

  Instant now() const { return clock_.now(); }
  dev::MemoryWire& wire() { return wire_; }
  Stack& a() { return a_; }
  Stack& b() { return b_; }

  /// Runs both stacks for `d` of simulated time, in steps of `tick`, draining both sockets.
  void run_for(Duration d, Duration tick = 100us) {
    const Instant end = now() + d;
    while (now() < end) {
      clock_.advance(tick);
      a_.poll(now());
      b_.poll(now());
      drain(sock_b_, a_to_b, {kAddrA, kPortA});
      drain(sock_a_, b_to_a, {kAddrB, kPortB});
    }
  }

  /// Sends datagram `index` of `flow` (from A when a_to_b, else from B).
  void send(bool from_a, uint32_t index, Bytes payload) {
    Flow& flow = from_a ? a_to_b : b_to_a;
    if (flow.sent_hash.size() <= index) {
      flow.sent_hash.resize(index + 1);
      flow.sent_len.resize(index + 1);
    }
    flow.sent_hash[index] = fnv1a(payload);
    flow.sent_len[index] = payload.size();
    Stack& stack = from_a ? a_ : b_;
    udp::UdpSocket& s = from_a ? sock_a_ : sock_b_;
    const udp::Endpoint to = from_a ? udp::Endpoint{kAddrB, kPortB} : udp::Endpoint{kAddrA, kPortA};
    auto r = stack.udp().send(now(), s, payload, to);
    EXPECT_TRUE(r) << "send failed: errno " << (r ? 0 : r.error());
    stack.flush();
  }

  /// Both sides learn each other over a clean wire (ARP is not checksummed: corruption there
  /// would only slow the test down, not test the data path).
  void resolve() {
    send(true, 0, make_payload(0, 0, 16));
    run_for(10ms);
    send(false, 0, make_payload(0, 0, 16));
    run_for(10ms);
    EXPECT_EQ(a_to_b.distinct(), 1u);
    EXPECT_EQ(b_to_a.distinct(), 1u);
    a_to_b = {};
    b_to_a = {};
  }

  Flow a_to_b;
  Flow b_to_a;

 private:
  void drain(udp::UdpSocket& s, Flow& flow, udp::Endpoint expected_from) {
    while (!s.rx_queue.empty()) {
      udp::UdpSocket::Received r = std::move(s.rx_queue.front());
      s.pop_front();
      flow.check(r.payload.bytes(), r.from, expected_from);
    }
  }

  ManualClock clock_;
  dev::MemoryWire wire_;
  Stack a_;
  Stack b_;
  udp::UdpSocket sock_a_;
  udp::UdpSocket sock_b_;
};

dev::Impairments lossy() {
  dev::Impairments imp;
  imp.drop = 0.10;
  imp.duplicate = 0.05;
  imp.reorder = 0.10;
  imp.corrupt = 0.05;
  imp.delay = 1ms;
  imp.jitter = 500us;
  return imp;
}

/// Every datagram that can be told apart by the stack's counters as dropped for corruption.
uint64_t corruption_drops(const StackStats& s) {
  return s.eth.rx_not_for_us + s.eth.rx_unknown_ethertype + s.ipv4.rx_bad_checksum + s.ipv4.rx_bad_version +
         s.ipv4.rx_bad_header_length + s.ipv4.rx_bad_total_length + s.ipv4.rx_truncated + s.ipv4.rx_not_for_us +
         s.ipv4.rx_bad_source + s.ipv4.rx_unknown_protocol + s.udp.rx_bad_checksum + s.udp.rx_malformed +
         s.udp.rx_no_port + s.ipv4.reasm_overlap_dropped + s.ipv4.reasm_bad_fragment + s.ipv4.reasm_too_big;
}

TEST(Simulation, CleanWireDeliversEverythingInOrder) {
  Simulation sim(7);
  sim.resolve();
  for (uint32_t i = 0; i < 100; ++i) {
    sim.send(true, i, make_payload(7, i, 4 + i * 13));
    sim.send(false, i, make_payload(8, i, 1472 - i));  // the largest that fits one frame, and less
    sim.run_for(1ms);
  }
  sim.run_for(10ms);
  for (Flow* flow : {&sim.a_to_b, &sim.b_to_a}) {
    EXPECT_EQ(flow->distinct(), 100u);
    EXPECT_EQ(flow->mismatches, 0u);
    std::string in_order;
    for (uint32_t i = 0; i < 100; ++i) in_order += std::to_string(i) + ",";
    EXPECT_EQ(flow->trace, in_order);
  }
  EXPECT_EQ(sim.wire().counters().dropped, 0u);
  EXPECT_EQ(sim.a().stats().ipv4.tx_fragments, 0u);
}

TEST(Simulation, ImpairedWireNeverDeliversAWrongByte) {
  for (uint64_t seed : seeds()) {
    SCOPED_TRACE(seed_trace(seed));
    Simulation sim(seed);
    sim.resolve();
    sim.wire().set_impairments(lossy());
    Rng sizes(seed);
    constexpr uint32_t kCount = 300;
    for (uint32_t i = 0; i < kCount; ++i) {
      sim.send(true, i, make_payload(seed, i, 4 + sizes.below(1469)));
      sim.send(false, i, make_payload(seed + 1000, i, 4 + sizes.below(1469)));
      sim.run_for(1ms);
    }
    sim.run_for(50ms);
    const dev::WireCounters& wire = sim.wire().counters();
    for (Flow* flow : {&sim.a_to_b, &sim.b_to_a}) {
      EXPECT_EQ(flow->mismatches, 0u);
      // Not vacuous: most datagrams arrive (10% dropped, 5% corrupted), none more than twice.
      EXPECT_GE(flow->distinct(), kCount * 70 / 100);
      EXPECT_LT(flow->distinct(), kCount);
      for (auto [index, copies] : flow->arrivals) EXPECT_LE(copies, 2) << "index " << index;
    }
    // The wire did its worst, and the stacks caught the corruption it caused.
    EXPECT_GT(wire.corrupted, 10u);
    EXPECT_GT(wire.duplicated, 10u);
    EXPECT_GT(wire.reordered, 10u);
    const uint64_t caught = corruption_drops(sim.a().stats()) + corruption_drops(sim.b().stats());
    EXPECT_GT(caught, wire.corrupted / 2) << "corrupted " << wire.corrupted;
    EXPECT_LE(caught, wire.corrupted * 2) << "drops without corruption";
  }
}

TEST(Simulation, FragmentedDatagramsOverImpairedWireAreExactOrLost) {
  for (uint64_t seed : seeds()) {
    SCOPED_TRACE(seed_trace(seed));
    Simulation sim(seed);
    sim.resolve();
    sim.wire().set_impairments(lossy());
    constexpr uint32_t kCount = 40;
    for (uint32_t i = 0; i < kCount; ++i) {
      sim.send(true, i, make_payload(seed, i, 8000));  // 6 fragments
      sim.send(false, i, make_payload(seed + 1000, i, 8000 - i));
      sim.run_for(2ms);
    }
    sim.run_for(50ms);
    for (Flow* flow : {&sim.a_to_b, &sim.b_to_a}) {
      EXPECT_EQ(flow->mismatches, 0u);
      // Each needs all 6 fragments intact (about 0.855^6 = 39%); some must make it.
      EXPECT_GE(flow->distinct(), 5u);
      EXPECT_LT(flow->distinct(), kCount);
    }
    EXPECT_GE(sim.a().stats().ipv4.tx_fragments, 6u * kCount);
    EXPECT_GT(sim.a().stats().ipv4.reasm_ok + sim.b().stats().ipv4.reasm_ok, 10u);
    EXPECT_GT(sim.a().stats().udp.rx_bad_checksum + sim.b().stats().udp.rx_bad_checksum, 0u)
        << "some reassembled datagram should have carried a corrupted payload byte";
  }
}

TEST(Simulation, SameSeedReplaysExactly) {
  auto run = [](uint64_t seed) {
    Simulation sim(seed);
    sim.resolve();
    sim.wire().set_impairments(lossy());
    Rng sizes(seed);
    for (uint32_t i = 0; i < 100; ++i) {
      sim.send(true, i, make_payload(seed, i, 4 + sizes.below(3000)));
      sim.send(false, i, make_payload(seed, i, 4 + sizes.below(3000)));
      sim.run_for(1ms);
    }
    sim.run_for(20ms);
    std::ostringstream out;
    const dev::WireCounters& w = sim.wire().counters();
    out << sim.a_to_b.trace << "|" << sim.b_to_a.trace << "|" << w.sent << "," << w.dropped << "," << w.duplicated
        << "," << w.reordered << "," << w.corrupted << "|";
    sim.a().stats().for_each([&](std::string_view layer, std::string_view name, uint64_t v) {
      out << layer << "." << name << "=" << v << ";";
    });
    return out.str();
  };
  const std::string first = run(11);
  EXPECT_EQ(run(11), first);
  EXPECT_NE(run(12), first) << "another seed, another run";
}

}  // namespace
}  // namespace ustack
