// One ustack TCP endpoint against a scripted peer (tcp_test_peer.h): the state machine of RFC
// 9293, the timers of RFC 6298, congestion control (RFC 5681/6582), RFC 7323, RFC 5961, the ACK
// policy, Nagle, windows, the listener's queues and TIME-WAIT. Every instant is exact: a timer
// that fires 1 µs early or late fails its test.

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <set>
#include <vector>

#include "tcp/receive_queue.h"
#include "tcp/send_queue.h"
#include "tcp_test_peer.h"

namespace ustack::test {
namespace {

using tcp::kAck;
using tcp::kFin;
using tcp::kPsh;
using tcp::kRst;
using tcp::kSyn;
using tcp::State;
using tcp::TcpConnection;

constexpr Duration k1us = 1us;

class TcpHandshake : public TcpPeerTest {};
class TcpClose : public TcpPeerTest {};
class TcpReset : public TcpPeerTest {};
class TcpRetransmit : public TcpPeerTest {};
class TcpRecovery : public TcpPeerTest {
 protected:
  void fast_retransmit_on_third_dup_ack(TcpConnection& c, const Loc& loc = Loc::current());
};
class TcpCongestion : public TcpPeerTest {};
class TcpZeroWindow : public TcpPeerTest {};
class TcpDelayedAck : public TcpPeerTest {};  // Linux's quick-ack mode on (the default)
class TcpNagle : public TcpPeerTest {};
class TcpWrap : public TcpPeerTest {};
class TcpBlindAttack : public TcpPeerTest {};
class TcpOptionsTest : public TcpPeerTest {};
class TcpReceiveWindow : public TcpPeerTest {};
class TcpListen : public TcpPeerTest {};
class TcpTimeWait : public TcpPeerTest {};

// ============================================================================================
// Opening: RFC 9293 §3.5, figures 6-8.
// ============================================================================================

TEST_F(TcpHandshake, PassiveOpenGoesListenSynReceivedEstablished) {
  listen();
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only()});
  const SentSegment syn_ack = expect_sent({.flags = kSyn | kAck, .ack = kPeerIss + 1, .window = 65535});
  iss_ = syn_ack.seq;
  EXPECT_EQ(syn_ack.options.mss, std::optional<uint16_t>(kMss));
  EXPECT_EQ(listener_->syn_queue_size(), 1u);
  ASSERT_NE(find(), nullptr);
  EXPECT_EQ(find()->state(), State::kSynReceived);
  EXPECT_EQ(listener_->accept(), nullptr) << "nothing to accept before the handshake completes";

  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1});
  expect_nothing_sent();
  EXPECT_EQ(listener_->syn_queue_size(), 0u);
  EXPECT_EQ(listener_->accept_queue_size(), 1u);
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state(), State::kEstablished);
  EXPECT_EQ(c->snd_una(), iss_ + 1);
  EXPECT_EQ(c->rcv_nxt(), kPeerIss + 1);
  EXPECT_EQ(stats().passive_opens, 1u);
  EXPECT_EQ(stats().established, 1u);

  // It carries data both ways.
  deliver({.flags = kAck | kPsh, .seq = kPeerIss + 1, .ack = iss_ + 1, .payload = "ping"});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 5});
  EXPECT_EQ(show(read(*c)), "\"ping\"");
  send(*c, "pong");
  expect_sent({.flags = kAck | kPsh, .seq = iss_ + 1, .ack = kPeerIss + 5, .payload = "pong"});
}

TEST_F(TcpHandshake, ActiveOpenGoesSynSentEstablished) {
  auto c = connect();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state(), State::kSynSent);
  EXPECT_EQ(stats().active_opens, 1u);
  EXPECT_TRUE(our_port_ >= 32768 && our_port_ <= 60999) << our_port_;
  EXPECT_EQ(c->poll_events() & kPollOut, 0u) << "not writable while connecting";

  deliver({.flags = kSyn | kAck, .seq = kPeerIss, .ack = iss_ + 1, .options = mss_only()});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1, .window = 65535});
  EXPECT_EQ(c->state(), State::kEstablished);
  EXPECT_NE(c->poll_events() & kPollOut, 0u);
  EXPECT_EQ(c->irs(), kPeerIss);
  send(*c, "GET /");
  expect_sent({.flags = kAck | kPsh, .seq = iss_ + 1, .ack = kPeerIss + 1, .payload = "GET /"});
}

TEST_F(TcpHandshake, OurSynOffersEveryOption) {
  auto c = connect();
  ASSERT_TRUE(c);
  // connect() took the SYN; make another by letting it be retransmitted, and read it.
  advance(1s);
  const SentSegment syn = expect_sent({.flags = kSyn, .seq = iss_, .window = 65535});
  EXPECT_EQ(syn.options.mss, std::optional<uint16_t>(kMss));
  // Linux's rule (tcp_select_initial_window): ilog2(max_buffer = 6 MiB) - 15 = 7.
  EXPECT_EQ(syn.options.window_scale, std::optional<uint8_t>(7));
  EXPECT_TRUE(syn.options.sack_permitted);
  ASSERT_TRUE(syn.options.timestamps);
  EXPECT_EQ(syn.options.timestamps->echo_reply, 0u);
}

// RFC 9293 §3.5 figure 8: both sides send a SYN; each answers the other's with a SYN-ACK.
TEST_F(TcpHandshake, SimultaneousOpenGoesSynSentSynReceivedEstablished) {
  auto c = connect();
  ASSERT_TRUE(c);
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only()});  // line 3: the peer's SYN
  expect_sent({.flags = kSyn | kAck, .seq = iss_, .ack = kPeerIss + 1});  // line 5
  EXPECT_EQ(c->state(), State::kSynReceived);
  // Line 6: the peer's SYN-ACK (its SYN again, now with the ACK of ours).
  deliver({.flags = kSyn | kAck, .seq = kPeerIss, .ack = iss_ + 1, .options = mss_only()});
  EXPECT_EQ(c->state(), State::kEstablished);
  expect_nothing_sent();
  EXPECT_EQ(stats().challenge_acks, 0u);
  send(*c, "data");
  expect_sent({.flags = kAck | kPsh, .seq = iss_ + 1, .ack = kPeerIss + 1, .payload = "data"});
}

TEST_F(TcpHandshake, SimultaneousOpenCompletedByAPlainAck) {
  auto c = connect();
  ASSERT_TRUE(c);
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only()});
  expect_sent({.flags = kSyn | kAck, .seq = iss_, .ack = kPeerIss + 1});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1});
  EXPECT_EQ(c->state(), State::kEstablished);
  expect_nothing_sent();
}

// RFC 6298 (2.1) and (5.5): the SYN goes again after 1 s, then 2 s, 4 s ... later; with
// syn_retries = 6 (Linux's default) the last goes at 63 s and the attempt fails at 127 s.
TEST_F(TcpHandshake, SynRetransmittedAt1s3s7sThenEtimedout) {
  auto c = connect();
  ASSERT_TRUE(c);
  const Instant t0 = now();
  Duration at = 0s;
  for (Duration wait : {1s, 2s, 4s, 8s, 16s, 32s}) {
    at += wait;
    advance(t0 + at - k1us - now());
    expect_nothing_sent();
    advance(k1us);
    expect_sent({.flags = kSyn, .seq = iss_});
    EXPECT_EQ(c->state(), State::kSynSent);
  }
  EXPECT_EQ(at, 63s);
  advance(64s - k1us);
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kSynSent);
  advance(k1us);
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(c->take_error(), ETIMEDOUT);
  EXPECT_EQ(stats().syn_retransmits, 6u);
  EXPECT_EQ(stack_->tcp().find(tuple()), nullptr);
}

// RFC 6298 (5.7): when the handshake gave no RTT sample (the SYN was retransmitted), the RTO is
// 3 s once data flows (Linux: TCP_TIMEOUT_FALLBACK).
TEST_F(TcpHandshake, RtoIsThreeSecondsAfterARetransmittedSyn) {
  auto c = connect();
  ASSERT_TRUE(c);
  advance(1s);
  expect_sent({.flags = kSyn, .seq = iss_});
  deliver({.flags = kSyn | kAck, .seq = kPeerIss, .ack = iss_ + 1, .options = mss_only()});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1});
  EXPECT_EQ(c->rto(), 3s);
  send(*c, "x");
  expect_sent({.seq = iss_ + 1, .payload = "x"});
  advance(3s - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.seq = iss_ + 1, .payload = "x"});
}

TEST_F(TcpHandshake, SynAckRetransmittedWhenTheAckIsLost) {
  listen();
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only()});
  iss_ = expect_sent({.flags = kSyn | kAck, .ack = kPeerIss + 1}).seq;
  // The peer's ACK is lost: the SYN-ACK goes again after 1 s, then 2 s later.
  advance(1s - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.flags = kSyn | kAck, .seq = iss_, .ack = kPeerIss + 1});
  advance(2s - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.flags = kSyn | kAck, .seq = iss_, .ack = kPeerIss + 1});
  // The peer's SYN again (it never saw ours): answered at once.
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only()});
  expect_sent({.flags = kSyn | kAck, .seq = iss_, .ack = kPeerIss + 1});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1});
  expect_nothing_sent();
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state(), State::kEstablished);
  EXPECT_EQ(c->rto(), 3s) << "RFC 6298 (5.7): no RTT sample from the handshake";
  EXPECT_EQ(stats().syn_retransmits, 2u);
}

TEST_F(TcpHandshake, HalfOpenConnectionGivesUpAfterSynackRetries) {
  StackConfig config = default_config();
  config.tcp.synack_retries = 2;
  start(config);
  listen();
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only()});
  iss_ = expect_sent({.flags = kSyn | kAck}).seq;
  advance(1s);
  expect_sent({.flags = kSyn | kAck, .seq = iss_});
  advance(2s);
  expect_sent({.flags = kSyn | kAck, .seq = iss_});
  advance(4s - k1us);
  expect_nothing_sent();
  ASSERT_NE(find(), nullptr);
  advance(k1us);
  expect_nothing_sent();
  EXPECT_EQ(find(), nullptr);
  EXPECT_EQ(listener_->syn_queue_size(), 0u);
}

TEST_F(TcpHandshake, RstAckInSynSentRefusesTheConnection) {
  auto c = connect();
  ASSERT_TRUE(c);
  // RFC 9293 §3.10.7.3: a RST whose ACK is not for our SYN is ignored ...
  deliver({.flags = kRst | kAck, .seq = SeqNum(0), .ack = iss_ + 7});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kSynSent);
  // ... so is a RST without an ACK ...
  deliver({.flags = kRst, .seq = kPeerIss});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kSynSent);
  // ... an ACK that is not for our SYN gets a RST from its ACK ...
  deliver({.flags = kAck, .seq = kPeerIss, .ack = iss_ + 100});
  expect_sent({.flags = kRst, .seq = iss_ + 100});
  EXPECT_EQ(c->state(), State::kSynSent);
  // ... and RST|ACK acknowledging the SYN refuses the connection.
  deliver({.flags = kRst | kAck, .seq = SeqNum(0), .ack = iss_ + 1});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(c->take_error(), ECONNREFUSED);
  EXPECT_EQ(find(), nullptr);
  advance(10s);
  expect_nothing_sent();  // no SYN retransmission after the refusal
}

