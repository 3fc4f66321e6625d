#pragma once
// One TCP connection (a TCB): RFC 9293's state machine, the sender and the receiver. Sans-IO:
// segments come in through segment_arrives(), go out through the TcpLayer, and every timer is a
// deadline in the stack's wheel. The code is split by concern:
//   tcp_connection.cc  the user's calls (open, send, receive, shutdown, close) and readiness
//   tcp_input.cc       SEGMENT ARRIVES, by state, with RFC 9293 §3.10.7's step numbers
//   tcp_output.cc      segmentation, Nagle, the ACK policy, retransmission and the timers
// Read RFC 9293 §3.10 (event processing), RFC 5961 (blind attacks), RFC 7323 (window scale,
// timestamps, PAWS), RFC 6298 (RTO) and RFC 5681/6582 (congestion control, NewReno) before
// changing it.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "base/age_list.h"
#include "base/instant.h"
#include "base/ipv4_addr.h"
#include "base/packet.h"
#include "base/result.h"
#include "base/timer_set.h"
#include "base/timer_wheel.h"
#include "ip/ip_output.h"
#include "tcp/new_reno.h"
#include "tcp/receive_queue.h"
#include "tcp/rtt_estimator.h"
#include "tcp/segment.h"
#include "tcp/send_queue.h"
#include "tcp/seq_num.h"
#include "tcp/tcp_config.h"

namespace ustack::tcp {

enum class State : uint8_t {
  kClosed,
  kSynSent,
  kSynReceived,
  kEstablished,
  kFinWait1,
  kFinWait2,
  kCloseWait,
  kClosing,
  kLastAck,
  kTimeWait,
};
/// RFC 9293's spelling: "SYN-RECEIVED", "TIME-WAIT".
const char* state_name(State s);

/// RFC 7323 §5.5: TS.Recent older than 24 days is no longer a valid reference.
inline constexpr Duration kPawsIdle = std::chrono::hours(24 * 24);
/// Our TSval: a 1 ms clock, like Linux's, plus the connection's random offset (RFC 7323 §5.4).
inline uint32_t tsval_at(Instant now, uint32_t offset) { return static_cast<uint32_t>(now.ns() / 1'000'000) + offset; }
/// RFC 9293 §3.10.7.4's sequence check (four cases) against the window [rcv_nxt, rcv_nxt + wnd).
bool segment_acceptable(const SegmentRepr& seg, SeqNum rcv_nxt, uint32_t wnd);

struct FourTuple {  // the addresses first: 12 bytes, no padding
  FourTuple() = default;
  FourTuple(Ipv4Addr local_addr, uint16_t local_port, Ipv4Addr remote_addr, uint16_t remote_port)
      : local_addr(local_addr), remote_addr(remote_addr), local_port(local_port), remote_port(remote_port) {}
  Ipv4Addr local_addr;
  Ipv4Addr remote_addr;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  bool operator==(const FourTuple&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const FourTuple& t) {
    return H::combine(std::move(h), t.local_addr.value(), t.local_port, t.remote_addr.value(), t.remote_port);
  }
};

/// Told when what poll_events() returns may have changed (the API's socket forwards it to epoll).
class ReadinessObserver {
 public:
  virtual void readiness_changed(uint32_t events) = 0;

