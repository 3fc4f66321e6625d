#pragma once
// Which engine owns a flow. Engines share nothing, so every frame of a TCP connection or UDP flow,
// in both directions, must reach the engine that holds its state. A NIC does that with RSS: the
// Toeplitz hash of the IPv4 4-tuple, under a 40-byte key, indexes a redirection table of 128
// entries that name queues. With a key whose 16-bit pattern repeats (0x6d5a, Woo and Park's
// symmetric RSS), swapping source and destination does not change the hash, so the reply to a
// segment lands where the segment came from. The same function runs in software for devices
// without RSS (net_tap, net_memif): dev/steering.h forwards a frame that reached the wrong queue,
// and active opens pick a source port that hashes to the opening engine (as Seastar does).

#include <array>
#include <cstdint>

#include "base/ipv4_addr.h"

namespace ustack {

/// The symmetric key: 0x6d5a repeated, 40 bytes, as NICs take it.
extern const std::array<uint8_t, 40> kSymmetricRssKey;

/// Toeplitz over `input` (at most 36 bytes) with `key`: what a NIC computes (Microsoft's RSS
/// specification; the verification suite's vectors are in tests/unit/flow_hash_test.cc).
uint32_t toeplitz_hash(const std::array<uint8_t, 40>& key, const uint8_t* input, size_t len);

/// The RSS hash of an IPv4 TCP or UDP flow under the symmetric key: source address, destination
/// address, source port, destination port, in that order, as a NIC hashes a received packet.
/// Symmetric: flow_hash(a, b, p, q) == flow_hash(b, a, q, p). Table-driven (no per-bit loop).
uint32_t flow_hash(Ipv4Addr src, Ipv4Addr dst, uint16_t src_port, uint16_t dst_port);
/// For IPv4 packets without ports (fragments, ICMP, other protocols): the two addresses only.
uint32_t flow_hash(Ipv4Addr src, Ipv4Addr dst);

/// Entries in the redirection table (NICs have 128 or more; DPDK fills it round robin).
inline constexpr uint32_t kRedirectionEntries = 128;

/// The engine that owns a hash among `engines`, as a redirection table filled round robin maps it
/// (entry hash % 128 holds queue entry % engines).
constexpr uint32_t engine_for_hash(uint32_t hash, uint32_t engines) {
  return engines <= 1 ? 0 : (hash % kRedirectionEntries) % engines;
}

class PortDirectory;

/// Which of the engines sharing a device a stack is, and where they record the ports they hold.
struct EngineShare {
  uint32_t index = 0;
  uint32_t count = 1;
  PortDirectory* ports = nullptr;  ///< shared by the engines (base/port_directory.h); null with one
  bool owns_hash(uint32_t hash) const { return engine_for_hash(hash, count) == index; }
  /// True when this engine owns the flow (always, with one engine).
  bool owns_flow(Ipv4Addr a, Ipv4Addr b, uint16_t a_port, uint16_t b_port) const {
    return count <= 1 || owns_hash(flow_hash(a, b, a_port, b_port));
  }
};

}  // namespace ustack
