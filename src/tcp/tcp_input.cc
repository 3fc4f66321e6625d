// SEGMENT ARRIVES (RFC 9293 §3.10.7), for a connection the demultiplexer found. The steps keep
// the RFC's numbering ("first", "second", ...) with RFC 5961's changes for blind attacks and
// RFC 7323's PAWS in front of the sequence check.

#include <algorithm>
#include <cerrno>

#include "base/waitable.h"
#include "tcp/tcp_connection.h"
#include "tcp/tcp_layer.h"
#include "tcp/tcp_listener.h"

namespace ustack::tcp {

namespace {
// RFC 6298 (5.7): a handshake that needed a retransmission gave no RTT sample; data starts with
// an RTO of 3 s (Linux's TCP_TIMEOUT_FALLBACK), not with the SYN timer's backed-off value.
Duration handshake_fallback_rto(const RtoConfig& c) { return std::max<Duration>(c.initial, 3s); }
}  // namespace

void TcpConnection::segment_arrives(Instant now, const SegmentRepr& seg, Packet payload) {
  if (state_ == State::kClosed) return;
  const Settle settle(*this);
  if (state_ == State::kSynSent) {
    syn_sent_input(now, seg, payload);
    output(now);
    return;
  }
  // RFC 7323 §5.3 R1: an old timestamp marks an old duplicate; ACK it (unless it is a RST).
  if (paws_reject(now, seg)) {
    layer_.stats().paws_rejected.inc();
    if (!(seg.flags & kRst)) send_ack(now);
    return;
  }
  const uint8_t syn_ack_rst = seg.flags & (kSyn | kAck | kRst);
  // In SYN-RECEIVED the peer's SYN again means our SYN-ACK was lost: send it again (Linux's
  // tcp_check_req()). It lies before RCV.NXT, so the sequence check would answer it with an ACK,
  // which a peer in SYN-SENT drops.
  if (state_ == State::kSynReceived && syn_ack_rst == kSyn && seg.seq == irs_) {
    send_syn(now);
    return;
  }
  // Simultaneous open (RFC 9293 figure 8, line 6): the peer's SYN-ACK repeats its SYN, before
  // RCV.NXT, and acknowledges ours. Linux's tcp_validate_incoming() lets it through to the ACK.
  const bool simultaneous_syn_ack = state_ == State::kSynReceived && !listener_ &&
                                    syn_ack_rst == (kSyn | kAck) && seg.seq == irs_ && seg.ack == snd_nxt_;
  // first: check the sequence number.
  if (!simultaneous_syn_ack && !acceptable(seg)) {
    layer_.stats().out_of_window.inc();
    if (seg.flags & kRst) return;  // never answer a RST
    if (seg.flags & kSyn) {        // RFC 5961 §4.2
      send_challenge_ack(now);
      return;
    }
    // RFC 9293 §3.10.7.4, TIME-WAIT: a retransmission of the peer's FIN (it fails the sequence
    // check, being before RCV.NXT) is acknowledged and restarts the 2 MSL timeout.
    if (state_ == State::kTimeWait && (seg.flags & kFin)) {
      arm(kRetransmitTimer, now + layer_.config().time_wait);
    }
    // A pure ACK out of window gets one duplicate ACK per tcp_invalid_ratelimit, as in Linux
    // (two stacks disagreeing about the window must not ping-pong ACKs at line rate).
    if (seg.payload.empty() && !(seg.flags & kFin)) {
      if (now - last_invalid_ack_ < layer_.config().invalid_ack_interval) return;
      last_invalid_ack_ = now;
    }
    send_ack(now);
    return;
  }
  // second: the RST bit (RFC 5961 §3.2).
  if (seg.flags & kRst) {
    reset_input(now, seg);
    return;
  }
  // fourth: a SYN in a synchronized state is answered with a challenge ACK (RFC 5961 §4.2).
  if ((seg.flags & kSyn) && !simultaneous_syn_ack) {
    send_challenge_ack(now);
    return;
  }
  // fifth: the ACK field.
  if (!(seg.flags & kAck)) return;
  if (!ack_input(now, seg)) return;
  // RFC 7323 §4.3 (2): remember the peer's timestamp to echo it; only once the ACK proved
  // acceptable (Linux's order), so that a forged segment cannot move TS.Recent ahead and make
  // PAWS drop the real peer's segments.
  if (ts_enabled_ && seg.options.timestamps && seg.seq <= last_ack_sent_) {
    const uint32_t tsval = seg.options.timestamps->value;
    if (static_cast<int32_t>(tsval - ts_recent_) >= 0) {
      ts_recent_ = tsval;
      ts_recent_stamp_ = now;
    }
  }
  // seventh: the segment text; eighth: the FIN bit. data_input() reads last_receive_ (quick-ack
  // mode after an idle spell), so it moves only afterwards.
  data_input(now, seg, payload);
  last_receive_ = now;
  if (busy_) busy_->keepalive_probes_sent = 0;
  if (state_ == State::kClosed) return;
  if (seg.flags & kFin) {
    const SeqNum fin_at = seg.seq + static_cast<uint32_t>(seg.payload.size());
    if (fin_at == rcv_nxt_) {
      fin_input(now);
    } else if (fin_at > rcv_nxt_) {
      busy().ooo_fin = fin_at;  // after a gap: it counts once the data before it is in
    }
  }
  if (state_ == State::kClosed) return;
  output(now);
}

void TcpConnection::syn_sent_input(Instant now, const SegmentRepr& seg, Packet& payload) {
  const bool has_ack = seg.flags & kAck;
  // first: the ACK must be for our SYN.
  if (has_ack && (seg.ack <= iss_ || seg.ack > snd_max_)) {
    if (!(seg.flags & kRst)) send_control(now, seg.ack, kRst);
    return;
  }
  // second: a RST with an acceptable ACK refuses the connection.
  if (seg.flags & kRst) {
    if (has_ack) {
      layer_.stats().rx_resets.inc();
      closed(ECONNREFUSED);
    }
    return;
  }
  // fourth: the SYN.
  if (!(seg.flags & kSyn)) return;
  irs_ = seg.seq;
  rcv_nxt_ = seg.seq + 1;
  busy().rx.reset(rcv_nxt_);
  rcv_adv_ = rcv_nxt_;
  take_options(seg.options, has_ack);
  snd_wnd_ = max_snd_wnd_ = seg.window;  // RFC 7323 §2.2: never scaled in a SYN
  snd_wl1_ = seg.seq;
  snd_wl2_ = seg.ack;
  if (ts_enabled_) ts_recent_stamp_ = now;
  if (has_ack) {
    snd_una_ = seg.ack;
    if (busy().retransmits == 0) {
      rtt_.sample(now - last_send_);  // Karn: only a SYN sent once
    } else {
      rtt_ = RttEstimator(layer_.config().rto, handshake_fallback_rto(layer_.config().rto));
    }
    busy().retransmits = 0;
    disarm(kRetransmitTimer);
    set_state(State::kEstablished);
    established(now);
    busy().ack_now = true;
    last_receive_ = now;
    data_input(now, seg, payload);
    if (seg.flags & kFin) fin_input(now);
    notify(kPollOut | kPollWrNorm);
    return;
  }
  // Simultaneous open (RFC 9293 §3.5, figure 8).
  set_state(State::kSynReceived);
  busy().retransmits = 0;
  send_syn(now);
  arm_retransmit(now);
}

bool TcpConnection::paws_reject(Instant now, const SegmentRepr& seg) const {
  if (!ts_enabled_ || !seg.options.timestamps || (seg.flags & kRst)) return false;
  if (now - ts_recent_stamp_ > kPawsIdle) return false;
  const uint32_t tsval = seg.options.timestamps->value;
  if (static_cast<int32_t>(tsval - ts_recent_) >= 0) return false;
  // Linux's tcp_disordered_ack(): a duplicate pure ACK that the network reordered behind a newer
  // segment is no old duplicate of another incarnation; dropping it would hide duplicate ACKs from
  // fast retransmit. It must change nothing (sequence, ACK, window) and be younger than an RTO.
  const bool pure_duplicate_ack = (seg.flags & (kAck | kSyn | kFin)) == kAck && seg.payload.empty() &&
                                  seg.seq == rcv_nxt_ && seg.ack == snd_una_ &&
                                  (static_cast<uint32_t>(seg.window) << snd_wscale_) == snd_wnd_;
  const auto rto_ms = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(rtt_.rto()).count());
  return !(pure_duplicate_ack && ts_recent_ - tsval <= rto_ms);
}

