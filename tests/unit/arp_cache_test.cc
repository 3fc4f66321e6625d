// The RFC 826 neighbour cache on its own: a fake ArpActions records what the cache asks for, a
// ManualClock and a TimerWheel drive its timers.

#include "eth/arp_cache.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "base/instant.h"
#include "base/timer_wheel.h"
#include "test_frames.h"

namespace ustack::eth {
namespace {

using test::Bytes;
using test::Loc;

constexpr Ipv4Addr kPeer(198, 18, 0, 1);
constexpr Ipv4Addr kPeer2(198, 18, 0, 3);
constexpr MacAddr kPeerMac({0x02, 0, 0, 0, 0, 0x01});
constexpr MacAddr kOtherMac({0x02, 0, 0, 0, 0, 0x09});

struct Request {
  Instant at;
  Ipv4Addr target;
  std::optional<MacAddr> known;
};
struct Batch {
  Instant at;
  MacAddr mac;  // send_resolved
  Ipv4Addr target;  // resolution_failed
  std::vector<Bytes> packets;
};

class FakeArpActions final : public ArpActions {
 public:
  void send_arp_request(Instant now, Ipv4Addr target, std::optional<MacAddr> known) override {
    requests.push_back({now, target, known});
  }
  void send_resolved(Instant now, MacAddr mac, std::vector<Packet>& packets) override {
    resolved.push_back({now, mac, Ipv4Addr(), contents(packets)});
  }
  void resolution_failed(Instant now, Ipv4Addr target, std::vector<Packet>& packets) override {
    failed.push_back({now, MacAddr(), target, contents(packets)});
  }
  static std::vector<Bytes> contents(std::vector<Packet>& packets) {
    std::vector<Bytes> out;
    for (Packet& p : packets) out.emplace_back(p.bytes().begin(), p.bytes().end());
    return out;
  }

  std::vector<Request> requests;
  std::vector<Batch> resolved;
  std::vector<Batch> failed;
};

Bytes packet_bytes(uint8_t n) { return test::pattern(20 + n, n); }

class ArpCacheTest : public ::testing::Test {
 protected:
  void make(const ArpConfig& config = {}) { cache_.emplace(config, wheel_, stats_, actions_); }
  void SetUp() override { make(); }

  Instant now() const { return clock_.now(); }
  void advance(Duration d) {
    clock_.advance(d);
    wheel_.expire(now());
  }
  void enqueue(Ipv4Addr ip, uint8_t n) { cache_->enqueue(now(), ip, Packet::copy_of(packet_bytes(n))); }

  /// Exactly one request was asked for since the last check; returns it.
  Request expect_request(Ipv4Addr target, std::optional<MacAddr> known, const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    auto got = std::exchange(actions_.requests, {});
    if (got.size() != 1) {
      ADD_FAILURE() << "expected one ARP request, got " << got.size();
      return {};
    }
    EXPECT_EQ(got[0].target, target);
    EXPECT_EQ(got[0].known, known) << (known ? "unicast refresh expected" : "broadcast expected");
    EXPECT_EQ(got[0].at, now());
    return got[0];
  }
  void expect_nothing_asked(const Loc& loc = Loc::current()) {
    USTACK_TRACE_CALLER(loc);
    EXPECT_EQ(actions_.requests.size(), 0u) << "unexpected ARP request";
    EXPECT_EQ(actions_.resolved.size(), 0u) << "unexpected send_resolved";
    EXPECT_EQ(actions_.failed.size(), 0u) << "unexpected resolution_failed";
    actions_.requests.clear();
    actions_.resolved.clear();
    actions_.failed.clear();
  }

