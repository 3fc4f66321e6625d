#include "udp/datagram.h"

#include "base/checksum.h"

namespace ustack::udp {

Result<UdpRepr, UdpError> UdpRepr::parse(std::span<const uint8_t> bytes, Ipv4Addr src, Ipv4Addr dst,
                                         bool checksum_verified) {
  auto d = Datagram::parse(bytes);
  if (!d) return unexpected(d.error());
  if (!checksum_verified && d->checksum() != 0) {
    uint32_t sum = pseudo_header_sum(src, dst, 17, d->length());
    if (checksum_finish(checksum_add(sum, d->bytes())) != 0) return unexpected(UdpError::kBadChecksum);
  }
  return UdpRepr{d->src_port(), d->dst_port(), d->payload()};
}

void UdpRepr::emit_header(std::span<uint8_t> out, uint16_t src_port, uint16_t dst_port, Ipv4Addr src,
                          Ipv4Addr dst, bool fill_checksum) {
  const auto length = static_cast<uint16_t>(out.size());
  store_be16(out.data() + 0, src_port);
  store_be16(out.data() + 2, dst_port);
  store_be16(out.data() + 4, length);
  if (!fill_checksum) {
    store_be16(out.data() + 6, pseudo_header_partial(src, dst, 17, length));
    return;
  }
  store_be16(out.data() + 6, 0);
  uint16_t sum = checksum_finish(checksum_add(pseudo_header_sum(src, dst, 17, length), out));
  // RFC 768: a computed zero is sent as all ones; zero on the wire means "no checksum".
  store_be16(out.data() + 6, sum == 0 ? 0xffff : sum);
}

}  // namespace ustack::udp
