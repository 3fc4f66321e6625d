// One Stack on an unattached MemoryPort: the test injects frames as the peer and reads back every
// frame the stack sends. Time is a ManualClock; the seed is fixed. Each test checks only the
// fields its behaviour is about; expect_nothing_sent() is checked as carefully as what is sent.

#include "stack/stack.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "dev/memory_wire.h"
#include "test_frames.h"

namespace ustack::udp {
inline void PrintTo(const Endpoint& e, std::ostream* os) { *os << e.addr.to_string() << ":" << e.port; }
}  // namespace ustack::udp

namespace ustack {
namespace {

using test::Bytes;
using test::Loc;
using test::ParsedFrame;
using test::text;

constexpr Ipv4Addr kOurIp(198, 18, 0, 2);
constexpr Ipv4Addr kPeerIp(198, 18, 0, 1);
constexpr Ipv4Addr kPeer2Ip(198, 18, 0, 3);
constexpr Ipv4Addr kGatewayIp(198, 18, 0, 254);
constexpr Ipv4Addr kSubnetBroadcast(198, 18, 0, 255);
constexpr Ipv4Addr kFarIp(203, 0, 113, 7);
constexpr Ipv4Addr kLoopback(127, 0, 0, 1);
constexpr MacAddr kOurMac({0x02, 0, 0, 0, 0, 0x02});  // dev::test_caps(2)
constexpr MacAddr kPeerMac({0x02, 0, 0, 0, 0, 0x01});
constexpr MacAddr kPeer2Mac({0x02, 0, 0, 0, 0, 0x03});
constexpr MacAddr kGatewayMac({0x02, 0, 0, 0, 0, 0xfe});
constexpr MacAddr kStrangerMac({0x02, 0, 0, 0, 0, 0x77});

constexpr uint16_t kEthIpv4 = 0x0800;
constexpr uint16_t kEthArp = 0x0806;
constexpr uint8_t kIcmp = 1;
constexpr uint8_t kUdp = 17;

class StackTest : public ::testing::Test {
 protected:
  static StackConfig default_config() {
    StackConfig config;
    config.address = Ipv4Cidr{kOurIp, 24};
    config.seed = 42;
    return config;
  }

  void SetUp() override { restart(default_config()); }
  void TearDown() override {
    for (auto& s : sockets_) stack_->udp().unbind(*s);
  }

  /// A fresh stack on the same port; the announcement it makes is dropped unless asked for.
  void restart(const StackConfig& config, bool keep_announcement = false) {
    for (auto& s : sockets_) stack_->udp().unbind(*s);
    sockets_.clear();
    stack_.reset();
    port_.take_sent();
    stack_ = std::make_unique<Stack>(config, port_);
    stack_->start(now());
    if (!keep_announcement) port_.take_sent();
  }

  Instant now() const { return clock_.now(); }
  void advance(Duration d) {
    clock_.advance(d);
    stack_->poll(now());
  }
  void poll() { stack_->poll(now()); }
  const StackStats& stats() const { return stack_->stats(); }

  // ---- what the peer sends ----
  void deliver(const Bytes& frame) {
    port_.inject(frame);
    stack_->poll(now());
  }
  void deliver_ip(const Bytes& ip_packet, MacAddr dst_mac = kOurMac, MacAddr src_mac = kPeerMac) {
    deliver(test::eth_frame(dst_mac, src_mac, kEthIpv4, ip_packet));
  }
  void deliver_arp(const eth::ArpRepr& arp, MacAddr dst_mac = kOurMac) {
    deliver(test::eth_frame(dst_mac, arp.sender_mac, kEthArp, test::arp_payload(arp)));
  }
  static Bytes ping(uint16_t ident, uint16_t seq, std::span<const uint8_t> data, Ipv4Addr src = kPeerIp,
                    Ipv4Addr dst = kOurIp) {
    return test::ipv4_packet(test::ip_header(src, dst, ip::Protocol::kIcmp), test::icmp_echo_request(ident, seq, data));
  }
  static Bytes udp_in(Ipv4Addr src, uint16_t src_port, Ipv4Addr dst, uint16_t dst_port, std::span<const uint8_t> payload) {
    return test::ipv4_packet(test::ip_header(src, dst, ip::Protocol::kUdp),
                             test::udp_datagram(src, dst, src_port, dst_port, payload));
  }
  /// The peer asks for our address and the stack answers (and learns the peer).
  void resolve(Ipv4Addr ip = kPeerIp, MacAddr mac = kPeerMac, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    deliver_arp({eth::ArpOp::kRequest, mac, ip, MacAddr(), kOurIp}, MacAddr::broadcast());
    ParsedFrame reply = expect_sent(loc);
    ASSERT_TRUE(reply.arp);
    EXPECT_EQ(reply.arp->op, eth::ArpOp::kReply);
  }

  // ---- what the stack sends ----
  std::vector<ParsedFrame> take_sent(const Loc& loc = Loc::current()) {
    stack_->flush();
    std::vector<ParsedFrame> out;
    for (Packet& p : port_.take_sent()) out.push_back(test::parse_frame(p.bytes(), loc));
    return out;
  }
  /// Exactly one frame was sent since the last look; returns it, read and checked.
  ParsedFrame expect_sent(const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    auto frames = take_sent(loc);
    if (frames.size() != 1) {
      ADD_FAILURE() << "expected one frame, the stack sent " << frames.size();
      return frames.empty() ? ParsedFrame{} : std::move(frames.front());
    }
    EXPECT_EQ(frames[0].eth.src, kOurMac);
    return std::move(frames[0]);
  }
  void expect_nothing_sent(const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    auto frames = take_sent(loc);
    EXPECT_TRUE(frames.empty()) << "the stack sent " << frames.size() << " frame(s), the first of ethertype 0x"
                                << std::hex << (frames.empty() ? 0 : frames[0].eth.ethertype);
  }
  /// An ICMP error to the peer about `offending`, quoting it (up to RFC 1812's 576-byte limit).
  void expect_icmp_error(uint8_t type, uint8_t code, const Bytes& offending, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    ParsedFrame f = expect_sent(loc);
    EXPECT_EQ(f.eth.dst, kPeerMac);
    ASSERT_TRUE(f.ip);
    EXPECT_EQ(f.ip->src, kOurIp);
    EXPECT_EQ(f.ip->dst, kPeerIp);
    EXPECT_EQ(f.ip->protocol, kIcmp);
    EXPECT_EQ(f.ip->tos, 0xc0) << "Linux's icmp_send(): precedence internetwork control";
    ASSERT_TRUE(f.icmp);
    EXPECT_EQ(f.icmp->type, type);
    EXPECT_EQ(f.icmp->code, code);
    EXPECT_EQ(f.icmp->rest, 0u);
    const size_t quoted = std::min<size_t>(offending.size(), 576 - 20 - 8);
    EXPECT_EQ(test::to_hex(f.icmp->data), test::to_hex(std::span(offending).first(quoted)));
  }

