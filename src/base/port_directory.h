#pragma once
// Which engines hold a local port, when several share one device (USTACK_CORES=N). Each engine's
// stack keeps its own port tables, so without this a port bound on one engine would be free on
// the others, and the frames of a listener's or a bound UDP socket's flows would go wherever the
// flow hash sends them: mostly to engines that have no socket for them. With it:
//   - steering (dev/steering.h) sends a frame for a held port to an engine that holds it: the one
//     the flow hash names if it holds the port (SO_REUSEPORT listeners on every engine: nothing
//     forwarded), else the lowest that does (one listening socket: every connection is its);
//   - bind() and listen() refuse a port another engine holds unless both sides may share it
//     (SO_REUSEPORT; for UDP, SO_REUSEADDR too), as Linux's one table would;
//   - ephemeral ports skip ports other engines hold.
// Sockets claim a port when they bind or listen and release it when they let go; connections
// (accepted, or connect()'s ephemeral ports chosen to hash to their engine) never claim.
// Claims and releases are rare and take a mutex; the packet path reads one atomic word.

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
  /// engine holds it and either this socket or one of theirs may not share (`shareable`).
  bool claim(PortProtocol protocol, uint16_t port, uint32_t engine, bool shareable);
  /// One socket of `engine` lets go of `port` (`shareable` as it claimed it).
  void release(PortProtocol protocol, uint16_t port, uint32_t engine, bool shareable);
  /// A bit per engine holding `port`. Lock-free: read on the packet path.
  uint32_t holders(PortProtocol protocol, uint16_t port) const {
    return holders_[index(protocol, port)].load(std::memory_order_acquire);
  }
  /// True when an engine other than `engine` holds `port` (ephemeral choice skips it).
  bool held_elsewhere(PortProtocol protocol, uint16_t port, uint32_t engine) const {
    return (holders(protocol, port) & ~(uint32_t{1} << engine)) != 0;
  }
  /// The engine that takes a frame for local `port` whose flow hashes to `by_hash`.
  uint32_t owner(PortProtocol protocol, uint16_t port, uint32_t by_hash) const {
    const uint32_t h = holders(protocol, port);
    if (h == 0 || (h >> by_hash) & 1u) return by_hash;
    return static_cast<uint32_t>(__builtin_ctz(h));
  }

 private:
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

  std::unique_ptr<std::atomic<uint32_t>[]> holders_;  // 2 × 65536 words
  std::mutex mutex_;                                   // claims_, and the holders_ writes
  absl::flat_hash_map<Key, Claims> claims_;
};

}  // namespace ustack
