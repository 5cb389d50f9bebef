// Unit tests of the relay's socket helpers (src/gateway/relay.h) on loopback TCP pairs:
// read_now's four outcomes (bytes, nothing yet, the peer's FIN, the peer's reset) and that it
// leaves the socket's blocking mode as it found it; relay_filtered with an empty filter; when a
// direction counts as its thread's only bulk one (BulkWatch), that a download copied
// through the bulk buffer arrives whole, and that its low-water mark holds no bytes back; the
// hand-over to a bulk copy thread and back, never for a filtered relay, and its end when the
// relay is destroyed.

// The header under test first (see gateway_test.cc: asio's configuration must match the
// gateway library's).
#include "gateway/relay.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/bytes.h"
#include "gateway/bulk_copy.h"
#include "support/loopback_sockets.h"

namespace netfence::gateway {
namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;

// A connected loopback pair: `peer` is a plain blocking fd the test writes with, `socket` the
// accepted side as an asio socket (blocking, as asio leaves a socket it was given).
struct Pair {
  asio::io_context io;
  UniqueFd peer;
  tcp::socket socket{io};
};

void connect_pair(Pair& p) {
  Result<test::LoopbackPair> pair = test::loopback_pair();
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  p.peer = std::move(pair->client);
  asio::error_code ec;
  p.socket.assign(tcp::v4(), pair->accepted.release(), ec);
  ASSERT_FALSE(ec) << ec.message();
}

bool fd_non_blocking(int fd) {
  return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

// Waits (bounded) until the socket has something to read or an error pending.
void wait_readable(tcp::socket& s) {
  asio::error_code ec;
  s.wait(tcp::socket::wait_read, ec);
  ASSERT_FALSE(ec) << ec.message();
}

TEST(ReadNow, NothingThereIsWouldBlockAndTheSocketStaysBlocking) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(connect_pair(p));
  ASSERT_FALSE(fd_non_blocking(p.socket.native_handle()));
  std::array<std::byte, 64> buffer{};
  asio::error_code ec;
  EXPECT_EQ(read_now(p.socket, buffer.data(), buffer.size(), ec), 0u);
  EXPECT_EQ(ec, asio::error::would_block) << ec.message();
  EXPECT_FALSE(fd_non_blocking(p.socket.native_handle()));
}

TEST(ReadNow, ReadsWhatIsThereUpToTheBufferAndClearsAnOldError) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(connect_pair(p));
  ASSERT_TRUE(test::write_all(p.peer.get(), std::string_view("hello, relay")));
  ASSERT_NO_FATAL_FAILURE(wait_readable(p.socket));
  std::array<std::byte, 5> buffer{};
  asio::error_code ec = asio::error::would_block;  // left from an earlier call
  ASSERT_EQ(read_now(p.socket, buffer.data(), buffer.size(), ec), 5u);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(as_chars(buffer), "hello");
  std::array<std::byte, 64> rest{};
  ASSERT_EQ(read_now(p.socket, rest.data(), rest.size(), ec), 7u);
  EXPECT_EQ(as_chars(ByteSpan(rest).first(7)), ", relay");
  EXPECT_EQ(read_now(p.socket, rest.data(), rest.size(), ec), 0u);
  EXPECT_EQ(ec, asio::error::would_block);
}

TEST(ReadNow, ThePeersFinIsEofAfterTheLastBytes) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(connect_pair(p));
  ASSERT_TRUE(test::write_all(p.peer.get(), std::string_view("bye")));
  ASSERT_EQ(::shutdown(p.peer.get(), SHUT_WR), 0);
  ASSERT_NO_FATAL_FAILURE(wait_readable(p.socket));
  std::array<std::byte, 64> buffer{};
  asio::error_code ec;
  // The bytes come first; the FIN shows on the read after them.
  EXPECT_EQ(read_now(p.socket, buffer.data(), buffer.size(), ec), 3u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(read_now(p.socket, buffer.data(), buffer.size(), ec), 0u);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
}

TEST(ReadNow, ThePeersResetIsAnErrorNotEofOrWouldBlock) {
  Pair p;
  ASSERT_NO_FATAL_FAILURE(connect_pair(p));
  linger abort_on_close{1, 0};  // close() sends RST instead of FIN
  ASSERT_EQ(
      ::setsockopt(p.peer.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close), 0);
  p.peer.reset();
  ASSERT_NO_FATAL_FAILURE(wait_readable(p.socket));
  std::array<std::byte, 64> buffer{};
  asio::error_code ec;
  EXPECT_EQ(read_now(p.socket, buffer.data(), buffer.size(), ec), 0u);
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
}

