// Wire formats: bytes → Repr and Repr → bytes against frames captured from Scapy
// (/usr/bin/python3, scapy 2.x; the command that made each one is next to it), every truncated
// prefix rejected, and each malformation reported as its own error.

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "base/checksum.h"
#include "base/ipv4_addr.h"
#include "base/rng.h"
#include "eth/arp_packet.h"
#include "eth/frame.h"
#include "ip/icmp_message.h"
#include "ip/ipv4_packet.h"
#include "test_frames.h"
#include "udp/datagram.h"

namespace ustack {
namespace {

using test::Bytes;
using test::from_hex;
using test::text;

constexpr Ipv4Addr kA(198, 18, 0, 1);
constexpr Ipv4Addr kB(198, 18, 0, 2);
constexpr MacAddr kMacA({0x02, 0, 0, 0, 0, 0x01});
constexpr MacAddr kMacB({0x02, 0, 0, 0, 0, 0x02});

// Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")/IP(src="198.18.0.1", dst="198.18.0.2",
//   id=0x1234, flags="DF", ttl=64)/UDP(sport=40000, dport=7)/b"hello"
const Bytes kUdpFrame = from_hex(
    "020000000002020000000001080045000021123440004011"
    "9c70c6120001c61200029c400007000d939268656c6c6f");
constexpr size_t kEthLen = 14;
constexpr size_t kIpLen = 20;

// Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01")/ARP(op=1, hwsrc="02:00:00:00:00:01",
//   psrc="198.18.0.1", hwdst="00:00:00:00:00:00", pdst="198.18.0.2")
const Bytes kArpRequestFrame = from_hex(
    "ffffffffffff02000000000108060001080006040001020000000001c6120001000000000000c6120002");
// ARP(op=2, hwsrc="02:00:00:00:00:02", psrc="198.18.0.2", hwdst="02:00:00:00:00:01", pdst="198.18.0.1")
const Bytes kArpReply = from_hex("0001080006040002020000000002c6120002020000000001c6120001");

// IP(src="198.18.0.1", dst="198.18.0.2", id=7, ttl=255, tos=0x10,
//   options=[IPOption_Router_Alert()])/ICMP(type=8, id=0x4242, seq=1)/b"abcdefgh"
const Bytes kIpWithOptions = from_hex(
    "4610002800070000ff019a91c6120001c61200029404000008002427424200016162636465666768");

// IP(src="198.18.0.1", dst="198.18.0.2", id=0x100, ttl=64)/ICMP(type=8, id=0x1d2e, seq=3)/b"ustack ping!"
const Bytes kEchoRequestPacket = from_hex(
    "45000028010000004001edadc6120001c612000208009c8e1d2e000375737461636b2070696e6721");
// ICMP(type=0, id=0x1d2e, seq=3)/b"ustack ping!"
const Bytes kEchoReply = from_hex("0000a48e1d2e000375737461636b2070696e6721");

// IP(src="198.18.0.1", dst="198.18.0.2", id=0xbeef, flags="MF", frag=185, ttl=64, proto=17)/(b"\x11"*16)
const Bytes kFragment = from_hex(
    "45000024beef20b940110ef9c6120001c612000211111111111111111111111111111111");

// IP(src="198.18.0.1", dst="198.18.0.2")/UDP(sport=1000, dport=2000)/bytes.fromhex("67fa"): the
// payload was chosen so that the checksum computes to zero; Scapy, like RFC 768, sends 0xffff.
const Bytes kUdpComputedZero = from_hex("03e807d0000affff67fa");

std::span<const uint8_t> ip_part(const Bytes& frame) { return std::span(frame).subspan(kEthLen); }
std::span<const uint8_t> udp_part(const Bytes& frame) { return std::span(frame).subspan(kEthLen + kIpLen); }
std::span<const uint8_t> prefix(std::span<const uint8_t> b, size_t n) { return b.first(n); }

// ---- checksum -----------------------------------------------------------------------------

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, which folds to ddf2.
  const Bytes b = from_hex("0001f203f4f5f6f7");
  EXPECT_EQ(static_cast<uint16_t>(~checksum_finish(checksum_add(0, b))), 0xddf2);
  EXPECT_EQ(internet_checksum(b), 0x220d);
  // A receiver summing data and checksum gets zero.
  EXPECT_EQ(internet_checksum(from_hex("0001f203f4f5f6f7220d")), 0);
}

TEST(Checksum, OddLengthPadsTheLastByteWithZero) {
  EXPECT_EQ(internet_checksum(from_hex("01")), 0xfeff);
  EXPECT_EQ(internet_checksum(from_hex("0001f2")), static_cast<uint16_t>(~0xf201));
  EXPECT_EQ(internet_checksum(from_hex("0001f2")), internet_checksum(from_hex("0001f200")));
  EXPECT_EQ(internet_checksum({}), 0xffff);
}

// A plain reference sum, word by word, to hold the unrolled one against.
uint16_t reference_checksum(std::span<const uint8_t> b) {
  uint64_t sum = 0;
  for (size_t i = 0; i < b.size(); i += 2) sum += uint32_t{b[i]} << 8 | (i + 1 < b.size() ? b[i + 1] : 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

TEST(Checksum, MatchesReferenceOnEveryLengthAndInPieces) {
  Rng rng(1071);
  Bytes b(3000);
  for (auto& x : b) x = static_cast<uint8_t>(rng.next());
  Bytes ones(4000, 0xff);  // carries on every word
  for (size_t n = 0; n <= 70; ++n) {
    SCOPED_TRACE(n);
    EXPECT_EQ(internet_checksum(std::span(b).first(n)), reference_checksum(std::span(b).first(n)));
    EXPECT_EQ(internet_checksum(std::span(ones).first(n)), reference_checksum(std::span(ones).first(n)));
  }
  EXPECT_EQ(internet_checksum(b), reference_checksum(b));
  EXPECT_EQ(internet_checksum(ones), reference_checksum(ones));
  // Even-length pieces may be summed apart (pseudo-header, header, payload), at every split.
  for (size_t split = 0; split <= 80; split += 2) {
    SCOPED_TRACE(split);
    for (size_t len : {split, split + 1, split + 33, size_t{1500}}) {
      const auto whole = std::span(b).first(len);
      EXPECT_EQ(checksum_finish(checksum_add(checksum_add(0, whole.first(split)), whole.subspan(split))),
                reference_checksum(whole));
      EXPECT_EQ(checksum_finish(checksum_add(checksum_add(0xfffe, whole.first(split)), whole.subspan(split))),
                checksum_finish(checksum_add(0xfffe, whole)));
    }
  }
}

TEST(Checksum, PseudoHeader) {
  // c612+0001+c612+0002+0011+000d = 18c45, folded 8c46 (RFC 768's pseudo-header, length 13).
  EXPECT_EQ(pseudo_header_sum(kA, kB, 17, 13), 0x18c45u);
  EXPECT_EQ(pseudo_header_partial(kA, kB, 17, 13), 0x8c46);
  // Scapy's datagram checks out over our pseudo-header.
  EXPECT_EQ(checksum_finish(checksum_add(pseudo_header_sum(kA, kB, 17, 13), udp_part(kUdpFrame))), 0);
  EXPECT_NE(checksum_finish(checksum_add(pseudo_header_sum(kA, Ipv4Addr(198, 18, 0, 3), 17, 13), udp_part(kUdpFrame))), 0);
}

// ---- Ethernet -----------------------------------------------------------------------------

TEST(EthernetWire, ParsesScapyFrame) {
  auto f = eth::FrameRepr::parse(kUdpFrame);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->dst, kMacB);
  EXPECT_EQ(f->src, kMacA);
  EXPECT_EQ(f->ethertype, 0x0800);
  auto view = eth::Frame::parse(kUdpFrame);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->payload().size(), kUdpFrame.size() - kEthLen);
  EXPECT_EQ(view->payload().data(), kUdpFrame.data() + kEthLen);
}

TEST(EthernetWire, EmitsExactHeader) {
  Bytes out(14, 0xaa);
  eth::FrameRepr{kMacB, kMacA, 0x0800}.emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(std::span(kUdpFrame).first(14)));
  eth::FrameRepr{MacAddr::broadcast(), kMacA, 0x0806}.emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(std::span(kArpRequestFrame).first(14)));
}

