#pragma once
// RFC 6528 initial sequence numbers: ISN = M + F(localip, localport, remoteip, remoteport, key),
// M a 4-microsecond clock (RFC 9293 §3.4.1), F a keyed hash (SipHash-2-4). Each connection's
// sequence space starts far from any other's, yet a reincarnation of one 4-tuple starts beyond
// where the old one could still be (for the 4.55 hours the clock takes to wrap).

#include <array>

#include "base/bytes.h"
#include "base/instant.h"
#include "base/ipv4_addr.h"
#include "base/rng.h"
#include "base/siphash.h"
#include "tcp/seq_num.h"

namespace ustack::tcp {

class IsnGenerator {
 public:
  /// The key comes from the stack's seeded random source: tests fix it, production draws it.
  explicit IsnGenerator(Rng& rng) : key_{rng.next(), rng.next()} {}

  SeqNum generate(Instant now, Ipv4Addr local, uint16_t local_port, Ipv4Addr remote, uint16_t remote_port) const {
    std::array<uint8_t, 12> tuple{};
    local.store(tuple.data());
    store_be16(tuple.data() + 4, local_port);
    remote.store(tuple.data() + 6);
    store_be16(tuple.data() + 10, remote_port);
    const auto f = static_cast<uint32_t>(siphash24(key_, tuple));
    const auto m = static_cast<uint32_t>(now.ns() / 4000);  // RFC 9293 §3.4.1: a 4 µs tick
    return SeqNum(m + f);
  }

 private:
  SipKey key_;
};

}  // namespace ustack::tcp
