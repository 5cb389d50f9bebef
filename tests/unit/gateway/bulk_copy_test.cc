// Unit tests of the bulk copy thread's loop (src/gateway/bulk_copy.h) on loopback TCP pairs:
// both ways with half-close and exact counts; quiet (the relay is given back, the low-water mark
// lowered); bytes below the mark still copied; a stalled client ends it with the bytes it holds;
// a reset, a stop and the idle timeout end it; at most BulkThread::kMaxThreads threads at once.
#include "gateway/bulk_copy.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <future>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/loopback_sockets.h"

namespace netfence::gateway {
namespace {

using namespace std::chrono_literals;
using End = BulkCopyResult::End;

// A connected loopback pair: `peer` is the test's blocking end (2 s timeouts), `gateway` the
// non-blocking end bulk_copy() is given.
struct FdPair {
  UniqueFd peer;
  UniqueFd gateway;
};

void connect_fds(FdPair& p) {
  Result<test::LoopbackPair> pair = test::loopback_pair();
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  p.peer = std::move(pair->client);
  p.gateway = std::move(pair->accepted);
  ASSERT_EQ(::fcntl(p.gateway.get(), F_SETFL, ::fcntl(p.gateway.get(), F_GETFL) | O_NONBLOCK), 0);
}

int low_water(int fd) {
  int bytes = -1;
  socklen_t size = sizeof bytes;
  ::getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, &size);
  return bytes;
}

// bulk_copy() between a client pair and a server pair, on a thread of its own.
struct CopyRig {
  FdPair client;  // peer: the sandboxed client
  FdPair server;  // peer: the server
  UniqueFd stop{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  std::vector<std::byte> down_buffer = std::vector<std::byte>(256 * 1024);
  std::vector<std::byte> up_buffer = std::vector<std::byte>(64 * 1024);
  std::future<BulkCopyResult> copy;

  // `quiet`: long by default, so that a test that ends the copy otherwise never sees it go
  // quiet on a loaded machine.
  void start(std::chrono::milliseconds idle = 0ms, std::chrono::milliseconds quiet = 10s,
             std::chrono::milliseconds stall = 10s) {
    ASSERT_NO_FATAL_FAILURE(connect_fds(client));
    ASSERT_NO_FATAL_FAILURE(connect_fds(server));
    ASSERT_TRUE(stop.valid());
    BulkCopyStart from{client.gateway.get(),
                       server.gateway.get(),
                       false,
                       false,
                       idle,
                       quiet,
                       stall,
                       down_buffer,
                       up_buffer};
    copy = std::async(std::launch::async, [from, fd = stop.get()] { return bulk_copy(from, fd); });
  }
  void ask_to_stop() {
    uint64_t one = 1;
    ASSERT_EQ(::write(stop.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  }
  // Waits for the copy to end (a copy that never ends fails the test instead of hanging it).
  BulkCopyResult wait() {
    if (copy.wait_for(5s) != std::future_status::ready) {
      ADD_FAILURE() << "the copy did not end within 5 s";
      ask_to_stop();
    }
    return copy.get();
  }
  ~CopyRig() {
    if (copy.valid()) {
      ask_to_stop();
      copy.wait();
    }
  }
};

TEST(BulkCopy, CopiesBothWaysPassingEachEndOnWithExactCounts) {
  CopyRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start());
  const std::string up = test::pattern(1 << 20, 4);
  const std::string down = test::pattern(8 << 20, 5);
  std::thread client_writer([&] {
    EXPECT_TRUE(test::write_all(rig.client.peer.get(), up));
    ::shutdown(rig.client.peer.get(), SHUT_WR);
  });
  std::thread server_writer([&] {
    EXPECT_TRUE(test::write_all(rig.server.peer.get(), down));
    ::shutdown(rig.server.peer.get(), SHUT_WR);
  });
  test::ReadResult got_up;
  std::thread server_reader([&] { got_up = test::read_to_end(rig.server.peer.get(), 2 << 20); });
  test::ReadResult got_down = test::read_to_end(rig.client.peer.get(), 16 << 20);
  server_reader.join();
  client_writer.join();
  server_writer.join();
  BulkCopyResult result = rig.wait();
  EXPECT_EQ(result.end, End::kDone);
  EXPECT_TRUE(got_up.eof && got_down.eof) << "an end was not passed on";
  EXPECT_TRUE(got_up.data == up) << "the bytes up differ";
  EXPECT_TRUE(got_down.data == down) << "the bytes down differ";
  EXPECT_EQ(result.up, up.size());
  EXPECT_EQ(result.down, down.size());
  EXPECT_TRUE(result.up_ended && result.down_ended);
}

// After a bulk move the mark is raised; a short answer below it still goes (a tick lowers the
// mark), then nothing moves and the copy gives the relay back, the mark lowered, nothing held.
TEST(BulkCopy, BytesBelowTheMarkGoThenTheCopyGoesQuiet) {
  CopyRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start(0ms, /*quiet=*/500ms));
  const std::string bulk = test::pattern(1 << 20, 6);
  std::thread writer([&] { EXPECT_TRUE(test::write_all(rig.server.peer.get(), bulk)); });
  test::ReadResult got = test::read_exactly(rig.client.peer.get(), bulk.size());
  writer.join();
  EXPECT_TRUE(got.data == bulk) << "the bytes differ (read error " << got.error << ")";
  const std::string answer = "ok, your turn";
  ASSERT_TRUE(test::write_all(rig.server.peer.get(), answer));
  EXPECT_EQ(test::read_exactly(rig.client.peer.get(), answer.size()).data, answer);
  BulkCopyResult result = rig.wait();
  EXPECT_EQ(result.end, End::kQuiet);
  EXPECT_GT(result.lowat_raises, 0u) << "the bulk move never raised the mark";
  EXPECT_EQ(result.down, bulk.size() + answer.size());
  EXPECT_EQ(result.up, 0u);
  EXPECT_FALSE(result.up_ended || result.down_ended);
  EXPECT_EQ(low_water(rig.server.gateway.get()), 1) << "the mark was left raised";
}

// A way that already ended stays ended: the copy only carries the other, and ends when it does.
TEST(BulkCopy, AWayThatEndedBeforeIsNotReadAgain) {
  FdPair client, server;
  ASSERT_NO_FATAL_FAILURE(connect_fds(client));
  ASSERT_NO_FATAL_FAILURE(connect_fds(server));
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(test::write_all(server.peer.get(), std::string_view("last words")));
  ASSERT_EQ(::shutdown(server.peer.get(), SHUT_WR), 0);
  std::vector<std::byte> down_buffer(4096), up_buffer(4096);
  BulkCopyStart from{client.gateway.get(),
                     server.gateway.get(),
                     /*up_ended=*/true,
                     false,
                     0ms,
                     10s,
                     10s,
                     down_buffer,
                     up_buffer};
  BulkCopyResult result = bulk_copy(from, stop.get());
  EXPECT_EQ(result.end, End::kDone);
  EXPECT_EQ(result.down, 10u);
  test::ReadResult got = test::read_to_end(client.peer.get());
  EXPECT_EQ(got.data, "last words");
  EXPECT_TRUE(got.eof);
}

TEST(BulkCopy, AResetOnEitherSideFailsIt) {
  CopyRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start());
  ASSERT_TRUE(test::write_all(rig.server.peer.get(), std::string_view("some bytes")));
  EXPECT_EQ(test::read_exactly(rig.client.peer.get(), 10).data, "some bytes");
  linger hard{1, 0};
  ASSERT_EQ(::setsockopt(rig.server.peer.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard), 0);
  rig.server.peer.reset();  // RST
  EXPECT_EQ(rig.wait().end, End::kFailed);
}

// A client that stops reading: the copy holds a buffer it cannot write, so it does not go quiet;
// a stop ends it, and so does the idle timeout, before the rig's stall of 10 s.
TEST(BulkCopy, AStopEndsACopyThatHoldsBytes) {
  CopyRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start(0ms, /*quiet=*/100ms));
  std::thread writer([&] { test::write_until_it_fails(rig.server.peer.get()); });
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(rig.copy.wait_for(0ms), std::future_status::timeout) << "it ended while holding";
  rig.ask_to_stop();
  EXPECT_EQ(rig.wait().end, End::kStopped);
  ::shutdown(rig.server.peer.get(), SHUT_RDWR);  // ends the writer's blocked write
  writer.join();
}

