#include "stack/stack.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "eth/arp_packet.h"
#include "udp/datagram.h"

namespace ustack {

namespace {

constexpr Ipv4Addr kLoopbackSource(127, 0, 0, 1);
constexpr uint16_t kLoopbackMtu = 65535;
constexpr size_t kLinkAndIpHeaders = eth::Frame::kHeaderLen + ip::Ipv4Repr::emitted_header_len();
// RFC 1812 §4.3.2.3: an ICMP error quotes as much of the offending datagram as fits in 576 bytes.
constexpr size_t kMaxIcmpErrorLen = 576;

MacAddr multicast_mac(Ipv4Addr group) {
  // RFC 1112 §6.4: 01:00:5e followed by the group's low 23 bits.
  const uint32_t v = group.value();
  return MacAddr({0x01, 0x00, 0x5e, static_cast<uint8_t>((v >> 16) & 0x7f), static_cast<uint8_t>(v >> 8),
                  static_cast<uint8_t>(v)});
}

// Linux's icmp_err_convert[]: the errno for each Destination Unreachable code, and whether it is
// "fatal" (a hard error, reported to a connected UDP socket without IP_RECVERR).
struct UnreachableErrno {
  int err;
  bool fatal;
};
constexpr UnreachableErrno kUnreachable[] = {
    {ENETUNREACH, false}, {EHOSTUNREACH, false}, {ENOPROTOOPT, true}, {ECONNREFUSED, true},
    {EMSGSIZE, false},    {EOPNOTSUPP, false},   {ENETUNREACH, true}, {EHOSTDOWN, true},
    {ENONET, true},       {ENETUNREACH, true},   {EHOSTUNREACH, true}, {ENETUNREACH, false},
    {EHOSTUNREACH, false}, {EHOSTUNREACH, true}, {EHOSTUNREACH, true}, {EHOSTUNREACH, true},
};

}  // namespace

Stack::Stack(const StackConfig& config, dev::Device& device)
    : config_(config),
      device_(device),
      mtu_(config.mtu ? std::min(config.mtu, device.caps().mtu) : device.caps().mtu),
      rng_(config.seed),
      arp_(config.arp, timers_, stats_.arp, *this),
      reassembler_(config.reassembly, timers_, stats_.ipv4, *this),
      icmp_limiter_(config.icmp_errors_per_s, config.icmp_error_burst),
      udp_(config.udp, config.engine, stats_.udp, rng_, *this, *this),
      tcp_(config.tcp, config.engine, stats_.tcp, timers_, rng_, *this, *this),
      next_ident_(static_cast<uint16_t>(rng_.next())) {
  device_.attach_stats(&stats_.dev);
}

void Stack::start(Instant now) {
  timers_.expire(now);
  if (config_.gratuitous_arp && config_.engine.index == 0) {
    // RFC 5227 §2.3 announcement: a request with our address as both sender and target.
    Packet p = device_.alloc_tx();
    if (p) {
      eth::ArpRepr{eth::ArpOp::kRequest, mac(), address(), MacAddr(), address()}.emit(
          {p.append(eth::ArpRepr::len()), eth::ArpRepr::len()});
      ++stats_.arp.tx_requests;
      emit_frame(MacAddr::broadcast(), eth::EtherType::kArp, std::move(p));
    }
  }
  flush();
}

size_t Stack::poll(Instant now) {
  timers_.expire(now);
  const size_t n = device_.rx_burst(rx_batch_);
  // Asking the pool walks its per-core caches: once per burst, and only when there is a burst
  // (an idle engine polls in a tight loop).
  if (n > 0 || !loopback_.empty()) buffers_scarce_ = device_.buffers_scarce();
  for (size_t i = 0; i < n; ++i) receive_frame(now, std::move(rx_batch_[i]));
  // What other engines sent to ourselves, for flows this engine owns.
  const size_t handed = device_.local_burst(rx_batch_);
  for (size_t i = 0; i < handed; ++i) ipv4_input(now, std::move(rx_batch_[i]), true);
  const size_t looped = drain_loopback(now) + handed;
  flush();
  tcp_.reap();
  return n + looped;
}

size_t Stack::drain_loopback(Instant now) {
  // Like Linux's loopback, which delivers within the sending call: an ICMP error about a
  // datagram sent to ourselves is there when send() returns. Bounded in rounds, so traffic that
  // answers itself cannot keep one call busy.
  size_t processed = 0;
  for (int round = 0; round < 4 && !loopback_.empty(); ++round) {
    const size_t queued = loopback_.size();
    for (size_t i = 0; i < queued; ++i) {
      Packet p = std::move(loopback_.front());
      loopback_.pop_front();
      ipv4_input(now, std::move(p), true);
    }
    processed += queued;
  }
  return processed;
}

Instant Stack::next_wakeup() const {
  return loopback_.empty() ? timers_.next_wakeup() : Instant();
}

void Stack::receive_frame(Instant now, Packet frame) {
  auto eth = eth::FrameRepr::parse(frame.bytes());
  if (!eth) {
    ++stats_.eth.rx_truncated;
    return;
  }
  ++stats_.eth.rx_frames;
  if (eth->dst != mac() && !eth->dst.is_broadcast()) {
    ++stats_.eth.rx_not_for_us;
    return;
  }
  switch (static_cast<eth::EtherType>(eth->ethertype)) {
    case eth::EtherType::kArp:
      arp_input(now, frame.bytes().subspan(eth::Frame::kHeaderLen));
      return;
    case eth::EtherType::kIpv4:
      frame.consume_front(eth::Frame::kHeaderLen);
      ipv4_input(now, std::move(frame), false);
      return;
  }
  ++stats_.eth.rx_unknown_ethertype;
}

void Stack::arp_input(Instant now, std::span<const uint8_t> payload) {
  auto arp = eth::ArpRepr::parse(payload);
  if (!arp || arp->sender_mac.is_multicast()) {
    ++stats_.arp.rx_malformed;
    return;
  }
  ++stats_.arp.rx_packets;
  if (arp->op == eth::ArpOp::kRequest) {
    ++stats_.arp.rx_requests;
  } else {
    ++stats_.arp.rx_replies;
  }
  if (arp->sender_ip == address()) {
    if (arp->sender_mac != mac()) ++stats_.arp.rx_conflicts;  // someone else claims our address
    return;
  }
  const bool for_us = arp->target_ip == address();
  // RFC 826 "merge": refresh what we know; learn the sender only if the packet was for us. ARP
  // probes (RFC 5227, sender 0.0.0.0) teach nothing. Only on-link senders belong in the cache.
  if (!arp->sender_ip.is_unspecified() && config_.address.contains(arp->sender_ip)) {
    arp_.update(now, arp->sender_ip, arp->sender_mac, for_us);
  }
  if (arp->op == eth::ArpOp::kRequest && for_us && config_.engine.index == 0) {
    Packet p = device_.alloc_tx();
    if (!p) {
      ++stats_.eth.tx_no_buffer;
      return;
    }
    eth::ArpRepr{eth::ArpOp::kReply, mac(), address(), arp->sender_mac, arp->sender_ip}.emit(
        {p.append(eth::ArpRepr::len()), eth::ArpRepr::len()});
    ++stats_.arp.tx_replies;
    emit_frame(arp->sender_mac, eth::EtherType::kArp, std::move(p));
  }
}

bool Stack::is_local(Ipv4Addr addr) const { return addr == address() || addr.is_loopback(); }

bool Stack::is_for_us(Ipv4Addr dst, bool from_loopback) const {
  if (dst == address() || dst.is_broadcast() || dst == config_.address.subnet_broadcast()) return true;
  return from_loopback && dst.is_loopback();
}

void Stack::ipv4_input(Instant now, Packet packet, bool from_loopback) {
  ++stats_.ipv4.rx_packets;
  auto ip = ip::Ipv4Repr::parse(packet.bytes(), from_loopback || packet.rx_checks.ip_checksum_good);
  if (!ip) {
    switch (ip.error()) {
      case ip::Ipv4Error::kTruncated: ++stats_.ipv4.rx_truncated; break;
      case ip::Ipv4Error::kBadVersion: ++stats_.ipv4.rx_bad_version; break;
      case ip::Ipv4Error::kBadHeaderLength: ++stats_.ipv4.rx_bad_header_length; break;
      case ip::Ipv4Error::kBadTotalLength: ++stats_.ipv4.rx_bad_total_length; break;
      case ip::Ipv4Error::kBadChecksum: ++stats_.ipv4.rx_bad_checksum; break;
    }
    return;
  }
  packet.truncate(ip->header_len + ip->payload_len);  // Ethernet padding is not ours
  // RFC 1122 §3.2.1.3: a source that is not a unicast host is discarded; so are loopback
  // sources (and our own address) arriving from the wire: someone spoofs them.
  // 0.0.0.0 is only a source while a host learns its address (DHCP), so only to a broadcast.
  const bool to_broadcast = ip->dst.is_broadcast() || ip->dst == config_.address.subnet_broadcast();
  if (ip->src.is_broadcast() || ip->src.is_multicast() || ip->src == config_.address.subnet_broadcast() ||
      (ip->src.is_unspecified() && !to_broadcast) ||
      (!from_loopback && (ip->src.is_loopback() || ip->src == address()))) {
    ++stats_.ipv4.rx_bad_source;
    return;
  }
  // A host does not forward; RFC 1122 §3.2.1.7: nor does it drop for a low TTL on receipt.
  if (!is_for_us(ip->dst, from_loopback)) {
    ++stats_.ipv4.rx_not_for_us;
    return;
  }
  if (ip->header_len > ip::Ipv4Repr::emitted_header_len()) ++stats_.ipv4.rx_options_ignored;
  if (ip->is_fragment()) {
    auto whole = reassembler_.add(now, *ip, std::move(packet));
    if (!whole) return;
    packet = std::move(*whole);
    ip = ip::Ipv4Repr::parse(packet.bytes(), true);
    if (!ip) return;  // cannot happen: the reassembler wrote this header
  }
  ++stats_.ipv4.rx_delivered;
  switch (static_cast<ip::Protocol>(ip->protocol)) {
    case ip::Protocol::kIcmp:
      icmp_input(now, *ip, packet);
      return;
    case ip::Protocol::kUdp:
      if (udp_.receive(now, *ip, packet, {to_broadcast, buffers_scarce_}) == udp::Delivery::kNoSocket) {
        send_icmp_error(now, packet, ip::IcmpType::kDestUnreachable,
                        static_cast<uint8_t>(ip::UnreachableCode::kPort));
      }
      return;
    case ip::Protocol::kTcp:
      tcp_.receive(now, *ip, packet, buffers_scarce_);
      return;
  }
  ++stats_.ipv4.rx_unknown_protocol;
  send_icmp_error(now, packet, ip::IcmpType::kDestUnreachable,
                  static_cast<uint8_t>(ip::UnreachableCode::kProtocol));
}

void Stack::icmp_input(Instant now, const ip::Ipv4Repr& ip, Packet& packet) {
  auto icmp = ip::IcmpRepr::parse(packet.bytes().subspan(ip.header_len, ip.payload_len));
  if (!icmp) {
    if (icmp.error() == ip::IcmpError::kBadChecksum) {
      ++stats_.icmp.rx_bad_checksum;
    } else {
      ++stats_.icmp.rx_malformed;
    }
    return;
  }
  ++stats_.icmp.rx_messages;
  switch (static_cast<ip::IcmpType>(icmp->type)) {
    case ip::IcmpType::kEchoRequest: {
      ++stats_.icmp.rx_echo_requests;
      // Linux's icmp_echo_ignore_broadcasts = 1: broadcast pings are a smurf amplifier.
      if (ip.dst != address() && !ip.dst.is_loopback()) return;
      auto route_to = route(ip.src);
      if (!route_to) return;
      route_to->src = ip.dst;
      ip::IcmpRepr reply{static_cast<uint8_t>(ip::IcmpType::kEchoReply), 0, icmp->rest_of_header, icmp->data};
      Packet p = alloc_datagram(reply.len());
      if (!p) return;
      reply.emit({p.append(reply.len()), reply.len()});
      // Like Linux's icmp_reply(): the request's TOS, DF clear (fragmented on the way if need be).
      if (send_datagram(now, *route_to, static_cast<uint8_t>(ip::Protocol::kIcmp), std::move(p), false, ip.tos) == 0) {
        ++stats_.icmp.tx_echo_replies;
      }
      return;
    }
    case ip::IcmpType::kDestUnreachable:
      ++stats_.icmp.rx_dest_unreachable;
      icmp_error_input(now, *icmp);
      return;
    case ip::IcmpType::kTimeExceeded:
      icmp_error_input(now, *icmp);
      return;
    case ip::IcmpType::kEchoReply:
      break;
  }
  ++stats_.icmp.rx_other;
}

void Stack::icmp_error_input(Instant now, const ip::IcmpRepr& icmp) {
  // The quoted datagram: its IP header and at least 8 bytes of its transport header (RFC 792).
  std::span<const uint8_t> quoted = icmp.data;
  if (quoted.size() < ip::Ipv4Packet::kMinHeaderLen || (quoted[0] >> 4) != 4) return;
  const size_t ihl = size_t{quoted[0] & 0x0fu} * 4;
  if (ihl < ip::Ipv4Packet::kMinHeaderLen || quoted.size() < ihl + 8) return;
  const uint8_t protocol = quoted[9];
  if (protocol != static_cast<uint8_t>(ip::Protocol::kUdp) && protocol != static_cast<uint8_t>(ip::Protocol::kTcp)) return;
  if (icmp.type != static_cast<uint8_t>(ip::IcmpType::kDestUnreachable) || icmp.code >= std::size(kUnreachable)) {
    return;  // Time Exceeded is a soft error in Linux: not reported without IP_RECVERR
  }
  const UnreachableErrno e = kUnreachable[icmp.code];
  if (!e.fatal) return;
  if (protocol == static_cast<uint8_t>(ip::Protocol::kTcp)) {
    const uint8_t* th = quoted.data() + ihl;
    const tcp::FourTuple tuple{Ipv4Addr::load(quoted.data() + 12), load_be16(th), Ipv4Addr::load(quoted.data() + 16),
                               load_be16(th + 2)};
    tcp_.icmp_error(now, tuple, tcp::SeqNum(load_be32(th + 4)), e.err);
    return;
  }
  const udp::Endpoint local{Ipv4Addr::load(quoted.data() + 12), load_be16(quoted.data() + ihl)};
  const udp::Endpoint remote{Ipv4Addr::load(quoted.data() + 16), load_be16(quoted.data() + ihl + 2)};
  if (udp_.deliver_error(local, remote, e.err)) ++stats_.icmp.errors_delivered;
}

void Stack::send_icmp_error(Instant now, const Packet& offending, ip::IcmpType type, uint8_t code) {
  auto ip = ip::Ipv4Packet::parse(offending.bytes());
  if (!ip) return;
  // RFC 1122 §3.2.2: never about an ICMP error, a broadcast or multicast, a non-initial
  // fragment, or a source that is not one host.
  if (ip->dst().is_broadcast() || ip->dst().is_multicast() || ip->dst() == config_.address.subnet_broadcast() ||
      ip->src().is_unspecified() || ip->src().is_broadcast() || ip->src().is_multicast() ||
      (ip->flags_fragment() & ip::Ipv4Packet::kOffsetMask) != 0) {
    return;
  }
  if (ip->protocol() == static_cast<uint8_t>(ip::Protocol::kIcmp)) {
    auto payload = ip->payload();
    const uint8_t t = payload.empty() ? 0 : payload[0];
    if (t != 0 && t != 8 && t != 13 && t != 14 && t != 15 && t != 16 && t != 17 && t != 18) return;
  }
  if (!icmp_limiter_.allow(now)) {
    ++stats_.icmp.tx_rate_limited;
    return;
  }
  auto route_to = route(ip->src());
  if (!route_to) return;
  route_to->src = ip->dst();
  const size_t quote = std::min(offending.size(), kMaxIcmpErrorLen - ip::Ipv4Repr::emitted_header_len() -
                                                      ip::IcmpMessage::kHeaderLen);
  ip::IcmpRepr err{static_cast<uint8_t>(type), code, 0, offending.bytes().first(quote)};
  Packet p = alloc_datagram(err.len());
  if (!p) return;
  err.emit({p.append(err.len()), err.len()});
  // Linux's icmp_send(): errors go with precedence "internetwork control" (0xc0) and the
  // offending datagram's TOS bits (RFC 1812 §4.3.2.5).
  const auto tos = static_cast<uint8_t>((ip->tos() & 0x1e) | 0xc0);
  if (send_datagram(now, *route_to, static_cast<uint8_t>(ip::Protocol::kIcmp), std::move(p), false, tos) != 0) return;
  if (type == ip::IcmpType::kDestUnreachable) {
    ++stats_.icmp.tx_dest_unreachable;
  } else {
    ++stats_.icmp.tx_time_exceeded;
  }
}

Result<ip::Route, int> Stack::route(Ipv4Addr dst) {
  ip::Route r;
  r.dst = dst;
  r.src = address();
  r.mtu = mtu_;
  r.udp_checksum_offload = device_.caps().tx_udp_checksum;
  r.tcp_checksum_offload = device_.caps().tx_tcp_checksum;
  if (dst.is_unspecified()) dst = r.dst = kLoopbackSource;  // Linux: 0.0.0.0 means this host
  if (dst.is_loopback() || dst == address()) {
    r.loopback = true;
    r.src = dst.is_loopback() ? kLoopbackSource : address();
    r.next_hop = dst;
    r.mtu = kLoopbackMtu;
    r.udp_checksum_offload = false;
    r.tcp_checksum_offload = false;
    return r;
  }
  if (dst.is_broadcast() || dst == config_.address.subnet_broadcast()) {
    r.broadcast = true;
    r.next_hop = dst;
    return r;
  }
  if (dst.is_multicast() || config_.address.contains(dst)) {
    r.next_hop = dst;
    return r;
  }
  if (config_.gateway) {
    r.next_hop = *config_.gateway;
    return r;
  }
  ++stats_.ipv4.tx_no_route;
  return unexpected(ENETUNREACH);
}

Packet Stack::alloc_datagram(size_t payload_len) {
  Packet p = device_.alloc_tx();
  if (p && p.headroom() >= kLinkAndIpHeaders && p.tailroom() >= payload_len) return p;
  if (!p && payload_len + kLinkAndIpHeaders <= device_.caps().buffer_size) {
    ++stats_.eth.tx_no_buffer;
    return Packet();
  }
  // Larger than one device buffer: built on the heap, copied into device buffers as fragments.
  return Packet::heap(kLinkAndIpHeaders + payload_len, kLinkAndIpHeaders);
}

int Stack::send_datagram(Instant now, const ip::Route& route, uint8_t protocol, Packet payload,
                         bool dont_fragment, uint8_t tos) {
  ip::Ipv4Repr header;
  header.src = route.src;
  header.dst = route.dst;
  header.protocol = protocol;
  header.ttl = config_.ttl;
  header.tos = tos;
  header.ident = next_ident_++;
  const size_t total = ip::Ipv4Repr::emitted_header_len() + payload.size();
  if (total <= route.mtu) {
    header.dont_fragment = dont_fragment;
    header.payload_len = static_cast<uint16_t>(payload.size());
    uint8_t* h = payload.prepend(ip::Ipv4Repr::emitted_header_len());
    if (!h) {
      ++stats_.eth.tx_no_buffer;
      return ENOBUFS;
    }
    const bool offload = device_.caps().tx_ipv4_checksum && !route.loopback;
    header.emit({h, ip::Ipv4Repr::emitted_header_len()}, !offload);
    payload.tx_offload.ip_checksum = offload;
    payload.tx_offload.l3_len = ip::Ipv4Repr::emitted_header_len();
    payload.tx_offload.l2_len = eth::Frame::kHeaderLen;
    link_output(now, route, std::move(payload));
    return 0;
  }
  if (dont_fragment) {
    ++stats_.ipv4.tx_too_big;
    return EMSGSIZE;
  }
  // RFC 791 §3.2 fragmentation: every piece but the last carries a multiple of 8 bytes.
  const size_t chunk = (route.mtu - ip::Ipv4Repr::emitted_header_len()) & ~size_t{7};
  for (size_t off = 0; off < payload.size(); off += chunk) {
    const size_t len = std::min(chunk, payload.size() - off);
    Packet frag = alloc_datagram(len);
    if (!frag) return ENOBUFS;
    std::memcpy(frag.append(len), payload.data() + off, len);
    header.fragment_offset = static_cast<uint16_t>(off);
    header.more_fragments = off + len < payload.size();
    header.payload_len = static_cast<uint16_t>(len);
    uint8_t* h = frag.prepend(ip::Ipv4Repr::emitted_header_len());
    header.emit({h, ip::Ipv4Repr::emitted_header_len()}, true);
    ++stats_.ipv4.tx_fragments;
    link_output(now, route, std::move(frag));
  }
  return 0;
}

void Stack::link_output(Instant now, const ip::Route& route, Packet packet) {
  ++stats_.ipv4.tx_packets;
  if (route.loopback) {
    if (loopback_.size() >= config_.loopback_queue_limit) {
      ++stats_.eth.tx_no_buffer;
      return;
    }
    ++stats_.ipv4.loopback_packets;
    packet.tx_offload = {};
    if (device_.hand_over_local(packet)) return;  // another engine owns the flow
    loopback_.push_back(std::move(packet));
    return;
  }
  if (route.broadcast) return emit_frame(MacAddr::broadcast(), eth::EtherType::kIpv4, std::move(packet));
  if (route.next_hop.is_multicast()) {
    return emit_frame(multicast_mac(route.next_hop), eth::EtherType::kIpv4, std::move(packet));
  }
  if (auto mac = arp_.lookup(now, route.next_hop)) {
    return emit_frame(*mac, eth::EtherType::kIpv4, std::move(packet));
  }
  arp_.enqueue(now, route.next_hop, std::move(packet));
}

void Stack::emit_frame(MacAddr dst, eth::EtherType type, Packet packet) {
  uint8_t* h = packet.prepend(eth::Frame::kHeaderLen);
  if (!h) {
    ++stats_.eth.tx_no_buffer;
    return;
  }
  eth::FrameRepr{dst, mac(), static_cast<uint16_t>(type)}.emit({h, eth::Frame::kHeaderLen});
  transmit(std::move(packet));
}

void Stack::transmit(Packet frame) {
  ++stats_.eth.tx_frames;
  tx_batch_[tx_count_++] = std::move(frame);
  if (tx_count_ == kBurst) flush();
}

void Stack::flush() {
  if (tx_count_ == 0) return;
  device_.tx_burst({tx_batch_.data(), tx_count_});
  tx_count_ = 0;
}

void Stack::send_arp_request(Instant, Ipv4Addr target, std::optional<MacAddr> known) {
  Packet p = device_.alloc_tx();
  if (!p) {
    ++stats_.eth.tx_no_buffer;
    return;
  }
  eth::ArpRepr{eth::ArpOp::kRequest, mac(), address(), MacAddr(), target}.emit(
      {p.append(eth::ArpRepr::len()), eth::ArpRepr::len()});
  emit_frame(known.value_or(MacAddr::broadcast()), eth::EtherType::kArp, std::move(p));
}

void Stack::send_resolved(Instant, MacAddr mac, std::vector<Packet>& packets) {
  for (Packet& p : packets) emit_frame(mac, eth::EtherType::kIpv4, std::move(p));
}

// Linux turns a failed resolution into a local ICMP Host Unreachable, a soft error that UDP
// sockets do not see without IP_RECVERR; the packets are counted as dropped by the cache.
void Stack::resolution_failed(Instant, Ipv4Addr, std::vector<Packet>&) {}

void Stack::reassembly_timed_out(Instant now, Packet first_fragment) {
  if (first_fragment) {
    send_icmp_error(now, first_fragment, ip::IcmpType::kTimeExceeded, 1);  // RFC 792: reassembly time exceeded
  }
}

}  // namespace ustack