TEST(EthernetWire, EveryTruncatedHeaderIsRejected) {
  for (size_t n = 0; n < kEthLen; ++n) EXPECT_FALSE(eth::FrameRepr::parse(prefix(kUdpFrame, n))) << n;
  EXPECT_TRUE(eth::FrameRepr::parse(prefix(kUdpFrame, kEthLen)));  // a header alone is a frame
}

// ---- ARP ----------------------------------------------------------------------------------

TEST(ArpWire, ParsesScapyRequestAndEmitsItBack) {
  auto arp = eth::ArpRepr::parse(std::span(kArpRequestFrame).subspan(kEthLen));
  ASSERT_TRUE(arp);
  EXPECT_EQ(arp->op, eth::ArpOp::kRequest);
  EXPECT_EQ(arp->sender_mac, kMacA);
  EXPECT_EQ(arp->sender_ip, kA);
  EXPECT_EQ(arp->target_mac, MacAddr());
  EXPECT_EQ(arp->target_ip, kB);
  Bytes out(28, 0xaa);
  arp->emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(std::span(kArpRequestFrame).subspan(kEthLen)));
}

TEST(ArpWire, EmitsScapyReply) {
  Bytes out(28, 0xaa);
  eth::ArpRepr{eth::ArpOp::kReply, kMacB, kB, kMacA, kA}.emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(kArpReply));
  auto back = eth::ArpRepr::parse(kArpReply);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, (eth::ArpRepr{eth::ArpOp::kReply, kMacB, kB, kMacA, kA}));
}

