#pragma once
// UDP (RFC 768): demultiplexing to sockets, ephemeral ports (RFC 6056), send and receive. Errors
// are Linux's errno values, so the API layer can hand them straight to the application.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "base/flow_hash.h"
#include "base/instant.h"
#include "base/packet.h"
#include "base/result.h"
#include "base/rng.h"
#include "base/stats.h"
#include "ip/ip_output.h"
#include "ip/ipv4_packet.h"
#include "udp/udp_socket.h"

namespace ustack::udp {

struct UdpConfig {
  uint16_t ephemeral_low = 32768;  ///< Linux's ip_local_port_range
  uint16_t ephemeral_high = 60999;
};

/// Which local addresses a socket may bind: the interface's, loopback, or the wildcard.
class LocalAddresses {
 public:
  virtual bool is_local(Ipv4Addr addr) const = 0;

 protected:
  ~LocalAddresses() = default;
};

enum class Delivery { kDelivered, kNoSocket, kDropped };

/// What the stack knows about a datagram that the UDP layer cannot see for itself.
struct ReceiveHints {
  bool broadcast = false;               ///< sent to a broadcast address: every matching socket gets it
  bool device_buffers_scarce = false;   ///< copy the payload out rather than hold a device buffer
};

class UdpLayer {
 public:
  UdpLayer(const UdpConfig& config, const EngineShare& engine, UdpStats& stats, Rng& rng, ip::IpOutput& out,
           const LocalAddresses& local);

  /// bind(2): 0 or EINVAL (already bound), EADDRNOTAVAIL (not our address), EADDRINUSE.
  int bind(UdpSocket& s, Endpoint local);
  /// connect(2) on a datagram socket: sets the default peer, binds if unbound, picks the source
  /// address. 0 or ENETUNREACH, EACCES (broadcast without SO_BROADCAST), EAGAIN (no port).
  int connect(UdpSocket& s, Endpoint remote);
  /// connect(AF_UNSPEC): forgets the peer.
  void disconnect(UdpSocket& s);
  /// Leaves the demux table (close).
  void unbind(UdpSocket& s);
  /// sendto(2): bytes sent, or an errno. `dst` empty: the connected peer.
  Result<size_t, int> send(Instant now, UdpSocket& s, std::span<const uint8_t> data, std::optional<Endpoint> dst);

  /// A datagram from IP; `packet` starts at the IP header. Moves from `packet` only when it is
  /// queued whole (kNoSocket always leaves it, for the ICMP error to quote).
  Delivery receive(Instant now, const ip::Ipv4Repr& ip, Packet& packet, ReceiveHints hints = {});
  /// An ICMP error (or a failed resolution) about a datagram we sent from `local` to `remote`:
  /// connected sockets take `err` as their pending error, like Linux without IP_RECVERR.
  bool deliver_error(Endpoint local, Endpoint remote, int err);

  size_t bound_sockets() const;

 private:
  UdpSocket* lookup(Ipv4Addr dst, uint16_t dst_port, Endpoint from);
  bool conflicts(const UdpSocket& s, Endpoint local) const;
  /// With `remote` (connect, from `source`): a port whose flow hashes to this engine.
  int bind_ephemeral(UdpSocket& s, Ipv4Addr addr, Ipv4Addr source = Ipv4Addr(),
                     std::optional<Endpoint> remote = std::nullopt);
  void link(UdpSocket& s);
  bool enqueue(UdpSocket& s, Packet payload, Endpoint from);

  UdpConfig config_;
  /// Records `port` as this engine's in the shared PortDirectory (several engines); false when
  /// another engine's socket holds it and may not share.
  bool claim(UdpSocket& s, uint16_t port, bool shareable);

  EngineShare engine_;
  UdpStats& stats_;
  Rng& rng_;
  ip::IpOutput& out_;
  const LocalAddresses& local_;
  // Sockets by local port; few per port (several only with SO_REUSEADDR/PORT or distinct addresses).
  absl::flat_hash_map<uint16_t, std::vector<UdpSocket*>> by_port_;
};

}  // namespace ustack::udp