bool segment_acceptable(const SegmentRepr& seg, SeqNum rcv_nxt, uint32_t wnd) {
  const uint32_t len = seg.seq_len();
  if (len == 0) return wnd == 0 ? seg.seq == rcv_nxt : seg.seq.in_window(rcv_nxt, wnd);
  if (wnd == 0) return false;
  return seg.seq.in_window(rcv_nxt, wnd) || (seg.seq + (len - 1)).in_window(rcv_nxt, wnd);
}

bool TcpConnection::acceptable(const SegmentRepr& seg) const {
  return segment_acceptable(seg, rcv_nxt_, rcv_adv_ > rcv_nxt_ ? static_cast<uint32_t>(rcv_adv_ - rcv_nxt_) : 0);
}

void TcpConnection::reset_input(Instant now, const SegmentRepr& seg) {
  // RFC 5961 §3.2: only a RST at exactly RCV.NXT resets; one elsewhere in the window might be
  // blind, so challenge the peer to prove it knows the sequence.
  if (seg.seq != rcv_nxt_) {
    send_challenge_ack(now);
    return;
  }
  layer_.stats().rx_resets.inc();
  switch (state_) {
    case State::kSynReceived:
      // Passive: back to LISTEN (the half-open connection just goes). Active: refused.
      closed(listener_ ? 0 : ECONNREFUSED);
      return;
    case State::kEstablished:
    case State::kFinWait1:
    case State::kFinWait2:
    case State::kCloseWait:
      closed(ECONNRESET);
      return;
    default:  // CLOSING, LAST-ACK, TIME-WAIT
      closed(0);
      return;
  }
}