// ============================================================================================
// Closing: RFC 9293 §3.6, figures 12-13.
// ============================================================================================

TEST_F(TcpClose, ActiveCloseGoesFinWait1FinWait2TimeWaitThenClosedAfterExactly2Msl) {
  StackConfig config = default_config();
  config.tcp.time_wait = 10s;
  start(config);
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kFinWait1);

  deliver({.seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kFinWait2);

  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_TRUE(in_time_wait());
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 1u);
  // Its user closed it: a compact entry waits, the TCB is gone.
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(find(), nullptr);
  EXPECT_EQ(stack_->tcp().connections(), 1u) << "the entry holds the 4-tuple";

  advance(10s - k1us);
  expect_nothing_sent();
  EXPECT_TRUE(in_time_wait()) << "the 4-tuple is held for 2 MSL";
  advance(k1us);
  expect_nothing_sent();
  EXPECT_FALSE(in_time_wait());
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 0u);
  EXPECT_EQ(stack_->tcp().connections(), 0u);
  // Nobody owns the 4-tuple now: a late ACK gets a RST.
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 2});
  expect_sent({.flags = kRst, .seq = iss_ + 2});
}

TEST_F(TcpClose, TimeWaitAcksARetransmittedFinAndRestarts2Msl) {
  StackConfig config = default_config();
  config.tcp.time_wait = 10s;
  start(config);
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  ASSERT_TRUE(in_time_wait());
  advance(4s);
  // Our last ACK was lost; the peer's FIN comes again.
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  advance(10s - k1us);
  EXPECT_TRUE(in_time_wait()) << "RFC 9293 §3.10.7.4: 2 MSL restarts with the FIN";
  advance(k1us);
  EXPECT_FALSE(in_time_wait());
  expect_nothing_sent();
}

// RFC 9293 figure 13: both sides close at once.
TEST_F(TcpClose, SimultaneousCloseGoesFinWait1ClosingTimeWait) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  // The peer's FIN crosses ours: it does not acknowledge our FIN.
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 1});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_EQ(c->state(), State::kClosing);
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 2});
  expect_nothing_sent();
  EXPECT_TRUE(in_time_wait());
}

TEST_F(TcpClose, FinWait1WithFinAndAckTogetherGoesStraightToTimeWait) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_TRUE(in_time_wait());
}

TEST_F(TcpClose, PassiveCloseGoesCloseWaitLastAckClosed) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 1});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 2});  // a FIN is ACKed at once
  EXPECT_EQ(c->state(), State::kCloseWait);
  EXPECT_NE(c->poll_events() & kPollRdHup, 0u);
  EXPECT_EQ(read(*c).size(), 0u) << "end of stream";
  // We may still send.
  send(*c, "bye");
  expect_sent({.flags = kAck | kPsh, .seq = iss_ + 1, .ack = kPeerIss + 2, .payload = "bye"});
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 4});
  expect_nothing_sent();

  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 4, .ack = kPeerIss + 2});
  EXPECT_EQ(c->state(), State::kLastAck);
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 5});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(find(), nullptr);
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 0u) << "the passive closer has no TIME-WAIT";
}

TEST_F(TcpClose, LastAckRetransmitsTheFin) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 1});
  expect_sent({.flags = kAck, .ack = kPeerIss + 2});
  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
  advance(c->rto() - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1, .ack = kPeerIss + 2});
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 2});
  EXPECT_EQ(c->state(), State::kClosed);
}

TEST_F(TcpClose, OrphanedFinWait2TimesOutAfterFinWait2Timeout) {
  StackConfig config = default_config();
  config.tcp.fin_wait2_timeout = 30s;
  start(config);
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 2});
  ASSERT_EQ(c->state(), State::kFinWait2);
  advance(30s - k1us);
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kFinWait2);
  advance(k1us);
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(find(), nullptr);
}

TEST_F(TcpClose, HalfCloseSendsFinAndKeepsReceiving) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->shutdown_write(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kFinWait1);
  auto r = c->send(now(), text("more"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), EPIPE);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 2});
  EXPECT_EQ(c->state(), State::kFinWait2);
  // The peer still talks; we still listen.
  deliver({.flags = kAck | kPsh, .seq = kPeerIss + 1, .ack = iss_ + 2, .payload = "still here"});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 11});
  EXPECT_EQ(show(read(*c)), "\"still here\"");
  // Not orphaned: FIN-WAIT-2 waits as long as the peer likes.
  advance(600s);
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kFinWait2);
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 11, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 12});
  EXPECT_EQ(c->state(), State::kTimeWait);
  EXPECT_EQ(read(*c).size(), 0u);
}

TEST_F(TcpClose, CloseWithUnreadDataSendsRst) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.flags = kAck | kPsh, .seq = kPeerIss + 1, .ack = iss_ + 1, .payload = "unread"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 7});
  c->close(now());
  // Linux's tcp_close(), RFC 2525 §2.17: the peer learns its data was lost.
  expect_sent({.flags = kRst | kAck, .seq = iss_ + 1, .ack = kPeerIss + 7});
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(stats().aborts_on_close, 1u);
  EXPECT_EQ(find(), nullptr);
}

TEST_F(TcpClose, LingerZeroSendsRstInsteadOfFin) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->options().linger = true;
  c->options().linger_seconds = 0;
  c->close(now());
  expect_sent({.flags = kRst | kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 0u);
}

TEST_F(TcpClose, AbortSendsRstAndIgnoresWhatFollows) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->abort(now(), 0);
  expect_sent({.flags = kRst | kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kClosed);
  // The peer's data for the dead connection gets a RST from the layer.
  deliver({.flags = kAck, .seq = kPeerIss + 1, .ack = iss_ + 1, .payload = "late"});
  expect_sent({.flags = kRst, .seq = iss_ + 1});
}

// ============================================================================================
// RSTs for segments nobody owns (RFC 9293 §3.10.7.1) and in LISTEN (§3.10.7.2).
// ============================================================================================

TEST_F(TcpReset, SynToClosedPortGetsRstAckWithSeqZero) {
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only(), .dst_port = 9});
  expect_sent({.flags = kRst | kAck, .seq = SeqNum(0), .ack = kPeerIss + 1, .src_port = 9});
  EXPECT_EQ(stats().rx_no_socket, 1u);
  EXPECT_EQ(stats().tx_resets, 1u);
  // The ACK covers everything the segment occupied: SYN, data and FIN.
  deliver({.flags = kSyn | kFin, .seq = kPeerIss, .payload = "abc", .dst_port = 9});
  expect_sent({.flags = kRst | kAck, .seq = SeqNum(0), .ack = kPeerIss + 5, .src_port = 9});
}

TEST_F(TcpReset, AckToClosedPortGetsRstWithTheAckAsSeq) {
  deliver({.flags = kAck, .seq = kPeerIss, .ack = SeqNum(0xdeadbeef), .dst_port = 9});
  const SentSegment rst = expect_sent({.flags = kRst, .seq = SeqNum(0xdeadbeef), .src_port = 9});
  EXPECT_EQ(rst.window, 0);
  deliver({.flags = kAck | kPsh, .seq = kPeerIss, .ack = SeqNum(77), .payload = "data", .dst_port = 9});
  expect_sent({.flags = kRst, .seq = SeqNum(77), .src_port = 9});
}

TEST_F(TcpReset, NeverARstForARst) {
  deliver({.flags = kRst, .seq = kPeerIss, .dst_port = 9});
  deliver({.flags = kRst | kAck, .seq = kPeerIss, .ack = SeqNum(5), .dst_port = 9});
  expect_nothing_sent();
  listen();
  deliver({.flags = kRst, .seq = kPeerIss, .dst_port = kListenPort});
  deliver({.flags = kRst | kAck, .seq = kPeerIss, .ack = SeqNum(5), .dst_port = kListenPort});
  expect_nothing_sent();
  EXPECT_EQ(stats().tx_resets, 0u);
}

TEST_F(TcpReset, AckToAListenerGetsRst) {
  listen();
  deliver({.flags = kAck, .seq = kPeerIss, .ack = SeqNum(1234)});
  expect_sent({.flags = kRst, .seq = SeqNum(1234)});
  EXPECT_EQ(listener_->syn_queue_size(), 0u);
  // A segment with neither SYN, ACK nor RST is dropped silently.
  deliver({.flags = kFin, .seq = kPeerIss});
  expect_nothing_sent();
}

// ============================================================================================
// Retransmission timer (RFC 6298).
// ============================================================================================

// The handshake's RTT sample sets the RTO: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR = 3R
// (2.2), at least 200 ms (our floor, Linux's TCP_RTO_MIN). Each expiry doubles it (5.5).
TEST_F(TcpRetransmit, RtoFromTheHandshakeSampleThenDoublesOnEachExpiry) {
  auto c = establish_passive(mss_only(), /*rtt=*/100ms);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->rtt().srtt(), 100ms);
  EXPECT_EQ(c->rtt().rttvar(), 50ms);
  EXPECT_EQ(c->rto(), 300ms);
  send(*c, "hello");
  expect_sent({.flags = kAck | kPsh, .seq = iss_ + 1, .payload = "hello"});
  for (Duration rto : {300ms, 600ms, 1200ms, 2400ms}) {
    advance(rto - k1us);
    expect_nothing_sent();
    advance(k1us);
    expect_sent({.seq = iss_ + 1, .payload = "hello"});
  }
  EXPECT_EQ(stats().rto_timeouts, 4u);
  EXPECT_EQ(c->cwnd(), kMss) << "RFC 5681 (5): the loss window";
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 6});
  advance(60s);
  expect_nothing_sent();
}

TEST_F(TcpRetransmit, ZeroRttSampleGivesTheRtoFloor) {
  auto c = establish_passive(mss_only(), /*rtt=*/0ns);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->rto(), 200ms);
  send(*c, "x");
  expect_sent({.seq = iss_ + 1, .payload = "x"});
  advance(200ms - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.seq = iss_ + 1, .payload = "x"});
  advance(400ms - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.seq = iss_ + 1, .payload = "x"});
}

// RFC 6298 (5.3): an ACK of new data restarts the timer for what is still outstanding, with the
// RTO the new sample gives (2.3).
TEST_F(TcpRetransmit, NewAckRestartsTheTimer) {
  auto c = establish_passive(mss_only(), /*rtt=*/100ms);
  ASSERT_TRUE(c);
  send(*c, Payload(pattern(2 * kMss)));
  ASSERT_EQ(take_segments().size(), 2u);
  advance(200ms);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1 + kMss});
  expect_nothing_sent();
  // Sample 200 ms: RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5, SRTT = 7/8 * 100 + 1/8 * 200 = 112.5.
  EXPECT_EQ(c->rto(), 362500us);
  advance(362500us - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.seq = iss_ + 1 + kMss, .payload_len = kMss});
}

