#include "dev/steering.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "base/bytes.h"
#include "eth/frame.h"

namespace ustack::dev {

SteeringGroup::SteeringGroup(uint32_t engines, size_t ring_capacity, const PortDirectory* ports)
    : engines_(engines), ports_(ports) {
  rings_.reserve(size_t{engines} * engines);
  for (size_t i = 0; i < size_t{engines} * engines; ++i) {
    rings_.push_back(std::make_unique<SpscRing<Packet>>(ring_capacity));
  }
  for (size_t i = 0; i < size_t{engines} * engines; ++i) {
    local_rings_.push_back(std::make_unique<SpscRing<Packet>>(ring_capacity));
  }
  for (uint32_t i = 0; i < engines; ++i) doorbells_.push_back(std::make_unique<Doorbell>());
}

namespace {

constexpr uint8_t kProtoIcmp = 1, kProtoTcp = 6, kProtoUdp = 17;

/// The owner of the IPv4 packet at `ip` (`len` bytes), or `self` when it is too short to read.
uint32_t ipv4_owner(const uint8_t* ip, size_t len, uint32_t engines, uint32_t self, bool inner,
                    const PortDirectory* ports) {
  if (len < 20 || (ip[0] >> 4) != 4) return self;
  const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
  if (ihl < 20 || len < ihl) return self;
  const uint8_t proto = ip[9];
  const Ipv4Addr src = Ipv4Addr::load(ip + 12), dst = Ipv4Addr::load(ip + 16);
  const uint16_t frag = load_be16(ip + 6);
  const bool fragment = (frag & 0x3fffu) != 0;  // MF or an offset: only the first has ports
  if (!fragment && (proto == kProtoTcp || proto == kProtoUdp) && len >= ihl + 4) {
    const uint16_t src_port = load_be16(ip + ihl), dst_port = load_be16(ip + ihl + 2);
    const uint32_t by_hash = engine_for_hash(flow_hash(src, dst, src_port, dst_port), engines);
    if (!ports) return by_hash;
    // Our port: the destination of what we receive, the source of our packet an error quotes.
    return ports->owner(proto == kProtoTcp ? PortProtocol::kTcp : PortProtocol::kUdp, inner ? src_port : dst_port,
                        by_hash);
  }
  // RFC 792 errors quote the IP header and 8 bytes of the packet that caused them: the flow is in
  // there (our packet, so source and destination are swapped: the hash does not care).
  if (!inner && !fragment && proto == kProtoIcmp && len >= ihl + 8) {
    const uint8_t type = ip[ihl];
    if (type == 3 || type == 11 || type == 12) {
      return ipv4_owner(ip + ihl + 8, len - ihl - 8, engines, self, true, ports);
    }
  }
  return engine_for_hash(flow_hash(src, dst), engines);
}

}  // namespace

uint32_t frame_owner(std::span<const uint8_t> frame, uint32_t engines, uint32_t self, const PortDirectory* ports) {
  if (engines <= 1 || frame.size() < eth::Frame::kHeaderLen) return self;
  const uint16_t type = load_be16(frame.data() + 12);
  if (type == static_cast<uint16_t>(eth::EtherType::kArp)) return kEveryEngine;
  if (type != static_cast<uint16_t>(eth::EtherType::kIpv4)) return self;
  return ipv4_owner(frame.data() + eth::Frame::kHeaderLen, frame.size() - eth::Frame::kHeaderLen, engines, self,
                    false, ports);
}

SteeredDevice::SteeredDevice(Device& queue, SteeringGroup& group, uint32_t index)
    : queue_(queue), group_(group), index_(index) {
  queue_.set_doorbell(group_.doorbell(index_).fd());
}

void SteeredDevice::attach_stats(DevStats* stats) {
  stats_ = stats;
  queue_.attach_stats(stats);
}

std::string SteeredDevice::name() const {
  return queue_.name() + " (engine " + std::to_string(index_) + " of " + std::to_string(group_.engines()) + ")";
}

bool SteeredDevice::forward(uint32_t to, Packet& frame) { return push(group_.ring(index_, to), to, frame); }

bool SteeredDevice::push(SpscRing<Packet>& ring, uint32_t to, Packet& frame) {
  const bool pushed = ring.push(frame);
  if (pushed) group_.doorbell(to).ring();
  if (!pushed && stats_) stats_->steered_dropped_ring_full.inc();
  frame = Packet();  // pushed (moved from) or dropped
  return pushed;
}

bool SteeredDevice::inbound_waiting() const {
  for (uint32_t from = 0; from < group_.engines(); ++from) {
    if (from == index_) continue;
    if (!group_.ring(from, index_).empty() || !group_.local_ring(from, index_).empty()) return true;
  }
  return false;
}

bool SteeredDevice::hand_over_local(Packet& ip_packet) {
  const uint32_t owner = ipv4_owner(ip_packet.data(), ip_packet.size(), group_.engines(), index_, false, group_.ports());
  if (owner == index_) return false;
  Packet copy = Packet::copy_of(ip_packet.bytes());
  ip_packet = Packet();
  push(group_.local_ring(index_, owner), owner, copy);
  return true;
}

bool SteeredDevice::hand_over_to(uint32_t engine, Packet& ip_packet) {
  if (engine == index_ || engine >= group_.engines()) return false;
  push(group_.local_ring(index_, engine), engine, ip_packet);
  return true;
}

size_t SteeredDevice::local_burst(std::span<Packet> out) {
  size_t n = 0;
  for (uint32_t from = 0; from < group_.engines() && n < out.size(); ++from) {
    if (from == index_) continue;
    SpscRing<Packet>& ring = group_.local_ring(from, index_);
    while (n < out.size() && ring.pop(out[n])) ++n;
  }
  return n;
}

size_t SteeredDevice::rx_burst(std::span<Packet> out) {
  // Forwarded frames take at most half the burst, so that busy peers cannot starve the queue.
  const size_t inbound_limit = out.size() > 1 ? out.size() / 2 : out.size();
  size_t n = 0;
  for (uint32_t from = 0; from < group_.engines() && n < inbound_limit; ++from) {
    if (from == index_) continue;
    SpscRing<Packet>& ring = group_.ring(from, index_);
    while (n < inbound_limit && ring.pop(out[n])) {
      if (stats_) stats_->steered_in.inc();
      ++n;
    }
  }
  handed_on_ = 0;
  if (n == out.size()) return n;
  // The queue's frames go into the rest of `out`; ours are compacted to the front.
  const size_t got = queue_.rx_burst(out.subspan(n));
  const uint32_t engines = group_.engines();
  size_t kept = n;
  for (size_t i = n; i < n + got; ++i) {
    Packet& frame = out[i];
    const uint32_t owner = frame_owner(frame.bytes(), engines, index_, group_.ports());
    if (owner == kEveryEngine) {
      for (uint32_t to = 0; to < engines; ++to) {
        if (to == index_) continue;
        Packet copy = Packet::copy_of(frame.bytes());
        if (forward(to, copy) && stats_) stats_->arp_copies_out.inc();
      }
    } else if (owner != index_) {
      if (forward(owner, frame) && stats_) stats_->steered_out.inc();
      ++handed_on_;
      continue;
    }
    if (kept != i) out[kept] = std::move(frame);
    ++kept;
  }
  return kept;
}

bool SteeredDevice::wait_rx(Duration max) {
  Doorbell& bell = group_.doorbell(index_);
  bell.arm();
  if (inbound_waiting()) {
    bell.disarm();
    return false;
  }
  const bool signal = queue_.wait_rx(max);
  bell.disarm();
  return signal;
}

}  // namespace ustack::dev
