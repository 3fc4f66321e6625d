#include "tcp/tcp_layer.h"


#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "base/port_directory.h"
#include "base/siphash.h"

namespace ustack::tcp {

namespace {
constexpr uint8_t kProtocolTcp = 6;
constexpr size_t kMaxTcpHeader = Segment::kMaxHeaderLen;

bool overlaps(Ipv4Addr a, Ipv4Addr b) { return a.is_unspecified() || b.is_unspecified() || a == b; }
}  // namespace

TcpLayer::TcpLayer(const TcpConfig& config, const EngineShare& engine, TcpStats& stats, TimerWheel& timers, Rng& rng,
                   ip::IpOutput& out, const udp::LocalAddresses& local)
    : config_(config),
      engine_(engine),
      stats_(stats),
      timers_(timers),
      rng_(rng),
      out_(out),
      local_(local),
      isn_(rng),
      port_key_{rng.next(), rng.next()},
      next_ephemeral_(static_cast<uint32_t>(rng.next())) {}

TcpLayer::~TcpLayer() {
  // Connections still referenced by sockets outlive the map; they must not call back.
  for (auto& [tuple, c] : connections_) {
    if (c->busy_) c->busy_->timers.disarm_all(timers_);
  }
  for (TcpConnection::Transfer* spare : spare_transfers_) delete spare;
}

TcpConnection::Transfer* TcpLayer::take_transfer(TcpConnection& c, SeqNum send_tail, SeqNum receive_next) {
  if (spare_transfers_.empty()) return new TcpConnection::Transfer(c, config_.max_out_of_order, send_tail, receive_next);
  TcpConnection::Transfer* t = spare_transfers_.back();
  spare_transfers_.pop_back();
  t->reuse(c, send_tail, receive_next);
  return t;
}

void TcpLayer::give_back_transfer(TcpConnection::Transfer* t) {
  // At rest no timer is armed, but the wheel entry may still be linked at a deadline a timer was
  // moved away from (TimerSet re-arms lazily): it must not fire for the block's next owner.
  t->timers.disarm_all(timers_);
  if (spare_transfers_.size() >= kSpareTransfers) {
    delete t;
    return;
  }
  t->tx.trim(kSpareQueueCapacity);
  t->rx.trim(kSpareQueueCapacity);
  spare_transfers_.push_back(t);
}

// ---- Ports ----

bool TcpLayer::port_conflicts(const PortBinding& b, Ipv4Addr addr, uint16_t port) const {
  auto it = ports_.find(port);
  if (it == ports_.end()) return false;
  for (const PortBinding* other : it->second) {
    if (other == &b || !overlaps(other->addr, addr)) continue;
    // Linux's inet_csk_bind_conflict(): SO_REUSEADDR on both sides shares a port with anything
    // but a listener (TIME-WAIT included), also when `b` is about to listen (only the other
    // socket's state counts); SO_REUSEPORT on both shares it with anything.
    if (b.reuse_addr && other->reuse_addr && !other->listening) continue;
    if (b.reuse_addr && other->reuse_addr && other->time_wait) continue;
    if (b.reuse_port && other->reuse_port) continue;
    return true;
  }
  return false;
}

void TcpLayer::register_binding(PortBinding& b) {
  auto& on_port = ports_[b.port];
  if (on_port.empty() && engine_.ports) engine_.ports->set_in_use(PortProtocol::kTcp, b.port, engine_.index, true);
  on_port.push_back(&b);
  b.registered = true;
}

void TcpLayer::unbind(PortBinding& b) {
  if (!b.registered) return;
  if (b.claimed) engine_.ports->release(PortProtocol::kTcp, b.port, engine_.index, b.claimed_shareable);
  b.claimed = false;
  auto it = ports_.find(b.port);
  if (it != ports_.end()) {
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), &b), v.end());
    if (v.empty()) {
      ports_.erase(it);
      if (engine_.ports) engine_.ports->set_in_use(PortProtocol::kTcp, b.port, engine_.index, false);
      if (reclaiming_) {
        reclaimed_ports_.push_back(b.port);
      } else if (exhausted_for_) {  // a port came free: the next connect scans again
        exhausted_for_.reset();
        reclaimed_ports_.clear();
      }
    }
  }
  b.registered = false;
}