TEST(ArpWire, EveryTruncatedPrefixIsRejectedPaddingIsNot) {
  for (size_t n = 0; n < kArpReply.size(); ++n) EXPECT_FALSE(eth::ArpRepr::parse(prefix(kArpReply, n))) << n;
  Bytes padded = kArpReply;
  padded.resize(46, 0x5a);  // a minimum-size Ethernet frame's padding
  EXPECT_TRUE(eth::ArpRepr::parse(padded));
}

TEST(ArpWire, RejectsOtherHardwareProtocolsAndOperations) {
  struct Case {
    size_t offset;
    uint8_t value;
    const char* what;
  } cases[] = {
      {1, 6, "hardware type 6 (IEEE 802)"}, {2, 0x86, "protocol type 0x8600"}, {4, 8, "hardware length 8"},
      {5, 16, "protocol length 16"},        {7, 3, "operation 3 (RARP)"},     {7, 0, "operation 0"},
  };
  for (const Case& c : cases) {
    Bytes b = kArpReply;
    b[c.offset] = c.value;
    EXPECT_FALSE(eth::ArpRepr::parse(b)) << c.what;
  }
}

// ---- IPv4 ---------------------------------------------------------------------------------

TEST(Ipv4Wire, ParsesScapyHeader) {
  auto ip = ip::Ipv4Repr::parse(ip_part(kUdpFrame));
  ASSERT_TRUE(ip) << static_cast<int>(ip.error());
  EXPECT_EQ(ip->src, kA);
  EXPECT_EQ(ip->dst, kB);
  EXPECT_EQ(ip->protocol, 17);
  EXPECT_EQ(ip->ttl, 64);
  EXPECT_EQ(ip->tos, 0);
  EXPECT_EQ(ip->ident, 0x1234);
  EXPECT_TRUE(ip->dont_fragment);
  EXPECT_FALSE(ip->more_fragments);
  EXPECT_EQ(ip->fragment_offset, 0);
  EXPECT_FALSE(ip->is_fragment());
  EXPECT_EQ(ip->header_len, 20);
  EXPECT_EQ(ip->payload_len, 13);
}

TEST(Ipv4Wire, EmitsScapyHeaderExactly) {
  ip::Ipv4Repr h;
  h.src = kA;
  h.dst = kB;
  h.protocol = 17;
  h.ident = 0x1234;
  h.dont_fragment = true;
  h.payload_len = 13;
  Bytes out(20, 0xaa);
  h.emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(ip_part(kUdpFrame).first(20)));
  // Left for the NIC: everything the same but a zero checksum.
  h.emit(out, /*fill_checksum=*/false);
  Bytes expected(ip_part(kUdpFrame).begin(), ip_part(kUdpFrame).begin() + 20);
  expected[10] = expected[11] = 0;
  EXPECT_EQ(test::to_hex(out), test::to_hex(expected));
}

TEST(Ipv4Wire, FragmentFieldsBothWays) {
  auto ip = ip::Ipv4Repr::parse(kFragment);
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->more_fragments);
  EXPECT_FALSE(ip->dont_fragment);
  EXPECT_EQ(ip->fragment_offset, 1480);  // 185 * 8
  EXPECT_TRUE(ip->is_fragment());
  EXPECT_EQ(ip->ident, 0xbeef);
  EXPECT_EQ(ip->payload_len, 16);
  Bytes out(20);
  ip->emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(std::span(kFragment).first(20)));
}

