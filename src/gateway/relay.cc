#include "gateway/relay.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <new>
#include <tuple>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "gateway/bulk_copy.h"
#include "gateway/deadline.h"

namespace netfence::gateway {

using asio::redirect_error;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {
constexpr int kPipeSize = 1024 * 1024;  // the default pipe-max-size: 256 pages per splice
constexpr size_t kKeepPipes = 8;        // idle pipes kept for reuse (16 descriptors)
}  // namespace

BulkWatch::BulkWatch(BufferPool& pool) : id_(pool.new_direction()) {}

bool BulkWatch::bulk(Clock::time_point now) const {
  Clock::duration age = now - window_start_;
  if (age >= 2 * kWindow) return false;                // nothing moved in the last window
  if (age >= kWindow) return window_bytes_ >= kBytes;  // the last window was this one
  return window_bytes_ >= kBytes || previous_bytes_ >= kBytes;
}

void BulkWatch::moved(BufferPool& pool, uint64_t n, Clock::time_point now) {
  Clock::duration age = now - window_start_;
  if (age >= kWindow) {
    previous_bytes_ = age < 2 * kWindow ? window_bytes_ : 0;
    window_start_ = now;
    window_bytes_ = 0;
  }
  window_bytes_ += n;
  if (!bulk(now)) return;
  auto& last = pool.bulk_moves();
  if (last[0].direction != id_) last[1] = last[0];
  last[0] = {id_, now};
}

bool BulkWatch::alone(const BufferPool& pool, Clock::time_point now) const {
  if (!bulk(now)) return false;
  const auto& last = pool.bulk_moves();
  const BufferPool::BulkMove& other = last[0].direction == id_ ? last[1] : last[0];
  return other.direction == 0 || now - other.at >= kWindow;
}

std::optional<SplicePipe> BufferPool::take_pipe() {
  if (!state_->splice_works) return std::nullopt;
  if (!state_->free_pipes.empty()) {
    SplicePipe pipe = std::move(state_->free_pipes.back());
    state_->free_pipes.pop_back();
    return pipe;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return std::nullopt;  // e.g. EMFILE: copy
  SplicePipe pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  // Best effort: over the per-user pipe budget the kernel keeps the default 64 KiB.
  ::fcntl(pipe.write_end.get(), F_SETPIPE_SZ, kPipeSize);
  return pipe;
}

void BufferPool::give_back(SplicePipe pipe) {
  if (state_->free_pipes.size() < kKeepPipes) state_->free_pipes.push_back(std::move(pipe));
}

BufferPool::Lease BufferPool::take_from(bool bulk) {
  auto& free = bulk ? state_->free_bulk : state_->free;
  if (free.empty()) {
    return Lease(state_, std::make_unique<std::byte[]>(bulk ? kBulkBufferSize : state_->size),
                 bulk);
  }
  Lease lease(state_, std::move(free.back()), bulk);
  free.pop_back();
  return lease;
}

void reset(tcp::socket& socket) {
  if (!socket.is_open()) return;
  asio::error_code ec;
  socket.set_option(asio::socket_base::linger(true, 0), ec);
  socket.close(ec);
}

size_t read_now(tcp::socket& from, std::byte* data, size_t size, asio::error_code& ec) {
  ec.clear();
  ssize_t n = ::recv(from.native_handle(), data, size, MSG_DONTWAIT);
  if (n > 0) return static_cast<size_t>(n);
  if (n == 0) {
    ec = asio::error::eof;
  } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    ec = asio::error::would_block;
  } else {
    ec = asio::error_code(errno, asio::error::get_system_category());
  }
  return 0;
}

asio::awaitable<bool> send_all(tcp::socket& socket, const std::vector<std::byte>& bytes) {
  if (bytes.empty()) co_return true;
  asio::error_code ec;
  co_await asio::async_write(socket, asio::buffer(bytes), redirect_error(use_awaitable, ec));
  co_return !ec;
}

namespace {

// What a bulk copy thread had read and not yet written when it gave a stalled relay back (a
// client that stopped reading): run_relay writes each way's part before that way reads again.
struct HeldBytes {
  std::vector<std::byte> down;
  std::vector<std::byte> up;
};

struct Shared {
  IdleWatch& watch;
  bool failed = false;
  bool cut = false;
  // The bulk copy thread (relay.h): whether this relay may use it (unfiltered), whether the way
  // down asked for it, and what it needs to know to take over safely.
  bool may_hand_over = false;
  bool handover = false;
  bool up_waiting = false;  // the way up waits for the client's bytes, nothing in flight
  bool up_ended = false;
  bool down_ended = false;
  std::unique_ptr<HeldBytes> held{};  // made only when a stalled copy gives bytes back