// Karn: the ACK of a retransmitted segment gives no sample, so the backed-off RTO stays; the
// next segment sent once gives one and the RTO collapses (RFC 6298 §5, last paragraph).
TEST_F(TcpRetransmit, BackedOffRtoCollapsesOnTheNextSample) {
  auto c = establish_passive(mss_only(), /*rtt=*/100ms);
  ASSERT_TRUE(c);
  send(*c, "a");
  expect_sent({.seq = iss_ + 1, .payload = "a"});
  advance(300ms);
  expect_sent({.seq = iss_ + 1, .payload = "a"});
  EXPECT_EQ(c->rto(), 600ms);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 2});
  EXPECT_EQ(c->rto(), 600ms) << "Karn: no sample from a retransmitted segment";
  send(*c, "b");
  expect_sent({.seq = iss_ + 2, .payload = "b"});
  advance(100ms);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 3});
  // SRTT stays 100 ms, RTTVAR = 3/4 * 50 = 37.5 ms: RTO = 250 ms.
  EXPECT_EQ(c->rto(), 250ms);
}

TEST_F(TcpRetransmit, GivesUpWithEtimedoutAfterRetries2) {
  StackConfig config = default_config();
  config.tcp.retries2 = 3;
  start(config);
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, "x");
  expect_sent({.seq = iss_ + 1, .payload = "x"});
  for (Duration rto : {200ms, 400ms, 800ms}) {
    advance(rto);
    expect_sent({.seq = iss_ + 1, .payload = "x"});
  }
  advance(1600ms - k1us);
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kEstablished);
  advance(k1us);
  expect_nothing_sent();  // like Linux's tcp_write_err(): no RST
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(stats().timeouts, 1u);
  auto r = c->send(now(), text("y"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ETIMEDOUT);
}

TEST_F(TcpRetransmit, FinIsRetransmittedWithTheDataBeforeIt) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, "tail");
  expect_sent({.seq = iss_ + 1, .payload = "tail"});
  c->shutdown_write(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 5, .payload = ""});
  advance(200ms);
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1, .payload = "tail"});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 6});
  EXPECT_EQ(c->state(), State::kFinWait2);
  advance(10s);
  expect_nothing_sent();
}

// ============================================================================================
// Fast retransmit and NewReno (RFC 5681 §3.2, RFC 6582).
// ============================================================================================

// Ten full segments in flight (the initial window); the first is lost.
void TcpRecovery::fast_retransmit_on_third_dup_ack(TcpConnection& c, const Loc& loc) {
  USTACK_TRACE_CALLER(loc);
  send(c, Payload(pattern(10 * kMss)));
  auto segs = take_segments();
  ASSERT_EQ(segs.size(), 10u);
  EXPECT_EQ(c.cwnd(), 10u * kMss);
  const SeqNum una = iss_ + 1;
  deliver({.seq = kPeerIss + 1, .ack = una});
  expect_nothing_sent();
  deliver({.seq = kPeerIss + 1, .ack = una});
  expect_nothing_sent();  // not on the second
  deliver({.seq = kPeerIss + 1, .ack = una});
  expect_sent({.flags = kAck, .seq = una, .payload_len = kMss});
  EXPECT_EQ(stats().fast_retransmits, 1u);
  EXPECT_EQ(c.ssthresh(), 5u * kMss) << "RFC 5681 (4): FlightSize / 2";
  EXPECT_EQ(c.cwnd(), 8u * kMss) << "ssthresh + 3 SMSS";
  deliver({.seq = kPeerIss + 1, .ack = una});
  expect_nothing_sent();
  EXPECT_EQ(c.cwnd(), 9u * kMss) << "inflated by one SMSS per further duplicate";
}

TEST_F(TcpRecovery, FastRetransmitOnTheThirdDuplicateAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  fast_retransmit_on_third_dup_ack(*c);
}

// RFC 6582 §3.2: "recover" starts at the ISS. Our ISS is a hash: half of all connections have
// one more than 2^31 past zero, and must fast-retransmit all the same.
TEST_F(TcpRecovery, FastRetransmitWhateverTheIss) {
  for (uint32_t iss : {0x00001000u, 0x7ffff000u, 0x80001000u, 0xc0000000u, 0xfffff000u}) {
    SCOPED_TRACE(testing::Message() << "ISS 0x" << std::hex << iss);
    start(default_config(), start_time_for_passive_iss(default_config(), SeqNum(iss)));
    auto c = establish_passive();
    ASSERT_TRUE(c);
    ASSERT_EQ(iss_, SeqNum(iss));
    fast_retransmit_on_third_dup_ack(*c);
  }
}

// Segments 1 and 4 of 10 are lost. The retransmission of 1 brings a partial ACK (up to 4), which
// retransmits 4 at once; the ACK of everything ends recovery.
TEST_F(TcpRecovery, NewRenoRetransmitsTheNextHoleOnAPartialAckAndLeavesOnTheFullAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, Payload(pattern(10 * kMss)));
  ASSERT_EQ(take_segments().size(), 10u);
  const SeqNum una = iss_ + 1;
  // Segments 2, 3, 5 ... 10 arrive: eight duplicates.
  for (int i = 0; i < 8; ++i) deliver({.seq = kPeerIss + 1, .ack = una});
  expect_sent({.seq = una, .payload_len = kMss});
  EXPECT_EQ(c->ssthresh(), 5u * kMss);
  EXPECT_EQ(c->cwnd(), 13u * kMss);  // 5 + 3, then 5 more duplicates
  // The retransmitted 1 fills the first hole: the ACK covers 1-3, a partial ACK.
  deliver({.seq = kPeerIss + 1, .ack = una + 3 * kMss});
  expect_sent({.seq = una + 3 * kMss, .payload_len = kMss});  // the next hole, at once
  // RFC 6582 §3.2 step 5: deflate by the amount acked, add back one SMSS.
  EXPECT_EQ(c->cwnd(), 13u * kMss - 3 * kMss + kMss);
  // A duplicate during recovery only inflates.
  deliver({.seq = kPeerIss + 1, .ack = una + 3 * kMss});
  expect_nothing_sent();
  // The full ACK: recovery ends. RFC 6582 step 6 (1): cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS).
  deliver({.seq = kPeerIss + 1, .ack = una + 10 * kMss});
  expect_nothing_sent();
  EXPECT_LE(c->cwnd(), c->ssthresh());
  EXPECT_EQ(c->cwnd(), 2u * kMss);
  // Out of recovery: three duplicates would be a new loss, but nothing is outstanding.
  for (int i = 0; i < 3; ++i) deliver({.seq = kPeerIss + 1, .ack = una + 10 * kMss});
  expect_nothing_sent();
  EXPECT_EQ(stats().fast_retransmits, 1u);
}

// RFC 6582 §3.2 step 1: duplicates that do not cover "recover" (echoes of a loss already
// handled by a timeout) do not start another fast retransmit.
TEST_F(TcpRecovery, NoFastRetransmitForDuplicatesBelowRecover) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, Payload(pattern(4 * kMss)));
  ASSERT_EQ(take_segments().size(), 4u);
  const SeqNum una = iss_ + 1;
  advance(200ms);  // the RTO: everything up to snd_max is now "recover"
  expect_sent({.seq = una, .payload_len = kMss});
  for (int i = 0; i < 3; ++i) deliver({.seq = kPeerIss + 1, .ack = una});
  expect_nothing_sent();
  EXPECT_EQ(stats().fast_retransmits, 0u);
}

// ============================================================================================
// Congestion window (RFC 5681 §3.1 with RFC 3465's byte counting, L = 2 SMSS).
// ============================================================================================

TEST_F(TcpCongestion, SlowStartGrowsCwndByTheBytesEachAckCovers) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->cwnd(), 10u * kMss) << "RFC 6928: ten segments";
  EXPECT_EQ(c->ssthresh(), UINT32_MAX);
  send(*c, Payload(pattern(40 * kMss)));
  ASSERT_EQ(take_segments().size(), 10u);
  SeqNum acked = iss_ + 1;
  // One ACK per segment: cwnd grows by one SMSS and two segments go out (one replaces the
  // acknowledged one, one is the growth).
  for (uint32_t k = 1; k <= 4; ++k) {
    acked += kMss;
    deliver({.seq = kPeerIss + 1, .ack = acked});
    EXPECT_EQ(c->cwnd(), (10 + k) * kMss);
    EXPECT_EQ(take_segments().size(), 2u) << "after ACK " << k;
  }
  // An ACK of two segments: two SMSS, four segments out.
  acked += 2 * kMss;
  deliver({.seq = kPeerIss + 1, .ack = acked});
  EXPECT_EQ(c->cwnd(), 16u * kMss);
  EXPECT_EQ(take_segments().size(), 4u);
  // An ACK of three segments grows it by no more than L = 2 SMSS (RFC 3465 §2.2).
  acked += 3 * kMss;
  deliver({.seq = kPeerIss + 1, .ack = acked});
  EXPECT_EQ(c->cwnd(), 18u * kMss);
  EXPECT_EQ(take_segments().size(), 5u);
}

// Into congestion avoidance through fast recovery: ssthresh = 5 SMSS. From there cwnd grows by
// one SMSS per window of acknowledged bytes (RFC 5681 (3)).
TEST_F(TcpCongestion, CongestionAvoidanceAddsOneMssPerRoundTrip) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, Payload(pattern(60 * kMss)));
  ASSERT_EQ(take_segments().size(), 10u);
  const SeqNum una = iss_ + 1;
  // Segment 1 lost; nine duplicates. Three start recovery; from the sixth on, the inflated
  // window lets one new segment out per duplicate.
  for (int i = 0; i < 9; ++i) deliver({.seq = kPeerIss + 1, .ack = una});
  auto segs = take_segments();
  ASSERT_EQ(segs.size(), 5u);
  check(segs[0], {.seq = una, .payload_len = kMss});
  for (size_t i = 1; i < 5; ++i) check(segs[i], {.seq = una + static_cast<uint32_t>(9 + i) * kMss});
  // The full ACK: four segments in flight, cwnd = min(ssthresh, 4 + 1 SMSS) = ssthresh.
  SeqNum acked = una + 10 * kMss;
  deliver({.seq = kPeerIss + 1, .ack = acked});
  EXPECT_EQ(c->ssthresh(), 5u * kMss);
  EXPECT_EQ(c->cwnd(), 5u * kMss);
  EXPECT_EQ(take_segments().size(), 1u);
  // One ACK per segment. cwnd holds for a window's worth of bytes, then grows by one SMSS.
  for (uint32_t window : {5u, 6u, 7u}) {
    for (uint32_t k = 1; k <= window; ++k) {
      acked += kMss;
      deliver({.seq = kPeerIss + 1, .ack = acked});
      const uint32_t expected = k < window ? window : window + 1;
      EXPECT_EQ(c->cwnd(), expected * kMss) << "window " << window << ", ACK " << k;
      EXPECT_EQ(take_segments().size(), k < window ? 1u : 2u) << "window " << window << ", ACK " << k;
    }
  }
}

// ============================================================================================
// Zero window and the persist timer (RFC 9293 §3.8.6.1).
// ============================================================================================

