#pragma once
// Software flow steering for engines that share a device (USTACK_CORES=N): each engine's stack
// sees its queue of the device through a SteeredDevice, which passes on the frames of flows this
// engine owns (base/flow_hash.h) and hands every other frame to its owner through a lock-free
// ring. A NIC with RSS under the symmetric key already puts each frame on its owner's queue, and
// then nothing is forwarded; devices without it (net_tap, whose kernel side picks the queue by
// its own flow hash; net_memif, whose peer picks it) rely on this. Transmit needs nothing: each
// engine sends on its own queue.
//
// What goes where:
//   TCP, UDP          the owner of the 4-tuple (both directions hash alike), unless the local port
//                     is held by sockets on other engines only (base/port_directory.h: one
//                     listening socket, a bound UDP socket): then the engine that holds it
//   ICMP errors       the owner of the flow quoted inside (a port unreachable reaches the socket)
//   other IPv4        the owner of the address pair (ICMP echo; fragments, which carry no ports
//                     after the first: a fragmented datagram is reassembled and delivered by
//                     that engine, so UDP sockets that receive fragmented datagrams need a
//                     socket on every engine, as with a single-queue RSS NIC)
//   ARP               every engine (each keeps its own cache; only engine 0 answers)
//   anything else     this engine (the stack counts and drops it)

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/flow_hash.h"
#include "base/packet.h"
#include "base/port_directory.h"
#include "base/spsc_ring.h"
#include "dev/device.h"
#include "dev/doorbell.h"

namespace ustack::dev {

/// The rings between N engines: one per ordered pair, so each has one producer and one consumer.
class SteeringGroup {
 public:
  /// `ports`: where the engines' sockets hold ports (may be null: by flow hash alone).
  explicit SteeringGroup(uint32_t engines, size_t ring_capacity = 1024, const PortDirectory* ports = nullptr);
  uint32_t engines() const { return engines_; }
  const PortDirectory* ports() const { return ports_; }
  SpscRing<Packet>& ring(uint32_t from, uint32_t to) { return *rings_[from * engines_ + to]; }
  Doorbell& doorbell(uint32_t engine) { return *doorbells_[engine]; }
  /// IP packets sent to ourselves, handed from engine `from` to the owner of their flow.
  SpscRing<Packet>& local_ring(uint32_t from, uint32_t to) { return *local_rings_[from * engines_ + to]; }

 private:
  uint32_t engines_;
  const PortDirectory* ports_;
  std::vector<std::unique_ptr<SpscRing<Packet>>> rings_;
  std::vector<std::unique_ptr<SpscRing<Packet>>> local_rings_;
  std::vector<std::unique_ptr<Doorbell>> doorbells_;
};

/// The engine that owns a received Ethernet frame (`engines` > 1), or kEveryEngine for ARP.
/// Frames it cannot read stay where they are (`self`). Without `ports`, by the flow hash alone
/// (what a NIC's RSS does).
inline constexpr uint32_t kEveryEngine = UINT32_MAX;
uint32_t frame_owner(std::span<const uint8_t> frame, uint32_t engines, uint32_t self,
                     const PortDirectory* ports = nullptr);

/// Engine `index`'s view of its queue (`queue`, which it alone polls and transmits on).
class SteeredDevice final : public Device {
 public:
  SteeredDevice(Device& queue, SteeringGroup& group, uint32_t index);

  const DeviceCaps& caps() const override { return queue_.caps(); }
  /// Frames other engines forwarded first (at most half of `out`), then the queue's, keeping
  /// this engine's and forwarding the rest.
  size_t rx_burst(std::span<Packet> out) override;
  size_t tx_burst(std::span<Packet> pkts) override { return queue_.tx_burst(pkts); }
  Packet alloc_tx() override { return queue_.alloc_tx(); }
  /// Returns at once when another engine has forwarded a frame; otherwise the queue's wait, which
  /// a frame forwarded meanwhile cuts short (the doorbell).
  bool wait_rx(Duration max) override;
  bool wakes_on_rx() const override { return queue_.wakes_on_rx(); }
  size_t handed_on() const override { return handed_on_; }
  /// Copies the packet (its buffer may stay shared with this engine's send queue) onto the
  /// owner's local ring.
  bool hand_over_local(Packet& ip_packet) override;
  bool hand_over_to(uint32_t engine, Packet& ip_packet) override;
  size_t local_burst(std::span<Packet> out) override;
  Doorbell* doorbell() override { return &group_.doorbell(index_); }
  void engine_thread_started() override { queue_.engine_thread_started(); }
  void engine_thread_stopping() override { queue_.engine_thread_stopping(); }
  bool buffers_scarce() const override { return queue_.buffers_scarce(); }
  void attach_stats(DevStats* stats) override;
  std::string name() const override;

 private:
  /// Hands `frame` to engine `to`; drops it (counted) when that ring is full.
  bool forward(uint32_t to, Packet& frame);
  /// Puts `packet` on `ring`, towards engine `to`, and wakes it; drops it (counted) when full.
  bool push(SpscRing<Packet>& ring, uint32_t to, Packet& packet);
  bool inbound_waiting() const;

  Device& queue_;
  SteeringGroup& group_;
  uint32_t index_;
  DevStats* stats_ = nullptr;
  size_t handed_on_ = 0;
};

}  // namespace ustack::dev
