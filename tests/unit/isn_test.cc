// RFC 6528 ISNs and the SipHash under them.

#include "tcp/isn.h"

#include <gtest/gtest.h>

#include <vector>

namespace ustack {
namespace {

TEST(SipHash, MatchesTheReferenceVectors) {
  // The SipHash paper's test key 00 01 .. 0f and messages 00 01 .. (len-1).
  SipKey key{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
  std::vector<uint8_t> msg;
  EXPECT_EQ(siphash24(key, msg), 0x726fdb47dd0e0e31ULL);
  for (uint8_t i = 0; i < 15; ++i) msg.push_back(i);
  EXPECT_EQ(siphash24(key, msg), 0xa129ca6149be45e5ULL);  // the paper's 15-byte example
}

const Ipv4Addr kLocal(198, 18, 0, 2), kRemote(198, 18, 0, 1);

TEST(Isn, FollowsAFourMicrosecondClockPerTuple) {
  Rng rng(7);
  tcp::IsnGenerator isn(rng);
  const Instant t0 = Instant() + 10s;
  const tcp::SeqNum a = isn.generate(t0, kLocal, 7777, kRemote, 40000);
  EXPECT_EQ(isn.generate(t0, kLocal, 7777, kRemote, 40000), a);  // a function of tuple and time
  EXPECT_EQ(isn.generate(t0 + 1s, kLocal, 7777, kRemote, 40000) - a, 250000);
  EXPECT_EQ(isn.generate(t0 + 4us, kLocal, 7777, kRemote, 40000) - a, 1);
}

TEST(Isn, TuplesAndKeysStartFarApart) {
  Rng rng(7), other_rng(8);
  tcp::IsnGenerator isn(rng), other_key(other_rng);
  const Instant t = Instant() + 1s;
  const tcp::SeqNum a = isn.generate(t, kLocal, 7777, kRemote, 40000);
  EXPECT_NE(isn.generate(t, kLocal, 7777, kRemote, 40001), a);
  EXPECT_NE(isn.generate(t, kLocal, 7778, kRemote, 40000), a);
  EXPECT_NE(other_key.generate(t, kLocal, 7777, kRemote, 40000), a);
  // Neighbouring ports do not give neighbouring ISNs (the hash, not a counter, separates them).
  const int32_t gap = isn.generate(t, kLocal, 7777, kRemote, 40001) - a;
  EXPECT_GT(std::abs(static_cast<int64_t>(gap)), 1 << 20);
}

}  // namespace
}  // namespace ustack
