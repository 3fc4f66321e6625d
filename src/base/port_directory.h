#pragma once
// Which engines use a local port, when several share one device (USTACK_CORES=N). Each engine's
// stack keeps its own port tables, so without this a port bound on one engine would be free on
// the others, and the frames of a listener's or a bound UDP socket's flows would go wherever the
// flow hash sends them: mostly to engines that have no socket for them. It keeps two things:
//   - claims: the sockets that bind() a port (TCP and UDP), per engine, with whether they share.
//     bind() refuses a port another engine's socket claims unless both may share it (SO_REUSEPORT;
//     for UDP, SO_REUSEADDR too), as Linux's one table would; ephemeral ports skip claimed ports.
//     Claims are rare and take a mutex.
//   - use: a bit per engine that has anything on the port in its table (a bound socket, a
//     listener, a connection). Steering (dev/steering.h) sends a frame for a port in use to the
//     engine the flow hash names if that engine uses the port (SO_REUSEPORT listeners on every
//     engine: nothing forwarded; connect()'s ports, chosen to hash to their engine), else to the
//     lowest engine that does (one listening socket: all its connections live with it). A port
//     stays in use while connections remain, so closing one engine's listener does not send its
//     connections' segments elsewhere; that engine hands the new flows it still gets to an engine
//     whose socket claims the port (TcpLayer::hand_to_claimant). Each engine flips its own bit
//     when its table gains or loses the port: lock-free, and the packet path reads one atomic word.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include <absl/container/flat_hash_map.h>

namespace ustack {

enum class PortProtocol : uint8_t { kTcp = 0, kUdp = 1 };

class PortDirectory {
 public:
  static constexpr uint32_t kMaxEngines = 32;

  PortDirectory();

  /// Engine `engine` takes `port` for one more socket. False, claiming nothing, when another
  /// engine holds it and either this socket or one of theirs may not share (`shareable`), or when
  /// another engine has connections on it that no socket there claims (a listener's, after it
  /// closed; TIME-WAIT): a listener here would not get the segments of its new connections
  /// whose flows hash to that engine.
  bool claim(PortProtocol protocol, uint16_t port, uint32_t engine, bool shareable);
  /// One socket of `engine` lets go of `port` (`shareable` as it claimed it).
  void release(PortProtocol protocol, uint16_t port, uint32_t engine, bool shareable);
  /// A bit per engine whose sockets claim `port`.
  uint32_t claimants(PortProtocol protocol, uint16_t port) const {
    return claimed_[index(protocol, port)].load(std::memory_order_acquire);
  }
  /// True when a socket of an engine other than `engine` claims `port` (connect()'s ephemeral
  /// choice skips it).
  bool claimed_elsewhere(PortProtocol protocol, uint16_t port, uint32_t engine) const {
    return (claimants(protocol, port) & ~(uint32_t{1} << engine)) != 0;
  }
  /// True when another engine claims `port` or has anything on it (bind()'s ephemeral choice
  /// skips it).
  bool used_elsewhere(PortProtocol protocol, uint16_t port, uint32_t engine) const {
    const size_t slot = index(protocol, port);
    const uint32_t all = claimed_[slot].load(std::memory_order_acquire) | in_use_[slot].load(std::memory_order_acquire);
    return (all & ~(uint32_t{1} << engine)) != 0;
  }

  /// Engine `engine`'s table gained (`in_use`) or lost its last entry on `port`. Only that
  /// engine's thread calls it for its bit.
  void set_in_use(PortProtocol protocol, uint16_t port, uint32_t engine, bool in_use) {
    const uint32_t bit = uint32_t{1} << engine;
    auto& word = in_use_[index(protocol, port)];
    if (in_use) {
      word.fetch_or(bit, std::memory_order_release);
    } else {
      word.fetch_and(~bit, std::memory_order_release);
    }
  }
  /// The engine that takes a frame for local `port` whose flow hashes to `by_hash`.
  uint32_t owner(PortProtocol protocol, uint16_t port, uint32_t by_hash) const {
    const uint32_t users = in_use_[index(protocol, port)].load(std::memory_order_acquire);
    if (users == 0 || (users >> by_hash) & 1u) return by_hash;
    return static_cast<uint32_t>(__builtin_ctz(users));
  }

 private:
  static constexpr size_t kSlots = size_t{2} << 16;
  static size_t index(PortProtocol protocol, uint16_t port) {
    return (size_t{static_cast<uint8_t>(protocol)} << 16) | port;
  }
  struct Claims {
    uint32_t sockets = 0;
    uint32_t exclusive = 0;  // of those, the ones that may not share with another engine
  };
  struct Key {
    uint32_t slot;  // index()
    uint32_t engine;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.slot, k.engine);
    }
  };

  std::unique_ptr<std::atomic<uint32_t>[]> claimed_;  // 2 × 65536 words, by index()
  std::unique_ptr<std::atomic<uint32_t>[]> in_use_;   // the same
  std::mutex mutex_;                                   // claims_, and the claimed_ writes
  absl::flat_hash_map<Key, Claims> claims_;
};

}  // namespace ustack
