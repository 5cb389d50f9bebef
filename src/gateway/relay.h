// Relay: copies bytes both ways between two connected TCP sockets until both directions have
// ended, with half-close (EOF on one side becomes shutdown(SHUT_WR) on the other), reset
// propagation (an error on either side resets both), per-direction byte counts, and an idle
// timeout over the whole connection.
//
// Memory: a direction holds a buffer only while bytes are in flight. It waits for readability
// without one, then borrows a pipe (or a buffer) from the pool, moves what is there
// (non-blocking), writes it all, and returns it. An idle connection costs its sockets and
// coroutine frames, not 2 x 64 KiB, so thousands of idle connections stay cheap.
//
// Unfiltered directions splice (socket -> pipe -> socket, 1 MiB pipes): the bytes are moved as
// page references instead of being copied into and out of user space, which halves the copies
// per byte; on the 2-core benchmark machine that took single-stream iperf3 through netfence
// from 0.44x to ~0.8x of direct (docs/benchmarks.md). Filtered directions (HTTP heads judged as
// they pass) copy, since they must see the bytes.
//
// Bulk directions: a way down (server to client) that moves 1 MiB per 100 ms or more, while no
// other direction of its thread does, copies through a pooled 256 KiB buffer instead of
// splicing (BulkWatch): a copied send fills the sandbox leg's 512 KiB GSO limit where a spliced
// one stops at 68 KiB (docs/sandbox.md, "Packet sizes"). With several bulk directions the copies
// would saturate the one thread, so they all splice.
//
// While it copies, the way down raises its server socket's receive low-water mark (SO_RCVLOWAT,
// 128 KiB): the socket wakes the relay once per 128 KiB instead of once per arriving packet, so
// each wake-up and read moves more. Bytes below the mark would wait for more that may never come
// (a server that answers and then waits), so a 2 ms tick lowers the mark again whenever nothing
// moved since the tick before: such bytes wait at most about two ticks.
//
// An unfiltered relay whose way down copies bulk then hands both its sockets to a bulk copy
// thread (bulk_copy.h), which blocks in poll(2) and copies both ways, and takes them back once
// the copy is quiet for 100 ms, or has held bytes for a second that a peer does not read (the
// relay then writes those first). The hand-over happens only while the way up is waiting for the
// client with nothing in flight, and only when one of the process's two bulk threads is free.
#pragma once

#include <array>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/fd.h"

namespace netfence::gateway {

// A pipe for splice(2): bytes move socket -> pipe -> socket as page references, never copied
// through user space. Borrowed like a buffer, only while bytes are in flight; empty when idle.
struct SplicePipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

class BufferPool {
 public:
  struct BulkMove {
    uint64_t direction = 0;  // 0: none
    std::chrono::steady_clock::time_point at;
  };

 private:
  struct State {
    State(size_t buffer_size, size_t kept) : size(buffer_size), keep(kept) {}
    size_t size;
    size_t keep;
    std::vector<std::unique_ptr<std::byte[]>> free;
    std::vector<std::unique_ptr<std::byte[]>> free_bulk;  // kBulkBufferSize each
    std::vector<SplicePipe> free_pipes;
    bool splice_works = true;  // cleared when the kernel refuses to create or splice pipes
    // Bulk directions (BulkWatch): the two that made a bulk move last, and when.
    std::array<BulkMove, 2> bulk_moves{};
    uint64_t directions = 0;    // ids handed out
    uint64_t bulk_copies = 0;   // moves made through a bulk buffer (tests read it)
    uint64_t lowat_raises = 0;  // times a bulk copy raised its socket's low-water mark (tests)
    uint64_t handovers = 0;     // relays handed to a bulk copy thread (tests)
    uint64_t stalls = 0;        // relays it gave back holding bytes (tests)
    bool hand_over = true;      // whether its relays may use a bulk copy thread
  };

 public:
  // The buffer a bulk direction copies through ("Bulk directions" above).
  static constexpr size_t kBulkBufferSize = 256 * 1024;

  explicit BufferPool(size_t buffer_size = 64 * 1024, size_t keep = 64)
      : state_(std::make_shared<State>(buffer_size, keep)) {}

  // A borrowed buffer. It keeps the pool's free list alive, so a lease that outlives the pool
  // (a coroutine frame destroyed with the io_context after the gateway) is still safe.
  class Lease {
   public:
    Lease(std::shared_ptr<State> state, std::unique_ptr<std::byte[]> buffer, bool bulk = false)
        : state_(std::move(state)), buffer_(std::move(buffer)), bulk_(bulk) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease() {
      if (!buffer_ || !state_) return;
      auto& free = bulk_ ? state_->free_bulk : state_->free;
      if (free.size() < (bulk_ ? kKeepBulk : state_->keep)) free.push_back(std::move(buffer_));
    }
    std::byte* data() const { return buffer_.get(); }
    size_t size() const { return bulk_ ? kBulkBufferSize : state_->size; }

   private:
    std::shared_ptr<State> state_;
    std::unique_ptr<std::byte[]> buffer_;
    bool bulk_ = false;
  };

  Lease take() { return take_from(false); }
  Lease take_bulk() { return take_from(true); }  // kBulkBufferSize bytes
  size_t buffer_size() const { return state_->size; }