  // ---- sockets ----
  udp::UdpSocket& socket() {
    sockets_.push_back(std::make_unique<udp::UdpSocket>());
    return *sockets_.back();
  }
  udp::UdpSocket& bound_socket(Ipv4Addr addr, uint16_t port, bool reuse = false, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    udp::UdpSocket& s = socket();
    s.reuse_addr = reuse;
    EXPECT_EQ(stack_->udp().bind(s, {addr, port}), 0);
    return s;
  }
  Result<size_t, int> send(udp::UdpSocket& s, std::span<const uint8_t> data, std::optional<udp::Endpoint> to) {
    auto r = stack_->udp().send(now(), s, data, to);
    stack_->flush();
    return r;
  }
  /// The socket's oldest queued datagram is `payload` from `from`; takes it off the queue.
  void expect_received(udp::UdpSocket& s, std::span<const uint8_t> payload, udp::Endpoint from,
                       const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    ASSERT_FALSE(s.rx_queue.empty()) << "nothing received";
    udp::UdpSocket::Received r = std::move(s.rx_queue.front());
    s.pop_front();
    EXPECT_EQ(test::to_hex(r.payload.bytes()), test::to_hex(payload));
    EXPECT_EQ(r.from, from);
  }

  ManualClock clock_;
  dev::MemoryPort port_{clock_, dev::test_caps(2), "stack under test"};
  std::unique_ptr<Stack> stack_;
  std::vector<std::unique_ptr<udp::UdpSocket>> sockets_;
};

// ---- Ethernet and ARP ---------------------------------------------------------------------

TEST_F(StackTest, AnnouncesItsAddressOnStart) {
  restart(default_config(), /*keep_announcement=*/true);
  ParsedFrame f = expect_sent();
  EXPECT_EQ(f.eth.dst, MacAddr::broadcast());
  EXPECT_EQ(f.eth.ethertype, kEthArp);
  ASSERT_TRUE(f.arp);
  // RFC 5227 §2.3: a request with our address as sender and target.
  EXPECT_EQ(f.arp->op, eth::ArpOp::kRequest);
  EXPECT_EQ(f.arp->sender_mac, kOurMac);
  EXPECT_EQ(f.arp->sender_ip, kOurIp);
  EXPECT_EQ(f.arp->target_mac, MacAddr());
  EXPECT_EQ(f.arp->target_ip, kOurIp);
  advance(10s);
  expect_nothing_sent();

  StackConfig quiet = default_config();
  quiet.gratuitous_arp = false;
  restart(quiet, true);
  expect_nothing_sent();
}

TEST_F(StackTest, AnswersArpRequestForItsAddress) {
  deliver_arp({eth::ArpOp::kRequest, kPeerMac, kPeerIp, MacAddr(), kOurIp}, MacAddr::broadcast());
  ParsedFrame f = expect_sent();
  EXPECT_EQ(f.eth.dst, kPeerMac);
  EXPECT_EQ(f.eth.ethertype, kEthArp);
  ASSERT_TRUE(f.arp);
  EXPECT_EQ(*f.arp, (eth::ArpRepr{eth::ArpOp::kReply, kOurMac, kOurIp, kPeerMac, kPeerIp}));
  EXPECT_EQ(stats().arp.rx_requests, 1u);
  EXPECT_EQ(stats().arp.tx_replies, 1u);
  // RFC 826: the asker was learned, so answering it needs no request of our own.
  EXPECT_EQ(stack_->arp_entries(), 1u);
  deliver_ip(ping(1, 1, text("hi")));
  ParsedFrame reply = expect_sent();
  EXPECT_EQ(reply.eth.dst, kPeerMac);
  ASSERT_TRUE(reply.icmp);
}

TEST_F(StackTest, IgnoresArpRequestForAnotherAddress) {
  deliver_arp({eth::ArpOp::kRequest, kPeerMac, kPeerIp, MacAddr(), kPeer2Ip}, MacAddr::broadcast());
  expect_nothing_sent();
  EXPECT_EQ(stack_->arp_entries(), 0u) << "a request for someone else teaches nothing new";
  EXPECT_EQ(stats().arp.rx_requests, 1u);
  EXPECT_EQ(stats().arp.tx_replies, 0u);
}

TEST_F(StackTest, DropsMalformedArpAndCountsConflicts) {
  Bytes rarp = test::arp_payload({eth::ArpOp::kRequest, kPeerMac, kPeerIp, MacAddr(), kOurIp});
  rarp[7] = 3;  // RARP request
  deliver(test::eth_frame(MacAddr::broadcast(), kPeerMac, kEthArp, rarp));
  deliver(test::eth_frame(MacAddr::broadcast(), kPeerMac, kEthArp, std::span(rarp).first(27)));
  deliver_arp({eth::ArpOp::kRequest, MacAddr::broadcast(), kPeerIp, MacAddr(), kOurIp}, MacAddr::broadcast());
  expect_nothing_sent();
  EXPECT_EQ(stats().arp.rx_malformed, 3u);
  EXPECT_EQ(stack_->arp_entries(), 0u);
  // Someone else claims our address: counted, not answered, not learned.
  deliver_arp({eth::ArpOp::kRequest, kStrangerMac, kOurIp, MacAddr(), kOurIp}, MacAddr::broadcast());
  expect_nothing_sent();
  EXPECT_EQ(stats().arp.rx_conflicts, 1u);
  EXPECT_EQ(stack_->arp_entries(), 0u);
}

TEST_F(StackTest, DropsFrameForAnotherMac) {
  resolve();
  deliver_ip(ping(1, 1, text("hi")), kStrangerMac);
  expect_nothing_sent();
  EXPECT_EQ(stats().eth.rx_not_for_us, 1u);
  EXPECT_EQ(stats().ipv4.rx_packets, 0u);
}

TEST_F(StackTest, CountsUnknownEthertypeAndRuntFrames) {
  resolve();
  deliver(test::eth_frame(kOurMac, kPeerMac, 0x86dd, test::pattern(40)));  // IPv6
  deliver(test::eth_frame(kOurMac, kPeerMac, 0x8100, ping(1, 1, text("hi"))));  // VLAN-tagged
  EXPECT_EQ(stats().eth.rx_unknown_ethertype, 2u);
  deliver(Bytes(13, 0xff));
  EXPECT_EQ(stats().eth.rx_truncated, 1u);
  expect_nothing_sent();
}

// ---- ICMP echo ----------------------------------------------------------------------------

TEST_F(StackTest, AnswersPing) {
  resolve();
  const Bytes data = text("ustack ping!");
  deliver_ip(ping(0x1d2e, 3, data));
  ParsedFrame f = expect_sent();
  EXPECT_EQ(f.eth.dst, kPeerMac);
  EXPECT_EQ(f.eth.ethertype, kEthIpv4);
  ASSERT_TRUE(f.ip);
  EXPECT_EQ(f.ip->src, kOurIp);
  EXPECT_EQ(f.ip->dst, kPeerIp);
  EXPECT_EQ(f.ip->protocol, kIcmp);
  EXPECT_EQ(f.ip->ttl, 64);
  ASSERT_TRUE(f.icmp);  // parse_frame checked both checksums
  EXPECT_EQ(f.icmp->type, 0);
  EXPECT_EQ(f.icmp->code, 0);
  EXPECT_EQ(f.icmp->ident(), 0x1d2e);
  EXPECT_EQ(f.icmp->seq(), 3);
  EXPECT_EQ(f.icmp->data, data);
  EXPECT_EQ(stats().icmp.rx_echo_requests, 1u);
  EXPECT_EQ(stats().icmp.tx_echo_replies, 1u);
}

TEST_F(StackTest, EchoReplyKeepsTosAndClearsDf) {
  // Linux's icmp_reply(): the request's TOS, DF clear whatever the request had.
  resolve();
  ip::Ipv4Repr h = test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp);
  h.tos = 0x10;
  h.dont_fragment = true;
  deliver_ip(test::ipv4_packet(h, test::icmp_echo_request(5, 6, text("tos"))));
  ParsedFrame f = expect_sent();
  ASSERT_TRUE(f.icmp);
  EXPECT_EQ(f.ip->tos, 0x10);
  EXPECT_FALSE(f.ip->dont_fragment);
}

TEST_F(StackTest, PingFromUnknownPeerResolvesItFirst) {
  deliver_ip(ping(7, 1, text("who?")));
  ParsedFrame request = expect_sent();
  ASSERT_TRUE(request.arp);
  EXPECT_EQ(request.eth.dst, MacAddr::broadcast());
  EXPECT_EQ(request.arp->target_ip, kPeerIp);
  deliver_arp({eth::ArpOp::kReply, kPeerMac, kPeerIp, kOurMac, kOurIp});
  ParsedFrame reply = expect_sent();
  EXPECT_EQ(reply.eth.dst, kPeerMac);
  ASSERT_TRUE(reply.icmp);
  EXPECT_EQ(reply.icmp->type, 0);
  EXPECT_EQ(reply.icmp->data, text("who?"));
}

TEST_F(StackTest, IgnoresBroadcastPing) {
  resolve();
  deliver_ip(ping(1, 1, text("smurf"), kPeerIp, kSubnetBroadcast), MacAddr::broadcast());
  deliver_ip(ping(1, 2, text("smurf"), kPeerIp, Ipv4Addr::broadcast()), MacAddr::broadcast());
  expect_nothing_sent();
  EXPECT_EQ(stats().icmp.rx_echo_requests, 2u);
  EXPECT_EQ(stats().icmp.tx_echo_replies, 0u);
}

TEST_F(StackTest, IgnoresEchoReplyAndBadIcmp) {
  resolve();
  deliver_ip(test::ipv4_packet(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp),
                               test::icmp_message(0, 0, 0x00010001, text("pong"))));
  EXPECT_EQ(stats().icmp.rx_other, 1u);
  Bytes bad = ping(1, 1, text("hi"));
  bad[20 + 8] ^= 0x01;  // an ICMP data byte: the IP header stays valid
  deliver_ip(bad);
  EXPECT_EQ(stats().icmp.rx_bad_checksum, 1u);
  deliver_ip(test::ipv4_packet(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp), test::pattern(7)));
  EXPECT_EQ(stats().icmp.rx_malformed, 1u);
  expect_nothing_sent();
}