// An empty filter passes everything; the bytes read before the relay still go first.
TEST(RelayFiltered, AnEmptyFilterPassesTheInitialBytesAndTheRest) {
  Pair client;  // peer: the sandboxed client; socket: the gateway's end
  Pair server;  // peer: the server; socket: the gateway's dialed end
  ASSERT_NO_FATAL_FAILURE(connect_pair(client));
  ASSERT_NO_FATAL_FAILURE(connect_pair(server));
  asio::io_context io;
  tcp::socket from_client(io), to_server(io);
  asio::error_code ec;
  from_client.assign(tcp::v4(), client.socket.release(ec), ec);
  to_server.assign(tcp::v4(), server.socket.release(ec), ec);
  ASSERT_FALSE(ec) << ec.message();
  BufferPool pool;
  ByteSpan initial_text = as_bytes("GET / HTTP/1.1\r\n");
  std::vector<std::byte> initial(initial_text.begin(), initial_text.end());
  RelayResult result;
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        result = co_await relay_filtered(from_client, to_server, pool, 5s, std::move(initial),
                                         UpstreamFilter{});
        done = true;
      },
      asio::detached);
  std::thread loop([&] { io.run(); });
  EXPECT_TRUE(test::write_all(client.peer.get(), std::string_view("Host: a.test\r\n\r\n")));
  EXPECT_EQ(::shutdown(client.peer.get(), SHUT_WR), 0);
  test::ReadResult up = test::read_to_end(server.peer.get());
  EXPECT_EQ(up.data, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
  EXPECT_TRUE(up.eof);
  EXPECT_EQ(::shutdown(server.peer.get(), SHUT_WR), 0);  // the server is done too
  test::ReadResult down = test::read_to_end(client.peer.get());
  EXPECT_TRUE(down.eof);
  loop.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(result.bytes_up, up.data.size());
  EXPECT_FALSE(result.reset);
  EXPECT_FALSE(result.cut);
}

TEST(BulkWatch, ADirectionIsBulkAtAMebibyteAWindowAndAloneWhileNoOtherMovesBulk) {
  BufferPool pool;
  BulkWatch a(pool);
  BulkWatch b(pool);
  BulkWatch c(pool);
  auto t = BulkWatch::Clock::now();
  EXPECT_FALSE(a.alone(pool, t));
  a.moved(pool, BulkWatch::kBytes - 1, t);
  EXPECT_FALSE(a.alone(pool, t)) << "one byte short of bulk";
  a.moved(pool, 1, t + 1ms);
  EXPECT_TRUE(a.alone(pool, t + 1ms));
  c.moved(pool, 64 * 1024, t + 5ms);  // not bulk: its moves do not count against a
  EXPECT_TRUE(a.alone(pool, t + 6ms));
  b.moved(pool, BulkWatch::kBytes, t + 10ms);  // a second bulk direction
  EXPECT_FALSE(a.alone(pool, t + 20ms));
  EXPECT_FALSE(b.alone(pool, t + 20ms));
  a.moved(pool, 64 * 1024, t + 30ms);  // both keep moving: neither is alone
  EXPECT_FALSE(b.alone(pool, t + 40ms));
  EXPECT_FALSE(a.alone(pool, t + 40ms));
  // b stops: once its last bulk move is a window old, a (still bulk) is alone again.
  EXPECT_FALSE(a.alone(pool, t + 10ms + BulkWatch::kWindow - 1ms));
  EXPECT_TRUE(a.alone(pool, t + 10ms + BulkWatch::kWindow));
}