TEST_F(TcpZeroWindow, ProbesWithOneByteBackingOffThenDataFlowsWhenTheWindowOpens) {
  auto c = establish_passive(mss_only(), 0ns, kPeerPort, /*ack_window=*/0);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->snd_wnd(), 0u);
  const Bytes data = pattern(3000);
  send(*c, Payload(data));
  expect_nothing_sent();  // the window is closed
  const SeqNum una = iss_ + 1;
  // Probes after an RTO (200 ms), backing off: 400 ms, 800 ms, 1.6 s. The peer answers each
  // with its closed window (it dropped the byte).
  for (Duration wait : {200ms, 400ms, 800ms, 1600ms}) {
    advance(wait - k1us);
    expect_nothing_sent();
    advance(k1us);
    expect_sent({.flags = kAck, .seq = una, .payload = Payload(Bytes(data.begin(), data.begin() + 1))});
    deliver({.seq = kPeerIss + 1, .ack = una, .window = 0});
    expect_nothing_sent();
  }
  EXPECT_EQ(stats().zero_window_probes, 4u);
  EXPECT_EQ(stats().fast_retransmits, 0u) << "a closed window's answers are no loss signal";
  EXPECT_EQ(c->state(), State::kEstablished);
  // The window opens: the data flows (the last 80 bytes wait for an ACK: Nagle).
  deliver({.seq = kPeerIss + 1, .ack = una, .window = 65535});
  auto segs = take_segments();
  ASSERT_EQ(segs.size(), 2u);
  check(segs[0], {.seq = una, .payload = Payload(Bytes(data.begin(), data.begin() + kMss))});
  check(segs[1], {.seq = una + kMss, .payload_len = kMss});
  deliver({.seq = kPeerIss + 1, .ack = una + 2 * kMss, .window = 65535});
  expect_sent({.seq = una + 2 * kMss, .payload = Payload(Bytes(data.begin() + 2 * kMss, data.end()))});
  deliver({.seq = kPeerIss + 1, .ack = una + 3000, .window = 65535});
  advance(60s);
  expect_nothing_sent();
}

TEST_F(TcpZeroWindow, WindowClosingWithDataInFlightStartsTheProbes) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, Payload(pattern(2 * kMss)));
  ASSERT_EQ(take_segments().size(), 2u);
  // The peer takes both segments but its reader is slow: the window is shut.
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1 + 2 * kMss, .window = 0});
  send(*c, "more");
  expect_nothing_sent();
  advance(c->rto() - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.seq = iss_ + 1 + 2 * kMss, .payload = "m"});
  // The window update arrives before the next probe: everything goes.
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1 + 2 * kMss, .window = 1000});
  expect_sent({.seq = iss_ + 1 + 2 * kMss, .payload = "more"});
}

// ============================================================================================
// The ACK policy: delayed ACKs (RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2, RFC 5681 §4.2) and
// Linux's quick-ack mode.
// ============================================================================================

class TcpDelayedAckNoQuick : public TcpPeerTest {
 protected:
  void SetUp() override {
    StackConfig config = default_config();
    config.tcp.quick_acks = 0;
    start(config);
  }
};

TEST_F(TcpDelayedAckNoQuick, OneFullSegmentIsAckedAfterTheDelayedAckTime) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = Payload(pattern(kMss))});
  expect_nothing_sent();
  advance(40ms - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1 + kMss});
  EXPECT_EQ(stats().delayed_acks, 1u);
  advance(1s);
  expect_nothing_sent();
}

TEST_F(TcpDelayedAckNoQuick, SecondFullSegmentIsAckedAtOnce) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = Payload(pattern(kMss))});
  expect_nothing_sent();
  advance(10ms);
  deliver({.seq = kPeerIss + 1 + kMss, .ack = iss_ + 1, .payload = Payload(pattern(kMss))});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1 + 2 * kMss});
  advance(1s);
  expect_nothing_sent();  // the delayed ACK went with it
}

TEST_F(TcpDelayedAckNoQuick, AFullAndAShortSegmentAreAckedAtOnce) {
  // Linux's rule: more than one full segment's worth unacknowledged. Holding this ACK for the
  // timer made Linux senders resend the burst's tail (their tail-loss probe fires first).
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = Payload(pattern(kMss))});
  expect_nothing_sent();
  deliver({.seq = kPeerIss + 1 + kMss, .ack = iss_ + 1, .payload = Payload(pattern(416))});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1 + kMss + 416});
}

TEST_F(TcpDelayedAckNoQuick, DataWeSendCarriesThePendingAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = "request"});
  expect_nothing_sent();
  advance(5ms);
  send(*c, "response");
  expect_sent({.flags = kAck | kPsh, .seq = iss_ + 1, .ack = kPeerIss + 8, .payload = "response"});
  advance(40ms);
  expect_nothing_sent();
}

TEST_F(TcpDelayedAckNoQuick, OutOfOrderSegmentGetsAnImmediateDuplicateAckAndTheGapFillAnImmediateAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  const SeqNum p = kPeerIss + 1;
  deliver({.seq = p + 100, .ack = iss_ + 1, .payload = Payload(pattern(100))});
  expect_sent({.flags = kAck, .ack = p});
  deliver({.seq = p + 300, .ack = iss_ + 1, .payload = Payload(pattern(100))});
  expect_sent({.flags = kAck, .ack = p});
  EXPECT_EQ(stats().ooo_segments, 2u);
  EXPECT_EQ(c->readable(), 0u);
  // The gap before the first piece fills: ACKed at once, up to the next gap.
  deliver({.seq = p, .ack = iss_ + 1, .payload = Payload(pattern(100))});
  expect_sent({.flags = kAck, .ack = p + 200});
  // The last gap: ACKed at once, everything.
  deliver({.seq = p + 200, .ack = iss_ + 1, .payload = Payload(pattern(100))});
  expect_sent({.flags = kAck, .ack = p + 400});
  EXPECT_EQ(c->readable(), 400u);
  // A duplicate of old data: a duplicate ACK at once.
  deliver({.seq = p, .ack = iss_ + 1, .payload = Payload(pattern(100))});
  expect_sent({.flags = kAck, .ack = p + 400});
}

TEST_F(TcpDelayedAck, QuickAckModeAcksTheFirstSegmentsAtOnce) {
  ASSERT_EQ(config_.tcp.quick_acks, 16u);
  auto c = establish_passive();
  ASSERT_TRUE(c);
  SeqNum p = kPeerIss + 1;
  for (int i = 0; i < 16; ++i) {
    advance(1ms);
    deliver({.seq = p, .ack = iss_ + 1, .payload = "x"});
    p += 1;
    expect_sent({.flags = kAck, .ack = p});
  }
  advance(1ms);
  deliver({.seq = p, .ack = iss_ + 1, .payload = "x"});
  p += 1;
  expect_nothing_sent();
  advance(40ms);
  expect_sent({.flags = kAck, .ack = p});
}

// Linux's tcp_event_data_recv(): data after a silence longer than the RTO (the sender restarts
// from its initial window) starts quick-ack mode again.
TEST_F(TcpDelayedAck, QuickAckModeReturnsAfterIdle) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  SeqNum p = kPeerIss + 1;
  for (int i = 0; i < 17; ++i) {
    deliver({.seq = p, .ack = iss_ + 1, .payload = "x"});
    p += 1;
  }
  take_segments();
  advance(40ms);
  take_segments();
  advance(1s);  // idle, longer than the RTO
  deliver({.seq = p, .ack = iss_ + 1, .payload = "y"});
  p += 1;
  expect_sent({.flags = kAck, .ack = p});
}

// ============================================================================================
// Zero-copy send: buffers the caller filled go out as they are.
// ============================================================================================

class TcpSendBuffers : public TcpPeerTest {
 protected:
  Packet filled(TcpConnection& c, std::string_view text) {
    Packet p = c.alloc_send_buffer();
    EXPECT_TRUE(p);
    EXPECT_GE(p.tailroom(), c.mss());
    std::memcpy(p.append(text.size()), text.data(), text.size());
    return p;
  }
};

TEST_F(TcpSendBuffers, EachBufferIsASegmentSentAndRetransmittedWithoutACopy) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  std::array<Packet, 2> bufs{filled(*c, "hello "), filled(*c, "world")};
  auto taken = c->send_buffers(now(), bufs);
  ASSERT_TRUE(taken);
  EXPECT_EQ(*taken, 2u);
  EXPECT_FALSE(bufs[0]) << "moved into the send queue";
  expect_sent({.seq = iss_ + 1, .payload = "hello "});
  advance(c->rto());  // Nagle held the second back until the first was acknowledged; the RTO
  expect_sent({.seq = iss_ + 1, .payload = "hello "});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 7});
  expect_sent({.seq = iss_ + 7, .payload = "world"});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 12});
  EXPECT_EQ(c->send_queued(), 0u);
  EXPECT_EQ(stats().tx_payload_copied, 0u) << "no segment was copied, the retransmission neither";
}

TEST_F(TcpSendBuffers, AFullSendBufferTakesNoMoreAndAClosedOneRefuses) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->options().sndbuf = 1;  // any charge fills it
  std::array<Packet, 2> bufs{filled(*c, "a"), filled(*c, "b")};
  auto taken = c->send_buffers(now(), bufs);
  ASSERT_TRUE(taken);
  EXPECT_EQ(*taken, 1u);
  EXPECT_TRUE(bufs[1]) << "left with the caller";
  expect_sent({.payload = "a"});
  c->shutdown_write(now());
  auto refused = c->send_buffers(now(), std::span(bufs).subspan(1));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), EPIPE);
}

// ============================================================================================
// Keep-alive (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6), with Linux's TCP_KEEPIDLE/INTVL/CNT.
// ============================================================================================

class TcpKeepalive : public TcpPeerTest {
 protected:
  void turn_on(TcpConnection& c) {
    c.options().keepalive = true;
    c.options().keepalive_idle = tcp::SocketOptions::Seconds(10);
    c.options().keepalive_interval = tcp::SocketOptions::Seconds(2);
    c.options().keepalive_probes = 3;
    c.options_changed(now());
  }
};

TEST_F(TcpKeepalive, ProbesAfterTheIdleTimeAndAnAnswerRestartsIt) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  turn_on(*c);
  EXPECT_TRUE(c->holds_transfer_state()) << "its timer is armed";
  advance(10s - k1us);
  expect_nothing_sent();
  advance(k1us);
  // One sequence number back, no data: the peer must answer with an ACK.
  expect_sent({.flags = kAck, .seq = iss_, .ack = kPeerIss + 1});
  advance(1s);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1});
  expect_nothing_sent();
  advance(10s - k1us);
  expect_nothing_sent();
  advance(k1us);
  expect_sent({.flags = kAck, .seq = iss_, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kEstablished);
}

TEST_F(TcpKeepalive, UnansweredProbesEndTheConnectionWithEtimedout) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  turn_on(*c);
  advance(10s);
  expect_sent({.flags = kAck, .seq = iss_});
  for (int probe = 2; probe <= 3; ++probe) {
    advance(2s - k1us);
    expect_nothing_sent();
    advance(k1us);
    expect_sent({.flags = kAck, .seq = iss_});
  }
  advance(2s - k1us);
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kEstablished);
  advance(k1us);
  expect_sent({.flags = kRst | kAck, .seq = iss_ + 1});
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(c->take_error(), ETIMEDOUT);
  EXPECT_EQ(stats().keepalive_timeouts, 1u);
}

