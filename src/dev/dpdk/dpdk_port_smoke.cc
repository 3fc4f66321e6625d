// Smoke test of the DPDK port: opens a vdev with --no-pci (default net_ring0, a loopback: what is
// sent comes back), sends frames made every way the stack makes them, receives them back, fills
// the TX ring and the pool, prints the caps, and fails unless every mbuf is back in the pool.
//
//   dpdk_port_smoke [--dev VDEV] [--eal "EXTRA EAL ARGS"] [--pcap FILE] [--mtu N] [--hold SECONDS]
//                   [--queues N] [--prime QUEUE]
//
// --queues N opens N queue pairs: the checks above run on queue 0, and on net_ring (where queue k
// sends into its own RX ring k) N threads then send and receive on their queues at once, each
// getting back exactly its own frames.
//
// --hold keeps the port open that long afterwards, receiving and freeing whatever arrives (with
// wait_rx between bursts), one thread per queue: for trying telemetry (/ustack/stats) or a TAP
// by hand, and for tests/dpdk/queues.sh, which reads what it prints: per queue, the frames and
// the UDP flows with port 7000 at one end (by the other end's port); then how many of those
// flows came in on more than one queue. With --prime QUEUE, the first datagram to UDP port 7001
// makes QUEUE send one datagram 198.18.0.2:P -> 198.18.0.1:7000 for each P in kPrimedPorts
// (does the device put the replies on the queue that sent?).
//
// Exit status: 0 all well, 1 a check failed (leak included), 2 setup failed.

#include <rte_lcore.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/checksum.h"
#include "base/stats.h"
#include "dev/dpdk/dpdk_port.h"
#include "dev/dpdk/eal.h"
#include "dev/dpdk/telemetry.h"

using namespace ustack;
using namespace ustack::dev;
using Clock = std::chrono::steady_clock;

namespace {

int g_failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++g_failures;
}

constexpr size_t kUdpFrameSize = 14 + 20 + 8 + 18;

// A broadcast Ethernet frame carrying IPv4/UDP 198.18.0.2:src_port -> 198.18.0.1:dst_port with
// `tag` in its payload. With `offload`, the IPv4 checksum is left zero and the UDP field holds the
// pseudo-header sum, as the stack leaves them for the device; otherwise both are computed.
void fill_udp(Packet& p, const MacAddr& src, uint8_t tag, bool offload, uint16_t src_port = 1000,
              uint16_t dst_port = 2000) {
  uint8_t* f = p.append(kUdpFrameSize);
  std::memset(f, 0, kUdpFrameSize);
  MacAddr::broadcast().store(f);
  src.store(f + 6);
  f[12] = 0x08;
  uint8_t* ip = f + 14;
  ip[0] = 0x45;
  ip[3] = 20 + 8 + 18;
  ip[8] = 64;
  ip[9] = 17;
  const Ipv4Addr sip(198, 18, 0, 2), dip(198, 18, 0, 1);
  sip.store(ip + 12);
  dip.store(ip + 16);
  uint8_t* udp = ip + 20;
  udp[0] = src_port >> 8, udp[1] = src_port & 0xff, udp[2] = dst_port >> 8, udp[3] = dst_port & 0xff;
  udp[5] = 8 + 18;
  for (int i = 0; i < 18; ++i) udp[8 + i] = static_cast<uint8_t>(tag + i);
  if (offload) {
    const uint16_t partial = pseudo_header_partial(sip, dip, 17, 8 + 18);
    udp[6] = partial >> 8, udp[7] = partial & 0xff;
    p.tx_offload = {.ip_checksum = true, .udp_checksum = true, .l2_len = 14, .l3_len = 20};
  } else {
    const uint16_t ipsum = internet_checksum({ip, 20});
    ip[10] = ipsum >> 8, ip[11] = ipsum & 0xff;
    uint16_t sum = checksum_finish(checksum_add(pseudo_header_sum(sip, dip, 17, 26), {udp, 26}));
    if (sum == 0) sum = 0xffff;
    udp[6] = sum >> 8, udp[7] = sum & 0xff;
  }
}

