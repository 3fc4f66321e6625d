#include "base/timer_wheel.h"

#include <gtest/gtest.h>

#include <vector>

namespace ustack {
namespace {

struct Recorder : TimerClient {
  std::vector<std::pair<void*, Instant>> fired;
  void on_timer(TimerEntry& e, Instant now) override { fired.emplace_back(e.context, now); }
};

Instant at(Duration d) { return Instant() + d; }

TEST(TimerWheel, FiresAtDeadlineNotBefore) {
  TimerWheel wheel(1ms, 64);
  Recorder r;
  TimerEntry t(&r);
  wheel.schedule(t, at(10ms));
  wheel.expire(at(9ms));
  EXPECT_TRUE(r.fired.empty());
  wheel.expire(at(10ms));
  ASSERT_EQ(r.fired.size(), 1u);
  EXPECT_FALSE(t.armed());
  wheel.expire(at(100ms));
  EXPECT_EQ(r.fired.size(), 1u);
}

TEST(TimerWheel, DeadlinesBeyondOneRotationWaitTheirTurn) {
  TimerWheel wheel(1ms, 16);
  Recorder r;
  TimerEntry t(&r);
  wheel.schedule(t, at(100ms));  // 6 rotations ahead
  for (int ms = 1; ms < 100; ++ms) wheel.expire(at(Duration(ms * 1ms)));
  EXPECT_TRUE(r.fired.empty());
  wheel.expire(at(100ms));
  EXPECT_EQ(r.fired.size(), 1u);
}

TEST(TimerWheel, LargeJumpFiresEverythingDueOnce) {
  TimerWheel wheel(1ms, 16);
  Recorder r;
  TimerEntry a(&r, &a), b(&r, &b), c(&r, &c);
  wheel.schedule(a, at(5ms));
  wheel.schedule(b, at(500ms));
  wheel.schedule(c, at(2h));
  wheel.expire(at(1s));
  ASSERT_EQ(r.fired.size(), 2u);
  EXPECT_TRUE(c.armed());
  wheel.expire(at(2h - 1ms));
  EXPECT_EQ(r.fired.size(), 2u);
  wheel.expire(at(2h));
  EXPECT_EQ(r.fired.size(), 3u);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheel, CancelAndDestroyDisarm) {
  TimerWheel wheel(1ms, 16);
  Recorder r;
  TimerEntry a(&r);
  wheel.schedule(a, at(3ms));
  wheel.cancel(a);
  {
    TimerEntry b(&r);
    wheel.schedule(b, at(3ms));
  }
  EXPECT_EQ(wheel.size(), 0u);
  wheel.expire(at(10ms));
  EXPECT_TRUE(r.fired.empty());
}

TEST(TimerWheel, CallbackMayCancelAnotherDueTimer) {
  TimerWheel wheel(1ms, 16);
  // Each timer cancels the other when it fires: whichever goes first, the other must not fire.
  struct Canceller : TimerClient {
    int fired = 0;
    void on_timer(TimerEntry& e, Instant) override {
      ++fired;
      auto* other = static_cast<TimerEntry*>(e.context);
      if (other->wheel) other->wheel->cancel(*other);
    }
  } client;
  TimerEntry a(&client), b(&client);
  a.context = &b;
  b.context = &a;
  wheel.schedule(a, at(2ms));
  wheel.schedule(b, at(2ms));
  wheel.expire(at(5ms));
  EXPECT_EQ(client.fired, 1);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheel, RearmFromCallbackFiresOnNextCall) {
  TimerWheel wheel(1ms, 16);
  struct Rearm : TimerClient {
    TimerWheel* wheel;
    int fired = 0;
    void on_timer(TimerEntry& e, Instant now) override {
      ++fired;
      wheel->schedule(e, now);  // due immediately: must not loop forever
    }
  } client;
  client.wheel = &wheel;
  TimerEntry a(&client);
  wheel.schedule(a, at(1ms));
  EXPECT_EQ(wheel.expire(at(1ms)), 1u);
  EXPECT_EQ(wheel.expire(at(1ms)), 1u);
  EXPECT_EQ(client.fired, 2);
}

}  // namespace
}  // namespace ustack
