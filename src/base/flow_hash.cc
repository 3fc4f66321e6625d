#include "base/flow_hash.h"

namespace ustack {

const std::array<uint8_t, 40> kSymmetricRssKey = [] {
  std::array<uint8_t, 40> k{};
  for (size_t i = 0; i < k.size(); i += 2) {
    k[i] = 0x6d;
    k[i + 1] = 0x5a;
  }
  return k;
}();

uint32_t toeplitz_hash(const std::array<uint8_t, 40>& key, const uint8_t* input, size_t len) {
  uint32_t hash = 0;
  // The 32-bit window of the key that lines up with the current input bit.
  uint32_t window = uint32_t{key[0]} << 24 | uint32_t{key[1]} << 16 | uint32_t{key[2]} << 8 | key[3];
  for (size_t i = 0; i < len; ++i) {
    const uint8_t next_key_byte = i + 4 < key.size() ? key[i + 4] : 0;
    for (int bit = 7; bit >= 0; --bit) {
      if (input[i] & (1u << bit)) hash ^= window;
      window = window << 1 | ((next_key_byte >> bit) & 1u);
    }
  }
  return hash;
}

namespace {

// Toeplitz is linear over XOR: the hash of the 12 input bytes is the XOR of what each byte
// contributes at its position. 12 positions x 256 values, computed once.
constexpr size_t kTupleBytes = 12;
using ContributionTable = std::array<std::array<uint32_t, 256>, kTupleBytes>;

const ContributionTable& contributions() {
  static const ContributionTable table = [] {
    ContributionTable t{};
    for (size_t pos = 0; pos < kTupleBytes; ++pos) {
      std::array<uint8_t, kTupleBytes> input{};
      for (uint32_t v = 0; v < 256; ++v) {
        input[pos] = static_cast<uint8_t>(v);
        t[pos][v] = toeplitz_hash(kSymmetricRssKey, input.data(), input.size());
      }
    }
    return t;
  }();
  return table;
}

uint32_t hash_bytes(const uint8_t* bytes, size_t len) {
  const ContributionTable& t = contributions();
  uint32_t h = 0;
  for (size_t i = 0; i < len; ++i) h ^= t[i][bytes[i]];
  return h;
}

}  // namespace

uint32_t flow_hash(Ipv4Addr src, Ipv4Addr dst, uint16_t src_port, uint16_t dst_port) {
  std::array<uint8_t, kTupleBytes> in;
  src.store(in.data());
  dst.store(in.data() + 4);
  store_be16(in.data() + 8, src_port);
  store_be16(in.data() + 10, dst_port);
  return hash_bytes(in.data(), in.size());
}

uint32_t flow_hash(Ipv4Addr src, Ipv4Addr dst) {
  std::array<uint8_t, 8> in;
  src.store(in.data());
  dst.store(in.data() + 4);
  return hash_bytes(in.data(), in.size());
}

}  // namespace ustack
