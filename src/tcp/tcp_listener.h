#pragma once
// A listening socket: its SYN queue (half-open connections in SYN-RECEIVED) and its accept queue
// (established connections accept() has not taken yet), both bounded as Linux bounds them.
// Owned by the API's socket; the layer finds it by local port.

#include <cstdint>
#include <deque>
#include <memory>

#include <absl/container/flat_hash_set.h>

#include "base/waitable.h"
#include "tcp/tcp_connection.h"

namespace ustack::tcp {

class TcpListener {
 public:
  /// `binding` (bound already) belongs to the socket and outlives the listener.
  TcpListener(PortBinding& binding, int backlog, const SocketOptions& options)
      : binding_(&binding), options_(options) {
    set_backlog(backlog);
  }
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  /// listen(2)'s backlog as Linux takes it: at most SOMAXCONN (4096); a negative value is that too.
  void set_backlog(int backlog) {
    backlog_ = backlog < 0 || backlog > kSomaxconn ? kSomaxconn : static_cast<size_t>(backlog);
  }
  size_t backlog() const { return backlog_; }
  /// Linux's sk_acceptq_is_full(): the queue holds backlog + 1 connections.
  bool accept_queue_full() const { return accept_queue_.size() > backlog_; }
  size_t accept_queue_size() const { return accept_queue_.size(); }
  size_t syn_queue_size() const { return half_open_.size(); }

  /// The oldest established connection, or null.
  std::shared_ptr<TcpConnection> accept() {
    if (accept_queue_.empty()) return nullptr;
    auto c = std::move(accept_queue_.front());
    accept_queue_.pop_front();
    c->detach_listener();
    return c;
  }
  uint32_t poll_events() const { return accept_queue_.empty() ? 0 : kPollIn | kPollRdNorm; }
  void set_observer(ReadinessObserver* o) { observer_ = o; }
  PortBinding& binding() { return *binding_; }
  const PortBinding& binding() const { return *binding_; }
  const SocketOptions& options() const { return options_; }
  SocketOptions& options() { return options_; }

 private:
  friend class TcpLayer;
  static constexpr int kSomaxconn = 4096;  // net.core.somaxconn
  PortBinding* binding_;
  SocketOptions options_;
  size_t backlog_ = 0;
  absl::flat_hash_set<TcpConnection*> half_open_;
  std::deque<std::shared_ptr<TcpConnection>> accept_queue_;
  ReadinessObserver* observer_ = nullptr;
};

}  // namespace ustack::tcp
