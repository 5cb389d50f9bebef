// In-process tests of relay workers (src/gateway/relay_workers.h) behind the gateway: relays
// beyond Options::local_relays move to worker threads whose descriptor tables are their own,
// they carry bytes and half-closes like any relay, their close events count the bytes, and
// stopping the gateway ends them. The limits netfence run derives from RLIMIT_NOFILE are here
// too. The fixture (gateway_fixture.h) explains the addresses used.

// The header under test first (see gateway_test.cc).
#include "gateway/gateway.h"

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "gateway_fixture.h"

namespace netfence::gateway::fixture {
namespace {

// Sockets in this process's main descriptor table (the one the test thread uses).
int count_open_sockets() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* entry = ::readdir(dir)) {
    char target[64] = {};
    std::string link = std::string("/proc/self/fd/") + entry->d_name;
    if (::readlink(link.c_str(), target, sizeof target - 1) > 0 &&
        std::string_view(target).starts_with("socket:")) {
      ++count;
    }
  }
  ::closedir(dir);
  return count;
}

void exchange(const Client& c, const UniqueFd& s, const std::string& up, const std::string& down) {
  ASSERT_TRUE(test::write_all(c.fd.get(), up));
  EXPECT_EQ(test::read_exactly(s.get(), up.size()).data, up);
  ASSERT_TRUE(test::write_all(s.get(), down));
  EXPECT_EQ(test::read_exactly(c.fd.get(), down.size()).data, down);
}

// One relay here, then two workers with room for two each, then here again.
void spill_after_one(Options& o) {
  o.limits.local_relays = 1;
  o.limits.held_here = 100;
  o.limits.relay_workers = 2;
  o.limits.relays_per_worker = 2;
}

TEST_F(GatewayTest, RelaysBeyondTheLocalShareMoveToWorkersAndLeaveThisTable) {
  Server server = listen_on("127.0.0.2");
  ASSERT_NO_FATAL_FAILURE(start({"127.0.0.2"}, {}, spill_after_one));
  const Destination dst = destination("127.0.0.2", server.port);
  int before = count_open_sockets();

  struct Pair {
    Client c;
    UniqueFd s;
  };
  std::vector<Pair> pairs;
  for (int i = 0; i < 6; ++i) {
    Pair p{connect(dst), {}};
    ASSERT_TRUE(p.c.fd);
    p.s = server.accept();
    ASSERT_TRUE(p.s) << "connection " << i << " was not dialed";
    std::string n = std::to_string(i);
    ASSERT_NO_FATAL_FAILURE(exchange(p.c, p.s, "up " + n, "down " + n + "!"));
    pairs.push_back(std::move(p));
  }
  // The 2nd to 5th went to the two workers; the 1st stayed and the 6th found them full.
  EXPECT_EQ(stats().active, 6u);
  EXPECT_EQ(stats().on_workers, 4u);
  // This table holds the test's 12 sockets, the gateway's 2 x 2 local ones and its ends of the
  // two workers' channels: not 2 x 6 relayed sockets.
  EXPECT_EQ(count_open_sockets() - before, 12 + 4 + 2);

  // Half-close through a worker: the server sees EOF and can still answer.
  Pair& p = pairs[2];
  ASSERT_EQ(::shutdown(p.c.fd.get(), SHUT_WR), 0);
  test::ReadResult rest = test::read_to_end(p.s.get());
  EXPECT_TRUE(rest.eof);
  ASSERT_TRUE(test::write_all(p.s.get(), "late reply"));
  EXPECT_EQ(test::read_exactly(p.c.fd.get(), 10).data, "late reply");
  p.s.reset();
  test::ReadResult end = test::read_to_end(p.c.fd.get());
  EXPECT_TRUE(end.eof);
  EXPECT_EQ(end.error, 0);
  Json e = wait_event(p.c, "close");
  EXPECT_EQ(field(e, "reason"), "eof");
  EXPECT_EQ(number(e, "bytes_up"), 4u);
  EXPECT_EQ(number(e, "bytes_down"), 7u + 10u);
  EXPECT_EQ(number(e, "id"), number(wait_event(p.c, "connect"), "id"));

  for (Pair& q : pairs) {
    q.c.fd.reset();
    q.s.reset();
  }
  for (Pair& q : pairs) EXPECT_EQ(field(wait_event(q.c, "close"), "verdict"), "allow");
  wait_until_idle();
  EXPECT_EQ(stats().on_workers, 0u);
  EXPECT_EQ(stats().bytes_up, 6u * 4u);
  EXPECT_EQ(stats().bytes_down, 6u * 7u + 10u);

  // The workers have room again: a new connection beyond the local share is carried.
  Pair a{connect(dst), {}};
  a.s = server.accept();
  Pair b{connect(dst), {}};
  b.s = server.accept();
  ASSERT_TRUE(a.s && b.s);
  ASSERT_NO_FATAL_FAILURE(exchange(a.c, a.s, "again", "AGAIN"));
  ASSERT_NO_FATAL_FAILURE(exchange(b.c, b.s, "more", "MORE"));
  EXPECT_EQ(stats().on_workers, 1u);
}

