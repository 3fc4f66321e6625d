// The user's side of a connection: opening, sending, receiving, shutting down, closing, and
// the readiness it reports. Before changing the state machine, read RFC 9293 §3.10 (event
// processing) and its MUST list; tcp_connection.h lists the rest.

#include "tcp/tcp_connection.h"

#include <algorithm>
#include <cassert>
#include <cerrno>

#include "base/waitable.h"
#include "tcp/tcp_layer.h"
#include "tcp/tcp_listener.h"

namespace ustack::tcp {

namespace {
constexpr uint16_t kIpTcpHeaders = 40;
}  // namespace

const char* state_name(State s) {
  switch (s) {
    case State::kClosed: return "CLOSED";
    case State::kSynSent: return "SYN-SENT";
    case State::kSynReceived: return "SYN-RECEIVED";
    case State::kEstablished: return "ESTABLISHED";
    case State::kFinWait1: return "FIN-WAIT-1";
    case State::kFinWait2: return "FIN-WAIT-2";
    case State::kCloseWait: return "CLOSE-WAIT";
    case State::kClosing: return "CLOSING";
    case State::kLastAck: return "LAST-ACK";
    case State::kTimeWait: return "TIME-WAIT";
  }
  return "?";
}

SocketOptions SocketOptions::defaults(const TcpConfig& config) {
  SocketOptions o;
  o.rcvbuf = static_cast<uint32_t>(config.rcvbuf);
  o.sndbuf = static_cast<uint32_t>(config.sndbuf);
  // Configured in whole seconds (config.cc), like Linux's sysctls.
  o.keepalive_idle = std::chrono::duration_cast<SocketOptions::Seconds>(config.keepalive_idle);
  o.keepalive_interval = std::chrono::duration_cast<SocketOptions::Seconds>(config.keepalive_interval);
  o.keepalive_probes = static_cast<uint8_t>(std::clamp(config.keepalive_probes, 1, 127));
  return o;
}

TcpConnection::TcpConnection(TcpLayer& layer, const FourTuple& tuple, const ip::Route& route,
                             const SocketOptions& options)
    : layer_(layer),
      rtt_(layer.config().rto),
      tuple_(tuple),
      next_hop_(route.next_hop),
      route_mtu_(route.mtu),
      route_loopback_(route.loopback),
      route_broadcast_(route.broadcast),
      route_udp_offload_(route.udp_checksum_offload),
      route_tcp_offload_(route.tcp_checksum_offload),
      options_(options),
      cc_(snd_mss_, layer.config().initial_cwnd_segments) {
  static_assert(sizeof(TcpConnection) <= 256, "an idle connection's state (README, \"Memory per connection\")");
  // RFC 7323 §2.3: the shift our largest buffer needs, computed as Linux does
  // (tcp_select_initial_window: ilog2 of the largest buffer, less 15, at most 14), so that a peer
  // sees the same window scale from us as from a Linux host with the same tcp_rmem[2].
  size_t space = layer.config().max_buffer;
  int log2 = 0;
  while (space >>= 1) ++log2;
  rcv_wscale_ = static_cast<uint8_t>(std::clamp(log2 - 15, 0, 14));
  ts_offset_ = static_cast<uint32_t>(layer.rng().next());
  compute_mss();
  cc_ = NewReno(snd_mss_, layer.config().initial_cwnd_segments);
}

// Not back to the layer's spares: a socket may hold the connection past the layer.
TcpConnection::~TcpConnection() { delete busy_; }

TcpConnection::Transfer::Transfer(TcpConnection& owner, uint32_t max_out_of_order, SeqNum send_tail,
                                  SeqNum receive_next)
    : owner(&owner), tx(send_tail), rx(max_out_of_order), timers(&owner) {
  rx.reset(receive_next);
}

void TcpConnection::Transfer::reuse(TcpConnection& new_owner, SeqNum send_tail, SeqNum receive_next) {
  owner = &new_owner;
  timers.set_owner(&new_owner);
  tx.reset(send_tail);
  rx.reset(receive_next);
  rtx_mode = RtxMode::kRetransmit;
}

bool TcpConnection::Transfer::at_rest() const {
  return tx.empty() && tx.size() == 0 && rx.empty() && timers.idle() && !ooo_fin && dup_acks == 0 &&
         retransmits == 0 && keepalive_probes_sent == 0 && !in_recovery && !ack_now;
}

TcpConnection::Transfer& TcpConnection::busy() {
  // The receive queue expects RCV.NXT: a FIN received moves both.
  if (!busy_) busy_ = layer_.take_transfer(*this, parked_send_tail_, rcv_nxt_);
  return *busy_;
}

void TcpConnection::settle() {
  // TIME-WAIT's block links it into the layer's TIME-WAIT list (and its timer is always armed).
  if (!busy_ || state_ == State::kTimeWait || !busy_->at_rest()) return;
  assert(busy_->rx.next() == rcv_nxt_ || !synchronized());
  parked_send_tail_ = busy_->tx.tail();
  layer_.give_back_transfer(std::exchange(busy_, nullptr));
}

void TcpConnection::compute_mss() {
  // RFC 9293 §3.7.1 / RFC 6691: announce what the route carries in one packet, less the fixed
  // headers; send at most what the peer announced, less the options every segment carries.
  const uint16_t route_mss = static_cast<uint16_t>(std::min<uint32_t>(route_mtu_, 65535) - kIpTcpHeaders);
  adv_mss_ = options_.user_mss ? std::min(options_.user_mss, route_mss) : route_mss;
  uint16_t mss = std::min(peer_mss_, route_mss);
  if (options_.user_mss) mss = std::min(mss, options_.user_mss);
  if (ts_enabled_) mss = static_cast<uint16_t>(mss - 12);  // RFC 7323's 10 bytes, padded to 12
  snd_mss_ = std::max<uint16_t>(mss, 64);  // a peer announcing less is refused that little
  cc_.set_mss(snd_mss_);
}

void TcpConnection::open_active(Instant now, SeqNum iss) {
  iss_ = iss;
  snd_una_ = snd_nxt_ = snd_max_ = iss;
  recover_ = iss;  // RFC 6582 §3.2 step 1 (a default of 0 blocked fast retransmit for half the ISSs)
  busy().tx.reset(iss + 1);
  last_receive_ = last_send_ = now;
  last_invalid_ack_ = now - layer_.config().invalid_ack_interval;  // the first one is answered
  set_state(State::kSynSent);
  send_syn(now);
  arm_retransmit(now);
}

void TcpConnection::open_passive(Instant now, SeqNum iss, const SegmentRepr& syn, TcpListener* listener) {
  listener_ = listener;
  iss_ = iss;
  snd_una_ = snd_nxt_ = snd_max_ = iss;
  recover_ = iss;  // RFC 6582 §3.2 step 1
  busy().tx.reset(iss + 1);
  irs_ = syn.seq;
  rcv_nxt_ = syn.seq + 1;
  busy().rx.reset(rcv_nxt_);
  rcv_adv_ = rcv_nxt_;
  take_options(syn.options, false);
  // RFC 9293 §3.10.7.2: the SYN's window is never scaled.
  snd_wnd_ = max_snd_wnd_ = syn.window;
  snd_wl1_ = syn.seq;
  snd_wl2_ = iss;
  last_receive_ = last_send_ = now;
  last_invalid_ack_ = now - layer_.config().invalid_ack_interval;
  set_state(State::kSynReceived);
  send_syn(now);
  arm_retransmit(now);
}

void TcpConnection::take_options(const TcpOptions& o, bool) {
  if (o.mss && *o.mss > 0) peer_mss_ = *o.mss;
  // RFC 7323 §2.2: scaling is on only when both SYNs carry the option; §2.3: at most 14.
  wscale_ok_ = o.window_scale.has_value();
  snd_wscale_ = wscale_ok_ ? std::min<uint8_t>(*o.window_scale, 14) : 0;
  if (!wscale_ok_) rcv_wscale_ = 0;
  sack_ok_ = o.sack_permitted;
  ts_enabled_ = o.timestamps.has_value();
  if (ts_enabled_) {
    ts_recent_ = o.timestamps->value;
  }
  compute_mss();
}

size_t TcpConnection::send_space() const {
  const size_t charged = busy_ ? busy_->tx.charged() : 0;
  return options_.sndbuf > charged ? options_.sndbuf - charged : 0;
}

int TcpConnection::send_refusal() {
  if (error_) return take_error();
  if (snd_shutdown_ || state_ == State::kClosed) return EPIPE;
  if (state_ == State::kSynSent || state_ == State::kSynReceived) return EAGAIN;
  if (state_ != State::kEstablished && state_ != State::kCloseWait) return EPIPE;
  return 0;
}

void TcpConnection::queued(Instant now, bool was_idle) {
  // RFC 5681 §4.1: a connection idle for more than an RTO restarts from the initial window.
  if (was_idle && in_flight() == 0 && now - last_send_ > rtt_.rto()) cc_.restart_after_idle();
  output(now);
}

Result<size_t, int> TcpConnection::send(Instant now, std::span<const uint8_t> data) {
  if (int err = send_refusal()) return unexpected(err);
  if (data.empty()) return size_t{0};
  const Settle settle(*this);
  const bool was_idle = busy().tx.empty();
  const size_t taken = busy().tx.append(data, snd_mss_, snd_nxt_, options_.sndbuf, layer_);
  if (taken > 0) queued(now, was_idle);
  return taken;
}

Result<size_t, int> TcpConnection::send_buffers(Instant now, std::span<Packet> buffers) {
  if (int err = send_refusal()) return unexpected(err);
  if (buffers.empty()) return size_t{0};
  const Settle settle(*this);
  SendQueue& tx = busy().tx;
  const bool was_idle = tx.empty();
  size_t taken = 0;
  while (taken < buffers.size() && tx.append_buffer(buffers[taken], options_.sndbuf)) ++taken;
  if (taken > 0) queued(now, was_idle);
  return taken;
}

Packet TcpConnection::alloc_send_buffer() { return layer_.alloc_segment(snd_mss_); }

Result<size_t, int> TcpConnection::receive(Instant now, std::span<uint8_t> out, bool peek) {
  if (readable() > 0) {
    const Settle settle(*this);
    const size_t n = busy_->rx.read(out, peek);
    if (!peek && window_update_due()) {
      send_ack(now);
    }
    return n;
  }
  return nothing_readable();
}

Result<size_t, int> TcpConnection::lend(Instant now, std::span<Packet> out) {
  if (readable() > 0) {
    const Settle settle(*this);
    size_t n = 0;
    while (n < out.size() && busy_->rx.readable() > 0) out[n++] = busy_->rx.lend();
    if (window_update_due()) send_ack(now);
    return n;
  }
  return nothing_readable();
}

Result<size_t, int> TcpConnection::nothing_readable() {
  if (error_) return unexpected(take_error());
  if (rcv_shutdown_) return size_t{0};
  if (state_ == State::kClosed) return unexpected(ENOTCONN);
  return unexpected(EAGAIN);
}

void TcpConnection::shutdown_write(Instant now) {
  if (snd_shutdown_) return;
  const Settle settle(*this);
  snd_shutdown_ = true;
  switch (state_) {
    case State::kSynSent:
      closed(0);
      return;
    case State::kSynReceived:
      fin_queued_ = true;  // sent once the handshake completes
      return;
    case State::kEstablished:
    case State::kCloseWait:
      shutdown_write_internal(now);
      notify(kPollOut);
      return;
    default:
      return;
  }
}

void TcpConnection::shutdown_read() {
  rcv_shutdown_ = true;
  notify(kPollIn | kPollRdHup);
}

void TcpConnection::close(Instant now) {
  const Settle settle(*this);
  orphaned_ = true;
  observer_ = nullptr;
  // Linux's tcp_close(): unread data means the peer's data is lost; say so with a RST rather
  // than an orderly FIN (RFC 9293 §3.10.4 allows it; RFC 2525 §2.17 recommends it). So does
  // SO_LINGER with a zero timeout.
  if (state_ != State::kClosed && state_ != State::kSynSent &&
      (readable() > 0 || (options_.linger && options_.linger_seconds == 0))) {
    layer_.stats().aborts_on_close.inc();
    abort(now, 0);
    return;
  }
  switch (state_) {
    case State::kSynSent:
      closed(0);
      return;
    case State::kSynReceived:
      snd_shutdown_ = rcv_shutdown_ = true;
      fin_queued_ = true;
      return;
    case State::kEstablished:
    case State::kCloseWait:
      snd_shutdown_ = rcv_shutdown_ = true;
      if (!fin_queued_) shutdown_write_internal(now);
      return;
    case State::kFinWait2:
      // An orphan waits for the peer's FIN only so long (tcp_fin_timeout).
      busy().rtx_mode = RtxMode::kFinWait2;
      arm(kRetransmitTimer, now + layer_.config().fin_wait2_timeout);
      return;
    case State::kTimeWait:
      // The rest of 2 MSL is spent as a compact entry (a full 2 MSL: conservative and simple).
      layer_.retire_to_time_wait(now, *this);
      return;
    default:
      return;
  }
}

void TcpConnection::shutdown_write_internal(Instant now) {
  fin_queued_ = true;
  set_state(state_ == State::kCloseWait ? State::kLastAck : State::kFinWait1);
  output(now);
}

void TcpConnection::abort(Instant now, int err) {
  if (state_ == State::kClosed) return;
  const Settle settle(*this);
  // RFC 9293 §3.10.5 ABORT: a RST in the synchronized states, nothing before.
  if (synchronized() && state_ != State::kTimeWait) send_reset(now);
  closed(err);
  if (err == 0) user_reset_ = true;
}

void TcpConnection::options_changed(Instant now) {
  if (state_ == State::kClosed) return;
  const Settle settle(*this);
  arm_keepalive(now);
  if (options_.nodelay) output(now);
}

uint32_t TcpConnection::poll_events() const {
  // Linux's tcp_poll().
  uint32_t ev = 0;
  const bool both_shut = rcv_shutdown_ && snd_shutdown_;
  if (both_shut || state_ == State::kClosed) ev |= kPollHup;
  if (rcv_shutdown_) ev |= kPollIn | kPollRdNorm | kPollRdHup;
  if (state_ != State::kSynSent && state_ != State::kSynReceived) {
    if (readable() > 0) ev |= kPollIn | kPollRdNorm;
    if (!snd_shutdown_) {
      // sk_stream_is_writeable(): free space at least half of what is queued.
      if (state_ != State::kClosed && send_space() > 0 && send_space() >= (busy_ ? busy_->tx.charged() : 0) / 2) {
        ev |= kPollOut | kPollWrNorm;
      }
    } else {
      ev |= kPollOut | kPollWrNorm;
    }
  }
  if (error_) ev |= kPollErr;
  return ev;
}

void TcpConnection::set_state(State s) {
  const State from = state_;
  if (from == s) return;
  state_ = s;
  layer_.state_changed(*this, from, s);
}

void TcpConnection::notify(uint32_t events) {
  if (observer_) observer_->readiness_changed(events);
}

void TcpConnection::closed(int err) {
  if (err) error_ = static_cast<int16_t>(err);
  if (err) user_reset_ = true;
  rcv_shutdown_ = true;
  snd_shutdown_ = true;
  if (busy_) {
    busy_->timers.disarm_all(layer_.timers());
    busy_->tx.reset(busy_->tx.tail());
  }
  set_state(State::kClosed);
  notify(kPollIn | kPollOut | kPollErr | kPollHup | kPollRdHup);
}

void TcpConnection::enter_time_wait(Instant now) {
  disarm(kDelayedAckTimer);
  disarm(kKeepaliveTimer);
  if (orphaned_) {
    // Nobody reads this TCB again: a compact entry holds the 4-tuple instead (time_wait.h). The
    // ACK of the peer's FIN goes first, from here.
    if (busy_ && busy_->ack_now) send_ack(now);
    layer_.retire_to_time_wait(now, *this);
    return;
  }
  set_state(State::kTimeWait);
  busy().rtx_mode = RtxMode::kTimeWait;
  arm(kRetransmitTimer, now + layer_.config().time_wait);
  notify(kPollIn | kPollHup | kPollRdHup);
}

void TcpConnection::established(Instant now) {
  established_once_ = true;
  // The congestion controller was made with the MSS assumed before the handshake (536); the
  // initial window is ten segments of the negotiated MSS (RFC 6928), set where Linux's
  // tcp_init_transfer() sets it. Nothing has been sent or acknowledged through it yet.
  cc_ = NewReno(snd_mss_, layer_.config().initial_cwnd_segments);
  quick_acks_ = static_cast<uint8_t>(std::min<uint32_t>(layer_.config().quick_acks, UINT8_MAX));
  layer_.stats().established.inc();
  arm_keepalive(now);
}

}  // namespace ustack::tcp