TEST_F(TcpKeepalive, TurnedOffDisarmsItsTimerAndTheIdleConnectionGivesItsStateBack) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  turn_on(*c);
  c->options().keepalive = false;
  c->options_changed(now());
  EXPECT_FALSE(c->holds_transfer_state());
  advance(60s);
  expect_nothing_sent();
}

// ============================================================================================
// Transfer state: an idle connection holds none (the memory bound of issue 6); a busy one takes
// it back and behaves as if it had never let go.
// ============================================================================================

class TcpTransferState : public TcpPeerTest {};

TEST_F(TcpTransferState, HeldOnlyWhileDataIsQueuedOrATimerRuns) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->holds_transfer_state()) << "established and idle";
  send(*c, "hello");
  expect_sent({.seq = iss_ + 1, .payload = "hello"});
  EXPECT_TRUE(c->holds_transfer_state()) << "unacknowledged data, the retransmission timer";
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 6});
  EXPECT_FALSE(c->holds_transfer_state());
  // Data in: held while it waits for the reader and the delayed ACK.
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 6, .payload = "abc"});
  take_segments();
  EXPECT_TRUE(c->holds_transfer_state());
  EXPECT_EQ(show(read(*c)), "\"abc\"");
  advance(1s);
  take_segments();
  EXPECT_FALSE(c->holds_transfer_state());
  // A retransmission after the state was given back and taken again starts where it should.
  send(*c, "again");
  expect_sent({.seq = iss_ + 6, .ack = kPeerIss + 4, .payload = "again"});
  advance(c->rto());
  expect_sent({.seq = iss_ + 6, .payload = "again"});
  deliver({.seq = kPeerIss + 4, .ack = iss_ + 11});
  EXPECT_FALSE(c->holds_transfer_state());
  // The FIN: after the peer's, CLOSE-WAIT holds none either; ours and its ACK end it.
  deliver({.flags = kAck | kFin, .seq = kPeerIss + 4, .ack = iss_ + 11});
  expect_sent({.flags = kAck, .ack = kPeerIss + 5});
  EXPECT_EQ(c->state(), State::kCloseWait);
  EXPECT_FALSE(c->holds_transfer_state());
  c->close(now());
  expect_sent({.flags = kAck | kFin, .seq = iss_ + 11, .ack = kPeerIss + 5});
  deliver({.seq = kPeerIss + 5, .ack = iss_ + 12});
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_FALSE(c->holds_transfer_state());
}

// ============================================================================================
// Nagle (RFC 896, RFC 9293 §3.7.4) and TCP_NODELAY.
// ============================================================================================

TEST_F(TcpNagle, SecondSmallWriteWaitsForTheAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, "a");
  expect_sent({.seq = iss_ + 1, .payload = "a"});
  send(*c, "b");
  expect_nothing_sent();
  send(*c, "c");
  expect_nothing_sent();
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.seq = iss_ + 2, .payload = "bc"});
}

TEST_F(TcpNagle, NoDelaySendsSmallWritesAtOnce) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, "a");
  expect_sent({.seq = iss_ + 1, .payload = "a"});
  send(*c, "b");
  expect_nothing_sent();
  c->options().nodelay = true;
  c->options_changed(now());
  stack_->flush();
  expect_sent({.seq = iss_ + 2, .payload = "b"});  // what Nagle held goes now
  send(*c, "c");
  expect_sent({.seq = iss_ + 3, .payload = "c"});
}

TEST_F(TcpNagle, FullSegmentsAreNotHeld) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  send(*c, "a");
  expect_sent({.seq = iss_ + 1, .payload = "a"});
  send(*c, Payload(pattern(kMss)));
  expect_sent({.seq = iss_ + 2, .payload_len = kMss});
}

// ============================================================================================
// Sequence numbers across 2^32 (RFC 9293 §3.4).
// ============================================================================================

TEST_F(TcpWrap, PeerSequenceWrapsDuringTransfer) {
  constexpr SeqNum kIss{0xfffff000};
  listen();
  deliver({.flags = kSyn, .seq = kIss, .options = mss_only()});
  iss_ = expect_sent({.flags = kSyn | kAck, .ack = kIss + 1}).seq;
  deliver({.seq = kIss + 1, .ack = iss_ + 1});
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  const Bytes data = pattern(8 * kMss, 3);
  // Segments 1, 2, 4, 3, 5 ... 8: the reordered pair straddles the wrap (at byte 4095).
  std::vector<int> order = {0, 1, 3, 2, 4, 5, 6, 7};
  for (int i : order) {
    const size_t off = static_cast<size_t>(i) * kMss;
    deliver({.seq = kIss + 1 + static_cast<uint32_t>(off), .ack = iss_ + 1,
             .payload = Payload(Bytes(data.begin() + static_cast<long>(off), data.begin() + static_cast<long>(off + kMss)))});
  }
  auto acks = take_segments();
  ASSERT_FALSE(acks.empty());
  EXPECT_EQ(acks.back().ack, kIss + 1 + 8 * kMss);
  EXPECT_LT(acks.back().ack.raw(), 0x10000u) << "the ACK wrapped";
  EXPECT_EQ(read(*c), data);
  // And the FIN just past the wrap.
  deliver({.flags = kFin | kAck, .seq = kIss + 1 + 8 * kMss, .ack = iss_ + 1});
  expect_sent({.flags = kAck, .ack = kIss + 2 + 8 * kMss});
  EXPECT_EQ(c->state(), State::kCloseWait);
}

TEST_F(TcpWrap, OurSequenceWrapsDuringTransfer) {
  constexpr SeqNum kOurIss{0xfffff800};
  start(default_config(), start_time_for_passive_iss(default_config(), kOurIss));
  auto c = establish_passive();
  ASSERT_TRUE(c);
  ASSERT_EQ(iss_, kOurIss);
  const Bytes data = pattern(8 * kMss, 9);
  send(*c, Payload(data));
  auto segs = take_segments();
  ASSERT_EQ(segs.size(), 8u);
  Bytes got;
  for (size_t i = 0; i < segs.size(); ++i) {
    check(segs[i], {.seq = kOurIss + 1 + static_cast<uint32_t>(i) * kMss, .payload_len = kMss});
    got.insert(got.end(), segs[i].payload.begin(), segs[i].payload.end());
  }
  EXPECT_EQ(got, data);
  // Segment 2 (0xfffffdb5, across the wrap) is lost: ACKs for 1, then duplicates.
  const SeqNum after1 = kOurIss + 1 + kMss;
  deliver({.seq = kPeerIss + 1, .ack = after1});
  for (int i = 0; i < 3; ++i) deliver({.seq = kPeerIss + 1, .ack = after1});
  const SentSegment rtx = expect_sent({.seq = after1, .payload_len = kMss});
  EXPECT_EQ(Bytes(rtx.payload), Bytes(data.begin() + kMss, data.begin() + 2 * kMss));
  const SeqNum end = kOurIss + 1 + 8 * kMss;
  deliver({.seq = kPeerIss + 1, .ack = end});
  EXPECT_EQ(c->snd_una(), end);
  EXPECT_LT(end.raw(), 0x10000u);
  c->close(now());
  expect_sent({.flags = kFin | kAck, .seq = end});
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = end + 1});
  expect_sent({.flags = kAck, .seq = end + 1, .ack = kPeerIss + 2});
  EXPECT_TRUE(in_time_wait());
}

struct HeapAllocator : tcp::SegmentAllocator {
  Packet alloc_segment(size_t payload_len) override { return Packet::heap(128 + payload_len, 128); }
};

TEST(TcpSendQueue, AcknowledgesAndSlicesAcrossTheWrap) {
  HeapAllocator alloc;
  const SeqNum start(0xfffffc00);
  tcp::SendQueue q(start);
  const Bytes data = pattern(3000, 5);
  ASSERT_EQ(q.append(data, kMss, start, 1 << 20, alloc), 3000u);
  EXPECT_EQ(q.tail(), start + 3000);
  EXPECT_EQ(q.size(), 3000u);
  bool copied = false;
  // A segment that straddles the wrap (starting mid-chunk: a copy).
  Packet p = q.payload(start + 1000, kMss, alloc, &copied);
  ASSERT_TRUE(p);
  EXPECT_EQ(p.size(), kMss);
  EXPECT_EQ(Bytes(p.bytes().begin(), p.bytes().end()), Bytes(data.begin() + 1000, data.begin() + 1000 + kMss));
  q.mark_sent(start, 3000, Instant(), false);
  auto acked = q.acknowledge(start + 2000, Instant() + 1ms);
  EXPECT_EQ(acked.bytes, 2000u);
  EXPECT_EQ(q.head(), start + 2000);
  EXPECT_LT(q.head().raw(), 0x1000u);
  EXPECT_EQ(q.size(), 1000u);
  // The rest of the second chunk, shared rather than copied.
  Packet rest = q.payload(q.head(), kMss, alloc, &copied);
  EXPECT_FALSE(copied);
  EXPECT_EQ(Bytes(rest.bytes().begin(), rest.bytes().end()), Bytes(data.begin() + 2000, data.begin() + 2 * kMss));
  EXPECT_EQ(q.contiguous_from(q.head()), 2u * kMss - 2000);
  EXPECT_EQ(q.acknowledge(start + 3000, Instant()).bytes, 1000u);
  EXPECT_TRUE(q.empty());
}

TEST(TcpReceiveQueue, ReassemblesAcrossTheWrap) {
  const SeqNum start(0xffffff00);
  tcp::ReceiveQueue q;
  uint32_t copies = 0;
  q.reset(start);
  const Bytes data = pattern(1024, 7);
  auto piece = [&](size_t off, size_t len) {
    return Packet::copy_of(std::span(data).subspan(off, len));
  };
  // Pieces after the wrap first, then the one that straddles it, then the first.
  EXPECT_EQ(q.add(start + 512, piece(512, 512), false, &copies), tcp::ReceiveQueue::Added::kOutOfOrder);
  EXPECT_EQ(q.add(start + 200, piece(200, 312), false, &copies), tcp::ReceiveQueue::Added::kOutOfOrder);
  EXPECT_EQ(q.next(), start);
  EXPECT_EQ(q.add(start, piece(0, 256), false, &copies), tcp::ReceiveQueue::Added::kInOrder);
  EXPECT_EQ(q.next(), start + 1024);
  EXPECT_EQ(q.next().raw(), 0x300u);
  EXPECT_FALSE(q.has_out_of_order());
  EXPECT_EQ(q.add(start + 100, piece(100, 100), false, &copies), tcp::ReceiveQueue::Added::kDuplicate);
  Bytes out(2000);
  out.resize(q.read(out, false));
  EXPECT_EQ(out, data);
}

