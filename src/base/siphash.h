#pragma once
// SipHash-2-4 (Aumasson & Bernstein): a keyed hash that an attacker who cannot read the key
// cannot predict. RFC 6528 asks for such a function F for initial sequence numbers, and RFC 6056
// algorithm 3 for port selection.

#include <cstdint>
#include <cstring>
#include <span>

namespace ustack {

struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

inline uint64_t siphash24(const SipKey& key, std::span<const uint8_t> in) {
  auto rotl = [](uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
  uint64_t v0 = 0x736f6d6570736575ULL ^ key.k0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ key.k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ key.k0;
  uint64_t v3 = 0x7465646279746573ULL ^ key.k1;
  auto round = [&] {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  };
  const size_t n = in.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t m = 0;
    for (int b = 0; b < 8; ++b) m |= uint64_t{in[i + static_cast<size_t>(b)]} << (8 * b);  // little-endian
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  uint64_t last = uint64_t{n & 0xff} << 56;
  for (size_t b = 0; i + b < n; ++b) last |= uint64_t{in[i + b]} << (8 * b);
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  round();
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace ustack
