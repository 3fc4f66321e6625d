// http-responder: a tiny HTTP/1.0 and HTTP/1.1 server, one request per connection. One thread,
// one level-triggered epoll loop, non-blocking sockets; the same source on the kernel stack and on
// ustack (--stack), so that curl on Linux can fetch a page from ustack.
//
// `GET /size/N` is answered with an N-byte body, any other `GET /PATH` with --body-size bytes;
// byte i of a body is (i * 131 + 7) mod 256 (app::body_byte), which `http-fetch --expect-pattern`
// checks. Bodies are streamed from one shared copy of the pattern, never held per connection.
// Every response says `Connection: close`; once it is all sent the server shuts down its side and
// closes when the client has closed too (or after kLinger), so that a client's unread request
// bytes cannot turn the close into a reset that destroys the end of the response.

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"

namespace {

constexpr const char* kProgram = "http-responder";
using Clock = std::chrono::steady_clock;
constexpr size_t kMaxRequestHead = 8 * 1024;       // a longer request line and headers get 400
constexpr uint64_t kMaxBody = uint64_t{1} << 40;   // the largest /size/N
constexpr auto kRequestTimeout = std::chrono::seconds(30);  // to send the whole request head
constexpr auto kLinger = std::chrono::seconds(5);           // to close after our response
constexpr int kMaxErrorsShown = 10;

enum class Phase {
  kRequest,   // reading the request head
  kResponse,  // sending the head, then the body
  kLinger,    // all sent and our side shut down: waiting for the client's close
};

struct Conn {
  int fd = -1;
  sockaddr_in peer{};
  Phase phase = Phase::kRequest;
  std::string request;   // the request head read so far
  std::string head;      // the response head; [head_sent, size) still to send
  size_t head_sent = 0;
  uint64_t body_size = 0;  // the response body; [body_sent, body_size) still to send
  uint64_t body_sent = 0;
  Clock::time_point deadline{};  // of the current phase
  uint32_t watching = 0;
};

struct Request {
  bool ok = false;
  bool http10 = false;
  uint64_t body_size = 0;
};

// Parses "GET /path HTTP/1.x" (the first line of `head`). /size/N asks for N bytes.
Request parse_request(std::string_view head, uint64_t default_size) {
  Request r;
  std::string_view line = head.substr(0, head.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return r;
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (method != "GET" || target.empty() || target[0] != '/' || target.find(' ') != std::string_view::npos) return r;
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return r;
  r.http10 = version == "HTTP/1.0";
  r.body_size = default_size;
  std::string_view path = target.substr(0, target.find('?'));
  if (path.starts_with("/size/")) {
    std::string_view digits = path.substr(6);
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || n > kMaxBody) return r;
    r.body_size = n;
  }
  r.ok = true;
  return r;
}

class Responder {
 public:
  Responder(int ep, int listen_fd, uint64_t listener_tag, uint64_t body_size)
      : ep_(ep),
        listen_fd_(listen_fd),
        body_size_(body_size),
        listener_pause_(kProgram, ep, listen_fd, listener_tag, EPOLLIN) {}

  void accept_all() {
    bool drained = app::accept_nonblocking(kProgram, listen_fd_, [&](int fd, const sockaddr_in& peer) {
      ++accepted_;
      Conn c;
      c.fd = fd;
      c.peer = peer;
      c.deadline = Clock::now() + kRequestTimeout;
      c.watching = EPOLLIN | EPOLLRDHUP;
      uint64_t tag = conns_.insert(std::move(c));
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = tag;
      if (ustack::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) fail(tag, *conns_.find(tag), errno, "epoll_ctl");
    });
    if (!drained) {
      ++errors_;
      listener_pause_.pause();
    }
  }

  void handle(uint64_t tag, uint32_t events) {
    Conn* c = conns_.find(tag);
    if (c == nullptr) return;  // closed earlier in this batch
    if (events & EPOLLERR) {
      int err = app::socket_error(c->fd);
      return fail(tag, *c, err ? err : EIO, "socket error");
    }
    switch (c->phase) {
      case Phase::kRequest:
        if (!read_request(tag, *c)) return;
        if (c->phase != Phase::kResponse) return;
        [[fallthrough]];
      case Phase::kResponse:
        if (!send_response(tag, *c)) return;
        break;
      case Phase::kLinger:
        if (!drain(tag, *c)) return;
        break;
    }
    update(tag, *c);
  }

