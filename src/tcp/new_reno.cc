#include "tcp/new_reno.h"

#include <algorithm>

namespace ustack::tcp {

void NewReno::on_ack(Instant, uint32_t acked, uint32_t in_flight) {
  // RFC 7661: a sender that did not use its window has not tested it, so the window does not
  // grow (Linux's tcp_is_cwnd_limited: in slow start, half the window used is enough).
  if (in_slow_start()) {
    if (2 * static_cast<uint64_t>(in_flight) < cwnd_) return;
    // RFC 5681 (2) with RFC 3465's byte counting, L = 2 * SMSS.
    cwnd_ += std::min(acked, 2 * mss_);
    return;
  }
  if (in_flight + mss_ < cwnd_) return;
  // RFC 5681 (3): about one SMSS per round trip, counted in acked bytes (RFC 3465 §2.1).
  avoidance_credit_ += acked;
  if (avoidance_credit_ >= cwnd_) {
    avoidance_credit_ -= cwnd_;
    cwnd_ += mss_;
  }
}

uint32_t NewReno::on_loss(Instant, uint32_t in_flight) {
  // RFC 5681 (4): ssthresh = max(FlightSize / 2, 2 * SMSS).
  ssthresh_ = std::max(in_flight / 2, 2 * mss_);
  avoidance_credit_ = 0;
  return ssthresh_;
}

}  // namespace ustack::tcp