 protected:
  ~ReadinessObserver() = default;
};

/// What setsockopt() can change; a connection takes a copy at connect() or from its listener.
struct SocketOptions {  // every connection holds a copy: 24 bytes, the widths Linux's limits need
  using Seconds = std::chrono::duration<uint32_t>;
  uint32_t rcvbuf = 0;  ///< as getsockopt reports it (Linux doubles what setsockopt is given)
  uint32_t sndbuf = 0;
  Seconds keepalive_idle{0};      ///< TCP_KEEPIDLE, whole seconds as in Linux
  Seconds keepalive_interval{0};  ///< TCP_KEEPINTVL
  int32_t linger_seconds = 0;
  uint16_t user_mss = 0;          ///< TCP_MAXSEG; 0: from the route
  uint8_t keepalive_probes = 0;   ///< TCP_KEEPCNT, at most 127 in Linux
  bool nodelay : 1 = false;
  bool keepalive : 1 = false;
  bool linger : 1 = false;        ///< SO_LINGER on
  bool reuse_addr : 1 = false;
  bool reuse_port : 1 = false;
  static SocketOptions defaults(const TcpConfig& config);
};

/// A local address and port held by a socket, listener or connection (the layer's port table).
struct PortBinding {  // every connection holds one: 8 bytes
  Ipv4Addr addr;
  uint16_t port = 0;
  bool reuse_addr : 1 = false;
  bool reuse_port : 1 = false;
  bool listening : 1 = false;
  bool time_wait : 1 = false;
  bool ephemeral_connect : 1 = false;  ///< chosen by connect(): shareable by other connections
  bool registered : 1 = false;
  bool claimed : 1 = false;            ///< in the engines' PortDirectory (bind(), several engines)
  bool claimed_shareable : 1 = false;  ///< claimed with SO_REUSEPORT
};

class TcpLayer;
class TcpListener;

/// Shared by the layer's demultiplexer and the API's socket: whichever lets go last frees it.
class TcpConnection final : private TimerClient {
 public:
  TcpConnection(TcpLayer& layer, const FourTuple& tuple, const ip::Route& route, const SocketOptions& options);
  ~TcpConnection();
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  // ---- The user's calls (RFC 9293 §3.10.1-§3.10.6). Errors are Linux's errno values. ----
  /// Sends the SYN (CLOSED → SYN-SENT).
  void open_active(Instant now, SeqNum iss);
  /// Answers a listener's SYN (CLOSED → SYN-RECEIVED).
  void open_passive(Instant now, SeqNum iss, const SegmentRepr& syn, TcpListener* listener);
  /// Queues up to data.size() bytes: how many it took (0 when the buffer is full), or EPIPE,
  /// ENOTCONN, a pending error.
  Result<size_t, int> send(Instant now, std::span<const uint8_t> data);
  /// send() without the copy: queues whole buffers from alloc_send_buffer() that the caller
  /// filled, in order, each as a segment of its own. Returns how many it took (moved out of
  /// `buffers`; 0 when the send buffer is full), or send()'s errors.
  Result<size_t, int> send_buffers(Instant now, std::span<Packet> buffers);
  /// An empty buffer for send_buffers() with room for one segment (mss() bytes) after the
  /// headers' room; empty when none can be had.
  Packet alloc_send_buffer();
  /// Copies received bytes out: how many (0 at end of stream), or EAGAIN when none are there yet,
  /// a pending error (ECONNRESET), ENOTCONN.
  Result<size_t, int> receive(Instant now, std::span<uint8_t> out, bool peek);
  /// receive() without the copy: moves up to out.size() buffers of received bytes into `out`
  /// (ReceiveQueue::lend), how many (0 at end of stream), or receive()'s errors.
  Result<size_t, int> lend(Instant now, std::span<Packet> out);
  /// shutdown(SHUT_WR): a FIN after the queued data.
  void shutdown_write(Instant now);
  /// shutdown(SHUT_RD): reads return end of stream; what arrives is still acknowledged.
  void shutdown_read();
  /// close(): the user lets go. Unread data (or SO_LINGER {1, 0}) aborts with a RST, like Linux;
  /// otherwise the FIN goes out and the connection finishes on its own (orphaned).
  void close(Instant now);
  /// Sends a RST (when synchronized) and closes; the user sees `err` (0: none).
  void abort(Instant now, int err);

  /// Readiness as Linux's tcp_poll() reports it, PollEvent bits.
  uint32_t poll_events() const;
  /// SO_ERROR: takes the pending error.
  int take_error() { return std::exchange(error_, int16_t{0}); }
  int pending_error() const { return error_; }
  void set_observer(ReadinessObserver* o) { observer_ = o; }
  SocketOptions& options() { return options_; }
  /// Applies changed keepalive options (timer) and TCP_NODELAY (pushes what Nagle held back).
  void options_changed(Instant now);