uint16_t TcpLayer::pick_ephemeral(Ipv4Addr local, Ipv4Addr remote, uint16_t remote_port, bool for_connect) {
  // RFC 6056 §3.3.3 (Algorithm 3): a per-destination offset from a keyed hash plus a global
  // counter, so that ports are hard to guess yet one destination's ports do not repeat soon.
  std::array<uint8_t, 10> key{};
  local.store(key.data());
  remote.store(key.data() + 4);
  store_be16(key.data() + 8, remote_port);
  const uint32_t offset = static_cast<uint32_t>(siphash24(port_key_, key));
  const uint32_t count = uint32_t{config_.ephemeral_high} - config_.ephemeral_low + 1;
  for (uint32_t i = 0; i < count; ++i) {
    const auto port = static_cast<uint16_t>(config_.ephemeral_low + (offset + next_ephemeral_ + i) % count);
    // A port to listen on may carry nothing of another engine's (connect_port_usable says what a
    // connection's may).
    const bool usable =
        for_connect ? connect_port_usable(port, local, remote, remote_port)
                    : !ports_.contains(port) &&
                          !(engine_.ports && engine_.ports->used_elsewhere(PortProtocol::kTcp, port, engine_.index));
    if (usable) {
      next_ephemeral_ += i + 1;
      return port;
    }
  }
  return 0;
}

int TcpLayer::bind(PortBinding& b, Ipv4Addr addr, uint16_t port) {
  if (b.registered) return EINVAL;
  if (!addr.is_unspecified() && !local_.is_local(addr)) return EADDRNOTAVAIL;
  if (port == 0) {
    port = pick_ephemeral(addr, Ipv4Addr(), 0, false);
    if (port == 0) return EADDRINUSE;
  } else if (port_conflicts(b, addr, port)) {
    return EADDRINUSE;
  }
  // Another engine's socket on the port conflicts as one of ours would (SO_REUSEPORT shares).
  if (engine_.ports && !engine_.ports->claim(PortProtocol::kTcp, port, engine_.index, b.reuse_port)) {
    return EADDRINUSE;
  }
  b.claimed = engine_.ports != nullptr;
  b.claimed_shareable = b.reuse_port;
  b.addr = addr;
  b.port = port;
  register_binding(b);
  return 0;
}

// ---- Listening ----

int TcpLayer::listen(TcpListener& l) {
  PortBinding& b = l.binding();
  b.listening = true;
  if (port_conflicts(b, b.addr, b.port)) {
    b.listening = false;
    return EADDRINUSE;
  }
  listeners_[b.port].push_back(&l);
  return 0;
}

void TcpLayer::unlisten(Instant now, TcpListener& l) {
  auto it = listeners_.find(l.binding().port);
  if (it != listeners_.end()) {
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), &l), v.end());
    if (v.empty()) listeners_.erase(it);
  }
  // Linux's inet_csk_listen_stop(): half-open connections vanish; established ones that were
  // never accepted are reset.
  std::vector<TcpConnection*> half_open(l.half_open_.begin(), l.half_open_.end());
  l.half_open_.clear();
  for (TcpConnection* c : half_open) {
    c->detach_listener();
    c->closed(0);
  }
  while (auto c = l.accept()) {
    c->orphaned_ = true;
    c->abort(now, 0);
  }
  l.binding().listening = false;
  unbind(l.binding());
}

