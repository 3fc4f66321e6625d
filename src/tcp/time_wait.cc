// Compact TIME-WAIT (time_wait.h): what a closed connection leaves for 2 MSL, and SEGMENT
// ARRIVES for it, answering as the TCB in TIME-WAIT did (tcp_input.cc) and as Linux's
// tcp_timewait_state_process() does.

#include "tcp/time_wait.h"

#include <algorithm>


#include "tcp/tcp_layer.h"

namespace ustack::tcp {

void TcpLayer::retire_to_time_wait(Instant now, TcpConnection& c) {
  auto owned = std::make_unique<TimeWaitEntry>();
  TimeWaitEntry& e = *owned;
  e.tuple = c.tuple_;
  e.expires = now + config_.time_wait;
  e.ts_recent_stamp = c.ts_recent_stamp_;
  e.last_invalid_ack = c.last_invalid_ack_;
  e.snd_nxt = c.snd_max_;  // our FIN is acknowledged: SND.MAX is where we are
  e.rcv_nxt = c.rcv_nxt_;
  e.window_field = c.window_field();
  e.rcv_wnd = c.rcv_adv_ > c.rcv_nxt_ ? static_cast<uint32_t>(c.rcv_adv_ - c.rcv_nxt_) : 0;
  e.max_snd_wnd = c.max_snd_wnd_;
  e.ts_recent = c.ts_recent_;
  e.ts_offset = c.ts_offset_;
  e.ts_enabled = c.ts_enabled_;
  // The entry holds the port before the connection lets go of it, with the claim of a bind() on
  // several engines, so that nobody takes it in between.
  e.binding = c.binding_;
  e.binding.registered = false;
  e.binding.time_wait = true;
  if (c.binding_.registered) register_binding(e.binding);
  c.binding_.claimed = false;
  time_waits_.emplace(e.tuple, std::move(owned));
  time_wait_expiry_.push_newest(e);
  ++time_wait_count_;
  c.closed(0);  // out of the 4-tuple table, into the graveyard
  arm_time_wait_timer();
  bound_time_wait();
}

void TcpLayer::drop_time_wait(TimeWaitEntry& e) {
  time_wait_expiry_.unlink(e);
  unbind(e.binding);
  --time_wait_count_;
  const FourTuple tuple = e.tuple;
  time_waits_.erase(tuple);
}

void TcpLayer::bound_time_wait() {
  while (time_wait_count_ > config_.max_time_wait) {
    stats_.time_wait_evicted.inc();
    if (TimeWaitEntry* oldest = time_wait_expiry_.oldest()) {
      drop_time_wait(*oldest);
    } else {
      time_wait_.oldest()->owner->closed(0);  // TIME-WAIT → CLOSED, through state_changed()
    }
  }
}

bool TcpLayer::reclaim_time_wait_ports() {
  size_t batch = std::max<size_t>(time_waits_.size() / kTimeWaitReclaimDivisor, 1);
  bool reclaimed = false;
  reclaiming_ = true;  // the ports they free go to reclaimed_ports_, oldest first
  for (; batch > 0; --batch) {
    TimeWaitEntry* oldest = time_wait_expiry_.oldest();
    if (!oldest) break;
    stats_.time_wait_evicted.inc();
    drop_time_wait(*oldest);
    reclaimed = true;
  }
  reclaiming_ = false;
  std::reverse(reclaimed_ports_.begin(), reclaimed_ports_.end());  // taken from the back: oldest first
  return reclaimed;
}

void TcpLayer::arm_time_wait_timer() {
  if (const TimeWaitEntry* oldest = time_wait_expiry_.oldest()) {
    if (!time_wait_timer_.armed() || time_wait_timer_.deadline != oldest->expires) {
      timers_.schedule(time_wait_timer_, oldest->expires);
    }
  } else {
    timers_.cancel(time_wait_timer_);
  }
}

void TcpLayer::restart_time_wait(Instant now, TimeWaitEntry& e) {
  // Every entry lasts 2 MSL from its last FIN, so the newest is also the last to expire.
  e.expires = now + config_.time_wait;
  time_wait_expiry_.unlink(e);
  time_wait_expiry_.push_newest(e);
  arm_time_wait_timer();
}

void TcpLayer::on_timer(TimerEntry&, Instant now) {
  while (TimeWaitEntry* oldest = time_wait_expiry_.oldest()) {
    if (oldest->expires > now) break;
    drop_time_wait(*oldest);
  }
  arm_time_wait_timer();
}

void TcpLayer::time_wait_ack(Instant now, const TimeWaitEntry& e) {
  SegmentRepr h;
  h.src_port = e.tuple.local_port;
  h.dst_port = e.tuple.remote_port;
  h.seq = e.snd_nxt;
  h.ack = e.rcv_nxt;
  h.flags = kAck;
  h.window = e.window_field;
  if (e.ts_enabled) h.options.timestamps = TcpOptions::Timestamps{tsval_at(now, e.ts_offset), e.ts_recent};
  auto route = out_.route(e.tuple.remote_addr);
  if (!route) return;
  route->src = e.tuple.local_addr;
  send_bare(now, *route, h);
}

void TcpLayer::time_wait_challenge_ack(Instant now, const TimeWaitEntry& e) {
  if (!allow_challenge_ack(now)) {
    stats_.challenge_acks_limited.inc();
    return;
  }
  stats_.challenge_acks.inc();
  time_wait_ack(now, e);
}

void TcpLayer::time_wait_input(Instant now, TimeWaitEntry& e, const ip::Ipv4Repr& ip, const SegmentRepr& seg) {
  // RFC 9293 §3.10.7.4 / RFC 6191: a new SYN beyond the old sequence space may start a new
  // incarnation, if someone listens.
  const uint8_t syn_ack_rst = seg.flags & (kSyn | kAck | kRst);
  if (syn_ack_rst == kSyn && seg.seq > e.rcv_nxt) {
    if (TcpListener* l = find_listener(ip.dst, seg.dst_port, ip.src, seg.src_port)) {
      drop_time_wait(e);
      listen_input(now, *l, ip, seg);
      return;
    }
  }
  // RFC 7323 §5.3 R1: an old timestamp marks an old duplicate; ACK it (unless it is a RST).
  if (e.ts_enabled && seg.options.timestamps && !(seg.flags & kRst) && now - e.ts_recent_stamp <= kPawsIdle &&
      static_cast<int32_t>(seg.options.timestamps->value - e.ts_recent) < 0) {
    stats_.paws_rejected.inc();
    time_wait_ack(now, e);
    return;
  }
  if (!segment_acceptable(seg, e.rcv_nxt, e.rcv_wnd)) {
    stats_.out_of_window.inc();
    if (seg.flags & kRst) return;
    if (seg.flags & kSyn) {  // RFC 5961 §4.2
      time_wait_challenge_ack(now, e);
      return;
    }
    if (seg.flags & kFin) {
      // Our last ACK was lost and the peer's FIN came again: ACK it and restart 2 MSL.
      restart_time_wait(now, e);
    } else if (seg.payload.empty()) {
      if (now - e.last_invalid_ack < config_.invalid_ack_interval) return;  // tcp_invalid_ratelimit
      e.last_invalid_ack = now;
    }
    time_wait_ack(now, e);
    return;
  }
  if (seg.flags & kRst) {
    // RFC 5961 §3.2: only a RST at exactly RCV.NXT ends it (Linux's default, tcp_rfc1337 = 0).
    if (seg.seq != e.rcv_nxt) {
      time_wait_challenge_ack(now, e);
      return;
    }
    stats_.rx_resets.inc();
    drop_time_wait(e);
    return;
  }
  if (seg.flags & kSyn) {
    time_wait_challenge_ack(now, e);
    return;
  }
  if (!(seg.flags & kAck)) return;
  if (seg.ack > e.snd_nxt) {  // RFC 5961 §5.2: an ACK for data never sent
    time_wait_ack(now, e);
    return;
  }
  if (seg.ack < e.snd_nxt - e.max_snd_wnd) {
    time_wait_challenge_ack(now, e);
    return;
  }
  // RFC 7323 §4.3 (2): TS.Recent follows acceptable segments.
  if (e.ts_enabled && seg.options.timestamps && seg.seq <= e.rcv_nxt &&
      static_cast<int32_t>(seg.options.timestamps->value - e.ts_recent) >= 0) {
    e.ts_recent = seg.options.timestamps->value;
    e.ts_recent_stamp = now;
  }
  // Text after the peer's FIN is ignored; a FIN at RCV.NXT (the peer's sequence space is past
  // its FIN, so only a confused peer sends one) is acknowledged and restarts 2 MSL, as the TCB did.
  if ((seg.flags & kFin) && seg.seq + static_cast<uint32_t>(seg.payload.size()) == e.rcv_nxt) {
    restart_time_wait(now, e);
    time_wait_ack(now, e);
  }
}

}  // namespace ustack::tcp
