#pragma once
// TCP's knobs, one runtime struct (part of StackConfig). Defaults are Linux's unless a comment
// says why not.

#include <cstddef>
#include <cstdint>

#include "base/instant.h"
#include "tcp/congestion_control.h"
#include "tcp/rtt_estimator.h"

namespace ustack::tcp {

struct TcpConfig {
  RtoConfig rto;
  CongestionAlgorithm congestion = CongestionAlgorithm::kNewReno;
  uint32_t initial_cwnd_segments = 10;  ///< RFC 6928, Linux's TCP_INIT_CWND
  int syn_retries = 6;                  ///< net.ipv4.tcp_syn_retries: ETIMEDOUT after 127 s
  int synack_retries = 5;               ///< net.ipv4.tcp_synack_retries
  int retries2 = 15;                    ///< net.ipv4.tcp_retries2: RTO expiries before ETIMEDOUT
  Duration time_wait = 60s;             ///< 2 * MSL (Linux's TCP_TIMEWAIT_LEN)
  size_t max_time_wait = 16384;         ///< TIME-WAIT entries kept; the oldest goes first beyond
  Duration fin_wait2_timeout = 60s;     ///< net.ipv4.tcp_fin_timeout, for orphaned connections
  Duration delayed_ack = 40ms;          ///< Linux's TCP_DELACK_MIN; RFC 1122 allows up to 500 ms
  uint32_t quick_acks = 16;             ///< segments ACKed at once after idle (Linux's quickack mode)
  Duration keepalive_idle = 7200s;      ///< net.ipv4.tcp_keepalive_time
  Duration keepalive_interval = 75s;    ///< net.ipv4.tcp_keepalive_intvl
  int keepalive_probes = 9;             ///< net.ipv4.tcp_keepalive_probes
  size_t rcvbuf = 131072;               ///< net.ipv4.tcp_rmem[1]; the window is half of it
  /// Linux starts at tcp_wmem[1] = 16 KiB and grows the buffer as the window does; we do not
  /// autotune, so start where a bulk sender on a LAN needs to be.
  size_t sndbuf = 262144;
  size_t max_buffer = 6 * 1024 * 1024;  ///< net.ipv4.tcp_rmem[2]: sets the window scale we offer
  size_t max_out_of_order = 256;        ///< out-of-order pieces kept per connection
  size_t max_syn_backlog = 1024;        ///< half-open connections per listener, at least
  uint32_t challenge_acks_per_s = 1000; ///< net.ipv4.tcp_challenge_ack_limit (RFC 5961 §7)
  Duration invalid_ack_interval = 500ms;///< net.ipv4.tcp_invalid_ratelimit: duplicate ACKs for
                                        ///< out-of-window pure ACKs, per connection
  uint16_t ephemeral_low = 32768;       ///< net.ipv4.ip_local_port_range
  uint16_t ephemeral_high = 60999;
};

}  // namespace ustack::tcp