TEST_F(StackTest, AnswersPingWithIpOptionsAndEthernetPadding) {
  resolve();
  Bytes p = ping(9, 9, text("opt"));
  const uint8_t router_alert[4] = {0x94, 0x04, 0x00, 0x00};
  p.insert(p.begin() + 20, router_alert, router_alert + 4);
  p[0] = 0x46;
  store_be16(p.data() + 2, static_cast<uint16_t>(p.size()));
  test::fix_ipv4_checksum(p);
  Bytes frame = test::eth_frame(kOurMac, kPeerMac, kEthIpv4, p);
  frame.resize(60, 0xee);  // minimum frame, padded with junk
  deliver(frame);
  ParsedFrame f = expect_sent();
  ASSERT_TRUE(f.icmp);
  EXPECT_EQ(f.ip->header_len, 20) << "options are not echoed";
  EXPECT_EQ(f.icmp->data, text("opt")) << "padding is not data";
  EXPECT_EQ(stats().ipv4.rx_options_ignored, 1u);
}

TEST_F(StackTest, AnswersFragmentedPingWithFragments) {
  resolve();
  const Bytes data = test::pattern(3000);
  const Bytes icmp = test::icmp_echo_request(0x4444, 17, data);  // 3008 bytes
  auto frags = test::fragment(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp, 0x7777), icmp, 1480);
  ASSERT_EQ(frags.size(), 3u);
  deliver_ip(frags[2]);
  deliver_ip(frags[0]);
  expect_nothing_sent();
  EXPECT_EQ(stack_->reassembly_datagrams(), 1u);
  deliver_ip(frags[1]);
  auto sent = take_sent();
  ASSERT_EQ(sent.size(), 3u);
  const uint16_t expected_offsets[] = {0, 1480, 2960};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(sent[i].ip);
    EXPECT_EQ(sent[i].eth.dst, kPeerMac);
    EXPECT_EQ(sent[i].ip->dst, kPeerIp);
    EXPECT_EQ(sent[i].ip->fragment_offset, expected_offsets[i]);
    EXPECT_EQ(sent[i].ip->more_fragments, i < 2);
    EXPECT_FALSE(sent[i].ip->dont_fragment);
    EXPECT_LE(sent[i].ip_packet.size(), 1500u);
  }
  auto whole = test::reassemble(sent);
  ASSERT_TRUE(whole);
  auto reply = test::read_icmp(*whole);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->type, 0);
  EXPECT_EQ(reply->ident(), 0x4444);
  EXPECT_EQ(reply->seq(), 17);
  EXPECT_TRUE(reply->data == data) << "the echoed data differs";
  EXPECT_EQ(stats().ipv4.reasm_ok, 1u);
  EXPECT_EQ(stack_->reassembly_datagrams(), 0u);
}

// ---- malformed IPv4 -----------------------------------------------------------------------

TEST_F(StackTest, DropsAndCountsMalformedIpv4ThenStillAnswers) {
  resolve();
  struct Case {
    const char* what;
    void (*mutate)(Bytes&);
    Counter Ipv4Stats::*counter;
  };
  const Case cases[] = {
      {"bad checksum", [](Bytes& p) { p[10] ^= 0x01; }, &Ipv4Stats::rx_bad_checksum},
      {"version 6", [](Bytes& p) { p[0] = 0x65; test::fix_ipv4_checksum(p); }, &Ipv4Stats::rx_bad_version},
      {"IHL 4", [](Bytes& p) { p[0] = 0x44; test::fix_ipv4_checksum(p); }, &Ipv4Stats::rx_bad_header_length},
      {"total length 19", [](Bytes& p) { store_be16(p.data() + 2, 19); test::fix_ipv4_checksum(p); },
       &Ipv4Stats::rx_bad_total_length},
      {"cut short", [](Bytes& p) { p.erase(p.end() - 3, p.end()); }, &Ipv4Stats::rx_truncated},
      {"header cut short", [](Bytes& p) { p.resize(19); }, &Ipv4Stats::rx_truncated},
      {"IHL past the packet", [](Bytes& p) { p[0] = 0x4f; test::fix_ipv4_checksum(p); }, &Ipv4Stats::rx_truncated},
  };
  uint16_t seq = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const uint64_t before = stack_->stats().ipv4.*(c.counter);
    Bytes p = ping(1, ++seq, text("are you there"));
    c.mutate(p);
    deliver_ip(p);
    expect_nothing_sent();
    EXPECT_EQ(stack_->stats().ipv4.*(c.counter) - before, 1u);
    deliver_ip(ping(1, ++seq, text("still there?")));
    ParsedFrame f = expect_sent();
    ASSERT_TRUE(f.icmp);
    EXPECT_EQ(f.icmp->seq(), seq);
  }
  EXPECT_EQ(stats().ipv4.rx_delivered, std::size(cases));
}

