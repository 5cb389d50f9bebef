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
#pragma once

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
  struct State {
    size_t size;
    size_t keep;
    std::vector<std::unique_ptr<std::byte[]>> free;
    std::vector<SplicePipe> free_pipes;
    bool splice_works = true;  // cleared when the kernel refuses to create or splice pipes
  };

 public:
  explicit BufferPool(size_t buffer_size = 64 * 1024, size_t keep = 64)
      : state_(std::make_shared<State>(State{buffer_size, keep, {}, {}, true})) {}

  // A borrowed buffer. It keeps the pool's free list alive, so a lease that outlives the pool
  // (a coroutine frame destroyed with the io_context after the gateway) is still safe.
  class Lease {
   public:
    Lease(std::shared_ptr<State> state, std::unique_ptr<std::byte[]> buffer)
        : state_(std::move(state)), buffer_(std::move(buffer)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease() {
      if (buffer_ && state_ && state_->free.size() < state_->keep) {
        state_->free.push_back(std::move(buffer_));
      }
    }
    std::byte* data() const { return buffer_.get(); }
    size_t size() const { return state_->size; }

   private:
    std::shared_ptr<State> state_;
    std::unique_ptr<std::byte[]> buffer_;
  };

  Lease take();
  size_t buffer_size() const { return state_->size; }

  // A pipe sized for large splices (nullopt: none can be made; relay by copying instead).
  // Give it back with give_back() only when it is empty; a pipe still holding bytes is dropped.
  std::optional<SplicePipe> take_pipe();
  void give_back(SplicePipe pipe);
  // Frees what the pool keeps idle (pipes hold two descriptors each): for descriptor shortage.
  void trim() {
    state_->free_pipes.clear();
    state_->free.clear();
  }
  bool splice_works() const { return state_->splice_works; }
  void splice_failed() { state_->splice_works = false; }

 private:
  std::shared_ptr<State> state_;
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
