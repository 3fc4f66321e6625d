#include "base/timer_wheel.h"

#include "base/timer_set.h"

#include <gtest/gtest.h>

#include <functional>
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

// ---- TimerSet: several timers on one entry ----

/// Three timers on one entry; `on_fire` runs inside each firing (to cancel or re-arm others).
struct ThreeTimers : TimerClient {
  explicit ThreeTimers(TimerWheel& wheel) : wheel(wheel) {}
  void on_timer(TimerEntry&, Instant now) override {
    set.expire(wheel, now, [&](size_t kind) {
      fired.emplace_back(kind, now);
      if (on_fire) on_fire(kind, now);
    });
  }
  TimerWheel& wheel;
  TimerSet<3> set{this};
  std::vector<std::pair<size_t, Instant>> fired;
  std::function<void(size_t, Instant)> on_fire;
};

TEST(TimerSet, EachTimerFiresAtItsOwnDeadlineOnce) {
  TimerWheel wheel(1ms, 64);
  ThreeTimers t(wheel);
  t.set.arm(wheel, 2, at(30ms));
  t.set.arm(wheel, 0, at(10ms));
  t.set.arm(wheel, 1, at(20ms));
  EXPECT_EQ(wheel.size(), 1u);  // one entry for all three
  for (int ms = 1; ms <= 100; ++ms) wheel.expire(at(Duration(ms * 1ms)));
  ASSERT_EQ(t.fired.size(), 3u);
  EXPECT_EQ(t.fired[0], std::make_pair(size_t{0}, at(10ms)));
  EXPECT_EQ(t.fired[1], std::make_pair(size_t{1}, at(20ms)));
  EXPECT_EQ(t.fired[2], std::make_pair(size_t{2}, at(30ms)));
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerSet, DisarmingTheEarliestMovesTheEntryToTheNext) {
  TimerWheel wheel(1ms, 64);
  ThreeTimers t(wheel);
  t.set.arm(wheel, 0, at(10ms));
  t.set.arm(wheel, 1, at(20ms));
  t.set.disarm(wheel, 0);
  EXPECT_FALSE(t.set.armed(0));
  EXPECT_TRUE(t.set.armed(1));
  for (int ms = 1; ms < 20; ++ms) wheel.expire(at(Duration(ms * 1ms)));
  EXPECT_TRUE(t.fired.empty());
  wheel.expire(at(20ms));
  ASSERT_EQ(t.fired.size(), 1u);
  EXPECT_EQ(t.fired[0].first, 1u);
  t.set.disarm(wheel, 1);  // not armed any more: nothing changes
  t.set.arm(wheel, 2, at(25ms));
  t.set.disarm_all(wheel);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerSet, ATimerDueTogetherWithAnotherIsStoppedByItsCallback) {
  TimerWheel wheel(1ms, 64);
  ThreeTimers t(wheel);
  t.set.arm(wheel, 0, at(10ms));
  t.set.arm(wheel, 1, at(10ms));
  t.set.arm(wheel, 2, at(10ms));
  // Timer 0's callback cancels 1 and re-arms 2 for later: only 0 fires now, 2 at 15 ms.
  t.on_fire = [&](size_t kind, Instant) {
    if (kind != 0) return;
    t.set.disarm(wheel, 1);
    t.set.arm(wheel, 2, at(15ms));
  };
  wheel.expire(at(10ms));
  ASSERT_EQ(t.fired.size(), 1u);
  EXPECT_EQ(t.fired[0].first, 0u);
  for (int ms = 11; ms <= 30; ++ms) wheel.expire(at(Duration(ms * 1ms)));
  ASSERT_EQ(t.fired.size(), 2u);
  EXPECT_EQ(t.fired[1], std::make_pair(size_t{2}, at(15ms)));
}

TEST(TimerSet, ATimerArmedForNowByACallbackFiresOnTheNextExpiry) {
  TimerWheel wheel(1ms, 64);
  ThreeTimers t(wheel);
  t.set.arm(wheel, 0, at(10ms));
  t.on_fire = [&](size_t kind, Instant now) {
    if (kind == 0 && t.fired.size() == 1) t.set.arm(wheel, 0, now);
  };
  EXPECT_EQ(wheel.expire(at(10ms)), 1u);
  EXPECT_EQ(t.fired.size(), 1u);  // one call always ends
  wheel.expire(at(10ms));
  EXPECT_EQ(t.fired.size(), 2u);
}

}  // namespace
}  // namespace ustack