// True when the frame is one of fill_udp's with `tag` and both checksums verify.
bool good_udp(const Packet& p, uint8_t tag) {
  if (p.size() != kUdpFrameSize) return false;
  const uint8_t* ip = p.data() + 14;
  const uint8_t* udp = ip + 20;
  if (internet_checksum({ip, 20}) != 0) return false;
  const Ipv4Addr sip = Ipv4Addr::load(ip + 12), dip = Ipv4Addr::load(ip + 16);
  if (checksum_finish(checksum_add(pseudo_header_sum(sip, dip, 17, 26), {udp, 26})) != 0) return false;
  return udp[8] == tag;
}

// Receives until `want` frames came or 1 s passed.
std::vector<Packet> receive(Device& dev, size_t want) {
  std::vector<Packet> got;
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  std::vector<Packet> burst(64);
  while (got.size() < want && Clock::now() < deadline) {
    const size_t n = dev.rx_burst(burst);
    for (size_t i = 0; i < n; ++i) got.push_back(std::move(burst[i]));
    if (n == 0) dev.wait_rx(std::chrono::milliseconds(1));
  }
  return got;
}

// Sends 8 frames tagged for `queue` on `dev` and receives them: on net_ring each queue is a
// loopback of its own, so they come back here and nowhere else.
bool own_frames_come_back(Device& dev, uint16_t queue) {
  std::vector<Packet> out;
  for (uint8_t i = 0; i < 8; ++i) {
    Packet p = dev.alloc_tx();
    if (!p) return false;
    fill_udp(p, dev.caps().mac, static_cast<uint8_t>(queue * 16 + i), i % 2 == 0);
    out.push_back(std::move(p));
  }
  if (dev.tx_burst(out) != 8) return false;
  std::vector<Packet> back = receive(dev, 8);
  bool good = back.size() == 8;
  for (size_t i = 0; good && i < back.size(); ++i) good = good_udp(back[i], static_cast<uint8_t>(queue * 16 + i));
  return good;
}

constexpr uint16_t kFlowPort = 7000;      // the kernel side's end of the flows --hold counts
constexpr uint16_t kPrimeTrigger = 7001;  // a datagram to this port starts --prime
constexpr uint16_t kPrimedPorts[2] = {21000, 21064};  // [first, end): our ends of the primed flows

struct UdpPorts {
  uint16_t src = 0, dst = 0;
};
// The ports of an IPv4/UDP frame (no VLAN, first fragment or whole).
std::optional<UdpPorts> udp_ports(const Packet& p) {
  const uint8_t* f = p.data();
  if (p.size() < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00) return std::nullopt;
  const uint8_t* ip = f + 14;
  const size_t ihl = (ip[0] & 0x0f) * 4u;
  if (ip[9] != 17 || ihl < 20 || p.size() < 14 + ihl + 8 || (ip[6] & 0x1f) != 0 || ip[7] != 0) return std::nullopt;
  const uint8_t* udp = ip + ihl;
  return UdpPorts{static_cast<uint16_t>(udp[0] << 8 | udp[1]), static_cast<uint16_t>(udp[2] << 8 | udp[3])};
}

// What one queue received while holding.
struct QueueTally {
  uint64_t frames = 0;
  std::map<uint16_t, uint64_t> flows;  // datagrams with kFlowPort at one end, by the other end's port
};