TEST(BulkWatch, BulkIsARateNotATotalAndEndsWhenTheDirectionSlowsDown) {
  BufferPool pool;
  BulkWatch chatty(pool);
  auto t = BulkWatch::Clock::now();
  // 10 KiB every 10 ms for 20 s (about 8 Mbit/s): 200 MB in all, never bulk.
  for (int i = 0; i < 2000; ++i) {
    chatty.moved(pool, 10 * 1024, t + i * 10ms);
    ASSERT_FALSE(chatty.alone(pool, t + i * 10ms)) << "bulk after " << i << " moves";
  }
  EXPECT_EQ(pool.bulk_moves()[0].direction, 0u) << "a direction that was never bulk was recorded";

  BulkWatch a(pool);
  auto u = t + 30s;
  a.moved(pool, BulkWatch::kBytes / 2, u);
  a.moved(pool, BulkWatch::kBytes / 2, u + 50ms);
  EXPECT_TRUE(a.alone(pool, u + 50ms));
  EXPECT_TRUE(a.alone(pool, u + 2 * BulkWatch::kWindow - 1ms)) << "the window just before counts";
  EXPECT_FALSE(a.alone(pool, u + 2 * BulkWatch::kWindow)) << "quiet for a whole window";
  a.moved(pool, BulkWatch::kBytes / 2, u + 3 * BulkWatch::kWindow);
  EXPECT_FALSE(a.alone(pool, u + 3 * BulkWatch::kWindow)) << "half a mebibyte after the pause";

  // The pool keeps the last two bulk movers: b, then c, then b again; c is still seen by b.
  BulkWatch b(pool);
  BulkWatch c(pool);
  auto v = t + 60s;
  b.moved(pool, BulkWatch::kBytes, v);
  c.moved(pool, BulkWatch::kBytes, v + 1ms);
  b.moved(pool, 1, v + 2ms);
  EXPECT_FALSE(b.alone(pool, v + 3ms));
  EXPECT_FALSE(c.alone(pool, v + 3ms));
}

// A relay() between two loopback pairs, run on a thread of its own; the test writes and reads
// the peers' ends.
struct RelayRig {
  Pair client;  // peer: the sandboxed client; socket: the gateway's end
  Pair server;  // peer: the server; socket: the gateway's dialed end
  asio::io_context io;
  tcp::socket from_client{io};
  tcp::socket to_server{io};
  BufferPool pool;
  UpstreamFilter filter;  // set before start(): relay_filtered() instead of relay()
  RelayResult result;
  bool done = false;
  std::thread loop;

  void start() {
    ASSERT_NO_FATAL_FAILURE(connect_pair(client));
    ASSERT_NO_FATAL_FAILURE(connect_pair(server));
    asio::error_code ec;
    from_client.assign(tcp::v4(), client.socket.release(ec), ec);
    to_server.assign(tcp::v4(), server.socket.release(ec), ec);
    ASSERT_FALSE(ec) << ec.message();
    asio::co_spawn(
        io,
        [this]() -> asio::awaitable<void> {
          if (filter) {
            result = co_await relay_filtered(from_client, to_server, pool, 5s, {}, filter);
          } else {
            result = co_await relay(from_client, to_server, pool, 5s);
          }
          done = true;
        },
        asio::detached);
    loop = std::thread([this] { io.run(); });
  }
  ~RelayRig() {
    if (!loop.joinable()) return;
    io.stop();  // a failed test may leave the relay waiting
    loop.join();
  }

  // Sends `bytes` from `from`'s peer (then its FIN) while reading `to`'s peer to the end, then
  // ends the other way too and waits for the relay to end; true if `to` got exactly the bytes.
  bool one_way(Pair& from, Pair& to, const std::string& bytes) {
    std::thread writer([&] {
      EXPECT_TRUE(test::write_all(from.peer.get(), bytes));
      ::shutdown(from.peer.get(), SHUT_WR);
    });
    test::ReadResult got = test::read_to_end(to.peer.get(), 2 * bytes.size());
    writer.join();
    EXPECT_TRUE(got.eof);
    EXPECT_EQ(got.data.size(), bytes.size());
    EXPECT_EQ(::shutdown(to.peer.get(), SHUT_WR), 0);
    EXPECT_TRUE(test::read_to_end(from.peer.get()).eof);
    wait_for_a_clean_end();
    return got.data == bytes;
  }

  // Ends the connection from the server's side, then the client's, each end arriving.
  void end_both_ways() {
    EXPECT_EQ(::shutdown(server.peer.get(), SHUT_WR), 0);
    EXPECT_TRUE(test::read_to_end(client.peer.get()).eof);
    EXPECT_EQ(::shutdown(client.peer.get(), SHUT_WR), 0);
    EXPECT_TRUE(test::read_to_end(server.peer.get()).eof);
    wait_for_a_clean_end();
  }

