// The flow hash that decides which engine owns a flow: Toeplitz as NICs compute it (checked
// against the vectors of Microsoft's RSS verification suite), symmetric under the 0x6d5a key,
// and the redirection table's mapping to engines.

#include "base/flow_hash.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "base/rng.h"

namespace ustack {
namespace {

// Microsoft's default RSS key (the verification suite's).
constexpr std::array<uint8_t, 40> kMicrosoftKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

struct Vector {
  Ipv4Addr dst;
  uint16_t dst_port;
  Ipv4Addr src;
  uint16_t src_port;
  uint32_t ipv4_only;
  uint32_t with_ports;
};

const std::vector<Vector> kVectors = {
    {Ipv4Addr(161, 142, 100, 80), 1766, Ipv4Addr(66, 9, 149, 187), 2794, 0x323e8fc2, 0x51ccc178},
    {Ipv4Addr(65, 69, 140, 83), 4739, Ipv4Addr(199, 92, 111, 2), 14230, 0xd718262a, 0xc626b0ea},
    {Ipv4Addr(12, 22, 207, 184), 38024, Ipv4Addr(24, 19, 198, 95), 12898, 0xd2d0a5de, 0x5c2b394a},
    {Ipv4Addr(209, 142, 163, 6), 2217, Ipv4Addr(38, 27, 205, 30), 48228, 0x82989176, 0xafc7327f},
    {Ipv4Addr(202, 188, 127, 2), 1303, Ipv4Addr(153, 39, 163, 191), 44251, 0x5d1809c5, 0x10e828a2},
};

TEST(FlowHash, ToeplitzMatchesTheRssVerificationSuite) {
  for (const Vector& v : kVectors) {
    std::array<uint8_t, 12> in;
    v.src.store(in.data());
    v.dst.store(in.data() + 4);
    store_be16(in.data() + 8, v.src_port);
    store_be16(in.data() + 10, v.dst_port);
    EXPECT_EQ(toeplitz_hash(kMicrosoftKey, in.data(), 8), v.ipv4_only) << v.src.to_string();
    EXPECT_EQ(toeplitz_hash(kMicrosoftKey, in.data(), 12), v.with_ports) << v.src.to_string();
  }
}

TEST(FlowHash, TheTableDrivenHashIsToeplitzUnderTheSymmetricKey) {
  Rng rng(42);
  for (int i = 0; i < 1000; ++i) {
    const Ipv4Addr src(static_cast<uint32_t>(rng.next()));
    const Ipv4Addr dst(static_cast<uint32_t>(rng.next()));
    const auto sp = static_cast<uint16_t>(rng.next());
    const auto dp = static_cast<uint16_t>(rng.next());
    std::array<uint8_t, 12> in;
    src.store(in.data());
    dst.store(in.data() + 4);
    store_be16(in.data() + 8, sp);
    store_be16(in.data() + 10, dp);
    ASSERT_EQ(flow_hash(src, dst, sp, dp), toeplitz_hash(kSymmetricRssKey, in.data(), 12));
    ASSERT_EQ(flow_hash(src, dst), toeplitz_hash(kSymmetricRssKey, in.data(), 8));
  }
}

TEST(FlowHash, BothDirectionsOfAFlowHashAlike) {
  Rng rng(7);
  for (int i = 0; i < 10000; ++i) {
    const Ipv4Addr a(static_cast<uint32_t>(rng.next()));
    const Ipv4Addr b(static_cast<uint32_t>(rng.next()));
    const auto p = static_cast<uint16_t>(rng.next());
    const auto q = static_cast<uint16_t>(rng.next());
    ASSERT_EQ(flow_hash(a, b, p, q), flow_hash(b, a, q, p));
    ASSERT_EQ(flow_hash(a, b), flow_hash(b, a));
  }
}

TEST(FlowHash, EnginesShareTheFlowsEvenly) {
  // One client address, one server port, consecutive source ports: what an active opener sees.
  for (uint32_t engines : {2u, 3u, 4u}) {
    std::vector<int> per_engine(engines);
    for (uint32_t port = 32768; port < 32768 + 12000; ++port) {
      const uint32_t h = flow_hash(Ipv4Addr(198, 18, 0, 1), Ipv4Addr(198, 18, 0, 2), static_cast<uint16_t>(port), 8080);
      ++per_engine[engine_for_hash(h, engines)];
    }
    for (uint32_t e = 0; e < engines; ++e) {
      EXPECT_NEAR(per_engine[e], 12000.0 / engines, 12000.0 / engines * 0.1) << engines << " engines, engine " << e;
    }
  }
  EXPECT_EQ(engine_for_hash(0xffffffff, 1), 0u);
  EXPECT_EQ(engine_for_hash(129, 2), 1u);  // entry 1 of the table
}

}  // namespace
}  // namespace ustack
