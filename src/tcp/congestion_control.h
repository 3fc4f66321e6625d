#pragma once
// The congestion controller's interface: how cwnd grows on ACKs and what ssthresh becomes after
// a loss. Loss *recovery* (fast retransmit, NewReno's partial ACKs, the RTO) is the sender's job
// and the same for every algorithm; this is only the arithmetic that differs (RFC 5681 for
// NewReno, RFC 9438 for CUBIC), like Linux's tcp_congestion_ops. Windows are in bytes.
// Static polymorphism (CRTP): every connection holds its controller inline, and a vtable pointer
// would be 8 of the 256 bytes an idle connection may cost.

#include <cstdint>
#include <memory>
#include <string_view>

#include "base/instant.h"

namespace ustack::tcp {

/// `Algorithm` derives from CongestionControl<Algorithm> and defines name(), on_ack() and
/// on_loss() as documented here.
template <typename Algorithm>
class CongestionControl {
 public:

  uint32_t cwnd() const { return cwnd_; }
  uint32_t ssthresh() const { return ssthresh_; }
  bool in_slow_start() const { return cwnd_ < ssthresh_; }

  // Algorithm::on_ack(Instant now, uint32_t acked, uint32_t in_flight): an ACK advanced snd_una
  // by `acked` bytes outside loss recovery; `in_flight` is what was outstanding before it. Grows
  // cwnd (slow start or congestion avoidance).
  // Algorithm::on_loss(Instant now, uint32_t in_flight) -> uint32_t: a loss was detected (three
  // duplicate ACKs, or the retransmission timer) with `in_flight` bytes outstanding: sets
  // ssthresh (RFC 5681 (4)) and returns it.

  // What the sender's recovery does to the window; the same for every algorithm.
  /// RFC 5681 §3.2 step 2-3 (RFC 6582 §3.2 step 2): cwnd = ssthresh + 3 * SMSS.
  void enter_fast_recovery() { cwnd_ = ssthresh_ + 3 * mss_; }
  /// RFC 6582 §3.2 step 4: each further duplicate ACK inflates cwnd by one SMSS.
  void inflate() { cwnd_ += mss_; }
  /// RFC 6582 §3.2 step 5 (partial ACK): deflate by what was acked, add back one SMSS if
  /// at least that much was acked.
  void deflate(uint32_t acked) {
    cwnd_ = cwnd_ > acked ? cwnd_ - acked : 0;
    if (acked >= mss_) cwnd_ += mss_;
    if (cwnd_ < mss_) cwnd_ = mss_;
  }
  /// RFC 6582 §3.2 step 6 (full ACK), option (1) of the RFC: min(ssthresh, max(FlightSize, SMSS)
  /// + SMSS); never one segment alone, which a delayed-ACK receiver would sit on.
  void exit_fast_recovery(uint32_t in_flight) {
    const uint32_t limit = (in_flight > mss_ ? in_flight : mss_) + mss_;
    cwnd_ = ssthresh_ < limit ? ssthresh_ : limit;
  }
  /// RFC 5681 (5): after a retransmission timeout, cwnd is the loss window, one segment.
  void on_timeout(Instant now, uint32_t in_flight) {
    static_cast<Algorithm*>(this)->on_loss(now, in_flight);
    cwnd_ = mss_;
  }
  /// RFC 5681 §4.1: after an idle period longer than the RTO, restart from the initial window.
  void restart_after_idle() { cwnd_ = cwnd_ < initial_window() ? cwnd_ : initial_window(); }
  /// The sender's MSS changed (known only after the handshake).
  void set_mss(uint32_t mss) { mss_ = mss; }
  uint32_t mss() const { return mss_; }

 protected:
  /// RFC 6928 (and Linux): ten segments.
  CongestionControl(uint32_t mss, uint32_t initial_segments)
      : mss_(mss), initial_segments_(initial_segments), cwnd_(mss * initial_segments) {}
  ~CongestionControl() = default;
  uint32_t initial_window() const { return mss_ * initial_segments_; }

  uint32_t mss_;
  uint32_t initial_segments_;
  uint32_t cwnd_;
  uint32_t ssthresh_ = UINT32_MAX;  // RFC 5681 §3.1: arbitrarily high at first
};

enum class CongestionAlgorithm { kNewReno };


}  // namespace ustack::tcp