TEST(Ipv4Wire, OptionsAreSkipped) {
  auto ip = ip::Ipv4Repr::parse(kIpWithOptions);
  ASSERT_TRUE(ip) << static_cast<int>(ip.error());
  EXPECT_EQ(ip->header_len, 24);
  EXPECT_EQ(ip->payload_len, 16);
  EXPECT_EQ(ip->tos, 0x10);
  EXPECT_EQ(ip->ttl, 255);
  EXPECT_EQ(ip->ident, 7);
  EXPECT_EQ(ip->protocol, 1);
  auto view = ip::Ipv4Packet::parse(kIpWithOptions);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->payload().data(), kIpWithOptions.data() + 24);
  EXPECT_EQ(view->payload().size(), 16u);
  EXPECT_EQ(view->header().size(), 24u);
  // The checksum covers the options: flip one option byte and it no longer holds.
  Bytes bad = kIpWithOptions;
  bad[21] ^= 0x01;
  EXPECT_EQ(ip::Ipv4Repr::parse(bad).error(), ip::Ipv4Error::kBadChecksum);
}

TEST(Ipv4Wire, EveryTruncatedPrefixIsRejected) {
  for (const Bytes* packet : {&kIpWithOptions, &kFragment}) {
    for (size_t n = 0; n < packet->size(); ++n) {
      auto r = ip::Ipv4Repr::parse(prefix(*packet, n));
      ASSERT_FALSE(r) << n;
      EXPECT_EQ(r.error(), ip::Ipv4Error::kTruncated) << n;
    }
    EXPECT_TRUE(ip::Ipv4Repr::parse(*packet));
  }
  auto udp_ip = ip_part(kUdpFrame);
  for (size_t n = 0; n < udp_ip.size(); ++n) EXPECT_FALSE(ip::Ipv4Repr::parse(udp_ip.first(n))) << n;
}

// Each malformation with the header checksum made right again, so that only it can be blamed.
ip::Ipv4Error error_after(Bytes packet, size_t offset, uint8_t value) {
  packet[offset] = value;
  test::fix_ipv4_checksum(packet);
  auto r = ip::Ipv4Repr::parse(packet);
  EXPECT_FALSE(r) << "byte " << offset << " = " << int{value};
  return r ? ip::Ipv4Error::kBadChecksum : r.error();
}

TEST(Ipv4Wire, MalformedHeadersAreTheirOwnErrors) {
  const Bytes p(ip_part(kUdpFrame).begin(), ip_part(kUdpFrame).end());  // 33 bytes, total length 33
  EXPECT_EQ(error_after(p, 0, 0x65), ip::Ipv4Error::kBadVersion);
  EXPECT_EQ(error_after(p, 0, 0x05), ip::Ipv4Error::kBadVersion);
  EXPECT_EQ(error_after(p, 0, 0x44), ip::Ipv4Error::kBadHeaderLength);  // IHL 4: 16 bytes
  EXPECT_EQ(error_after(p, 0, 0x40), ip::Ipv4Error::kBadHeaderLength);
  EXPECT_EQ(error_after(p, 0, 0x4f), ip::Ipv4Error::kTruncated);        // IHL 15: 60 > 33 bytes
  EXPECT_EQ(error_after(p, 3, 34), ip::Ipv4Error::kTruncated);          // total length > bytes
  EXPECT_EQ(error_after(p, 3, 19), ip::Ipv4Error::kBadTotalLength);     // total length < header
  Bytes bad_sum = p;
  bad_sum[10] ^= 0x80;
  EXPECT_EQ(ip::Ipv4Repr::parse(bad_sum).error(), ip::Ipv4Error::kBadChecksum);
  Bytes bad_field = p;
  bad_field[8] = 1;  // TTL changed in flight without the checksum following
  EXPECT_EQ(ip::Ipv4Repr::parse(bad_field).error(), ip::Ipv4Error::kBadChecksum);
  // The NIC checked it: the checksum is not looked at again.
  EXPECT_TRUE(ip::Ipv4Repr::parse(bad_sum, /*checksum_verified=*/true));
}

TEST(Ipv4Wire, PaddingBeyondTotalLengthIsNotPayload) {
  Bytes padded(ip_part(kUdpFrame).begin(), ip_part(kUdpFrame).end());
  padded.resize(46, 0xee);  // Ethernet's minimum payload
  auto ip = ip::Ipv4Repr::parse(padded);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->payload_len, 13);
  auto view = ip::Ipv4Packet::parse(padded);
  ASSERT_TRUE(view);
  EXPECT_EQ(test::to_hex(view->payload()), test::to_hex(udp_part(kUdpFrame)));
}

