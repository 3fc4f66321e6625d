#include "udp/udp_layer.h"


#include <cerrno>
#include <cstring>

#include "base/port_directory.h"
#include "udp/datagram.h"

namespace ustack::udp {

namespace {
constexpr size_t kMaxPayload = 65535 - 20 - Datagram::kHeaderLen;  // 65507
constexpr uint8_t kUdp = static_cast<uint8_t>(ip::Protocol::kUdp);

bool addresses_overlap(Ipv4Addr a, Ipv4Addr b) { return a.is_unspecified() || b.is_unspecified() || a == b; }
}  // namespace

UdpLayer::UdpLayer(const UdpConfig& config, const EngineShare& engine, UdpStats& stats, Rng& rng,
                   ip::IpOutput& out, const LocalAddresses& local)
    : config_(config), engine_(engine), stats_(stats), rng_(rng), out_(out), local_(local) {}

bool UdpLayer::conflicts(const UdpSocket& s, Endpoint local) const {
  auto it = by_port_.find(local.port);
  if (it == by_port_.end()) return false;
  for (const UdpSocket* other : it->second) {
    if (other == &s || !addresses_overlap(other->local.addr, local.addr)) continue;
    // Linux: sharing is allowed when both sockets asked for it with the same option.
    if ((s.reuse_addr && other->reuse_addr) || (s.reuse_port && other->reuse_port)) continue;
    return true;
  }
  return false;
}

void UdpLayer::link(UdpSocket& s) {
  auto& on_port = by_port_[s.local.port];
  if (on_port.empty() && engine_.ports) engine_.ports->set_in_use(PortProtocol::kUdp, s.local.port, engine_.index, true);
  on_port.push_back(&s);
}

int UdpLayer::bind_ephemeral(UdpSocket& s, Ipv4Addr addr, Ipv4Addr source, std::optional<Endpoint> remote) {
  // RFC 6056 §3.3.1 (Algorithm 1): a random starting point, then the next free port.
  const uint32_t count = uint32_t{config_.ephemeral_high} - config_.ephemeral_low + 1;
  const uint32_t start = static_cast<uint32_t>(rng_.below(count));
  for (uint32_t i = 0; i < count; ++i) {
    const auto port = static_cast<uint16_t>(config_.ephemeral_low + (start + i) % count);
    auto it = by_port_.find(port);
    if (it != by_port_.end() && !it->second.empty()) continue;
    if (engine_.ports && engine_.ports->used_elsewhere(PortProtocol::kUdp, port, engine_.index)) continue;
    if (remote && !engine_.owns_flow(source, remote->addr, port, remote->port)) continue;
    if (!claim(s, port, false)) continue;
    s.local = Endpoint{addr, port};
    link(s);
    return 0;
  }
  return EAGAIN;
}

int UdpLayer::bind(UdpSocket& s, Endpoint local) {
  if (s.bound()) return EINVAL;
  if (!local.addr.is_unspecified() && !local_.is_local(local.addr)) return EADDRNOTAVAIL;
  if (local.port == 0) {
    if (bind_ephemeral(s, local.addr) != 0) return EADDRINUSE;
  } else {
    if (conflicts(s, local)) return EADDRINUSE;
    if (!claim(s, local.port, s.reuse_addr || s.reuse_port)) return EADDRINUSE;
    s.local = local;
    link(s);
    s.user_bound_port = true;
  }
  s.user_bound_addr = !local.addr.is_unspecified();
  return 0;
}

bool UdpLayer::claim(UdpSocket& s, uint16_t port, bool shareable) {
  if (!engine_.ports) return true;
  if (!engine_.ports->claim(PortProtocol::kUdp, port, engine_.index, shareable)) return false;
  s.claimed = true;
  s.claimed_shareable = shareable;
  return true;
}

void UdpLayer::unbind(UdpSocket& s) {
  if (!s.bound()) return;
  if (s.claimed) engine_.ports->release(PortProtocol::kUdp, s.local.port, engine_.index, s.claimed_shareable);
  s.claimed = false;
  auto it = by_port_.find(s.local.port);
  if (it != by_port_.end()) {
    std::erase(it->second, &s);
    if (it->second.empty()) {
      by_port_.erase(it);
      if (engine_.ports) engine_.ports->set_in_use(PortProtocol::kUdp, s.local.port, engine_.index, false);
    }
  }
  s.local.port = 0;
}

int UdpLayer::connect(UdpSocket& s, Endpoint remote) {
  auto route = out_.route(remote.addr);
  if (!route) return route.error();
  if (route->broadcast && !s.broadcast) return EACCES;
  if (s.local.addr.is_loopback() && !route->loopback) return EINVAL;  // as in send()
  if (!s.bound() && bind_ephemeral(s, Ipv4Addr::any(), route->src, remote) != 0) return EAGAIN;
  // Linux (ip4_datagram_connect) fixes the source address at connect time unless bind() did.
  if (s.local.addr.is_unspecified()) s.local.addr = route->src;
  s.remote = remote;
  s.changed(kPollOut);
  return 0;
}

void UdpLayer::disconnect(UdpSocket& s) {
  s.remote.reset();
  // Linux (__udp_disconnect): what connect() chose implicitly is given back.
  if (!s.user_bound_addr) s.local.addr = Ipv4Addr::any();
  if (!s.user_bound_port) unbind(s);
}

Result<size_t, int> UdpLayer::send(Instant now, UdpSocket& s, std::span<const uint8_t> data,
                                   std::optional<Endpoint> dst) {
  auto fail = [&](int err) {
    ++stats_.tx_errors;
    return unexpected(err);
  };
  if (s.shut_wr) return fail(EPIPE);
  if (int err = s.take_error()) return fail(err);
  Endpoint to;
  if (dst) {
    to = *dst;
  } else if (s.remote) {
    to = *s.remote;
  } else {
    return fail(EDESTADDRREQ);
  }
  if (to.port == 0) return fail(EINVAL);
  if (data.size() > kMaxPayload) return fail(EMSGSIZE);
  auto route = out_.route(to.addr);
  if (!route) return fail(route.error());
  if (route->broadcast && !s.broadcast) return fail(EACCES);
  if (!s.bound() && bind_ephemeral(s, Ipv4Addr::any()) != 0) return fail(EAGAIN);
  if (!s.local.addr.is_unspecified()) {
    // Linux (ip_route_output): the bound address is the source, over loopback too (replies must
    // find the socket); a loopback source never leaves the host (RFC 1122 §3.2.1.3).
    if (s.local.addr.is_loopback() && !route->loopback) return fail(EINVAL);
    route->src = s.local.addr;
  }

  const size_t udp_len = Datagram::kHeaderLen + data.size();
  Packet p = out_.alloc_datagram(udp_len);
  if (!p) return fail(ENOBUFS);
  uint8_t* start = p.append(udp_len);
  if (!data.empty()) std::memcpy(start + Datagram::kHeaderLen, data.data(), data.size());
  // Linux (IP_PMTUDISC_WANT): DF on what fits the path; larger datagrams are fragmented here.
  const bool fits = udp_len + ip::Ipv4Repr::emitted_header_len() <= route->mtu;
  const bool offload = fits && route->udp_checksum_offload && !route->loopback;
  UdpRepr::emit_header(p.bytes(), s.local.port, to.port, route->src, route->dst, !offload);
  p.tx_offload.udp_checksum = offload;
  if (int err = out_.send_datagram(now, *route, kUdp, std::move(p), fits)) return fail(err);
  ++stats_.tx_datagrams;
  return data.size();
}

UdpSocket* UdpLayer::lookup(Ipv4Addr dst, uint16_t dst_port, Endpoint from) {
  auto it = by_port_.find(dst_port);
  if (it == by_port_.end()) return nullptr;
  UdpSocket* best = nullptr;
  int best_score = -1;
  // Linux's compute_score(): an exact peer match beats a specific local address beats wildcard.
  for (UdpSocket* s : it->second) {
    if (!s->local.addr.is_unspecified() && s->local.addr != dst) continue;
    int score = 0;
    if (s->remote) {
      if (s->remote->addr != from.addr || (s->remote->port != 0 && s->remote->port != from.port)) continue;
      score += 4;
    }
    if (!s->local.addr.is_unspecified()) score += 2;
    if (score >= best_score) {  // ties: the most recently bound, as Linux's hash chains give
      best = s;
      best_score = score;
    }
  }
  return best;
}

Delivery UdpLayer::receive(Instant, const ip::Ipv4Repr& ip, Packet& packet, ReceiveHints hints) {
  auto udp = UdpRepr::parse(packet.bytes().subspan(ip.header_len, ip.payload_len), ip.src, ip.dst,
                            packet.rx_checks.l4_checksum_good);
  if (!udp) {
    if (udp.error() == UdpError::kBadChecksum) {
      ++stats_.rx_bad_checksum;
    } else {
      ++stats_.rx_malformed;
    }
    return Delivery::kDropped;
  }
  ++stats_.rx_datagrams;
  const Endpoint from{ip.src, udp->src_port};
  if (hints.broadcast) {
    // Linux (__udp4_lib_mcast_deliver): a broadcast goes to every socket bound to the port whose
    // local address and peer accept it, each getting its own copy.
    bool any = false;
    if (auto it = by_port_.find(udp->dst_port); it != by_port_.end()) {
      for (UdpSocket* s : it->second) {
        if (!s->local.addr.is_unspecified() && s->local.addr != ip.dst) continue;
        if (s->remote && (s->remote->addr != from.addr || (s->remote->port && s->remote->port != from.port))) continue;
        any = true;
        enqueue(*s, Packet::copy_of(udp->payload), from);
      }
    }
    if (!any) ++stats_.rx_no_port;
    return any ? Delivery::kDelivered : Delivery::kNoSocket;
  }
  UdpSocket* s = lookup(ip.dst, udp->dst_port, from);
  if (!s) {
    ++stats_.rx_no_port;
    return Delivery::kNoSocket;
  }
  const size_t payload_len = udp->payload.size();
  Packet payload;
  if (hints.device_buffers_scarce && packet.pins_device_buffer()) {
    // Unread sockets must not starve the device of receive buffers: keep a heap copy instead.
    payload = Packet::copy_of(udp->payload);
    ++stats_.rx_copied_under_pressure;
  } else {
    packet.consume_front(ip.header_len + Datagram::kHeaderLen);
    packet.truncate(payload_len);
    payload = std::move(packet);
  }
  return enqueue(*s, std::move(payload), from) ? Delivery::kDelivered : Delivery::kDropped;
}

bool UdpLayer::enqueue(UdpSocket& s, Packet payload, Endpoint from) {
  const size_t cost = payload.truesize() + kDatagramOverhead;
  // SO_RCVBUF: a full queue drops, but an empty queue takes any one datagram (as Linux does).
  if (s.rx_charged > 0 && s.rx_charged + cost > s.rcvbuf) {
    ++stats_.rx_queue_full;
    ++s.rx_dropped;
    return false;
  }
  s.rx_queue.push_back(UdpSocket::Received{std::move(payload), from, cost});
  s.rx_charged += cost;
  ++stats_.rx_delivered;
  s.changed(kPollIn | kPollRdNorm);
  return true;
}

bool UdpLayer::deliver_error(Endpoint local, Endpoint remote, int err) {
  auto it = by_port_.find(local.port);
  if (it == by_port_.end()) return false;
  bool delivered = false;
  for (UdpSocket* s : it->second) {
    if (!s->remote || s->remote->addr != remote.addr || s->remote->port != remote.port) continue;
    if (!s->local.addr.is_unspecified() && s->local.addr != local.addr) continue;
    s->pending_error = err;
    s->changed(kPollErr);
    delivered = true;
  }
  return delivered;
}

size_t UdpLayer::bound_sockets() const {
  size_t n = 0;
  for (const auto& [port, sockets] : by_port_) n += sockets.size();
  return n;
}

}  // namespace ustack::udp
