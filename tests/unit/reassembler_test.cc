// IPv4 reassembly (RFC 791 §3.2, RFC 815) with bounded memory, on its own: fragments built with
// Ipv4Repr::emit, a ManualClock and a TimerWheel for the 30 s timeout.

#include "ip/reassembler.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "base/instant.h"
#include "base/timer_wheel.h"
#include "test_frames.h"

namespace ustack::ip {
namespace {

using test::Bytes;
using test::Loc;

constexpr Ipv4Addr kSrc(198, 18, 0, 1);
constexpr Ipv4Addr kDst(198, 18, 0, 2);
constexpr uint16_t kIdent = 0x5a5a;

struct Fragment {
  Ipv4Repr header;
  Packet packet;
  Bytes bytes;
};

/// One fragment of `payload`: bytes [offset, offset + len), MF as given, as the stack hands it
/// over (header parsed from the packet, packet starting at the IP header).
Fragment fragment_of(std::span<const uint8_t> payload, size_t offset, size_t len, bool more,
                     uint16_t ident = kIdent, Ipv4Addr src = kSrc) {
  Ipv4Repr h = test::ip_header(src, kDst, Protocol::kUdp, ident);
  h.fragment_offset = static_cast<uint16_t>(offset);
  h.more_fragments = more;
  Bytes bytes = test::ipv4_packet(h, payload.subspan(offset, len));
  auto parsed = Ipv4Repr::parse(bytes);
  EXPECT_TRUE(parsed);
  return Fragment{*parsed, Packet::copy_of(bytes), bytes};
}

class FakeReassemblyActions final : public ReassemblyActions {
 public:
  struct Report {
    Instant at;
    std::optional<Bytes> first_fragment;
  };
  void reassembly_timed_out(Instant now, Packet first) override {
    reports.push_back({now, first ? std::optional(Bytes(first.bytes().begin(), first.bytes().end())) : std::nullopt});
  }
  std::vector<Report> reports;
};

class ReassemblerTest : public ::testing::Test {
 protected:
  void make(const ReassemblyConfig& config = {}) { reasm_.emplace(config, wheel_, stats_, actions_); }
  void SetUp() override { make(); }
  Instant now() const { return clock_.now(); }
  void advance(Duration d) {
    clock_.advance(d);
    wheel_.expire(now());
  }
  std::optional<Packet> add(Fragment f) { return reasm_->add(now(), f.header, std::move(f.packet)); }
  void add_expect_pending(Fragment f, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    EXPECT_FALSE(add(std::move(f))) << "no datagram expected yet";
  }

  /// `whole` is the reassembly of `payload`: one unfragmented packet, header consistent.
  void expect_whole(const std::optional<Packet>& whole, std::span<const uint8_t> payload, size_t header_len = 20,
                    const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    ASSERT_TRUE(whole) << "the datagram should be complete";
    ASSERT_EQ(whole->size(), header_len + payload.size());
    auto ip = Ipv4Repr::parse(whole->bytes());  // checks the recomputed checksum too
    ASSERT_TRUE(ip) << "error " << static_cast<int>(ip.error());
    EXPECT_FALSE(ip->more_fragments);
    EXPECT_EQ(ip->fragment_offset, 0);
    EXPECT_FALSE(ip->is_fragment());
    EXPECT_EQ(ip->header_len, header_len);
    EXPECT_EQ(ip->payload_len, payload.size());
    EXPECT_EQ(load_be16(whole->data() + 2), header_len + payload.size());
    EXPECT_EQ(ip->ident, kIdent);
    EXPECT_EQ(ip->src, kSrc);
    EXPECT_EQ(ip->dst, kDst);
    EXPECT_EQ(ip->protocol, 17);
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), whole->data() + header_len)) << "payload differs";
  }
  void expect_nothing_held(const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    EXPECT_EQ(reasm_->datagrams(), 0u);
    EXPECT_EQ(reasm_->bytes_held(), 0u);
  }

  ManualClock clock_;
  TimerWheel wheel_{1ms, 4096};
  Ipv4Stats stats_;
  FakeReassemblyActions actions_;
  std::optional<Reassembler> reasm_;
  const Bytes payload_ = test::pattern(3000);
};

TEST_F(ReassemblerTest, InOrder) {
  add_expect_pending(fragment_of(payload_, 0, 1480, true));
  add_expect_pending(fragment_of(payload_, 1480, 1480, true));
  EXPECT_EQ(reasm_->datagrams(), 1u);
  expect_whole(add(fragment_of(payload_, 2960, 40, false)), payload_);
  expect_nothing_held();
  EXPECT_EQ(stats_.reasm_ok, 1u);
  EXPECT_EQ(stats_.rx_fragments, 3u);
  EXPECT_EQ(wheel_.size(), 0u);  // the timeout went with the datagram
}

