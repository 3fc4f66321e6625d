#include "tcp/segment.h"

#include "base/checksum.h"

namespace ustack::tcp {

namespace {
enum OptionKind : uint8_t {
  kEol = 0,
  kNop = 1,
  kMss = 2,
  kWindowScale = 3,
  kSackPermitted = 4,
  kSack = 5,
  kTimestamps = 8,
};
constexpr uint8_t kTcp = 6;
}  // namespace

std::optional<TcpOptions> TcpOptions::parse(std::span<const uint8_t> bytes) {
  TcpOptions o;
  size_t i = 0;
  while (i < bytes.size()) {
    const uint8_t kind = bytes[i];
    if (kind == kEol) break;
    if (kind == kNop) {
      ++i;
      continue;
    }
    if (i + 1 >= bytes.size()) return std::nullopt;
    const uint8_t len = bytes[i + 1];
    if (len < 2 || i + len > bytes.size()) return std::nullopt;
    const uint8_t* v = bytes.data() + i + 2;
    switch (kind) {
      case kMss:
        if (len != 4) return std::nullopt;
        o.mss = load_be16(v);
        break;
      case kWindowScale:
        if (len != 3) return std::nullopt;
        o.window_scale = v[0];
        break;
      case kSackPermitted:
        if (len != 2) return std::nullopt;
        o.sack_permitted = true;
        break;
      case kTimestamps:
        if (len != 10) return std::nullopt;
        o.timestamps = Timestamps{load_be32(v), load_be32(v + 4)};
        break;
      case kSack: {
        if ((len - 2) % 8 != 0 || len == 2) return std::nullopt;
        const size_t blocks = (len - 2) / 8u;
        o.sack_count = 0;
        for (size_t b = 0; b < blocks && b < o.sack.size(); ++b) {
          o.sack[b] = SackBlock{SeqNum(load_be32(v + 8 * b)), SeqNum(load_be32(v + 8 * b + 4))};
          ++o.sack_count;
        }
        break;
      }
      default:
        break;  // unknown: skipped by its length (RFC 9293 §3.2)
    }
    i += len;
  }
  return o;
}

size_t TcpOptions::len() const {
  size_t n = 0;
  if (mss) n += 4;
  if (sack_permitted && timestamps) {
    n += 12;  // SACK-permitted (2) + timestamps (10), as Linux packs them
  } else {
    if (sack_permitted) n += 4;  // NOP NOP SACK-permitted
    if (timestamps) n += 12;     // NOP NOP timestamps
  }
  if (window_scale) n += 4;  // NOP window scale
  if (sack_count) n += 4 + 8 * size_t{sack_count};  // NOP NOP SACK
  return n;
}

void TcpOptions::emit(std::span<uint8_t> out) const {
  uint8_t* p = out.data();
  if (mss) {
    p[0] = kMss;
    p[1] = 4;
    store_be16(p + 2, *mss);
    p += 4;
  }
  auto put_timestamps = [&] {
    p[0] = kTimestamps;
    p[1] = 10;
    store_be32(p + 2, timestamps->value);
    store_be32(p + 6, timestamps->echo_reply);
    p += 10;
  };
  if (sack_permitted && timestamps) {
    p[0] = kSackPermitted;
    p[1] = 2;
    p += 2;
    put_timestamps();
  } else {
    if (sack_permitted) {
      p[0] = kNop;
      p[1] = kNop;
      p[2] = kSackPermitted;
      p[3] = 2;
      p += 4;
    }
    if (timestamps) {
      p[0] = kNop;
      p[1] = kNop;
      p += 2;
      put_timestamps();
    }
  }
  if (window_scale) {
    p[0] = kNop;
    p[1] = kWindowScale;
    p[2] = 3;
    p[3] = *window_scale;
    p += 4;
  }
  if (sack_count) {
    p[0] = kNop;
    p[1] = kNop;
    p[2] = kSack;
    p[3] = static_cast<uint8_t>(2 + 8 * sack_count);
    p += 4;
    for (size_t b = 0; b < sack_count; ++b) {
      store_be32(p, sack[b].left.raw());
      store_be32(p + 4, sack[b].right.raw());
      p += 8;
    }
  }
}

Result<SegmentRepr, SegmentError> SegmentRepr::parse(std::span<const uint8_t> bytes, Ipv4Addr src, Ipv4Addr dst,
                                                     bool checksum_verified) {
  auto s = Segment::parse(bytes);
  if (!s) return unexpected(s.error());
  if (!checksum_verified) {
    const uint32_t sum = pseudo_header_sum(src, dst, kTcp, static_cast<uint16_t>(bytes.size()));
    if (checksum_finish(checksum_add(sum, bytes)) != 0) return unexpected(SegmentError::kBadChecksum);
  }
  auto options = TcpOptions::parse(s->options());
  if (!options) return unexpected(SegmentError::kBadOption);
  SegmentRepr r;
  r.src_port = s->src_port();
  r.dst_port = s->dst_port();
  r.seq = s->seq();
  r.ack = s->ack();
  r.flags = s->flags();
  r.window = s->window();
  r.urgent = s->urgent();
  r.options = *options;
  r.payload = s->payload();
  return r;
}

void SegmentRepr::emit_header(std::span<uint8_t> out, Ipv4Addr src, Ipv4Addr dst, bool fill_checksum) const {
  uint8_t* h = out.data();
  const size_t hlen = header_len();
  store_be16(h + 0, src_port);
  store_be16(h + 2, dst_port);
  store_be32(h + 4, seq.raw());
  store_be32(h + 8, ack.raw());
  h[12] = static_cast<uint8_t>((hlen / 4) << 4);
  h[13] = flags;
  store_be16(h + 14, window);
  store_be16(h + 16, 0);
  store_be16(h + 18, urgent);
  options.emit(out.subspan(Segment::kMinHeaderLen, hlen - Segment::kMinHeaderLen));
  const auto length = static_cast<uint16_t>(out.size());
  if (!fill_checksum) {
    store_be16(h + 16, pseudo_header_partial(src, dst, kTcp, length));
    return;
  }
  store_be16(h + 16, checksum_finish(checksum_add(pseudo_header_sum(src, dst, kTcp, length), out)));
}

}  // namespace ustack::tcp