TEST(TcpReceiveQueue, LendsWholeBuffersInOrderAndForgetsThem) {
  const SeqNum start(5000);
  tcp::ReceiveQueue q;
  uint32_t copies = 0;
  q.reset(start);
  const Bytes data = pattern(3000, 3);
  // A few bytes at the start of a 2 KiB buffer, as a small segment arrives from a device.
  auto small = [&](size_t off, size_t len) {
    Packet p = Packet::heap(2048, 0);
    std::memcpy(p.append(len), data.data() + off, len);
    return p;
  };
  // A full-size segment stays in its buffer; two small ones are copied together into one of ours.
  Packet big = Packet::heap(1600, 0);
  std::memcpy(big.append(1400), data.data(), 1400);
  const uint8_t* big_bytes = big.data();
  ASSERT_EQ(q.add(start, std::move(big), false, &copies), tcp::ReceiveQueue::Added::kInOrder);
  ASSERT_EQ(q.add(start + 1400, small(1400, 10), false, &copies),
            tcp::ReceiveQueue::Added::kInOrder);
  ASSERT_EQ(q.add(start + 1410, small(1410, 20), false, &copies),
            tcp::ReceiveQueue::Added::kInOrder);
  EXPECT_EQ(copies, 2u);
  const size_t charged = q.charged();

  Packet first = q.lend();
  EXPECT_EQ(first.data(), big_bytes) << "lent in the buffer it arrived in, not copied";
  EXPECT_EQ(Bytes(first.bytes().begin(), first.bytes().end()), Bytes(data.begin(), data.begin() + 1400));
  EXPECT_EQ(q.readable(), 30u);
  EXPECT_EQ(q.charged(), charged - first.truesize());
  Packet second = q.lend();
  EXPECT_EQ(Bytes(second.bytes().begin(), second.bytes().end()), Bytes(data.begin() + 1400, data.begin() + 1430));
  EXPECT_EQ(q.readable(), 0u);
  EXPECT_EQ(q.charged(), 0u);
  EXPECT_EQ(q.lend().size(), 0u) << "nothing left to lend";
  // A small segment now goes into a new buffer, never into the one lent out.
  ASSERT_EQ(q.add(start + 1430, small(1430, 5), false, &copies),
            tcp::ReceiveQueue::Added::kInOrder);
  EXPECT_EQ(second.size(), 30u);
  Bytes out(10);
  out.resize(q.read(out, false));
  EXPECT_EQ(out, Bytes(data.begin() + 1430, data.begin() + 1435));
  // A buffer still shared (looped back, its sender keeps it) is copied before it is lent.
  Packet shared = Packet::copy_of(std::span(data).subspan(1435, 1400));
  Packet senders_reference = shared.share();
  ASSERT_EQ(q.add(start + 1435, std::move(shared), false, &copies), tcp::ReceiveQueue::Added::kInOrder);
  Packet lent = q.lend();
  EXPECT_FALSE(lent.shared());
  EXPECT_NE(lent.data(), senders_reference.data());
  EXPECT_EQ(Bytes(lent.bytes().begin(), lent.bytes().end()), Bytes(data.begin() + 1435, data.begin() + 2835));
}

// ============================================================================================
// Timestamps and PAWS (RFC 7323).
// ============================================================================================

class TcpPaws : public TcpPeerTest {
 protected:
  /// A passive open with timestamps; the peer's clock is at `tsval_` and ours echoed.
  std::shared_ptr<TcpConnection> establish_with_timestamps() {
    auto c = establish_passive(linux_syn(1000), 0ns, kPeerPort, 65535, ts(1001, 0));
    return c;
  }
};

TEST_F(TcpPaws, SegmentsEchoTheNewestTsval) {
  listen();
  deliver({.flags = kSyn, .seq = kPeerIss, .options = linux_syn(1000)});
  const SentSegment syn_ack = expect_sent({.flags = kSyn | kAck, .ack = kPeerIss + 1});
  iss_ = syn_ack.seq;
  ASSERT_TRUE(syn_ack.options.timestamps);
  EXPECT_EQ(syn_ack.options.timestamps->echo_reply, 1000u) << "the SYN-ACK echoes the SYN's TSval";
  const uint32_t our_ts = syn_ack.options.timestamps->value;
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .options = ts(1001, our_ts)});
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->timestamps());
  EXPECT_EQ(c->mss(), kMss - 12) << "every segment carries 12 bytes of timestamps";
  advance(5ms);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .options = ts(1010, our_ts), .payload = "a"});
  const SentSegment ack = expect_sent({.flags = kAck, .ack = kPeerIss + 2});
  ASSERT_TRUE(ack.options.timestamps);
  EXPECT_EQ(ack.options.timestamps->echo_reply, 1010u);
  EXPECT_EQ(ack.options.timestamps->value, our_ts + 5) << "our clock ticks in milliseconds";
}

TEST_F(TcpPaws, OldTsvalIsDroppedAndAcked) {
  auto c = establish_with_timestamps();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .options = ts(2000, 0), .payload = "new"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 4});
  // An old duplicate (TSval before TS.Recent) with new sequence numbers: dropped, ACKed.
  deliver({.seq = kPeerIss + 4, .ack = iss_ + 1, .options = ts(1500, 0), .payload = "old"});
  const SentSegment ack = expect_sent({.flags = kAck, .ack = kPeerIss + 4});
  ASSERT_TRUE(ack.options.timestamps);
  EXPECT_EQ(ack.options.timestamps->echo_reply, 2000u);
  EXPECT_EQ(stats().paws_rejected, 1u);
  EXPECT_EQ(show(read(*c)), "\"new\"");
  // The same bytes with a current TSval are taken.
  deliver({.seq = kPeerIss + 4, .ack = iss_ + 1, .options = ts(2001, 0), .payload = "old"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 7});
}

TEST_F(TcpPaws, ReorderedDuplicateAckWithAnOlderTsvalIsNotDropped) {
  auto c = establish_with_timestamps();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .options = ts(2000, 0), .payload = "new"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 4});
  // Linux's tcp_disordered_ack(): a pure duplicate ACK overtaken by a newer segment passes PAWS.
  deliver({.seq = kPeerIss + 4, .ack = iss_ + 1, .options = ts(1990, 0)});
  expect_nothing_sent();
  EXPECT_EQ(stats().paws_rejected, 0u);
  // One that is older than an RTO is an old duplicate after all.
  deliver({.seq = kPeerIss + 4, .ack = iss_ + 1, .options = ts(1000, 0)});
  expect_sent({.flags = kAck, .ack = kPeerIss + 4});
  EXPECT_EQ(stats().paws_rejected, 1u);
}

TEST_F(TcpPaws, TsRecentIsNotTakenFromASegmentWithAnUnacceptableAck) {
  // Linux's order (and packetdrill's ts_recent/invalid_ack.pkt): a forged segment whose ACK is for
  // data never sent must not move TS.Recent ahead, or PAWS would then drop the real peer.
  auto c = establish_with_timestamps();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1000, .options = ts(200000, 0)});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .options = ts(2000, 0), .payload = "ok"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 3});
  EXPECT_EQ(stats().paws_rejected, 0u);
  EXPECT_EQ(show(read(*c)), "\"ok\"");
}

TEST_F(TcpPaws, RstWithAnOldTsvalIsNotDroppedByPaws) {
  auto c = establish_with_timestamps();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .options = ts(2000, 0), .payload = "new"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 4});
  deliver({.flags = kRst, .seq = kPeerIss + 4, .options = ts(1, 0)});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(c->take_error(), ECONNRESET);
  EXPECT_EQ(stats().paws_rejected, 0u);
}

// ============================================================================================
// Blind attacks (RFC 5961) and the acceptability tests of RFC 9293 §3.10.7.4.
// ============================================================================================

TEST_F(TcpBlindAttack, RstInTheWindowButNotExactGetsAChallengeAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.flags = kRst, .seq = kPeerIss + 1 + 1000});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kEstablished);
  EXPECT_EQ(stats().challenge_acks, 1u);
  // Outside the window: silently dropped.
  deliver({.flags = kRst, .seq = kPeerIss + 1 + 100000});
  deliver({.flags = kRst, .seq = kPeerIss - 10});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kEstablished);
}

TEST_F(TcpBlindAttack, RstAtRcvNxtResetsTheConnection) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.flags = kRst, .seq = kPeerIss + 1});
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_NE(c->poll_events() & kPollErr, 0u);
  Bytes buf(10);
  auto r = c->receive(now(), buf, false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ECONNRESET);
  EXPECT_EQ(find(), nullptr);
  EXPECT_EQ(stats().rx_resets, 1u);
}

TEST_F(TcpBlindAttack, SynInEstablishedGetsAChallengeAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.flags = kSyn, .seq = kPeerIss + 100, .options = mss_only()});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  deliver({.flags = kSyn, .seq = SeqNum(0x12345678), .options = mss_only()});  // out of window too
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kEstablished);
  EXPECT_EQ(stats().challenge_acks, 2u);
}

TEST_F(TcpBlindAttack, OutOfWindowDataGetsADuplicateAck) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1 + 70000, .ack = iss_ + 1, .payload = "far"});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  deliver({.seq = kPeerIss - 100, .ack = iss_ + 1, .payload = "old"});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->readable(), 0u);
  EXPECT_EQ(stats().out_of_window, 2u);
  // Pure ACKs out of window: one duplicate ACK per invalid_ack_interval (500 ms).
  deliver({.seq = kPeerIss + 1 + 70000, .ack = iss_ + 1});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1});
  deliver({.seq = kPeerIss + 1 + 70000, .ack = iss_ + 1});
  expect_nothing_sent();
  advance(500ms);
  deliver({.seq = kPeerIss + 1 + 70000, .ack = iss_ + 1});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1});
}

TEST_F(TcpBlindAttack, AckForDataNeverSentIsAckedAndDropped) {
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1000, .payload = "bogus"});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->readable(), 0u) << "the segment is dropped";
  EXPECT_EQ(c->snd_una(), iss_ + 1);
  // RFC 5961 §5.2: an ACK older than SND.UNA - MAX.SND.WND: a challenge ACK, the data dropped.
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1 - 70000, .payload = "older"});
  expect_sent({.flags = kAck, .seq = iss_ + 1, .ack = kPeerIss + 1});
  EXPECT_EQ(c->readable(), 0u);
  EXPECT_EQ(stats().challenge_acks, 1u);
  // A valid segment still goes through.
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = "fine"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 5});
}

TEST_F(TcpBlindAttack, ChallengeAcksAreRateLimited) {
  StackConfig config = default_config();
  config.tcp.challenge_acks_per_s = 2;
  start(config);
  auto c = establish_passive();
  ASSERT_TRUE(c);
  for (int i = 0; i < 3; ++i) deliver({.flags = kRst, .seq = kPeerIss + 1 + 1000});
  EXPECT_EQ(take_segments().size(), 2u);
  EXPECT_EQ(stats().challenge_acks, 2u);
  EXPECT_EQ(stats().challenge_acks_limited, 1u);
  advance(1s);
  deliver({.flags = kRst, .seq = kPeerIss + 1 + 1000});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1});
  EXPECT_EQ(c->state(), State::kEstablished);
}

// ============================================================================================
// Options (RFC 9293 §3.2, RFC 7323, RFC 2018).
// ============================================================================================