// A client that stops reading for `stall`: the copy ends and says what it holds, and those
// bytes sit exactly between what the client got and what the server's socket still has.
TEST(BulkCopy, AStalledCopyEndsWithTheBytesItHolds) {
  const std::string sent = test::pattern(32 << 20, 12);  // more than the sockets' buffers hold
  CopyRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start(0ms, /*quiet=*/10s, /*stall=*/300ms));
  timeval patient{10, 0};  // the writer blocks while the client does not read
  ASSERT_EQ(::setsockopt(rig.server.peer.get(), SOL_SOCKET, SO_SNDTIMEO, &patient, sizeof patient),
            0);
  std::thread writer([&] { EXPECT_TRUE(test::write_all(rig.server.peer.get(), sent)); });
  BulkCopyResult r = rig.wait();
  EXPECT_EQ(r.end, End::kStalled);
  EXPECT_FALSE(r.down_held.empty()) << "a stalled copy holds the bytes it could not write";
  EXPECT_TRUE(r.up_held.empty());
  // What the client's socket has, then the held bytes, then what the server's socket has.
  std::string got = test::read_exactly(rig.client.peer.get(), r.down).data;
  EXPECT_EQ(got.size(), r.down) << "the count is more than the client's socket received";
  got.append(reinterpret_cast<const char*>(r.down_held.data()), r.down_held.size());
  // Not ASSERTs from here on: a failed one would leave the writer's thread joinable.
  int server_fd = rig.server.gateway.get();
  EXPECT_EQ(::fcntl(server_fd, F_SETFL, ::fcntl(server_fd, F_GETFL) & ~O_NONBLOCK), 0);
  timeval bounded{2, 0};
  EXPECT_EQ(::setsockopt(server_fd, SOL_SOCKET, SO_RCVTIMEO, &bounded, sizeof bounded), 0);
  if (got.size() < sent.size()) got += test::read_exactly(server_fd, sent.size() - got.size()).data;
  writer.join();
  EXPECT_TRUE(got == sent) << "bytes were lost, doubled or reordered";
}