TcpListener* TcpLayer::find_listener(Ipv4Addr addr, uint16_t port, Ipv4Addr from, uint16_t from_port) const {
  auto it = listeners_.find(port);
  if (it == listeners_.end()) return nullptr;
  // The most specific match wins (our exact address over the wildcard). Among SO_REUSEPORT
  // listeners on that same address, Linux (reuseport_select_sock) picks one by a hash of the
  // peer, so a peer's connections spread and each one's SYN and retransmissions meet the same one.
  const std::vector<TcpListener*>& all = it->second;
  auto group_of = [&](auto matches) {
    std::vector<TcpListener*> group;
    for (TcpListener* l : all) {
      if (matches(*l)) group.push_back(l);
    }
    return group;
  };
  std::vector<TcpListener*> group = group_of([&](const TcpListener& l) { return l.binding().addr == addr; });
  if (group.empty()) group = group_of([](const TcpListener& l) { return l.binding().addr.is_unspecified(); });
  if (group.empty()) return nullptr;
  if (group.size() == 1 || !group.front()->binding().reuse_port) return group.front();
  std::erase_if(group, [](const TcpListener* l) { return !l->binding().reuse_port; });
  std::array<uint8_t, 6> key{};
  from.store(key.data());
  store_be16(key.data() + 4, from_port);
  return group[siphash24(port_key_, key) % group.size()];
}

bool TcpLayer::admit_to_accept_queue(TcpConnection& c) {
  TcpListener* l = c.listener();
  if (!l) return true;
  if (l->accept_queue_full()) {
    stats_.listen_ack_dropped.inc();
    return false;
  }
  auto it = connections_.find(c.tuple());
  if (it == connections_.end()) return false;
  l->half_open_.erase(&c);
  l->accept_queue_.push_back(it->second);
  if (l->observer_) l->observer_->readiness_changed(kPollIn | kPollRdNorm);
  return true;
}

// ---- Active open ----

bool TcpLayer::connect_port_usable(uint16_t port, Ipv4Addr local, Ipv4Addr remote, uint16_t remote_port) const {
  if (port < config_.ephemeral_low || port > config_.ephemeral_high) return false;
  // It may carry other engines' connections (the 4-tuples differ and hash to their engines), not
  // a port another engine's socket claims.
  if (engine_.ports && engine_.ports->claimed_elsewhere(PortProtocol::kTcp, port, engine_.index)) return false;
  // The replies must reach this engine (with one engine, every port does).
  if (!engine_.owns_flow(local, remote, port, remote_port)) return false;
  // Connections share a port with other connections (the 4-tuple tells them apart), never with a
  // socket that bind() or listen() holds.
  if (auto it = ports_.find(port); it != ports_.end()) {
    for (const PortBinding* other : it->second) {
      if (!other->ephemeral_connect && overlaps(other->addr, local)) return false;
    }
  }
  return !tuple_taken(FourTuple{local, port, remote, remote_port});
}

uint16_t TcpLayer::pick_connect_port(Ipv4Addr local, Ipv4Addr remote, uint16_t remote_port) {
  const ExhaustedDestination to{local, remote, remote_port};
  auto take_reclaimed = [&]() -> uint16_t {  // oldest first; 0 when none serves `to`
    while (!reclaimed_ports_.empty()) {
      const uint16_t port = reclaimed_ports_.back();
      reclaimed_ports_.pop_back();
      if (connect_port_usable(port, local, remote, remote_port)) return port;
    }
    return 0;
  };
  if (exhausted_for_ == to) {
    do {
      if (const uint16_t port = take_reclaimed()) return port;
    } while (reclaim_time_wait_ports());
    exhausted_for_.reset();
  }
  if (const uint16_t port = pick_ephemeral(local, remote, remote_port, true)) return port;
  stats_.connect_ports_exhausted.inc();
  reclaimed_ports_.clear();
  if (!reclaim_time_wait_ports()) return 0;
  exhausted_for_ = to;
  if (const uint16_t port = take_reclaimed()) return port;
  // None of the oldest entries' ports serves this destination: the scan decides.
  exhausted_for_.reset();
  return pick_ephemeral(local, remote, remote_port, true);
}