  // The relay failed (a reset, a failed write, a way cut short): reset both sockets, so each
  // peer learns at once that the connection is gone, and the other way's wait ends.
  void fail(tcp::socket& a, tcp::socket& b) {
    failed = true;
    reset(a);
    reset(b);
  }
};

// The receive low-water mark of a way down while it copies bulk (relay.h, "Bulk directions").
// Made only once a direction copies (a pointer in the pump's frame otherwise), so an idle
// connection does not carry its timer.
class LowWaterMark {
 public:
  explicit LowWaterMark(tcp::socket& socket) : socket_(socket), timer_(socket.get_executor()) {}
  ~LowWaterMark() {
    *alive_ = false;
    timer_.cancel();
    lower();
  }
  LowWaterMark(const LowWaterMark&) = delete;
  LowWaterMark& operator=(const LowWaterMark&) = delete;

  // After a copied move of `n` bytes.
  void moved(size_t n, BufferPool& pool) {
    ++moves_;
    if (raised_ || n < LowWater::kRaiseAfter || !set(LowWater::kBytes)) return;
    raised_ = true;
    pool.count_lowat_raise();
    seen_ = moves_;
    arm();
  }
  // Back to the kernel's default (one byte); setting it wakes a reader the bytes already satisfy.
  void lower() {
    if (!raised_) return;
    raised_ = false;
    set(1);
  }

 private:
  bool set(int bytes) { return socket_.is_open() && set_low_water(socket_.native_handle(), bytes); }
  void arm() {
    timer_.expires_after(LowWater::kTick);
    timer_.async_wait([this, alive = alive_](const asio::error_code& ec) {
      if (ec || !*alive || !raised_) return;
      if (moves_ != seen_) {
        seen_ = moves_;
        arm();
        return;
      }
      lower();  // nothing moved for a tick: what is there goes now
    });
  }