// One queue's thread while holding: receives until `end`, tallies, and primes when asked.
void hold_queue(Device& dev, uint16_t queue, Clock::time_point end, int prime_queue,
                std::atomic<bool>& prime_requested, QueueTally& tally) {
  std::vector<Packet> burst(32);
  bool primed = false;
  while (Clock::now() < end) {
    const size_t n = dev.rx_burst(burst);
    for (size_t i = 0; i < n; ++i) {
      ++tally.frames;
      if (const auto ports = udp_ports(burst[i])) {
        if (ports->dst == kPrimeTrigger) prime_requested = true;
        if (ports->src == kFlowPort) ++tally.flows[ports->dst];
        if (ports->dst == kFlowPort) ++tally.flows[ports->src];
      }
      burst[i] = Packet();
    }
    if (queue == prime_queue && !primed && prime_requested) {
      primed = true;
      std::vector<Packet> out;
      for (uint16_t port = kPrimedPorts[0]; port < kPrimedPorts[1]; ++port) {
        Packet p = dev.alloc_tx();
        if (!p) break;
        fill_udp(p, dev.caps().mac, 0, false, port, kFlowPort);
        out.push_back(std::move(p));
      }
      const size_t sent = dev.tx_burst(out);
      std::printf("primed %zu flows on queue %u\n", sent, queue);
      std::fflush(stdout);
    }
    if (n < burst.size()) dev.wait_rx(std::chrono::milliseconds(100));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dev = "net_ring0", extra, pcap;
  int hold_s = 0, mtu = 0, queues = 1, prime_queue = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--dev") dev = argv[i + 1];
    else if (flag == "--eal") extra = argv[i + 1];
    else if (flag == "--pcap") pcap = argv[i + 1];
    else if (flag == "--hold") hold_s = std::atoi(argv[i + 1]);
    else if (flag == "--mtu") mtu = std::atoi(argv[i + 1]);
    else if (flag == "--queues") queues = std::atoi(argv[i + 1]);
    else if (flag == "--prime") prime_queue = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr,
                   "usage: %s [--dev VDEV] [--eal ARGS] [--pcap FILE] [--mtu N] [--hold SECONDS] [--queues N] "
                   "[--prime QUEUE]\n",
                   argv[0]);
      return 2;
    }
  }

  auto eal = Eal::init(eal_args(argv[0], dev, extra));
  if (!eal) {
    std::fprintf(stderr, "%s\n", eal.error().c_str());
    return 2;
  }
  std::printf("EAL:");
  for (const std::string& a : (*eal)->args()) std::printf(" %s", a.c_str());
  std::printf("\nruntime dir: %s\n", (*eal)->runtime_dir().c_str());
  check(!Eal::init({"again"}).ok(), "a second Eal::init is refused");

  DevStats stats;
  check(register_stats_telemetry([&stats](auto fn) { stats.for_each([&](auto n, uint64_t v) { fn("dev", n, v); }); }),
        "/ustack/stats registered");

  // Refused before anything is configured: the port stays free for the open below.
  {
    DpdkPortConfig several;
    several.queues = 2;
    several.pcap_path = "/nonexistent/capture.pcapng";
    auto refused = DpdkPort::open(several);
    check(!refused && refused.error().find("single queue") != std::string::npos,
          "a capture with 2 queues is refused");
    several = DpdkPortConfig{};
    several.queues = UINT16_MAX;
    refused = DpdkPort::open(several);
    check(!refused && refused.error().find("at most") != std::string::npos, "more queues than the PMD has are refused");
    if (!refused) std::printf("     %s\n", refused.error().c_str());
    several.queues = 0;
    check(!DpdkPort::open(several), "0 queues are refused");
  }

  DpdkPortConfig config;
  config.queues = static_cast<uint16_t>(queues);
  config.stats = &stats;
  config.pcap_path = pcap;
  config.mtu = static_cast<uint16_t>(mtu);
  auto opened = DpdkPort::open(config);
  if (!opened) {
    std::fprintf(stderr, "%s\n", opened.error().c_str());
    return 2;
  }
  DpdkPort& port = **opened;
  const DeviceCaps& caps = port.caps();
  std::printf("port %u %s: mac %s mtu %u tx_cksum ip=%d udp=%d tcp=%d rx_cksum=%d headroom %zu buffer %zu "
              "rx_interrupts=%d queues=%u symmetric_rss=%d\n",
              port.port_id(), port.name().c_str(), caps.mac.to_string().c_str(), caps.mtu, caps.tx_ipv4_checksum,
              caps.tx_udp_checksum, caps.tx_tcp_checksum, caps.rx_checksum, caps.tx_headroom, caps.buffer_size,
              port.wakes_on_rx(), port.queues(), port.symmetric_rss());
  check(port.queues() == queues, "the port has the queues asked for");

  // Queue 0 is the port itself; the others are views, each with counters of its own.
  std::vector<Device*> devices{&port};
  std::vector<std::unique_ptr<Device>> views;
  std::vector<std::unique_ptr<DevStats>> view_stats;
  for (uint16_t q = 1; q < port.queues(); ++q) {
    views.push_back(port.queue_device(q));
    view_stats.push_back(std::make_unique<DevStats>());
    views.back()->attach_stats(view_stats.back().get());
    devices.push_back(views.back().get());
    std::printf("%s: rx_interrupts=%d\n", views.back()->name().c_str(), views.back()->wakes_on_rx());
  }
  check(port.queue_device(port.queues()) == nullptr, "no view past the last queue");
  const size_t base_in_use = port.mbufs_in_use();  // what the PMD's RX ring holds
  std::printf("mbufs in use after start: %zu\n", base_in_use);
  const bool loopback = dev.starts_with("net_ring");

  // Frames made every way the stack makes them: from alloc_tx (with offload requests, which the
  // port must honour in hardware or software), from the heap (copied), and a received one sent
  // again in place.
  {
    std::vector<Packet> out;
    for (uint8_t i = 0; i < 8; ++i) {
      Packet p = port.alloc_tx();
      check(p && p.headroom() == caps.tx_headroom, "alloc_tx gives a buffer with the headroom caps say");
      fill_udp(p, caps.mac, i, /*offload=*/i % 2 == 0);
      out.push_back(std::move(p));
    }
    for (uint8_t i = 8; i < 12; ++i) {
      Packet p = Packet::heap(256, 64);
      fill_udp(p, caps.mac, i, /*offload=*/i % 2 == 0);
      out.push_back(std::move(p));
    }
    out.emplace_back();  // an empty Packet is skipped
    check(port.tx_burst(out) == 12, "tx_burst queues 12 frames");
    bool all_empty = true;
    for (const Packet& p : out) all_empty = all_empty && !p;
    check(all_empty, "tx_burst takes every packet");
    if (loopback) {
      std::vector<Packet> back = receive(port, 12);
      check(back.size() == 12, "12 frames come back");
      bool good = back.size() == 12;
      for (size_t i = 0; good && i < back.size(); ++i) good = good_udp(back[i], static_cast<uint8_t>(i));
      check(good, "...in order, with valid IPv4 and UDP checksums");
      if (!back.empty()) {
        back[0].consume_front(0);  // sent again as received, in place
        Packet again[1] = {std::move(back[0])};
        check(port.tx_burst(again) == 1, "a received frame is sent again without a copy");
        std::vector<Packet> echo = receive(port, 1);
        check(echo.size() == 1 && good_udp(echo[0], 0), "...and comes back intact");
      }
    }
  }

  // Fill the TX ring (net_ring holds 1023): what it refuses is freed and counted, not leaked.
  if (loopback) {
    const uint64_t dropped_before = stats.tx_dropped_queue_full;
    size_t queued = 0, made = 0;
    for (int b = 0; b < 40; ++b) {
      std::vector<Packet> burst;
      for (int i = 0; i < 32; ++i) {
        Packet p = port.alloc_tx();
        fill_udp(p, caps.mac, static_cast<uint8_t>(i), false);
        burst.push_back(std::move(p));
      }
      made += burst.size();
      queued += port.tx_burst(burst);
    }
    const uint64_t dropped = stats.tx_dropped_queue_full - dropped_before;
    std::printf("ring full: made %zu queued %zu dropped %lu\n", made, queued, static_cast<unsigned long>(dropped));
    check(queued == 1023 && queued + dropped == made, "a full TX ring drops and counts the rest");
    size_t drained = 0;
    std::vector<Packet> burst(100);  // more than one rte_eth_rx_burst's 32
    for (size_t n; (n = port.rx_burst(burst)) > 0;) {
      drained += n;
      for (size_t i = 0; i < n; ++i) burst[i] = Packet();
    }
    check(drained == queued, "...and all that was queued is received");
  }

  // Exhaust the pool: alloc_tx then returns empty Packets and counts them.
  {
    std::vector<Packet> all;
    for (Packet p; (p = port.alloc_tx());) all.push_back(std::move(p));
    std::printf("pool exhausted after %zu alloc_tx\n", all.size());
    check(stats.tx_alloc_failed >= 1, "alloc_tx on an empty pool counts tx_alloc_failed");
    check(port.tx_burst(std::span<Packet>()) == 0, "an empty tx_burst does nothing");
  }

  // Every queue at once, each on its own thread, as engines run them.
  if (loopback && devices.size() > 1) {
    std::vector<char> ok(devices.size(), 0);
    std::vector<std::thread> threads;
    for (uint16_t q = 0; q < devices.size(); ++q) {
      threads.emplace_back([&, q] {
        devices[q]->engine_thread_started();
        const bool lcore = rte_lcore_id() != LCORE_ID_ANY;
        ok[q] = own_frames_come_back(*devices[q], q) && lcore;
        devices[q]->engine_thread_stopping();
      });
    }
    for (auto& t : threads) t.join();
    bool all = true;
    for (char o : ok) all = all && o;
    check(all, "each queue, polled on its own thread (an lcore once its engine starts), gets back exactly its own frames");
    bool counted = true;
    for (const auto& vs : view_stats) counted = counted && vs->tx_frames == 8 && vs->rx_frames == 8;
    check(counted, "...counted in its own DevStats");
  }

  {
    const auto t0 = Clock::now();
    port.wait_rx(std::chrono::milliseconds(5));
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
    std::printf("wait_rx(5ms) with nothing to receive took %ld us\n", static_cast<long>(us));
  }

  if (hold_s > 0) {
    std::printf("holding for %d s (pid %d)\n", hold_s, static_cast<int>(getpid()));
    std::fflush(stdout);
    const auto end = Clock::now() + std::chrono::seconds(hold_s);
    std::vector<QueueTally> tallies(devices.size());
    std::atomic<bool> prime_requested = false;
    std::vector<std::thread> threads;
    for (uint16_t q = 0; q < devices.size(); ++q) {
      threads.emplace_back(
          [&, q] { hold_queue(*devices[q], q, end, prime_queue, prime_requested, tallies[q]); });
    }
    for (auto& t : threads) t.join();
    std::map<uint16_t, int> queues_of_flow;
    for (uint16_t q = 0; q < tallies.size(); ++q) {
      uint64_t datagrams = 0;
      for (const auto& [other_port, n] : tallies[q].flows) {
        datagrams += n;
        ++queues_of_flow[other_port];
      }
      std::printf("queue %u: %lu frames, %lu datagrams in %zu flows\n", q,
                  static_cast<unsigned long>(tallies[q].frames), static_cast<unsigned long>(datagrams),
                  tallies[q].flows.size());
    }
    int split = 0;
    for (const auto& [other_port, n] : queues_of_flow) split += n > 1;
    std::printf("flows on more than one queue: %d of %zu\n", split, queues_of_flow.size());
    if (prime_queue >= 0 && prime_queue < static_cast<int>(tallies.size())) {
      size_t primed = 0, on_prime_queue = 0;
      for (uint16_t port_no = kPrimedPorts[0]; port_no < kPrimedPorts[1]; ++port_no) {
        if (!queues_of_flow.contains(port_no)) continue;
        ++primed;
        on_prime_queue += tallies[prime_queue].flows.contains(port_no);
      }
      std::printf("primed flows received: %zu, on queue %d: %zu\n", primed, prime_queue, on_prime_queue);
    }
  }

  stats.for_each([](std::string_view n, uint64_t v) {
    std::printf("dev.%.*s = %lu\n", static_cast<int>(n.size()), n.data(), static_cast<unsigned long>(v));
  });
  std::printf("rx_dropped_multiseg = %lu, pcap_dropped = %lu\n", static_cast<unsigned long>(port.rx_dropped_multiseg()),
              static_cast<unsigned long>(port.pcap_dropped()));
  views.clear();  // before the port closes
  const size_t leaked = port.close();
  std::printf("mbufs in use after close: %zu\n", leaked);
  check(leaked == 0, "every mbuf is back in the pool");
  clear_stats_telemetry();
  opened = unexpected(std::string("closed"));  // the port goes before the EAL
  std::printf("%s\n", g_failures ? "FAILED" : "PASSED");
  return g_failures ? 1 : 0;
}