  // ---- Input, from the layer's demultiplexer. ----
  /// RFC 9293 §3.10.7: SEGMENT ARRIVES. `payload` is the segment's payload as a view of the
  /// received buffer; the receive queue may keep it.
  void segment_arrives(Instant now, const SegmentRepr& seg, Packet payload);

  // ---- State, for the layer, the API and tests. ----
  State state() const { return state_; }
  const FourTuple& tuple() const { return tuple_; }
  bool synchronized() const { return state_ >= State::kEstablished || state_ == State::kSynReceived; }
  bool established_once() const { return established_once_; }
  bool orphaned() const { return orphaned_; }
  bool read_shut() const { return rcv_shutdown_; }
  bool write_shut() const { return snd_shutdown_; }
  size_t readable() const { return busy_ ? busy_->rx.readable() : 0; }
  size_t send_queued() const { return busy_ ? busy_->tx.size() : 0; }
  /// Whether the connection holds its transfer state (queues, timers, loss recovery) now: an
  /// idle one gives it back. For tests and the memory figures.
  bool holds_transfer_state() const { return busy_ != nullptr; }
  /// Bytes send() can take now (SO_SNDBUF minus what the queue holds).
  size_t send_space() const;
  uint16_t mss() const { return snd_mss_; }
  uint16_t advertised_mss() const { return adv_mss_; }
  SeqNum iss() const { return iss_; }
  SeqNum irs() const { return irs_; }
  SeqNum snd_una() const { return snd_una_; }
  SeqNum snd_nxt() const { return snd_nxt_; }
  SeqNum rcv_nxt() const { return rcv_nxt_; }
  uint32_t snd_wnd() const { return snd_wnd_; }
  uint32_t cwnd() const { return cc_.cwnd(); }
  uint32_t ssthresh() const { return cc_.ssthresh(); }
  Duration rto() const { return rtt_.rto(); }
  const RttEstimator& rtt() const { return rtt_; }
  bool timestamps() const { return ts_enabled_; }
  bool sack_permitted() const { return sack_ok_; }
  uint8_t snd_wscale() const { return snd_wscale_; }
  uint8_t rcv_wscale() const { return rcv_wscale_; }
  TcpListener* listener() const { return listener_; }
  /// SND.MAX: one past the highest sequence number sent.
  SeqNum snd_max() const { return snd_max_; }
  /// Retransmissions since the last new ACK (or SYN retries).
  int retransmits() const { return busy_ ? busy_->retransmits : 0; }
  void detach_listener() { listener_ = nullptr; }
  PortBinding& binding() { return binding_; }
  ip::Route route() const {
    return ip::Route{tuple_.local_addr, tuple_.remote_addr, next_hop_,         route_mtu_,
                     route_loopback_,   route_broadcast_,   route_udp_offload_, route_tcp_offload_};
  }

 private:
  /// What a read gets when no byte is readable: a pending error, end of stream, ENOTCONN or EAGAIN.
  Result<size_t, int> nothing_readable();
  /// Why send() or send_buffers() may not queue now (taking a pending error), or 0.
  int send_refusal();
  /// After either queued bytes on a send queue that was empty (`was_idle`) or not: sends.
  void queued(Instant now, bool was_idle);
  friend class TcpLayer;
  enum TimerKind : uint8_t { kRetransmitTimer, kDelayedAckTimer, kKeepaliveTimer, kTimerKinds };
  enum class RtxMode : uint8_t { kRetransmit, kPersist, kTimeWait, kFinWait2 };