TEST_F(StackTest, DropsSpoofedSourcesAndOtherDestinations) {
  resolve();
  deliver_ip(ping(1, 1, text("x"), kOurIp, kOurIp));
  deliver_ip(ping(1, 2, text("x"), kLoopback, kOurIp));
  deliver_ip(ping(1, 3, text("x"), kSubnetBroadcast, kOurIp));
  deliver_ip(ping(1, 4, text("x"), Ipv4Addr(224, 0, 0, 1), kOurIp));
  EXPECT_EQ(stats().ipv4.rx_bad_source, 4u);
  deliver_ip(ping(1, 5, text("x"), kPeerIp, kPeer2Ip));  // we do not forward
  deliver_ip(ping(1, 6, text("x"), kPeerIp, kLoopback));
  EXPECT_EQ(stats().ipv4.rx_not_for_us, 2u);
  expect_nothing_sent();
  EXPECT_EQ(stats().icmp.rx_messages, 0u);
}

// ---- ICMP errors we send -------------------------------------------------------------------

TEST_F(StackTest, UdpToClosedPortGetsPortUnreachable) {
  resolve();
  const Bytes dgram = udp_in(kPeerIp, 40000, kOurIp, 9, text("anyone?"));
  deliver_ip(dgram);
  expect_icmp_error(3, 3, dgram);
  EXPECT_EQ(stats().udp.rx_no_port, 1u);
  EXPECT_EQ(stats().icmp.tx_dest_unreachable, 1u);
}

TEST_F(StackTest, IcmpErrorQuoteIsBoundedTo576Bytes) {
  resolve();
  const Bytes dgram = udp_in(kPeerIp, 40000, kOurIp, 9, test::pattern(1400));
  deliver_ip(dgram);
  auto sent = take_sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].ip_packet.size(), 576u) << "RFC 1812 §4.3.2.3";
  ASSERT_TRUE(sent[0].icmp);
  EXPECT_EQ(test::to_hex(sent[0].icmp->data), test::to_hex(std::span(dgram).first(576 - 28)));
}

TEST_F(StackTest, IcmpErrorsAreRateLimited) {
  resolve();
  // Linux's defaults: bursts of 50, then 1000 per second.
  for (int i = 0; i < 60; ++i) deliver_ip(udp_in(kPeerIp, static_cast<uint16_t>(40000 + i), kOurIp, 9, text("x")));
  auto sent = take_sent();
  EXPECT_EQ(sent.size(), 50u);
  for (const ParsedFrame& f : sent) {
    ASSERT_TRUE(f.icmp);
    EXPECT_EQ(f.icmp->type, 3);
  }
  EXPECT_EQ(stats().icmp.tx_rate_limited, 10u);
  EXPECT_EQ(stats().udp.rx_no_port, 60u);
  advance(1ms);  // one token back
  deliver_ip(udp_in(kPeerIp, 41000, kOurIp, 9, text("x")));
  deliver_ip(udp_in(kPeerIp, 41001, kOurIp, 9, text("x")));
  EXPECT_EQ(take_sent().size(), 1u);
  EXPECT_EQ(stats().icmp.tx_rate_limited, 11u);
  advance(1s);  // the bucket refills to its burst, not beyond
  for (int i = 0; i < 60; ++i) deliver_ip(udp_in(kPeerIp, static_cast<uint16_t>(42000 + i), kOurIp, 9, text("x")));
  EXPECT_EQ(take_sent().size(), 50u);
}

TEST_F(StackTest, NoIcmpErrorForBroadcastUdp) {
  resolve();
  deliver_ip(udp_in(kPeerIp, 40000, kSubnetBroadcast, 9, text("hello all")), MacAddr::broadcast());
  deliver_ip(udp_in(kPeerIp, 40000, Ipv4Addr::broadcast(), 9, text("hello all")), MacAddr::broadcast());
  expect_nothing_sent();
  EXPECT_EQ(stats().udp.rx_no_port, 2u);
  EXPECT_EQ(stats().icmp.tx_dest_unreachable, 0u);
}

TEST_F(StackTest, UnknownProtocolGetsProtocolUnreachable) {
  resolve();
  ip::Ipv4Repr h = test::ip_header(kPeerIp, kOurIp, ip::Protocol::kUdp);
  h.protocol = 47;  // GRE
  const Bytes gre = test::ipv4_packet(h, test::pattern(24));
  deliver_ip(gre);
  expect_icmp_error(3, 2, gre);
  EXPECT_EQ(stats().ipv4.rx_unknown_protocol, 1u);
}

TEST_F(StackTest, ReassemblyTimeoutSendsTimeExceededOnlyWithTheFirstFragment) {
  resolve();
  const Bytes udp = test::udp_datagram(kPeerIp, kOurIp, 40000, 9, test::pattern(2000));
  auto frags = test::fragment(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kUdp, 0x1111), udp, 1480);
  deliver_ip(frags[0]);
  advance(30s - 1ms);
  expect_nothing_sent();
  advance(1ms);
  expect_icmp_error(11, 1, frags[0]);  // RFC 792: fragment reassembly time exceeded
  EXPECT_EQ(stats().ipv4.reasm_timeout, 1u);

  auto later = test::fragment(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kUdp, 0x2222), udp, 1480);
  deliver_ip(later[1]);
  advance(30s);
  expect_nothing_sent();  // nothing to quote
  EXPECT_EQ(stats().ipv4.reasm_timeout, 2u);
}

// ---- UDP receive --------------------------------------------------------------------------

TEST_F(StackTest, SocketReceivesDatagramWithItsSource) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  deliver_ip(udp_in(kPeerIp, 40000, kOurIp, 5000, text("first")));
  deliver_ip(udp_in(kPeer2Ip, 40001, kOurIp, 5000, text("second")), kOurMac, kPeer2Mac);
  expect_received(s, text("first"), {kPeerIp, 40000});
  expect_received(s, text("second"), {kPeer2Ip, 40001});
  EXPECT_TRUE(s.rx_queue.empty());
  expect_nothing_sent();
  EXPECT_EQ(stats().udp.rx_delivered, 2u);
}

TEST_F(StackTest, UdpZeroChecksumAcceptedPaddingIgnored) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  Bytes p = udp_in(kPeerIp, 40000, kOurIp, 5000, text("hi"));
  store_be16(p.data() + 20 + 6, 0);  // "no checksum" (RFC 768)
  Bytes frame = test::eth_frame(kOurMac, kPeerMac, kEthIpv4, p);
  frame.resize(60, 0x99);
  deliver(frame);
  expect_received(s, text("hi"), {kPeerIp, 40000});
}

TEST_F(StackTest, UdpBadChecksumOrLengthDroppedAndCounted) {
  resolve();
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  Bytes bad_sum = udp_in(kPeerIp, 40000, kOurIp, 5000, text("corrupted"));
  bad_sum.back() ^= 0x01;
  deliver_ip(bad_sum);
  EXPECT_EQ(stats().udp.rx_bad_checksum, 1u);
  Bytes bad_len = udp_in(kPeerIp, 40000, kOurIp, 5000, text("corrupted"));
  store_be16(bad_len.data() + 20 + 4, 7);
  deliver_ip(bad_len);
  EXPECT_EQ(stats().udp.rx_malformed, 1u);
  // Not to a socket either way, and no ICMP error about a datagram that may not be what was sent.
  Bytes closed = udp_in(kPeerIp, 40000, kOurIp, 5001, text("corrupted"));
  closed.back() ^= 0x01;
  deliver_ip(closed);
  EXPECT_TRUE(s.rx_queue.empty());
  expect_nothing_sent();
  EXPECT_EQ(stats().udp.rx_delivered, 0u);
}