TEST_F(ReassemblerTest, OutOfOrder) {
  add_expect_pending(fragment_of(payload_, 1480, 1480, true));
  add_expect_pending(fragment_of(payload_, 2960, 40, false));
  expect_whole(add(fragment_of(payload_, 0, 1480, true)), payload_);
  expect_nothing_held();
}

TEST_F(ReassemblerTest, ReverseOrderSmallPieces) {
  // 125 fragments of 24 bytes, last first (the limit is 128 per datagram).
  std::vector<Fragment> frags;
  for (size_t off = 0; off < payload_.size(); off += 24) frags.push_back(fragment_of(payload_, off, 24, off + 24 < payload_.size()));
  ASSERT_EQ(frags.size(), 125u);
  for (size_t i = frags.size(); i-- > 1;) add_expect_pending(std::move(frags[i]));
  expect_whole(add(std::move(frags[0])), payload_);
  expect_nothing_held();
}

TEST_F(ReassemblerTest, TooManyPiecesDropTheDatagram) {
  // 8-byte pieces: 375 of them would be needed; the 129th drops the datagram instead of holding on.
  for (size_t off = 0; off < 128 * 8; off += 8) add_expect_pending(fragment_of(payload_, off, 8, true));
  EXPECT_EQ(stats_.reasm_bad_fragment, 0u);
  EXPECT_FALSE(add(fragment_of(payload_, 128 * 8, 8, true)));
  EXPECT_EQ(stats_.reasm_bad_fragment, 1u);
  expect_nothing_held();
}

TEST_F(ReassemblerTest, FragmentsAreHeldAsCopiesNotDeviceBuffers) {
  // A fragment in a pool buffer (an mbuf) is copied: the buffer goes back to its pool at once.
  test::CountingPool pool;
  Fragment f = fragment_of(payload_, 0, 1480, true);
  Packet pooled = pool.packet(f.bytes);
  auto header = ip::Ipv4Repr::parse(pooled.bytes());
  ASSERT_TRUE(header.ok());
  EXPECT_FALSE(reasm_->add(now(), *header, std::move(pooled)));
  EXPECT_EQ(pool.released, 1);
  EXPECT_EQ(reasm_->datagrams(), 1u);
}

TEST_F(ReassemblerTest, ExactDuplicateIsIgnored) {
  add_expect_pending(fragment_of(payload_, 0, 1480, true));
  add_expect_pending(fragment_of(payload_, 0, 1480, true));
  add_expect_pending(fragment_of(payload_, 2960, 40, false));
  add_expect_pending(fragment_of(payload_, 2960, 40, false));
  EXPECT_EQ(reasm_->bytes_held(), 1500u + 60u + 2 * 64u);  // the copies were not kept (64: per piece)
  expect_whole(add(fragment_of(payload_, 1480, 1480, true)), payload_);
  EXPECT_EQ(stats_.reasm_overlap_dropped, 0u);
  EXPECT_EQ(stats_.reasm_ok, 1u);
}

TEST_F(ReassemblerTest, OverlapDropsTheDatagram) {
  add_expect_pending(fragment_of(payload_, 0, 1480, true));
  add_expect_pending(fragment_of(payload_, 1472, 1488, true));  // starts 8 bytes early
  EXPECT_EQ(stats_.reasm_overlap_dropped, 1u);
  expect_nothing_held();
  // What follows cannot complete the dropped datagram: it starts a new, incomplete one.
  add_expect_pending(fragment_of(payload_, 1480, 1480, true));
  add_expect_pending(fragment_of(payload_, 2960, 40, false));
  EXPECT_EQ(reasm_->datagrams(), 1u);
  EXPECT_EQ(stats_.reasm_ok, 0u);
}

TEST_F(ReassemblerTest, OverlapVariantsAllDrop) {
  struct Piece {
    size_t offset, len;
    bool more;
  };
  const std::vector<std::vector<Piece>> cases = {
      {{0, 1480, true}, {0, 1488, true}},                      // same start, longer
      {{1480, 1480, true}, {1472, 16, true}},                  // ends inside the next
      {{0, 1480, true}, {1472, 8, true}},                      // inside the previous
      {{0, 1480, true}, {8, 8, true}},                         // strictly inside
      {{2960, 40, false}, {2960, 48, false}},                  // two different ends
      {{2960, 40, false}, {2992, 16, true}},                   // past the known end
      {{0, 1480, true}, {2960, 40, false}, {1480, 24, false}},  // a second, different last
  };
  const Bytes data = test::pattern(4000);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    make();
    const uint64_t before = stats_.reasm_overlap_dropped;
    for (const Piece& p : cases[i]) add_expect_pending(fragment_of(data, p.offset, p.len, p.more));
    EXPECT_EQ(stats_.reasm_overlap_dropped - before, 1u);
    expect_nothing_held();
  }
}