bool TcpConnection::ack_input(Instant now, const SegmentRepr& seg) {
  if (state_ == State::kSynReceived) {
    if (!(snd_una_ < seg.ack && seg.ack <= snd_max_)) {
      send_control(now, seg.ack, kRst);
      return false;
    }
    // The handshake completes; Linux drops the ACK instead when the accept queue is full, and
    // the SYN-ACK's retransmission gives the peer another go later.
    if (listener_ && !layer_.admit_to_accept_queue(*this)) return false;
    if (busy().retransmits == 0) {
      rtt_.sample(now - last_send_);
    } else {
      rtt_ = RttEstimator(layer_.config().rto, handshake_fallback_rto(layer_.config().rto));
    }
    busy().retransmits = 0;
    snd_wnd_ = static_cast<uint32_t>(seg.window) << snd_wscale_;
    max_snd_wnd_ = std::max(max_snd_wnd_, snd_wnd_);
    snd_wl1_ = seg.seq;
    snd_wl2_ = seg.ack;
    snd_una_ = seg.ack;
    disarm(kRetransmitTimer);
    set_state(State::kEstablished);
    established(now);
    notify(kPollOut | kPollWrNorm);
    if (fin_queued_) set_state(State::kFinWait1);
  }
  // RFC 5961 §5.2: an ACK for data never sent, or for data older than the largest window we
  // were ever offered, is dropped with an ACK.
  if (seg.ack > snd_max_) {
    send_ack(now);
    return false;
  }
  if (seg.ack < snd_una_ - max_snd_wnd_) {
    send_challenge_ack(now);
    return false;
  }
  const uint32_t wnd = static_cast<uint32_t>(seg.window) << snd_wscale_;
  if (seg.ack > snd_una_) {
    new_ack(now, seg, static_cast<uint32_t>(seg.ack - snd_una_));
  } else if (seg.ack == snd_una_ && seg.payload.empty() && !(seg.flags & (kSyn | kFin)) && wnd == snd_wnd_ &&
             snd_max_ > snd_una_ && wnd != 0) {
    // RFC 5681 §2's definition, all five conditions. A closed window's ACKs (the answers to
    // zero-window probes, whose byte counts as outstanding) say nothing about loss.
    duplicate_ack(now);
  }
  update_window(seg);
  switch (state_) {
    case State::kFinWait1:
      if (fin_acked()) {
        set_state(State::kFinWait2);
        disarm(kRetransmitTimer);
        if (orphaned_) {
          busy().rtx_mode = RtxMode::kFinWait2;
          arm(kRetransmitTimer, now + layer_.config().fin_wait2_timeout);
        }
      }
      break;
    case State::kClosing:
      if (fin_acked()) {
        enter_time_wait(now);
        return false;
      }
      break;
    case State::kLastAck:
      if (fin_acked()) {
        closed(0);
        return false;
      }
      break;
    default:
      break;
  }
  return true;
}

