// Bulk copy: the rest of a relay on a thread of its own, blocking in poll(2) on the two sockets
// and copying both ways, for a connection whose way down is its gateway thread's one bulk
// direction (relay.h, "Bulk directions").
//
// Why a thread: a copy driven by the gateway's event loop pays, per wake-up, an epoll_wait, an
// epoll_ctl to re-arm and asio's reactor and coroutine resumptions; on the 2-core benchmark
// machine that was about a fifth of a one-stream download against a plain blocking copy
// (docs/benchmarks.md, "Download against pasta"). The relay hands its two sockets over (asio's
// release(), so the event loop no longer wakes for them), awaits this thread's end, then takes
// them back.
//
// It gives the connection back as soon as it is quiet (nothing moved for 100 ms and nothing
// held), so an idle keep-alive connection does not keep a thread; at most kMaxThreads run at once
// in the process, and a relay that finds none free goes on in the event loop as before. A
// connection whose client stops reading leaves the copy holding bytes it cannot write: after a
// second with nothing moved it is given back too, with the bytes it holds, which the relay
// writes first; so two stalled downloads cannot keep both threads from the others.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>

#include "common/fd.h"

namespace netfence::gateway {

// The receive low-water mark of a way down that copies bulk, in the event loop (relay.cc) and
// on a bulk copy thread alike: raised to kBytes after a read of kRaiseAfter or more, lowered to
// one byte after a kTick in which the way down read nothing.
struct LowWater {
  static constexpr int kBytes = 128 * 1024;
  static constexpr size_t kRaiseAfter = 64 * 1024;
  static constexpr std::chrono::milliseconds kTick{2};
};
// Sets `fd`'s SO_RCVLOWAT; false if the kernel refused. Setting it wakes a reader that the
// bytes already there now satisfy.
bool set_low_water(int fd, int bytes);

// Where a bulk copy starts: two connected non-blocking TCP sockets, which directions have ended
// already (their EOF passed on as shutdown(SHUT_WR)), the relay's idle timeout (0: none), how
// long nothing may move before the copy gives the relay back (`quiet` when it holds nothing,
// `stall` when it holds bytes a peer does not take), and a buffer for each way (the caller's,
// alive until the copy ends: the copy allocates nothing).
struct BulkCopyStart {
  int client = -1;
  int server = -1;
  bool up_ended = false;    // client -> server
  bool down_ended = false;  // server -> client
  std::chrono::milliseconds idle{0};
  std::chrono::milliseconds quiet{100};
  std::chrono::milliseconds stall{1000};
  std::span<std::byte> down_buffer;
  std::span<std::byte> up_buffer;
};

struct BulkCopyResult {
  enum class End {
    kQuiet,    // nothing moved for `quiet` and nothing is held: the event loop takes it back
    kStalled,  // nothing moved for `stall` while bytes are held: taken back with those bytes
    kDone,     // both directions ended with EOF
    kFailed,   // an error on either socket: the relay resets both
    kIdle,     // nothing moved for the idle timeout
    kStopped,  // stop() (the relay is being destroyed)
  };
  End end = End::kFailed;
  uint64_t up = 0;  // bytes moved, each way
  uint64_t down = 0;
  bool up_ended = false;
  bool down_ended = false;
  uint32_t lowat_raises = 0;  // times the way down raised the server socket's mark
  // The bytes each way had read and not yet written when the copy ended, in the start's
  // buffers: empty unless it ended kStalled (or kStopped, kIdle, kFailed, which end the relay).
  std::span<const std::byte> down_held{};
  std::span<const std::byte> up_held{};
};

// The copy loop itself, on the calling thread, until one of BulkCopyResult's ends; `stop_fd`
// readable stops it. The way down raises the server socket's SO_RCVLOWAT as LowWater says (a
// wake-up per 128 KiB rather than per packet), so bytes below the mark wait at most about a
// tick, whatever the way up does; the mark is always lowered when it returns.
BulkCopyResult bulk_copy(const BulkCopyStart& start, int stop_fd);

class BulkThread {
 public:
  static constexpr int kMaxThreads = 2;  // in the process, at once

  // How many run now, and whether one is free (another gateway thread may take it before
  // start()).
  static int running();
  static bool available() { return running() < kMaxThreads; }
  // Starts bulk_copy(start) on a new thread, which writes 1 to the eventfd `done_fd` when the
  // copy ends; the caller owns `done_fd` and keeps it open for this object's life. nullptr when
  // kMaxThreads already run (or a thread or descriptor could not be made): the caller keeps
  // the sockets.
  static std::unique_ptr<BulkThread> start(const BulkCopyStart& start, int done_fd);
  // Stops the copy if it still runs, and joins the thread.
  ~BulkThread();
  BulkThread(const BulkThread&) = delete;
  BulkThread& operator=(const BulkThread&) = delete;

  // Stops the copy if it still runs (it then ends kStopped), joins the thread and returns how
  // the copy ended; once `done_fd` is readable the copy has ended and this returns at once.
  BulkCopyResult finish();

 private:
  explicit BulkThread(UniqueFd stop) : stop_(std::move(stop)) {}
  void stop_and_join();

  UniqueFd stop_;
  BulkCopyResult result_;
  std::thread thread_;
};

}  // namespace netfence::gateway
