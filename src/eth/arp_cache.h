#pragma once
// RFC 826 neighbour cache: IPv4 next hop → Ethernet address, with a bounded queue of packets
// waiting for each resolution. Sans-IO: it decides, the owner (eth::ArpEndpoint's user) sends.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "base/age_list.h"
#include "base/instant.h"
#include "base/ipv4_addr.h"
#include "base/packet.h"
#include "base/stats.h"
#include "base/timer_wheel.h"

namespace ustack::eth {

struct ArpConfig {
  size_t max_entries = 1024;          ///< beyond it the oldest entry is evicted
  size_t max_pending_per_entry = 16;  ///< packets held while resolving one address
  Duration entry_lifetime = 60s;      ///< a resolved entry is forgotten after this
  Duration refresh_window = 5s;       ///< used in its last seconds, an entry is re-probed
  Duration retransmit = 1s;           ///< between requests while resolving
  int max_requests = 3;               ///< then resolution fails (Linux: mcast_solicit = 3)
};

/// What the cache needs done: the Stack implements it.
class ArpActions {
 public:
  /// Send a request for `target`; broadcast, or unicast to `known` when refreshing.
  virtual void send_arp_request(Instant now, Ipv4Addr target, std::optional<MacAddr> known) = 0;
  /// `target` resolved: transmit these packets (IP packets, no Ethernet header yet) to `mac`.
  virtual void send_resolved(Instant now, MacAddr mac, std::vector<Packet>& packets) = 0;
  /// `target` did not answer: these packets are dropped; tell their senders.
  virtual void resolution_failed(Instant now, Ipv4Addr target, std::vector<Packet>& packets) = 0;

 protected:
  ~ArpActions() = default;
};

class ArpCache final : private TimerClient {
 public:
  ArpCache(const ArpConfig& config, TimerWheel& timers, ArpStats& stats, ArpActions& actions);
  ~ArpCache();

  /// The Ethernet address for `ip`, if resolved. Re-probes an entry about to expire.
  std::optional<MacAddr> lookup(Instant now, Ipv4Addr ip);
  /// Holds `packet` until `ip` resolves, starting resolution if needed. Drops (and counts) it when
  /// the entry's queue is full.
  void enqueue(Instant now, Ipv4Addr ip, Packet packet);
  /// RFC 826 merge: learns ip → mac. Creates an entry only when `create` (the packet was for us);
  /// otherwise only refreshes one that exists. Flushes the entry's pending packets.
  void update(Instant now, Ipv4Addr ip, MacAddr mac, bool create);
  void remove(Ipv4Addr ip);

  size_t size() const { return entries_.size(); }
  bool contains(Ipv4Addr ip) const { return entries_.contains(ip); }

 private:
  struct Entry : AgeList<Entry>::Hook {
    explicit Entry(ArpCache* cache, Ipv4Addr ip) : ip(ip), timer(cache, this) {}
    Ipv4Addr ip;
    std::optional<MacAddr> mac;  // empty while resolving
    Instant expires;             // resolved entries
    Instant last_probe;          // refresh requests: at most one per retransmit interval
    int requests_sent = 0;
    std::vector<Packet> pending;
    TimerEntry timer;
  };

  void on_timer(TimerEntry& timer, Instant now) override;
  Entry& insert(Instant now, Ipv4Addr ip);
  void erase(Entry& entry);

  ArpConfig config_;
  TimerWheel& timers_;
  ArpStats& stats_;
  ArpActions& actions_;
  absl::flat_hash_map<Ipv4Addr, std::unique_ptr<Entry>> entries_;
  AgeList<Entry> by_age_;  // insertion order, for O(1) eviction
};

}  // namespace ustack::eth
