#pragma once
// RFC 5681 slow start and congestion avoidance; with the sender's RFC 6582 recovery this is
// NewReno, the default.

#include "tcp/congestion_control.h"

namespace ustack::tcp {

class NewReno final : public CongestionControl<NewReno> {
 public:
  NewReno(uint32_t mss, uint32_t initial_segments) : CongestionControl(mss, initial_segments) {}
  std::string_view name() const { return "newreno"; }
  void on_ack(Instant now, uint32_t acked, uint32_t in_flight);
  uint32_t on_loss(Instant now, uint32_t in_flight);

 private:
  uint32_t avoidance_credit_ = 0;  // bytes acked since cwnd last grew in congestion avoidance
};

}  // namespace ustack::tcp
