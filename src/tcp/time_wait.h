#pragma once
// What is left of a connection in TIME-WAIT once its user has closed it (RFC 9293 §3.6): the
// 4-tuple and the port held for 2 MSL, and enough state to acknowledge the peer's retransmitted
// FIN, answer old duplicates (PAWS, the window check, RFC 5961's challenge ACKs), accept a RST
// and let a new SYN start a new incarnation. Like Linux's inet_timewait_sock, it replaces the
// whole TCB: a busy server's thousands of TIME-WAIT connections cost this each, not a TCB.
// TcpLayer keeps them in a hash map of their own and in expiry order (time_wait.cc).

#include <cstdint>

#include "base/age_list.h"
#include "base/instant.h"
#include "tcp/seq_num.h"
#include "tcp/tcp_connection.h"

namespace ustack::tcp {

struct TimeWaitEntry : AgeList<TimeWaitEntry>::Hook {  // the hook: expiry order, oldest first
  FourTuple tuple;
  PortBinding binding;       // registered in the layer's port table while the entry lives
  Instant expires;           // 2 MSL after the last FIN (a retransmitted FIN restarts it)
  Instant ts_recent_stamp;   // PAWS's 24-day rule
  Instant last_invalid_ack;  // tcp_invalid_ratelimit, as in the TCB
  SeqNum snd_nxt;            // our FIN acknowledged: every ACK we send carries this
  SeqNum rcv_nxt;            // past the peer's FIN
  uint32_t rcv_wnd = 0;      // the window we last advertised, for the sequence check
  uint32_t max_snd_wnd = 0;  // RFC 5961 §5.2: older ACKs get a challenge ACK
  uint32_t ts_recent = 0;
  uint32_t ts_offset = 0;
  uint16_t window_field = 0; // as our last segment carried it
  bool ts_enabled = false;
};

}  // namespace ustack::tcp