TEST_F(GatewayTest, StoppingTheGatewayEndsRelaysOnWorkers) {
  Server server = listen_on("127.0.0.2");
  ASSERT_NO_FATAL_FAILURE(start({"127.0.0.2"}, {}, [](Options& o) {
    spill_after_one(o);
    o.limits.local_relays = 0;
  }));
  const Destination dst = destination("127.0.0.2", server.port);
  Client c = connect(dst);
  UniqueFd s = server.accept();
  ASSERT_TRUE(s);
  ASSERT_NO_FATAL_FAILURE(exchange(c, s, "x", "y"));
  EXPECT_EQ(stats().on_workers, 1u);

  on_io([this] {
    gateway_->stop();
    return 0;
  });
  // The worker's loop ends and its sockets close: both ends see the connection end.
  test::ReadResult at_client = test::read_to_end(c.fd.get());
  EXPECT_TRUE(at_client.eof || at_client.error == ECONNRESET);
  test::ReadResult at_server = test::read_to_end(s.get());
  EXPECT_TRUE(at_server.eof || at_server.error == ECONNRESET);
  Json e = wait_event(c, "close");
  EXPECT_EQ(field(e, "reason"), "reset");
  wait_until_idle();
}

TEST_F(GatewayTest, ConnectionsBeingJudgedAreBoundedOnTheGatewaysThread) {
  // The gateway's own table keeps room for connections it is still judging: over held_here,
  // a new one is refused even though the workers have room.
  Server server = listen_on("127.0.0.2");
  ASSERT_NO_FATAL_FAILURE(start({"127.0.0.2", "named.example"}, {}, [](Options& o) {
    spill_after_one(o);
    o.limits.local_relays = 0;
    o.limits.held_here = 1;
  }));
  Client relayed = connect(destination("127.0.0.2", server.port));
  UniqueFd s = server.accept();
  ASSERT_TRUE(s);
  ASSERT_NO_FATAL_FAILURE(exchange(relayed, s, "r", "R"));
  EXPECT_EQ(stats().on_workers, 1u);  // on a worker: not held here

  // No rule for this address: the gateway waits for a name in the first bytes (and dials
  // nothing: the connection is refused or times out before any name comes).
  Client waiting = connect(destination(kUnroutableIp, 443));
  ASSERT_TRUE(waiting.fd);
  Client over = connect(destination(kUnroutableIp, 443));
  test::ReadResult r = test::read_to_end(over.fd.get());
  EXPECT_EQ(r.error, ECONNRESET);
  Json e = wait_event(over, "connect");
  EXPECT_EQ(field(e, "reason"), "too_many_connections");
  EXPECT_NE(field(e, "detail").find("on the gateway's thread"), std::string::npos)
      << field(e, "detail");
  EXPECT_EQ(stats().active, 2u) << "the connection being judged was refused too";
}