  tcp::socket& socket_;
  asio::steady_timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool raised_ = false;
  uint64_t moves_ = 0;
  uint64_t seen_ = 0;  // moves_ at the last tick
};

enum class Spliced { kMoved, kNothing, kEof, kUnsupported, kFailed };

// Moves what `from` has (up to a pipe's worth) through a pipe to `to`, waiting for `to` to take
// it all. kNothing: `from` had nothing after all; kUnsupported: the kernel cannot splice these
// (nothing was moved: copy instead).
asio::awaitable<Spliced> splice_once(tcp::socket& from, tcp::socket& to, BufferPool& pool,
                                     uint64_t& count) {
  std::optional<SplicePipe> pipe = pool.take_pipe();
  if (!pipe) co_return Spliced::kUnsupported;
  ssize_t in = ::splice(from.native_handle(), nullptr, pipe->write_end.get(), nullptr, kPipeSize,
                        SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (in < 0) {
    int error = errno;
    pool.give_back(std::move(*pipe));
    if (error == EAGAIN || error == EINTR) co_return Spliced::kNothing;
    if (error == EINVAL || error == ENOSYS || error == EOPNOTSUPP) {
      pool.splice_failed();
      co_return Spliced::kUnsupported;
    }
    co_return Spliced::kFailed;
  }
  if (in == 0) {
    pool.give_back(std::move(*pipe));
    co_return Spliced::kEof;
  }
  size_t left = static_cast<size_t>(in);
  asio::error_code ec;
  while (left > 0) {
    ssize_t out = ::splice(pipe->read_end.get(), nullptr, to.native_handle(), nullptr, left,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (out > 0) {
      left -= static_cast<size_t>(out);
      continue;
    }
    if (out < 0 && (errno == EAGAIN || errno == EINTR)) {
      co_await to.async_wait(tcp::socket::wait_write, redirect_error(use_awaitable, ec));
      if (!ec) continue;
    }
    co_return Spliced::kFailed;  // the pipe still holds bytes: dropped, not given back
  }
  pool.give_back(std::move(*pipe));
  count += static_cast<uint64_t>(in);
  co_return Spliced::kMoved;
}

// One direction: wait readable (nothing held), move what is there, write it all. The way down
// (`down`) copies through a bulk buffer while it is its thread's only bulk direction (relay.h).
asio::awaitable<void> pump(tcp::socket& from, tcp::socket& to, BufferPool& pool, uint64_t& count,
                           Shared& shared, bool down) {
  using Clock = BulkWatch::Clock;
  asio::error_code ec;
  BulkWatch bulk(pool);
  std::unique_ptr<LowWaterMark> lowat;  // made when the way down first copies bulk
  while (!shared.watch.fired()) {
    if (shared.handover) co_return;  // the way down asked for the bulk thread (run_relay)
    if (!down) shared.up_waiting = true;
    co_await from.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
    if (!down) shared.up_waiting = false;
    if (shared.handover) co_return;  // the bulk thread reads what is there
    if (ec) break;
    bool copy_bulk = down && bulk.alone(pool, Clock::now());
    if (!copy_bulk && lowat) lowat->lower();
    if (pool.splice_works() && !copy_bulk) {
      uint64_t before = count;
      Spliced moved = co_await splice_once(from, to, pool, count);
      if (moved == Spliced::kMoved) {
        shared.watch.touch();
        bulk.moved(pool, count - before, Clock::now());
        continue;
      }
      if (moved == Spliced::kNothing) continue;
      if (moved == Spliced::kEof) {
        to.shutdown(tcp::socket::shutdown_send, ec);
        (down ? shared.down_ended : shared.up_ended) = true;
        co_return;
      }
      if (moved == Spliced::kFailed) break;
      // kUnsupported: copy this time (and from now on, if the kernel refused the splice).
    }
    BufferPool::Lease buffer = copy_bulk ? pool.take_bulk() : pool.take();
    size_t n = read_now(from, buffer.data(), buffer.size(), ec);
    if (ec == asio::error::would_block) continue;
    if (ec == asio::error::eof) {
      // Half-close: the other side may still send (e.g. an HTTP/1.0 response after the request).
      to.shutdown(tcp::socket::shutdown_send, ec);
      (down ? shared.down_ended : shared.up_ended) = true;
      co_return;
    }
    if (ec) break;
    co_await asio::async_write(to, asio::buffer(buffer.data(), n),
                               redirect_error(use_awaitable, ec));
    if (ec) break;
    count += n;
    shared.watch.touch();
    bulk.moved(pool, n, Clock::now());
    if (copy_bulk) {
      pool.count_bulk_copy();
      if (!lowat) lowat = std::make_unique<LowWaterMark>(from);
      lowat->moved(n, pool);
      if (shared.may_hand_over && (shared.up_waiting || shared.up_ended) &&
          BulkThread::available()) {
        shared.handover = true;
        to.cancel(ec);  // ends the way up's wait for the client: run_relay hands both over
        co_return;
      }
    }
  }
  // An error on either side (reset, or the other direction failed and closed us).
  shared.fail(from, to);
}

// The way down after a stalled bulk copy (hand_over): the bytes it held go first, then the
// pump. A coroutine of its own, so that the pump's frame, which every idle relay keeps, does not
// carry this write.
asio::awaitable<void> pump_down_after(tcp::socket& server, tcp::socket& client, BufferPool& pool,
                                      uint64_t& count, Shared& shared,
                                      std::vector<std::byte> held) {
  // Awaited into a variable: inside the `if` condition GCC 12 made this coroutine crash (SIGILL).
  bool sent = co_await send_all(client, held);
  if (!sent) {
    shared.fail(server, client);
    co_return;
  }
  count += held.size();
  shared.watch.touch();
  std::vector<std::byte>().swap(held);
  co_await pump(server, client, pool, count, shared, /*down=*/true);
}

// The way down's coroutine: after a stalled bulk copy that held bytes for it, pump_down_after.
// Not a coroutine itself, so that the choice is no conditional expression in one (design.md,
// "GCC 12 and coroutines").
asio::awaitable<void> way_down(tcp::socket& server, tcp::socket& client, BufferPool& pool,
                               uint64_t& count, Shared& shared) {
  if (shared.held && !shared.held->down.empty()) {
    return pump_down_after(server, client, pool, count, shared, std::move(shared.held->down));
  }
  return pump(server, client, pool, count, shared, /*down=*/true);
}

// Client to server through a filter: bytes accumulate in `pending` until the filter releases
// them. The filter bounds what it holds back (an HTTP head is at most 16 KiB).
asio::awaitable<void> filtered_pump(tcp::socket& from, tcp::socket& to, BufferPool& pool,
                                    uint64_t& count, Shared& shared, std::vector<std::byte> pending,
                                    const UpstreamFilter& filter) {
  asio::error_code ec;
  BulkWatch bulk(pool);  // it never copies through the bulk buffer, but its bulk moves count
  constexpr size_t kChunk = 16 * 1024;  // read at a time
  while (true) {
    // Release what the filter allows.
    while (!pending.empty()) {
      std::optional<size_t> n = filter(pending);
      if (!n) {
        // Cut: nothing more goes up, but what was already sent is answered (e.g. the responses
        // to the allowed requests before a denied one); the server's EOF then ends the relay.
        shared.cut = true;
        to.shutdown(tcp::socket::shutdown_send, ec);
        co_return;
      }
      if (*n == 0) break;
      co_await asio::async_write(to, asio::buffer(pending.data(), *n),
                                 redirect_error(use_awaitable, ec));
      if (ec) break;
      count += *n;
      shared.watch.touch();
      bulk.moved(pool, *n, BulkWatch::Clock::now());
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(*n));
    }
    // An idle connection holds nothing while it waits (as pump does), not the last request.
    if (pending.empty()) std::vector<std::byte>().swap(pending);
    if (ec || shared.watch.fired()) break;
    co_await from.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
    if (ec) break;
    BufferPool::Lease chunk = pool.take();  // borrowed for this read only
    size_t n = read_now(from, chunk.data(), std::min(chunk.size(), kChunk), ec);
    if (ec == asio::error::would_block) {
      ec.clear();  // a spurious wake-up: wait again (the loop's top breaks on an error)
      continue;
    }
    if (ec == asio::error::eof) {
      to.shutdown(tcp::socket::shutdown_send, ec);
      shared.up_ended = true;
      co_return;
    }
    if (ec) break;
    pending.insert(pending.end(), chunk.data(), chunk.data() + n);
  }
  shared.fail(from, to);
}

}  // namespace

namespace {

// Hands both sockets to a bulk copy thread and takes them back when its copy ends (relay.h).
// True: the copy went quiet and the relay goes on in the event loop; false: the relay is over,
// and `shared` and `result` say how.
asio::awaitable<bool> hand_over(tcp::socket& client, tcp::socket& server, BufferPool& pool,
                                RelayResult& result, Shared& shared,
                                std::chrono::milliseconds idle_timeout) {
  shared.handover = false;
  asio::error_code ec;
  // Declared before the thread, so that should this frame be destroyed with the io_context
  // while the thread copies, the thread is stopped and joined before they close or go back.
  asio::posix::stream_descriptor done(client.get_executor());
  if (UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); fd) {
    done.assign(fd.get(), ec);
    if (!ec) fd.release();
  }
  tcp::endpoint client_end = client.local_endpoint(ec);
  tcp::endpoint server_end;
  if (!ec) server_end = server.local_endpoint(ec);
  if (!done.is_open() || ec) {
    shared.may_hand_over = false;  // not for this relay: it goes on in the event loop
    co_return true;
  }
  BufferPool::Lease down_buffer = pool.take_bulk();
  BufferPool::Lease up_buffer = pool.take();
  UniqueFd client_fd(client.release(ec));
  UniqueFd server_fd(server.release(ec));
  BulkCopyResult copied{BulkCopyResult::End::kFailed};
  std::unique_ptr<BulkThread> thread;
  if (client_fd && server_fd) {
    BulkCopyStart start;
    start.client = client_fd.get();
    start.server = server_fd.get();
    start.up_ended = shared.up_ended;
    start.down_ended = shared.down_ended;
    start.idle = idle_timeout;
    start.down_buffer = {down_buffer.data(), down_buffer.size()};
    start.up_buffer = {up_buffer.data(), up_buffer.size()};
    thread = BulkThread::start(start, done.native_handle());
  }
  if (thread) {
    pool.count_handover();
    shared.watch.hold(true);
    // A wake-up without the thread's write is spurious (asio may hand an event that was pending
    // for a socket released just now to a descriptor that reuses its reactor state): wait again.
    uint64_t ended = 0;
    while (!ec && ::read(done.native_handle(), &ended, sizeof ended) != sizeof ended) {
      co_await done.async_wait(asio::posix::stream_descriptor::wait_read,
                               redirect_error(use_awaitable, ec));
    }
    copied = thread->finish();  // stops it first if the wait failed
    thread.reset();
    shared.watch.hold(false);
    pool.count_lowat_raise(copied.lowat_raises);
    if (copied.end == BulkCopyResult::End::kStalled) {
      try {
        shared.held = std::make_unique<HeldBytes>(
            HeldBytes{{copied.down_held.begin(), copied.down_held.end()},
                      {copied.up_held.begin(), copied.up_held.end()}});
        pool.count_stall();
      } catch (const std::bad_alloc&) {
        copied.end = BulkCopyResult::End::kFailed;  // the held bytes would be lost: reset
      }
    }
  } else if (client_fd && server_fd) {
    // No thread free after all (another gateway thread took it): go on here, and do not ask
    // again for this relay.
    copied.end = BulkCopyResult::End::kQuiet;
    copied.up_ended = shared.up_ended;
    copied.down_ended = shared.down_ended;
    shared.may_hand_over = false;
  }
  // Take the sockets back; one that cannot be is reset here and the relay fails.
  bool back = true;
  for (auto [socket, fd, end] :
       {std::tuple{&client, &client_fd, client_end}, std::tuple{&server, &server_fd, server_end}}) {
    if (fd->valid()) socket->assign(end.protocol(), fd->get(), ec);
    if (fd->valid() && !ec) {
      fd->release();
      continue;
    }
    back = false;
    if (fd->valid()) {
      linger hard{1, 0};
      ::setsockopt(fd->get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    }
  }
  result.bytes_up += copied.up;
  result.bytes_down += copied.down;
  shared.up_ended = copied.up_ended;
  shared.down_ended = copied.down_ended;
  using End = BulkCopyResult::End;
  if (back && (copied.end == End::kQuiet || copied.end == End::kStalled)) {
    co_return !(shared.up_ended && shared.down_ended);
  }
  if (back && copied.end == End::kDone) co_return false;
  if (copied.end == End::kIdle) result.idle_timeout = true;
  shared.failed = true;
  co_return false;
}

asio::awaitable<RelayResult> run_relay(tcp::socket& client, tcp::socket& server, BufferPool& pool,
                                       std::chrono::milliseconds idle_timeout,
                                       std::vector<std::byte> initial, UpstreamFilter filter) {
  RelayResult result;
  IdleWatch watch(co_await asio::this_coro::executor, idle_timeout, client, server);
  Shared shared{watch};
  shared.may_hand_over = !filter && pool.hand_over_allowed();
  asio::error_code ec;
  // splice() needs O_NONBLOCK on the sockets (SPLICE_F_NONBLOCK covers only the pipe). asio
  // has set it already for the reads and the connect that came before; this costs no syscall
  // then (and asio's user-level non_blocking(true) would be an ioctl per socket).
  if (!client.native_non_blocking()) client.native_non_blocking(true, ec);
  if (!server.native_non_blocking()) server.native_non_blocking(true, ec);
  // The way down runs as a coroutine of its own and this one carries the way up, then waits
  // for it: cheaper than `up && down`, a parallel group of two spawned coroutines. Each turn of
  // the loop after the first follows a bulk copy thread that gave the relay back (a way that
  // ended there is not started again).
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    asio::steady_timer down_done(executor, asio::steady_timer::time_point::max());
    bool down_running = !shared.down_ended;
    if (down_running) {
      asio::co_spawn(executor, way_down(server, client, pool, result.bytes_down, shared),
                     [&](const std::exception_ptr& thrown) {
                       // Thrown (out of memory for a buffer, say): the way down is cut short,
                       // which must not end as the clean EOF a complete download would.
                       if (thrown) {
                         shared.fail(client, server);
                       }
                       down_running = false;
                       down_done.cancel();
                     });
    }
    if (shared.held) {  // the way up's part goes first as `initial` does
      initial = std::move(shared.held->up);
      shared.held.reset();
    }
    if (filter) {
      co_await filtered_pump(client, server, pool, result.bytes_up, shared, std::move(initial),
                             filter);
    } else if (!shared.up_ended) {
      // Bytes read before the relay go first (relay() has none: no send_all frame then), or
      // those a stalled bulk copy held, and are not held for the connection's life.
      bool sent = true;
      if (!initial.empty()) {
        sent = co_await send_all(server, initial);
        if (sent) result.bytes_up += initial.size();
        std::vector<std::byte>().swap(initial);
      }
      if (sent) {
        co_await pump(client, server, pool, result.bytes_up, shared, /*down=*/false);
      } else {
        shared.fail(client, server);  // as pump does on a failed write, ending the way down
      }
    }
    if (down_running) co_await down_done.async_wait(redirect_error(use_awaitable, ec));
    if (!shared.handover || shared.failed || watch.fired()) break;
    bool given_back = co_await hand_over(client, server, pool, result, shared, idle_timeout);
    if (!given_back) break;
  }
  result.idle_timeout = result.idle_timeout || watch.fired();
  result.reset = shared.failed || result.idle_timeout;
  result.cut = shared.cut;
  if (result.reset) {
    reset(client);
    reset(server);
  } else {
    // Both directions ended with EOF: a normal close keeps whatever is still queued for sending.
    client.close(ec);
    server.close(ec);
  }
  co_return result;
}

}  // namespace

asio::awaitable<RelayResult> relay(tcp::socket& client, tcp::socket& server, BufferPool& pool,
                                   std::chrono::milliseconds idle_timeout) {
  // Not a coroutine itself: run_relay's frame is the relay's only one (an idle connection keeps
  // every frame of its chain).
  return run_relay(client, server, pool, idle_timeout, {}, {});
}

asio::awaitable<RelayResult> relay_filtered(tcp::socket& client, tcp::socket& server,
                                            BufferPool& pool,
                                            std::chrono::milliseconds idle_timeout,
                                            std::vector<std::byte> initial, UpstreamFilter filter) {
  return run_relay(client, server, pool, idle_timeout, std::move(initial), std::move(filter));
}

}  // namespace netfence::gateway
