// RFC 6298 arithmetic, step by step.

#include "tcp/rtt_estimator.h"

#include <gtest/gtest.h>

namespace ustack::tcp {
namespace {

TEST(RttEstimator, StartsAtOneSecond) {  // RFC 6298 (2.1)
  RttEstimator e;
  EXPECT_EQ(e.rto(), 1s);
  EXPECT_FALSE(e.has_sample());
}

TEST(RttEstimator, FirstSampleSetsSrttAndHalfOfItAsVariance) {  // RFC 6298 (2.2)
  RttEstimator e;
  e.sample(100ms);
  EXPECT_EQ(e.srtt(), 100ms);
  EXPECT_EQ(e.rttvar(), 50ms);
  EXPECT_EQ(e.rto(), 300ms);  // 100 + 4 * 50
}

TEST(RttEstimator, LaterSamplesSmoothWithAlphaAndBeta) {  // RFC 6298 (2.3)
  RttEstimator e;
  e.sample(100ms);
  e.sample(200ms);
  EXPECT_EQ(e.rttvar(), 62500us);  // 3/4 * 50 + 1/4 * |100 - 200|
  EXPECT_EQ(e.srtt(), 112500us);   // 7/8 * 100 + 1/8 * 200
  EXPECT_EQ(e.rto(), 362500us);    // 112.5 + 4 * 62.5
}

TEST(RttEstimator, FloorIsLinuxs200msAndConfigurable) {
  RttEstimator e;
  e.sample(1ms);
  EXPECT_EQ(e.rto(), 200ms);
  const RtoConfig rfc_config{.initial = 1s, .min = 1s, .max = 60s};
  RttEstimator rfc(rfc_config);
  rfc.sample(1ms);
  EXPECT_EQ(rfc.rto(), 1s);  // RFC 6298 (2.4)
}

TEST(RttEstimator, BackoffDoublesUpToTheCeilingAndASampleResetsIt) {  // RFC 6298 (5.5)
  RttEstimator e;
  e.back_off();
  EXPECT_EQ(e.rto(), 2s);
  for (int i = 0; i < 10; ++i) e.back_off();
  EXPECT_EQ(e.rto(), 120s);
  EXPECT_EQ(e.backoffs(), 11);
  e.sample(100ms);
  EXPECT_EQ(e.backoffs(), 0);
  EXPECT_EQ(e.rto(), 300ms);
}

}  // namespace
}  // namespace ustack::tcp
