// http-fetch: a tiny HTTP/1.0 client. Fetches http://A.B.C.D[:PORT]/PATH (IPv4, no DNS, no TLS)
// and writes the body to stdout or a file, or only counts it. One non-blocking socket watched by
// one epoll instance; the same source on the kernel stack and on ustack (--stack).
//
// Fails (exit status 1) on anything short of a whole 200 response: a refused or timed-out
// connect, another status, a body shorter or longer than its Content-Length, and with
// --expect-pattern a body that is not http-responder's pattern.

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "app_common.h"
#include "tcp_common.h"

namespace {

constexpr const char* kProgram = "http-fetch";
using Clock = std::chrono::steady_clock;
constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr size_t kReadChunk = 64 * 1024;

struct Url {
  sockaddr_in addr{};
  std::string host_port;  // for the Host header
  std::string path;
};

// http://A.B.C.D[:PORT][/PATH]; on failure says why in `error`.
bool parse_url(std::string_view url, Url* out, std::string* error) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    *error = url.starts_with("https://") ? "https is not supported (no TLS): use http://" : "the URL must start with http://";
    return false;
  }
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  out->path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (out->path.find_first_of(" \r\n") != std::string::npos) {
    *error = "the path must not contain spaces or line breaks (percent-encode them)";
    return false;
  }
  size_t colon = authority.rfind(':');
  std::string_view host = authority.substr(0, colon);
  uint16_t port = 80;
  if (colon != std::string_view::npos) {
    std::string_view digits = authority.substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || value == 0 || value > 65535) {
      *error = "bad port '" + std::string(digits) + "' (1 to 65535)";
      return false;
    }
    port = static_cast<uint16_t>(value);
  }
  if (!app::make_addr(std::string(host), port, &out->addr)) {
    *error = "'" + std::string(host) + "' is not an IPv4 address (no DNS here: write A.B.C.D)";
    return false;
  }
  out->host_port = std::string(host) + ":" + std::to_string(port);
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

struct ResponseHead {
  int status = 0;
  std::string status_line;
  bool has_length = false;
  uint64_t length = 0;
  bool chunked = false;
};

// Parses the status line and the headers this client needs. False (and why) if malformed.
bool parse_head(std::string_view head, ResponseHead* out, std::string* error) {
  size_t eol = head.find('\n');
  out->status_line = std::string(trim(head.substr(0, eol)));
  std::string_view line = out->status_line;
  if (!line.starts_with("HTTP/1.") || line.size() < 12 || line[8] != ' ') {
    *error = "not an HTTP/1.x response: '" + out->status_line.substr(0, 80) + "'";
    return false;
  }
  auto [end, ec] = std::from_chars(line.data() + 9, line.data() + 12, out->status);
  if (ec != std::errc() || end != line.data() + 12) {
    *error = "bad status line: '" + out->status_line.substr(0, 80) + "'";
    return false;
  }
  while (eol != std::string_view::npos) {
    head.remove_prefix(eol + 1);
    eol = head.find('\n');
    std::string_view header = head.substr(0, eol);
    size_t colon = header.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = trim(header.substr(0, colon)), value = trim(header.substr(colon + 1));
    if (iequals(name, "Content-Length")) {
      auto [vend, vec] = std::from_chars(value.data(), value.data() + value.size(), out->length);
      if (value.empty() || vec != std::errc() || vend != value.data() + value.size()) {
        *error = "bad Content-Length '" + std::string(value) + "'";
        return false;
      }
      out->has_length = true;
    } else if (iequals(name, "Transfer-Encoding") && !iequals(value, "identity")) {
      out->chunked = true;
    }
  }
  return true;
}

class Fetcher {
 public:
  Fetcher(const Url& url, std::FILE* out, bool expect_pattern, double timeout_s)
      : url_(url), out_(out), expect_pattern_(expect_pattern), timeout_(timeout_s), buf_(kReadChunk) {}

  /// Runs the whole exchange; false after printing why.
  bool run();
  void print_summary() const;

 private:
  bool connect();
  bool send_request();
  bool read_response();
  bool take_body(const char* data, size_t len);
  bool wait_for(uint32_t events);
  bool failed(const std::string& why) {
    std::fprintf(stderr, "%s: %s: %s\n", kProgram, url_.host_port.c_str(), why.c_str());
    return false;
  }

  const Url& url_;
  std::FILE* out_;
  bool expect_pattern_;
  double timeout_;
  std::vector<char> buf_;
  app::BodyPattern pattern_;
  int ep_ = -1;
  int fd_ = -1;
  uint32_t watching_ = 0;
  Clock::time_point start_{};
  ResponseHead head_;
  uint64_t body_bytes_ = 0;
  uint64_t fnv_ = 0xcbf29ce484222325ULL;  // FNV-1a 64 of the body
};

