#pragma once
// RFC 791 §3.2 / RFC 815 fragment reassembly with bounded memory. Overlapping fragments drop the
// whole datagram (RFC 5722's rule for IPv6, applied here: overlaps are attacks, not accidents);
// exact duplicates are ignored.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "base/age_list.h"
#include "base/instant.h"
#include "base/packet.h"
#include "base/stats.h"
#include "base/timer_wheel.h"
#include "ip/ipv4_packet.h"

namespace ustack::ip {

struct ReassemblyConfig {
  size_t max_datagrams = 64;       ///< datagrams being reassembled at once
  size_t max_bytes = 4 << 20;      ///< fragment bytes held (Linux: ipfrag_high_thresh = 4 MiB)
  size_t max_fragments = 128;      ///< per datagram: 64 KiB in 1480-byte pieces is 45
  Duration timeout = 30s;          ///< Linux: ipfrag_time = 30 s (RFC 1122 suggests 60-120 s)
};

class ReassemblyActions {
 public:
  /// A datagram timed out; `first_fragment` (offset 0, from its IP header on) if it had arrived,
  /// for an ICMP Time Exceeded (RFC 792, code 1).
  virtual void reassembly_timed_out(Instant now, Packet first_fragment) = 0;

 protected:
  ~ReassemblyActions() = default;
};

class Reassembler final : private TimerClient {
 public:
  Reassembler(const ReassemblyConfig& config, TimerWheel& timers, Ipv4Stats& stats, ReassemblyActions& actions);
  ~Reassembler();

  /// Takes a fragment (`packet` starts at its IP header, `header` parsed from it). Returns the
  /// whole datagram, as one packet starting at an IP header with the fragment fields cleared,
  /// once every byte has arrived.
  std::optional<Packet> add(Instant now, const Ipv4Repr& header, Packet packet);

  size_t datagrams() const { return datagrams_.size(); }
  size_t bytes_held() const { return bytes_held_; }

 private:
  struct Key {
    Ipv4Addr src, dst;
    uint16_t ident;
    uint8_t protocol;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.src.value(), k.dst.value(), k.ident, k.protocol);
    }
  };
  struct Fragment {
    uint32_t offset;  // payload offset within the datagram
    uint32_t length;  // payload bytes
    uint32_t header_len;
    Packet packet;
  };
  struct Datagram : AgeList<Datagram>::Hook {
    Datagram(Reassembler* r, Key key) : key(key), timer(r, this) {}
    Key key;
    std::vector<Fragment> fragments;  // sorted by offset, never overlapping
    std::optional<uint32_t> total_length;  // known once the last fragment (MF = 0) arrives
    uint32_t received = 0;
    size_t bytes = 0;
    TimerEntry timer;
  };

  void on_timer(TimerEntry& timer, Instant now) override;
  Datagram& find_or_create(Instant now, const Key& key);
  void erase(Datagram& d);
  Packet assemble(Datagram& d);

  ReassemblyConfig config_;
  TimerWheel& timers_;
  Ipv4Stats& stats_;
  ReassemblyActions& actions_;
  absl::flat_hash_map<Key, std::unique_ptr<Datagram>> datagrams_;
  AgeList<Datagram> by_age_;  // arrival order of first fragments, for O(1) eviction
  size_t bytes_held_ = 0;
};

}  // namespace ustack::ip