TEST_F(StackTest, ReceivesReassembledDatagram) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  const Bytes payload = test::pattern(5000);
  const Bytes udp = test::udp_datagram(kPeerIp, kOurIp, 40000, 5000, payload);
  auto frags = test::fragment(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kUdp, 0x3333), udp, 1480);
  ASSERT_EQ(frags.size(), 4u);
  for (size_t i : {3, 1, 0, 2}) deliver_ip(frags[i]);
  expect_received(s, payload, {kPeerIp, 40000});
  expect_nothing_sent();
}

TEST_F(StackTest, DemuxPrefersConnectedThenSpecificThenWildcard) {
  // Linux's compute_score(): whatever order they were bound in.
  std::vector<int> order = {0, 1, 2};
  do {
    SCOPED_TRACE(::testing::Message() << "bind order " << order[0] << order[1] << order[2]);
    restart(default_config());
    udp::UdpSocket* socks[3] = {};
    for (int which : order) {
      socks[which] = &bound_socket(which == 1 ? kOurIp : Ipv4Addr::any(), 5000, /*reuse=*/true);
      if (which == 2) {
        ASSERT_EQ(stack_->udp().connect(*socks[which], {kPeerIp, 6000}), 0);
      }
    }
    udp::UdpSocket& wildcard = *socks[0];
    udp::UdpSocket& specific = *socks[1];
    udp::UdpSocket& connected = *socks[2];
    deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, text("from the peer")));
    deliver_ip(udp_in(kPeerIp, 6001, kOurIp, 5000, text("other port")));
    deliver_ip(udp_in(kPeer2Ip, 6000, kOurIp, 5000, text("other host")), kOurMac, kPeer2Mac);
    deliver_ip(udp_in(kPeerIp, 6000, kSubnetBroadcast, 5000, text("broadcast")), MacAddr::broadcast());
    expect_received(connected, text("from the peer"), {kPeerIp, 6000});
    EXPECT_TRUE(connected.rx_queue.empty());
    expect_received(specific, text("other port"), {kPeerIp, 6001});
    expect_received(specific, text("other host"), {kPeer2Ip, 6000});
    EXPECT_TRUE(specific.rx_queue.empty());
    expect_received(wildcard, text("broadcast"), {kPeerIp, 6000});
    EXPECT_TRUE(wildcard.rx_queue.empty());
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST_F(StackTest, DemuxPrefersSpecificLocalAddressOverWildcard) {
  for (bool specific_first : {false, true}) {
    SCOPED_TRACE(specific_first ? "specific bound first" : "wildcard bound first");
    restart(default_config());
    udp::UdpSocket* specific = nullptr;
    udp::UdpSocket* wildcard = nullptr;
    if (specific_first) specific = &bound_socket(kOurIp, 5000, true);
    wildcard = &bound_socket(Ipv4Addr::any(), 5000, true);
    if (!specific_first) specific = &bound_socket(kOurIp, 5000, true);
    deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, text("unicast")));
    deliver_ip(udp_in(kPeerIp, 6000, kSubnetBroadcast, 5000, text("broadcast")), MacAddr::broadcast());
    expect_received(*specific, text("unicast"), {kPeerIp, 6000});
    EXPECT_TRUE(specific->rx_queue.empty()) << "a socket bound to a unicast address gets no broadcast";
    expect_received(*wildcard, text("broadcast"), {kPeerIp, 6000});
    EXPECT_TRUE(wildcard->rx_queue.empty());
  }
}

TEST_F(StackTest, SocketBoundToLoopbackGetsNothingFromTheWire) {
  resolve();
  udp::UdpSocket& s = bound_socket(kLoopback, 5000);
  const Bytes dgram = udp_in(kPeerIp, 6000, kOurIp, 5000, text("x"));
  deliver_ip(dgram);
  EXPECT_TRUE(s.rx_queue.empty());
  expect_icmp_error(3, 3, dgram);
}

TEST_F(StackTest, ReceiveBufferBoundDropsButAnEmptyQueueTakesOne) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  s.rcvbuf = 100;  // smaller than any one datagram's cost
  deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, test::pattern(1000, 1)));
  deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, test::pattern(10, 2)));
  EXPECT_EQ(s.rx_queue.size(), 1u);
  EXPECT_EQ(stats().udp.rx_queue_full, 1u);
  EXPECT_EQ(s.rx_dropped, 1u);
  expect_received(s, test::pattern(1000, 1), {kPeerIp, 6000});
  deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, test::pattern(10, 3)));  // drained: room again
  expect_received(s, test::pattern(10, 3), {kPeerIp, 6000});

  s.rcvbuf = udp::kMinRcvbuf;  // 2304: one 1000-byte datagram (1512 charged) but not two
  deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, test::pattern(1000, 4)));
  deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, test::pattern(1000, 5)));
  deliver_ip(udp_in(kPeerIp, 6000, kOurIp, 5000, test::pattern(200, 6)));  // 1512 + 712 fits
  EXPECT_EQ(stats().udp.rx_queue_full, 2u);
  expect_received(s, test::pattern(1000, 4), {kPeerIp, 6000});
  expect_received(s, test::pattern(200, 6), {kPeerIp, 6000});
  expect_nothing_sent();  // a full queue is not an unreachable port
}

// ---- UDP send -----------------------------------------------------------------------------

TEST_F(StackTest, SendToUnresolvedNeighbourWaitsForArp) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  ASSERT_EQ(send(s, text("queued"), udp::Endpoint{kPeerIp, 6000}).ok(), true);
  ParsedFrame request = expect_sent();
  EXPECT_EQ(request.eth.dst, MacAddr::broadcast());
  ASSERT_TRUE(request.arp);
  EXPECT_EQ(*request.arp, (eth::ArpRepr{eth::ArpOp::kRequest, kOurMac, kOurIp, MacAddr(), kPeerIp}));
  ASSERT_EQ(send(s, text("second"), udp::Endpoint{kPeerIp, 6000}).ok(), true);
  expect_nothing_sent();  // one request per resolution
  advance(500ms);
  expect_nothing_sent();
  deliver_arp({eth::ArpOp::kReply, kPeerMac, kPeerIp, kOurMac, kOurIp});
  auto sent = take_sent();
  ASSERT_EQ(sent.size(), 2u);
  for (const ParsedFrame& f : sent) {
    EXPECT_EQ(f.eth.dst, kPeerMac);
    ASSERT_TRUE(f.udp);
    EXPECT_EQ(f.ip->src, kOurIp);
    EXPECT_EQ(f.ip->dst, kPeerIp);
    EXPECT_TRUE(f.ip->dont_fragment);  // Linux's IP_PMTUDISC_WANT
    EXPECT_EQ(f.udp->src_port, 5000);
    EXPECT_EQ(f.udp->dst_port, 6000);
  }
  EXPECT_EQ(sent[0].udp->payload, text("queued"));
  EXPECT_EQ(sent[1].udp->payload, text("second"));
  advance(10s);
  expect_nothing_sent();
}

