#include "tcp/receive_queue.h"

#include <algorithm>
#include <cstring>

namespace ustack::tcp {

namespace {
constexpr size_t kCopyBufferSize = 2048;
}

void ReceiveQueue::push_ready(Packet data, bool copy, uint32_t* copies) {
  if (data.size() == 0) return;
  readable_ += static_cast<uint32_t>(data.size());
  if (!copy && !small_for_its_buffer(data)) {
    charged_ += static_cast<uint32_t>(data.truesize());
    ready_.push_back(std::move(data));
    tail_is_ours_ = false;
    return;
  }
  ++*copies;
  size_t done = 0;
  if (tail_is_ours_ && !ready_.empty()) {
    Packet& tail = ready_.back();
    const size_t n = std::min(tail.tailroom(), data.size());
    if (n > 0) std::memcpy(tail.append(n), data.data(), n);
    done = n;
  }
  while (done < data.size()) {
    const size_t left = data.size() - done;
    Packet p = Packet::heap(std::max(kCopyBufferSize, left), 0);
    std::memcpy(p.append(left), data.data() + done, left);
    charged_ += static_cast<uint32_t>(p.truesize());
    ready_.push_back(std::move(p));
    tail_is_ours_ = true;
    done += left;
  }
}

ReceiveQueue::Added ReceiveQueue::add(SeqNum seq, Packet payload, bool copy, uint32_t* copies) {
  const SeqNum end = seq + static_cast<uint32_t>(payload.size());
  if (end <= next_) return Added::kDuplicate;
  if (seq <= next_) {
    payload.consume_front(static_cast<size_t>(next_ - seq));
    next_ = end;
    push_ready(std::move(payload), copy, copies);
    pull_out_of_order(copies);
    return Added::kInOrder;
  }
  // Out of order: keep the parts no piece holds yet (the first copy of a byte wins).
  std::vector<Piece> fresh;
  SeqNum at = seq;
  auto it = std::lower_bound(ooo_.begin(), ooo_.end(), seq,
                             [](const Piece& p, SeqNum s) { return p.seq + static_cast<uint32_t>(p.data.size()) <= s; });
  for (; at < end; ++it) {
    const SeqNum gap_end = it == ooo_.end() ? end : min(end, it->seq);
    if (at < gap_end) {
      Packet part = payload.share();
      part.consume_front(static_cast<size_t>(at - seq));
      part.truncate(static_cast<size_t>(gap_end - at));
      fresh.push_back(Piece{at, std::move(part)});
    }
    if (it == ooo_.end()) break;
    at = max(at, it->seq + static_cast<uint32_t>(it->data.size()));
  }
  if (fresh.empty()) return Added::kDuplicate;
  if (ooo_.size() + fresh.size() > max_out_of_order_) return Added::kDropped;
  for (Piece& piece : fresh) {
    if (copy || small_for_its_buffer(piece.data)) {
      piece.data = Packet::copy_of(piece.data.bytes());
      ++*copies;
    }
    ooo_bytes_ += static_cast<uint32_t>(piece.data.size());
    charged_ += static_cast<uint32_t>(piece.data.truesize());
    auto pos = std::lower_bound(ooo_.begin(), ooo_.end(), piece.seq,
                                [](const Piece& p, SeqNum s) { return p.seq < s; });
    ooo_.insert(pos, std::move(piece));
  }
  return Added::kOutOfOrder;
}

void ReceiveQueue::pull_out_of_order(uint32_t* copies) {
  size_t taken = 0;
  while (taken < ooo_.size() && ooo_[taken].seq <= next_) {
    Piece& p = ooo_[taken++];
    ooo_bytes_ -= static_cast<uint32_t>(p.data.size());
    charged_ -= static_cast<uint32_t>(p.data.truesize());
    const SeqNum end = p.seq + static_cast<uint32_t>(p.data.size());
    if (end <= next_) continue;
    p.data.consume_front(static_cast<size_t>(next_ - p.seq));
    next_ = end;
    push_ready(std::move(p.data), false, copies);
  }
  ooo_.erase(ooo_.begin(), ooo_.begin() + static_cast<std::ptrdiff_t>(taken));
  if (ooo_.empty()) std::vector<Piece>().swap(ooo_);  // the gap is filled: hold nothing
}

size_t ReceiveQueue::read(std::span<uint8_t> out, bool peek) {
  size_t done = 0;
  size_t i = 0;
  while (done < out.size() && i < ready_.size()) {
    Packet& p = ready_[i];
    const size_t n = std::min(out.size() - done, p.size());
    std::memcpy(out.data() + done, p.data(), n);
    done += n;
    if (peek) {
      ++i;
      continue;
    }
    if (n == p.size()) {
      charged_ -= static_cast<uint32_t>(p.truesize());
      ready_.pop_front();
      if (ready_.empty()) tail_is_ours_ = false;
    } else {
      p.consume_front(n);
    }
  }
  if (!peek) readable_ -= static_cast<uint32_t>(done);
  return done;
}

Packet ReceiveQueue::lend() {
  if (ready_.empty()) return Packet();
  Packet p = std::move(ready_.front());
  ready_.pop_front();
  if (ready_.empty()) tail_is_ours_ = false;
  readable_ -= static_cast<uint32_t>(p.size());
  charged_ -= static_cast<uint32_t>(p.truesize());
  if (p.shared()) p = Packet::copy_of(p.bytes());
  return p;
}

std::vector<SackBlock> ReceiveQueue::out_of_order_ranges() const {
  std::vector<SackBlock> blocks;
  for (const Piece& p : ooo_) {
    const SeqNum end = p.seq + static_cast<uint32_t>(p.data.size());
    if (!blocks.empty() && blocks.back().right == p.seq) {
      blocks.back().right = end;
    } else {
      blocks.push_back(SackBlock{p.seq, end});
    }
  }
  return blocks;
}

}  // namespace ustack::tcp