Result<std::shared_ptr<TcpConnection>, int> TcpLayer::connect(Instant now, const PortBinding* bound,
                                                              Ipv4Addr remote_addr, uint16_t remote_port,
                                                              const SocketOptions& options) {
  auto route = out_.route(remote_addr);
  if (!route) return unexpected(route.error());
  if (route->broadcast || remote_addr.is_multicast()) return unexpected(ENETUNREACH);
  const bool user_bound = bound && bound->registered;
  const Ipv4Addr local_addr = user_bound && !bound->addr.is_unspecified() ? bound->addr : route->src;
  route->src = local_addr;
  uint16_t port = user_bound ? bound->port : 0;
  if (port == 0) port = pick_connect_port(local_addr, route->dst, remote_port);
  if (port == 0) return unexpected(EADDRNOTAVAIL);
  const FourTuple tuple{local_addr, port, route->dst, remote_port};
  if (tuple_taken(tuple)) return unexpected(EADDRNOTAVAIL);
  auto c = std::make_shared<TcpConnection>(*this, tuple, *route, options);
  PortBinding& b = c->binding();
  b.addr = local_addr;
  b.port = port;
  b.reuse_addr = options.reuse_addr;
  b.reuse_port = options.reuse_port;
  b.ephemeral_connect = !user_bound;
  register_binding(b);
  connections_.emplace(tuple, c);
  stats_.active_opens.inc();
  c->open_active(now, isn_.generate(now, tuple.local_addr, tuple.local_port, tuple.remote_addr, tuple.remote_port));
  return c;
}

// ---- Input ----

void TcpLayer::receive(Instant now, const ip::Ipv4Repr& ip, Packet& packet, bool device_buffers_scarce) {
  auto seg = SegmentRepr::parse(packet.bytes().subspan(ip.header_len, ip.payload_len), ip.src, ip.dst,
                                packet.rx_checks.l4_checksum_good);
  if (!seg) {
    switch (seg.error()) {
      case SegmentError::kBadChecksum: stats_.rx_bad_checksum.inc(); break;
      case SegmentError::kBadOption: stats_.rx_bad_option.inc(); break;
      default: stats_.rx_malformed.inc(); break;
    }
    return;
  }
  stats_.rx_segments.inc();
  // RFC 1122 §4.2.3.10: segments to a broadcast or multicast address are not TCP's.
  if (!local_.is_local(ip.dst) || seg->src_port == 0 || seg->dst_port == 0) {
    stats_.rx_malformed.inc();
    return;
  }
  buffers_scarce_ = device_buffers_scarce;
  const FourTuple tuple{ip.dst, seg->dst_port, ip.src, seg->src_port};
  if (auto it = connections_.find(tuple); it != connections_.end()) {
    // A raw pointer, no reference count (an atomic add and subtract per segment once threads
    // exist): a connection that closes meanwhile goes to graveyard_, which reap() empties only
    // after the poll.
    TcpConnection* c = it->second.get();
    // RFC 9293 §3.10.7.4 / RFC 6191: a new SYN to a TIME-WAIT connection beyond its old
    // sequence space may start a new incarnation, if someone listens.
    if (c->state() == State::kTimeWait && (seg->flags & (kSyn | kAck | kRst)) == kSyn && seg->seq > c->rcv_nxt()) {
      if (TcpListener* l = find_listener(ip.dst, seg->dst_port, ip.src, seg->src_port)) {
        c->closed(0);
        listen_input(now, *l, ip, *seg);
        return;
      }
    }
    Packet payload = std::move(packet);
    payload.consume_front(ip.header_len + seg->header_len());
    payload.truncate(seg->payload.size());
    c->segment_arrives(now, *seg, std::move(payload));
    return;
  }
  if (!time_waits_.empty()) {
    if (auto it = time_waits_.find(tuple); it != time_waits_.end()) {
      time_wait_input(now, *it->second, ip, *seg);
      return;
    }
  }
  if (TcpListener* l = find_listener(ip.dst, seg->dst_port, ip.src, seg->src_port)) {
    listen_input(now, *l, ip, *seg);
    return;
  }
  if (hand_to_claimant(ip, *seg, packet)) return;
  stats_.rx_no_socket.inc();
  send_reset_for(now, ip, *seg);
}