TEST_F(ReassemblerTest, FragmentsBeyondALaterLastFragmentDropTheDatagram) {
  // [0,8) and [24,32) arrive, then a last fragment says the datagram ends at 16: the piece at 24
  // lies past the end. With the hole at [8,16) the byte count alone would also "complete" it.
  add_expect_pending(fragment_of(payload_, 0, 8, true));
  add_expect_pending(fragment_of(payload_, 24, 8, true));
  add_expect_pending(fragment_of(payload_, 16, 0, false));
  EXPECT_EQ(stats_.reasm_ok, 0u);
  EXPECT_EQ(stats_.reasm_overlap_dropped, 1u);
  expect_nothing_held();

  // Without the byte count coinciding: still inconsistent, still dropped at once.
  add_expect_pending(fragment_of(payload_, 0, 8, true, kIdent + 1));
  add_expect_pending(fragment_of(payload_, 32, 8, true, kIdent + 1));
  add_expect_pending(fragment_of(payload_, 8, 8, false, kIdent + 1));
  EXPECT_EQ(stats_.reasm_overlap_dropped, 2u);
  expect_nothing_held();
}

TEST_F(ReassemblerTest, TimeoutDropsAndReportsTheFirstFragment) {
  Fragment first = fragment_of(payload_, 0, 1480, true);
  const Bytes first_bytes = first.bytes;
  add_expect_pending(std::move(first));
  advance(10s);
  add_expect_pending(fragment_of(payload_, 2960, 40, false));  // later fragments do not extend it
  advance(20s - 1ms);
  EXPECT_TRUE(actions_.reports.empty());
  EXPECT_EQ(reasm_->datagrams(), 1u);
  advance(1ms);  // 30 s after the first fragment
  ASSERT_EQ(actions_.reports.size(), 1u);
  EXPECT_EQ(actions_.reports[0].at, Instant() + 30s);
  ASSERT_TRUE(actions_.reports[0].first_fragment);
  EXPECT_EQ(*actions_.reports[0].first_fragment, first_bytes);
  EXPECT_EQ(stats_.reasm_timeout, 1u);
  expect_nothing_held();
  // The missing piece arriving now starts a new datagram, nothing is delivered.
  add_expect_pending(fragment_of(payload_, 1480, 1480, true));
}

TEST_F(ReassemblerTest, TimeoutWithoutTheFirstFragmentReportsNoPacket) {
  add_expect_pending(fragment_of(payload_, 1480, 1480, true));
  add_expect_pending(fragment_of(payload_, 2960, 40, false));
  advance(30s);
  ASSERT_EQ(actions_.reports.size(), 1u);
  EXPECT_FALSE(actions_.reports[0].first_fragment) << "nothing to quote in a Time Exceeded";
  EXPECT_EQ(stats_.reasm_timeout, 1u);
  expect_nothing_held();
}

TEST_F(ReassemblerTest, MemoryBoundEvictsTheOldest) {
  ReassemblyConfig config;
  config.max_bytes = 4200;  // two 1500-byte pieces with their 64 bytes of bookkeeping fit, three do not
  make(config);
  const Bytes small = test::pattern(1500);  // fragments of 1500 and 40 bytes (with headers)
  add_expect_pending(fragment_of(small, 0, 1480, true, 1));
  advance(1ms);
  add_expect_pending(fragment_of(small, 0, 1480, true, 2));
  advance(1ms);
  add_expect_pending(fragment_of(small, 0, 1480, true, 3));  // 4692 bytes > 4200: 1 goes
  EXPECT_EQ(stats_.reasm_evicted_memory, 1u);
  EXPECT_EQ(reasm_->datagrams(), 2u);
  EXPECT_EQ(reasm_->bytes_held(), 2 * (1500u + 64u));
  // 2 and 3 still complete; 1's last piece only starts a new datagram that cannot.
  auto two = add(fragment_of(small, 1480, 20, false, 2));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->size(), 1520u);
  EXPECT_FALSE(add(fragment_of(small, 1480, 20, false, 1)));
  EXPECT_EQ(reasm_->datagrams(), 2u);
  EXPECT_EQ(reasm_->bytes_held(), 1500u + 64u + 40u + 64u);
  auto three = add(fragment_of(small, 1480, 20, false, 3));
  ASSERT_TRUE(three);
  EXPECT_EQ(stats_.reasm_evicted_memory, 1u);
  EXPECT_EQ(stats_.reasm_ok, 2u);
}