bool Fetcher::run() {
  start_ = Clock::now();
  ep_ = ustack::epoll_create1(0);
  if (ep_ < 0) return failed(std::string("epoll_create1: ") + std::strerror(errno));
  bool ok = connect() && send_request() && read_response();
  if (fd_ >= 0) ustack::close(fd_);
  ustack::close(ep_);
  return ok;
}

bool Fetcher::connect() {
  fd_ = ustack::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return failed("cannot create a TCP socket: " + app::socket_failure(errno));
  epoll_event ev{};
  ev.events = watching_ = EPOLLOUT;
  if (ustack::epoll_ctl(ep_, EPOLL_CTL_ADD, fd_, &ev) != 0) return failed(std::string("epoll_ctl: ") + std::strerror(errno));
  if (ustack::connect(fd_, reinterpret_cast<const sockaddr*>(&url_.addr), sizeof url_.addr) == 0) return true;
  if (errno != EINPROGRESS) return failed(std::string("cannot connect: ") + std::strerror(errno));
  if (!wait_for(EPOLLOUT)) return failed(std::string("cannot connect: ") + std::strerror(errno));
  if (int err = app::socket_error(fd_)) return failed(std::string("cannot connect: ") + std::strerror(err));
  return true;
}

bool Fetcher::send_request() {
  std::string request = "GET " + url_.path + " HTTP/1.0\r\nHost: " + url_.host_port +
                        "\r\nUser-Agent: ustack-http-fetch\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ustack::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(EPOLLOUT)) return failed(std::string("sending the request: ") + std::strerror(errno));
    } else if (errno != EINTR) {
      return failed(std::string("sending the request: ") + std::strerror(errno));
    }
  }
  return true;
}

bool Fetcher::read_response() {
  std::string head;
  bool in_body = false;
  for (;;) {
    if (in_body && head_.has_length && body_bytes_ == head_.length) return true;  // all of it: done
    ssize_t n = ustack::recv(fd_, buf_.data(), buf_.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return failed(std::string("receiving the response: ") + std::strerror(errno) + " after " +
                      std::to_string(body_bytes_) + " body bytes");
      }
      if (!wait_for(EPOLLIN)) {
        return failed(std::string("receiving the response: ") + std::strerror(errno) + " after " +
                      std::to_string(body_bytes_) + " body bytes");
      }
      continue;
    }
    if (n == 0) {  // the server closed
      if (!in_body) return failed("the connection closed before the end of the response head");
      if (head_.has_length) {
        return failed("short body: " + std::to_string(body_bytes_) + " of the " + std::to_string(head_.length) +
                      " bytes of Content-Length");
      }
      return true;  // no Content-Length: the body ends with the connection
    }
    if (in_body) {
      if (!take_body(buf_.data(), static_cast<size_t>(n))) return false;
      continue;
    }
    size_t scan_from = head.size() < 3 ? 0 : head.size() - 3;
    head.append(buf_.data(), static_cast<size_t>(n));
    size_t end = head.find("\r\n\r\n", scan_from);
    size_t body_at = end == std::string::npos ? end : end + 4;
    if (end == std::string::npos && (end = head.find("\n\n", scan_from)) != std::string::npos) body_at = end + 2;
    if (body_at == std::string::npos) {
      if (head.size() > kMaxResponseHead) return failed("response head longer than 64 KiB");
      continue;
    }
    std::string error;
    if (!parse_head(std::string_view(head).substr(0, end), &head_, &error)) return failed(error);
    if (head_.status != 200) return failed("the server answered '" + head_.status_line + "'");
    if (head_.chunked) return failed("chunked transfer encoding in an answer to HTTP/1.0 is not supported");
    in_body = true;
    if (!take_body(head.data() + body_at, head.size() - body_at)) return false;
    head = std::string();
  }
}

// Checks, hashes and writes a piece of the body.
bool Fetcher::take_body(const char* data, size_t len) {
  if (head_.has_length && body_bytes_ + len > head_.length) {
    return failed("the body is longer than its Content-Length (" + std::to_string(head_.length) + " bytes)");
  }
  if (expect_pattern_) {
    for (size_t done = 0; done < len;) {
      size_t n = std::min(len - done, app::BodyPattern::kSpan);
      const char* expected = pattern_.at(body_bytes_ + done);
      if (std::memcmp(data + done, expected, n) != 0) {
        size_t k = 0;
        while (data[done + k] == expected[k]) ++k;
        char what[160];
        std::snprintf(what, sizeof what, "body byte %llu is 0x%02x, the pattern has 0x%02x",
                      static_cast<unsigned long long>(body_bytes_ + done + k), static_cast<unsigned char>(data[done + k]),
                      static_cast<unsigned char>(expected[k]));
        return failed(what);
      }
      done += n;
    }
  }
  for (size_t i = 0; i < len; ++i) fnv_ = (fnv_ ^ static_cast<unsigned char>(data[i])) * 0x100000001b3ULL;
  if (out_ != nullptr && len > 0 && std::fwrite(data, 1, len, out_) != len) {
    return failed(std::string("writing the body: ") + std::strerror(errno));
  }
  body_bytes_ += len;
  return true;
}

