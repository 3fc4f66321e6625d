#pragma once
// The send buffer and the retransmission queue in one: the bytes the application wrote, from
// SND.UNA to the last byte written, as a run of chunks. Each chunk is one buffer with room in
// front for the headers, holding at most one segment's payload, so that a segment goes out as
// a second reference on the chunk's buffer (Packet::share) with its headers written in front:
// the payload is copied once, from the application, and the queue keeps what the device sends.
// Only a segment that does not start at a chunk, or a chunk the device still holds, is copied.

#include <cstdint>
#include <optional>
#include <span>

#include "base/instant.h"
#include "base/packet.h"
#include "base/ring.h"
#include "tcp/seq_num.h"

namespace ustack::tcp {

/// Where the queue gets buffers: `payload_len` bytes of tailroom and headroom for every header.
class SegmentAllocator {
 public:
  virtual Packet alloc_segment(size_t payload_len) = 0;

 protected:
  ~SegmentAllocator() = default;
};

class SendQueue {
 public:
  struct Acked {
    uint32_t bytes = 0;
    /// When the newest fully acknowledged chunk was sent, if no chunk this ACK covers was
    /// retransmitted (Karn).
    std::optional<Instant> sent_at;
  };

  explicit SendQueue(SeqNum start = SeqNum()) : head_(start), tail_(start) {}
  void reset(SeqNum start) {
    chunks_.clear();
    head_ = tail_ = start;
    charged_ = 0;
  }

  SeqNum head() const { return head_; }  ///< the oldest byte held (SND.UNA once data flows)
  SeqNum tail() const { return tail_; }  ///< one past the last byte written
  uint32_t size() const { return static_cast<uint32_t>(tail_ - head_); }
  bool empty() const { return chunks_.empty(); }
  /// Frees the chunk array if it grew beyond `capacity` chunks (the queue must be empty).
  void trim(size_t capacity) {
    if (chunks_.capacity() > capacity) chunks_.release_memory();
  }
  /// The memory the queue holds (whole buffers): what SO_SNDBUF limits.
  size_t charged() const { return charged_; }

  /// Appends bytes; a chunk not yet sent at all (`unsent_from` <= its first byte) and shorter
  /// than `segment_size` is filled first. Returns how many bytes it took (fewer when `budget`
  /// bytes of buffer charge are used up or no buffer could be had).
  size_t append(std::span<const uint8_t> data, uint32_t segment_size, SeqNum unsent_from, size_t budget,
                SegmentAllocator& alloc);
  /// Appends `buffer` whole as a chunk of its own (zero-copy send: the caller wrote the bytes in a
  /// buffer of alloc_segment()'s, with the headers' room in front), unless `budget` bytes of buffer
  /// charge are used up: then false and `buffer` is left alone.
  bool append_buffer(Packet& buffer, size_t budget);
  /// Drops the bytes before `ack`.
  Acked acknowledge(SeqNum ack, Instant now);
  /// A segment's payload: up to `max_len` bytes from `seq` (head <= seq < tail), as a shared
  /// reference on the chunk when it can, else as a copy (`*copied` tells). Its headroom has room
  /// for every header. Empty when no buffer could be had.
  Packet payload(SeqNum seq, uint32_t max_len, SegmentAllocator& alloc, bool* copied);
  /// Bytes from `seq` to the end of its chunk: a segment that long needs no copy.
  uint32_t contiguous_from(SeqNum seq) const;
  /// Records a transmission of [seq, seq + len), for RTT samples and Karn's rule.
  void mark_sent(SeqNum seq, uint32_t len, Instant now, bool retransmission);

 private:
  struct Chunk {
    SeqNum seq;          // of the first byte in `data`
    Packet data;         // the payload bytes still held
    Instant sent_at;     // first transmission
    bool sent = false;
    bool retransmitted = false;
    uint32_t end_offset() const { return static_cast<uint32_t>(data.size()); }
  };
  size_t index_of(SeqNum seq) const;

  Ring<Chunk> chunks_;
  SeqNum head_;
  SeqNum tail_;
  size_t charged_ = 0;
};

}  // namespace ustack::tcp
