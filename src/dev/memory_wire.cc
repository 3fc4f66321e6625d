#include "dev/memory_wire.h"

#include <algorithm>

#include "dev/steering.h"

namespace ustack::dev {

DeviceCaps test_caps(uint8_t last_octet) {
  DeviceCaps caps;
  caps.mac = MacAddr({0x02, 0x00, 0x00, 0x00, 0x00, last_octet});
  return caps;
}

MemoryPort::MemoryPort(const ManualClock& clock, DeviceCaps caps, std::string name)
    : clock_(clock), caps_(caps), name_(std::move(name)) {}

size_t MemoryPort::rx_burst(std::span<Packet> out) {
  size_t n = 0;
  const Instant now = clock_.now();
  while (n < out.size() && !rx_.empty() && rx_.front().at <= now) {
    out[n++] = std::move(rx_.front().frame);
    rx_.pop_front();
  }
  return n;
}

size_t MemoryPort::tx_burst(std::span<Packet> pkts) {
  for (Packet& p : pkts) {
    if (observer_) observer_(p.bytes());
    // A NIC reads a frame out of a buffer the sender still references (a TCP segment the
    // retransmission queue keeps); the far end must get bytes of its own, which corruption may
    // flip and which the sender may overwrite with the next header.
    if (p.shared()) p = Packet::copy_of(p.bytes(), 0);
    if (wire_) {
      wire_->carry(*this, std::move(p));
    } else {
      sent_.push_back(std::move(p));
    }
  }
  return pkts.size();
}

Packet MemoryPort::alloc_tx() { return Packet::heap(caps_.buffer_size, caps_.tx_headroom); }

void MemoryPort::inject(Packet frame, Instant at) { enqueue(std::move(frame), std::max(at, clock_.now())); }

std::vector<Packet> MemoryPort::take_sent() { return std::exchange(sent_, {}); }

Instant MemoryPort::next_arrival() const { return rx_.empty() ? Instant::max() : rx_.front().at; }

void MemoryPort::enqueue(Packet frame, Instant at) {
  InFlight item{at, next_order_++, std::move(frame)};
  auto pos = std::upper_bound(rx_.begin(), rx_.end(), item, [](const InFlight& x, const InFlight& y) {
    return x.at < y.at || (x.at == y.at && x.order < y.order);
  });
  rx_.insert(pos, std::move(item));
}

MemoryWire::MemoryWire(const ManualClock& clock, uint64_t seed, DeviceCaps a_caps, DeviceCaps b_caps)
    : clock_(clock),
      rng_(seed),
      a_(std::make_unique<MemoryPort>(clock, a_caps, "wire end A")),
      b_(std::make_unique<MemoryPort>(clock, b_caps, "wire end B")) {
  a_->wire_ = this;
  b_->wire_ = this;
}

void MemoryWire::carry(MemoryPort& from, Packet frame) {
  const bool from_a = &from == a_.get();
  const Impairments& imp = from_a ? a_to_b_ : b_to_a_;
  MemoryPort& to = from_a ? *b_ : *a_;
  Instant& link_free = from_a ? a_link_free_ : b_link_free_;
  const Instant now = clock_.now();
  ++counters_.sent;

  if (rng_.chance(imp.drop)) {
    ++counters_.dropped;
    return;
  }
  if (to.rx_.size() >= imp.queue_limit) {
    ++counters_.queue_full;
    return;
  }
  Instant at = now;
  if (imp.rate_bytes_per_s) {
    // Serialisation: each frame leaves when the previous one has finished.
    at = std::max(at, link_free) + Duration(static_cast<int64_t>(frame.size() * 1'000'000'000ull / imp.rate_bytes_per_s));
    link_free = at;
  }
  at += imp.delay;
  if (imp.jitter > 0ns) at += Duration(static_cast<int64_t>(rng_.below(static_cast<uint64_t>(imp.jitter.count()))));
  if (rng_.chance(imp.reorder)) {
    at += imp.reorder_delay;
    ++counters_.reordered;
  }
  if (frame.size() > 0 && rng_.chance(imp.corrupt)) {
    frame.data()[rng_.below(frame.size())] ^= static_cast<uint8_t>(1 + rng_.below(255));
    ++counters_.corrupted;
  }
  if (rng_.chance(imp.duplicate)) {
    to.enqueue(Packet::copy_of(frame.bytes(), 0), at);
    ++counters_.duplicated;
  }
  ++counters_.delivered;
  to.enqueue(std::move(frame), at);
}

class MemoryQueues::Queue final : public Device {
 public:
  Queue(MemoryQueues& owner, uint32_t index) : owner_(owner), index_(index) {}
  const DeviceCaps& caps() const override { return owner_.port_.caps(); }
  size_t rx_burst(std::span<Packet> out) override {
    owner_.distribute();
    size_t n = 0;
    while (n < out.size() && !rx_.empty()) {
      out[n++] = std::move(rx_.front());
      rx_.pop_front();
    }
    return n;
  }
  size_t tx_burst(std::span<Packet> pkts) override { return owner_.port_.tx_burst(pkts); }
  Packet alloc_tx() override { return owner_.port_.alloc_tx(); }
  std::string name() const override { return owner_.port_.name() + " queue " + std::to_string(index_); }

  std::deque<Packet> rx_;

 private:
  MemoryQueues& owner_;
  uint32_t index_;
};

MemoryQueues::MemoryQueues(MemoryPort& port, uint32_t queues, Spread spread) : port_(port), spread_(spread) {
  for (uint32_t i = 0; i < queues; ++i) queues_.push_back(std::make_unique<Queue>(*this, i));
}

MemoryQueues::~MemoryQueues() = default;

Device& MemoryQueues::queue(uint32_t i) { return *queues_[i]; }

uint32_t MemoryQueues::queue_for(std::span<const uint8_t> frame, uint32_t queues, Spread spread) {
  if (spread == Spread::kQueueZero) return 0;
  const uint32_t owner = frame_owner(frame, queues, 0);
  if (owner == kEveryEngine) return 0;
  // kOtherHash: the same flows stay together, on a queue that is not their owner's.
  return spread == Spread::kRss ? owner : (owner * 7 + 1) % queues;
}

void MemoryQueues::distribute() {
  std::array<Packet, 32> burst;
  const auto queues = static_cast<uint32_t>(queues_.size());
  while (const size_t n = port_.rx_burst(burst)) {
    for (size_t i = 0; i < n; ++i) {
      queues_[queue_for(burst[i].bytes(), queues, spread_)]->rx_.push_back(std::move(burst[i]));
    }
  }
}

}  // namespace ustack::dev
