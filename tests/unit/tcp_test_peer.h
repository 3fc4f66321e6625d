#pragma once
// A scripted TCP peer for unit tests of one ustack endpoint. The test plays the peer: it builds
// segments (SegmentRepr::emit_header inside IPv4 and Ethernet) and injects them into an
// unattached MemoryPort; it takes what the stack sent and checks only the fields it names.
// Time is a ManualClock and moves only through advance(); the seed is fixed, so every run sends
// the same bytes. Helpers report the caller's line (std::source_location).
//
//   auto c = establish_passive();                          // SYN, SYN-ACK, ACK; iss_ from the SYN-ACK
//   ASSERT_TRUE(c);
//   send(*c, "hello");
//   expect_sent({.flags = kAck, .seq = iss_ + 1, .payload = "hello"});
//   advance(c->rto() - 1us);  expect_nothing_sent();
//   advance(1us);             expect_sent({.seq = iss_ + 1, .payload = "hello"});
//   deliver({.seq = kPeerIss + 1, .ack = iss_ + 6});
//
// Designated initialisers must follow the members' order: flags, seq, ack, window, ...

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <source_location>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/checksum.h"
#include "base/waitable.h"
#include "dev/memory_wire.h"
#include "stack/stack.h"
#include "tcp/segment.h"
#include "tcp/tcp_connection.h"
#include "tcp/tcp_layer.h"
#include "tcp/tcp_listener.h"
#include "test_frames.h"

namespace ustack::tcp {
inline void PrintTo(SeqNum s, std::ostream* os) { *os << "SeqNum(0x" << std::hex << s.raw() << std::dec << ")"; }
inline void PrintTo(State s, std::ostream* os) { *os << state_name(s); }
}  // namespace ustack::tcp

