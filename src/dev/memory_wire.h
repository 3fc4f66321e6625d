#pragma once
// Two devices joined by memory, for tests: whatever one end transmits the other receives, after
// the seeded impairments (loss, duplication, reordering, corruption, delay, rate) have had their
// way. Time is the test's ManualClock, so a "100 ms delay" costs nothing and replays exactly.

#include <cstdint>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/instant.h"
#include "base/rng.h"
#include "dev/device.h"

namespace ustack::dev {

/// What the wire does to each frame, in each direction. All probabilities are per frame.
struct Impairments {
  double drop = 0;        ///< frame lost
  double duplicate = 0;   ///< frame delivered twice
  double reorder = 0;     ///< frame held back by `reorder_delay` so that later ones overtake it
  double corrupt = 0;     ///< one random byte flipped (checksums must catch it)
  Duration delay = 0ns;   ///< one-way latency added to every frame
  Duration jitter = 0ns;  ///< extra random latency in [0, jitter)
  Duration reorder_delay = 1ms;
  uint64_t rate_bytes_per_s = 0;  ///< 0: unlimited; otherwise frames queue behind each other
  size_t queue_limit = 4096;      ///< frames in flight per direction; beyond it, tail drop
};

struct WireCounters {
  uint64_t sent = 0, delivered = 0, dropped = 0, duplicated = 0, reordered = 0, corrupted = 0,
           queue_full = 0;
};

class MemoryWire;

/// One end of the wire: a Device. Unattached (no wire), it keeps what the stack sends for the
/// test to take, and receives what the test injects.
class MemoryPort final : public Device {
 public:
  MemoryPort(const ManualClock& clock, DeviceCaps caps, std::string name);

  const DeviceCaps& caps() const override { return caps_; }
  size_t rx_burst(std::span<Packet> out) override;
  size_t tx_burst(std::span<Packet> pkts) override;
  Packet alloc_tx() override;
  /// Really sleeps (Device's sleep_interruptibly) and reports a signal, whatever the ManualClock
  /// says: the API suite's engine naps on this port and its EINTR cases need a nap that a signal
  /// ends. Stacks driven by a ManualClock (the unit tests) never call it.
  bool wait_rx(Duration max) override { return Device::wait_rx(max); }
  std::string name() const override { return name_; }

  /// Queues a frame for this end to receive at `at` (default: now).
  void inject(Packet frame, Instant at = Instant());
  void inject(std::span<const uint8_t> frame) { inject(Packet::copy_of(frame, 0)); }
  /// Frames this end transmitted while not attached to a wire, oldest first.
  std::vector<Packet> take_sent();
  /// Every frame this end transmits is shown to `observer` first (captures in tests).
  void set_observer(std::function<void(std::span<const uint8_t>)> observer) { observer_ = std::move(observer); }
  /// Makes the port report its buffers as scarce (tests of the stack's copy-out path).
  void set_buffers_scarce(bool scarce) { scarce_ = scarce; }
  bool buffers_scarce() const override { return scarce_; }
  size_t rx_pending() const { return rx_.size(); }
  /// The earliest time a queued frame becomes receivable, or Instant::max().
  Instant next_arrival() const;

 private:
  friend class MemoryWire;
  struct InFlight {
    Instant at;
    uint64_t order;
    Packet frame;
  };
  void enqueue(Packet frame, Instant at);

  const ManualClock& clock_;
  DeviceCaps caps_;
  std::string name_;
  MemoryWire* wire_ = nullptr;
  std::deque<InFlight> rx_;  // sorted by (at, order)
  uint64_t next_order_ = 0;
  std::vector<Packet> sent_;
  bool scarce_ = false;
  std::function<void(std::span<const uint8_t>)> observer_;
};

/// Joins two ports and applies the impairments to frames going each way.
class MemoryWire {
 public:
  MemoryWire(const ManualClock& clock, uint64_t seed, DeviceCaps a_caps, DeviceCaps b_caps);
  MemoryPort& a() { return *a_; }
  MemoryPort& b() { return *b_; }
  void set_impairments(const Impairments& both) { a_to_b_ = b_to_a_ = both; }
  void set_impairments(const Impairments& a_to_b, const Impairments& b_to_a) {
    a_to_b_ = a_to_b;
    b_to_a_ = b_to_a;
  }
  const WireCounters& counters() const { return counters_; }

 private:
  friend class MemoryPort;
  void carry(MemoryPort& from, Packet frame);

  const ManualClock& clock_;
  Rng rng_;
  std::unique_ptr<MemoryPort> a_, b_;
  Impairments a_to_b_, b_to_a_;
  Instant a_link_free_, b_link_free_;  // when each direction's serialiser is next idle
  WireCounters counters_;
};

/// Splits what one port receives over `queues` receive queues, as a multi-queue NIC would, for
/// multi-engine tests (one thread: the queues are not for concurrent use). Each queue is a Device;
/// all of them transmit through the port.
class MemoryQueues {
 public:
  enum class Spread {
    kRss,        ///< a NIC with RSS under the symmetric key: each flow on its owner's queue
    kOtherHash,  ///< a device that spreads flows by a hash of its own (the TAP's kernel side)
    kQueueZero,  ///< a device with one receive queue in use: everything on queue 0
  };
  MemoryQueues(MemoryPort& port, uint32_t queues, Spread spread);
  /// The queue such a device puts `frame` on.
  static uint32_t queue_for(std::span<const uint8_t> frame, uint32_t queues, Spread spread);
  ~MemoryQueues();
  Device& queue(uint32_t i);

 private:
  class Queue;
  void distribute();

  MemoryPort& port_;
  Spread spread_;
  std::vector<std::unique_ptr<Queue>> queues_;
};

/// Caps for a test device: a locally administered MAC ending in `last_octet`, 1500 MTU, no offload.
DeviceCaps test_caps(uint8_t last_octet);

}  // namespace ustack::dev
