// Engines that share one device (USTACK_CORES=N), over the in-memory wire: N stacks on the
// queues of one port (address 198.18.0.1) against a single-engine peer (198.18.0.2), with every
// way a device may spread flows over its queues: RSS under the symmetric key (each flow already
// on its owner's queue), a hash of the device's own (every flow on a queue that is not its
// owner's), and one queue for everything. Connections both ways, every byte echoed and checked,
// and the things that would break if a flow reached two engines: no RST anywhere, each
// connection on the engine that owns its 4-tuple, no 4-tuple on two engines.

#include <gtest/gtest.h>

#include <atomic>
#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/bytes.h"
#include "base/flow_hash.h"
#include "base/port_directory.h"
#include "base/rng.h"
#include "base/mpsc_ring.h"
#include "base/spsc_ring.h"
#include "dev/memory_wire.h"
#include "dev/steering.h"
#include "stack/stack.h"
#include "tcp/tcp_layer.h"
#include "tcp/tcp_listener.h"

namespace ustack {
namespace {

using tcp::State;
using tcp::TcpConnection;
using Spread = dev::MemoryQueues::Spread;

constexpr Ipv4Addr kAddrA(198, 18, 0, 1);
constexpr Ipv4Addr kAddrB(198, 18, 0, 2);
constexpr uint16_t kPortOnB = 8080;  // the peer's echo server; A's engines connect to it
constexpr uint16_t kPortOnA = 9090;  // each of A's engines listens here; the peer connects

StackConfig config_for(Ipv4Addr addr, uint64_t seed, EngineShare engine) {
  StackConfig c;
  c.address = Ipv4Cidr{addr, 24};
  c.seed = seed;
  c.engine = engine;
  return c;
}

std::vector<uint8_t> random_bytes(Rng& rng, size_t len) {
  std::vector<uint8_t> d(len);
  for (auto& b : d) b = static_cast<uint8_t>(rng.next());
  return d;
}

/// One end of an echo exchange: a client writes `data` and checks the echo, then closes; a server
/// writes back what it reads and closes after the client's FIN.
struct EchoEnd {
  std::shared_ptr<TcpConnection> conn;
  bool server = false;
  std::vector<uint8_t> data;  // client: what to send and expect back; server: what to send back
  size_t sent = 0;
  size_t received = 0;
  bool mismatch = false;
  bool eof = false;
  bool closed = false;
  int error = 0;

  bool done() const { return closed || error != 0; }

  void pump(Instant now) {
    if (!conn || done()) return;
    TcpConnection& c = *conn;
    if (c.state() == State::kSynSent || c.state() == State::kSynReceived) return;
    std::array<uint8_t, 4096> buf;
    while (!eof) {
      auto got = c.receive(now, buf, false);
      if (!got) {
        if (got.error() != EAGAIN) error = got.error();
        break;
      }
      if (*got == 0) {
        eof = true;
        break;
      }
      if (server) {
        data.insert(data.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*got));
      } else if (received + *got > data.size() || std::memcmp(buf.data(), data.data() + received, *got) != 0) {
        mismatch = true;
      }
      received += *got;
    }
    while (sent < data.size()) {
      auto n = c.send(now, std::span(data).subspan(sent));
      if (!n) {
        error = n.error();
        return;
      }
      if (*n == 0) break;
      sent += *n;
    }
    const bool finished = server ? eof && sent == data.size() : received == data.size();
    if (finished) {
      c.close(now);
      closed = true;
    }
  }
};

bool all_done(const std::vector<EchoEnd>& ends) {
  return std::all_of(ends.begin(), ends.end(), [](const EchoEnd& e) { return e.done(); });
}

class MultiEngineSim {
 public:
  /// `tune` may change each engine's configuration (the same for all).
  MultiEngineSim(uint32_t engines, Spread spread, uint64_t seed, void (*tune)(StackConfig&) = nullptr)
      : wire_(clock_, seed, dev::test_caps(1), dev::test_caps(2)),
        queues_(wire_.a(), engines, spread),
        group_(engines, 1024, &ports_),
        peer_(config_for(kAddrB, seed + 100, {}), wire_.b()) {
    for (uint32_t i = 0; i < engines; ++i) {
      views_.push_back(std::make_unique<dev::SteeredDevice>(queues_.queue(i), group_, i));
      StackConfig c = config_for(kAddrA, seed + i, {i, engines, &ports_});
      if (tune) tune(c);
      engines_.push_back(std::make_unique<Stack>(c, *views_.back()));
    }
    for (auto& e : engines_) e->start(now());
    peer_.start(now());
  }

  Instant now() const { return clock_.now(); }
  uint32_t engine_count() const { return static_cast<uint32_t>(engines_.size()); }
  Stack& engine(uint32_t i) { return *engines_[i]; }
  Stack& peer() { return peer_; }