  /// Once a second is enough: closes connections past their phase's deadline, and watches the
  /// listener again after a pause.
  void tick(Clock::time_point now) {
    listener_pause_.resume_if_due(now);
    if (now < next_sweep_) return;
    next_sweep_ = now + std::chrono::seconds(1);
    conns_.for_each([&](uint64_t tag, Conn& c) {
      if (now < c.deadline) return;
      if (c.phase == Phase::kLinger) return close_conn(tag, c);  // the client keeps its side open: fine
      fail(tag, c, ETIMEDOUT, c.phase == Phase::kRequest ? "no complete request" : "response");
    });
  }

  void close_all() {
    conns_.for_each([&](uint64_t tag, Conn& c) { close_conn(tag, c); });
  }

  void print_summary() const {
    std::printf("%s: %llu connections accepted, %llu responses (%llu bad requests), %llu body bytes sent, %llu errors\n",
                kProgram, static_cast<unsigned long long>(accepted_), static_cast<unsigned long long>(responses_),
                static_cast<unsigned long long>(bad_requests_), static_cast<unsigned long long>(body_bytes_),
                static_cast<unsigned long long>(errors_));
    std::fflush(stdout);
  }

 private:
  // Reads until the request head is complete, then prepares the response. False if closed.
  bool read_request(uint64_t tag, Conn& c) {
    char buf[4096];
    for (;;) {
      ssize_t n = ustack::recv(c.fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        fail(tag, c, errno, "recv");
        return false;
      }
      if (n == 0) {  // closed before asking anything (a port probe, or a client giving up)
        close_conn(tag, c);
        return false;
      }
      size_t scan_from = c.request.size() < 3 ? 0 : c.request.size() - 3;
      c.request.append(buf, static_cast<size_t>(n));
      size_t end = c.request.find("\r\n\r\n", scan_from);
      if (end == std::string::npos) end = c.request.find("\n\n", scan_from);  // bare LF lines, as from nc
      if (end != std::string::npos && end <= kMaxRequestHead) return respond(c, parse_request(c.request, body_size_));
      if (end != std::string::npos || c.request.size() > kMaxRequestHead) return respond(c, Request{});  // too long
    }
  }

  bool respond(Conn& c, const Request& r) {
    const char* version = r.http10 ? "HTTP/1.0" : "HTTP/1.1";
    if (r.ok) {
      c.body_size = r.body_size;
      c.head = std::string(version) + " 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
               std::to_string(r.body_size) + "\r\nConnection: close\r\n\r\n";
    } else {
      static constexpr std::string_view kBody = "bad request: this server answers GET /PATH and GET /size/N only\n";
      ++bad_requests_;
      c.body_size = 0;
      c.head = std::string(version) + " 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: " +
               std::to_string(kBody.size()) + "\r\nConnection: close\r\n\r\n" + std::string(kBody);
    }
    ++responses_;
    c.request = std::string();
    c.phase = Phase::kResponse;
    c.deadline = Clock::time_point::max();  // a client may read a large body slowly
    return true;
  }

