#pragma once
// RFC 1071 Internet checksum, in pieces so that headers and pseudo-headers can be summed apart.

#include <cstdint>
#include <span>

#include "base/ipv4_addr.h"

namespace ustack {

/// Adds `bytes` to a running one's-complement sum. Odd-length pieces are only valid last.
uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> bytes);
/// Folds a running sum to 16 bits and complements it: the value that goes on the wire.
uint16_t checksum_finish(uint32_t sum);
/// The checksum of `bytes` alone (IPv4 header, ICMP message).
inline uint16_t internet_checksum(std::span<const uint8_t> bytes) {
  return checksum_finish(checksum_add(0, bytes));
}
/// The unfolded sum of the TCP/UDP pseudo-header (RFC 768, RFC 9293 §3.1).
uint32_t pseudo_header_sum(Ipv4Addr src, Ipv4Addr dst, uint8_t protocol, uint16_t l4_length);
/// The pseudo-header sum folded but not complemented: what checksum-offloading NICs expect in the
/// L4 checksum field before transmit.
uint16_t pseudo_header_partial(Ipv4Addr src, Ipv4Addr dst, uint8_t protocol, uint16_t l4_length);

}  // namespace ustack