namespace ustack::test {

using tcp::SeqNum;
using tcp::TcpOptions;

inline constexpr Ipv4Addr kOurIp(198, 18, 0, 2);
inline constexpr Ipv4Addr kPeerIp(198, 18, 0, 1);
inline constexpr MacAddr kOurMac({0x02, 0, 0, 0, 0, 0x02});  // dev::test_caps(2)
inline constexpr MacAddr kPeerMac({0x02, 0, 0, 0, 0, 0x01});
inline constexpr uint16_t kListenPort = 7777;
inline constexpr uint16_t kPeerPort = 40000;     // the peer's port when it connects to us
inline constexpr uint16_t kServerPort = 80;      // the peer's port when we connect to it
inline constexpr SeqNum kPeerIss{0x20000000};    // the peer's ISS unless a test picks another
inline constexpr uint16_t kMss = 1460;           // 1500 - 40

/// Segment payload as a test writes it: text or bytes.
struct Payload {
  Bytes bytes;
  Payload() = default;
  Payload(const char* s) : bytes(s, s + std::strlen(s)) {}
  Payload(std::string_view s) : bytes(s.begin(), s.end()) {}
  Payload(Bytes b) : bytes(std::move(b)) {}
  bool operator==(const Payload&) const = default;
};

/// Printable text, or hex when the bytes are not text.
inline std::string show(std::span<const uint8_t> b) {
  const bool printable = std::all_of(b.begin(), b.end(), [](uint8_t c) { return c >= 0x20 && c < 0x7f; });
  if (printable) return "\"" + std::string(b.begin(), b.end()) + "\"";
  if (b.size() > 32) return std::to_string(b.size()) + " bytes starting " + to_hex(b.first(32));
  return to_hex(b);
}

inline std::string flag_names(uint8_t f) {
  std::string s;
  if (f & tcp::kSyn) s += "S";
  if (f & tcp::kFin) s += "F";
  if (f & tcp::kRst) s += "R";
  if (f & tcp::kPsh) s += "P";
  if (f & tcp::kAck) s += "A";
  if (f & tcp::kUrg) s += "U";
  return s.empty() ? "." : s;
}

/// A segment the peer sends. Ports default to the fixture's current connection.
struct PeerSeg {
  uint8_t flags = tcp::kAck;
  SeqNum seq;
  SeqNum ack;
  uint16_t window = 65535;
  TcpOptions options;
  Payload payload;
  std::optional<Bytes> raw_options;  ///< instead of `options`: bytes as they go on the wire (4-byte multiple)
  uint16_t src_port = 0;             ///< 0: the peer's port
  uint16_t dst_port = 0;             ///< 0: ours
};

/// What the stack sent, as the peer reads it (checksums verified).
struct SentSegment {
  ip::Ipv4Repr ip;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  SeqNum seq;
  SeqNum ack;
  uint8_t flags = 0;
  uint16_t window = 0;
  TcpOptions options;
  Bytes payload;
  std::string describe() const {
    std::ostringstream os;
    os << src_port << ">" << dst_port << " [" << flag_names(flags) << "] seq=0x" << std::hex << seq.raw()
       << " ack=0x" << ack.raw() << std::dec << " win=" << window << " len=" << payload.size();
    return os.str();
  }
};

/// The fields a test cares about in a segment the stack sent; the rest is not looked at. `flags`
/// is compared exactly except for PSH, which is checked only when `flags` names it.
struct Expect {
  std::optional<uint8_t> flags;
  std::optional<SeqNum> seq;
  std::optional<SeqNum> ack;
  std::optional<uint16_t> window;
  std::optional<Payload> payload;
  std::optional<size_t> payload_len;
  std::optional<uint16_t> src_port;  ///< default: our port
  std::optional<uint16_t> dst_port;  ///< default: the peer's port
};

class TcpPeerTest : public ::testing::Test {
 protected:
  static StackConfig default_config() {
    StackConfig config;
    config.address = Ipv4Cidr{kOurIp, 24};
    config.seed = 42;
    config.gratuitous_arp = false;
    config.arp.entry_lifetime = 24h * 365;  // the peer stays resolved however long a test waits
    return config;
  }
  /// MSS 1460 and nothing else: no window scale, no timestamps, no SACK (a minimal peer).
  static TcpOptions mss_only(uint16_t mss = kMss) {
    TcpOptions o;
    o.mss = mss;
    return o;
  }
  /// What Linux offers in its SYN: MSS, SACK-permitted, timestamps, window scale 7.
  static TcpOptions linux_syn(uint32_t tsval) {
    TcpOptions o;
    o.mss = kMss;
    o.sack_permitted = true;
    o.timestamps = TcpOptions::Timestamps{tsval, 0};
    o.window_scale = 7;
    return o;
  }
  static TcpOptions ts(uint32_t tsval, uint32_t tsecr) {
    TcpOptions o;
    o.timestamps = TcpOptions::Timestamps{tsval, tsecr};
    return o;
  }

  void SetUp() override { start(default_config()); }
  void TearDown() override { stop(); }

  /// A fresh stack with `config`, its clock starting at `at`; the peer has resolved us by ARP
  /// (so our segments go out at once, never behind an ARP request).
  void start(const StackConfig& config, Instant at = Instant(), const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    stop();
    config_ = config;
    clock_.set(at);
    port_.take_sent();
    stack_ = std::make_unique<Stack>(config_, port_);
    stack_->start(now());
    port_.take_sent();
    eth::ArpRepr request{eth::ArpOp::kRequest, kPeerMac, kPeerIp, MacAddr(), kOurIp};
    port_.inject(eth_frame(MacAddr::broadcast(), kPeerMac, 0x0806, arp_payload(request)));
    poll();
    stack_->flush();
    auto replies = port_.take_sent();
    EXPECT_EQ(replies.size(), 1u) << "the ARP reply";
    our_port_ = kListenPort;
    peer_port_ = kPeerPort;
  }
  /// Tears the stack down before the sockets it points at (connections outlive it safely: the
  /// layer cancels their timers).
  void stop() {
    stack_.reset();
    conns_.clear();
    listener_.reset();
    listen_binding_.reset();
  }

