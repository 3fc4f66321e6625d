// The token bucket that bounds the ICMP errors we send (RFC 1122 §3.2.2, RFC 1812 §4.3.2.8).

#include "ip/icmp_rate_limiter.h"

#include <gtest/gtest.h>

namespace ustack::ip {
namespace {

Instant at(Duration d) { return Instant() + d; }

int allowed(IcmpRateLimiter& limiter, Instant now, int tries) {
  int n = 0;
  for (int i = 0; i < tries; ++i) n += limiter.allow(now);
  return n;
}

TEST(IcmpRateLimiter, BurstThenOnePerInterval) {
  IcmpRateLimiter limiter(1000, 50);
  EXPECT_EQ(allowed(limiter, at(0ms), 60), 50);
  EXPECT_EQ(allowed(limiter, at(999us), 5), 0);
  EXPECT_EQ(allowed(limiter, at(1ms), 5), 1);
  EXPECT_EQ(allowed(limiter, at(11ms), 20), 10);
}

TEST(IcmpRateLimiter, RefillStopsAtTheBurst) {
  IcmpRateLimiter limiter(1000, 50);
  EXPECT_EQ(allowed(limiter, at(0ms), 50), 50);
  EXPECT_EQ(allowed(limiter, at(1h), 100), 50);
}

TEST(IcmpRateLimiter, PartialIntervalsAreKept) {
  // 3 per second: a token every 333.33 ms; time that has not yet made a whole token is not lost.
  IcmpRateLimiter limiter(3, 5);
  EXPECT_EQ(allowed(limiter, at(0ms), 5), 5);
  EXPECT_FALSE(limiter.allow(at(333ms)));
  EXPECT_TRUE(limiter.allow(at(334ms)));
  EXPECT_FALSE(limiter.allow(at(500ms)));
  EXPECT_TRUE(limiter.allow(at(667ms)));  // 2 tokens' worth since 0, the first one spent
  EXPECT_FALSE(limiter.allow(at(667ms)));
}

TEST(IcmpRateLimiter, ZeroRateMeansUnlimited) {
  IcmpRateLimiter limiter(0, 1);
  EXPECT_EQ(allowed(limiter, at(0ms), 1000), 1000);
}

TEST(IcmpRateLimiter, RateAboveOnePerNanosecondDoesNotCrash) {
  // A configuration value, not a constant: 2e9/s leaves less than 1 ns per token.
  IcmpRateLimiter limiter(2'000'000'000, 10);
  EXPECT_EQ(allowed(limiter, at(0ms), 20), 10);
  EXPECT_EQ(allowed(limiter, at(1us), 20), 10);
}

}  // namespace
}  // namespace ustack::ip
