#pragma once
// One UDP socket's state: addresses, options, the receive queue. The UdpLayer changes it; the API
// layer reads it. Owned by the API layer's descriptor table.

#include <cstdint>
#include <deque>
#include <optional>

#include "base/ipv4_addr.h"
#include "base/packet.h"
#include "base/waitable.h"

namespace ustack::udp {

struct Endpoint {
  Ipv4Addr addr;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

/// Linux's defaults (net.core.rmem_default / wmem_default) and the SO_RCVBUF floor.
inline constexpr size_t kDefaultRcvbuf = 212992;
inline constexpr size_t kDefaultSndbuf = 212992;
inline constexpr size_t kMinRcvbuf = 2304;
inline constexpr size_t kMinSndbuf = 4608;
inline constexpr size_t kMaxBufOption = 212992;  // net.core.rmem_max / wmem_max
/// What one queued datagram costs against SO_RCVBUF beyond the buffer holding it (Linux charges
/// the skb's truesize: buffer plus bookkeeping). Charging the whole buffer, not the payload, keeps
/// a flood of tiny datagrams from pinning more buffers than SO_RCVBUF allows.
inline constexpr size_t kDatagramOverhead = 256;

class UdpSocket final : public Waitable {
 public:
  struct Received {
    Packet payload;  // data() is the first payload byte, size() the payload length
    Endpoint from;
    size_t charge = 0;  // what it counts against rcvbuf
  };

  uint32_t poll_events() const override;

  bool bound() const { return local.port != 0; }
  bool connected() const { return remote.has_value(); }
  /// Takes the pending error (SO_ERROR semantics: reading clears it).
  int take_error() { return std::exchange(pending_error, 0); }
  /// Removes the oldest datagram (after recv copied it out) and gives back its charge.
  void pop_front() {
    rx_charged -= rx_queue.front().charge;
    rx_queue.pop_front();
  }
  /// Tell waiters readiness may have changed (after any change the layer or API makes).
  void changed(uint32_t events) { notify(events); }

  Endpoint local;
  std::optional<Endpoint> remote;
  bool user_bound_addr = false;  // bind() chose the address (connect() must not replace it)
  bool user_bound_port = false;  // bind() chose the port (disconnect keeps it)
  bool claimed = false;            // in the engines' PortDirectory (several engines)
  bool claimed_shareable = false;  // claimed with SO_REUSEADDR or SO_REUSEPORT
  bool reuse_addr = false;
  bool reuse_port = false;
  bool broadcast = false;
  size_t rcvbuf = kDefaultRcvbuf;
  size_t sndbuf = kDefaultSndbuf;
  int pending_error = 0;
  bool shut_rd = false;
  bool shut_wr = false;
  std::deque<Received> rx_queue;
  size_t rx_charged = 0;  // bytes charged against rcvbuf
  uint64_t rx_dropped = 0;
};

}  // namespace ustack::udp
