#include "udp/udp_socket.h"

namespace ustack::udp {

// Linux's datagram_poll(): errors, shutdown and queued data; a UDP socket is always writable
// (the send buffer drains as soon as the frame is handed to the device).
uint32_t UdpSocket::poll_events() const {
  uint32_t ev = kPollOut | kPollWrNorm;
  if (pending_error) ev |= kPollErr;
  if (shut_rd) ev |= kPollRdHup | kPollIn | kPollRdNorm;
  if (shut_rd && shut_wr) ev |= kPollHup;
  if (!rx_queue.empty()) ev |= kPollIn | kPollRdNorm;
  return ev;
}

}  // namespace ustack::udp
