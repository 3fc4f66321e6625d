#include "eth/arp_cache.h"

namespace ustack::eth {

ArpCache::ArpCache(const ArpConfig& config, TimerWheel& timers, ArpStats& stats, ArpActions& actions)
    : config_(config), timers_(timers), stats_(stats), actions_(actions) {}

ArpCache::~ArpCache() = default;

std::optional<MacAddr> ArpCache::lookup(Instant now, Ipv4Addr ip) {
  auto it = entries_.find(ip);
  if (it == entries_.end() || !it->second->mac) return std::nullopt;
  Entry& e = *it->second;
  // Refresh in use before expiry so that an active flow never waits on a fresh resolution.
  if (now >= e.expires - config_.refresh_window && now >= e.last_probe + config_.retransmit) {
    e.last_probe = now;
    ++stats_.tx_requests;
    actions_.send_arp_request(now, ip, e.mac);
  }
  return e.mac;
}

void ArpCache::enqueue(Instant now, Ipv4Addr ip, Packet packet) {
  auto it = entries_.find(ip);
  Entry* e = it == entries_.end() ? nullptr : it->second.get();
  if (!e) {
    e = &insert(now, ip);
    e->requests_sent = 1;
    ++stats_.tx_requests;
    timers_.schedule(e->timer, now + config_.retransmit);
    actions_.send_arp_request(now, ip, std::nullopt);
  }
  if (e->pending.size() >= config_.max_pending_per_entry) {
    ++stats_.pending_dropped_queue_full;
    return;
  }
  ++stats_.pending_queued;
  e->pending.push_back(std::move(packet));
}

void ArpCache::update(Instant now, Ipv4Addr ip, MacAddr mac, bool create) {
  auto it = entries_.find(ip);
  Entry* e = it == entries_.end() ? nullptr : it->second.get();
  if (!e) {
    if (!create) return;
    e = &insert(now, ip);
  }
  if (e->mac && *e->mac != mac) ++stats_.rx_conflicts;
  // A confirmed neighbour is the least worth evicting: it moves to the young end.
  by_age_.unlink(*e);
  by_age_.push_newest(*e);
  e->mac = mac;
  e->expires = now + config_.entry_lifetime;
  e->requests_sent = 0;
  timers_.schedule(e->timer, e->expires);
  if (!e->pending.empty()) {
    std::vector<Packet> pending = std::move(e->pending);
    e->pending.clear();
    actions_.send_resolved(now, mac, pending);
  }
}

void ArpCache::remove(Ipv4Addr ip) {
  auto it = entries_.find(ip);
  if (it != entries_.end()) erase(*it->second);
}

ArpCache::Entry& ArpCache::insert(Instant now, Ipv4Addr ip) {
  if (entries_.size() >= config_.max_entries && by_age_.oldest()) {
    ++stats_.cache_full_evictions;
    stats_.pending_dropped_unresolved.inc(by_age_.oldest()->pending.size());
    erase(*by_age_.oldest());
  }
  auto owned = std::make_unique<Entry>(this, ip);
  Entry& e = *owned;
  e.last_probe = now;
  by_age_.push_newest(e);
  entries_.emplace(ip, std::move(owned));
  ++stats_.cache_entries_added;
  return e;
}

void ArpCache::erase(Entry& e) {
  by_age_.unlink(e);
  entries_.erase(e.ip);  // destroys e (and cancels its timer)
}

void ArpCache::on_timer(TimerEntry& timer, Instant now) {
  Entry& e = *static_cast<Entry*>(timer.context);
  if (e.mac) {
    ++stats_.cache_entries_expired;
    erase(e);
    return;
  }
  if (e.requests_sent < config_.max_requests) {
    ++e.requests_sent;
    ++stats_.tx_requests;
    timers_.schedule(e.timer, now + config_.retransmit);
    actions_.send_arp_request(now, e.ip, std::nullopt);
    return;
  }
  ++stats_.resolution_failed;
  stats_.pending_dropped_unresolved.inc(e.pending.size());
  std::vector<Packet> pending = std::move(e.pending);
  Ipv4Addr ip = e.ip;
  erase(e);
  actions_.resolution_failed(now, ip, pending);
}

}  // namespace ustack::eth