  void wait_for_a_clean_end() {
    loop.join();
    EXPECT_TRUE(done);
    EXPECT_FALSE(result.reset);
  }

  // The server sends `bytes` (no FIN) and the client reads them all.
  void download(const std::string& bytes) {
    std::thread writer([&] { EXPECT_TRUE(test::write_all(server.peer.get(), bytes)); });
    test::ReadResult got = test::read_exactly(client.peer.get(), bytes.size());
    writer.join();
    EXPECT_EQ(got.error, 0) << "the end of the download did not arrive";
    EXPECT_TRUE(got.data == bytes) << "the bytes differ";
  }
};

// A one-way download through relay(): once it is bulk it is copied through the bulk buffer, and
// every byte arrives in order, with the end of stream and the counts.
TEST(Relay, ALoneBulkDownloadIsCopiedThroughTheBulkBufferAndArrivesWhole) {
  RelayRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start());
  const std::string down = test::pattern(8 << 20, 1);
  EXPECT_TRUE(rig.one_way(rig.server, rig.client, down)) << "the bytes differ";
  EXPECT_EQ(rig.result.bytes_down, down.size());
  EXPECT_EQ(rig.result.bytes_up, 0u);
  EXPECT_GT(rig.pool.bulk_copies(), 0u) << "the download was never copied through the bulk buffer";
  EXPECT_GT(rig.pool.handovers(), 0u) << "the download was never handed to a bulk copy thread";
}

// A way down that copies bulk raises its socket's receive low-water mark, and what the server
// sends below the mark while it waits for the client (the rest of a download, then a short
// answer) still arrives: the tick lowers the mark once nothing moves. Without the tick the bytes
// would sit in the gateway's socket and the reads below would time out (2 s).
TEST(Relay, BytesBelowTheBulkLowWaterMarkArriveWhileTheServerWaits) {
  RelayRig rig;
  // The event loop's own mark and tick (the BulkCopy tests cover the thread's).
  rig.pool.allow_hand_over(false);
  ASSERT_NO_FATAL_FAILURE(rig.start());
  const std::string bulk = test::pattern(8 << 20, 3);
  rig.download(bulk);
  EXPECT_GT(rig.pool.lowat_raises(), 0u) << "the bulk copy never raised the low-water mark";
  EXPECT_EQ(rig.pool.handovers(), 0u);

  // An answer far below the mark, then the server waits for the client's reply.
  const std::string answer = "ok, your turn";
  ASSERT_TRUE(test::write_all(rig.server.peer.get(), answer));
  test::ReadResult short_got = test::read_exactly(rig.client.peer.get(), answer.size());
  EXPECT_EQ(short_got.data, answer) << "read error " << short_got.error;
  ASSERT_TRUE(test::write_all(rig.client.peer.get(), std::string_view("y")));
  EXPECT_EQ(test::read_exactly(rig.server.peer.get(), 1).data, "y");

  rig.end_both_ways();
  EXPECT_EQ(rig.result.bytes_down, bulk.size() + answer.size());
  EXPECT_EQ(rig.result.bytes_up, 1u);
}

// The bulk copy thread gives a quiet relay back to the event loop, which carries it on (an
// upload and its answer) and hands it over again when the next download is bulk; every byte
// is counted once.
TEST(Relay, ABulkCopyThreadGivesAQuietRelayBackAndTakesItAgain) {
  RelayRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start());
  const std::string first = test::pattern(8 << 20, 9);
  rig.download(first);
  uint64_t handed = rig.pool.handovers();
  EXPECT_GE(handed, 1u);
  // Quiet for 100 ms: given back (waited for up to 2 s, however loaded the machine).
  for (int i = 0; i < 200 && BulkThread::running() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(BulkThread::running(), 0) << "the quiet relay still holds a bulk copy thread";
  const std::string request = "GET /next HTTP/1.1\r\n\r\n";
  ASSERT_TRUE(test::write_all(rig.client.peer.get(), request));
  EXPECT_EQ(test::read_exactly(rig.server.peer.get(), request.size()).data, request);
  const std::string second = test::pattern(8 << 20, 10);
  rig.download(second);
  EXPECT_GT(rig.pool.handovers(), handed) << "the second download was not handed over";
  rig.end_both_ways();
  EXPECT_EQ(rig.result.bytes_down, first.size() + second.size());
  EXPECT_EQ(rig.result.bytes_up, request.size());
}

