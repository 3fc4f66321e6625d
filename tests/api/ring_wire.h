#pragma once
// A wire between two ports, one with several receive queues (the engines of USTACK_CORES=N) and
// one with a single queue (a peer engine), that threads may drive at once: each direction is a
// lock-free ring per queue, with one producer (a queue is used under its engine's lock) and one
// consumer. The multi-queue side receives each frame on the queue a device with `spread` would
// pick (dev::MemoryQueues::queue_for). Frames are copied as they cross, as on a real link; a full
// ring drops the frame, as a full NIC ring would.

#include <memory>
#include <string>
#include <vector>

#include "base/spsc_ring.h"
#include "dev/device.h"
#include "dev/memory_wire.h"

namespace ustack::apitest {

class RingWire {
 public:
  RingWire(uint32_t queues, dev::MemoryQueues::Spread spread, uint8_t multi_mac, uint8_t single_mac)
      : state_(std::make_shared<State>(queues, spread, multi_mac, single_mac)) {}

  /// The multi-queue side's queues, for api::make_engines.
  std::vector<std::unique_ptr<dev::Device>> take_queues() {
    std::vector<std::unique_ptr<dev::Device>> out;
    for (uint32_t q = 0; q < state_->queues; ++q) out.push_back(std::make_unique<QueueEnd>(state_, q));
    return out;
  }
  /// The single-queue side.
  std::unique_ptr<dev::Device> take_peer() { return std::make_unique<PeerEnd>(state_); }

 private:
  struct State {
    State(uint32_t n, dev::MemoryQueues::Spread s, uint8_t multi_mac, uint8_t single_mac)
        : queues(n), spread(s), multi_caps(dev::test_caps(multi_mac)), single_caps(dev::test_caps(single_mac)) {
      for (uint32_t q = 0; q < n; ++q) {
        to_peer.push_back(std::make_unique<SpscRing<Packet>>(4096));
        to_queue.push_back(std::make_unique<SpscRing<Packet>>(4096));
      }
    }
    uint32_t queues;
    dev::MemoryQueues::Spread spread;
    dev::DeviceCaps multi_caps, single_caps;
    std::vector<std::unique_ptr<SpscRing<Packet>>> to_peer;   // from queue q
    std::vector<std::unique_ptr<SpscRing<Packet>>> to_queue;  // to queue q
  };

  static size_t drain(SpscRing<Packet>& ring, std::span<Packet> out, size_t n) {
    while (n < out.size() && ring.pop(out[n])) ++n;
    return n;
  }
  static size_t send(SpscRing<Packet>& ring, Packet& p, DevStats* stats) {
    Packet copy = Packet::copy_of(p.bytes());
    p = Packet();
    if (ring.push(copy)) return 1;
    if (stats) stats->tx_dropped_queue_full.inc();
    return 0;
  }

  class QueueEnd final : public dev::Device {
   public:
    QueueEnd(std::shared_ptr<State> s, uint32_t q) : s_(std::move(s)), q_(q) {}
    const dev::DeviceCaps& caps() const override { return s_->multi_caps; }
    size_t rx_burst(std::span<Packet> out) override { return drain(*s_->to_queue[q_], out, 0); }
    size_t tx_burst(std::span<Packet> pkts) override {
      size_t sent = 0;
      for (Packet& p : pkts) sent += send(*s_->to_peer[q_], p, stats_);
      return sent;
    }
    Packet alloc_tx() override { return Packet::heap(caps().buffer_size, caps().tx_headroom); }
    void attach_stats(DevStats* stats) override { stats_ = stats; }
    std::string name() const override { return "ring wire queue " + std::to_string(q_); }

   private:
    std::shared_ptr<State> s_;
    uint32_t q_;
    DevStats* stats_ = nullptr;
  };

  class PeerEnd final : public dev::Device {
   public:
    explicit PeerEnd(std::shared_ptr<State> s) : s_(std::move(s)) {}
    const dev::DeviceCaps& caps() const override { return s_->single_caps; }
    size_t rx_burst(std::span<Packet> out) override {
      size_t n = 0;
      for (auto& ring : s_->to_peer) n = drain(*ring, out, n);
      return n;
    }
    size_t tx_burst(std::span<Packet> pkts) override {
      size_t sent = 0;
      for (Packet& p : pkts) {
        const uint32_t q = dev::MemoryQueues::queue_for(p.bytes(), s_->queues, s_->spread);
        sent += send(*s_->to_queue[q], p, stats_);
      }
      return sent;
    }
    Packet alloc_tx() override { return Packet::heap(caps().buffer_size, caps().tx_headroom); }
    void attach_stats(DevStats* stats) override { stats_ = stats; }
    std::string name() const override { return "ring wire peer"; }

   private:
    std::shared_ptr<State> s_;
    DevStats* stats_ = nullptr;
  };

  std::shared_ptr<State> state_;
};

}  // namespace ustack::apitest
