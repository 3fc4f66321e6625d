// TCP wire format: sequence numbers across the wrap, the header and its options, pinned to bytes
// Scapy produced, both ways.

#include <gtest/gtest.h>

#include "tcp/segment.h"
#include "test_frames.h"

namespace ustack::tcp {
namespace {

using test::Bytes;
using test::from_hex;
using test::to_hex;

const Ipv4Addr kA(198, 18, 0, 1);
const Ipv4Addr kB(198, 18, 0, 2);

// Scapy: IP(src=A, dst=B)/TCP(sport=40000, dport=7777, seq=0x01020304, flags='S', window=64240,
// options=[MSS 1460, SAckOK, Timestamp (123456, 0), NOP, WScale 7]) — Linux's SYN layout.
const char* kSynBytes =
    "9c401e610102030400000000a002faf01ffe0000020405b40402080a0001e2400000000001030307";
// Scapy: IP(src=B, dst=A)/TCP(sport=7777, dport=40000, seq=0xfffffff0, ack=0x01020305, flags='PA',
// window=502, options=[NOP, NOP, Timestamp (1000, 123456)])/b"hello".
const char* kDataBytes = "1e619c40fffffff001020305801801f6fffc00000101080a000003e80001e24068656c6c6f";

TEST(SeqNum, ComparesAcrossTheWrap) {
  const SeqNum before_wrap(0xfffffff0);
  const SeqNum after_wrap(0x10);
  EXPECT_LT(before_wrap, after_wrap);
  EXPECT_GT(after_wrap, before_wrap);
  EXPECT_EQ(after_wrap - before_wrap, 0x20);
  EXPECT_EQ(before_wrap - after_wrap, -0x20);
  EXPECT_EQ(before_wrap + 0x20, after_wrap);
  EXPECT_EQ(after_wrap - 0x20u, before_wrap);
  EXPECT_TRUE(SeqNum(5).in_window(before_wrap, 0x100));
  EXPECT_FALSE(SeqNum(0x100).in_window(before_wrap, 0x100));
  EXPECT_FALSE(before_wrap.in_window(before_wrap, 0));  // an empty window holds nothing
  EXPECT_EQ(max(before_wrap, after_wrap), after_wrap);
  EXPECT_EQ(min(before_wrap, after_wrap), before_wrap);
}

TEST(TcpWire, ParsesLinuxStyleSyn) {
  Bytes b = from_hex(kSynBytes);
  auto s = SegmentRepr::parse(b, kA, kB);
  ASSERT_TRUE(s.ok()) << static_cast<int>(s.error());
  EXPECT_EQ(s->src_port, 40000);
  EXPECT_EQ(s->dst_port, 7777);
  EXPECT_EQ(s->seq, SeqNum(0x01020304));
  EXPECT_EQ(s->flags, kSyn);
  EXPECT_EQ(s->window, 64240);
  EXPECT_EQ(s->options.mss, std::optional<uint16_t>(1460));
  EXPECT_TRUE(s->options.sack_permitted);
  ASSERT_TRUE(s->options.timestamps);
  EXPECT_EQ(s->options.timestamps->value, 123456u);
  EXPECT_EQ(s->options.timestamps->echo_reply, 0u);
  EXPECT_EQ(s->options.window_scale, std::optional<uint8_t>(7));
  EXPECT_TRUE(s->payload.empty());
  EXPECT_EQ(s->seq_len(), 1u);
}

TEST(TcpWire, EmitsTheSameSynBytes) {
  SegmentRepr r;
  r.src_port = 40000;
  r.dst_port = 7777;
  r.seq = SeqNum(0x01020304);
  r.flags = kSyn;
  r.window = 64240;
  r.options.mss = 1460;
  r.options.sack_permitted = true;
  r.options.timestamps = TcpOptions::Timestamps{123456, 0};
  r.options.window_scale = 7;
  Bytes out(r.header_len());
  r.emit_header(out, kA, kB);
  EXPECT_EQ(to_hex(out), kSynBytes);
}

TEST(TcpWire, DataSegmentBothWays) {
  Bytes b = from_hex(kDataBytes);
  auto s = SegmentRepr::parse(b, kB, kA);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->seq, SeqNum(0xfffffff0));
  EXPECT_EQ(s->ack, SeqNum(0x01020305));
  EXPECT_EQ(s->flags, kPsh | kAck);
  EXPECT_EQ(std::string(s->payload.begin(), s->payload.end()), "hello");
  EXPECT_EQ(s->seq_len(), 5u);
  EXPECT_FALSE(s->options.mss);
  EXPECT_EQ(s->options.timestamps, (TcpOptions::Timestamps{1000, 123456}));

