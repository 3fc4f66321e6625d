#include "base/checksum.h"

#include <bit>
#include <cstring>

#include "base/bytes.h"

namespace ustack {

uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> bytes) {
  // RFC 1071 §2(B): the one's-complement sum does not care about byte order. Sum native 64-bit
  // words with end-around carry, fold to 16 bits, and swap those once into network order: about
  // a third of the instructions of summing big-endian 16-bit words (it is half of the core's cost
  // per MSS segment otherwise; bench/core-cost). Every piece but the last has even length, so
  // the odd last byte always sits at an even offset: the low byte of a little-endian word.
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  uint64_t acc = 0;
  auto add = [&acc](uint64_t w) {
    acc += w;
    acc += acc < w;  // the carry out of bit 63 comes back in at bit 0
  };
  for (; n >= 32; p += 32, n -= 32) {
    uint64_t w[4];
    std::memcpy(w, p, sizeof w);
    add(w[0]);
    add(w[1]);
    add(w[2]);
    add(w[3]);
  }
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, sizeof w);
    add(w);
  }
  if (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, sizeof w);
    add(w);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    std::memcpy(&w, p, sizeof w);
    add(w);
    p += 2;
    n -= 2;
  }
  if (n == 1) add(std::endian::native == std::endian::little ? uint64_t{p[0]} : uint64_t{p[0]} << 8);
  acc = (acc & 0xffffffff) + (acc >> 32);
  acc = (acc & 0xffffffff) + (acc >> 32);
  auto folded = static_cast<uint32_t>(acc);
  folded = (folded & 0xffff) + (folded >> 16);
  folded = (folded & 0xffff) + (folded >> 16);
  if constexpr (std::endian::native == std::endian::little) {
    folded = static_cast<uint16_t>(folded << 8 | folded >> 8);
  }
  uint64_t total = uint64_t{sum} + folded;
  total = (total & 0xffffffff) + (total >> 32);
  return static_cast<uint32_t>(total);
}

uint16_t checksum_finish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint32_t pseudo_header_sum(Ipv4Addr src, Ipv4Addr dst, uint8_t protocol, uint16_t l4_length) {
  uint64_t acc = (src.value() >> 16) + (src.value() & 0xffff) + (dst.value() >> 16) +
                 (dst.value() & 0xffff) + protocol + l4_length;
  while (acc >> 32) acc = (acc & 0xffffffff) + (acc >> 32);
  return static_cast<uint32_t>(acc);
}

uint16_t pseudo_header_partial(Ipv4Addr src, Ipv4Addr dst, uint8_t protocol, uint16_t l4_length) {
  uint32_t sum = pseudo_header_sum(src, dst, protocol, l4_length);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

}  // namespace ustack
