#pragma once
// The one interface between the stack and whatever moves frames: a DPDK port, the in-memory wire
// of the tests. The stack calls it from its engine thread only.

#include <cstddef>
#include <span>
#include <string>

#include "base/instant.h"
#include "base/ipv4_addr.h"
#include "base/packet.h"
#include "base/stats.h"

namespace ustack::dev {

class Doorbell;

/// What the device offers, read once at start.
struct DeviceCaps {
  MacAddr mac;
  uint16_t mtu = 1500;               ///< largest IP packet the link carries
  bool tx_ipv4_checksum = false;     ///< fills the IPv4 header checksum on transmit
  bool tx_udp_checksum = false;      ///< finishes the UDP checksum from the pseudo-header sum
  bool tx_tcp_checksum = false;      ///< finishes the TCP checksum from the pseudo-header sum
  bool rx_checksum = false;          ///< sets Packet::rx_checks on receive
  size_t tx_headroom = 128;          ///< bytes free in front of a fresh transmit buffer
  size_t buffer_size = 2048;         ///< data room of one buffer (headroom included)
};

/// How sleep_interruptibly() ended.
enum class SleepEnd { kTimedOut, kReadable, kSignal };

/// Sleeps for at most `max`, or until `fd` is readable when fd >= 0, and says whether a signal
/// handler ran meanwhile (kSignal, also when fd became readable too). A plain sleep cannot tell:
/// a signal that lands as the sleep ends (timer slack merges the two wake-ups) runs its handler
/// on the way out of a sleep that reports success: with ::nanosleep the engine missed 19 % of
/// signals with 1 ms naps and half of them with 200 µs naps (measured, 4 s of SIGALRM every 8 ms).
/// So the thread's signals are blocked around the sleep and let in only inside it, atomically
/// (ppoll with the thread's own mask), and a handled signal still pending when the sleep ends
/// counts too. Signals that are ignored or take their default action do not count (Linux
/// restarts or never interrupts for those). Never retries after EINTR.
/// `also_fd` (when >= 0) is waited on too: kReadable when either is.
SleepEnd sleep_interruptibly(Duration max, int fd = -1, int also_fd = -1);

class Device {
 public:
  virtual ~Device() = default;

  virtual const DeviceCaps& caps() const = 0;
  /// Moves up to out.size() received frames into `out`; returns how many.
  virtual size_t rx_burst(std::span<Packet> out) = 0;
  /// Takes every packet in `pkts` (they are empty afterwards). Returns how many the device
  /// queued; the rest were freed and counted as dropped, never leaked.
  virtual size_t tx_burst(std::span<Packet> pkts) = 0;
  /// An empty buffer with caps().tx_headroom bytes of headroom, or an empty Packet when the pool
  /// is exhausted.
  virtual Packet alloc_tx() = 0;
  /// Blocks for at most `max` or until a frame may have arrived. Devices that cannot be woken by
  /// the hardware just sleep; callers bound `max` by their latency budget. Returns true when a
  /// signal handler ran during the wait (the wait is not resumed: the caller decides whether the
  /// call it serves fails with EINTR), false otherwise. The default is sleep_interruptibly(max).
  virtual bool wait_rx(Duration max);
  /// True when wait_rx() returns as soon as a frame arrives (an RX interrupt); false when it just
  /// sleeps, so that a frame arriving meanwhile waits for the end of the nap.
  virtual bool wakes_on_rx() const { return false; }
  /// True when the receive buffer pool is running low (under a quarter free): whoever holds
  /// received frames for long (socket queues) should copy them out and let the buffers go.
  virtual bool buffers_scarce() const { return false; }
  /// Where to count frames and bytes (the stack's DevStats); devices that count nothing ignore it.
  virtual void attach_stats(DevStats* stats) { (void)stats; }
  /// A short name for logs ("net_tap0", "memory wire end A").
  virtual std::string name() const = 0;
  /// From now on wait_rx() also returns when `fd` is readable: the eventfd other engines write
  /// when they hand this one a frame (dev/steering.h). Devices that wait in an epoll set of
  /// their own add it there.
  virtual void set_doorbell(int fd) { doorbell_ = fd; }
  /// The doorbell this device's waits already answer to (a steered queue's), or null: then the
  /// engine makes one and hands its eventfd to set_doorbell().
  virtual Doorbell* doorbell() { return nullptr; }
  /// Called on the thread that is about to poll this device for good (an engine's own thread),
  /// and on it again when it stops: a DPDK port registers it as an lcore, so that its mbuf pool
  /// keeps a cache for it (a thread DPDK does not know takes every buffer from the shared ring).
  /// An IP packet the stack sends to itself (127/8, its own address), offered to the engine that
  /// owns its flow when that is another one (several engines): true when taken (queued for that
  /// engine, or dropped and counted when its ring is full); false: deliver it here.
  virtual bool hand_over_local(Packet& ip_packet) { (void)ip_packet; return false; }
  /// A received IP packet this engine has no socket for, handed to engine `engine` whose socket
  /// claims its port (several engines: a closed SO_REUSEPORT listener's share of new flows); it
  /// arrives there as hand_over_local's do. True when taken (queued, or dropped and counted when
  /// the ring is full); false when there are no other engines.
  virtual bool hand_over_to(uint32_t engine, Packet& ip_packet) {
    (void)engine;
    (void)ip_packet;
    return false;
  }
  /// IP packets other engines handed over (hand_over_local) for this one: moves up to out.size()
  /// into `out`, returns how many. They are delivered as looped back.
  virtual size_t local_burst(std::span<Packet> out) { (void)out; return 0; }
  /// Frames the last rx_burst() took from the queue but handed on instead of returning (to
  /// another engine): work done, so the engine is not idle.
  virtual size_t handed_on() const { return 0; }
  virtual void engine_thread_started() {}
  virtual void engine_thread_stopping() {}

 protected:
  int doorbell_ = -1;
};

}  // namespace ustack::dev