TEST(BulkCopy, TheIdleTimeoutEndsACopyThatHoldsBytes) {
  CopyRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start(/*idle=*/200ms));
  std::thread writer([&] { test::write_until_it_fails(rig.server.peer.get()); });
  EXPECT_EQ(rig.wait().end, End::kIdle);
  ::shutdown(rig.server.peer.get(), SHUT_RDWR);
  writer.join();
}

// A thread counts from start() until finish() or its destruction has joined it, once.
TEST(BulkThread, AtMostTheLimitRunAtOnce) {
  std::vector<std::unique_ptr<FdPair[]>> pairs;
  std::vector<UniqueFd> done;
  std::vector<std::unique_ptr<BulkThread>> threads;
  std::vector<std::byte> down_buffers(4 * 4096), up_buffers(4 * 4096);  // a page each way each
  auto start = [&](int i) {
    BulkCopyStart from;
    from.client = pairs.back()[0].gateway.get();
    from.server = pairs.back()[1].gateway.get();
    from.down_buffer = std::span(down_buffers).subspan(4096 * i, 4096);
    from.up_buffer = std::span(up_buffers).subspan(4096 * i, 4096);
    return BulkThread::start(from, done.back().get());
  };
  for (int i = 0; i <= BulkThread::kMaxThreads; ++i) {
    pairs.push_back(std::make_unique<FdPair[]>(2));
    ASSERT_NO_FATAL_FAILURE(connect_fds(pairs.back()[0]));
    ASSERT_NO_FATAL_FAILURE(connect_fds(pairs.back()[1]));
    done.emplace_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    EXPECT_EQ(BulkThread::available(), i < BulkThread::kMaxThreads);
    threads.push_back(start(i));
    EXPECT_EQ(threads.back() != nullptr, i < BulkThread::kMaxThreads) << "thread " << i;
  }
  threads.front()->finish();
  EXPECT_TRUE(BulkThread::available()) << "a joined thread still counts";
  threads.front().reset();  // joined already: not counted off twice
  threads.back() = start(BulkThread::kMaxThreads);
  EXPECT_NE(threads.back(), nullptr);
  EXPECT_FALSE(BulkThread::available());
  threads.clear();
  EXPECT_EQ(BulkThread::running(), 0);
}

}  // namespace
}  // namespace netfence::gateway