void TcpConnection::new_ack(Instant now, const SegmentRepr& seg, uint32_t acked) {
  const uint32_t flight_before = in_flight();
  // The SYN and the FIN take a sequence number each but no byte of the queue.
  const SeqNum data_ack = min(seg.ack, busy().tx.tail());
  const SendQueue::Acked done = busy().tx.acknowledge(data_ack, now);
  snd_una_ = seg.ack;
  if (snd_nxt_ < snd_una_) snd_nxt_ = snd_una_;
  // RFC 6298 (2.2)/(2.3) with Karn's rule: only segments sent once give samples.
  if (done.sent_at) rtt_.sample(now - *done.sent_at);
  busy().retransmits = 0;
  if (busy().in_recovery) {
    if (seg.ack > recover_) {
      // RFC 6582 §3.2 step 6: a full ACK ends recovery.
      busy().in_recovery = false;
      busy().dup_acks = 0;
      cc_.exit_fast_recovery(in_flight());
    } else {
      // Step 5: a partial ACK; the next hole is lost too. Retransmit it at once.
      retransmit_head(now);
      cc_.deflate(acked);
      arm_retransmit(now);  // the "impatient" variant: every partial ACK resets the timer
    }
  } else {
    busy().dup_acks = 0;
    cc_.on_ack(now, done.bytes, flight_before);
  }
  // RFC 6298 (5.2)/(5.3).
  if (snd_max_ == snd_una_) {
    const RtxMode mode = busy().rtx_mode;
    if (mode == RtxMode::kRetransmit || mode == RtxMode::kPersist) disarm(kRetransmitTimer);
  } else {
    arm_retransmit(now);
  }
  if (done.bytes > 0) notify(kPollOut | kPollWrNorm);
}

void TcpConnection::duplicate_ack(Instant now) {
  ++busy().dup_acks;
  if (busy().in_recovery) {
    cc_.inflate();  // RFC 6582 §3.2 step 4; output() may send new data
    return;
  }
  // RFC 6582 §3.2 steps 1-2: three duplicates start a fast retransmit, unless this ACK does not
  // cover the last recovery point (then they are echoes of the old loss).
  if (busy().dup_acks != 3 || snd_una_ - 1 < recover_) return;
  layer_.stats().fast_retransmits.inc();
  busy().in_recovery = true;
  recover_ = snd_max_ - 1;
  cc_.on_loss(now, in_flight());
  retransmit_head(now);
  cc_.enter_fast_recovery();
  arm_retransmit(now);
}

