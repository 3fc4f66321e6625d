#pragma once
// A token bucket for the ICMP errors we send (RFC 1812 §4.3.2.8, RFC 1122 §3.2.2: a host SHOULD
// limit them). Linux's default: 1000 messages/s, bursts of 50 (net.ipv4.icmp_msgs_per_sec/_burst).

#include <algorithm>
#include <cstdint>

#include "base/instant.h"

namespace ustack::ip {

class IcmpRateLimiter {
 public:
  IcmpRateLimiter(uint32_t per_second, uint32_t burst) : per_second_(per_second), burst_(burst), tokens_(burst) {}

  /// True if one more message may be sent at `now` (and takes its token).
  bool allow(Instant now) {
    if (per_second_ == 0) return true;  // unlimited
    if (now > last_) {
      const int64_t elapsed_ns = (now - last_).count();
      // Refill in whole tokens only, keeping the remainder of time for the next call.
      // At least 1 ns: a rate above 1e9/s would otherwise divide by zero below.
      const int64_t ns_per_token = std::max<int64_t>(1, 1'000'000'000 / per_second_);
      const int64_t new_tokens = elapsed_ns / ns_per_token;
      if (new_tokens > 0) {
        tokens_ = static_cast<uint32_t>(std::min<int64_t>(burst_, tokens_ + new_tokens));
        last_ = tokens_ == burst_ ? now : last_ + Duration(new_tokens * ns_per_token);
      }
    }
    if (tokens_ == 0) return false;
    --tokens_;
    return true;
  }

 private:
  uint32_t per_second_;
  uint32_t burst_;
  uint32_t tokens_;
  Instant last_;
};

}  // namespace ustack::ip
