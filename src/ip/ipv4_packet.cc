#include "ip/ipv4_packet.h"

namespace ustack::ip {

Result<Ipv4Packet, Ipv4Error> Ipv4Packet::parse(std::span<const uint8_t> bytes) {
  if (bytes.size() < kMinHeaderLen) return unexpected(Ipv4Error::kTruncated);
  Ipv4Packet p(bytes);
  if (p.version() != 4) return unexpected(Ipv4Error::kBadVersion);
  if (p.header_len() < kMinHeaderLen) return unexpected(Ipv4Error::kBadHeaderLength);
  if (p.header_len() > bytes.size()) return unexpected(Ipv4Error::kTruncated);
  if (p.total_len() < p.header_len()) return unexpected(Ipv4Error::kBadTotalLength);
  if (p.total_len() > bytes.size()) return unexpected(Ipv4Error::kTruncated);
  return p;
}

Result<Ipv4Repr, Ipv4Error> Ipv4Repr::parse(std::span<const uint8_t> bytes, bool checksum_verified) {
  auto p = Ipv4Packet::parse(bytes);
  if (!p) return unexpected(p.error());
  if (!checksum_verified && !p->header_checksum_ok()) return unexpected(Ipv4Error::kBadChecksum);
  Ipv4Repr r;
  r.src = p->src();
  r.dst = p->dst();
  r.protocol = p->protocol();
  r.ttl = p->ttl();
  r.tos = p->tos();
  r.ident = p->ident();
  const uint16_t ff = p->flags_fragment();
  r.dont_fragment = ff & Ipv4Packet::kDontFragment;
  r.more_fragments = ff & Ipv4Packet::kMoreFragments;
  r.fragment_offset = static_cast<uint16_t>((ff & Ipv4Packet::kOffsetMask) * 8);
  r.header_len = static_cast<uint8_t>(p->header_len());
  r.payload_len = static_cast<uint16_t>(p->total_len() - p->header_len());
  return r;
}

void Ipv4Repr::emit(std::span<uint8_t> out, bool fill_checksum) const {
  uint8_t* h = out.data();
  h[0] = 0x45;
  h[1] = tos;
  store_be16(h + 2, static_cast<uint16_t>(20 + payload_len));
  store_be16(h + 4, ident);
  uint16_t ff = static_cast<uint16_t>(fragment_offset / 8);
  if (dont_fragment) ff |= Ipv4Packet::kDontFragment;
  if (more_fragments) ff |= Ipv4Packet::kMoreFragments;
  store_be16(h + 6, ff);
  h[8] = ttl;
  h[9] = protocol;
  store_be16(h + 10, 0);
  src.store(h + 12);
  dst.store(h + 16);
  if (fill_checksum) store_be16(h + 10, internet_checksum(out.first(20)));
}

}  // namespace ustack::ip