  /// The clock start at which a passive open of the default 4-tuple (peer kPeerPort → us
  /// kListenPort) gets `iss` as our ISS: RFC 6528's ISN is a 4 µs clock plus a keyed hash, so
  /// one probe at time 0 gives the hash and the rest is arithmetic.
  Instant start_time_for_passive_iss(const StackConfig& config, SeqNum iss, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    start(config);
    listen();
    deliver({.flags = tcp::kSyn, .seq = kPeerIss, .options = mss_only()});
    const SentSegment syn_ack = expect_sent({.flags = tcp::kSyn | tcp::kAck}, loc);
    const uint32_t ticks = iss.raw() - syn_ack.seq.raw();
    return Instant::from_ns(int64_t{ticks} * 4000);
  }

  // ---- time ----
  Instant now() const { return clock_.now(); }
  void poll() { stack_->poll(now()); }
  void advance(Duration d) {
    clock_.advance(d);
    poll();
  }

  // ---- what the peer sends ----
  Bytes segment_bytes(const PeerSeg& s) const {
    tcp::SegmentRepr r;
    r.src_port = s.src_port ? s.src_port : peer_port_;
    r.dst_port = s.dst_port ? s.dst_port : our_port_;
    r.seq = s.seq;
    r.ack = s.ack;
    r.flags = s.flags;
    r.window = s.window;
    if (!s.raw_options) r.options = s.options;
    const size_t opt_len = s.raw_options ? s.raw_options->size() : r.options.len();
    Bytes seg(tcp::Segment::kMinHeaderLen + opt_len);
    seg.insert(seg.end(), s.payload.bytes.begin(), s.payload.bytes.end());
    r.emit_header(seg, kPeerIp, kOurIp);
    if (s.raw_options) {
      // emit_header wrote a 20-byte header; put the raw options after it and fix the data
      // offset and the checksum.
      std::copy(s.raw_options->begin(), s.raw_options->end(), seg.begin() + tcp::Segment::kMinHeaderLen);
      seg[12] = static_cast<uint8_t>(((tcp::Segment::kMinHeaderLen + opt_len) / 4) << 4);
      store_be16(seg.data() + 16, 0);
      const uint32_t sum = pseudo_header_sum(kPeerIp, kOurIp, 6, static_cast<uint16_t>(seg.size()));
      store_be16(seg.data() + 16, checksum_finish(checksum_add(sum, seg)));
    }
    return seg;
  }
  Bytes frame(const PeerSeg& s) const {
    return eth_frame(kOurMac, kPeerMac, 0x0800,
                     ipv4_packet(ip_header(kPeerIp, kOurIp, ip::Protocol::kTcp), segment_bytes(s)));
  }
  /// The peer's segment arrives and the stack runs.
  void deliver(const PeerSeg& s) {
    port_.inject(frame(s));
    poll();
  }