  ManualClock clock_;
  TimerWheel wheel_{1ms, 4096};
  ArpStats stats_;
  FakeArpActions actions_;
  std::optional<ArpCache> cache_;
};

TEST_F(ArpCacheTest, EnqueueSendsExactlyOneBroadcastRequest) {
  enqueue(kPeer, 1);
  expect_request(kPeer, std::nullopt);
  enqueue(kPeer, 2);
  enqueue(kPeer, 3);
  expect_nothing_asked();
  EXPECT_EQ(cache_->lookup(now(), kPeer), std::nullopt);
  expect_nothing_asked();  // a lookup of an unresolved entry does not ask again
  EXPECT_EQ(stats_.tx_requests, 1u);
  EXPECT_EQ(stats_.pending_queued, 3u);
  EXPECT_TRUE(cache_->contains(kPeer));
}

TEST_F(ArpCacheTest, RetransmitsEverySecondThenFailsWithTheQueuedPackets) {
  enqueue(kPeer, 1);
  enqueue(kPeer, 2);
  expect_request(kPeer, std::nullopt);
  advance(999ms);
  expect_nothing_asked();
  advance(1ms);
  expect_request(kPeer, std::nullopt);  // second of max_requests = 3
  advance(999ms);
  expect_nothing_asked();
  advance(1ms);
  expect_request(kPeer, std::nullopt);  // third
  advance(999ms);
  expect_nothing_asked();
  advance(1ms);
  ASSERT_EQ(actions_.failed.size(), 1u);
  EXPECT_EQ(actions_.failed[0].target, kPeer);
  EXPECT_EQ(actions_.failed[0].at, now());
  EXPECT_EQ(actions_.failed[0].packets, (std::vector<Bytes>{packet_bytes(1), packet_bytes(2)}));
  actions_.failed.clear();
  expect_nothing_asked();
  EXPECT_FALSE(cache_->contains(kPeer));
  EXPECT_EQ(stats_.resolution_failed, 1u);
  EXPECT_EQ(stats_.pending_dropped_unresolved, 2u);
  EXPECT_EQ(stats_.tx_requests, 3u);
  advance(10s);
  expect_nothing_asked();
  // The next packet starts over.
  enqueue(kPeer, 3);
  expect_request(kPeer, std::nullopt);
}

TEST_F(ArpCacheTest, MaxRequestsIsConfigurable) {
  ArpConfig config;
  config.max_requests = 1;
  config.retransmit = 250ms;
  make(config);
  enqueue(kPeer, 1);
  expect_request(kPeer, std::nullopt);
  advance(249ms);
  expect_nothing_asked();
  advance(1ms);
  EXPECT_EQ(actions_.requests.size(), 0u);
  EXPECT_EQ(actions_.failed.size(), 1u);
}

TEST_F(ArpCacheTest, UpdateFlushesPendingInOrderAndStopsRetransmitting) {
  enqueue(kPeer, 1);
  enqueue(kPeer, 2);
  enqueue(kPeer, 3);
  expect_request(kPeer, std::nullopt);
  advance(400ms);
  cache_->update(now(), kPeer, kPeerMac, /*create=*/false);  // the entry exists: refreshed
  ASSERT_EQ(actions_.resolved.size(), 1u);
  EXPECT_EQ(actions_.resolved[0].mac, kPeerMac);
  EXPECT_EQ(actions_.resolved[0].at, now());
  EXPECT_EQ(actions_.resolved[0].packets, (std::vector<Bytes>{packet_bytes(1), packet_bytes(2), packet_bytes(3)}));
  actions_.resolved.clear();
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  advance(10s);
  expect_nothing_asked();
  // Resolved: what comes later is not queued (the caller looks up first), and a second update
  // has nothing to flush.
  cache_->update(now(), kPeer, kPeerMac, false);
  expect_nothing_asked();
}

TEST_F(ArpCacheTest, PendingQueueIsBoundedPerEntry) {
  ArpConfig config;
  config.max_pending_per_entry = 4;
  make(config);
  for (uint8_t n = 1; n <= 6; ++n) enqueue(kPeer, n);
  enqueue(kPeer2, 7);  // another entry has its own queue
  EXPECT_EQ(stats_.pending_queued, 5u);
  EXPECT_EQ(stats_.pending_dropped_queue_full, 2u);
  actions_.requests.clear();
  cache_->update(now(), kPeer, kPeerMac, false);
  ASSERT_EQ(actions_.resolved.size(), 1u);
  EXPECT_EQ(actions_.resolved[0].packets,
            (std::vector<Bytes>{packet_bytes(1), packet_bytes(2), packet_bytes(3), packet_bytes(4)}));
}

TEST_F(ArpCacheTest, ResolvedEntryExpiresAfterItsLifetime) {
  cache_->update(now(), kPeer, kPeerMac, /*create=*/true);
  EXPECT_EQ(stats_.cache_entries_added, 1u);
  advance(60s - 1ms);
  EXPECT_TRUE(cache_->contains(kPeer));
  advance(1ms);
  EXPECT_FALSE(cache_->contains(kPeer));
  EXPECT_EQ(stats_.cache_entries_expired, 1u);
  expect_nothing_asked();
  EXPECT_EQ(cache_->lookup(now(), kPeer), std::nullopt);
  enqueue(kPeer, 1);
  expect_request(kPeer, std::nullopt);  // resolved from scratch: broadcast
}

TEST_F(ArpCacheTest, RefreshProbeIsUnicastInsideTheWindowAndRateLimited) {
  cache_->update(now(), kPeer, kPeerMac, true);
  advance(55s - 1ms);  // lifetime 60 s, window 5 s
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  expect_nothing_asked();
  advance(1ms);
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  expect_request(kPeer, kPeerMac);
  advance(500ms);
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  expect_nothing_asked();  // at most one per retransmit interval
  advance(500ms);
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  expect_request(kPeer, kPeerMac);
  // The answer (not addressed to us: create=false) extends the entry's life.
  advance(500ms);
  cache_->update(now(), kPeer, kPeerMac, false);
  const Instant refreshed = now();
  advance(1s);
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  expect_nothing_asked();
  clock_.set(refreshed + 60s - 1ms);
  wheel_.expire(now());
  EXPECT_TRUE(cache_->contains(kPeer));
  advance(1ms);
  EXPECT_FALSE(cache_->contains(kPeer));
}

TEST_F(ArpCacheTest, UnansweredRefreshLetsTheEntryExpire) {
  cache_->update(now(), kPeer, kPeerMac, true);
  advance(56s);
  EXPECT_EQ(cache_->lookup(now(), kPeer), kPeerMac);
  expect_request(kPeer, kPeerMac);
  advance(4s);
  EXPECT_FALSE(cache_->contains(kPeer));
  EXPECT_EQ(cache_->lookup(now(), kPeer), std::nullopt);
}

TEST_F(ArpCacheTest, MaxEntriesEvictsTheOldest) {
  ArpConfig config;
  config.max_entries = 3;
  make(config);
  const Ipv4Addr a(198, 18, 0, 10), b(198, 18, 0, 11), c(198, 18, 0, 12), d(198, 18, 0, 13);
  enqueue(a, 1);  // resolving, one packet held
  cache_->update(now(), b, kPeerMac, true);
  cache_->update(now(), c, kPeerMac, true);
  actions_.requests.clear();
  cache_->update(now(), d, kPeerMac, true);
  EXPECT_EQ(cache_->size(), 3u);
  EXPECT_FALSE(cache_->contains(a));
  EXPECT_TRUE(cache_->contains(b));
  EXPECT_TRUE(cache_->contains(c));
  EXPECT_TRUE(cache_->contains(d));
  EXPECT_EQ(stats_.cache_full_evictions, 1u);
  EXPECT_EQ(stats_.pending_dropped_unresolved, 1u);
  // The evicted entry's retransmit timer went with it.
  advance(5s);
  expect_nothing_asked();
  cache_->update(now(), a, kPeerMac, true);
  EXPECT_FALSE(cache_->contains(b));
  EXPECT_EQ(stats_.cache_full_evictions, 2u);
}

TEST_F(ArpCacheTest, ConfirmedEntryIsNotTheNextEvicted) {
  ArpConfig config;
  config.max_entries = 2;
  make(config);
  const Ipv4Addr a(198, 18, 0, 10), b(198, 18, 0, 11), c(198, 18, 0, 12);
  cache_->update(now(), a, kPeerMac, true);
  cache_->update(now(), b, kPeerMac, true);
  cache_->update(now(), a, kPeerMac, false);  // a answers again: b is now the oldest
  cache_->update(now(), c, kPeerMac, true);
  EXPECT_TRUE(cache_->contains(a));
  EXPECT_FALSE(cache_->contains(b));
  EXPECT_TRUE(cache_->contains(c));
}

TEST_F(ArpCacheTest, UpdateWithoutCreateDoesNotCreate) {
  cache_->update(now(), kPeer, kPeerMac, /*create=*/false);
  EXPECT_FALSE(cache_->contains(kPeer));
  EXPECT_EQ(cache_->size(), 0u);
  EXPECT_EQ(stats_.cache_entries_added, 0u);
  expect_nothing_asked();
  EXPECT_EQ(cache_->lookup(now(), kPeer), std::nullopt);
  // But it refreshes an entry that exists: alive 60 s after the refresh, not after the creation.
  cache_->update(now(), kPeer, kPeerMac, true);
  advance(30s);
  cache_->update(now(), kPeer, kPeerMac, false);
  advance(59s);
  EXPECT_TRUE(cache_->contains(kPeer));
  advance(1s);
  EXPECT_FALSE(cache_->contains(kPeer));
}

TEST_F(ArpCacheTest, NewAddressForAnEntryIsTakenAndCounted) {
  cache_->update(now(), kPeer, kPeerMac, true);
  cache_->update(now(), kPeer, kOtherMac, false);
  EXPECT_EQ(cache_->lookup(now(), kPeer), kOtherMac);
  EXPECT_EQ(stats_.rx_conflicts, 1u);
  cache_->update(now(), kPeer, kOtherMac, false);
  EXPECT_EQ(stats_.rx_conflicts, 1u);
}

TEST_F(ArpCacheTest, RemoveCancelsResolution) {
  enqueue(kPeer, 1);
  expect_request(kPeer, std::nullopt);
  cache_->remove(kPeer);
  EXPECT_FALSE(cache_->contains(kPeer));
  advance(10s);
  expect_nothing_asked();
  EXPECT_EQ(wheel_.size(), 0u);
}

}  // namespace
}  // namespace ustack::eth