TEST_F(StackTest, UnansweredArpGivesUpAfterThreeRequests) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  ASSERT_TRUE(send(s, text("lost"), udp::Endpoint{kPeerIp, 6000}).ok());
  ASSERT_TRUE(expect_sent().arp);
  advance(1s);
  ASSERT_TRUE(expect_sent().arp);
  advance(1s);
  ASSERT_TRUE(expect_sent().arp);
  advance(1s);
  expect_nothing_sent();
  advance(10s);
  expect_nothing_sent();
  EXPECT_EQ(stats().arp.resolution_failed, 1u);
  EXPECT_EQ(stats().arp.pending_dropped_unresolved, 1u);
  EXPECT_EQ(s.pending_error, 0) << "Linux: a failed resolution is a soft error";
}

TEST_F(StackTest, SendOffSubnetWithoutGatewayIsUnreachable) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  auto r = send(s, text("far"), udp::Endpoint{kFarIp, 6000});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ENETUNREACH);
  EXPECT_EQ(stack_->udp().connect(s, {kFarIp, 6000}), ENETUNREACH);
  expect_nothing_sent();
  EXPECT_EQ(stats().udp.tx_errors, 1u);
  EXPECT_GE(stats().ipv4.tx_no_route, 1u);
}

TEST_F(StackTest, SendOffSubnetGoesToTheGateway) {
  StackConfig config = default_config();
  config.gateway = kGatewayIp;
  restart(config);
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  ASSERT_TRUE(send(s, text("far"), udp::Endpoint{kFarIp, 6000}).ok());
  ParsedFrame request = expect_sent();
  ASSERT_TRUE(request.arp);
  EXPECT_EQ(request.arp->target_ip, kGatewayIp);
  deliver_arp({eth::ArpOp::kReply, kGatewayMac, kGatewayIp, kOurMac, kOurIp});
  ParsedFrame f = expect_sent();
  EXPECT_EQ(f.eth.dst, kGatewayMac);
  ASSERT_TRUE(f.udp);
  EXPECT_EQ(f.ip->dst, kFarIp);
  EXPECT_EQ(f.udp->payload, text("far"));
  // On-link destinations still go direct.
  resolve();
  ASSERT_TRUE(send(s, text("near"), udp::Endpoint{kPeerIp, 6000}).ok());
  EXPECT_EQ(expect_sent().eth.dst, kPeerMac);
}

TEST_F(StackTest, LargeSendIsFragmented) {
  resolve();
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  const Bytes payload = test::pattern(4000, 5);
  auto r = send(s, payload, udp::Endpoint{kPeerIp, 6000});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 4000u);
  auto sent = take_sent();
  ASSERT_EQ(sent.size(), 3u);  // 4008 UDP bytes: 1480 + 1480 + 1048
  const uint16_t offsets[] = {0, 1480, 2960};
  const size_t lengths[] = {1480, 1480, 1048};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(sent[i].ip);
    EXPECT_EQ(sent[i].eth.dst, kPeerMac);
    EXPECT_EQ(sent[i].ip->fragment_offset, offsets[i]);
    EXPECT_EQ(sent[i].ip->more_fragments, i < 2);
    EXPECT_FALSE(sent[i].ip->dont_fragment);
    EXPECT_EQ(sent[i].ip->payload_len, lengths[i]);
    EXPECT_EQ(sent[i].ip->ident, sent[0].ip->ident);
  }
  auto whole = test::reassemble(sent);
  ASSERT_TRUE(whole);
  auto udp = test::read_udp(*whole, kOurIp, kPeerIp);
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->src_port, 5000);
  EXPECT_EQ(udp->dst_port, 6000);
  EXPECT_TRUE(udp->payload == payload);
  EXPECT_EQ(stats().ipv4.tx_fragments, 3u);
  // The next datagram has another IP identification.
  ASSERT_TRUE(send(s, payload, udp::Endpoint{kPeerIp, 6000}));
  auto next = take_sent();
  ASSERT_EQ(next.size(), 3u);
  EXPECT_NE(next[0].ip->ident, sent[0].ip->ident);
}

TEST_F(StackTest, SendRejectsTooLargeAndPortZero) {
  resolve();
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  const Bytes huge(65508, 0x42);  // 65507 is the most an IPv4 UDP datagram holds
  auto r = send(s, huge, udp::Endpoint{kPeerIp, 6000});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), EMSGSIZE);
  auto zero = send(s, text("x"), udp::Endpoint{kPeerIp, 0});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error(), EINVAL);
  auto nowhere = send(s, text("x"), std::nullopt);
  ASSERT_FALSE(nowhere);
  EXPECT_EQ(nowhere.error(), EDESTADDRREQ);
  expect_nothing_sent();
}

TEST_F(StackTest, BroadcastNeedsSoBroadcast) {
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 5000);
  auto r = send(s, text("all"), udp::Endpoint{kSubnetBroadcast, 6000});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), EACCES);
  expect_nothing_sent();
  s.broadcast = true;
  ASSERT_TRUE(send(s, text("all"), udp::Endpoint{kSubnetBroadcast, 6000}));
  ParsedFrame f = expect_sent();
  EXPECT_EQ(f.eth.dst, MacAddr::broadcast());
  ASSERT_TRUE(f.udp);
  EXPECT_EQ(f.ip->dst, kSubnetBroadcast);
}

// ---- bind and ports -----------------------------------------------------------------------

TEST_F(StackTest, BindErrors) {
  udp::UdpLayer& udp = stack_->udp();
  udp::UdpSocket& a = bound_socket(Ipv4Addr::any(), 7000);
  EXPECT_EQ(udp.bind(a, {Ipv4Addr::any(), 7001}), EINVAL) << "already bound";
  EXPECT_EQ(udp.bind(socket(), {Ipv4Addr::any(), 7000}), EADDRINUSE);
  EXPECT_EQ(udp.bind(socket(), {kOurIp, 7000}), EADDRINUSE) << "overlaps the wildcard";
  EXPECT_EQ(udp.bind(socket(), {Ipv4Addr(198, 18, 0, 9), 7002}), EADDRNOTAVAIL);
  EXPECT_EQ(udp.bind(socket(), {kFarIp, 7002}), EADDRNOTAVAIL);
  EXPECT_EQ(udp.bind(socket(), {kLoopback, 7002}), 0);
  EXPECT_EQ(udp.bind(socket(), {kOurIp, 7002}), 0) << "distinct specific addresses share a port";
  EXPECT_EQ(udp.bind(socket(), {Ipv4Addr::any(), 7002}), EADDRINUSE);
  // Once closed, the port is free again.
  udp.unbind(a);
  EXPECT_EQ(udp.bind(socket(), {Ipv4Addr::any(), 7000}), 0);
}

TEST_F(StackTest, SoReuseAddrSharesOnlyWhenBothAsk) {
  udp::UdpLayer& udp = stack_->udp();
  bound_socket(Ipv4Addr::any(), 7000, /*reuse=*/true);
  udp::UdpSocket& b = socket();
  b.reuse_addr = true;
  EXPECT_EQ(udp.bind(b, {Ipv4Addr::any(), 7000}), 0);
  udp::UdpSocket& c = socket();  // without the option
  EXPECT_EQ(udp.bind(c, {Ipv4Addr::any(), 7000}), EADDRINUSE);
  bound_socket(Ipv4Addr::any(), 7001);
  udp::UdpSocket& d = socket();
  d.reuse_addr = true;
  EXPECT_EQ(udp.bind(d, {Ipv4Addr::any(), 7001}), EADDRINUSE) << "the first did not ask";
}