  // ---- what the stack sends ----
  std::vector<SentSegment> take_segments(const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    stack_->flush();
    std::vector<SentSegment> out;
    for (Packet& p : port_.take_sent()) {
      ParsedFrame f = parse_frame(p.bytes(), loc);
      if (!f.ip || f.ip->protocol != 6) {
        ADD_FAILURE() << "the stack sent a frame that is not TCP/IPv4, ethertype 0x" << std::hex << f.eth.ethertype;
        continue;
      }
      EXPECT_EQ(f.eth.dst, kPeerMac);
      EXPECT_EQ(f.ip->src, kOurIp);
      EXPECT_EQ(f.ip->dst, kPeerIp);
      EXPECT_TRUE(f.ip->dont_fragment) << "TCP segments go with DF (RFC 1191)";
      auto seg = tcp::SegmentRepr::parse(f.ip_payload, f.ip->src, f.ip->dst);
      if (!seg) {
        ADD_FAILURE() << "TCP segment does not parse (error " << static_cast<int>(seg.error())
                      << "): " << to_hex(f.ip_payload);
        continue;
      }
      SentSegment s;
      s.ip = *f.ip;
      s.src_port = seg->src_port;
      s.dst_port = seg->dst_port;
      s.seq = seg->seq;
      s.ack = seg->ack;
      s.flags = seg->flags;
      s.window = seg->window;
      s.options = seg->options;
      s.payload.assign(seg->payload.begin(), seg->payload.end());
      out.push_back(std::move(s));
    }
    return out;
  }
  /// `s` has the fields `want` names.
  void check(const SentSegment& s, const Expect& want, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    SCOPED_TRACE("segment " + s.describe());
    EXPECT_EQ(s.src_port, want.src_port.value_or(our_port_)) << "source port";
    EXPECT_EQ(s.dst_port, want.dst_port.value_or(peer_port_)) << "destination port";
    if (want.flags) {
      const uint8_t mask = (*want.flags & tcp::kPsh) ? 0xff : static_cast<uint8_t>(~tcp::kPsh);
      EXPECT_EQ(flag_names(s.flags & mask), flag_names(*want.flags & mask)) << "flags";
    }
    if (want.seq) {
      EXPECT_EQ(s.seq, *want.seq) << "seq";
    }
    if (want.ack) {
      EXPECT_TRUE(s.flags & tcp::kAck) << "an ack value is expected but ACK is off";
      EXPECT_EQ(s.ack, *want.ack) << "ack";
    }
    if (want.window) {
      EXPECT_EQ(s.window, *want.window) << "window";
    }
    if (want.payload) {
      EXPECT_EQ(show(s.payload), show(want.payload->bytes)) << "payload";
    }
    if (want.payload_len) {
      EXPECT_EQ(s.payload.size(), *want.payload_len) << "payload length";
    }
  }
  /// Exactly one segment was sent since the last look, with the fields `want` names.
  SentSegment expect_sent(const Expect& want = {}, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    auto segs = take_segments(loc);
    if (segs.size() != 1) {
      std::string all;
      for (const SentSegment& s : segs) all += "\n  " + s.describe();
      ADD_FAILURE() << "expected one segment, the stack sent " << segs.size() << all;
      if (segs.empty()) return SentSegment{};
    }
    check(segs.front(), want, loc);
    return segs.front();
  }
  void expect_nothing_sent(const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    auto segs = take_segments(loc);
    std::string all;
    for (const SentSegment& s : segs) all += "\n  " + s.describe();
    EXPECT_TRUE(segs.empty()) << "the stack sent " << segs.size() << " segment(s):" << all;
  }

  // ---- our side ----
  void listen(int backlog = 128, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    listen_binding_ = std::make_unique<tcp::PortBinding>();
    ASSERT_EQ(stack_->tcp().bind(*listen_binding_, Ipv4Addr(), kListenPort), 0);
    listener_ = std::make_unique<tcp::TcpListener>(*listen_binding_, backlog, listen_options_);
    ASSERT_EQ(stack_->tcp().listen(*listener_), 0);
  }
  tcp::SocketOptions default_options() const { return tcp::SocketOptions::defaults(config_.tcp); }
  tcp::FourTuple tuple(uint16_t peer_port) const { return {kOurIp, our_port_, kPeerIp, peer_port}; }
  tcp::FourTuple tuple() const { return tuple(peer_port_); }
  /// The connection the layer holds for the current 4-tuple, or null.
  tcp::TcpConnection* find() const { return stack_->tcp().find(tuple()); }
  /// In TIME-WAIT: a TCB its user holds, or the compact entry of one its user closed.
  bool in_time_wait(uint16_t peer_port) const { return stack_->tcp().in_time_wait(tuple(peer_port)); }
  bool in_time_wait() const { return in_time_wait(peer_port_); }
  const TcpStats& stats() const { return stack_->stats().tcp; }