bool TcpLayer::hand_to_claimant(const ip::Ipv4Repr& ip, const SegmentRepr& seg, Packet& packet) {
  // Several engines, SO_REUSEPORT listeners, and this engine's closed: while connections it
  // accepted remain, its port stays in use here (PortDirectory), so steering keeps sending it the
  // flows that hash to it, new ones too. Those go to an engine whose socket still claims the port,
  // picked by the flow's hash so that every segment of a flow goes to the same one. Only an
  // engine that claims nothing hands on, and only to one that claims: a segment is handed on at
  // most once.
  if (!engine_.ports) return false;
  const uint32_t claimants = engine_.ports->claimants(PortProtocol::kTcp, seg.dst_port);
  const uint32_t self = uint32_t{1} << engine_.index;
  uint32_t others = claimants & ~self;
  if (others == 0 || (claimants & self)) return false;
  for (uint32_t skip = flow_hash(ip.dst, ip.src, seg.dst_port, seg.src_port) % std::popcount(others); skip > 0; --skip) {
    others &= others - 1;  // drop the lowest
  }
  packet.rx_checks.ip_checksum_good = true;  // both checked here
  packet.rx_checks.l4_checksum_good = true;
  if (!out_.hand_over(static_cast<uint32_t>(std::countr_zero(others)), packet)) return false;
  stats_.rx_handed_to_claimant.inc();
  return true;
}

void TcpLayer::listen_input(Instant now, TcpListener& l, const ip::Ipv4Repr& ip, const SegmentRepr& seg) {
  // RFC 9293 §3.10.7.2, LISTEN: a RST is ignored, an ACK is answered with a RST, a SYN opens.
  if (seg.flags & kRst) return;
  if (seg.flags & kAck) {
    send_reset_for(now, ip, seg);
    return;
  }
  if (!(seg.flags & kSyn)) return;
  // Linux (tcp_conn_request) drops the SYN when the accept queue is full, or the SYN queue is
  // (without SYN cookies); the peer's SYN retransmission tries again later.
  if (l.accept_queue_full() || l.half_open_.size() >= std::max(l.backlog(), config_.max_syn_backlog)) {
    stats_.listen_syn_dropped.inc();
    return;
  }
  auto route = out_.route(ip.src);
  if (!route) return;
  route->src = ip.dst;
  const FourTuple tuple{ip.dst, seg.dst_port, ip.src, seg.src_port};
  auto c = std::make_shared<TcpConnection>(*this, tuple, *route, l.options());
  PortBinding& b = c->binding();
  b.addr = ip.dst;
  b.port = seg.dst_port;
  b.reuse_addr = l.binding().reuse_addr;
  b.reuse_port = l.binding().reuse_port;
  register_binding(b);
  connections_.emplace(tuple, c);
  l.half_open_.insert(c.get());
  stats_.passive_opens.inc();
  c->open_passive(now, isn_.generate(now, tuple.local_addr, tuple.local_port, tuple.remote_addr, tuple.remote_port),
                  seg, &l);
}

void TcpLayer::icmp_error(Instant, const FourTuple& tuple, SeqNum seq, int err) {
  // RFC 1122 §4.2.3.9 and Linux's tcp_v4_err(): a hard error during the handshake ends the
  // attempt; once established, errors are soft (the retransmission timer decides).
  auto it = connections_.find(tuple);
  if (it == connections_.end()) return;
  TcpConnection* c = it->second.get();  // closed() parks it in graveyard_: alive until reap()
  if (c->state() != State::kSynSent) return;
  if (seq != c->iss()) return;  // must quote our SYN: a blind attacker does not know the ISS
  c->closed(err);
}