// Waits until the socket is ready for `events`; false with errno ETIMEDOUT after --timeout
// seconds, EINTR on SIGINT/SIGTERM, or epoll_wait's error.
bool Fetcher::wait_for(uint32_t events) {
  if (events != watching_) {
    epoll_event ev{};
    ev.events = events;
    if (ustack::epoll_ctl(ep_, EPOLL_CTL_MOD, fd_, &ev) != 0) return false;
    watching_ = events;
  }
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
  for (;;) {
    if (app::g_stop) {
      errno = EINTR;
      return false;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 0) {
      errno = ETIMEDOUT;
      return false;
    }
    epoll_event ev{};
    int n = ustack::epoll_wait(ep_, &ev, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, 100)));
    if (n > 0) return true;  // ready, or an error that the next call reports
    if (n < 0 && errno != EINTR) return false;
  }
}

void Fetcher::print_summary() const {
  double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  std::fprintf(stderr, "%s: %s, %llu body bytes in %.3f s (%.1f MB/s), fnv1a64 %016llx%s\n", kProgram,
               head_.status_line.c_str(), static_cast<unsigned long long>(body_bytes_), seconds,
               seconds > 0 ? static_cast<double>(body_bytes_) / seconds / 1e6 : 0.0,
               static_cast<unsigned long long>(fnv_), expect_pattern_ ? ", pattern intact" : "");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "Tiny HTTP/1.0 client: GET http://A.B.C.D[:PORT]/PATH (IPv4, no DNS, no TLS) and write the body to stdout "
      "(or --output FILE, or --quiet to discard it). Prints the status, the size and the body's FNV-1a 64-bit hash "
      "to stderr. Exit status 1 unless a 200 response arrived whole (as long as its Content-Length, if any), 2 on "
      "bad usage."};
  app::CommonOptions common;
  std::string url_text;
  std::string output;
  bool quiet = false;
  bool expect_pattern = false;
  double timeout = 10;
  app::add_common_options(cli, common);
  cli.add_option("url", url_text, "http://A.B.C.D[:PORT][/PATH]")->required();
  auto* output_opt = cli.add_option("--output,-o", output, "write the body to this file instead of stdout (removed again on failure)");
  cli.add_flag("--quiet,-q", quiet, "discard the body (only the summary on stderr)")->excludes(output_opt);
  cli.add_flag("--expect-pattern", expect_pattern,
               "fail unless byte i of the body is (i * 131 + 7) mod 256, as http-responder sends");
  cli.add_option("--timeout", timeout, "give up after this many seconds without progress")
      ->check(CLI::Range(0.001, 1e6))
      ->capture_default_str();
  if (int status = app::parse_command_line(cli, argc, argv); status >= 0) return status;

  Url url;
  std::string error;
  if (!parse_url(url_text, &url, &error)) {
    std::fprintf(stderr, "%s: bad URL '%s': %s\n", kProgram, url_text.c_str(), error.c_str());
    return 2;
  }
  std::FILE* out = quiet ? nullptr : stdout;
  if (!output.empty() && (out = std::fopen(output.c_str(), "wb")) == nullptr) {
    std::fprintf(stderr, "%s: cannot write %s: %s\n", kProgram, output.c_str(), std::strerror(errno));
    return 1;
  }
  if (!app::start_backend(common, kProgram)) return 1;
  Fetcher fetcher(url, out, expect_pattern, timeout);
  bool ok = fetcher.run();
  if (out != nullptr && std::fflush(out) != 0) {
    std::fprintf(stderr, "%s: writing the body: %s\n", kProgram, std::strerror(errno));
    ok = false;
  }
  if (!output.empty() && std::fclose(out) != 0 && ok) {
    std::fprintf(stderr, "%s: writing %s: %s\n", kProgram, output.c_str(), std::strerror(errno));
    ok = false;
  }
  if (!ok && !output.empty()) std::remove(output.c_str());  // no partial body left behind
  if (ok) fetcher.print_summary();
  ustack::shutdown();
  return ok ? 0 : 1;
}
