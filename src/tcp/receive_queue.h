#pragma once
// The receive side's data: in-order bytes the application has not read yet, and segments that
// arrived out of order, kept (bounded) until the gap before them fills (RFC 9293 §3.10.7.4,
// "segment text"). Payload stays in the buffer it arrived in; only segments much smaller than
// their buffer are copied together (a flood of tiny segments must not pin a buffer each), and all
// of them when the device is short of buffers.

#include <cstdint>
#include <span>
#include <vector>

#include "base/packet.h"
#include "base/ring.h"
#include "tcp/segment.h"
#include "tcp/seq_num.h"

namespace ustack::tcp {

class ReceiveQueue {
 public:
  explicit ReceiveQueue(uint32_t max_out_of_order = 256) : max_out_of_order_(max_out_of_order) {}

  void reset(SeqNum next) {
    ready_.clear();  // keeps its array
    std::vector<Piece>().swap(ooo_);
    next_ = next;
    readable_ = charged_ = 0;
    ooo_bytes_ = 0;
  }
  /// RCV.NXT as far as data goes: the next byte expected.
  SeqNum next() const { return next_; }
  /// Advances past a FIN (it takes one sequence number and no byte).
  void skip_one() { next_ += 1; }

  enum class Added { kInOrder, kOutOfOrder, kDuplicate, kDropped };
  /// Takes a segment's payload (a view: data() is its first byte) that starts at `seq` and lies
  /// inside the window. `copy`: the device is short of buffers, keep nothing of its. Adds the
  /// number of copies it made (small segments, or `copy`) to `*copies` (for the stats).
  Added add(SeqNum seq, Packet payload, bool copy, uint32_t* copies);

  /// Nothing held: no byte to read, none out of order (the state of a new queue but for next()).
  bool empty() const { return ready_.empty() && ooo_.empty() && charged_ == 0; }
  /// Frees the array of readable buffers if it grew beyond `capacity` (the queue must be empty).
  void trim(size_t capacity) {
    if (ready_.capacity() > capacity) ready_.release_memory();
  }
  /// Bytes the application can read.
  size_t readable() const { return readable_; }
  /// Copies up to out.size() bytes; `peek` leaves them queued. Returns bytes copied.
  size_t read(std::span<uint8_t> out, bool peek);
  /// Takes the oldest readable bytes out whole, in the buffer they wait in (a segment's payload in
  /// the buffer it arrived in, or small segments copied together), for a reader that reads them
  /// in place (recv_zc). The buffer is the caller's alone: one still shared (a frame looped back
  /// whose sender keeps it for retransmission) is copied. Empty when nothing is readable.
  Packet lend();
  /// Discards everything unread (close with unread data resets the connection instead).
  bool has_out_of_order() const { return !ooo_.empty(); }
  size_t out_of_order_bytes() const { return ooo_bytes_; }
  /// The first out-of-order range (RFC 2018 SACK blocks start with the most recent; not sent yet).
  std::vector<SackBlock> out_of_order_ranges() const;
  /// Memory held (whole buffers).
  size_t charged() const { return charged_; }

 private:
  struct Piece {
    SeqNum seq;
    Packet data;
  };
  void push_ready(Packet data, bool copy, uint32_t* copies);
  void pull_out_of_order(uint32_t* copies);
  static bool small_for_its_buffer(const Packet& p) { return p.size() * 4 < p.truesize(); }

  // Sized for an idle connection: both containers hold no memory while empty, and the counts are
  // 32 bits (a receive buffer is far below 4 GiB).
  Ring<Packet> ready_;        // in order; front is read first
  std::vector<Piece> ooo_;    // sorted by seq, never overlapping, all after next_
  SeqNum next_;
  uint32_t readable_ = 0;
  uint32_t charged_ = 0;
  uint32_t ooo_bytes_ = 0;
  uint32_t max_out_of_order_;
  bool tail_is_ours_ = false; // ready_.back() is a copy buffer of ours with room to append
};

}  // namespace ustack::tcp