  /// Polls every stack, runs `app`, flushes, and moves the clock to the next event, until
  /// `done()` or 60 s of simulated time.
  template <typename App, typename Done>
  bool run(App&& app, Done&& done) {
    const Instant deadline = now() + 60s;
    while (!done()) {
      if (now() >= deadline) return false;
      for (auto& e : engines_) e->poll(now());
      peer_.poll(now());
      app(now());
      for (auto& e : engines_) e->flush();
      peer_.flush();
      Instant next = std::min({wire_.a().next_arrival(), wire_.b().next_arrival(), peer_.next_wakeup(), now() + 1ms});
      for (auto& e : engines_) next = std::min(next, e->next_wakeup());
      // A frame forwarded between engines is waiting in a ring: poll again at once.
      if (next > now() && !forwarded_pending()) clock_.set(next);
    }
    return true;
  }

 private:
  bool forwarded_pending() {
    for (uint32_t from = 0; from < engine_count(); ++from) {
      for (uint32_t to = 0; to < engine_count(); ++to) {
        if (from != to && !group_.ring(from, to).empty()) return true;
      }
    }
    return false;
  }

  ManualClock clock_;
  dev::MemoryWire wire_;
  dev::MemoryQueues queues_;
  PortDirectory ports_;
  dev::SteeringGroup group_;
  std::vector<std::unique_ptr<dev::SteeredDevice>> views_;
  std::vector<std::unique_ptr<Stack>> engines_;
  Stack peer_;
};

std::string spread_name(Spread s) {
  switch (s) {
    case Spread::kRss: return "rss";
    case Spread::kOtherHash: return "other-hash";
    case Spread::kQueueZero: return "queue-zero";
  }
  return "?";
}

class MultiEngine : public ::testing::TestWithParam<std::tuple<uint32_t, Spread>> {};

TEST_P(MultiEngine, EveryFlowStaysOnItsEngineAndEveryByteArrives) {
  const auto [engines, spread] = GetParam();
  constexpr size_t kOpensPerEngine = 40;   // A's engines connect to the peer
  constexpr size_t kOpensFromPeer = 120;   // the peer connects to A
  MultiEngineSim sim(engines, spread, 11);
  Rng rng(5);
  const auto options = tcp::SocketOptions::defaults(sim.peer().config().tcp);

  tcp::PortBinding peer_binding;
  ASSERT_EQ(sim.peer().tcp().bind(peer_binding, Ipv4Addr::any(), kPortOnB), 0);
  tcp::TcpListener peer_listener(peer_binding, 512, options);
  ASSERT_EQ(sim.peer().tcp().listen(peer_listener), 0);
  std::vector<tcp::PortBinding> bindings(engines);
  std::vector<std::unique_ptr<tcp::TcpListener>> listeners;
  for (uint32_t i = 0; i < engines; ++i) {
    bindings[i].reuse_port = true;  // one listener per engine, as SO_REUSEPORT servers have
    ASSERT_EQ(sim.engine(i).tcp().bind(bindings[i], Ipv4Addr::any(), kPortOnA), 0);
    listeners.push_back(std::make_unique<tcp::TcpListener>(bindings[i], 512, options));
    ASSERT_EQ(sim.engine(i).tcp().listen(*listeners.back()), 0);
  }

  std::vector<EchoEnd> clients;             // on A's engines and on the peer
  std::vector<uint32_t> client_engine;      // engines: an A engine; `engines`: the peer
  std::vector<EchoEnd> servers;
  std::vector<uint32_t> server_engine;
  for (uint32_t i = 0; i < engines; ++i) {
    for (size_t k = 0; k < kOpensPerEngine; ++k) {
      auto c = sim.engine(i).tcp().connect(sim.now(), nullptr, kAddrB, kPortOnB, options);
      ASSERT_TRUE(c) << "errno " << c.error();
      EXPECT_TRUE(EngineShare({i, engines}).owns_flow(kAddrA, kAddrB, (*c)->tuple().local_port, kPortOnB))
          << "engine " << i << " opened from port " << (*c)->tuple().local_port << ", owned by another engine";
      clients.push_back(EchoEnd{*c, false, random_bytes(rng, 1 + rng.below(16384))});
      client_engine.push_back(i);
    }
  }
  for (size_t k = 0; k < kOpensFromPeer; ++k) {
    auto c = sim.peer().tcp().connect(sim.now(), nullptr, kAddrA, kPortOnA, options);
    ASSERT_TRUE(c) << "errno " << c.error();
    clients.push_back(EchoEnd{*c, false, random_bytes(rng, 1 + rng.below(16384))});
    client_engine.push_back(engines);
  }

  const bool finished = sim.run(
      [&](Instant now) {
        while (auto c = peer_listener.accept()) {
          servers.push_back(EchoEnd{std::move(c), true, {}});
          server_engine.push_back(engines);
        }
        for (uint32_t i = 0; i < engines; ++i) {
          while (auto c = listeners[i]->accept()) {
            servers.push_back(EchoEnd{std::move(c), true, {}});
            server_engine.push_back(i);
          }
        }
        for (auto& c : clients) c.pump(now);
        for (auto& s : servers) s.pump(now);
      },
      [&] {
        return servers.size() == clients.size() && all_done(clients) && all_done(servers);
      });
  ASSERT_TRUE(finished) << "accepted " << servers.size() << " of " << clients.size() << ", clients left "
                        << std::count_if(clients.begin(), clients.end(), [](const EchoEnd& e) { return !e.done(); });

  for (size_t k = 0; k < clients.size(); ++k) {
    SCOPED_TRACE("client " + std::to_string(k) + " on " +
                 (client_engine[k] == engines ? std::string("the peer") : "engine " + std::to_string(client_engine[k])));
    EXPECT_EQ(clients[k].error, 0);
    EXPECT_FALSE(clients[k].mismatch);
    EXPECT_EQ(clients[k].received, clients[k].data.size());
  }
  // Each accepted connection is on the engine that owns its 4-tuple, and on no other.
  std::set<std::tuple<uint32_t, uint16_t, uint32_t, uint16_t>> tuples_on_a;
  std::vector<size_t> accepted_per_engine(engines);
  for (size_t k = 0; k < servers.size(); ++k) {
    EXPECT_EQ(servers[k].error, 0);
    if (server_engine[k] == engines) continue;
    const tcp::FourTuple& t = servers[k].conn->tuple();
    EXPECT_TRUE(EngineShare({server_engine[k], engines}).owns_flow(t.local_addr, t.remote_addr, t.local_port, t.remote_port))
        << "a connection from port " << t.remote_port << " was accepted by engine " << server_engine[k];
    EXPECT_TRUE(tuples_on_a.emplace(t.local_addr.value(), t.local_port, t.remote_addr.value(), t.remote_port).second);
    ++accepted_per_engine[server_engine[k]];
  }
  for (uint32_t i = 0; i < engines; ++i) {
    EXPECT_GT(accepted_per_engine[i], kOpensFromPeer / engines / 2) << "engine " << i << " accepted too few";
  }
  // A segment that reached an engine without its connection would have been answered with a RST.
  uint64_t steered = 0;
  for (uint32_t i = 0; i < engines; ++i) {
    EXPECT_EQ(sim.engine(i).stats().tcp.tx_resets, 0u) << "engine " << i;
    EXPECT_EQ(sim.engine(i).stats().dev.steered_dropped_ring_full, 0u) << "engine " << i;
    steered += sim.engine(i).stats().dev.steered_out;
    // Only engine 0 answers ARP; every engine learned the peer's address.
    EXPECT_EQ(sim.engine(i).stats().arp.tx_replies > 0, i == 0 && sim.engine(0).stats().arp.rx_requests > 0)
        << "engine " << i;
    EXPECT_EQ(sim.engine(i).arp_entries(), 1u) << "engine " << i;
  }
  EXPECT_EQ(sim.peer().stats().tcp.tx_resets, 0u);
  if (spread == Spread::kRss) {
    EXPECT_EQ(steered, 0u) << "RSS put every frame on its owner's queue: nothing to forward";
  } else {
    EXPECT_GT(steered, 0u);
  }
  std::printf("[ Multi    ] %u engines, %s: %zu connections echoed, %llu frames steered between engines\n",
              engines, spread_name(spread).c_str(), clients.size(), static_cast<unsigned long long>(steered));
}

INSTANTIATE_TEST_SUITE_P(EnginesAndSpreads, MultiEngine,
                         ::testing::Combine(::testing::Values(2u, 3u, 4u),
                                            ::testing::Values(Spread::kRss, Spread::kOtherHash, Spread::kQueueZero)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "Engines_" +
                                  (std::get<1>(info.param) == Spread::kRss         ? std::string("Rss")
                                   : std::get<1>(info.param) == Spread::kOtherHash ? std::string("OtherHash")
                                                                                    : std::string("QueueZero"));
                         });

// One listening socket on one engine (a server that listens once, without SO_REUSEPORT): the
// port directory steers every flow to its port there, whatever queue the device put it on.
class OneListener : public ::testing::TestWithParam<std::tuple<uint32_t, Spread>> {};

TEST_P(OneListener, GetsEveryConnectionWhateverQueueItCameOn) {
  const auto [engines, spread] = GetParam();
  constexpr size_t kOpens = 150;
  MultiEngineSim sim(engines, spread, 23);
  Rng rng(9);
  const auto options = tcp::SocketOptions::defaults(sim.peer().config().tcp);
  const uint32_t listening = engines - 1;  // not engine 0, which also answers ARP
  tcp::PortBinding binding;
  ASSERT_EQ(sim.engine(listening).tcp().bind(binding, Ipv4Addr::any(), kPortOnA), 0);
  tcp::TcpListener listener(binding, 512, options);
  ASSERT_EQ(sim.engine(listening).tcp().listen(listener), 0);

  std::vector<EchoEnd> clients, servers;
  for (size_t k = 0; k < kOpens; ++k) {
    auto c = sim.peer().tcp().connect(sim.now(), nullptr, kAddrA, kPortOnA, options);
    ASSERT_TRUE(c) << "errno " << c.error();
    clients.push_back(EchoEnd{*c, false, random_bytes(rng, 1 + rng.below(8192))});
  }
  const bool finished = sim.run(
      [&](Instant now) {
        while (auto c = listener.accept()) servers.push_back(EchoEnd{std::move(c), true, {}});
        for (auto& c : clients) c.pump(now);
        for (auto& s : servers) s.pump(now);
      },
      [&] {
        return servers.size() == clients.size() && all_done(clients) && all_done(servers);
      });
  ASSERT_TRUE(finished) << "accepted " << servers.size() << " of " << clients.size();
  for (const EchoEnd& c : clients) {
    EXPECT_EQ(c.error, 0);
    EXPECT_FALSE(c.mismatch);
    EXPECT_EQ(c.received, c.data.size());
  }
  size_t not_hash_owned = 0;
  for (const EchoEnd& s : servers) {
    const tcp::FourTuple& t = s.conn->tuple();
    if (!EngineShare({listening, engines}).owns_flow(t.local_addr, t.remote_addr, t.local_port, t.remote_port)) {
      ++not_hash_owned;
    }
  }
  EXPECT_GT(not_hash_owned, 0u) << "every flow hashed to the listening engine: the test proves nothing";
  for (uint32_t i = 0; i < engines; ++i) {
    EXPECT_EQ(sim.engine(i).stats().tcp.tx_resets, 0u) << "engine " << i;
    if (i != listening) {
      EXPECT_EQ(sim.engine(i).stats().tcp.passive_opens, 0u) << "engine " << i;
    }
  }
  EXPECT_EQ(sim.peer().stats().tcp.tx_resets, 0u);
}

INSTANTIATE_TEST_SUITE_P(EnginesAndSpreads, OneListener,
                         ::testing::Combine(::testing::Values(2u, 4u),
                                            ::testing::Values(Spread::kRss, Spread::kOtherHash, Spread::kQueueZero)),
                         [](const auto& info) {
                           std::string spread = spread_name(std::get<1>(info.param));
                           std::erase(spread, '-');
                           return std::to_string(std::get<0>(info.param)) + "Engines_" + spread;
                         });

/// SO_REUSEPORT listeners on kPortOnA, one on each engine of a simulation.
struct ReusePortListeners {
  std::vector<tcp::PortBinding> bindings;
  std::vector<std::unique_ptr<tcp::TcpListener>> listeners;

