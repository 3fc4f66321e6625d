#pragma once
// TCP's demultiplexer and everything shared by its connections: the 4-tuple table (a hash map;
// nothing scans all connections), listeners by local port, the port table (bind, RFC 6056
// ephemeral ports), RSTs for segments nobody owns, TIME-WAIT's bound, the challenge-ACK budget,
// and the way out to IPv4.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>

#include "base/age_list.h"
#include "base/flow_hash.h"
#include "base/instant.h"
#include "base/packet.h"
#include "base/result.h"
#include "base/rng.h"
#include "base/stats.h"
#include "base/timer_wheel.h"
#include "ip/ip_output.h"
#include "ip/ipv4_packet.h"
#include "tcp/isn.h"
#include "tcp/tcp_config.h"
#include "tcp/tcp_connection.h"
#include "tcp/tcp_listener.h"
#include "tcp/time_wait.h"
#include "udp/udp_layer.h"

namespace ustack::tcp {

class TcpLayer final : public SegmentAllocator, private TimerClient {
 public:
  TcpLayer(const TcpConfig& config, const EngineShare& engine, TcpStats& stats, TimerWheel& timers, Rng& rng,
           ip::IpOutput& out, const udp::LocalAddresses& local);
  ~TcpLayer();
  TcpLayer(const TcpLayer&) = delete;
  TcpLayer& operator=(const TcpLayer&) = delete;

  // ---- Ports (bind(2)) ----
  /// Binds `b` to addr:port (port 0: an ephemeral one). 0 or EADDRINUSE, EADDRNOTAVAIL, EINVAL
  /// (already bound), EAGAIN (no ephemeral port left).
  int bind(PortBinding& b, Ipv4Addr addr, uint16_t port);
  void unbind(PortBinding& b);

  // ---- Listening ----
  /// Starts accepting on the listener's (bound) binding: 0 or EADDRINUSE.
  int listen(TcpListener& l);
  /// Stops: queued and half-open connections are reset (Linux's inet_csk_listen_stop).
  void unlisten(Instant now, TcpListener& l);

  // ---- Active open ----
  /// Opens a connection to `remote` from `bound` (unbound: an ephemeral port and the route's
  /// source address). 0-or-errno in the Result: ENETUNREACH, EADDRNOTAVAIL (4-tuple taken, or no
  /// ephemeral port).
  Result<std::shared_ptr<TcpConnection>, int> connect(Instant now, const PortBinding* bound, Ipv4Addr remote_addr,
                                                      uint16_t remote_port, const SocketOptions& options);

  // ---- Input ----
  /// A TCP segment from IPv4; `packet` starts at the IP header.
  void receive(Instant now, const ip::Ipv4Repr& ip, Packet& packet, bool device_buffers_scarce);
  /// A hard ICMP error (port or protocol unreachable) about a segment from `local` to `remote`.
  void icmp_error(Instant now, const FourTuple& tuple, SeqNum seq, int err);
  /// Frees what closed connections left behind; the stack calls it after each poll.
  void reap() {
    graveyard_.clear();
    if (graveyard_.capacity() > kGraveyardKept) std::vector<std::shared_ptr<TcpConnection>>().swap(graveyard_);
  }

  // ---- For connections ----
  Packet alloc_segment(size_t payload_len) override;
  /// Writes the header in front of `payload` (empty: a segment without data) and sends it.
  void transmit(Instant now, const TcpConnection& c, const SegmentRepr& header, Packet payload);
  TimerWheel& timers() { return timers_; }
  TcpStats& stats() { return stats_; }
  const TcpConfig& config() const { return config_; }
  Rng& rng() { return rng_; }
  /// A connection's transfer state, from the spares when there is one.
  TcpConnection::Transfer* take_transfer(TcpConnection& c, SeqNum send_tail, SeqNum receive_next);
  void give_back_transfer(TcpConnection::Transfer* t);
  /// RFC 5961 §7: challenge ACKs are limited per second across all connections.
  bool allow_challenge_ack(Instant now);
  /// Every state change goes through here, so that the tables follow.
  void state_changed(TcpConnection& c, State from, State to);
  /// A closed connection reached TIME-WAIT (or was closed in it): a compact entry takes over its
  /// 4-tuple and port for 2 MSL, and the connection goes CLOSED.
  void retire_to_time_wait(Instant now, TcpConnection& c);
  /// The connection became ESTABLISHED from SYN-RECEIVED: false (the ACK is dropped, as Linux
  /// does) when the listener's accept queue is full.
  bool admit_to_accept_queue(TcpConnection& c);
  /// Connections keep their own window; this is the stack-wide "buffers are scarce" hint.
  bool device_buffers_scarce() const { return buffers_scarce_; }

  /// 4-tuples held: connections, and TIME-WAIT entries of connections their users closed.
  size_t connections() const { return connections_.size() + time_waits_.size(); }
  size_t time_wait_connections() const { return time_wait_count_; }
  /// The connection on a 4-tuple; not one in a compact TIME-WAIT entry (in_time_wait()).
  TcpConnection* find(const FourTuple& t) const;
  /// Whether the 4-tuple is in TIME-WAIT, as a connection or as a compact entry.
  bool in_time_wait(const FourTuple& t) const;

