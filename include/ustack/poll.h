#pragma once
/// poll() and select() over ustack and kernel descriptors, with POSIX semantics on both backends.
///
/// A POSIX fd_set holds descriptors below FD_SETSIZE (1024) and ustack's start at 2^30
/// (kUserFdBase), so select() takes a ustack::FdSet: a set of up to FD_SETSIZE kernel descriptors
/// and FD_SETSIZE ustack descriptors. On the kernel backend it is a plain fd_set inside.

#include <poll.h>
#include <sys/select.h>
#include <sys/time.h>

#include <cstdint>

namespace ustack {

/// poll(2). On the ustack backend every ustack descriptor reports its readiness like Linux's;
/// kernel descriptors in the same call are polled by the kernel. Waits sleep, they do not spin
/// the caller (threaded mode) or run the engine (inline mode), as epoll_wait does.
int poll(pollfd* fds, nfds_t nfds, int timeout_ms);

/// The descriptor set of ustack::select(): FD_SETSIZE kernel descriptors (0..1023) and FD_SETSIZE
/// ustack descriptors (kUserFdBase..kUserFdBase+1023).
class FdSet {
 public:
  FdSet() { zero(); }
  void zero();
  /// False (and nothing set) for a descriptor outside both ranges, where FD_SET would overflow.
  bool set(int fd);
  void clear(int fd);
  bool is_set(int fd) const;

 private:
  friend int select(int, FdSet*, FdSet*, FdSet*, timeval*);
  fd_set kernel_;
  uint64_t user_[FD_SETSIZE / 64];
};

/// select(2) over FdSets: `nfds` is the highest descriptor + 1, as in POSIX (so above kUserFdBase
/// when ustack descriptors are in the sets). Returns the number of descriptors ready, with the
/// sets reduced to them; on timeout 0; -1 with errno (EBADF, EINVAL for a negative nfds or
/// timeout, EINTR). `timeout` is updated to the time left, as Linux does; null waits forever.
int select(int nfds, FdSet* readfds, FdSet* writefds, FdSet* exceptfds, timeval* timeout);

}  // namespace ustack