  void open(MultiEngineSim& sim, const tcp::SocketOptions& options) {
    bindings.resize(sim.engine_count());
    for (uint32_t i = 0; i < sim.engine_count(); ++i) {
      bindings[i].reuse_port = true;
      ASSERT_EQ(sim.engine(i).tcp().bind(bindings[i], Ipv4Addr::any(), kPortOnA), 0);
      listeners.push_back(std::make_unique<tcp::TcpListener>(bindings[i], 512, options));
      ASSERT_EQ(sim.engine(i).tcp().listen(*listeners.back()), 0);
    }
  }
  /// Engine `i`'s listener closes and lets go of the port.
  void close(MultiEngineSim& sim, uint32_t i) {
    sim.engine(i).tcp().unlisten(sim.now(), *listeners[i]);
    sim.engine(i).tcp().unbind(bindings[i]);
  }
};

bool hashes_to_engine0(const tcp::FourTuple& t) {
  return EngineShare({0, 2}).owns_flow(t.local_addr, t.remote_addr, t.local_port, t.remote_port);
}

/// `opens` echo clients from the peer to kPortOnA, served by what `serving` accepts, run until
/// every one is accepted and done. Fills `clients`, and counts the flows that hash to engine 0.
void run_echo_clients(MultiEngineSim& sim, tcp::TcpListener& serving, const tcp::SocketOptions& options, Rng& rng,
                      size_t opens, std::vector<EchoEnd>& clients, size_t& hashed_to_engine0) {
  std::vector<EchoEnd> servers;
  for (size_t k = 0; k < opens; ++k) {
    auto c = sim.peer().tcp().connect(sim.now(), nullptr, kAddrA, kPortOnA, options);
    ASSERT_TRUE(c) << "errno " << c.error();
    if (hashes_to_engine0((*c)->tuple())) ++hashed_to_engine0;
    clients.push_back(EchoEnd{*c, false, random_bytes(rng, 1 + rng.below(4096))});
  }
  const bool finished = sim.run(
      [&](Instant now) {
        while (auto c = serving.accept()) servers.push_back(EchoEnd{std::move(c), true, {}});
        for (auto& c : clients) c.pump(now);
        for (auto& s : servers) s.pump(now);
      },
      [&] { return servers.size() == clients.size() && all_done(clients); });
  ASSERT_TRUE(finished) << "accepted " << servers.size() << " of " << clients.size();
}

// SO_REUSEPORT listeners on both engines; one closes. Connection requests whose flows hash to
// its engine go to the listener left, not to an engine that would reset them.
TEST(MultiEngine, WhenOneReusePortListenerClosesTheOtherTakesItsShare) {
  constexpr size_t kOpens = 100;
  MultiEngineSim sim(2, Spread::kRss, 29);
  Rng rng(3);
  const auto options = tcp::SocketOptions::defaults(sim.peer().config().tcp);
  ReusePortListeners reuse;
  reuse.open(sim, options);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  reuse.close(sim, 0);
  std::vector<EchoEnd> clients;
  size_t hashed_to_closed = 0;
  ASSERT_NO_FATAL_FAILURE(run_echo_clients(sim, *reuse.listeners[1], options, rng, kOpens, clients, hashed_to_closed));
  ASSERT_GT(hashed_to_closed, 0u);
  for (const EchoEnd& c : clients) EXPECT_EQ(c.error, 0);
  EXPECT_EQ(sim.engine(0).stats().tcp.tx_resets, 0u);
  EXPECT_EQ(sim.engine(1).stats().tcp.tx_resets, 0u);
}

// The same, but the engine whose listener closes still has a connection it accepted: its port
// stays in use there, so steering keeps sending it the flows that hash to it. It hands the new
// ones to the engine whose listener is left (TcpLayer::hand_to_claimant) instead of resetting
// them, and keeps serving its old connection.
TEST(MultiEngine, AClosedReusePortListenerWithConnectionsLeftHandsNewFlowsOn) {
  constexpr size_t kOpens = 100;
  MultiEngineSim sim(2, Spread::kRss, 37);
  Rng rng(5);
  const auto options = tcp::SocketOptions::defaults(sim.peer().config().tcp);
  ReusePortListeners reuse;
  reuse.open(sim, options);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  auto& listeners = reuse.listeners;
  // A connection engine 0 accepts, kept open.
  std::shared_ptr<TcpConnection> old_client;
  for (int attempt = 0; attempt < 64 && !old_client; ++attempt) {
    auto c = sim.peer().tcp().connect(sim.now(), nullptr, kAddrA, kPortOnA, options);
    ASSERT_TRUE(c) << "errno " << c.error();
    if (hashes_to_engine0((*c)->tuple())) old_client = *c;
    else (*c)->abort(sim.now(), 0);
  }
  ASSERT_TRUE(old_client) << "no flow hashed to engine 0";
  std::shared_ptr<TcpConnection> old_server;
  ASSERT_TRUE(sim.run([&](Instant) { if (!old_server) old_server = listeners[0]->accept(); },
                      [&] { return old_server && old_client->state() == State::kEstablished; }));
  reuse.close(sim, 0);

  std::vector<EchoEnd> clients;
  size_t hashed_to_closed = 0;
  ASSERT_NO_FATAL_FAILURE(run_echo_clients(sim, *listeners[1], options, rng, kOpens, clients, hashed_to_closed));
  ASSERT_GT(hashed_to_closed, 0u);
  for (const EchoEnd& c : clients) {
    EXPECT_EQ(c.error, 0);
    EXPECT_FALSE(c.mismatch);
  }
  EXPECT_EQ(sim.engine(0).stats().tcp.tx_resets, 0u);
  EXPECT_EQ(sim.engine(1).stats().tcp.tx_resets, 0u);
  EXPECT_GE(sim.engine(0).stats().tcp.rx_handed_to_claimant, hashed_to_closed) << "at least each SYN";
  // Engine 0's old connection still works.
  const std::string_view text = "still here";
  auto sent = old_client->send(sim.now(), std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_TRUE(sent);
  std::string got;
  ASSERT_TRUE(sim.run(
      [&](Instant now) {
        std::array<uint8_t, 64> buf;
        auto n = old_server->receive(now, buf, false);
        if (n && *n > 0) got.append(reinterpret_cast<const char*>(buf.data()), *n);
      },
      [&] { return got.size() == text.size(); }));
  EXPECT_EQ(got, text);
}

TEST(MultiEngine, BoundUdpSocketReceivesFromEverySourcePort) {
  for (Spread spread : {Spread::kRss, Spread::kOtherHash}) {
    SCOPED_TRACE(spread_name(spread));
    constexpr uint32_t kEngines = 3;
    constexpr size_t kSenders = 90;
    MultiEngineSim sim(kEngines, spread, 31);
    udp::UdpSocket server;
    ASSERT_EQ(sim.engine(1).udp().bind(server, udp::Endpoint{Ipv4Addr::any(), 5353}), 0);
    std::vector<udp::UdpSocket> senders(kSenders);
    std::set<uint16_t> from_ports;
    auto receive = [&](Instant) {
      while (!server.rx_queue.empty()) {
        from_ports.insert(server.rx_queue.front().from.port);
        server.pop_front();
      }
    };
    // The first one resolves the address (the ARP queue holds only a few datagrams); then the rest.
    for (size_t k = 0; k < kSenders; ++k) {
      const std::array<uint8_t, 4> payload{static_cast<uint8_t>(k), 1, 2, 3};
      ASSERT_TRUE(sim.peer().udp().send(sim.now(), senders[k], payload, udp::Endpoint{kAddrA, 5353}));
      if (k == 0) {
        ASSERT_TRUE(sim.run(receive, [&] { return from_ports.size() == 1; }));
      }
    }
    ASSERT_TRUE(sim.run(receive, [&] { return from_ports.size() == kSenders; }))
        << "received from " << from_ports.size() << " of " << kSenders << " source ports";
    for (uint32_t i = 0; i < kEngines; ++i) {
      EXPECT_EQ(sim.engine(i).stats().udp.rx_no_port, 0u) << "engine " << i << " had no socket for a datagram";
    }
    for (auto& s : senders) sim.peer().udp().unbind(s);
    sim.engine(1).udp().unbind(server);
  }
}

TEST(MultiEngine, PortsConflictAcrossEnginesAsInOneTable) {
  MultiEngineSim sim(2, Spread::kRss, 41, [](StackConfig& c) {
    c.tcp.ephemeral_low = c.udp.ephemeral_low = 40000;
    c.tcp.ephemeral_high = c.udp.ephemeral_high = 40003;
  });
  tcp::TcpLayer& tcp0 = sim.engine(0).tcp();
  tcp::TcpLayer& tcp1 = sim.engine(1).tcp();
  // TCP: a port one engine holds is in use on the other, unless both sockets share it.
  tcp::PortBinding a, b, c;
  ASSERT_EQ(tcp0.bind(a, Ipv4Addr::any(), 7000), 0);
  EXPECT_EQ(tcp1.bind(b, Ipv4Addr::any(), 7000), EADDRINUSE);
  tcp0.unbind(a);
  EXPECT_EQ(tcp1.bind(b, Ipv4Addr::any(), 7000), 0) << "released when the socket let go";
  tcp1.unbind(b);
  a.reuse_port = b.reuse_port = true;
  ASSERT_EQ(tcp0.bind(a, Ipv4Addr::any(), 7000), 0);
  EXPECT_EQ(tcp1.bind(b, Ipv4Addr::any(), 7000), 0) << "SO_REUSEPORT on both sides shares it";
  EXPECT_EQ(tcp1.bind(c, Ipv4Addr::any(), 7000), EADDRINUSE) << "but not with a socket without it";
  tcp0.unbind(a);
  tcp1.unbind(b);
  // Ephemeral ports skip what the other engine holds: engine 0 takes three of the four.
  std::vector<tcp::PortBinding> held(3);
  for (uint16_t k = 0; k < 3; ++k) ASSERT_EQ(tcp0.bind(held[k], Ipv4Addr::any(), static_cast<uint16_t>(40000 + k)), 0);
  ASSERT_EQ(tcp1.bind(c, Ipv4Addr::any(), 0), 0);
  EXPECT_EQ(c.port, 40003);
  tcp::PortBinding d;
  EXPECT_EQ(tcp1.bind(d, Ipv4Addr::any(), 0), EADDRINUSE) << "none left";
  for (auto& h : held) tcp0.unbind(h);
  tcp1.unbind(c);
  // A connection from a bound port keeps the port its engine's, after the socket lets go of its
  // binding (as connect() does): another engine may not take it.
  tcp::PortBinding bound;
  ASSERT_EQ(tcp0.bind(bound, Ipv4Addr::any(), 7200), 0);
  const auto options = tcp::SocketOptions::defaults(sim.engine(0).config().tcp);
  auto conn = tcp0.connect(sim.now(), &bound, kAddrB, kPortOnB, options);
  ASSERT_TRUE(conn);
  tcp0.unbind(bound);
  tcp::PortBinding other;
  EXPECT_EQ(tcp1.bind(other, Ipv4Addr::any(), 7200), EADDRINUSE) << "the connection still holds it";
  other.reuse_port = true;
  EXPECT_EQ(tcp1.bind(other, Ipv4Addr::any(), 7200), EADDRINUSE) << "and did not ask to share it";
  (*conn)->abort(sim.now(), 0);
  // UDP: the same, with SO_REUSEADDR sharing too.
  udp::UdpLayer& udp0 = sim.engine(0).udp();
  udp::UdpLayer& udp1 = sim.engine(1).udp();
  udp::UdpSocket u, v, shared0, shared1;
  ASSERT_EQ(udp0.bind(u, udp::Endpoint{Ipv4Addr::any(), 5000}), 0);
  EXPECT_EQ(udp1.bind(v, udp::Endpoint{Ipv4Addr::any(), 5000}), EADDRINUSE);
  udp0.unbind(u);
  shared0.reuse_addr = shared1.reuse_addr = true;
  ASSERT_EQ(udp0.bind(shared0, udp::Endpoint{Ipv4Addr::any(), 5000}), 0);
  EXPECT_EQ(udp1.bind(shared1, udp::Endpoint{Ipv4Addr::any(), 5000}), 0);
  udp0.unbind(shared0);
  udp1.unbind(shared1);
}

TEST(MultiEngine, ActiveOpensPickSourcePortsTheirEngineOwns) {
  for (uint32_t engines : {2u, 4u}) {
    for (uint32_t i = 0; i < engines; ++i) {
      ManualClock clock;
      dev::MemoryPort port(clock, dev::test_caps(1), "a");
      Stack s(config_for(kAddrA, 1, {i, engines}), port);
      const auto options = tcp::SocketOptions::defaults(s.config().tcp);
      std::vector<std::shared_ptr<TcpConnection>> conns;
      for (int k = 0; k < 200; ++k) {
        auto c = s.tcp().connect(clock.now(), nullptr, kAddrB, 80, options);
        ASSERT_TRUE(c);
        const tcp::FourTuple& t = (*c)->tuple();
        ASSERT_EQ(engine_for_hash(flow_hash(kAddrB, kAddrA, 80, t.local_port), engines), i)
            << "the reply to port " << t.local_port << " would reach another engine";
        conns.push_back(std::move(*c));
      }
      // UDP connect() too.
      udp::UdpSocket u;
      ASSERT_EQ(s.udp().connect(u, udp::Endpoint{kAddrB, 53}), 0);
      EXPECT_EQ(engine_for_hash(flow_hash(kAddrB, kAddrA, 53, u.local.port), engines), i);
      s.udp().unbind(u);
    }
  }
}

TEST(MultiEngine, FramesGoToTheOwnerOfTheirFlow) {
  // An ICMP port unreachable quoting our UDP datagram goes where that flow's replies go.
  std::vector<uint8_t> frame(14 + 20 + 8 + 20 + 8, 0);
  frame[12] = 0x08;  // IPv4
  uint8_t* ip = frame.data() + 14;
  ip[0] = 0x45;
  ip[9] = 1;  // ICMP
  kAddrB.store(ip + 12);
  kAddrA.store(ip + 16);
  ip[20] = 3;  // destination unreachable
  uint8_t* inner = ip + 28;
  inner[0] = 0x45;
  inner[9] = 17;
  kAddrA.store(inner + 12);
  kAddrB.store(inner + 16);
  store_be16(inner + 20, 40000);
  store_be16(inner + 22, 53);
  for (uint32_t engines : {2u, 3u, 4u}) {
    EXPECT_EQ(dev::frame_owner(frame, engines, 0), engine_for_hash(flow_hash(kAddrB, kAddrA, 53, 40000), engines));
  }
  // ARP goes to every engine; a frame too short to read stays put.
  std::vector<uint8_t> arp(42, 0);
  arp[12] = 0x08;
  arp[13] = 0x06;
  EXPECT_EQ(dev::frame_owner(arp, 4, 2), dev::kEveryEngine);
  EXPECT_EQ(dev::frame_owner(std::span(arp).first(10), 4, 2), 2u);
  // A non-first fragment (no ports) goes by the address pair.
  frame[14 + 9] = 17;
  store_be16(ip + 6, 0x0010);  // offset 128 bytes
  EXPECT_EQ(dev::frame_owner(frame, 4, 0), engine_for_hash(flow_hash(kAddrB, kAddrA), 4));
}

TEST(MultiEngine, AFrameForwardedToANappingEngineWakesIt) {
  ManualClock clock;
  dev::MemoryWire wire(clock, 1, dev::test_caps(1), dev::test_caps(2));
  dev::MemoryQueues queues(wire.a(), 2, Spread::kQueueZero);
  dev::SteeringGroup group(2);
  dev::SteeredDevice first(queues.queue(0), group, 0);
  dev::SteeredDevice second(queues.queue(1), group, 1);
  // A TCP segment of a flow engine 1 owns, arriving on queue 0.
  std::vector<uint8_t> frame(14 + 20 + 20, 0);
  frame[12] = 0x08;
  uint8_t* ip = frame.data() + 14;
  ip[0] = 0x45;
  ip[9] = 6;
  kAddrB.store(ip + 12);
  kAddrA.store(ip + 16);
  uint16_t port = 40000;
  while (engine_for_hash(flow_hash(kAddrB, kAddrA, port, 80), 2) != 1) ++port;
  store_be16(ip + 20, port);
  store_be16(ip + 22, 80);

  std::atomic<bool> woke{false};
  std::thread napper([&] {
    second.wait_rx(10s);  // the queue itself never wakes it: only the doorbell can, early
    woke = true;
  });
  std::this_thread::sleep_for(20ms);  // (if the nap has not begun yet, it sees the ring and returns)
  Packet p = Packet::copy_of(frame);
  wire.b().tx_burst({&p, 1});
  std::array<Packet, 4> out;
  EXPECT_EQ(first.rx_burst(out), 0u) << "engine 0 keeps nothing of engine 1's flow";
  EXPECT_EQ(first.handed_on(), 1u) << "but it did work: its engine must not count itself idle";
  for (int i = 0; i < 4000 && !woke; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(woke) << "the nap went on although a frame was forwarded";
  napper.join();
  EXPECT_EQ(second.rx_burst(out), 1u);
}

TEST(MultiEngine, ForwardedFramesDoNotStarveTheQueue) {
  ManualClock clock;
  dev::MemoryWire wire(clock, 1, dev::test_caps(1), dev::test_caps(2));
  dev::MemoryQueues queues(wire.a(), 2, Spread::kQueueZero);
  dev::SteeringGroup group(2);
  dev::SteeredDevice first(queues.queue(0), group, 0);
  // Engine 1 has forwarded 100 frames to engine 0, more than a burst.
  for (int i = 0; i < 100; ++i) {
    Packet p = Packet::copy_of(std::vector<uint8_t>(60, static_cast<uint8_t>(i)));
    ASSERT_TRUE(group.ring(1, 0).push(p));
  }
  // One ARP frame on engine 0's own queue (every engine takes ARP).
  std::vector<uint8_t> arp(42, 0);
  arp[12] = 0x08;
  arp[13] = 0x06;
  Packet on_queue = Packet::copy_of(arp);
  wire.b().tx_burst({&on_queue, 1});
  std::array<Packet, 32> out;
  const size_t n = first.rx_burst(out);
  EXPECT_EQ(n, 17u) << "16 forwarded frames and the queue's";
  EXPECT_EQ(std::vector<uint8_t>(out[n - 1].bytes().begin(), out[n - 1].bytes().end()), arp) << "the queue's frame came too";
}

TEST(SpscRing, HandsItemsFromOneThreadToAnotherInOrder) {
  SpscRing<uint64_t> ring(64);  // small: both sides often find it full or empty
  constexpr uint64_t kItems = 1'000'000;
  std::thread producer([&] {
    for (uint64_t i = 1; i <= kItems; ++i) {
      uint64_t item = i;
      while (!ring.push(item)) std::this_thread::yield();
    }
  });
  uint64_t expected = 1;
  uint64_t out_of_order = 0;
  while (expected <= kItems) {
    uint64_t item = 0;
    if (!ring.pop(item)) {
      std::this_thread::yield();
      continue;
    }
    if (item != expected) ++out_of_order;
    expected = item + 1;
  }
  producer.join();
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_TRUE(ring.empty());
  uint64_t item = 0;
  EXPECT_FALSE(ring.pop(item));
  for (uint64_t i = 0; i < ring.capacity(); ++i) ASSERT_TRUE(ring.push(i));
  EXPECT_FALSE(ring.push(item));  // full: refused, the item stays with the caller
}

TEST(MpscRing, HandsEveryItemOfSeveralThreadsToOneInEachThreadsOrder) {
  MpscRing<uint64_t> ring(64);  // small: producers often find it full, and race for slots
  constexpr uint64_t kProducers = 3, kItemsEach = 300'000;
  std::vector<std::thread> producers;
  for (uint64_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&ring, p] {
      for (uint64_t i = 1; i <= kItemsEach; ++i) {
        uint64_t item = p << 32 | i;
        while (!ring.push(item)) std::this_thread::yield();
      }
    });
  }
  std::vector<uint64_t> last(kProducers, 0);
  uint64_t received = 0, out_of_order = 0;
  while (received < kProducers * kItemsEach) {
    uint64_t item = 0;
    if (!ring.pop(item)) {
      std::this_thread::yield();
      continue;
    }
    const uint64_t p = item >> 32, i = item & 0xffffffff;
    ASSERT_LT(p, kProducers);
    if (i != last[p] + 1) ++out_of_order;
    last[p] = i;
    ++received;
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(out_of_order, 0u);
  for (uint64_t p = 0; p < kProducers; ++p) EXPECT_EQ(last[p], kItemsEach) << "producer " << p;
  EXPECT_TRUE(ring.empty());
  uint64_t item = 0;
  EXPECT_FALSE(ring.pop(item));
  for (uint64_t i = 0; i < ring.capacity(); ++i) ASSERT_TRUE(ring.push(i));
  item = 77;
  EXPECT_FALSE(ring.push(item));  // full: refused, the item stays with the caller
  EXPECT_EQ(item, 77u);
  for (uint64_t i = 0; i < ring.capacity(); ++i) {
    ASSERT_TRUE(ring.pop(item));
    EXPECT_EQ(item, i);
  }
}

}  // namespace
}  // namespace ustack
