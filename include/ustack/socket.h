#pragma once
/// The socket calls, with POSIX signatures, return values and errno values.
///
/// Descriptors of the ustack backend are numbers >= kUserFdBase, a range Linux never hands out
/// (init() checks RLIMIT_NOFILE), so every call knows at once which backend a descriptor belongs
/// to: kernel descriptors (files, AF_UNIX sockets, and everything on the kernel backend) are
/// forwarded to the system call; ustack descriptors are served by the engine.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

namespace ustack {

inline constexpr int kUserFdBase = 1 << 30;
inline bool is_user_fd(int fd) { return fd >= kUserFdBase; }

/// AF_INET SOCK_DGRAM and SOCK_STREAM on the ustack backend: an ustack UDP or TCP socket.
/// AF_INET6: -1/EAFNOSUPPORT. AF_UNIX and other families: forwarded to the kernel on either
/// backend. On ustack run to completion, a call made while another thread is inside a call on
/// the same engine runs on that thread (every call here; see ustack.h, InitOptions::threaded).
int socket(int domain, int type, int protocol);
int bind(int fd, const sockaddr* addr, socklen_t addrlen);
int connect(int fd, const sockaddr* addr, socklen_t addrlen);
int listen(int fd, int backlog);
int accept(int fd, sockaddr* addr, socklen_t* addrlen);
int accept4(int fd, sockaddr* addr, socklen_t* addrlen, int flags);
ssize_t send(int fd, const void* buf, size_t len, int flags);
ssize_t recv(int fd, void* buf, size_t len, int flags);
ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* dest, socklen_t addrlen);
ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* src, socklen_t* addrlen);
ssize_t read(int fd, void* buf, size_t count);
ssize_t write(int fd, const void* buf, size_t count);
int close(int fd);
int shutdown(int fd, int how);
int setsockopt(int fd, int level, int optname, const void* optval, socklen_t optlen);
int getsockopt(int fd, int level, int optname, void* optval, socklen_t* optlen);
int getsockname(int fd, sockaddr* addr, socklen_t* addrlen);
int getpeername(int fd, sockaddr* addr, socklen_t* addrlen);

/// Received bytes that recv_zc() lends: read them in place at `data`, then hand the buffer back
/// with release_buffer(). Until then it holds the device buffer the bytes arrived in (on DPDK an
/// mbuf of the port's pool: a program that keeps many starves the receive path).
struct RecvBuffer {
  const void* data = nullptr;
  size_t size = 0;
  void* owner = nullptr;  ///< what release_buffer() frees
};
/// recv() without the copy, on a TCP socket: lends up to `max` buffers of the bytes received, in
/// order, each whole as it waits in the socket (a segment's payload, or small segments gathered).
/// Returns how many (at least 1), 0 at end of stream, or -1 with errno as recv() would set it
/// (it blocks, times out and is interrupted the same way; MSG_DONTWAIT is the only flag). UDP and
/// epoll descriptors: EOPNOTSUPP. On a kernel socket (or the kernel backend) it copies once into
/// a buffer of its own, so one program runs on both.
int recv_zc(int fd, RecvBuffer* out, int max, int flags);
/// Gives back a buffer recv_zc() lent; any thread may, also after close(), but before
/// ustack::shutdown() (which takes the device and its buffer pool down). An empty RecvBuffer is
/// left alone; `buffer` is emptied.
void release_buffer(RecvBuffer& buffer);
/// A buffer to send without a copy: get_send_buffer() lends it, empty; write up to `capacity`
/// bytes at `data`, set `size`, and queue it with send_zc(), which takes it whole. On ustack it is
/// a device buffer with room for the headers in front, sized for one segment, and the
/// retransmission queue sends it as it is: the bytes are never copied.
struct SendBuffer {
  void* data = nullptr;
  size_t capacity = 0;
  size_t size = 0;        ///< the caller's: bytes written at `data`
  void* owner = nullptr;  ///< what send_zc() takes and release_send_buffer() frees
};
/// Lends an empty SendBuffer for the connected TCP socket `fd`: 0, or -1 with errno ENOTCONN,
/// ENOBUFS (no buffer to be had), EOPNOTSUPP (UDP, epoll), EBADF. On a kernel socket (or the
/// kernel backend) a 64 KiB buffer of the heap, which send_zc() copies once, so one program
/// runs on both.
int get_send_buffer(int fd, SendBuffer* out);
/// send() without the copy: queues up to `count` (at most 64) filled buffers in order, each whole
/// (a buffer is never split between calls on ustack). Returns how many it took (at least 1), or
/// -1 with errno as send() would set it: it blocks until all are queued, times out, is
/// interrupted and raises SIGPIPE the same way; MSG_DONTWAIT and MSG_NOSIGNAL are its flags.
/// Taken buffers are emptied (owner null); the rest stay the caller's. EINVAL: a buffer with
/// `size` 0 or above `capacity`. On a kernel socket a buffer send(2) took in part keeps the rest,
/// moved to its front.
ssize_t send_zc(int fd, SendBuffer* buffers, int count, int flags);
/// Frees a SendBuffer that was not sent (any thread, before ustack::shutdown()); an empty one is
/// left alone. `buffer` is emptied.
void release_send_buffer(SendBuffer& buffer);
/// F_GETFL, F_SETFL (O_NONBLOCK), F_GETFD, F_SETFD, F_DUPFD, F_DUPFD_CLOEXEC on ustack
/// descriptors; anything on kernel ones.
int fcntl(int fd, int cmd, ...);
/// A second descriptor for the same open socket (or epoll instance), the lowest free one, without
/// FD_CLOEXEC. The socket closes when its last descriptor does; shutdown() acts on the socket, so
/// on every descriptor at once. Kernel descriptors: dup(2).
int dup(int fd);
/// sendfile(2): up to `count` bytes of the kernel file `in_fd` from `*offset` (then `*offset` is
/// advanced by what was sent and the file position is left alone) or from the file position (then
/// it is advanced), into the socket `out_fd`. Returns the bytes queued, which may be fewer than
/// asked (a non-blocking socket with little room; end of file); -1 with errno as Linux's.
ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count);

}  // namespace ustack