TEST_F(GatewayTest, AWorkerKeepsNoCopyOfTheGatewaysSockets) {
  // A worker's table starts as a copy of the gateway's. A copy it kept would keep the socket
  // open: the gateway's reset of a connection it held when the worker started would not reach
  // the client (a socket is reset only when its last descriptor closes).
  Server server = listen_on("127.0.0.2");
  ASSERT_NO_FATAL_FAILURE(start({"127.0.0.2", "named.example"}, {}, [](Options& o) {
    spill_after_one(o);
    o.limits.local_relays = 0;
    o.first_bytes_timeout = 300ms;
  }));
  Client judged = connect(destination(kUnroutableIp, 443));  // waits for a name
  ASSERT_TRUE(judged.fd);
  auto deadline = std::chrono::steady_clock::now() + kStepTimeout;
  while (stats().active < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(stats().active, 1u) << "the gateway did not take the connection";

  // The first relay starts a worker, while `judged` is still in the gateway's table.
  Client relayed = connect(destination("127.0.0.2", server.port));
  UniqueFd s = server.accept();
  ASSERT_TRUE(s);
  ASSERT_NO_FATAL_FAILURE(exchange(relayed, s, "r", "R"));
  ASSERT_EQ(stats().on_workers, 1u);

  // No name within the first-bytes timeout: refused with a reset, which the client must see
  // (its read gives up after kStepTimeout).
  test::ReadResult r = test::read_to_end(judged.fd.get());
  EXPECT_EQ(r.data, "");
  EXPECT_EQ(r.error, ECONNRESET) << "eof=" << r.eof;
  EXPECT_EQ(field(wait_event(judged, "connect"), "verdict"), "deny");
}

TEST(ConnectionLimitsForFdLimit, TwoDescriptorsEachPerTableAfterAReserve) {
  // A quarter of the limit, at most 256, stays for listeners, DNS and UDP sockets and the log.
  ConnectionLimits l = connection_limits_for_fd_limit(20000);  // this CI's hard limit
  EXPECT_EQ(l.held_here, 9872u);
  EXPECT_EQ(l.local_relays, 9872u - 1024u);      // room kept for connections being judged
  EXPECT_EQ(l.relays_per_worker, 9872u - 256u);  // room for the worker's splice pipes
  EXPECT_EQ(l.relay_workers, 6u);                // 9,872 + 6 x 9,616 >= 65,536
  EXPECT_EQ(l.max_connections, kMaxConnectionsCap);

  l = connection_limits_for_fd_limit(64);
  EXPECT_EQ(l.held_here, 24u);
  EXPECT_EQ(l.local_relays, 18u);
  EXPECT_EQ(l.relays_per_worker, 21u);
  EXPECT_EQ(l.relay_workers, kMaxRelayWorkers);
  EXPECT_EQ(l.max_connections, 24u + 21u * kMaxRelayWorkers);

  l = connection_limits_for_fd_limit(1024);
  EXPECT_EQ(l.held_here, 384u);
  EXPECT_EQ(l.max_connections, 384u + 8u * 336u);

  // Enough descriptors in one table: no workers, the memory bound.
  l = connection_limits_for_fd_limit(1u << 20);
  EXPECT_EQ(l.held_here, kMaxConnectionsCap);
  EXPECT_EQ(l.relay_workers, 0u);
  EXPECT_EQ(l.max_connections, kMaxConnectionsCap);

  for (uint64_t tiny : {0u, 2u}) {  // never zero
    l = connection_limits_for_fd_limit(tiny);
    EXPECT_EQ(l.held_here, 1u);
    EXPECT_GE(l.max_connections, 1u);
  }
}

}  // namespace
}  // namespace netfence::gateway::fixture