void TcpConnection::update_window(const SegmentRepr& seg) {
  // RFC 9293 §3.10.7.4: only a newer segment (by SEQ, then ACK) updates the send window.
  if (snd_wl1_ < seg.seq || (snd_wl1_ == seg.seq && snd_wl2_ <= seg.ack)) {
    const uint32_t old = snd_wnd_;
    snd_wnd_ = static_cast<uint32_t>(seg.window) << snd_wscale_;
    max_snd_wnd_ = std::max(max_snd_wnd_, snd_wnd_);
    snd_wl1_ = seg.seq;
    snd_wl2_ = seg.ack;
    if (old == 0 && snd_wnd_ > 0 && armed(kRetransmitTimer) && busy_->rtx_mode == RtxMode::kPersist) {
      disarm(kRetransmitTimer);
      busy_->retransmits = 0;
    }
  }
}

void TcpConnection::data_input(Instant now, const SegmentRepr& seg, Packet& payload) {
  if (seg.payload.empty()) return;
  if (state_ != State::kEstablished && state_ != State::kFinWait1 && state_ != State::kFinWait2) {
    return;  // RFC 9293: after the peer's FIN, text "should not occur"; ignore it
  }
  const SeqNum end = seg.seq + static_cast<uint32_t>(seg.payload.size());
  // Linux (tcp_rcv_state_process): new data for a socket the user closed has nowhere to go;
  // the peer must learn that at once, with a RST.
  if (orphaned_ && end > rcv_nxt_) {
    layer_.stats().rx_after_close.inc();
    abort(now, 0);
    return;
  }
  // Trim to the window: what lies beyond the advertised right edge is not kept.
  SeqNum seq = seg.seq;
  size_t len = seg.payload.size();
  if (end > rcv_adv_) len -= static_cast<size_t>(end - rcv_adv_);
  payload.truncate(len);
  if (len == 0) {
    busy().ack_now = true;
    return;
  }
  const bool had_gap = busy().rx.has_out_of_order();
  uint32_t copies = 0;
  const ReceiveQueue::Added added = busy().rx.add(seq, std::move(payload), layer_.device_buffers_scarce(), &copies);
  if (copies > 0) layer_.stats().rx_copied_small.inc(copies);
  switch (added) {
    case ReceiveQueue::Added::kInOrder: {
      rcv_nxt_ = busy().rx.next();
      // Linux's quick-ack mode: after an idle spell the peer is likely in slow start; ACK every
      // segment for a while so that it grows its window fast.
      if (now - last_receive_ > rtt_.rto()) quick_acks_ = static_cast<uint8_t>(std::min<uint32_t>(layer_.config().quick_acks, UINT8_MAX));
      if (had_gap) busy().ack_now = true;  // RFC 5681 §4.2: a segment that fills a gap is ACKed at once
      schedule_ack(now);
      if (busy().ooo_fin && *busy().ooo_fin == rcv_nxt_) {
        busy().ooo_fin.reset();
        fin_input(now);
      }
      notify(kPollIn | kPollRdNorm);
      break;
    }
    case ReceiveQueue::Added::kOutOfOrder:
      layer_.stats().ooo_segments.inc();
      busy().ack_now = true;  // RFC 5681 §4.2: a duplicate ACK at once for out-of-order data
      break;
    case ReceiveQueue::Added::kDropped:
      layer_.stats().ooo_dropped.inc();
      busy().ack_now = true;
      break;
    case ReceiveQueue::Added::kDuplicate:
      busy().ack_now = true;
      break;
  }
}

void TcpConnection::fin_input(Instant now) {
  busy().rx.skip_one();  // first: a block made now starts at RCV.NXT
  rcv_nxt_ += 1;
  rcv_shutdown_ = true;
  busy().ack_now = true;
  switch (state_) {
    case State::kSynReceived:
    case State::kEstablished:
      set_state(State::kCloseWait);
      break;
    case State::kFinWait1:
      if (fin_acked()) {
        enter_time_wait(now);
      } else {
        set_state(State::kClosing);
      }
      break;
    case State::kFinWait2:
      disarm(kRetransmitTimer);
      enter_time_wait(now);
      break;
    case State::kTimeWait:
      arm(kRetransmitTimer, now + layer_.config().time_wait);  // RFC 9293: restart 2 MSL
      break;
    default:
      break;
  }
  notify(kPollIn | kPollRdNorm | kPollRdHup);
}

}  // namespace ustack::tcp
