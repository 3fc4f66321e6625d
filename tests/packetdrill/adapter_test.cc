// The packetdrill adapter without packetdrill: loads ustack_packetdrill.so the way packetdrill
// does (dlopen, packetdrill_interface_init) and plays packetdrill's part by calling the interface
// directly. Packets are built and read with the core's own Repr types. CI runs this; the real
// packetdrill runs against the same .so by hand (README.md here).

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ip/ipv4_packet.h"
#include "packetdrill_interface.h"
#include "tcp/segment.h"

namespace ustack::packetdrill {
namespace {

using Bytes = std::vector<uint8_t>;

const Ipv4Addr kLocal(198, 18, 0, 2);  // the stack under test (the adapter's default)
const Ipv4Addr kRemote(198, 18, 0, 1);  // packetdrill's side
constexpr uint16_t kServerPort = 8080;
constexpr uint16_t kClientPort = 40000;
constexpr uint32_t kPeerIss = 1000;
#if defined(__SANITIZE_ADDRESS__)
constexpr int kDeepBind = 0;  // the sanitizer runtime refuses RTLD_DEEPBIND
#else
constexpr int kDeepBind = RTLD_DEEPBIND;  // as packetdrill loads it
#endif

/// The adapter, loaded and initialised as packetdrill does it (so_testing.c).
class Loaded {
 public:
  Loaded() {
    const char* path = std::getenv("USTACK_PACKETDRILL_SO");
    if (!path) {
      ADD_FAILURE() << "USTACK_PACKETDRILL_SO is not set (meson sets it to the built .so)";
      return;
    }
    handle_ = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE | kDeepBind);
    if (!handle_) {
      ADD_FAILURE() << dlerror();
      return;
    }
    auto init = reinterpret_cast<packetdrill_interface_init_t>(dlsym(handle_, "packetdrill_interface_init"));
    if (!init) {
      ADD_FAILURE() << "no packetdrill_interface_init in " << path;
      return;
    }
    init("local_ip=198.18.0.2,prefix=24", &ifc);
  }
  ~Loaded() {
    if (ifc.free) ifc.free(ifc.userdata);
    if (handle_) dlclose(handle_);
  }
  bool ok() const { return ifc.userdata != nullptr; }

  packetdrill_interface ifc{};