TEST_F(TcpOptionsTest, MssComesFromTheMtu) {
  StackConfig config = default_config();
  config.mtu = 1000;
  start(config);
  listen();
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only()});
  const SentSegment syn_ack = expect_sent({.flags = kSyn | kAck});
  EXPECT_EQ(syn_ack.options.mss, std::optional<uint16_t>(960));
  iss_ = syn_ack.seq;
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1});
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->mss(), 960) << "the peer's 1460 does not fit our route";
}

TEST_F(TcpOptionsTest, SegmentsKeepToThePeersMss) {
  auto c = establish_passive(mss_only(536));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->mss(), 536);
  EXPECT_EQ(c->cwnd(), 10u * 536);
  send(*c, Payload(pattern(2000)));
  auto segs = take_segments();
  ASSERT_EQ(segs.size(), 3u);  // the last 392 bytes wait for an ACK (Nagle)
  for (size_t i = 0; i < segs.size(); ++i) check(segs[i], {.seq = iss_ + 1 + static_cast<uint32_t>(i) * 536, .payload_len = 536});
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1 + 3 * 536});
  expect_sent({.seq = iss_ + 1 + 3 * 536, .payload_len = 392});
}

TEST_F(TcpOptionsTest, NoMssOptionMeans536) {
  auto c = establish_passive(TcpOptions{});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->mss(), 536) << "RFC 9293 §3.7.1";
}

TEST_F(TcpOptionsTest, WindowScaleWhenBothSidesSendIt) {
  TcpOptions syn = mss_only();
  syn.window_scale = 7;
  listen();
  deliver({.flags = kSyn, .seq = kPeerIss, .window = 1000, .options = syn});
  const SentSegment syn_ack = expect_sent({.flags = kSyn | kAck, .window = 65535});  // never scaled in a SYN
  EXPECT_EQ(syn_ack.options.window_scale, std::optional<uint8_t>(7));
  iss_ = syn_ack.seq;
  // The peer's window field, from now on, is in units of 2^7.
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .window = 100});
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->snd_wscale(), 7);
  EXPECT_EQ(c->rcv_wscale(), 7);
  EXPECT_EQ(c->snd_wnd(), 12800u);
  // Ours is in units of 2^7: 64 KiB of receive space is 512.
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .window = 100, .payload = "x"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 2, .window = 512});  // 65534 rounded up
  // What we send keeps to the scaled window: 12800 bytes is eight full segments and 1120
  // bytes, too little to send alone (SWS avoidance).
  send(*c, Payload(pattern(20000)));
  auto segs = take_segments();
  EXPECT_EQ(segs.size(), 8u);
}

TEST_F(TcpOptionsTest, NoWindowScaleUnlessThePeerOffersIt) {
  listen();
  deliver({.flags = kSyn, .seq = kPeerIss, .window = 1000, .options = mss_only()});
  const SentSegment syn_ack = expect_sent({.flags = kSyn | kAck});
  EXPECT_FALSE(syn_ack.options.window_scale) << "a SYN-ACK only answers what the SYN offered";
  iss_ = syn_ack.seq;
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .window = 100});
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->snd_wnd(), 100u);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .window = 100, .payload = "x"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 2, .window = 65534});
}

TEST_F(TcpOptionsTest, ActiveOpenDropsWindowScaleWhenTheSynAckLacksIt) {
  auto c = establish_active(mss_only(), /*window=*/5000);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->rcv_wscale(), 0);
  EXPECT_EQ(c->snd_wscale(), 0);
  EXPECT_EQ(c->snd_wnd(), 5000u);
  EXPECT_FALSE(c->timestamps());
  EXPECT_FALSE(c->sack_permitted());
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .window = 5000, .payload = "x"});
  expect_sent({.flags = kAck, .ack = kPeerIss + 2, .window = 65534});
}

TEST_F(TcpOptionsTest, ActiveOpenTakesEveryOptionTheSynAckHas) {
  auto c = connect();
  ASSERT_TRUE(c);
  TcpOptions o = linux_syn(5000);
  o.timestamps = TcpOptions::Timestamps{5000, our_tsval_};
  deliver({.flags = kSyn | kAck, .seq = kPeerIss, .ack = iss_ + 1, .window = 65535, .options = o});
  const SentSegment ack = expect_sent({.flags = kAck, .ack = kPeerIss + 1, .window = 512});
  ASSERT_TRUE(ack.options.timestamps);
  EXPECT_EQ(ack.options.timestamps->echo_reply, 5000u);
  EXPECT_EQ(c->snd_wscale(), 7);
  EXPECT_EQ(c->rcv_wscale(), 7);
  EXPECT_TRUE(c->timestamps());
  EXPECT_TRUE(c->sack_permitted());
}

TEST_F(TcpOptionsTest, SackPermittedEchoedOnlyWhenOffered) {
  listen();
  TcpOptions with_sack = mss_only();
  with_sack.sack_permitted = true;
  deliver({.flags = kSyn, .seq = kPeerIss, .options = with_sack, .src_port = 40001});
  EXPECT_TRUE(expect_sent({.flags = kSyn | kAck, .dst_port = 40001}).options.sack_permitted);
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only(), .src_port = 40002});
  const SentSegment plain = expect_sent({.flags = kSyn | kAck, .dst_port = 40002});
  EXPECT_FALSE(plain.options.sack_permitted);
  EXPECT_FALSE(plain.options.timestamps);
}

TEST_F(TcpOptionsTest, UnknownOptionIsSkipped) {
  listen();
  // Kind 99, length 6, then MSS 536, NOP, NOP.
  deliver({.flags = kSyn, .seq = kPeerIss, .raw_options = from_hex("6306aabbccdd020402180101")});
  iss_ = expect_sent({.flags = kSyn | kAck, .ack = kPeerIss + 1}).seq;
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1});
  auto c = listener_->accept();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->mss(), 536) << "the MSS after the unknown option was read";
}

TEST_F(TcpOptionsTest, MalformedOptionLengthDropsTheSegment) {
  listen();
  for (const char* raw : {"02030000",                   // MSS with length 3
                          "0108" "0a00",                 // timestamps running past the header
                          "03010000",                    // length 1
                          "63000000"}) {                 // length 0
    deliver({.flags = kSyn, .seq = kPeerIss, .raw_options = from_hex(raw)});
    expect_nothing_sent();
  }
  EXPECT_EQ(stats().rx_bad_option, 4u);
  EXPECT_EQ(listener_->syn_queue_size(), 0u);
  // The same on an established connection: no ACK, no data.
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = "data", .raw_options = from_hex("02030000")});
  expect_nothing_sent();
  EXPECT_EQ(c->readable(), 0u);
  EXPECT_EQ(stats().rx_bad_option, 5u);
}

// ============================================================================================
// The receive window (RFC 9293 §3.8.6.2.2): free buffer space, never shrinking, updates once
// they are worthwhile.
// ============================================================================================

TEST_F(TcpReceiveWindow, FollowsFreeSpaceAndTheRightEdgeNeverMovesLeft) {
  listen_options_.rcvbuf = 16384;  // a window of 8192
  auto c = establish_passive();
  ASSERT_TRUE(c);
  const SeqNum right_edge = kPeerIss + 1 + 8192;
  SeqNum p = kPeerIss + 1;
  for (uint32_t len : {kMss, kMss, kMss, kMss, kMss, uint16_t{892}}) {
    deliver({.seq = p, .ack = iss_ + 1, .payload = Payload(pattern(len))});
    p += len;
    const SentSegment ack = expect_sent({.flags = kAck, .ack = p});
    EXPECT_EQ(ack.ack + ack.window, right_edge) << "the right edge stays put";
  }
  EXPECT_EQ(c->readable(), 8192u);
  // The window is shut: a byte beyond it is not taken, and the ACK says so.
  deliver({.seq = p, .ack = iss_ + 1, .payload = "z"});
  expect_sent({.flags = kAck, .ack = p, .window = 0});
  EXPECT_EQ(c->readable(), 8192u);
  // Reading a little opens nothing worth announcing (less than an MSS: SWS avoidance) ...
  EXPECT_EQ(read(*c, 100).size(), 100u);
  expect_nothing_sent();
  // ... reading an MSS's worth does, with a window update.
  EXPECT_EQ(read(*c, 1400).size(), 1400u);
  expect_sent({.flags = kAck, .ack = p, .window = 1500});
  // Reading everything: the whole window again.
  read(*c);
  expect_sent({.flags = kAck, .ack = p, .window = 8192});
}

TEST_F(TcpReceiveWindow, NoUpdateWhenTheWindowIsAlreadyAsLargeAsTheHeaderCanSay) {
  // Without window scaling the field tops out at 65535: freeing more of a large buffer cannot
  // widen it, and an ACK per read would look like a duplicate ACK to the sender (packetdrill
  // found it).
  listen_options_.rcvbuf = 1 << 20;
  auto c = establish_passive();  // mss_only(): no window scale
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = Payload(pattern(kMss))});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1 + kMss, .window = 65535});
  EXPECT_EQ(read(*c).size(), kMss);
  expect_nothing_sent();
}

TEST_F(TcpReceiveWindow, DataBeyondTheWindowIsTrimmed) {
  listen_options_.rcvbuf = 4096;  // a window of 2048
  auto c = establish_passive();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 1, .ack = iss_ + 1, .payload = Payload(pattern(3000))});
  expect_sent({.flags = kAck, .ack = kPeerIss + 1 + 2048, .window = 0});
  EXPECT_EQ(c->readable(), 2048u);
}

// ============================================================================================
// The listener's queues (Linux's behaviour: the accept queue holds backlog + 1).
// ============================================================================================

TEST_F(TcpListen, AcceptQueueHoldsBacklogPlusOneThenDropsTheFinalAck) {
  listen(/*backlog=*/1);
  std::vector<SeqNum> isses;
  for (uint16_t port : {40001, 40002, 40003}) {
    deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only(), .src_port = port});
    isses.push_back(expect_sent({.flags = kSyn | kAck, .ack = kPeerIss + 1, .dst_port = port}).seq);
  }
  EXPECT_EQ(listener_->syn_queue_size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    deliver({.seq = kPeerIss + 1, .ack = isses[i] + 1, .src_port = static_cast<uint16_t>(40001 + i)});
  }
  expect_nothing_sent();
  EXPECT_EQ(listener_->accept_queue_size(), 2u);
  EXPECT_EQ(stats().listen_ack_dropped, 1u);
  ASSERT_NE(stack_->tcp().find(tuple(40003)), nullptr);
  EXPECT_EQ(stack_->tcp().find(tuple(40003))->state(), State::kSynReceived);
  // A new SYN while the accept queue is full: dropped, unanswered.
  deliver({.flags = kSyn, .seq = kPeerIss, .options = mss_only(), .src_port = 40004});
  expect_nothing_sent();
  EXPECT_EQ(stats().listen_syn_dropped, 1u);
  // The half-open connection's SYN-ACK goes again at its RTO.
  advance(1s);
  expect_sent({.flags = kSyn | kAck, .seq = isses[2], .ack = kPeerIss + 1, .dst_port = 40003});
  // The user accepts one; the peer's next ACK is admitted.
  ASSERT_TRUE(listener_->accept());
  deliver({.seq = kPeerIss + 1, .ack = isses[2] + 1, .src_port = 40003});
  expect_nothing_sent();
  EXPECT_EQ(listener_->accept_queue_size(), 2u);
  EXPECT_EQ(stack_->tcp().find(tuple(40003))->state(), State::kEstablished);
}

