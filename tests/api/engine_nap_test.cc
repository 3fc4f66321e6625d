// How long an idle engine naps: the whole idle_sleep_max on a device that wakes it for a frame;
// on one that cannot, a quarter of the idle spell, so that the first frame after a short lull
// does not wait out a long nap.

#include <gtest/gtest.h>

#include "api/engine.h"

namespace ustack::api {
namespace {

TEST(EngineNap, ADeviceWithRxInterruptsNapsTheWholeLimit) {
  EXPECT_EQ(nap_limit(200us, 1ms, true), 1ms);
  EXPECT_EQ(nap_limit(10s, 1ms, true), 1ms);
}

TEST(EngineNap, WithoutRxInterruptsNapsGrowWithTheIdleSpell) {
  EXPECT_EQ(nap_limit(0us, 1ms, false), kShortestNap);
  EXPECT_EQ(nap_limit(200us, 1ms, false), 50us);
  EXPECT_EQ(nap_limit(400us, 1ms, false), 100us);
  EXPECT_EQ(nap_limit(4ms, 1ms, false), 1ms);
  EXPECT_EQ(nap_limit(10s, 1ms, false), 1ms);
  EXPECT_EQ(nap_limit(0us, 5us, false), 5us);  // never above the configured limit
}

}  // namespace
}  // namespace ustack::api
