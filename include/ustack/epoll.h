#pragma once
/// epoll with Linux's signatures and semantics: level- and edge-triggered, EPOLLONESHOT,
/// EPOLLIN/OUT/ERR/HUP/RDHUP. On the ustack backend, epoll_wait() is where the engine runs:
/// it polls the device, runs the stack and timers, and returns when something is ready or the
/// timeout passes (sleeping, not spinning, once idle; see README, "The engine loop").

#include <sys/epoll.h>

namespace ustack {

/// ustack backend: an ustack epoll instance (it can watch ustack descriptors only; a kernel
/// descriptor is refused with EPERM in this release). Kernel backend: epoll_create1(2).
int epoll_create1(int flags);
int epoll_ctl(int epfd, int op, int fd, epoll_event* event);
int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout_ms);

}  // namespace ustack