// ============================================================================================
// TIME-WAIT's bound.
// ============================================================================================

// A connection its user closed waits in TIME-WAIT as a compact entry (tcp/time_wait.h), which must
// answer as the TCB did. Closed here with the peer's FIN and our ACK: we are at iss_ + 2 and the
// peer at kPeerIss + 2.
class TcpCompactTimeWait : public TcpPeerTest {
 protected:
  std::shared_ptr<TcpConnection> close_into_time_wait(const TcpOptions& syn_options = mss_only(),
                                                      const TcpOptions& fin_options = {}) {
    auto c = establish_passive(syn_options, 0ns, kPeerPort, 65535, fin_options);
    if (!c) return c;
    c->close(now());
    expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
    deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2, .options = fin_options});
    expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
    EXPECT_TRUE(in_time_wait());
    EXPECT_EQ(find(), nullptr);
    return c;
  }
};

TEST_F(TcpCompactTimeWait, AUserHeldTimeWaitIsATcbUntilItsUserCloses) {
  StackConfig config = default_config();
  config.tcp.time_wait = 10s;
  start(config);
  auto c = establish_passive();
  ASSERT_TRUE(c);
  c->shutdown_write(now());
  expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_EQ(c->state(), State::kTimeWait);
  EXPECT_EQ(find(), c.get());
  advance(4s);
  c->close(now());
  expect_nothing_sent();
  EXPECT_EQ(c->state(), State::kClosed);
  EXPECT_EQ(find(), nullptr);
  EXPECT_TRUE(in_time_wait());
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 1u);
  // The entry answers for the 4-tuple now, and waits a full 2 MSL from the close.
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  advance(10s - k1us);
  EXPECT_TRUE(in_time_wait());
  advance(k1us);
  EXPECT_FALSE(in_time_wait());
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 0u);
}

TEST_F(TcpCompactTimeWait, OutOfWindowAcksGetOneDuplicateAckPerInterval) {
  auto c = close_into_time_wait();
  ASSERT_TRUE(c);
  deliver({.seq = kPeerIss + 100'000, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  advance(100ms);
  deliver({.seq = kPeerIss + 100'000, .ack = iss_ + 2});
  expect_nothing_sent();  // tcp_invalid_ratelimit: 500 ms
  advance(400ms);
  deliver({.seq = kPeerIss + 100'000, .ack = iss_ + 2});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  // An acceptable ACK changes nothing and is not answered.
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 2});
  expect_nothing_sent();
  // An ACK of data never sent is answered with an ACK (RFC 5961 §5.2).
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 50});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_TRUE(in_time_wait());
}

TEST_F(TcpCompactTimeWait, ARstInsideTheWindowIsChallengedAndOneAtRcvNxtEndsIt) {
  auto c = close_into_time_wait();
  ASSERT_TRUE(c);
  const uint64_t challenges = stats().challenge_acks;
  deliver({.flags = kRst, .seq = kPeerIss + 10});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_EQ(stats().challenge_acks, challenges + 1);
  EXPECT_TRUE(in_time_wait());
  deliver({.flags = kRst, .seq = kPeerIss + 2});
  expect_nothing_sent();
  EXPECT_FALSE(in_time_wait());
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 0u);
  // Nobody holds the 4-tuple: a late ACK gets a RST.
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 2});
  expect_sent({.flags = kRst, .seq = iss_ + 2});
}

TEST_F(TcpCompactTimeWait, AnOldSynIsChallengedAndANewOneStartsANewIncarnation) {
  auto c = close_into_time_wait();
  ASSERT_TRUE(c);
  // A SYN inside the old sequence space: a challenge ACK (RFC 5961 §4.2), the entry stays.
  deliver({.flags = kSyn, .seq = kPeerIss + 1, .options = mss_only()});
  expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_TRUE(in_time_wait());
  // A SYN beyond it, with the listener still there: a new connection (RFC 6191).
  const SeqNum new_iss = kPeerIss + 1'000'000;
  deliver({.flags = kSyn, .seq = new_iss, .options = mss_only()});
  const SentSegment syn_ack = expect_sent({.flags = kSyn | kAck, .ack = new_iss + 1});
  EXPECT_FALSE(in_time_wait());
  ASSERT_NE(find(), nullptr);
  EXPECT_EQ(find()->state(), State::kSynReceived);
  deliver({.seq = new_iss + 1, .ack = syn_ack.seq + 1});
  auto next = listener_->accept();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->state(), State::kEstablished);
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 0u);
}

TEST_F(TcpCompactTimeWait, PawsAcksAnOldTimestampAndEchoesTsRecent) {
  auto c = close_into_time_wait(linux_syn(1000), ts(1005, our_tsval_));
  ASSERT_TRUE(c);
  // TS.Recent is the FIN's 1005; a segment stamped 900 is an old duplicate.
  const uint64_t rejected = stats().paws_rejected;
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 2, .options = ts(900, our_tsval_)});
  const SentSegment ack = expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  EXPECT_EQ(stats().paws_rejected, rejected + 1);
  ASSERT_TRUE(ack.options.timestamps);
  EXPECT_EQ(ack.options.timestamps->echo_reply, 1005u);
  // A newer one is acceptable and moves TS.Recent: the next ACK echoes it.
  deliver({.seq = kPeerIss + 2, .ack = iss_ + 2, .options = ts(2000, our_tsval_)});
  expect_nothing_sent();
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2, .options = ts(2001, our_tsval_)});
  const SentSegment again = expect_sent({.flags = kAck, .seq = iss_ + 2, .ack = kPeerIss + 2});
  ASSERT_TRUE(again.options.timestamps);
  EXPECT_EQ(again.options.timestamps->echo_reply, 2000u) << "TS.Recent moves only with acceptable segments";
}

TEST_F(TcpCompactTimeWait, HoldsItsPortFor2Msl) {
  auto c = close_into_time_wait();
  ASSERT_TRUE(c);
  // The listener holds kListenPort too; a connection's port (an ephemeral one) shows it better.
  auto active = connect();
  ASSERT_TRUE(active);
  const uint16_t port = our_port_;
  deliver({.flags = kSyn | kAck, .seq = kPeerIss, .ack = iss_ + 1, .options = mss_only()});
  expect_sent({.flags = kAck});
  active->close(now());
  expect_sent({.flags = kFin | kAck});
  deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
  expect_sent({.flags = kAck});
  ASSERT_TRUE(in_time_wait());
  tcp::PortBinding b;
  EXPECT_EQ(stack_->tcp().bind(b, Ipv4Addr::any(), port), EADDRINUSE) << "the entry holds port " << port;
  advance(default_config().tcp.time_wait);
  EXPECT_FALSE(in_time_wait());
  EXPECT_EQ(stack_->tcp().bind(b, Ipv4Addr::any(), port), 0) << "and lets go of it after 2 MSL";
  stack_->tcp().unbind(b);
}

TEST_F(TcpTimeWait, TheOldestIsEvictedBeyondMaxTimeWait) {
  StackConfig config = default_config();
  config.tcp.max_time_wait = 3;
  start(config);
  for (uint16_t port : {40001, 40002, 40003, 40004}) {
    auto c = establish_passive(mss_only(), 0ns, port);
    ASSERT_TRUE(c);
    c->close(now());
    expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
    deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
    expect_sent({.flags = kAck, .ack = kPeerIss + 2});
    EXPECT_TRUE(in_time_wait(port));
    advance(1ms);
  }
  EXPECT_EQ(stats().time_wait_evicted, 1u);
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 3u);
  EXPECT_FALSE(in_time_wait(40001)) << "the oldest went";
  for (uint16_t port : {40002, 40003, 40004}) EXPECT_TRUE(in_time_wait(port)) << port;
}

// A client's short connections leave TIME-WAIT entries on its ephemeral ports. A connect() that
// finds every port it may use taken reclaims the oldest entries' ports (several engines each have
// fewer ports than max_time_wait, so the bound alone would not free any).
TEST_F(TcpTimeWait, AConnectThatFindsEveryPortTakenReclaimsTheOldestTimeWaitPort) {
  StackConfig config = default_config();
  config.tcp.ephemeral_low = 40000;
  config.tcp.ephemeral_high = 40003;
  start(config);
  std::vector<uint16_t> ports;
  for (int k = 0; k < 4; ++k) {
    auto c = establish_active();
    ASSERT_TRUE(c);
    ports.push_back(our_port_);
    c->close(now());
    expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
    deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
    expect_sent({.flags = kAck, .ack = kPeerIss + 2});
    ASSERT_TRUE(in_time_wait());
    advance(1ms);
  }
  EXPECT_EQ(std::set<uint16_t>(ports.begin(), ports.end()).size(), 4u) << "every port in use";
  EXPECT_EQ(stats().time_wait_evicted, 0u);
  auto fifth = connect();
  ASSERT_TRUE(fifth) << "no port reclaimed";
  EXPECT_EQ(our_port_, ports[0]) << "the oldest entry's port";
  EXPECT_EQ(stats().time_wait_evicted, 1u);
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 3u);
}

// Once a scan of the range found every port taken, the next connects to that destination take
// the reclaimed ports, and reclaim the next batch when they run out, without scanning again.
TEST_F(TcpTimeWait, AfterAFailedScanConnectsTakeReclaimedPortsWithoutScanningAgain) {
  StackConfig config = default_config();
  config.tcp.ephemeral_low = 40000;
  config.tcp.ephemeral_high = 40007;
  start(config);
  auto into_time_wait = [&] {
    auto c = establish_active();
    if (!c) return false;
    c->close(now());
    expect_sent({.flags = kFin | kAck, .seq = iss_ + 1});
    deliver({.flags = kFin | kAck, .seq = kPeerIss + 1, .ack = iss_ + 2});
    expect_sent({.flags = kAck, .ack = kPeerIss + 2});
    advance(1ms);
    return in_time_wait();
  };
  for (int k = 0; k < 8; ++k) ASSERT_TRUE(into_time_wait());
  EXPECT_EQ(stats().connect_ports_exhausted, 0u);
  for (int k = 0; k < 12; ++k) ASSERT_TRUE(into_time_wait()) << "connection " << 8 + k;
  EXPECT_EQ(stats().connect_ports_exhausted, 1u) << "one failed scan, then the reclaimed ports";
  EXPECT_EQ(stats().time_wait_evicted, 12u);
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 8u);
  // A port that comes free otherwise (an entry's 2 MSL end) ends it: the next connect scans.
  advance(default_config().tcp.time_wait);
  EXPECT_EQ(stack_->tcp().time_wait_connections(), 0u);
  ASSERT_TRUE(into_time_wait());
  EXPECT_EQ(stats().connect_ports_exhausted, 1u);
}

}  // namespace
}  // namespace ustack::test