 private:
  void* handle_ = nullptr;
};

/// An inbound TCP segment from the remote side, as a bare IPv4 packet.
Bytes segment(uint8_t flags, uint32_t seq, uint32_t ack, std::string_view payload = {},
              std::optional<uint16_t> mss = std::nullopt) {
  tcp::SegmentRepr s;
  s.src_port = kClientPort;
  s.dst_port = kServerPort;
  s.seq = tcp::SeqNum(seq);
  s.ack = tcp::SeqNum(ack);
  s.flags = flags;
  s.window = 65535;
  s.options.mss = mss;
  const size_t tcp_len = s.header_len() + payload.size();
  Bytes out(ip::Ipv4Repr::emitted_header_len() + tcp_len);
  const std::span<uint8_t> tcp_bytes = std::span<uint8_t>(out).subspan(ip::Ipv4Repr::emitted_header_len());
  std::copy(payload.begin(), payload.end(), tcp_bytes.begin() + static_cast<ptrdiff_t>(s.header_len()));
  s.emit_header(tcp_bytes, kRemote, kLocal);
  ip::Ipv4Repr h;
  h.src = kRemote;
  h.dst = kLocal;
  h.protocol = static_cast<uint8_t>(ip::Protocol::kTcp);
  h.payload_len = static_cast<uint16_t>(tcp_len);
  h.emit(out);
  return out;
}

/// One packet the stack sent, read back through netdev_receive.
struct Sniffed {
  Bytes ip;  // owns what `tcp` points into
  ip::Ipv4Repr header;
  tcp::SegmentRepr tcp;
  long long time_usecs = 0;
  std::string payload() const { return {tcp.payload.begin(), tcp.payload.end()}; }
};

std::optional<Sniffed> sniff(packetdrill_interface& ifc) {
  auto s = std::make_optional<Sniffed>();
  s->ip.resize(65536);
  size_t n = s->ip.size();
  if (ifc.netdev_receive(ifc.userdata, s->ip.data(), &n, &s->time_usecs) != 0 || n == 0) return std::nullopt;
  s->ip.resize(n);
  auto h = ip::Ipv4Repr::parse(s->ip);
  if (!h) return std::nullopt;
  s->header = *h;
  auto t = tcp::SegmentRepr::parse(std::span<const uint8_t>(s->ip).subspan(h->header_len, h->payload_len), h->src,
                                   h->dst);
  if (!t) return std::nullopt;
  s->tcp = *t;
  return s;
}

long long now_usecs(packetdrill_interface& ifc) {
  timeval tv{};
  ifc.gettimeofday(ifc.userdata, &tv, nullptr);
  return static_cast<long long>(tv.tv_sec) * 1'000'000 + tv.tv_usec;
}

/// Whether thread `tid` of this process sleeps in the kernel: how packetdrill tells that its
/// syscall thread has blocked (is_thread_sleeping in its run_system_call.c).
bool thread_sleeps(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'S';
}

sockaddr_in inet(Ipv4Addr a, uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(a.value());
  return sin;
}

class PacketdrillAdapter : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pd.ok());
    listener = ifc().socket(u(), AF_INET, SOCK_STREAM, IPPROTO_TCP);
    ASSERT_GE(listener, 0);
    const int one = 1;
    ASSERT_EQ(ifc().setsockopt(u(), listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    const sockaddr_in any = inet(Ipv4Addr::any(), kServerPort);
    ASSERT_EQ(ifc().bind(u(), listener, reinterpret_cast<const sockaddr*>(&any), sizeof any), 0);
    ASSERT_EQ(ifc().listen(u(), listener, 1), 0);
  }

  packetdrill_interface& ifc() { return pd.ifc; }
  void* u() { return pd.ifc.userdata; }
  void send(const Bytes& ip) { ASSERT_EQ(ifc().netdev_send(u(), ip.data(), ip.size()), 0); }

  /// SYN in, SYN-ACK out; returns the stack's ISS.
  uint32_t syn_synack() {
    const long long sent_at = now_usecs(ifc());
    send(segment(tcp::kSyn, kPeerIss, 0, {}, 1460));
    auto synack = sniff(ifc());
    EXPECT_TRUE(synack);
    if (!synack) return 0;
    EXPECT_EQ(synack->header.src, kLocal);
    EXPECT_EQ(synack->header.dst, kRemote);
    EXPECT_EQ(synack->tcp.flags, tcp::kSyn | tcp::kAck);
    EXPECT_EQ(synack->tcp.src_port, kServerPort);
    EXPECT_EQ(synack->tcp.dst_port, kClientPort);
    EXPECT_EQ(synack->tcp.ack, tcp::SeqNum(kPeerIss + 1));
    EXPECT_EQ(synack->tcp.options.mss, std::optional<uint16_t>(1460));
    EXPECT_EQ(synack->time_usecs, sent_at);  // answered at once, in simulated time
    return synack->tcp.seq.raw();
  }

  Loaded pd;
  int listener = -1;
};