// ---- ICMP ---------------------------------------------------------------------------------

TEST(IcmpWire, ParsesScapyEchoRequest) {
  auto icmp = ip::IcmpRepr::parse(std::span(kEchoRequestPacket).subspan(20));
  ASSERT_TRUE(icmp);
  EXPECT_EQ(icmp->type, 8);
  EXPECT_EQ(icmp->code, 0);
  EXPECT_EQ(icmp->echo_ident(), 0x1d2e);
  EXPECT_EQ(icmp->echo_seq(), 3);
  EXPECT_EQ(icmp->data.size(), 12u);
  EXPECT_EQ(Bytes(icmp->data.begin(), icmp->data.end()), text("ustack ping!"));
}

TEST(IcmpWire, EmitsScapyEchoRequestAndReply) {
  const Bytes data = text("ustack ping!");
  ip::IcmpRepr request{8, 0, 0x1d2e0003, data};
  Bytes out(request.len(), 0xaa);
  request.emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(std::span(kEchoRequestPacket).subspan(20)));
  ip::IcmpRepr reply{0, 0, 0x1d2e0003, data};
  reply.emit(out);
  EXPECT_EQ(test::to_hex(out), test::to_hex(kEchoReply));
}

TEST(IcmpWire, BadChecksumAndTruncationRejected) {
  Bytes bad = kEchoReply;
  bad[12] ^= 0x20;  // one data byte
  EXPECT_EQ(ip::IcmpRepr::parse(bad).error(), ip::IcmpError::kBadChecksum);
  // ICMP has no length field: a cut below the header is truncation, any other cut breaks the
  // checksum (the message's end is known only from the IP total length).
  for (size_t n = 0; n < kEchoReply.size(); ++n) {
    auto r = ip::IcmpRepr::parse(prefix(kEchoReply, n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error(), n < 8 ? ip::IcmpError::kTruncated : ip::IcmpError::kBadChecksum) << n;
  }
}

TEST(IcmpWire, DestinationUnreachableQuotesData) {
  const Bytes quoted(ip_part(kUdpFrame).begin(), ip_part(kUdpFrame).end());
  ip::IcmpRepr err{3, 3, 0, quoted};
  Bytes out(err.len());
  err.emit(out);
  EXPECT_EQ(out[0], 3);
  EXPECT_EQ(out[1], 3);
  EXPECT_EQ(load_be32(out.data() + 4), 0u);
  auto back = ip::IcmpRepr::parse(out);
  ASSERT_TRUE(back);
  EXPECT_EQ(Bytes(back->data.begin(), back->data.end()), quoted);
}

// ---- UDP ----------------------------------------------------------------------------------

TEST(UdpWire, ParsesScapyDatagramOverPseudoHeader) {
  auto udp = udp::UdpRepr::parse(udp_part(kUdpFrame), kA, kB);
  ASSERT_TRUE(udp) << static_cast<int>(udp.error());
  EXPECT_EQ(udp->src_port, 40000);
  EXPECT_EQ(udp->dst_port, 7);
  EXPECT_EQ(Bytes(udp->payload.begin(), udp->payload.end()), text("hello"));
  // The same bytes between other addresses fail: the pseudo-header is covered.
  EXPECT_EQ(udp::UdpRepr::parse(udp_part(kUdpFrame), kA, Ipv4Addr(198, 18, 0, 3)).error(), udp::UdpError::kBadChecksum);
}

TEST(UdpWire, EmitsScapyDatagramExactly) {
  Bytes out(8, 0xaa);
  const Bytes payload = text("hello");
  out.insert(out.end(), payload.begin(), payload.end());
  udp::UdpRepr::emit_header(out, 40000, 7, kA, kB);
  EXPECT_EQ(test::to_hex(out), test::to_hex(udp_part(kUdpFrame)));
}

TEST(UdpWire, ChecksumOffloadLeavesPseudoHeaderSum) {
  Bytes out(8);
  const Bytes payload = text("hello");
  out.insert(out.end(), payload.begin(), payload.end());
  udp::UdpRepr::emit_header(out, 40000, 7, kA, kB, /*fill_checksum=*/false);
  EXPECT_EQ(load_be16(out.data() + 6), 0x8c46);
  // What the NIC does: sum the datagram with that field in place and complement.
  EXPECT_EQ(internet_checksum(out), 0x9392);
}

TEST(UdpWire, ComputedZeroChecksumIsSentAsAllOnes) {
  Bytes out = from_hex("0000000000000000" "67fa");
  udp::UdpRepr::emit_header(out, 1000, 2000, kA, kB);
  EXPECT_EQ(test::to_hex(out), test::to_hex(kUdpComputedZero));
  EXPECT_TRUE(udp::UdpRepr::parse(kUdpComputedZero, kA, kB));
}

TEST(UdpWire, ZeroChecksumMeansNone) {
  Bytes b(udp_part(kUdpFrame).begin(), udp_part(kUdpFrame).end());
  b[6] = b[7] = 0;
  b[9] ^= 0xff;  // the payload is not checked when the sender sent no checksum
  auto udp = udp::UdpRepr::parse(b, kA, kB);
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->payload.size(), 5u);
}