  SegmentRepr r = *s;
  Bytes out(r.header_len() + 5);
  std::copy(s->payload.begin(), s->payload.end(), out.begin() + static_cast<long>(r.header_len()));
  r.emit_header(out, kB, kA);
  EXPECT_EQ(to_hex(out), kDataBytes);
}

TEST(TcpWire, ChecksumOffloadLeavesThePseudoHeaderSum) {
  SegmentRepr r;
  r.flags = kAck;
  Bytes out(r.header_len());
  r.emit_header(out, kA, kB, /*fill_checksum=*/false);
  EXPECT_EQ(load_be16(out.data() + 16), pseudo_header_partial(kA, kB, 6, 20));
}

TEST(TcpWire, BadChecksumIsRejectedUnlessTheNicVerifiedIt) {
  Bytes b = from_hex(kDataBytes);
  b.back() ^= 1;
  auto s = SegmentRepr::parse(b, kB, kA);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), SegmentError::kBadChecksum);
  EXPECT_TRUE(SegmentRepr::parse(b, kB, kA, /*checksum_verified=*/true).ok());
}

TEST(TcpWire, EveryTruncatedHeaderIsRejected) {
  Bytes b = from_hex(kSynBytes);  // header only: every prefix cuts the header
  for (size_t n = 0; n < b.size(); ++n) {
    EXPECT_FALSE(SegmentRepr::parse({b.data(), n}, kA, kB, true).ok()) << n;
  }
}

TEST(TcpWire, DataOffsetBelowFiveIsRejected) {
  Bytes b = from_hex(kDataBytes);
  b[12] = 0x40;
  auto s = Segment::parse(b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), SegmentError::kBadDataOffset);
}

Bytes with_options(const Bytes& options) {
  Bytes b(20 + options.size());
  b[12] = static_cast<uint8_t>(((20 + options.size()) / 4) << 4);
  std::copy(options.begin(), options.end(), b.begin() + 20);
  return b;
}

TEST(TcpOptions, UnknownOptionsAreSkippedByLength) {
  auto o = TcpOptions::parse(from_hex("fe06deadbeef" "020405b4" "0000"));  // kind 254, then MSS
  ASSERT_TRUE(o);
  EXPECT_EQ(o->mss, std::optional<uint16_t>(1460));
}

TEST(TcpOptions, EndOfListStopsParsing) {
  auto o = TcpOptions::parse(from_hex("00" "020405b4" "000000"));
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->mss);
}

TEST(TcpOptions, IllegalLengthsMakeTheSegmentMalformed) {
  for (const char* bad : {"0201", "0200", "020405", "0203050000000000", "030400000000", "0403000000000000",
                          "080a00000000", "0502000000000000", "050c00000000000000000000", "fe"}) {
    const Bytes options = from_hex(bad);
    EXPECT_FALSE(TcpOptions::parse(options)) << bad;
    if (options.size() % 4 == 0) {  // fits a header as it is: the whole segment is refused
      auto r = SegmentRepr::parse(with_options(options), kA, kB, true);
      ASSERT_FALSE(r.ok()) << bad;
      EXPECT_EQ(r.error(), SegmentError::kBadOption) << bad;
    }
  }
}

TEST(TcpOptions, SackBlocksRoundTrip) {
  TcpOptions o;
  o.timestamps = TcpOptions::Timestamps{7, 9};
  o.sack_count = 2;
  o.sack[0] = SackBlock{SeqNum(0xfffffff0), SeqNum(0x10)};
  o.sack[1] = SackBlock{SeqNum(100), SeqNum(200)};
  Bytes out(o.len());
  ASSERT_EQ(out.size() % 4, 0u);
  o.emit(out);
  auto back = TcpOptions::parse(out);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, o);
}

TEST(TcpOptions, EveryCombinationIsAlignedAndRoundTrips) {
  for (int mask = 0; mask < 32; ++mask) {
    TcpOptions o;
    if (mask & 1) o.mss = 536;
    if (mask & 2) o.sack_permitted = true;
    if (mask & 4) o.timestamps = TcpOptions::Timestamps{1, 2};
    if (mask & 8) o.window_scale = 14;
    if (mask & 16) {
      o.sack_count = 1;
      o.sack[0] = SackBlock{SeqNum(1), SeqNum(2)};
    }
    Bytes out(o.len());
    EXPECT_EQ(out.size() % 4, 0u) << mask;
    EXPECT_LE(out.size(), 40u) << mask;
    o.emit(out);
    auto back = TcpOptions::parse(out);
    ASSERT_TRUE(back) << mask;
    EXPECT_EQ(*back, o) << mask;
  }
}

}  // namespace
}  // namespace ustack::tcp