TEST_F(PacketdrillAdapter, PassiveOpenThenDataBothWays) {
  ASSERT_EQ(ifc().usleep(u(), 100'000), 0);
  const uint32_t iss = syn_synack();
  send(segment(tcp::kAck, kPeerIss + 1, iss + 1));

  sockaddr_in peer{};
  socklen_t peer_len = sizeof peer;
  const int conn = ifc().accept(u(), listener, reinterpret_cast<sockaddr*>(&peer), &peer_len);
  ASSERT_GE(conn, 0);
  EXPECT_EQ(peer.sin_addr.s_addr, htonl(kRemote.value()));
  EXPECT_EQ(peer.sin_port, htons(kClientPort));

  ASSERT_EQ(ifc().write(u(), conn, "hello", 5), 5);
  auto data = sniff(ifc());
  ASSERT_TRUE(data);
  EXPECT_EQ(data->tcp.seq, tcp::SeqNum(iss + 1));
  EXPECT_EQ(data->tcp.ack, tcp::SeqNum(kPeerIss + 1));
  EXPECT_TRUE(data->tcp.flags & tcp::kAck);
  EXPECT_EQ(data->payload(), "hello");

  const long long sent_at = now_usecs(ifc());
  send(segment(tcp::kAck | tcp::kPsh, kPeerIss + 1, iss + 6, "world"));
  char buf[16] = {};
  ASSERT_EQ(ifc().read(u(), conn, buf, sizeof buf), 5);
  EXPECT_EQ(std::string(buf, 5), "world");
  auto ack = sniff(ifc());  // at once or after the delayed-ACK timer: simulated time moves to it
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->tcp.ack, tcp::SeqNum(kPeerIss + 6));
  EXPECT_TRUE(ack->tcp.payload.empty());
  EXPECT_LE(ack->time_usecs - sent_at, 200'000);

  EXPECT_EQ(ifc().close(u(), conn), 0);
  // The FIN (after any pure ACK still queued: when a window update goes is TCP's business, not
  // the adapter's).
  std::optional<Sniffed> fin;
  for (int i = 0; i < 3 && !(fin && (fin->tcp.flags & tcp::kFin)); ++i) fin = sniff(ifc());
  ASSERT_TRUE(fin);
  EXPECT_TRUE(fin->tcp.flags & tcp::kFin);
  EXPECT_EQ(fin->tcp.seq, tcp::SeqNum(iss + 6));
}

TEST_F(PacketdrillAdapter, SimulatedTimeRunsTheRetransmissionTimer) {
  const long long start = now_usecs(ifc());
  ASSERT_EQ(ifc().usleep(u(), 250'000), 0);
  // usleep moves the clock exactly (one reading between: no busy-wait step).
  EXPECT_EQ(now_usecs(ifc()) - start, 250'000);
  const long long syn_at = now_usecs(ifc());
  const uint32_t iss = syn_synack();
  // No ACK: the SYN-ACK goes again when the 1 s initial RTO (RFC 6298 (2.1)) runs out; the
  // sniff moves simulated time up to it.
  auto again = sniff(ifc());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->tcp.flags, tcp::kSyn | tcp::kAck);
  EXPECT_EQ(again->tcp.seq, tcp::SeqNum(iss));
  EXPECT_NEAR(static_cast<double>(again->time_usecs - syn_at), 1e6, 2e3);  // one timer tick of slack
}

TEST_F(PacketdrillAdapter, BlockingReadOnAnotherThreadReturnsWhenDataArrives) {
  // This thread drives (sleeps, injects, sniffs), as packetdrill's main thread does.
  ASSERT_EQ(ifc().usleep(u(), 1000), 0);
  const uint32_t iss = syn_synack();
  send(segment(tcp::kAck, kPeerIss + 1, iss + 1));
  const int conn = ifc().accept(u(), listener, nullptr, nullptr);
  ASSERT_GE(conn, 0);

  ssize_t got = -2;
  long long returned_at = 0;
  char buf[16] = {};
  std::atomic<pid_t> reader_tid{0};
  std::atomic<bool> reader_done{false};
  std::thread reader([&] {
    reader_tid = static_cast<pid_t>(::syscall(SYS_gettid));
    got = ifc().read(u(), conn, buf, sizeof buf);
    returned_at = now_usecs(ifc());  // packetdrill times a blocking call's return right away
    reader_done = true;
  });
  // Like packetdrill: go on once the blocking call sleeps.
  while (!reader_done && (reader_tid == 0 || !thread_sleeps(reader_tid))) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_FALSE(reader_done) << "read() returned before any data came";
  // Simulated time stands still until this thread moves it: the reader cannot return early.
  ASSERT_EQ(ifc().usleep(u(), 50'000), 0);
  const long long sent_at = now_usecs(ifc());
  send(segment(tcp::kAck | tcp::kPsh, kPeerIss + 1, iss + 1, "late"));
  // Time moves on: but only once the reader has taken the data and read the clock.
  ASSERT_EQ(ifc().usleep(u(), 50'000), 0);
  reader.join();
  ASSERT_EQ(got, 4);
  EXPECT_EQ(std::string(buf, 4), "late");
  EXPECT_EQ(returned_at, sent_at);  // the return is timed when the data came, not 50 ms later
}

TEST_F(PacketdrillAdapter, NonBlockingCallsSayEagainAndDescriptorsAreKernelNumbers) {
  const int fd = ifc().socket(u(), AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(fd, 0);
  EXPECT_LT(fd, 1 << 20);  // a real kernel descriptor number, which packetdrill may close(2) itself
  EXPECT_EQ(ifc().fcntl(u(), fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
  EXPECT_EQ(ifc().accept(u(), listener, nullptr, nullptr), -1);  // blocking listener, but...
  // ...this thread drives and nothing will ever come: the adapter gave up after kSilence.
  EXPECT_EQ(errno, EAGAIN);
  ASSERT_EQ(ifc().fcntl(u(), listener, F_SETFL, O_NONBLOCK), 0);
  EXPECT_EQ(ifc().accept(u(), listener, nullptr, nullptr), -1);
  EXPECT_EQ(errno, EAGAIN);
  pollfd p{listener, POLLIN, 0};
  EXPECT_EQ(ifc().poll(u(), &p, 1, 0), 0);
  EXPECT_EQ(ifc().close(u(), fd), 0);
  EXPECT_EQ(ifc().close(u(), fd), -1);
  EXPECT_EQ(errno, EBADF);
}

}  // namespace
}  // namespace ustack::packetdrill