  // A pipe sized for large splices (nullopt: none can be made; relay by copying instead).
  // Give it back with give_back() only when it is empty; a pipe still holding bytes is dropped.
  std::optional<SplicePipe> take_pipe();
  void give_back(SplicePipe pipe);
  // Frees what the pool keeps idle (pipes hold two descriptors each): for descriptor shortage.
  void trim() {
    state_->free_pipes.clear();
    state_->free.clear();
    state_->free_bulk.clear();
  }
  bool splice_works() const { return state_->splice_works; }
  void splice_failed() { state_->splice_works = false; }

  // Bulk moves of this pool's relays (one thread's): which directions made the last two, for
  // the relay to tell whether a direction is the only one moving bulk data (BulkWatch).
  uint64_t new_direction() { return ++state_->directions; }
  std::array<BulkMove, 2>& bulk_moves() { return state_->bulk_moves; }
  const std::array<BulkMove, 2>& bulk_moves() const { return state_->bulk_moves; }
  void count_bulk_copy() { ++state_->bulk_copies; }
  uint64_t bulk_copies() const { return state_->bulk_copies; }
  void count_lowat_raise(uint64_t n = 1) { state_->lowat_raises += n; }
  uint64_t lowat_raises() const { return state_->lowat_raises; }
  void count_handover() { ++state_->handovers; }
  uint64_t handovers() const { return state_->handovers; }
  void count_stall() { ++state_->stalls; }
  uint64_t stalls() const { return state_->stalls; }
  // Bulk copy threads for this pool's relays (on unless turned off, as tests of the event
  // loop's own bulk copy do).
  void allow_hand_over(bool allowed) { state_->hand_over = allowed; }
  bool hand_over_allowed() const { return state_->hand_over; }

 private:
  static constexpr size_t kKeepBulk = 2;
  Lease take_from(bool bulk);
  std::shared_ptr<State> state_;
};

// Whether a direction of a relay is moving bulk data, and whether it is the only one of its
// thread (its pool's relays) that is. Bulk: it moved kBytes within a kWindow-long window, the one
// now running or the one just before (about 84 Mbit/s or more). Alone: bulk, and no other
// direction has made a bulk move for kWindow. The pool keeps the two directions that made the
// last bulk moves and nothing else, so a direction that ends or slows down simply ages out.
// Times come from the caller (a clock read after each wait and each move, about 25 ns here).
class BulkWatch {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint64_t kBytes = 1024 * 1024;
  static constexpr Clock::duration kWindow = std::chrono::milliseconds(100);

  explicit BulkWatch(BufferPool& pool);
  // After moving `n` bytes, the move having ended at `now`.
  void moved(BufferPool& pool, uint64_t n, Clock::time_point now);
  bool alone(const BufferPool& pool, Clock::time_point now) const;

 private:
  bool bulk(Clock::time_point now) const;

  uint64_t id_;
  Clock::time_point window_start_{};
  uint64_t window_bytes_ = 0;
  uint64_t previous_bytes_ = 0;  // moved in the window just before this one
};

struct RelayResult {
  uint64_t bytes_up = 0;    // client -> server
  uint64_t bytes_down = 0;  // server -> client
  bool idle_timeout = false;
  bool reset = false;  // ended by an error (reset) rather than two clean EOFs
  bool cut = false;    // the upstream filter stopped the client's bytes
};

// Examines client-to-server bytes before they are forwarded (e.g. every HTTP request head of a
// keep-alive connection). `pending` holds the bytes not yet forwarded, oldest first; the filter
// returns how many leading bytes may go now (0: wait for more), or nullopt to cut: nothing more
// goes up, the server's side is shut down for writing, and its answers to what it already
// received still reach the client until it closes.
using UpstreamFilter = std::function<std::optional<size_t>(std::span<const std::byte> pending)>;

// Relays until both directions end, an error occurs, or nothing moves for `idle_timeout`
// (zero: no idle timeout). Both sockets must be open; they are closed when it returns (reset
// when the relay ended on an error or the idle timeout).
asio::awaitable<RelayResult> relay(asio::ip::tcp::socket& client, asio::ip::tcp::socket& server,
                                   BufferPool& pool, std::chrono::milliseconds idle_timeout);
// The same with a filter on the client-to-server direction; `initial` (bytes already read from
// the client, e.g. while classifying) go through the filter first (with an empty filter,
// they are sent and the rest is relayed as relay() does). Counts include them.
asio::awaitable<RelayResult> relay_filtered(asio::ip::tcp::socket& client,
                                            asio::ip::tcp::socket& server, BufferPool& pool,
                                            std::chrono::milliseconds idle_timeout,
                                            std::vector<std::byte> initial, UpstreamFilter filter);

// Sends what is in `bytes` to `socket` (used to forward the bytes read while classifying).
// Returns false on error.
asio::awaitable<bool> send_all(asio::ip::tcp::socket& socket, const std::vector<std::byte>& bytes);

// Closes `socket` so that the peer sees a reset (SO_LINGER 0): the fast, unambiguous denial for
// clients that sent nothing the gateway could answer in their own protocol.
void reset(asio::ip::tcp::socket& socket);

// Reads what the socket has now, without waiting and without changing its blocking mode (one
// recv(MSG_DONTWAIT)): the bytes read; or 0 with `ec` set to would_block (nothing there yet),
// eof (the peer's FIN) or the error.
size_t read_now(asio::ip::tcp::socket& from, std::byte* data, size_t size, asio::error_code& ec);

}  // namespace netfence::gateway