  // Sends head and body until the socket is full; when all is sent, shuts down our side.
  bool send_response(uint64_t tag, Conn& c) {
    while (c.head_sent < c.head.size()) {
      ssize_t n = send_some(tag, c, c.head.data() + c.head_sent, c.head.size() - c.head_sent);
      if (n < 0) return false;
      if (n == 0) return true;
      c.head_sent += static_cast<size_t>(n);
    }
    while (c.body_sent < c.body_size) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(app::BodyPattern::kSpan, c.body_size - c.body_sent));
      ssize_t n = send_some(tag, c, pattern_.at(c.body_sent), len);
      if (n < 0) return false;
      if (n == 0) return true;
      c.body_sent += static_cast<uint64_t>(n);
      body_bytes_ += static_cast<uint64_t>(n);
    }
    c.head = std::string();
    if (ustack::shutdown(c.fd, SHUT_WR) != 0) {
      fail(tag, c, errno, "shutdown");
      return false;
    }
    c.phase = Phase::kLinger;
    c.deadline = Clock::now() + kLinger;
    return drain(tag, c);
  }

  // Lingering: reads and drops what the client still sends until it closes. False if closed.
  bool drain(uint64_t tag, Conn& c) {
    char buf[4096];
    for (int i = 0; i < 16; ++i) {
      ssize_t n = ustack::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      close_conn(tag, c);  // EOF, or an error after everything was sent: done either way
      return false;
    }
    return true;
  }

  ssize_t send_some(uint64_t tag, Conn& c, const char* data, size_t len) {
    for (;;) {
      ssize_t n = ustack::send(c.fd, data, len, MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      fail(tag, c, errno, "send");
      return -1;
    }
  }

  void update(uint64_t tag, Conn& c) {
    uint32_t want = c.phase == Phase::kResponse ? EPOLLOUT : EPOLLIN | EPOLLRDHUP;
    if (want == c.watching) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = tag;
    if (ustack::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) return fail(tag, c, errno, "epoll_ctl");
    c.watching = want;
  }

  void fail(uint64_t tag, Conn& c, int err, const char* what) {
    if (++errors_ <= kMaxErrorsShown) {
      std::fprintf(stderr, "%s: %s: %s: %s%s\n", kProgram, app::format_addr(c.peer).c_str(), what,
                   std::strerror(err), errors_ == kMaxErrorsShown ? " (further errors only counted)" : "");
    }
    close_conn(tag, c);
  }

  void close_conn(uint64_t tag, Conn& c) {
    ustack::close(c.fd);  // also drops it from the epoll set
    conns_.erase(tag);
  }

  int ep_;
  int listen_fd_;
  uint64_t body_size_;
  app::ListenerPause listener_pause_;
  app::BodyPattern pattern_;
  app::Slab<Conn> conns_;
  Clock::time_point next_sweep_{};
  uint64_t accepted_ = 0;
  uint64_t responses_ = 0;
  uint64_t bad_requests_ = 0;
  uint64_t body_bytes_ = 0;
  uint64_t errors_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "Tiny HTTP/1.0 and 1.1 server: GET /size/N answers with an N-byte body (N up to 2^40), any other GET /PATH "
      "with --body-size bytes; byte i of a body is (i * 131 + 7) mod 256 (http-fetch --expect-pattern checks it). "
      "Content-Type: application/octet-stream, Connection: close, one request per connection; anything but GET "
      "gets 400. Prints a summary on SIGINT/SIGTERM."};
  app::CommonOptions common;
  uint16_t port = 8080;
  std::string bind_addr = "0.0.0.0";
  uint64_t body_size = 1024;
  int backlog = 128;
  app::add_common_options(cli, common);
  cli.add_option("--port", port, "TCP port to serve")->capture_default_str();
  cli.add_option("--bind", bind_addr, "local IPv4 address to bind")->capture_default_str();
  cli.add_option("--body-size", body_size, "body bytes for any GET but /size/N")
      ->check(CLI::Range(uint64_t{0}, kMaxBody))
      ->capture_default_str();
  cli.add_option("--backlog", backlog, "listen() backlog")->check(CLI::Range(1, 65535))->capture_default_str();
  if (int status = app::parse_command_line(cli, argc, argv); status >= 0) return status;

  sockaddr_in addr{};
  if (!app::make_addr(bind_addr, port, &addr)) {
    std::fprintf(stderr, "%s: --bind %s is not an IPv4 address\n", kProgram, bind_addr.c_str());
    return 2;
  }
  if (!app::start_backend(common, kProgram)) return 1;
  int ep = ustack::epoll_create1(0);
  if (ep < 0) {
    std::fprintf(stderr, "%s: epoll_create1: %s\n", kProgram, std::strerror(errno));
    ustack::shutdown();
    return 1;
  }
  constexpr uint64_t kListenerTag = app::Slab<Conn>::kNoTag;
  int listen_fd = app::open_listener(kProgram, addr, backlog, ep, kListenerTag);
  if (listen_fd < 0) {
    ustack::shutdown();
    return 1;
  }
  std::printf("%s: serving %s:%u on the %s stack\n", kProgram, bind_addr.c_str(), port, common.stack.c_str());
  std::fflush(stdout);

  Responder responder(ep, listen_fd, kListenerTag, body_size);
  bool ok = app::run_epoll_loop(
      kProgram, ep,
      [&](const epoll_event& e) {
        if (e.data.u64 == kListenerTag) {
          responder.accept_all();
        } else {
          responder.handle(e.data.u64, e.events);
        }
      },
      [&] { responder.tick(Clock::now()); });
  responder.close_all();
  ustack::close(listen_fd);
  ustack::close(ep);
  responder.print_summary();
  ustack::shutdown();
  return ok ? 0 : 1;
}
