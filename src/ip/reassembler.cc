#include "ip/reassembler.h"

#include <algorithm>
#include <cstring>

namespace ustack::ip {

namespace {
constexpr uint32_t kMaxDatagram = 65535;
constexpr size_t kFragmentOverhead = 64;  // bookkeeping per fragment, charged against max_bytes
}

Reassembler::Reassembler(const ReassemblyConfig& config, TimerWheel& timers, Ipv4Stats& stats,
                         ReassemblyActions& actions)
    : config_(config), timers_(timers), stats_(stats), actions_(actions) {}

Reassembler::~Reassembler() = default;

std::optional<Packet> Reassembler::add(Instant now, const Ipv4Repr& header, Packet packet) {
  ++stats_.rx_fragments;
  const Key key{header.src, header.dst, header.ident, header.protocol};
  const uint32_t offset = header.fragment_offset;
  const uint32_t length = header.payload_len;
  const uint32_t end = offset + length;
  if (header.header_len + end > kMaxDatagram) {
    ++stats_.reasm_too_big;  // "ping of death": would overflow the 16-bit total length
    auto it = datagrams_.find(key);
    if (it != datagrams_.end()) erase(*it->second);
    return std::nullopt;
  }
  // RFC 791: every fragment but the last carries a multiple of 8 payload bytes.
  if (header.more_fragments && (length == 0 || length % 8 != 0)) {
    ++stats_.reasm_bad_fragment;
    return std::nullopt;
  }

  Datagram& d = find_or_create(now, key);
  auto drop_datagram = [&] {
    ++stats_.reasm_overlap_dropped;
    erase(d);
    return std::nullopt;
  };
  if (!header.more_fragments) {
    if (d.total_length && *d.total_length != end) return drop_datagram();
    // Fragments already held past this end make the datagram inconsistent (and assemble() would
    // write them past the buffer sized from the end).
    if (!d.fragments.empty() && d.fragments.back().offset + d.fragments.back().length > end) {
      return drop_datagram();
    }
    d.total_length = end;
  }
  if (d.total_length && end > *d.total_length) return drop_datagram();

  auto pos = std::lower_bound(d.fragments.begin(), d.fragments.end(), offset,
                              [](const Fragment& f, uint32_t o) { return f.offset < o; });
  if (pos != d.fragments.end() && pos->offset == offset && pos->length == length) {
    return std::nullopt;  // an exact duplicate: the wire repeated it
  }
  if (pos != d.fragments.end() && pos->offset < end) return drop_datagram();
  if (pos != d.fragments.begin() && std::prev(pos)->offset + std::prev(pos)->length > offset) {
    return drop_datagram();
  }

  if (d.fragments.size() >= config_.max_fragments) {
    ++stats_.reasm_bad_fragment;  // thousands of tiny pieces: an attack, not a datagram
    erase(d);
    return std::nullopt;
  }
  // Held as a heap copy of just its bytes: fragments that never complete must not pin device
  // buffers (a 2 KiB mbuf per 8-byte fragment would drain the pool long before max_bytes).
  Packet copy = Packet::copy_of(packet.bytes());
  packet = Packet();
  const size_t cost = copy.truesize() + kFragmentOverhead;
  d.bytes += cost;
  bytes_held_ += cost;
  d.received += length;
  d.fragments.insert(pos, Fragment{offset, length, header.header_len, std::move(copy)});

  if (d.total_length && d.received == *d.total_length) {
    Packet whole = assemble(d);
    erase(d);
    ++stats_.reasm_ok;
    return whole;
  }
  // Memory bound: evict the oldest datagrams (perhaps this one) until under the limit.
  while (bytes_held_ > config_.max_bytes && by_age_.oldest()) {
    ++stats_.reasm_evicted_memory;
    erase(*by_age_.oldest());
  }
  return std::nullopt;
}

Reassembler::Datagram& Reassembler::find_or_create(Instant now, const Key& key) {
  auto it = datagrams_.find(key);
  if (it != datagrams_.end()) return *it->second;
  if (datagrams_.size() >= config_.max_datagrams && by_age_.oldest()) {
    ++stats_.reasm_evicted_memory;
    erase(*by_age_.oldest());
  }
  auto owned = std::make_unique<Datagram>(this, key);
  Datagram& d = *owned;
  by_age_.push_newest(d);
  timers_.schedule(d.timer, now + config_.timeout);
  datagrams_.emplace(key, std::move(owned));
  return d;
}

void Reassembler::erase(Datagram& d) {
  by_age_.unlink(d);
  bytes_held_ -= d.bytes;
  datagrams_.erase(d.key);
}

Packet Reassembler::assemble(Datagram& d) {
  const Fragment& first = d.fragments.front();
  const uint32_t header_len = first.header_len;
  Packet whole = Packet::heap(header_len + *d.total_length, 0);
  uint8_t* out = whole.append(header_len + *d.total_length);
  std::memcpy(out, first.packet.data(), header_len);
  for (const Fragment& f : d.fragments) {
    std::memcpy(out + header_len + f.offset, f.packet.data() + f.header_len, f.length);
  }
  // The reassembled header: whole length, no fragment fields, checksum recomputed.
  store_be16(out + 2, static_cast<uint16_t>(header_len + *d.total_length));
  store_be16(out + 6, static_cast<uint16_t>(load_be16(out + 6) & Ipv4Packet::kDontFragment));
  store_be16(out + 10, 0);
  store_be16(out + 10, internet_checksum({out, header_len}));
  return whole;
}

void Reassembler::on_timer(TimerEntry& timer, Instant now) {
  Datagram& d = *static_cast<Datagram*>(timer.context);
  ++stats_.reasm_timeout;
  Packet first;
  if (!d.fragments.empty() && d.fragments.front().offset == 0) first = std::move(d.fragments.front().packet);
  erase(d);
  actions_.reassembly_timed_out(now, std::move(first));
}

}  // namespace ustack::ip