TEST_F(ReassemblerTest, MaxDatagramsEvictsTheOldest) {
  ReassemblyConfig config;
  config.max_datagrams = 2;
  make(config);
  add_expect_pending(fragment_of(payload_, 0, 1480, true, 1));
  add_expect_pending(fragment_of(payload_, 0, 1480, true, 2));
  add_expect_pending(fragment_of(payload_, 0, 1480, true, kIdent));
  EXPECT_EQ(reasm_->datagrams(), 2u);
  EXPECT_EQ(stats_.reasm_evicted_memory, 1u);
  add_expect_pending(fragment_of(payload_, 1480, 1480, true, kIdent));
  expect_whole(add(fragment_of(payload_, 2960, 40, false, kIdent)), payload_);
  EXPECT_EQ(reasm_->datagrams(), 1u);
  // Only the evicted one's timer is gone; the survivor still times out.
  advance(30s);
  EXPECT_EQ(actions_.reports.size(), 1u);
}

TEST_F(ReassemblerTest, PingOfDeathIsRejected) {
  // A last fragment at offset 65528 (8191 * 8) with 16 bytes: 20 + 65544 > 65535.
  const Bytes big = test::pattern(65600);
  add_expect_pending(fragment_of(big, 0, 1480, true));
  add_expect_pending(fragment_of(big, 65528, 16, false));
  EXPECT_EQ(stats_.reasm_too_big, 1u);
  expect_nothing_held();  // the datagram it belonged to is gone too
  // The largest legal datagram: 20 + 65515 bytes.
  add_expect_pending(fragment_of(big, 65512, 3, false));
  EXPECT_EQ(stats_.reasm_too_big, 1u);
  EXPECT_EQ(reasm_->datagrams(), 1u);
  add_expect_pending(fragment_of(big, 65512, 4, false, kIdent + 1));  // one byte more
  EXPECT_EQ(stats_.reasm_too_big, 2u);
}

TEST_F(ReassemblerTest, LargestDatagramReassembles) {
  const Bytes big = test::pattern(65515);
  for (size_t off = 0; off + 1480 < big.size(); off += 1480) add_expect_pending(fragment_of(big, off, 1480, true));
  const size_t last = big.size() / 1480 * 1480;
  expect_whole(add(fragment_of(big, last, big.size() - last, false)), big);
}

TEST_F(ReassemblerTest, NonLastFragmentMustCarryAMultipleOfEightBytes) {
  add_expect_pending(fragment_of(payload_, 0, 100, true));
  EXPECT_EQ(stats_.reasm_bad_fragment, 1u);
  add_expect_pending(fragment_of(payload_, 8, 0, true));  // empty, yet "more to come"
  EXPECT_EQ(stats_.reasm_bad_fragment, 2u);
  expect_nothing_held();
  // The last fragment may be any length.
  add_expect_pending(fragment_of(payload_, 8, 13, false));
  EXPECT_EQ(stats_.reasm_bad_fragment, 2u);
  expect_whole(add(fragment_of(payload_, 0, 8, true)), std::span(payload_).first(21));
}

TEST_F(ReassemblerTest, DatagramsAreKeyedBySourceAndIdent) {
  const Ipv4Addr other(198, 18, 0, 9);
  const Bytes other_payload = test::pattern(3000, 99);  // same offsets, other bytes
  add_expect_pending(fragment_of(other_payload, 0, 1480, true, kIdent, other));
  add_expect_pending(fragment_of(other_payload, 1480, 1480, true, kIdent + 1));
  add_expect_pending(fragment_of(payload_, 0, 1480, true));
  add_expect_pending(fragment_of(payload_, 1480, 1480, true));
  EXPECT_EQ(reasm_->datagrams(), 3u);
  expect_whole(add(fragment_of(payload_, 2960, 40, false)), payload_);
  EXPECT_EQ(reasm_->datagrams(), 2u);
}

TEST_F(ReassemblerTest, FirstFragmentOptionsAreKept) {
  // A first fragment with a 4-byte option (IHL 6); the others without, as RFC 791 allows.
  Ipv4Repr h = test::ip_header(kSrc, kDst, Protocol::kUdp, kIdent);
  h.more_fragments = true;
  Bytes first = test::ipv4_packet(h, std::span(payload_).first(1480));
  const uint8_t option[4] = {0x94, 0x04, 0x00, 0x00};  // Router Alert
  first.insert(first.begin() + 20, option, option + 4);
  first[0] = 0x46;
  store_be16(first.data() + 2, static_cast<uint16_t>(first.size()));
  test::fix_ipv4_checksum(first);
  auto parsed = Ipv4Repr::parse(first);
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->header_len, 24);
  add_expect_pending(fragment_of(payload_, 1480, 1480, true));
  add_expect_pending(fragment_of(payload_, 2960, 40, false));
  auto whole = add(Fragment{*parsed, Packet::copy_of(first), first});
  expect_whole(whole, payload_, 24);
  ASSERT_TRUE(whole);
  EXPECT_TRUE(std::equal(option, option + 4, whole->data() + 20));
}

}  // namespace
}  // namespace ustack::ip