TEST_F(StackTest, EphemeralPortsAreInRangeAndDistinct) {
  std::set<uint16_t> ports;
  for (int i = 0; i < 200; ++i) {
    udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 0);
    EXPECT_GE(s.local.port, 32768);
    EXPECT_LE(s.local.port, 60999);
    ports.insert(s.local.port);
  }
  EXPECT_EQ(ports.size(), 200u);
  // sendto() and connect() on an unbound socket pick one too.
  resolve();
  udp::UdpSocket& sender = socket();
  ASSERT_TRUE(send(sender, text("x"), udp::Endpoint{kPeerIp, 6000}));
  EXPECT_TRUE(sender.bound());
  EXPECT_FALSE(ports.contains(sender.local.port));
  ParsedFrame f = expect_sent();
  ASSERT_TRUE(f.udp);
  EXPECT_EQ(f.udp->src_port, sender.local.port);
  udp::UdpSocket& connector = socket();
  ASSERT_EQ(stack_->udp().connect(connector, {kPeerIp, 6000}), 0);
  EXPECT_GE(connector.local.port, 32768);
  EXPECT_EQ(connector.local.addr, kOurIp);
}

TEST_F(StackTest, EphemeralRangeExhaustsAndSkipsBoundPorts) {
  StackConfig config = default_config();
  config.udp.ephemeral_low = 40000;
  config.udp.ephemeral_high = 40003;
  restart(config);
  bound_socket(Ipv4Addr::any(), 40001);
  std::set<uint16_t> ports;
  for (int i = 0; i < 3; ++i) ports.insert(bound_socket(Ipv4Addr::any(), 0).local.port);
  EXPECT_EQ(ports, (std::set<uint16_t>{40000, 40002, 40003}));
  EXPECT_EQ(stack_->udp().bind(socket(), {Ipv4Addr::any(), 0}), EADDRINUSE);
}

TEST_F(StackTest, EphemeralPortsReplayFromTheSeed) {
  std::vector<uint16_t> first;
  for (int i = 0; i < 5; ++i) first.push_back(bound_socket(Ipv4Addr::any(), 0).local.port);
  restart(default_config());
  std::vector<uint16_t> second;
  for (int i = 0; i < 5; ++i) second.push_back(bound_socket(Ipv4Addr::any(), 0).local.port);
  EXPECT_EQ(first, second);
}

// ---- ICMP errors we receive ---------------------------------------------------------------

TEST_F(StackTest, PortUnreachableFailsTheConnectedSocketOnly) {
  resolve();
  udp::UdpSocket& connected = socket();
  ASSERT_EQ(stack_->udp().connect(connected, {kPeerIp, 6000}), 0);
  ASSERT_TRUE(send(connected, text("knock"), std::nullopt));
  ParsedFrame out = expect_sent();
  ASSERT_TRUE(out.udp);
  udp::UdpSocket& unconnected = bound_socket(Ipv4Addr::any(), 5001);
  ASSERT_TRUE(send(unconnected, text("knock"), udp::Endpoint{kPeerIp, 6000}));
  ParsedFrame out2 = expect_sent();

  auto unreachable = [&](const ParsedFrame& about, uint8_t code) {
    return test::ipv4_packet(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp),
                             test::icmp_message(3, code, 0, about.ip_packet));
  };
  deliver_ip(unreachable(out2, 3));
  EXPECT_EQ(unconnected.pending_error, 0) << "Linux reports to connected sockets only (no IP_RECVERR)";
  EXPECT_EQ(connected.pending_error, 0);
  deliver_ip(unreachable(out, 1));  // host unreachable: a soft error
  EXPECT_EQ(connected.pending_error, 0);
  deliver_ip(unreachable(out, 3));
  EXPECT_EQ(connected.pending_error, ECONNREFUSED);
  EXPECT_TRUE(connected.poll_events() & kPollErr);
  EXPECT_EQ(stats().icmp.rx_dest_unreachable, 3u);
  EXPECT_EQ(stats().icmp.errors_delivered, 1u);
  expect_nothing_sent();  // no error about an error

  // The next send reports it (and clears it), the one after goes out.
  auto r = send(connected, text("again"), std::nullopt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), ECONNREFUSED);
  EXPECT_EQ(connected.pending_error, 0);
  EXPECT_FALSE(connected.poll_events() & kPollErr);
  ASSERT_TRUE(send(connected, text("again"), std::nullopt));
  EXPECT_TRUE(expect_sent().udp);
}

TEST_F(StackTest, PortUnreachableMustMatchTheQuotedPorts) {
  resolve();
  udp::UdpSocket& connected = socket();
  ASSERT_EQ(stack_->udp().connect(connected, {kPeerIp, 6000}), 0);
  // Claims to be about a datagram to port 6001: not this socket's.
  Bytes quoted = udp_in(kOurIp, connected.local.port, kPeerIp, 6001, text("x"));
  deliver_ip(test::ipv4_packet(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp), test::icmp_message(3, 3, 0, quoted)));
  EXPECT_EQ(connected.pending_error, 0);
  // A quote too short to hold the UDP ports is ignored.
  quoted = udp_in(kOurIp, connected.local.port, kPeerIp, 6000, text("x"));
  quoted.resize(24);
  deliver_ip(test::ipv4_packet(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp), test::icmp_message(3, 3, 0, quoted)));
  EXPECT_EQ(connected.pending_error, 0);
  quoted.resize(28);
  deliver_ip(test::ipv4_packet(test::ip_header(kPeerIp, kOurIp, ip::Protocol::kIcmp), test::icmp_message(3, 3, 0, quoted)));
  EXPECT_EQ(connected.pending_error, ECONNREFUSED);
}

// ---- loopback -----------------------------------------------------------------------------

TEST_F(StackTest, LoopbackDeliversOnTheNextPollWithoutTheDevice) {
  udp::UdpSocket& server = bound_socket(Ipv4Addr::any(), 7000);
  udp::UdpSocket& client = socket();
  ASSERT_TRUE(send(client, text("to myself"), udp::Endpoint{kLoopback, 7000}));
  EXPECT_TRUE(server.rx_queue.empty()) << "not before the next poll";
  EXPECT_EQ(stack_->pending_loopback(), 1u);
  EXPECT_EQ(stack_->next_wakeup(), now()) << "the stack wants to run at once";
  poll();
  expect_received(server, text("to myself"), {kLoopback, client.local.port});
  ASSERT_TRUE(send(client, text("by address"), udp::Endpoint{kOurIp, 7000}));
  poll();
  expect_received(server, text("by address"), {kOurIp, client.local.port});
  expect_nothing_sent();
  EXPECT_EQ(port_.rx_pending(), 0u);
  EXPECT_EQ(stats().ipv4.loopback_packets, 2u);
  EXPECT_EQ(stack_->arp_entries(), 0u);
}

TEST_F(StackTest, LoopbackLargeDatagramAndReply) {
  udp::UdpSocket& server = bound_socket(kLoopback, 7000);
  udp::UdpSocket& client = socket();
  const Bytes big = test::pattern(20000, 3);
  ASSERT_TRUE(send(client, big, udp::Endpoint{kLoopback, 7000}));
  poll();
  ASSERT_EQ(server.rx_queue.size(), 1u);
  const udp::Endpoint from = server.rx_queue.front().from;
  expect_received(server, big, {kLoopback, client.local.port});
  ASSERT_TRUE(send(server, text("reply"), from));
  poll();
  expect_received(client, text("reply"), {kLoopback, 7000});
  expect_nothing_sent();
}

