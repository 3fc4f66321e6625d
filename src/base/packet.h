#pragma once
// A move-only handle on one frame's bytes, backed by a DPDK mbuf, a test pool or the heap.
// The protocol core sees only this type; whoever made the buffer knows how to give it back.

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace ustack {

class Packet;

/// Returns buffers to where they came from. Implemented by the DPDK mempool wrapper and by the
/// in-memory pool used in tests.
class PacketPool {
 public:
  virtual ~PacketPool() = default;
  virtual void release(void* handle) = 0;
  /// Takes one more reference on `handle` (release() drops one). False when the pool cannot share
  /// buffers; Packet::share() then copies.
  virtual bool add_ref(void* handle) {
    (void)handle;
    return false;
  }
  /// True while more than one reference holds `handle` (a device may still be reading it).
  virtual bool shared(void* handle) const {
    (void)handle;
    return false;
  }
};

/// What the device verified on receive (hardware checksum offload).
struct RxChecks {
  bool ip_checksum_good = false;  ///< the NIC checked the IPv4 header checksum and it was right
  bool l4_checksum_good = false;  ///< the NIC checked the TCP/UDP checksum and it was right
};

/// What the stack asks the device to fill in on transmit. When a flag is set, the stack has left
/// the IPv4 checksum zero, or put the pseudo-header sum in the L4 checksum field, as NICs expect.
struct TxOffload {
  bool ip_checksum = false;
  bool udp_checksum = false;
  bool tcp_checksum = false;
  uint8_t l2_len = 0;
  uint8_t l3_len = 0;
};

class Packet {
 public:
  Packet() = default;
  /// Takes ownership of `handle`; its bytes are buffer[0, capacity), the frame is
  /// buffer[offset, offset + length).
  Packet(uint8_t* buffer, uint32_t capacity, uint32_t offset, uint32_t length, void* handle, PacketPool* pool)
      : buffer_(buffer), capacity_(capacity), offset_(offset), length_(length), handle_(handle), pool_(pool) {}
  /// A heap buffer for what no device pool holds (reassembled datagrams, test frames).
  static Packet heap(size_t capacity, size_t headroom);
  /// A heap copy of `bytes` with `headroom` bytes free in front.
  static Packet copy_of(std::span<const uint8_t> bytes, size_t headroom = 0);

  /// A second handle on the same buffer and the same view, without copying the bytes (a
  /// reference count); a copy when the buffer's pool cannot share. The retransmission queue keeps
  /// a sent segment's payload this way while the device transmits it. Whoever writes into a
  /// buffer (a header in its headroom) must first check that it is not shared().
  Packet share() const;
  /// True while another handle (share()) or a device still holds this buffer.
  bool shared() const;

  Packet(Packet&& other) noexcept { *this = std::move(other); }
  Packet& operator=(Packet&& other) noexcept {
    if (this != &other) {
      reset();
      buffer_ = std::exchange(other.buffer_, nullptr);
      capacity_ = std::exchange(other.capacity_, 0);
      offset_ = std::exchange(other.offset_, 0);
      length_ = std::exchange(other.length_, 0);
      handle_ = std::exchange(other.handle_, nullptr);
      pool_ = std::exchange(other.pool_, nullptr);
      rx_checks = other.rx_checks;
      tx_offload = other.tx_offload;
    }
    return *this;
  }
  Packet(const Packet&) = delete;
  Packet& operator=(const Packet&) = delete;
  ~Packet() { reset(); }  // inline: most packets destroyed are empty (moved from)

  explicit operator bool() const { return handle_ != nullptr; }
  uint8_t* data() { return buffer_ + offset_; }
  const uint8_t* data() const { return buffer_ + offset_; }
  size_t size() const { return length_; }
  std::span<uint8_t> bytes() { return {data(), length_}; }
  std::span<const uint8_t> bytes() const { return {data(), length_}; }
  size_t headroom() const { return offset_; }
  size_t tailroom() const { return capacity_ - offset_ - length_; }
  /// The whole buffer this packet pins (what memory bounds must count, not size()).
  size_t truesize() const { return capacity_; }
  /// True when the buffer comes from a device pool (a fixed number of mbufs), not the heap.
  bool pins_device_buffer() const { return pool_ != nullptr; }
  uint32_t offset() const { return offset_; }

  /// Grows the frame at the front by `n` bytes (for a lower layer's header). Returns the new
  /// front, or nullptr (and changes nothing) when the headroom is too small.
  uint8_t* prepend(size_t n) {
    if (n > offset_) return nullptr;
    offset_ -= static_cast<uint32_t>(n);
    length_ += static_cast<uint32_t>(n);
    return data();
  }
  /// Grows the frame at the back by `n` bytes. Returns the first new byte, or nullptr.
  uint8_t* append(size_t n) {
    if (n > tailroom()) return nullptr;
    uint8_t* p = data() + length_;
    length_ += static_cast<uint32_t>(n);
    return p;
  }
  /// Drops `n` bytes from the front (a header that has been parsed). n must be <= size().
  void consume_front(size_t n) {
    offset_ += static_cast<uint32_t>(n);
    length_ -= static_cast<uint32_t>(n);
  }
  /// Keeps only the first `n` bytes (drops Ethernet padding). n must be <= size().
  void truncate(size_t n) { length_ = static_cast<uint32_t>(n); }

  /// Gives up ownership of the underlying buffer (to a device that takes it) and returns it.
  void* release() {
    buffer_ = nullptr;
    capacity_ = offset_ = length_ = 0;
    pool_ = nullptr;
    return std::exchange(handle_, nullptr);
  }
  void* handle() const { return handle_; }
  PacketPool* pool() const { return pool_; }

  RxChecks rx_checks;
  TxOffload tx_offload;

 private:
  void reset() {
    if (handle_) release_buffer();
  }
  void release_buffer();

  uint8_t* buffer_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t offset_ = 0;
  uint32_t length_ = 0;
  void* handle_ = nullptr;
  PacketPool* pool_ = nullptr;  // nullptr: handle_ is a HeapBlock (operator new[])
};

}  // namespace ustack
