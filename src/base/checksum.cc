#include "base/checksum.h"

#include "base/bytes.h"

namespace ustack {

uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> bytes) {
  uint64_t acc = sum;
  size_t i = 0;
  const size_t n = bytes.size();
  const uint8_t* p = bytes.data();
  for (; i + 8 <= n; i += 8) {
    acc += uint64_t{load_be16(p + i)} + load_be16(p + i + 2) + load_be16(p + i + 4) + load_be16(p + i + 6);
  }
  for (; i + 2 <= n; i += 2) acc += load_be16(p + i);
  if (i < n) acc += uint32_t{p[i]} << 8;
  while (acc >> 32) acc = (acc & 0xffffffff) + (acc >> 32);
  return static_cast<uint32_t>(acc);
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
