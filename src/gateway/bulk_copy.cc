#include "gateway/bulk_copy.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <limits>

namespace netfence::gateway {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> running_threads{0};

// One direction: bytes read from `from` and not yet all written to `to` sit in [start, end).
struct Way {
  int from;
  int to;
  std::span<std::byte> buffer;
  bool ended;
  uint64_t& count;
  size_t start = 0;
  size_t end = 0;
  bool held() const { return end > start; }
  // What it waits for next: `to` writable while it holds bytes, else `from` readable.
  int waits_on() const { return held() ? to : from; }
  short wants() const { return held() ? POLLOUT : POLLIN; }
};

enum class Step { kOk, kEnded, kFailed };

// Writes what `way` holds, as far as `to` takes it now.
Step write_held(Way& way) {
  while (way.held()) {
    ssize_t n = ::send(way.to, way.buffer.data() + way.start, way.end - way.start,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? Step::kOk : Step::kFailed;
    }
    way.start += static_cast<size_t>(n);
    way.count += static_cast<uint64_t>(n);
  }
  way.start = way.end = 0;
  return Step::kOk;
}

// Reads what `from` has into the (empty) buffer, then writes it. kEnded: the peer's FIN, passed
// on as shutdown(SHUT_WR) to `to`.
Step read_and_write(Way& way, ssize_t& got) {
  got = ::recv(way.from, way.buffer.data(), way.buffer.size(), MSG_DONTWAIT);
  if (got == 0) {
    way.ended = true;
    ::shutdown(way.to, SHUT_WR);
    return Step::kEnded;
  }
  if (got < 0) {
    bool again = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    got = 0;
    return again ? Step::kOk : Step::kFailed;
  }
  way.end = static_cast<size_t>(got);
  return write_held(way);
}

}  // namespace

bool set_low_water(int fd, int bytes) {
  return ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes) == 0;
}

BulkCopyResult bulk_copy(const BulkCopyStart& start, int stop_fd) {
  BulkCopyResult result;
  using End = BulkCopyResult::End;
  Way down{start.server, start.client, start.down_buffer, start.down_ended, result.down};
  Way up{start.client, start.server, start.up_buffer, start.up_ended, result.up};
  bool raised = false;  // the server socket's low-water mark
  Clock::time_point last_move = Clock::now();
  Clock::time_point last_down_read = last_move;  // while raised: when the way down last read
  result.end = End::kDone;
  while (!(down.ended && up.ended)) {
    Clock::time_point now = Clock::now();
    if (raised && now - last_down_read >= LowWater::kTick) {
      // A tick in which the way down read nothing, however busy the way up: what is below the
      // mark goes now.
      set_low_water(start.server, 1);
      raised = false;
    }
    // A socket neither way waits on is left out (fd -1): its error or hang-up would otherwise
    // wake every poll while the way that owns it waits on the other socket.
    pollfd fds[3] = {{start.server, 0, 0}, {start.client, 0, 0}, {stop_fd, POLLIN, 0}};
    auto slot = [&](const Way& way) -> pollfd& {
      return fds[way.waits_on() == start.server ? 0 : 1];
    };
    for (Way* way : {&down, &up}) {
      if (!way->ended) slot(*way).events |= way->wants();
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].events == 0) fds[i].fd = -1;
    }
    auto since = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_move);
    if (start.idle.count() > 0 && since >= start.idle) {
      result.end = End::kIdle;
      break;
    }
    using std::chrono::milliseconds;
    bool holding = down.held() || up.held();
    milliseconds give_back = holding ? start.stall : start.quiet;
    if (since >= give_back) {
      result.end = holding ? End::kStalled : End::kQuiet;
      break;
    }
    milliseconds wait = give_back - since;
    if (start.idle.count() > 0) wait = std::min(wait, start.idle - since);
    if (raised) {
      wait = std::min(
          wait, std::chrono::duration_cast<milliseconds>(LowWater::kTick - (now - last_down_read)));
    }
    int ready = ::poll(
        fds, 3,
        static_cast<int>(std::clamp<int64_t>(wait.count(), 1, std::numeric_limits<int>::max())));
    if (ready < 0) {
      if (errno == EINTR) continue;
      result.end = End::kFailed;
      break;
    }
    if (fds[2].revents != 0) {
      result.end = End::kStopped;
      break;
    }
    if (ready == 0) continue;
    Step step = Step::kOk;
    for (Way* way : {&down, &up}) {
      if (way->ended) continue;
      if ((slot(*way).revents & (way->wants() | POLLERR | POLLHUP)) == 0) continue;
      uint64_t before = way->count;
      ssize_t read = 0;
      step = way->held() ? write_held(*way) : read_and_write(*way, read);
      if (step == Step::kFailed) break;
      if (way->count != before || step == Step::kEnded) last_move = Clock::now();
      if (way != &down || read == 0) continue;
      last_down_read = Clock::now();
      if (!raised && static_cast<size_t>(read) >= LowWater::kRaiseAfter &&
          set_low_water(start.server, LowWater::kBytes)) {
        raised = true;
        ++result.lowat_raises;
      }
    }
    if (step == Step::kFailed) {
      result.end = End::kFailed;
      break;
    }
  }
  if (raised) set_low_water(start.server, 1);
  result.down_held = down.buffer.subspan(down.start, down.end - down.start);
  result.up_held = up.buffer.subspan(up.start, up.end - up.start);
  result.up_ended = up.ended;
  result.down_ended = down.ended;
  return result;
}

int BulkThread::running() {
  return running_threads.load();
}

std::unique_ptr<BulkThread> BulkThread::start(const BulkCopyStart& start, int done_fd) {
  int now = running_threads.load();
  do {
    if (now >= kMaxThreads) return nullptr;
  } while (!running_threads.compare_exchange_weak(now, now + 1));
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop) {
    --running_threads;
    return nullptr;
  }
  std::unique_ptr<BulkThread> bulk;
  try {
    bulk.reset(new BulkThread(std::move(stop)));
    bulk->thread_ = std::thread([raw = bulk.get(), start, done_fd] {
      raw->result_ = bulk_copy(start, raw->stop_.get());
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(done_fd, &one, sizeof one);
    });
  } catch (const std::exception&) {  // no memory, or no thread could be made
    --running_threads;
    return nullptr;
  }
  return bulk;
}

void BulkThread::stop_and_join() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
  thread_.join();
  --running_threads;
}

BulkThread::~BulkThread() {
  stop_and_join();
}

BulkCopyResult BulkThread::finish() {
  stop_and_join();
  return result_;
}

}  // namespace netfence::gateway