  /// A passive open from the peer's port `peer_port`: SYN, our SYN-ACK (iss_ is read from it),
  /// `rtt` later the ACK; returns the accepted connection (null, with a failure, otherwise).
  std::shared_ptr<tcp::TcpConnection> establish_passive(const TcpOptions& syn_options = mss_only(),
                                                        Duration rtt = 0ns, uint16_t peer_port = kPeerPort,
                                                        uint16_t ack_window = 65535,
                                                        const TcpOptions& ack_options = {},
                                                        const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    if (!listener_) listen(128, loc);
    our_port_ = kListenPort;
    peer_port_ = peer_port;
    deliver({.flags = tcp::kSyn, .seq = kPeerIss, .options = syn_options});
    const SentSegment syn_ack = expect_sent({.flags = tcp::kSyn | tcp::kAck, .ack = kPeerIss + 1}, loc);
    iss_ = syn_ack.seq;
    our_tsval_ = syn_ack.options.timestamps ? syn_ack.options.timestamps->value : 0;
    if (rtt > 0ns) advance(rtt);
    deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .window = ack_window, .options = ack_options});
    expect_nothing_sent(loc);
    auto c = listener_->accept();
    EXPECT_TRUE(c) << "nothing to accept";
    if (c) {
      EXPECT_EQ(c->state(), tcp::State::kEstablished);
      conns_.push_back(c);
    }
    return c;
  }

  /// connect() to the peer: returns the connection in SYN-SENT; iss_ and our_port_ come from the SYN.
  std::shared_ptr<tcp::TcpConnection> connect(const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    peer_port_ = kServerPort;
    auto r = stack_->tcp().connect(now(), nullptr, kPeerIp, kServerPort, default_options());
    stack_->flush();
    if (!r) {
      ADD_FAILURE() << "connect failed: errno " << r.error();
      return nullptr;
    }
    std::shared_ptr<tcp::TcpConnection> c = *r;
    auto segs = take_segments(loc);
    if (segs.size() != 1) {
      ADD_FAILURE() << "expected our SYN, got " << segs.size() << " segments";
      return nullptr;
    }
    our_port_ = segs[0].src_port;
    iss_ = segs[0].seq;
    our_tsval_ = segs[0].options.timestamps ? segs[0].options.timestamps->value : 0;
    check(segs[0], {.flags = tcp::kSyn, .dst_port = kServerPort}, loc);
    conns_.push_back(c);
    return c;
  }
  /// connect() and the peer's SYN-ACK; our ACK is checked.
  std::shared_ptr<tcp::TcpConnection> establish_active(const TcpOptions& syn_ack_options = mss_only(),
                                                       uint16_t window = 65535, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    auto c = connect(loc);
    if (!c) return nullptr;
    deliver({.flags = tcp::kSyn | tcp::kAck, .seq = kPeerIss, .ack = iss_ + 1, .window = window,
             .options = syn_ack_options});
    expect_sent({.flags = tcp::kAck, .seq = iss_ + 1, .ack = kPeerIss + 1}, loc);
    EXPECT_EQ(c->state(), tcp::State::kEstablished);
    return c;
  }

  /// The user writes `data`; all of it must be taken.
  void send(tcp::TcpConnection& c, const Payload& data, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    auto r = c.send(now(), data.bytes);
    stack_->flush();
    ASSERT_TRUE(r.ok()) << "send failed: errno " << r.error();
    EXPECT_EQ(*r, data.bytes.size()) << "send took only part";
  }
  /// The user reads up to `max` bytes (EAGAIN and errors as a failure).
  Bytes read(tcp::TcpConnection& c, size_t max = 1 << 20, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    Bytes out(max);
    auto r = c.receive(now(), out, false);
    stack_->flush();
    if (!r.ok()) {
      ADD_FAILURE() << "receive failed: errno " << r.error();
      return {};
    }
    out.resize(*r);
    return out;
  }

  ManualClock clock_;
  dev::MemoryPort port_{clock_, dev::test_caps(2), "tcp under test"};
  StackConfig config_;
  tcp::SocketOptions listen_options_ = tcp::SocketOptions::defaults(tcp::TcpConfig{});
  std::unique_ptr<tcp::PortBinding> listen_binding_;
  std::unique_ptr<tcp::TcpListener> listener_;
  std::vector<std::shared_ptr<tcp::TcpConnection>> conns_;  // every connection the test made
  std::unique_ptr<Stack> stack_;
  uint16_t our_port_ = kListenPort;
  uint16_t peer_port_ = kPeerPort;
  SeqNum iss_;              ///< our ISS, read from our SYN or SYN-ACK
  uint32_t our_tsval_ = 0;  ///< our TSval in that SYN (when timestamps were sent)
};

}  // namespace ustack::test
