#pragma once
// What the ustack backend's socket calls share: errno plumbing, sockaddr decoding as Linux's inet
// code does it, socket options' value conventions and timeouts.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>

#include "api/user_backend.h"
#include "base/instant.h"
#include "udp/udp_socket.h"

namespace ustack::api {

inline int fail(int err) {
  errno = err;
  return -1;
}

// Decodes a caller's sockaddr the way Linux's inet code does: too short is EINVAL, another
// family EAFNOSUPPORT. `unspec_ok`: AF_UNSPEC counts as AF_INET (udp_sendmsg's compatibility rule).
inline int decode_inet(const sockaddr* addr, socklen_t len, udp::Endpoint* out, bool unspec_ok = false) {
  if (!addr || len < static_cast<socklen_t>(sizeof(sockaddr_in))) return EINVAL;
  sockaddr_in sin;
  std::memcpy(&sin, addr, sizeof sin);
  if (sin.sin_family != AF_INET && !(unspec_ok && sin.sin_family == AF_UNSPEC)) return EAFNOSUPPORT;
  *out = udp::Endpoint{Ipv4Addr(ntohl(sin.sin_addr.s_addr)), ntohs(sin.sin_port)};
  return 0;
}

// Writes an address back, truncated to the caller's buffer; *len becomes the full size.
inline void encode_inet(udp::Endpoint ep, sockaddr* addr, socklen_t* len) {
  if (!addr || !len) return;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(ep.port);
  sin.sin_addr.s_addr = htonl(ep.addr.value());
  std::memcpy(addr, &sin, std::min<size_t>(*len, sizeof sin));
  *len = sizeof sin;
}

inline Instant deadline_after(Instant now, int timeout_ms) {
  if (timeout_ms < 0) return Instant::max();
  return now + std::chrono::milliseconds(timeout_ms);
}

template <typename T>
inline int get_option(void* val, socklen_t* len, T value) {
  if (!val || !len) return fail(EFAULT);
  if (static_cast<int>(*len) < 0) return fail(EINVAL);
  std::memcpy(val, &value, std::min<size_t>(*len, sizeof value));
  *len = static_cast<socklen_t>(std::min<size_t>(*len, sizeof value));
  return 0;
}

// Linux keeps socket timeouts in jiffies and takes a tv_sec of LONG_MAX / HZ - 1 or more as
// "forever" (sock_set_timeout). HZ is the kernel's CONFIG_HZ; 250 is Debian's. Below that bound
// Linux rounds the microseconds up to whole jiffies (so {0, 1} reads back as {0, 4000} at
// HZ=250); we keep and read back the microseconds exactly.
constexpr time_t kLinuxHz = 250;
constexpr time_t kForeverSeconds = std::numeric_limits<long>::max() / kLinuxHz - 1;

// setsockopt(SO_RCVTIMEO/SO_SNDTIMEO) like Linux's sock_set_timeout: tv_usec outside [0, 1e6) is
// EDOM; a negative tv_sec means "do not wait" (timeout 0, read back as {0, 0}); {0, 0} and
// anything from kForeverSeconds on mean "forever" (also read back as {0, 0}).
inline int parse_timeout(const timeval& tv, SocketTimeout* out) {
  if (tv.tv_usec < 0 || tv.tv_usec >= 1000000) return EDOM;
  if (tv.tv_sec < 0) {
    *out = SocketTimeout{false, timeval{0, 0}};
  } else if ((tv.tv_sec == 0 && tv.tv_usec == 0) || tv.tv_sec >= kForeverSeconds) {
    *out = SocketTimeout{};
  } else {
    *out = SocketTimeout{false, tv};
  }
  return 0;
}

inline timeval timeout_timeval(const SocketTimeout& t) { return t.forever ? timeval{0, 0} : t.tv; }

// When a wait of `t` begun at `now` ends; Instant::max() for forever and for timeouts too long
// for the clock (some 292 years of nanoseconds), never an overflow.
inline Instant timeout_deadline(Instant now, const SocketTimeout& t) {
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1'000'000'000 - 1;
  if (t.forever || t.tv.tv_sec >= kMaxSeconds) return Instant::max();
  return now + (std::chrono::seconds(t.tv.tv_sec) + std::chrono::microseconds(t.tv.tv_usec));  // saturates
}


}  // namespace ustack::api
