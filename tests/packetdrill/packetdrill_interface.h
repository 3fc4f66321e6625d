#pragma once
// packetdrill's shared-object interface (its --so_filename mode), declared by us.
//
// packetdrill loads the object named by --so_filename, calls its packetdrill_interface_init() and
// from then on sends every socket call of the script, every packet it injects, every packet it
// sniffs and every reading of the clock through the function pointers filled in here.
//
// packetdrill is GPL-2.0, so its header is not copied into this MIT project: this declaration was
// written from reading `gtests/net/packetdrill/packetdrill.h` of google/packetdrill at commit
// 2c4001c4d6fc04a3bbd01d4b92be62717a37648a. The member order and the types are an ABI: they must
// stay exactly as packetdrill lays them out, and a newer packetdrill that changes them needs this
// file changed to match.

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

extern "C" {

struct packetdrill_interface {
  void* userdata;
  void (*free)(void* userdata);
  int (*socket)(void* userdata, int domain, int type, int protocol);
  int (*bind)(void* userdata, int sockfd, const struct sockaddr* addr, socklen_t addrlen);
  int (*listen)(void* userdata, int sockfd, int backlog);
  int (*accept)(void* userdata, int sockfd, struct sockaddr* addr, socklen_t* addrlen);
  int (*connect)(void* userdata, int sockfd, const struct sockaddr* addr, socklen_t addrlen);
  ssize_t (*read)(void* userdata, int fd, void* buf, size_t count);
  ssize_t (*readv)(void* userdata, int fd, const struct iovec* iov, int iovcnt);
  ssize_t (*recv)(void* userdata, int sockfd, void* buf, size_t len, int flags);
  ssize_t (*recvfrom)(void* userdata, int sockfd, void* buf, size_t len, int flags, struct sockaddr* src_addr,
                      socklen_t* addrlen);
  ssize_t (*recvmsg)(void* userdata, int sockfd, struct msghdr* msg, int flags);
  ssize_t (*write)(void* userdata, int fd, const void* buf, size_t count);
  ssize_t (*writev)(void* userdata, int fd, const struct iovec* iov, int iovcnt);
  ssize_t (*send)(void* userdata, int sockfd, const void* buf, size_t len, int flags);
  ssize_t (*sendto)(void* userdata, int sockfd, const void* buf, size_t len, int flags,
                    const struct sockaddr* dest_addr, socklen_t addrlen);
  ssize_t (*sendmsg)(void* userdata, int sockfd, const struct msghdr* msg, int flags);
  int (*fcntl)(void* userdata, int fd, int cmd, ...);
  int (*ioctl)(void* userdata, int fd, unsigned long request, ...);
  int (*close)(void* userdata, int fd);
  int (*shutdown)(void* userdata, int sockfd, int how);
  int (*getsockopt)(void* userdata, int sockfd, int level, int optname, void* optval, socklen_t* optlen);
  int (*setsockopt)(void* userdata, int sockfd, int level, int optname, const void* optval, socklen_t optlen);
  int (*poll)(void* userdata, struct pollfd* fds, nfds_t nfds, int timeout);
  /// An IP packet (no link header) for the stack under test to receive. 0, or -1 on error.
  int (*netdev_send)(void* userdata, const void* buf, size_t count);
  /// The next IP packet the stack sent: at most *count bytes into buf, *count set to its length
  /// (0: nothing came), *time_usecs to when it left. 0, or -1 on error (packetdrill then asks again).
  int (*netdev_receive)(void* userdata, void* buf, size_t* count, long long* time_usecs);
  int (*usleep)(void* userdata, useconds_t usec);
  int (*gettimeofday)(void* userdata, struct timeval* tv, struct timezone* tz);
  int (*epoll_create)(void* userdata, int size);
  int (*epoll_ctl)(void* userdata, int epfd, int op, int fd, struct epoll_event* event);
  int (*epoll_wait)(void* userdata, int epfd, struct epoll_event* events, int maxevents, int timeout);
  int (*pipe)(void* userdata, int pipefd[2]);
  int (*splice)(void* userdata, int fd_in, loff_t* off_in, int fd_out, loff_t* off_out, size_t len,
                unsigned int flags);
};

/// What the shared object exports: fills `ifc` (userdata included). `flags` is packetdrill's
/// --so_flags string (may be null or empty).
using packetdrill_interface_init_t = void (*)(const char* flags, struct packetdrill_interface* ifc);

}  // extern "C"