// A client that stops reading in the middle of a handed-over download: after the stall the
// bulk copy thread gives the relay back with the bytes it held, so it no longer holds a thread,
// and once the client reads again every byte arrives, in order and counted once.
TEST(Relay, AClientThatStopsReadingGivesTheBulkCopyThreadBackWithItsBytes) {
  const std::string first = test::pattern(8 << 20, 13);
  const std::string rest = test::pattern(24 << 20, 14);  // more than the sockets' buffers hold
  RelayRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start());
  timeval patient{10, 0};  // the writer blocks while the client does not read
  ASSERT_EQ(::setsockopt(rig.server.peer.get(), SOL_SOCKET, SO_SNDTIMEO, &patient, sizeof patient),
            0);
  rig.download(first);
  ASSERT_GE(rig.pool.handovers(), 1u) << "the download was never handed to a bulk copy thread";
  std::thread writer([&] { EXPECT_TRUE(test::write_all(rig.server.peer.get(), rest)); });
  // The stall is a second with nothing moved: waited for up to 5 s, however loaded the machine.
  for (int i = 0; i < 500 && BulkThread::running() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(BulkThread::running(), 0) << "a client that stopped reading still holds the thread";
  test::ReadResult got = test::read_exactly(rig.client.peer.get(), rest.size());
  writer.join();
  EXPECT_EQ(got.error, 0) << "the end of the download did not arrive";
  EXPECT_TRUE(got.data == rest) << "bytes were lost, doubled or reordered";
  rig.end_both_ways();
  EXPECT_GE(rig.pool.stalls(), 1u) << "the relay was never given back holding bytes";
  EXPECT_EQ(rig.result.bytes_down, first.size() + rest.size());
}

// A filtered relay's client bytes must pass its filter, which the bulk copy thread would not
// run: its downloads stay in the event loop, and the filter still sees the bytes that follow.
TEST(Relay, AFilteredRelayIsNeverHandedToABulkCopyThread) {
  RelayRig rig;
  size_t filtered = 0;
  rig.filter = [&](std::span<const std::byte> pending) -> std::optional<size_t> {
    filtered += pending.size();
    return pending.size();
  };
  ASSERT_NO_FATAL_FAILURE(rig.start());
  rig.download(test::pattern(8 << 20, 11));
  const std::string request = "after the download";
  ASSERT_TRUE(test::write_all(rig.client.peer.get(), request));
  EXPECT_EQ(test::read_exactly(rig.server.peer.get(), request.size()).data, request);
  rig.end_both_ways();
  EXPECT_EQ(rig.pool.handovers(), 0u);
  EXPECT_EQ(filtered, request.size());
}

// A relay destroyed with its io_context while its bulk copy thread copies (the client stopped
// reading, so the copy holds bytes and never goes quiet): the thread is stopped and joined.
TEST(Relay, DestroyingARelayStopsItsBulkCopyThread) {
  {
    RelayRig rig;
    ASSERT_NO_FATAL_FAILURE(rig.start());
    std::thread writer([&] { test::write_until_it_fails(rig.server.peer.get()); });
    test::ReadResult got = test::read_exactly(rig.client.peer.get(), 4 << 20);
    EXPECT_EQ(got.data.size(), 4u << 20);
    EXPECT_GE(rig.pool.handovers(), 1u);
    EXPECT_FALSE(rig.done);
    rig.io.stop();
    rig.loop.join();
    // Frames go with the io_context, after the peers' writer has been unblocked.
    ::shutdown(rig.server.peer.get(), SHUT_RDWR);
    writer.join();
  }
  EXPECT_EQ(BulkThread::running(), 0) << "the destroyed relay's thread still counts";
}

// The way up keeps splicing however much it carries (only a way down copies).
TEST(Relay, ABulkUploadIsNotCopied) {
  RelayRig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start());
  const std::string up = test::pattern(8 << 20, 2);
  EXPECT_TRUE(rig.one_way(rig.client, rig.server, up)) << "the bytes differ";
  EXPECT_EQ(rig.result.bytes_up, up.size());
  EXPECT_EQ(rig.pool.bulk_copies(), 0u);
}

}  // namespace
}  // namespace netfence::gateway
