#include "tcp/send_queue.h"

#include <algorithm>
#include <cstring>

namespace ustack::tcp {

size_t SendQueue::append(std::span<const uint8_t> data, uint32_t segment_size, SeqNum unsent_from, size_t budget,
                         SegmentAllocator& alloc) {
  size_t taken = 0;
  if (!chunks_.empty()) {
    Chunk& last = chunks_.back();
    if (!last.sent && last.seq >= unsent_from && last.data.size() < segment_size) {
      const size_t n = std::min({data.size(), segment_size - last.data.size(), last.data.tailroom()});
      if (n > 0) {
        std::memcpy(last.data.append(n), data.data(), n);
        taken = n;
      }
    }
  }
  while (taken < data.size()) {
    // A small write gets a small buffer where buffers come in sizes (the heap); a device pool
    // hands out its fixed size whatever we ask.
    const size_t want = std::min<size_t>(segment_size, std::max<size_t>(data.size() - taken, 2048));
    if (charged_ >= budget) break;
    Packet p = alloc.alloc_segment(want);
    if (!p) break;
    const size_t n = std::min({data.size() - taken, size_t{segment_size}, p.tailroom()});
    if (n == 0) break;
    std::memcpy(p.append(n), data.data() + taken, n);
    charged_ += p.truesize();
    chunks_.push_back(Chunk{tail_ + static_cast<uint32_t>(taken), std::move(p)});
    taken += n;
  }
  tail_ += static_cast<uint32_t>(taken);
  return taken;
}

bool SendQueue::append_buffer(Packet& buffer, size_t budget) {
  if (charged_ >= budget || buffer.size() == 0) return false;
  charged_ += buffer.truesize();
  const auto len = static_cast<uint32_t>(buffer.size());
  chunks_.push_back(Chunk{tail_, std::move(buffer)});
  tail_ += len;
  return true;
}

SendQueue::Acked SendQueue::acknowledge(SeqNum ack, Instant) {
  Acked result;
  if (ack <= head_) return result;
  if (ack > tail_) ack = tail_;
  result.bytes = static_cast<uint32_t>(ack - head_);
  // Karn's rule for the whole ACK, as Linux applies it (FLAG_RETRANS_DATA_ACKED): an ACK that
  // covers any retransmitted chunk gives no sample, even from chunks after it that went once.
  // Those waited for the retransmission to fill the hole before them, so their "RTT" includes
  // the recovery (or an RTO): taking it inflated SRTT to seconds on a 0.2 ms path under loss.
  bool ambiguous = false;
  while (!chunks_.empty()) {
    Chunk& c = chunks_.front();
    const SeqNum end = c.seq + c.end_offset();
    if (end <= ack) {
      if (c.sent && !c.retransmitted) {
        result.sent_at = c.sent_at;
      } else {
        ambiguous = true;
      }
      charged_ -= c.data.truesize();
      chunks_.pop_front();
      continue;
    }
    if (c.seq < ack) {
      c.data.consume_front(static_cast<size_t>(ack - c.seq));
      c.seq = ack;
    }
    break;
  }
  head_ = ack;
  if (ambiguous) result.sent_at.reset();
  return result;
}

size_t SendQueue::index_of(SeqNum seq) const {
  // Chunks are contiguous and ordered: the last one starting at or before seq holds it. New data
  // goes out from the newest chunk, so look there before searching.
  if (!chunks_.empty() && chunks_.back().seq <= seq) return chunks_.size() - 1;
  size_t lo = 0, hi = chunks_.size();
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    if (chunks_[mid].seq <= seq) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

uint32_t SendQueue::contiguous_from(SeqNum seq) const {
  if (chunks_.empty() || seq < head_ || seq >= tail_) return 0;
  const Chunk& c = chunks_[index_of(seq)];
  return static_cast<uint32_t>(c.seq + c.end_offset() - seq);
}

Packet SendQueue::payload(SeqNum seq, uint32_t max_len, SegmentAllocator& alloc, bool* copied) {
  *copied = false;
  if (chunks_.empty() || seq < head_ || seq >= tail_ || max_len == 0) return Packet();
  size_t i = index_of(seq);
  const Chunk& c = chunks_[i];
  // A buffer the device no longer reads can carry new headers in front of the chunk's first byte.
  if (c.seq == seq && !c.data.shared()) {
    Packet p = c.data.share();
    if (p.size() > max_len) p.truncate(max_len);
    return p;
  }
  const uint32_t len = std::min(max_len, static_cast<uint32_t>(tail_ - seq));
  Packet p = alloc.alloc_segment(len);
  if (!p || p.tailroom() < len) return Packet();
  uint8_t* out = p.append(len);
  uint32_t done = 0;
  SeqNum at = seq;
  while (done < len) {
    const Chunk& from = chunks_[i];
    const size_t offset = static_cast<size_t>(at - from.seq);
    const size_t n = std::min<size_t>(len - done, from.data.size() - offset);
    std::memcpy(out + done, from.data.data() + offset, n);
    done += static_cast<uint32_t>(n);
    at += static_cast<uint32_t>(n);
    ++i;
  }
  *copied = true;
  return p;
}

void SendQueue::mark_sent(SeqNum seq, uint32_t len, Instant now, bool retransmission) {
  if (chunks_.empty() || len == 0 || seq >= tail_) return;
  const SeqNum end = seq + len;
  for (size_t i = index_of(max(seq, head_)); i < chunks_.size() && chunks_[i].seq < end; ++i) {
    Chunk& c = chunks_[i];
    if (retransmission) {
      c.retransmitted = true;
    } else if (!c.sent) {  // a chunk's tail sent after its head (the window opened) is no resend
      c.sent = true;
      c.sent_at = now;
    }
  }
}

}  // namespace ustack::tcp