  // What a connection needs only while it has bytes queued, a timer armed or a loss to recover
  // from. An idle connection hands it back (settle(), at the end of every call into it), so that
  // it costs only the fields below; TcpLayer keeps a few spare for the next busy one. A block at
  // rest holds what a new one would, so giving it back changes no behaviour.
  struct Transfer : AgeList<Transfer>::Hook {  // the hook: TcpLayer's TIME-WAIT list
    Transfer(TcpConnection& owner, uint32_t max_out_of_order, SeqNum send_tail, SeqNum receive_next);
    /// As a new block, but for where the queues start and the arrays they keep. rtx_mode does not
    /// count: it is read only while the retransmission timer is armed.
    bool at_rest() const;
    /// A block at rest, for another connection (TcpLayer's spares): as new, keeping the arrays.
    void reuse(TcpConnection& new_owner, SeqNum send_tail, SeqNum receive_next);

    TcpConnection* owner;
    SendQueue tx;
    ReceiveQueue rx;
    TimerSet<kTimerKinds> timers;
    std::optional<SeqNum> ooo_fin;  // a FIN seen beyond a gap
    uint32_t dup_acks = 0;
    int retransmits = 0;            // consecutive RTO expiries (or SYN retries)
    int keepalive_probes_sent = 0;
    bool in_recovery = false;
    bool ack_now = false;
    RtxMode rtx_mode = RtxMode::kRetransmit;
  };
  /// The transfer state, taken from the layer when the connection has none.
  Transfer& busy();
  /// Gives the transfer state back when it is at rest.
  void settle();
  /// settle() when the call it is made in returns, whichever way.
  struct Settle {
    explicit Settle(TcpConnection& c) : c(c) {}
    ~Settle() { c.settle(); }
    TcpConnection& c;
  };
  /// Where the send queue ends (SND.UNA's side of a FIN) and what the receive queue expects next.
  SeqNum send_tail() const { return busy_ ? busy_->tx.tail() : parked_send_tail_; }

  // tcp_input.cc
  void syn_sent_input(Instant now, const SegmentRepr& seg, Packet& payload);
  bool acceptable(const SegmentRepr& seg) const;
  bool paws_reject(Instant now, const SegmentRepr& seg) const;
  void reset_input(Instant now, const SegmentRepr& seg);
  bool ack_input(Instant now, const SegmentRepr& seg);
  void new_ack(Instant now, const SegmentRepr& seg, uint32_t acked_bytes);
  void duplicate_ack(Instant now);
  void update_window(const SegmentRepr& seg);
  void data_input(Instant now, const SegmentRepr& seg, Packet& payload);
  void fin_input(Instant now);
  void take_options(const TcpOptions& o, bool syn_ack);
  void established(Instant now);

  // tcp_output.cc
  void output(Instant now);
  void output_forced(Instant now);
  void send_syn(Instant now);
  bool send_data_segment(Instant now, SeqNum seq, uint32_t len, bool fin, bool retransmission);
  void send_control(Instant now, SeqNum seq, uint8_t flags, std::span<const uint8_t> payload = {});
  void send_ack(Instant now) { send_control(now, ack_seq(), kAck); }
  SeqNum ack_seq() const;
  void send_challenge_ack(Instant now);
  void send_reset(Instant now);
  void retransmit_head(Instant now);
  void schedule_ack(Instant now);
  uint16_t window_field();
  uint32_t receive_space() const;
  bool window_update_due() const;
  TcpOptions segment_options(Instant now, bool syn) const;
  uint32_t ts_now(Instant now) const;
  void arm_retransmit(Instant now);
  void arm_persist(Instant now);
  void arm_keepalive(Instant now);
  void on_timer(TimerEntry& entry, Instant now) override;
  void arm(TimerKind kind, Instant deadline) { busy().timers.arm(layer_timers(), kind, deadline); }
  void disarm(TimerKind kind) {
    if (busy_) busy_->timers.disarm(layer_timers(), kind);
  }
  bool armed(TimerKind kind) const { return busy_ && busy_->timers.armed(kind); }
  TimerWheel& layer_timers();
  void retransmit_timeout(Instant now);
  void persist_timeout(Instant now);
  void keepalive_timeout(Instant now);

