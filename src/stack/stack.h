#pragma once
// One engine's protocol stack: Ethernet/ARP → IPv4/ICMP → UDP and TCP over one Device. Sans-IO in the
// sense that matters: it reads no clock (every call takes `now`) and touches the world only
// through the Device interface, so the same code runs over DPDK and over the in-memory wire.

#include <array>
#include <cstdint>
#include <deque>

#include "base/instant.h"
#include "base/packet.h"
#include "base/rng.h"
#include "base/stats.h"
#include "base/timer_wheel.h"
#include "dev/device.h"
#include "eth/arp_cache.h"
#include "eth/frame.h"
#include "ip/icmp_message.h"
#include "ip/icmp_rate_limiter.h"
#include "ip/ip_output.h"
#include "ip/reassembler.h"
#include "stack/stack_config.h"
#include "tcp/tcp_layer.h"
#include "udp/udp_layer.h"

namespace ustack {

class Stack final : private eth::ArpActions,
                    private ip::ReassemblyActions,
                    private ip::IpOutput,
                    private udp::LocalAddresses {
 public:
  static constexpr size_t kBurst = 32;

  /// `device` must outlive the stack.
  Stack(const StackConfig& config, dev::Device& device);
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  /// Sends the gratuitous ARP; call once before the first poll.
  void start(Instant now);
  /// One turn of the loop: due timers, one receive burst, the loopback queue, then transmit.
  /// Returns the number of frames processed (0: idle).
  size_t poll(Instant now);
  /// Processes one received frame (exposed for tests and replay).
  void receive_frame(Instant now, Packet frame);
  /// Delivers what was sent to ourselves (127/8 or our address). poll() does it; so does the API
  /// right after a send, as Linux's loopback delivers within the sending call.
  size_t drain_loopback(Instant now);
  /// Hands batched frames to the device. poll() does it; API calls that send do it too.
  void flush();
  /// When poll() must next run even without traffic (timers), or Instant::max().
  Instant next_wakeup() const;

  udp::UdpLayer& udp() { return udp_; }
  tcp::TcpLayer& tcp() { return tcp_; }
  const StackStats& stats() const { return stats_; }
  StackStats& stats() { return stats_; }
  const StackConfig& config() const { return config_; }
  Ipv4Addr address() const { return config_.address.addr; }
  MacAddr mac() const { return device_.caps().mac; }
  uint16_t mtu() const { return mtu_; }
  size_t arp_entries() const { return arp_.size(); }
  size_t reassembly_datagrams() const { return reassembler_.datagrams(); }
  size_t pending_loopback() const { return loopback_.size(); }

 private:
  // Receive path.
  void arp_input(Instant now, std::span<const uint8_t> payload);
  void ipv4_input(Instant now, Packet packet, bool from_loopback);
  void icmp_input(Instant now, const ip::Ipv4Repr& ip, Packet& packet);
  void icmp_error_input(Instant now, const ip::IcmpRepr& icmp);
  // Transmit path.
  void send_icmp_error(Instant now, const Packet& offending, ip::IcmpType type, uint8_t code);
  void link_output(Instant now, const ip::Route& route, Packet packet);
  void emit_frame(MacAddr dst, eth::EtherType type, Packet packet);
  void transmit(Packet frame);
  bool is_for_us(Ipv4Addr dst, bool from_loopback) const;

  // ip::IpOutput
  Result<ip::Route, int> route(Ipv4Addr dst) override;
  Packet alloc_datagram(size_t payload_len) override;
  int send_datagram(Instant now, const ip::Route& route, uint8_t protocol, Packet payload,
                    bool dont_fragment, uint8_t tos = 0) override;
  bool hand_over(uint32_t engine, Packet& ip_packet) override { return device_.hand_over_to(engine, ip_packet); }
  // eth::ArpActions
  void send_arp_request(Instant now, Ipv4Addr target, std::optional<MacAddr> known) override;
  void send_resolved(Instant now, MacAddr mac, std::vector<Packet>& packets) override;
  void resolution_failed(Instant now, Ipv4Addr target, std::vector<Packet>& packets) override;
  // ip::ReassemblyActions
  void reassembly_timed_out(Instant now, Packet first_fragment) override;
  // udp::LocalAddresses
  bool is_local(Ipv4Addr addr) const override;

  StackConfig config_;
  dev::Device& device_;
  uint16_t mtu_;
  StackStats stats_;
  TimerWheel timers_;
  Rng rng_;
  eth::ArpCache arp_;
  ip::Reassembler reassembler_;
  ip::IcmpRateLimiter icmp_limiter_;
  udp::UdpLayer udp_;
  tcp::TcpLayer tcp_;
  uint16_t next_ident_;
  std::array<Packet, kBurst> tx_batch_;
  size_t tx_count_ = 0;
  // What rx_burst and local_burst fill: a member, so that a poll (an idle engine polls in a tight
  // loop) neither constructs nor destroys 32 packets; what it processed is moved out, empty.
  std::array<Packet, kBurst> rx_batch_;
  std::deque<Packet> loopback_;  // IP packets (no link header) to be received on the next poll
  bool buffers_scarce_ = false;  // the device pool is running low: copy what we keep
};

}  // namespace ustack
