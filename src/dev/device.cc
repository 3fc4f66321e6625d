#include "dev/device.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cerrno>

namespace ustack::dev {
namespace {

// True when a signal that `mask` lets in is pending and has a handler: it runs as soon as the
// thread's mask is back, and Linux would have ended the wait with EINTR.
bool handled_signal_pending(const sigset_t& mask) {
  sigset_t pending;
  if (::sigpending(&pending) != 0) return false;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sigismember(&pending, sig) != 1 || sigismember(&mask, sig) == 1) continue;
    struct sigaction sa {};
    if (::sigaction(sig, nullptr, &sa) != 0) continue;
    if ((sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL)) return true;
  }
  return false;
}

}  // namespace

SleepEnd sleep_interruptibly(Duration max, int fd, int also_fd) {
  if (max < Duration::zero()) max = Duration::zero();
  const int64_t ns = max.count();
  const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  sigset_t all, mask;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &mask);  // `mask`: the thread's own, let in during ppoll only
  pollfd fds[2];
  nfds_t nfds = 0;
  for (int f : {fd, also_fd}) {
    if (f >= 0) fds[nfds++] = pollfd{f, POLLIN, 0};
  }
  const int n = ::ppoll(nfds > 0 ? fds : nullptr, nfds, &ts, &mask);
  const bool interrupted = (n < 0 && errno == EINTR) || handled_signal_pending(mask);
  ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);  // a pending handler runs here
  if (interrupted) return SleepEnd::kSignal;
  return n > 0 ? SleepEnd::kReadable : SleepEnd::kTimedOut;
}

bool Device::wait_rx(Duration max) {
  if (max <= Duration::zero()) return false;
  return sleep_interruptibly(max, doorbell_) == SleepEnd::kSignal;
}

}  // namespace ustack::dev