 private:
  bool port_conflicts(const PortBinding& b, Ipv4Addr addr, uint16_t port) const;
  void register_binding(PortBinding& b);
  uint16_t pick_ephemeral(Ipv4Addr local, Ipv4Addr remote, uint16_t remote_port, bool for_connect);
  /// Whether connect() to remote:remote_port from `local` may take `port`: its replies reach this
  /// engine, and nothing holds it but other connections (never the same 4-tuple).
  bool connect_port_usable(uint16_t port, Ipv4Addr local, Ipv4Addr remote, uint16_t remote_port) const;
  /// connect()'s ephemeral port: pick_ephemeral, and when every port is taken the ports of the
  /// oldest TIME-WAIT entries (reclaim_time_wait_ports). Once a scan of the range found none for a
  /// destination, its next connects take from the reclaimed ports, and reclaim the next batch
  /// when those run out, without scanning again until a port comes free some other way.
  TcpListener* find_listener(Ipv4Addr addr, uint16_t port, Ipv4Addr from, uint16_t from_port) const;
  void listen_input(Instant now, TcpListener& l, const ip::Ipv4Repr& ip, const SegmentRepr& seg);
  /// A segment nobody here takes, handed to another engine whose socket claims its port; true
  /// when handed on.
  bool hand_to_claimant(const ip::Ipv4Repr& ip, const SegmentRepr& seg, Packet& packet);
  void send_reset_for(Instant now, const ip::Ipv4Repr& ip, const SegmentRepr& seg);
  void send_bare(Instant now, const ip::Route& route, const SegmentRepr& header);
  void unhash(TcpConnection& c);
  bool tuple_taken(const FourTuple& t) const { return connections_.contains(t) || time_waits_.contains(t); }
  // time_wait.cc
  void time_wait_input(Instant now, TimeWaitEntry& e, const ip::Ipv4Repr& ip, const SegmentRepr& seg);
  void time_wait_ack(Instant now, const TimeWaitEntry& e);
  void time_wait_challenge_ack(Instant now, const TimeWaitEntry& e);
  void drop_time_wait(TimeWaitEntry& e);
  void restart_time_wait(Instant now, TimeWaitEntry& e);
  /// Evicts the oldest TIME-WAIT (entries first) beyond config_.max_time_wait.
  void bound_time_wait();
  /// connect() found every ephemeral port it may use taken: the oldest compact TIME-WAIT entries
  /// go, as they do beyond max_time_wait, a quarter of them at a time (at least one), so that
  /// their ports serve again and the scan that found none (of the whole range) is paid once per
  /// batch: a sixteenth made two engines' short connections 25 % slower. With several
  /// engines each may use only the ports whose replies hash to it, fewer than max_time_wait: a
  /// client's short connections would otherwise run out of ports. True if any went.
  bool reclaim_time_wait_ports();
  uint16_t pick_connect_port(Ipv4Addr local, Ipv4Addr remote, uint16_t remote_port);
  static constexpr size_t kTimeWaitReclaimDivisor = 4;
  /// The destination whose last scan found every port taken, and the ports reclaimed since.
  struct ExhaustedDestination {
    Ipv4Addr local, remote;
    uint16_t remote_port;
    bool operator==(const ExhaustedDestination&) const = default;
  };
  std::optional<ExhaustedDestination> exhausted_for_;
  std::vector<uint16_t> reclaimed_ports_;
  bool reclaiming_ = false;  // reclaim_time_wait_ports() is freeing ports: they go to reclaimed_ports_
  void on_timer(TimerEntry& entry, Instant now) override;
  void arm_time_wait_timer();

  TcpConfig config_;
  EngineShare engine_;
  TcpStats& stats_;
  TimerWheel& timers_;
  Rng& rng_;
  ip::IpOutput& out_;
  const udp::LocalAddresses& local_;
  IsnGenerator isn_;
  SipKey port_key_;
  uint32_t next_ephemeral_ = 0;
  absl::flat_hash_map<FourTuple, std::shared_ptr<TcpConnection>> connections_;
  // Most ports have one holder (a connection's ephemeral port, or its TIME-WAIT entry): inline.
  absl::flat_hash_map<uint16_t, absl::InlinedVector<PortBinding*, 1>> ports_;
  absl::flat_hash_map<uint16_t, std::vector<TcpListener*>> listeners_;
  std::vector<std::shared_ptr<TcpConnection>> graveyard_;
  static constexpr size_t kGraveyardKept = 256;  // slots kept after a burst of closes
  AgeList<TcpConnection::Transfer> time_wait_;  // a TIME-WAIT connection always holds one
  absl::flat_hash_map<FourTuple, std::unique_ptr<TimeWaitEntry>> time_waits_;
  AgeList<TimeWaitEntry> time_wait_expiry_;  // oldest first is soonest first: all last 2 MSL
  TimerEntry time_wait_timer_{this};
  // Busy connections take transfer state and idle ones give it back, about once per exchange:
  // a few spare blocks spare malloc that. Bounded, so idle connections' memory stays theirs.
  // Spares keep their queues' arrays up to kSpareQueueCapacity entries (a few KiB in all).
  static constexpr size_t kSpareTransfers = 64;
  static constexpr size_t kSpareQueueCapacity = 16;
  std::vector<TcpConnection::Transfer*> spare_transfers_;
  size_t time_wait_count_ = 0;
  Instant challenge_window_start_;
  uint32_t challenge_acks_in_window_ = 0;
  bool buffers_scarce_ = false;
};

}  // namespace ustack::tcp
