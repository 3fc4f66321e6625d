// The sender and the ACK policy: segmentation to the MSS, the windows (send window, cwnd),
// Nagle (RFC 896) and sender-side SWS avoidance (RFC 9293 §3.8.6.2.1), receiver-side SWS
// avoidance and window updates (§3.8.6.2.2), delayed ACKs (RFC 1122 §4.2.3.2, RFC 9293
// §3.8.6.3), and the timers: retransmission (RFC 6298), persist (§3.8.6.1), keep-alive
// (§3.8.4), TIME-WAIT and FIN-WAIT-2.

#include <algorithm>
#include <cerrno>

#include "tcp/tcp_connection.h"
#include "tcp/tcp_layer.h"

namespace ustack::tcp {

uint32_t TcpConnection::ts_now(Instant now) const { return tsval_at(now, ts_offset_); }

TcpOptions TcpConnection::segment_options(Instant now, bool syn) const {
  TcpOptions o;
  if (syn) {
    o.mss = adv_mss_;
    // A SYN offers everything; a SYN-ACK only echoes what the peer's SYN offered.
    const bool offering = state_ == State::kSynSent;
    if (offering || wscale_ok_) o.window_scale = rcv_wscale_;
    if (offering || sack_ok_) o.sack_permitted = true;
    if (offering) {
      o.timestamps = TcpOptions::Timestamps{ts_now(now), 0};
      return o;
    }
  }
  if (ts_enabled_) o.timestamps = TcpOptions::Timestamps{ts_now(now), ts_recent_};
  return o;
}

uint32_t TcpConnection::receive_space() const {
  // Like Linux with tcp_adv_win_scale = 1: half the buffer is window, half is the overhead of
  // the buffers that carry it. No more than the header can say with our scale.
  const size_t limit = options_.rcvbuf / 2;
  const size_t held = readable();
  const size_t space = held >= limit ? 0 : limit - held;
  const size_t most = state_ == State::kSynSent || state_ == State::kSynReceived ? 65535 : size_t{65535} << rcv_wscale_;
  return static_cast<uint32_t>(std::min(space, most));
}

uint16_t TcpConnection::window_field() {
  if (state_ == State::kSynSent || state_ == State::kSynReceived) {
    // RFC 7323 §2.2: the window in a SYN is never scaled.
    const uint32_t w = std::min<uint32_t>(receive_space(), 65535);
    rcv_adv_ = max(rcv_adv_, rcv_nxt_ + w);
    return static_cast<uint16_t>(w);
  }
  const uint32_t space = receive_space();
  const uint32_t current = rcv_adv_ > rcv_nxt_ ? static_cast<uint32_t>(rcv_adv_ - rcv_nxt_) : 0;
  uint32_t wnd = current;
  // RFC 9293 §3.8.6.2.2: move the right edge only by a worthwhile amount (min(buffer/2, MSS)).
  const uint32_t worthwhile = std::min<uint32_t>(options_.rcvbuf / 4, adv_mss_);
  if (space >= current + worthwhile || (space > current && space == options_.rcvbuf / 2)) wnd = space;
  // Never shrink (RFC 9293 §3.8.6.2.2 "SHOULD NOT shrink"): round up to the scale's unit.
  const uint32_t unit = 1u << rcv_wscale_;
  uint32_t field = (wnd + unit - 1) >> rcv_wscale_;
  field = std::min<uint32_t>(field, 65535);
  const SeqNum edge = rcv_nxt_ + (field << rcv_wscale_);
  rcv_adv_ = max(rcv_adv_, edge);
  return static_cast<uint16_t>(field);
}

bool TcpConnection::window_update_due() const {
  if (state_ != State::kEstablished && state_ != State::kFinWait1 && state_ != State::kFinWait2) return false;
  const uint32_t current = rcv_adv_ > rcv_nxt_ ? static_cast<uint32_t>(rcv_adv_ - rcv_nxt_) : 0;
  const uint32_t space = receive_space();
  if (space <= current) return false;
  // Like Linux's tcp_cleanup_rbuf(): worth an ACK of its own when the window at least doubles
  // and grows by a worthwhile amount.
  const uint32_t growth = space - current;
  return growth >= std::min<uint32_t>(options_.rcvbuf / 4, adv_mss_) && growth >= current;
}

void TcpConnection::send_syn(Instant now) {
  SegmentRepr h;
  h.src_port = tuple_.local_port;
  h.dst_port = tuple_.remote_port;
  h.seq = iss_;
  h.flags = kSyn;
  if (state_ == State::kSynReceived) {
    h.flags |= kAck;
    h.ack = rcv_nxt_;
  }
  h.window = window_field();
  h.options = segment_options(now, true);
  layer_.transmit(now, *this, h, Packet());
  snd_nxt_ = iss_ + 1;
  snd_max_ = max(snd_max_, snd_nxt_);
  last_send_ = now;
  if (h.flags & kAck) last_ack_sent_ = rcv_nxt_;
}

void TcpConnection::send_control(Instant now, SeqNum seq, uint8_t flags, std::span<const uint8_t> payload) {
  SegmentRepr h;
  h.src_port = tuple_.local_port;
  h.dst_port = tuple_.remote_port;
  h.seq = seq;
  h.flags = flags;
  if (flags & kAck) h.ack = rcv_nxt_;
  // A RST without ACK (answering a stray ACK) carries no window, like Linux's.
  h.window = (flags & kAck) ? window_field() : 0;
  if (synchronized() || state_ == State::kSynSent) h.options = segment_options(now, false);
  Packet p;
  if (!payload.empty()) {
    p = layer_.alloc_segment(payload.size());
    if (!p) return;
    std::copy(payload.begin(), payload.end(), p.append(payload.size()));
  }
  layer_.transmit(now, *this, h, std::move(p));
  if (flags & kRst) layer_.stats().tx_resets.inc();
  if (flags & kAck) {
    last_ack_sent_ = rcv_nxt_;
    if (busy_) busy_->ack_now = false;
    disarm(kDelayedAckTimer);
  }
}

SeqNum TcpConnection::ack_seq() const {
  // A segment with neither data nor SYN/FIN carries SND.MAX, as BSD's tcp_output() does, not
  // SND.NXT: a retransmission timeout moves SND.NXT back to SND.UNA, and a peer that already has
  // more (what arrived after the lost segment) finds SEG.SEQ < RCV.NXT and drops the ACK as out
  // of window (RFC 9293 §3.10.7.4). In a two-way transfer where both ends timed out, each then
  // dropped the other's every ACK until the connection timed out. While a zero-window probe is
  // out, SND.MAX counts the probe byte, which the peer's closed window did not take: SND.NXT.
  const bool probing = armed(kRetransmitTimer) && busy_->rtx_mode == RtxMode::kPersist;
  return probing ? snd_nxt_ : snd_max_;
}

void TcpConnection::send_challenge_ack(Instant now) {
  if (!layer_.allow_challenge_ack(now)) {
    layer_.stats().challenge_acks_limited.inc();
    return;
  }
  layer_.stats().challenge_acks.inc();
  send_ack(now);
}

void TcpConnection::send_reset(Instant now) { send_control(now, snd_nxt_, kRst | kAck); }

bool TcpConnection::send_data_segment(Instant now, SeqNum seq, uint32_t len, bool fin, bool retransmission) {
  SegmentRepr h;
  h.src_port = tuple_.local_port;
  h.dst_port = tuple_.remote_port;
  h.seq = seq;
  h.ack = rcv_nxt_;
  h.flags = kAck;
  Packet payload;
  if (len > 0) {
    bool copied = false;
    payload = busy().tx.payload(seq, len, layer_, &copied);
    if (!payload) return false;
    if (copied) layer_.stats().tx_payload_copied.inc();
    len = static_cast<uint32_t>(payload.size());
    if (seq + len == send_tail()) h.flags |= kPsh;  // the last byte the user wrote so far
  }
  if (fin) h.flags |= kFin;
  h.window = window_field();
  h.options = segment_options(now, false);
  busy().tx.mark_sent(seq, len, now, retransmission);
  layer_.transmit(now, *this, h, std::move(payload));
  snd_max_ = max(snd_max_, seq + len + (fin ? 1 : 0));
  if (retransmission) layer_.stats().retransmits.inc();
  last_send_ = now;
  last_ack_sent_ = rcv_nxt_;
  busy_->ack_now = false;
  disarm(kDelayedAckTimer);
  return true;
}

void TcpConnection::output(Instant now) {
  switch (state_) {
    case State::kEstablished:
    case State::kCloseWait:
    case State::kFinWait1:
    case State::kLastAck:
    case State::kClosing:
      break;
    case State::kFinWait2:
    case State::kTimeWait:
      if (busy_ && busy_->ack_now) send_ack(now);
      return;
    default:
      return;  // the handshake sends its own segments
  }
  const SeqNum data_end = send_tail();
  for (;;) {
    const uint32_t unsent = snd_nxt_ < data_end ? static_cast<uint32_t>(data_end - snd_nxt_) : 0;
    const bool fin_due = fin_queued_ && snd_nxt_ == data_end;
    if (unsent == 0 && !fin_due) break;
    if (unsent == 0) {
      if (!send_data_segment(now, snd_nxt_, 0, true, snd_nxt_ < snd_max_)) break;
      snd_nxt_ += 1;
      break;
    }
    const uint32_t wnd = std::min(snd_wnd_, cc_.cwnd());
    const uint32_t flight = static_cast<uint32_t>(snd_nxt_ - snd_una_);
    const uint32_t usable = wnd > flight ? wnd - flight : 0;
    uint32_t len = std::min({unsent, uint32_t{snd_mss_}, usable});
    const uint32_t contiguous = busy().tx.contiguous_from(snd_nxt_);
    if (contiguous > 0 && len > contiguous) len = contiguous;  // one chunk: no copy
    if (len == 0) break;
    if (len < snd_mss_) {
      // A short segment. Nagle (RFC 896): the last bytes only when nothing is unacknowledged, or
      // with TCP_NODELAY. SWS (RFC 9293 §3.8.6.2.1): or half the peer's window (its current one:
      // a receiver whose buffer shrank would otherwise only see persist probes). A chunk
      // that went out short once (the user wrote little) stays a segment of its own, and
      // retransmissions go as they are.
      const bool chunk_bounded = len == contiguous && len < unsent;
      const bool retransmission = snd_nxt_ < snd_max_;
      const bool all_there_is = len == unsent;
      const bool nagle_allows = options_.nodelay || flight == 0 || fin_queued_;
      const bool half_window = snd_wnd_ > 0 && len >= snd_wnd_ / 2;
      if (!(chunk_bounded || retransmission || (all_there_is && nagle_allows) || half_window)) break;
    }
    const bool fin = fin_queued_ && snd_nxt_ + len == data_end;
    if (!send_data_segment(now, snd_nxt_, len, fin, snd_nxt_ < snd_max_)) break;
    snd_nxt_ += len + (fin ? 1 : 0);
    if (fin) break;
  }
  if (busy_ && busy_->ack_now) send_ack(now);
  // Timers: something unacknowledged runs the retransmission timer; data held back by a closed
  // window runs the persist timer.
  if (snd_nxt_ > snd_una_ || (snd_max_ > snd_una_ && snd_wnd_ > 0)) {
    if (!armed(kRetransmitTimer) || busy_->rtx_mode != RtxMode::kRetransmit) arm_retransmit(now);
  } else if ((snd_nxt_ < data_end || (fin_queued_ && snd_nxt_ == data_end)) && !armed(kRetransmitTimer)) {
    arm_persist(now);
  }
}

void TcpConnection::output_forced(Instant now) {
  // The persist timer overrides Nagle and SWS avoidance: what the window takes goes now.
  const SeqNum data_end = busy().tx.tail();
  if (snd_nxt_ >= data_end) {
    if (fin_queued_ && snd_nxt_ == data_end && send_data_segment(now, snd_nxt_, 0, true, false)) snd_nxt_ += 1;
    return;
  }
  const uint32_t flight = static_cast<uint32_t>(snd_nxt_ - snd_una_);
  const uint32_t room = snd_wnd_ > flight ? snd_wnd_ - flight : 1;
  const uint32_t len = std::min({static_cast<uint32_t>(data_end - snd_nxt_), uint32_t{snd_mss_}, room});
  const bool fin = fin_queued_ && snd_nxt_ + len == data_end;
  if (send_data_segment(now, snd_nxt_, len, fin, snd_nxt_ < snd_max_)) snd_nxt_ += len + (fin ? 1 : 0);
}

void TcpConnection::retransmit_head(Instant now) {
  const SeqNum data_end = busy().tx.tail();
  if (snd_una_ < data_end) {
    const uint32_t len = std::min<uint32_t>(snd_mss_, static_cast<uint32_t>(data_end - snd_una_));
    const bool fin = fin_queued_ && snd_una_ + len == data_end && snd_max_ > data_end;
    send_data_segment(now, snd_una_, len, fin, true);
  } else if (fin_queued_ && snd_max_ > data_end) {
    send_data_segment(now, data_end, 0, true, true);
  }
}

void TcpConnection::schedule_ack(Instant now) {
  // RFC 9293 §3.8.6.3 / RFC 1122: ACK at least every second full-sized segment, and within
  // the delayed-ACK time otherwise.
  const uint32_t unacked = static_cast<uint32_t>(rcv_nxt_ - last_ack_sent_);
  const uint32_t full = adv_mss_ - (ts_enabled_ ? 12 : 0);
  if (quick_acks_ > 0) {
    --quick_acks_;
    busy().ack_now = true;
    return;
  }
  // Linux's __tcp_ack_snd_check(): more than one full segment's worth, not two whole ones: a
  // burst that ends in a short segment is ACKed at once instead of waiting for the timer, while
  // the sender's tail-loss probe (about 2 RTTs) would resend it.
  if (unacked > full) {
    busy().ack_now = true;
    return;
  }
  if (!armed(kDelayedAckTimer)) arm(kDelayedAckTimer, now + layer_.config().delayed_ack);
}

void TcpConnection::arm_retransmit(Instant now) {
  busy().rtx_mode = RtxMode::kRetransmit;
  arm(kRetransmitTimer, now + rtt_.rto());
}

void TcpConnection::arm_persist(Instant now) {
  busy().rtx_mode = RtxMode::kPersist;
  // RFC 9293 §3.8.6.1: probe after an RTO, backing off exponentially like it.
  Duration wait = rtt_.rto();
  for (int i = 0; i < busy().retransmits && wait < layer_.config().rto.max; ++i) wait *= 2;
  arm(kRetransmitTimer, now + std::min(wait, layer_.config().rto.max));
}

void TcpConnection::arm_keepalive(Instant now) {
  if (!options_.keepalive || !synchronized() || state_ == State::kTimeWait) {
    disarm(kKeepaliveTimer);
    return;
  }
  const Instant at = !busy_ || busy_->keepalive_probes_sent == 0 ? last_receive_ + options_.keepalive_idle
                                                 : now + options_.keepalive_interval;
  arm(kKeepaliveTimer, std::max(at, now));
}

TimerWheel& TcpConnection::layer_timers() { return layer_.timers(); }

void TcpConnection::on_timer(TimerEntry&, Instant now) {
  const Settle settle(*this);
  busy_->timers.expire(layer_.timers(), now, [&](size_t kind) {
    switch (kind) {
      case kRetransmitTimer:
        switch (busy_->rtx_mode) {
          case RtxMode::kRetransmit: retransmit_timeout(now); break;
          case RtxMode::kPersist: persist_timeout(now); break;
          case RtxMode::kTimeWait:
          case RtxMode::kFinWait2: closed(0); break;
        }
        return;
      case kDelayedAckTimer:
        if (synchronized() && rcv_nxt_ != last_ack_sent_) {
          layer_.stats().delayed_acks.inc();
          send_ack(now);
        }
        return;
      case kKeepaliveTimer:
        keepalive_timeout(now);
        return;
    }
  });
}

void TcpConnection::retransmit_timeout(Instant now) {
  const TcpConfig& config = layer_.config();
  if (state_ == State::kSynSent || state_ == State::kSynReceived) {
    const int limit = state_ == State::kSynSent ? config.syn_retries : config.synack_retries;
    if (busy().retransmits >= limit) {
      layer_.stats().timeouts.inc();
      closed(listener_ ? 0 : ETIMEDOUT);
      return;
    }
    ++busy().retransmits;
    layer_.stats().syn_retransmits.inc();
    rtt_.back_off();
    send_syn(now);
    arm_retransmit(now);
    return;
  }
  if (snd_max_ == snd_una_) return;
  if (busy().retransmits >= config.retries2) {
    layer_.stats().timeouts.inc();
    closed(ETIMEDOUT);
    return;
  }
  ++busy().retransmits;
  layer_.stats().rto_timeouts.inc();
  // RFC 5681 (4)-(5), RFC 6298 (5.4)-(5.6), RFC 6582 §4: the window collapses, the timer backs
  // off, recovery ends, and sending starts again from the oldest unacknowledged byte.
  cc_.on_timeout(now, in_flight());
  rtt_.back_off();
  busy().in_recovery = false;
  busy().dup_acks = 0;
  recover_ = snd_max_ - 1;
  snd_nxt_ = snd_una_;
  arm_retransmit(now);
  output(now);
}

void TcpConnection::persist_timeout(Instant now) {
  const SeqNum data_end = busy().tx.tail();
  if (snd_nxt_ >= data_end && !(fin_queued_ && snd_nxt_ == data_end)) return;
  layer_.stats().zero_window_probes.inc();
  ++busy().retransmits;
  if (snd_wnd_ == 0 && snd_nxt_ < data_end) {
    // RFC 9293 §3.8.6.1: one byte of new data beyond the closed window. snd_nxt_ stays put, so
    // that the byte goes again normally once the window opens.
    send_data_segment(now, snd_nxt_, 1, false, false);
  } else {
    output_forced(now);
  }
  arm_persist(now);
}

void TcpConnection::keepalive_timeout(Instant now) {
  if (!options_.keepalive || !synchronized() || state_ == State::kTimeWait) return;
  if (busy().keepalive_probes_sent == 0 && now < last_receive_ + options_.keepalive_idle) {
    arm_keepalive(now);
    return;
  }
  if (busy().keepalive_probes_sent >= options_.keepalive_probes) {
    layer_.stats().keepalive_timeouts.inc();
    abort(now, ETIMEDOUT);
    return;
  }
  // RFC 9293 §3.8.4: a segment the peer must ACK: one sequence number back, no data.
  ++busy().keepalive_probes_sent;
  send_control(now, snd_una_ - 1, kAck);
  arm(kKeepaliveTimer, now + options_.keepalive_interval);
}

}  // namespace ustack::tcp