TEST(UdpWire, BadChecksumBadLengthAndTruncation) {
  Bytes bad(udp_part(kUdpFrame).begin(), udp_part(kUdpFrame).end());
  bad[12] ^= 0x01;
  EXPECT_EQ(udp::UdpRepr::parse(bad, kA, kB).error(), udp::UdpError::kBadChecksum);
  EXPECT_TRUE(udp::UdpRepr::parse(bad, kA, kB, /*checksum_verified=*/true));

  Bytes short_len(udp_part(kUdpFrame).begin(), udp_part(kUdpFrame).end());
  short_len[5] = 7;  // length < header
  EXPECT_EQ(udp::UdpRepr::parse(short_len, kA, kB).error(), udp::UdpError::kBadLength);
  Bytes long_len(udp_part(kUdpFrame).begin(), udp_part(kUdpFrame).end());
  long_len[5] = 14;  // length > bytes
  EXPECT_EQ(udp::UdpRepr::parse(long_len, kA, kB).error(), udp::UdpError::kTruncated);

  auto whole = udp_part(kUdpFrame);
  for (size_t n = 0; n < whole.size(); ++n) {
    auto r = udp::UdpRepr::parse(whole.first(n), kA, kB);
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error(), udp::UdpError::kTruncated) << n;
  }
}

TEST(UdpWire, BytesPastTheLengthFieldAreNotPayload) {
  Bytes padded(udp_part(kUdpFrame).begin(), udp_part(kUdpFrame).end());
  padded.insert(padded.end(), {0xde, 0xad, 0xbe});
  auto udp = udp::UdpRepr::parse(padded, kA, kB);
  ASSERT_TRUE(udp);
  EXPECT_EQ(Bytes(udp->payload.begin(), udp->payload.end()), text("hello"));
}

// ---- addresses ----------------------------------------------------------------------------

TEST(Addresses, ParseAndPrint) {
  EXPECT_EQ(Ipv4Addr::parse("198.18.0.2"), std::optional(kB));
  EXPECT_EQ(kB.to_string(), "198.18.0.2");
  EXPECT_EQ(Ipv4Addr::parse("0.0.0.0"), std::optional(Ipv4Addr()));
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.4 ", "a.b.c.d", "1..2.3", "-1.2.3.4", "01.2.3.4", "1.2.3.010"}) {
    EXPECT_FALSE(Ipv4Addr::parse(bad)) << bad;
  }
  auto cidr = Ipv4Cidr::parse("198.18.0.2/24");
  ASSERT_TRUE(cidr);
  EXPECT_TRUE(cidr->contains(kA));
  EXPECT_FALSE(cidr->contains(Ipv4Addr(198, 18, 1, 1)));
  EXPECT_EQ(cidr->subnet_broadcast(), Ipv4Addr(198, 18, 0, 255));
  EXPECT_EQ((Ipv4Cidr{kB, 0}.mask()), 0u);
  EXPECT_EQ((Ipv4Cidr{kB, 32}.mask()), 0xffffffffu);
  EXPECT_FALSE(Ipv4Cidr::parse("198.18.0.2/33"));
  EXPECT_EQ(MacAddr::parse("02:00:00:00:00:01"), std::optional(kMacA));
  EXPECT_EQ(kMacA.to_string(), "02:00:00:00:00:01");
  EXPECT_FALSE(MacAddr::parse("02:00:00:00:00"));
  EXPECT_FALSE(MacAddr::parse("02-00-00-00-00-01"));
}

}  // namespace
}  // namespace ustack