  // tcp_connection.cc
  void set_state(State s);
  void shutdown_write_internal(Instant now);
  void enter_time_wait(Instant now);
  void closed(int err);
  void notify(uint32_t events);
  uint32_t in_flight() const { return static_cast<uint32_t>(snd_max_ - snd_una_); }
  uint32_t data_in_flight() const;
  SeqNum fin_seq() const { return send_tail(); }
  bool fin_acked() const { return fin_queued_ && snd_una_ > send_tail(); }
  void compute_mss();

  // An idle connection costs these fields (the queues, timers and loss recovery are in busy_
  // only while needed): at most 256 bytes (static_assert below), 8-byte fields first, no holes.
  TcpLayer& layer_;
  TcpListener* listener_ = nullptr;  // SYN-RECEIVED (passive) until accepted, or queued to accept
  ReadinessObserver* observer_ = nullptr;
  Transfer* busy_ = nullptr;
  RttEstimator rtt_;
  Instant ts_recent_stamp_;    // when TS.Recent was set (PAWS's 24-day rule)
  Instant last_send_;          // RFC 5681 §4.1 idle restart
  Instant last_receive_;       // keepalive idle, quick-ack after idle
  Instant last_invalid_ack_;   // tcp_invalid_ratelimit

  FourTuple tuple_;
  // The route, but for its addresses: the tuple's.
  Ipv4Addr next_hop_;
  uint16_t route_mtu_;
  bool route_loopback_ : 1;
  bool route_broadcast_ : 1;
  bool route_udp_offload_ : 1;
  bool route_tcp_offload_ : 1;
  SocketOptions options_;
  PortBinding binding_;
  // RFC 9293 §3.3.1 send sequence variables. snd_max_ is the highest sequence sent (snd_nxt_
  // goes back to snd_una_ after a retransmission timeout and climbs again).
  SeqNum iss_, snd_una_, snd_nxt_, snd_max_, snd_wl1_, snd_wl2_;
  uint32_t snd_wnd_ = 0;
  uint32_t max_snd_wnd_ = 0;  // RFC 5961 §5.2's MAX.SND.WND
  // Receive sequence variables; rcv_adv_ is the right edge of the window we advertised.
  SeqNum irs_, rcv_nxt_, rcv_adv_;
  SeqNum last_ack_sent_;
  SeqNum recover_;              // RFC 6582's "recover"
  SeqNum parked_send_tail_;     // send_tail() while busy_ is null
  uint32_t ts_recent_ = 0;      // RFC 7323 TS.Recent
  uint32_t ts_offset_ = 0;      // our TSval = milliseconds + offset (RFC 7323 §5.4: random start)
  // NewReno is the only algorithm (TcpConfig::congestion): held inline, no allocation per
  // connection. A second algorithm makes this a std::variant.
  NewReno cc_;
  uint16_t peer_mss_ = 536;     // RFC 9293 §3.7.1: without the option, 536
  uint16_t adv_mss_ = 536;      // what we announce
  uint16_t snd_mss_ = 536;      // payload bytes per segment we send (options taken off)
  int16_t error_ = 0;           // an errno value, pending for the user
  State state_ = State::kClosed;
  uint8_t snd_wscale_ = 0;      // the peer's shift, applied to windows it sends
  uint8_t rcv_wscale_ = 0;      // ours, applied to windows we send
  uint8_t quick_acks_ = 0;      // segments still to ACK at once (Linux's quick-ack mode)
  bool wscale_ok_ : 1 = false;
  bool sack_ok_ : 1 = false;
  bool ts_enabled_ : 1 = false;
  bool fin_queued_ : 1 = false;        // the user closed or shut down writing: a FIN follows the data
  bool rcv_shutdown_ : 1 = false;      // FIN received or SHUT_RD: reads see end of stream
  bool snd_shutdown_ : 1 = false;      // SHUT_WR or close: sends fail with EPIPE
  bool orphaned_ : 1 = false;          // close() was called: nobody reads any more
  bool established_once_ : 1 = false;
  bool user_reset_ : 1 = false;        // the connection ended by RST or error (vs an orderly close)
};

}  // namespace ustack::tcp