TEST_F(StackTest, BoundAddressIsTheSourceOverLoopback) {
  // Linux: the address a socket is bound to is its source, whichever way the datagram goes, so
  // that replies find it.
  udp::UdpSocket& server = bound_socket(Ipv4Addr::any(), 7000);
  udp::UdpSocket& on_our_ip = bound_socket(kOurIp, 5000);
  ASSERT_TRUE(send(on_our_ip, text("a"), udp::Endpoint{kLoopback, 7000}));
  poll();
  expect_received(server, text("a"), {kOurIp, 5000});
  ASSERT_TRUE(send(server, text("reply a"), udp::Endpoint{kOurIp, 5000}));
  poll();
  expect_received(on_our_ip, text("reply a"), {kOurIp, 7000});

  udp::UdpSocket& on_loopback = bound_socket(kLoopback, 5001);
  ASSERT_TRUE(send(on_loopback, text("b"), udp::Endpoint{kOurIp, 7000}));
  poll();
  expect_received(server, text("b"), {kLoopback, 5001});
  ASSERT_TRUE(send(server, text("reply b"), udp::Endpoint{kLoopback, 5001}));
  poll();
  expect_received(on_loopback, text("reply b"), {kLoopback, 7000});
  expect_nothing_sent();
}

TEST_F(StackTest, LoopbackSourceNeverLeavesTheHost) {
  // RFC 1122 §3.2.1.3: 127/8 must not appear outside a host. Linux: EINVAL.
  resolve();
  udp::UdpSocket& s = bound_socket(kLoopback, 5000);
  auto r = send(s, text("leak?"), udp::Endpoint{kPeerIp, 6000});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), EINVAL);
  EXPECT_EQ(stack_->udp().connect(s, {kPeerIp, 6000}), EINVAL);
  EXPECT_FALSE(s.connected());
  expect_nothing_sent();
}

TEST_F(StackTest, LoopbackToClosedPortRefusesTheConnectedSocket) {
  udp::UdpSocket& client = socket();
  ASSERT_EQ(stack_->udp().connect(client, {kLoopback, 7001}), 0);
  ASSERT_TRUE(send(client, text("anyone?"), std::nullopt));
  EXPECT_EQ(client.pending_error, 0);
  // What the API does right after a send (Linux delivers loopback within the sending call): the
  // datagram and the ICMP error it causes are both handled before it returns.
  stack_->drain_loopback(now());
  EXPECT_EQ(client.pending_error, ECONNREFUSED);
  EXPECT_EQ(stack_->pending_loopback(), 0u);
  expect_nothing_sent();
  // And from poll(), in one turn.
  client.pending_error = 0;
  ASSERT_TRUE(send(client, text("anyone?"), std::nullopt));
  poll();
  EXPECT_EQ(client.pending_error, ECONNREFUSED);
}

}  // namespace
}  // namespace ustack

namespace ustack {
namespace {

TEST_F(StackTest, BroadcastDatagramReachesEveryMatchingSocket) {
  resolve();
  udp::UdpSocket& a = bound_socket(Ipv4Addr::any(), 6000, /*reuse=*/true);
  udp::UdpSocket& b = bound_socket(Ipv4Addr::any(), 6000, /*reuse=*/true);
  udp::UdpSocket& other_port = bound_socket(Ipv4Addr::any(), 6001);
  deliver_ip(udp_in(kPeerIp, 40000, kSubnetBroadcast, 6000, text("all of you")), MacAddr::broadcast());
  expect_received(a, text("all of you"), {kPeerIp, 40000});
  expect_received(b, text("all of you"), {kPeerIp, 40000});
  EXPECT_TRUE(other_port.rx_queue.empty());
  // Unicast still goes to one socket only.
  deliver_ip(udp_in(kPeerIp, 40000, kOurIp, 6000, text("just one")));
  EXPECT_EQ(a.rx_queue.size() + b.rx_queue.size(), 1u);
}

TEST_F(StackTest, UnspecifiedSourceIsOnlyForBroadcasts) {
  resolve();
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 67);
  deliver_ip(ping(1, 1, text("x"), Ipv4Addr::any(), kOurIp));
  deliver_ip(udp_in(Ipv4Addr::any(), 68, kOurIp, 67, text("unicast from nowhere")));
  EXPECT_EQ(stats().ipv4.rx_bad_source, 2u);
  expect_nothing_sent();
  EXPECT_TRUE(s.rx_queue.empty());
  // A host still learning its address (DHCP) sends from 0.0.0.0 to the broadcast address.
  deliver_ip(udp_in(Ipv4Addr::any(), 68, Ipv4Addr::broadcast(), 67, text("discover")), MacAddr::broadcast());
  expect_received(s, text("discover"), {Ipv4Addr::any(), 68});
}

TEST_F(StackTest, SendToUnspecifiedAddressArrivesOverLoopbackIntact) {
  udp::UdpSocket& server = bound_socket(Ipv4Addr::any(), 7000);
  udp::UdpSocket& client = socket();
  ASSERT_TRUE(send(client, text("to 0.0.0.0"), udp::Endpoint{Ipv4Addr::any(), 7000}));
  poll();
  EXPECT_EQ(stats().udp.rx_bad_checksum, 0u);
  expect_received(server, text("to 0.0.0.0"), {kLoopback, client.local.port});
}

TEST_F(StackTest, ReceiveBufferChargesTheWholeBufferNotThePayload) {
  // 1-byte datagrams each pin a whole buffer: SO_RCVBUF must count the buffers, or a flood of
  // tiny datagrams pins thousands of them.
  resolve();
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 6000);
  s.rcvbuf = 10 * (2048 + udp::kDatagramOverhead);
  const Bytes frame = test::eth_frame(kOurMac, kPeerMac, kEthIpv4, udp_in(kPeerIp, 40000, kOurIp, 6000, text("x")));
  for (int i = 0; i < 50; ++i) {
    Packet p = Packet::heap(2048, 0);  // as a device receives it: a whole buffer for a small frame
    std::copy(frame.begin(), frame.end(), p.append(frame.size()));
    port_.inject(std::move(p));
    poll();
  }
  EXPECT_LE(s.rx_queue.size(), 10u);
  EXPECT_GE(s.rx_queue.size(), 9u);
  EXPECT_EQ(stats().udp.rx_queue_full, 50u - s.rx_queue.size());
}

}  // namespace
}  // namespace ustack

namespace ustack {
namespace {

TEST_F(StackTest, ScarceDeviceBuffersAreCopiedOutOfSocketQueues) {
  resolve();
  udp::UdpSocket& s = bound_socket(Ipv4Addr::any(), 6000);
  test::CountingPool pool;
  const Bytes frame = test::eth_frame(kOurMac, kPeerMac, kEthIpv4, udp_in(kPeerIp, 40000, kOurIp, 6000, text("keep me")));
  auto inject_pooled = [&] {
    port_.inject(pool.packet(frame));
    poll();
  };
  inject_pooled();  // plenty of buffers: the queue holds the device buffer itself (no copy)
  EXPECT_EQ(pool.released, 0);
  port_.set_buffers_scarce(true);
  inject_pooled();  // scarce: the payload is copied and the device buffer goes back at once
  EXPECT_EQ(pool.released, 1);
  EXPECT_EQ(stats().udp.rx_copied_under_pressure, 1u);
  expect_received(s, text("keep me"), {kPeerIp, 40000});
  expect_received(s, text("keep me"), {kPeerIp, 40000});
  EXPECT_EQ(pool.released, 2);
}

}  // namespace
}  // namespace ustack
