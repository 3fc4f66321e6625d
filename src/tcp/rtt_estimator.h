#pragma once
// RFC 6298 retransmission timer: SRTT/RTTVAR from RTT samples, RTO with a floor and a ceiling,
// exponential backoff. Karn's rule (no samples from retransmitted segments) is the caller's: it
// only calls sample() for segments sent once, or with timestamps (RFC 7323 §4.1), which are
// unambiguous.
//
// The floor: RFC 6298 (2.4) says 1 s; Linux uses 200 ms (TCP_RTO_MIN) and so do we by default,
// because our peers are mostly Linux hosts on short paths, where a 1 s floor turns every lost tail
// segment into a second of stall. It is a parameter, so a deployment can choose the RFC's value.

#include <algorithm>
#include <cstdint>

#include "base/instant.h"

namespace ustack::tcp {

struct RtoConfig {
  Duration initial = 1s;  ///< RFC 6298 (2.1)
  Duration min = 200ms;   ///< Linux's TCP_RTO_MIN (RFC 6298 (2.4) says 1 s; see above)
  Duration max = 120s;    ///< Linux's TCP_RTO_MAX; RFC 6298 (2.5) allows a ceiling of >= 60 s
};

class RttEstimator {
 public:
  /// `config` (the layer's) outlives the estimator; the RTO starts at `initial`.
  RttEstimator(const RtoConfig& config, Duration initial) : config_(&config), rto_(micros(initial)) {}
  explicit RttEstimator(const RtoConfig& config = kDefaults) : RttEstimator(config, config.initial) {}
  RttEstimator(RtoConfig&&, Duration) = delete;  // it would dangle
  explicit RttEstimator(RtoConfig&&) = delete;

  /// RFC 6298 (2.2)/(2.3): a new measurement. Resets any backoff (5.7 is about the timer; Linux
  /// also recomputes RTO from the new estimate).
  void sample(Duration rtt) {
    rtt = std::max<Duration>(rtt, 1us);
    Duration srtt = this->srtt();
    Duration rttvar = this->rttvar();
    if (!has_sample_) {
      srtt = rtt;
      rttvar = rtt / 2;
      has_sample_ = true;
    } else {
      const Duration err = srtt > rtt ? srtt - rtt : rtt - srtt;
      rttvar = rttvar - rttvar / 4 + err / 4;  // beta = 1/4
      srtt = srtt - srtt / 8 + rtt / 8;        // alpha = 1/8
    }
    srtt_ = micros(srtt);
    rttvar_ = micros(rttvar);
    backoffs_ = 0;
    // G (clock granularity) is 1 us here: K * RTTVAR always dominates it.
    rto_ = micros(clamp(srtt + std::max<Duration>(1us, 4 * rttvar)));
  }

  /// RFC 6298 (5.5): the timer expired; double the RTO (up to the ceiling).
  void back_off() {
    if (backoffs_ < UINT8_MAX) ++backoffs_;
    rto_ = micros(clamp(rto() * 2));
  }

  Duration rto() const { return std::chrono::microseconds(rto_); }
  Duration srtt() const { return std::chrono::microseconds(srtt_); }
  Duration rttvar() const { return std::chrono::microseconds(rttvar_); }
  bool has_sample() const { return has_sample_; }
  int backoffs() const { return backoffs_; }

 private:
  static constexpr RtoConfig kDefaults{};
  Duration clamp(Duration d) const { return std::clamp(d, config_->min, config_->max); }

  // Every connection holds one: microseconds in 32 bits (71 minutes; the RTO's ceiling is 2).
  static uint32_t micros(Duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    return static_cast<uint32_t>(std::clamp<int64_t>(us, 0, UINT32_MAX));
  }
  const RtoConfig* config_;  // every connection has one: a pointer, not a copy
  uint32_t rto_;
  uint32_t srtt_ = 0;
  uint32_t rttvar_ = 0;
  bool has_sample_ = false;
  uint8_t backoffs_ = 0;
};

}  // namespace ustack::tcp
