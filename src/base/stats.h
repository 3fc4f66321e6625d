#pragma once
// Per-layer counters. Each layer's list is written once, as an X-macro, so that the struct, the
// printer, the JSON and the telemetry reply can never disagree about a name.

#include <atomic>
#include <cstdint>
#include <string_view>

namespace ustack {

/// Written only by the engine thread; may be read from another thread (telemetry), hence atomic
/// with relaxed ordering: a plain load and store on x86, no locked instruction.
class Counter {
 public:
  void inc(uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  Counter& operator++() {
    inc();
    return *this;
  }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }
  operator uint64_t() const { return get(); }

 private:
  std::atomic<uint64_t> value_{0};
};

#define USTACK_DEV_COUNTERS(X)                                                                      \
  X(rx_frames) X(rx_bytes) X(rx_dropped_multisegment) X(tx_frames) X(tx_bytes) X(tx_dropped_queue_full) \
  X(tx_alloc_failed) X(tx_dropped_link_down) X(pcap_dropped) X(steered_out) X(steered_in)            \
  X(steered_dropped_ring_full) X(arp_copies_out)

#define USTACK_ETH_COUNTERS(X)                                                      \
  X(rx_frames) X(rx_truncated) X(rx_not_for_us) X(rx_unknown_ethertype) X(tx_frames) \
  X(tx_no_route) X(tx_no_buffer)

#define USTACK_ARP_COUNTERS(X)                                                                        \
  X(rx_packets) X(rx_malformed) X(rx_requests) X(rx_replies) X(tx_requests) X(tx_replies)             \
  X(cache_entries_added) X(cache_entries_expired) X(cache_full_evictions) X(resolution_failed)        \
  X(pending_queued) X(pending_dropped_queue_full) X(pending_dropped_unresolved) X(rx_conflicts)

#define USTACK_IPV4_COUNTERS(X)                                                                      \
  X(rx_packets) X(rx_truncated) X(rx_bad_version) X(rx_bad_header_length) X(rx_bad_total_length)     \
  X(rx_bad_checksum) X(rx_bad_source) X(rx_not_for_us) X(rx_unknown_protocol) X(rx_delivered)        \
  X(rx_fragments) X(reasm_ok) X(reasm_overlap_dropped) X(reasm_timeout) X(reasm_evicted_memory)      \
  X(reasm_too_big) X(reasm_bad_fragment) X(rx_options_ignored) X(tx_packets) X(tx_fragments) X(tx_no_route) X(tx_too_big) \
  X(loopback_packets)

#define USTACK_ICMP_COUNTERS(X)                                                                    \
  X(rx_messages) X(rx_malformed) X(rx_bad_checksum) X(rx_echo_requests) X(rx_dest_unreachable)     \
  X(rx_other) X(tx_echo_replies) X(tx_dest_unreachable) X(tx_time_exceeded) X(tx_rate_limited) \
  X(errors_delivered)

#define USTACK_UDP_COUNTERS(X)                                                                    \
  X(rx_datagrams) X(rx_malformed) X(rx_bad_checksum) X(rx_no_port) X(rx_queue_full) X(rx_delivered) X(rx_copied_under_pressure) \
  X(tx_datagrams) X(tx_errors)

#define USTACK_TCP_COUNTERS(X)                                                                     \
  X(rx_segments) X(rx_malformed) X(rx_bad_checksum) X(rx_bad_option) X(rx_no_socket) X(tx_segments) \
  X(tx_resets) X(rx_resets) X(active_opens) X(passive_opens) X(established) X(retransmits)         \
  X(fast_retransmits) X(rto_timeouts) X(syn_retransmits) X(timeouts) X(keepalive_timeouts)        \
  X(listen_syn_dropped) X(listen_ack_dropped) X(challenge_acks) X(challenge_acks_limited)           \
  X(paws_rejected) X(out_of_window) X(ooo_segments) X(ooo_dropped) X(rx_copied_small)             \
  X(tx_payload_copied) X(zero_window_probes) X(time_wait_evicted) X(connect_ports_exhausted) X(delayed_acks) X(aborts_on_close) \
  X(rx_after_close) X(rx_handed_to_claimant)

#define USTACK_DECLARE_COUNTER(name) Counter name;
#define USTACK_VISIT_COUNTER(name) fn(std::string_view(#name), name.get());

#define USTACK_COUNTER_GROUP(Type, LIST)                     \
  struct Type {                                              \
    LIST(USTACK_DECLARE_COUNTER)                             \
    template <typename Fn>                                   \
    void for_each(Fn&& fn) const { LIST(USTACK_VISIT_COUNTER) } \
  };

USTACK_COUNTER_GROUP(DevStats, USTACK_DEV_COUNTERS)
USTACK_COUNTER_GROUP(EthStats, USTACK_ETH_COUNTERS)
USTACK_COUNTER_GROUP(ArpStats, USTACK_ARP_COUNTERS)
USTACK_COUNTER_GROUP(Ipv4Stats, USTACK_IPV4_COUNTERS)
USTACK_COUNTER_GROUP(IcmpStats, USTACK_ICMP_COUNTERS)
USTACK_COUNTER_GROUP(UdpStats, USTACK_UDP_COUNTERS)
USTACK_COUNTER_GROUP(TcpStats, USTACK_TCP_COUNTERS)

/// Every counter of one engine, grouped by layer.
struct StackStats {
  DevStats dev;
  EthStats eth;
  ArpStats arp;
  Ipv4Stats ipv4;
  IcmpStats icmp;
  UdpStats udp;
  TcpStats tcp;

  /// Calls fn(layer, name, value) for every counter, in a stable order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    dev.for_each([&](std::string_view n, uint64_t v) { fn("dev", n, v); });
    eth.for_each([&](std::string_view n, uint64_t v) { fn("eth", n, v); });
    arp.for_each([&](std::string_view n, uint64_t v) { fn("arp", n, v); });
    ipv4.for_each([&](std::string_view n, uint64_t v) { fn("ipv4", n, v); });
    icmp.for_each([&](std::string_view n, uint64_t v) { fn("icmp", n, v); });
    udp.for_each([&](std::string_view n, uint64_t v) { fn("udp", n, v); });
    tcp.for_each([&](std::string_view n, uint64_t v) { fn("tcp", n, v); });
  }
};

}  // namespace ustack