void TcpLayer::send_reset_for(Instant now, const ip::Ipv4Repr& ip, const SegmentRepr& seg) {
  // RFC 9293 §3.10.7.1: never a RST for a RST; take the sequence from the ACK when there is one.
  if (seg.flags & kRst) return;
  SegmentRepr h;
  h.src_port = seg.dst_port;
  h.dst_port = seg.src_port;
  if (seg.flags & kAck) {
    h.seq = seg.ack;
    h.flags = kRst;
  } else {
    h.seq = SeqNum(0);
    h.ack = seg.seq + seg.seq_len();
    h.flags = kRst | kAck;
  }
  auto route = out_.route(ip.src);
  if (!route) return;
  route->src = ip.dst;
  stats_.tx_resets.inc();
  send_bare(now, *route, h);
}

// ---- Output ----

Packet TcpLayer::alloc_segment(size_t payload_len) {
  // alloc_datagram leaves room for IPv4 and Ethernet; reserve the TCP header's room in front.
  Packet p = out_.alloc_datagram(kMaxTcpHeader + payload_len);
  if (!p) return p;
  if (!p.append(kMaxTcpHeader)) return Packet();
  p.consume_front(kMaxTcpHeader);
  return p;
}

void TcpLayer::send_bare(Instant now, const ip::Route& route, const SegmentRepr& header) {
  const size_t len = header.header_len();
  Packet p = out_.alloc_datagram(len);
  if (!p) return;
  p.append(len);
  const bool offload = route.tcp_checksum_offload && !route.loopback;
  header.emit_header(p.bytes(), route.src, route.dst, !offload);
  p.tx_offload.tcp_checksum = offload;
  stats_.tx_segments.inc();
  out_.send_datagram(now, route, kProtocolTcp, std::move(p), true);
}

void TcpLayer::transmit(Instant now, const TcpConnection& c, const SegmentRepr& header, Packet payload) {
  if (!payload) {
    send_bare(now, c.route(), header);
    return;
  }
  const size_t len = header.header_len();
  if (payload.headroom() < len + 64) {
    Packet copy = alloc_segment(payload.size());
    if (!copy) return;
    std::memcpy(copy.append(payload.size()), payload.data(), payload.size());
    payload = std::move(copy);
    stats_.tx_payload_copied.inc();
  }
  payload.prepend(len);
  const ip::Route route = c.route();
  const bool offload = route.tcp_checksum_offload && !route.loopback;
  header.emit_header(payload.bytes(), route.src, route.dst, !offload);
  payload.tx_offload.tcp_checksum = offload;
  stats_.tx_segments.inc();
  out_.send_datagram(now, route, kProtocolTcp, std::move(payload), true);
}

bool TcpLayer::allow_challenge_ack(Instant now) {
  if (now - challenge_window_start_ >= 1s) {
    challenge_window_start_ = now;
    challenge_acks_in_window_ = 0;
  }
  if (challenge_acks_in_window_ >= config_.challenge_acks_per_s) return false;
  ++challenge_acks_in_window_;
  return true;
}

// ---- Tables follow the states ----

void TcpLayer::state_changed(TcpConnection& c, State from, State to) {
  if (from == State::kTimeWait) {
    time_wait_.unlink(c.busy());
    --time_wait_count_;
    c.binding_.time_wait = false;
  }
  if (to == State::kTimeWait) {
    time_wait_.push_newest(c.busy());
    ++time_wait_count_;
    c.binding_.time_wait = true;
    bound_time_wait();
  }
  if (to == State::kClosed) {
    if (TcpListener* l = c.listener(); l && l->half_open_.erase(&c)) c.detach_listener();
    unhash(c);
  }
}

void TcpLayer::unhash(TcpConnection& c) {
  auto it = connections_.find(c.tuple());
  if (it != connections_.end() && it->second.get() == &c) {
    graveyard_.push_back(std::move(it->second));
    connections_.erase(it);
  }
  unbind(c.binding_);
}

bool TcpLayer::in_time_wait(const FourTuple& t) const {
  if (time_waits_.contains(t)) return true;
  const TcpConnection* c = find(t);
  return c && c->state() == State::kTimeWait;
}

TcpConnection* TcpLayer::find(const FourTuple& t) const {
  auto it = connections_.find(t);
  return it == connections_.end() ? nullptr : it->second.get();
}

}  // namespace ustack::tcp
