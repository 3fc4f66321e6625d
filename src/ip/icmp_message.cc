#include "ip/icmp_message.h"

#include <cstring>

#include "base/result.h"

namespace ustack::ip {

Result<IcmpRepr, IcmpError> IcmpRepr::parse(std::span<const uint8_t> bytes) {
  auto m = IcmpMessage::parse(bytes);
  if (!m) return unexpected(IcmpError::kTruncated);
  if (!m->checksum_ok()) return unexpected(IcmpError::kBadChecksum);
  return IcmpRepr{m->type(), m->code(), m->rest_of_header(), m->data()};
}

void IcmpRepr::emit(std::span<uint8_t> out) const {
  out[0] = type;
  out[1] = code;
  store_be16(out.data() + 2, 0);
  store_be32(out.data() + 4, rest_of_header);
  if (!data.empty()) std::memmove(out.data() + IcmpMessage::kHeaderLen, data.data(), data.size());
  store_be16(out.data() + 2, internet_checksum(out.first(len())));
}

}  // namespace ustack::ip
