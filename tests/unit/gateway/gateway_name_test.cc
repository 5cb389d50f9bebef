// In-process tests of the gateway (src/gateway/gateway.h), part 2: connections judged by the
// name in their first bytes (SPEC 1.3 step 5): the SNI of a TLS ClientHello or the Host of an
// HTTP/1 request, dial by name (never the client's chosen address), the answers a denied client
// gets in its own protocol, dial failures, and input that names nothing usable. The fixture
// (gateway_fixture.h) explains the addresses used: each client "meant" to reach a sentinel on
// the host's own address, which the gateway must never connect to.

// The header under test first: asio's configuration depends on what was included before it
// (ASIO_HAS_STD_ALIGNED_ALLOC), and it must match the gateway library's or handler memory is
// freed differently from how it was allocated.
#include "gateway/gateway.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gateway_fixture.h"

namespace netfence::gateway::fixture {
namespace {

std::string port_text(uint16_t port) {
  return std::to_string(port);
}

// What a denied or failed client receives before the gateway closes.
test::ReadResult answer_of(const Client& c) {
  return test::read_to_end(c.fd.get());
}

void expect_tls_alert(const Client& c, const std::string& alert = kTlsAlert) {
  test::ReadResult r = answer_of(c);
  EXPECT_EQ(r.data, alert);
  EXPECT_TRUE(r.eof) << "error=" << r.error;
}

// A fatal internal_error alert: the policy allowed the connection, the dial failed.
const std::string kTlsInternalErrorAlert("\x15\x03\x03\x00\x02\x02\x50", 7);

std::string header_block(const std::string& response) {
  return response.substr(0, response.find("\r\n\r\n") + 2);
}

std::string body_of(const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

// A 403 whose X-Netfence-Reason is `reason` and whose Content-Length matches its body.
void expect_forbidden(const std::string& response, const std::string& reason) {
  EXPECT_EQ(response.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << response;
  EXPECT_NE(header_block(response).find("\r\nX-Netfence-Reason: " + reason + "\r\n"),
            std::string::npos)
      << response;
  std::string body = body_of(response);
  EXPECT_NE(
      header_block(response).find("\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"),
      std::string::npos)
      << response;
}

class GatewayNameTest : public GatewayTest {
 protected:
  // api.test resolves to 127.0.0.2, where `api_` listens; "127.0.0.2" (an IP rule, as SPEC 1.4
  // requires for a name that leads to loopback) lets the resolved address pass judge_resolved
  // without letting any client reach it by address, since no client "means" 127.0.0.2.
  void start_with(std::vector<std::string> allow, std::vector<std::string> deny = {},
                  const std::function<void(Options&)>& tweak = {}) {
    api_ = site("127.0.0.2");
    add_name("api.test", {"127.0.0.2"});
    allow.push_back("127.0.0.2");
    start(std::move(allow), std::move(deny), tweak);
  }

  void TearDown() override {
    api_ = Site{};  // before the base class counts file descriptors
    GatewayTest::TearDown();
  }

  Site api_;
};

// --- TLS: SNI --------------------------------------------------------------------------------

TEST_F(GatewayNameTest, AllowedSniIsDialedByNameNotByTheClientsAddress) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  Client c = connect(api_.original);
  const test::Bytes hello = hello_for("api.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), hello));

  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s) << "the gateway did not dial api.test";
  EXPECT_EQ(test::read_exactly(s.get(), hello.size()).data, text(hello));
  ASSERT_TRUE(test::write_all(s.get(), "server flight"));
  EXPECT_EQ(test::read_exactly(c.fd.get(), 13).data, "server flight");
  ASSERT_TRUE(test::write_all(c.fd.get(), "application data"));
  EXPECT_EQ(test::read_exactly(s.get(), 16).data, "application data");

  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "allow");
  EXPECT_EQ(field(e, "reason"), "allow_rule");
  EXPECT_EQ(field(e, "rule"), "api.test");
  EXPECT_EQ(field(e, "name"), "api.test");
  EXPECT_EQ(field(e, "name_source"), "sni");
  EXPECT_EQ(field(e, "dst"), api_.original.address.to_string());
  EXPECT_EQ(field(e, "dialed"), "127.0.0.2:" + port_text(api_.server.port));
  EXPECT_EQ(resolved_names(), std::vector<std::string>{"api.test"});

  c.fd.reset();
  s.reset();
  Json close_event = wait_event(c, "close");
  EXPECT_EQ(number(close_event, "bytes_up"), hello.size() + 16);
  EXPECT_EQ(number(close_event, "bytes_down"), 13u);
  // TearDown checks that the client's chosen destination (the sentinel) got no connection.
}

TEST_F(GatewayNameTest, SniIsMatchedCaseInsensitivelyAndDialedNormalised) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  Client c = connect(api_.original);
  const test::Bytes hello = hello_for("API.Test");
  ASSERT_TRUE(test::write_all(c.fd.get(), hello));
  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s);
  EXPECT_EQ(test::read_exactly(s.get(), hello.size()).data, text(hello));
  EXPECT_EQ(field(wait_event(c, "connect"), "name"), "api.test");
  EXPECT_EQ(resolved_names(), std::vector<std::string>{"api.test"});
}

TEST_F(GatewayNameTest, ClientHelloInThreeRecordsAndSmallWritesIsReassembled) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  test::ClientHelloSpec spec;
  spec.sni = "api.test";
  spec.post_quantum_key_share = true;  // ~1.8 KB: the SNI comes well after the first writes
  const test::Bytes hello = test::build_client_hello(spec, 3);
  const std::vector<test::Bytes> chunks = test::split_into_chunks(hello, 100);
  ASSERT_GT(chunks.size(), 10u);

  Client c = connect(api_.original);
  for (const test::Bytes& chunk : chunks) {
    ASSERT_TRUE(test::write_all(c.fd.get(), chunk));
    // Separate segments: the gateway sees the hello arrive piece by piece.
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s);
  EXPECT_TRUE(test::read_exactly(s.get(), hello.size()).data == text(hello))
      << "the server did not get the exact bytes of the three records";
  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "allow");
  EXPECT_EQ(field(e, "name"), "api.test");
}

TEST_F(GatewayNameTest, DisallowedSniGetsAnAccessDeniedAlertAndNothingIsDialed) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  add_name("evil.test", {"127.0.0.2"});
  Client c = connect(sentinel());
  ASSERT_TRUE(test::write_all(c.fd.get(), text(hello_for("evil.test"))));
  expect_tls_alert(c);

  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "deny");
  EXPECT_EQ(field(e, "reason"), "no_match");
  EXPECT_EQ(field(e, "name"), "evil.test");
  EXPECT_EQ(field(e, "name_source"), "sni");
  EXPECT_FALSE(has(e, "dialed"));
  EXPECT_TRUE(resolved_names().empty());
  EXPECT_FALSE(api_.server.touched());
}

TEST_F(GatewayNameTest, EncryptedClientHelloIsDenied) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  test::ClientHelloSpec spec;
  spec.sni = "api.test";  // the outer, public name
  spec.ech_payload_size = 200;
  Client c = connect(api_.original);
  ASSERT_TRUE(test::write_all(c.fd.get(), test::build_client_hello(spec)));
  expect_tls_alert(c);
  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "deny");
  EXPECT_EQ(field(e, "reason"), "ech");
  EXPECT_EQ(field(e, "name"), "api.test");
  EXPECT_FALSE(has(e, "dialed"));
  EXPECT_FALSE(api_.server.touched());
}

// --- HTTP/1: Host ------------------------------------------------------------------------------

TEST_F(GatewayNameTest, HttpHostNotAllowedGetsA403NamingTheFix) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  const Destination dst = sentinel();
  Client c = connect(dst);
  ASSERT_TRUE(test::write_all(c.fd.get(), http_get("evil.test")));
  test::ReadResult r = answer_of(c);
  EXPECT_TRUE(r.eof) << "error=" << r.error;
  expect_forbidden(r.data, "no_match");
  const std::string target = "evil.test:" + port_text(dst.port);
  EXPECT_NE(body_of(r.data).find("netfence denied " + target), std::string::npos) << r.data;
  EXPECT_NE(body_of(r.data).find("--allow-net " + target), std::string::npos) << r.data;

  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "deny");
  EXPECT_EQ(field(e, "reason"), "no_match");
  EXPECT_EQ(field(e, "name"), "evil.test");
  EXPECT_EQ(field(e, "name_source"), "host");
  EXPECT_TRUE(resolved_names().empty());
}

TEST_F(GatewayNameTest, HttpHostAllowedReachesTheNamedServer) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  Client c = connect(api_.original);
  const std::string request = http_get("api.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), request));
  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s);
  EXPECT_EQ(test::read_exactly(s.get(), request.size()).data, request);
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ASSERT_TRUE(test::write_all(s.get(), response));
  EXPECT_EQ(test::read_exactly(c.fd.get(), response.size()).data, response);

  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "allow");
  EXPECT_EQ(field(e, "name"), "api.test");
  EXPECT_EQ(field(e, "name_source"), "host");
  EXPECT_EQ(field(e, "dialed"), "127.0.0.2:" + port_text(api_.server.port));
}

// peers.md 5 #22: every request of a keep-alive connection names its host; checking only the
// first would let later requests reach other virtual hosts of the same server (a shared CDN
// address). A connection dialed by its Host keeps that host.
TEST_F(GatewayNameTest, KeepAliveRequestsForTheSameHostAreAllForwarded) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  Client c = connect(api_.original);
  const std::string port = port_text(api_.original.port);
  const std::string requests =
      http_get("api.test") + "POST /upload HTTP/1.1\r\nHost: api.test:" + port +
      "\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'x') +
      "POST /chunks HTTP/1.1\r\nHost: API.Test\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n" +
      http_get("api.test.");
  std::thread writer([&] { EXPECT_TRUE(test::write_all(c.fd.get(), requests)); });
  UniqueFd s = api_.server.accept();
  test::ReadResult at_server;
  if (s) at_server = test::read_exactly(s.get(), requests.size());
  writer.join();
  ASSERT_TRUE(s);
  EXPECT_TRUE(at_server.data == requests)
      << "the server got " << at_server.data.size() << " of " << requests.size() << " bytes";
  EXPECT_EQ(events_of(c).size(), 1u) << "only the connect event: no request was cut";
}

TEST_F(GatewayNameTest, KeepAliveRequestForAnotherHostIsCutBeforeItIsForwarded) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  Client c = connect(api_.original);
  const std::string first = http_get("api.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), first));
  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s);
  EXPECT_EQ(test::read_exactly(s.get(), first.size()).data, first);
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ASSERT_TRUE(test::write_all(s.get(), response));
  EXPECT_EQ(test::read_exactly(c.fd.get(), response.size()).data, response);

  const std::string second = http_get("other-tenant.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), second));
  test::ReadResult at_server = test::read_exactly(s.get(), second.size());
  EXPECT_EQ(at_server.data, "") << "a request naming another host reached the server";
  EXPECT_TRUE(at_server.eof || at_server.error == ECONNRESET) << "error=" << at_server.error;
  // Cut upstream only: what the server still sends reaches the client, then its close does.
  if (at_server.eof) {
    ASSERT_TRUE(test::write_all(s.get(), "late"));
    EXPECT_EQ(test::read_exactly(c.fd.get(), 4).data, "late");
  }
  s.reset();
  test::ReadResult at_client = test::read_to_end(c.fd.get());
  EXPECT_TRUE(at_client.eof || at_client.error == ECONNRESET) << "error=" << at_client.error;

  Json e = wait_event(c, "inspect");
  EXPECT_EQ(field(e, "verdict"), "deny");
  EXPECT_EQ(field(e, "reason"), "host_switch");
  EXPECT_EQ(field(e, "name"), "other-tenant.test");
  EXPECT_EQ(field(e, "name_source"), "host");
}

TEST_F(GatewayNameTest, PipelinedRequestForAnotherHostIsCutAfterTheFirstIsForwarded) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  Client c = connect(api_.original);
  const std::string first = http_get("api.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), first + http_get("other-tenant.test")));
  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s);
  test::ReadResult at_server = test::read_to_end(s.get());
  EXPECT_EQ(at_server.data, first);
  EXPECT_TRUE(at_server.eof || at_server.error == ECONNRESET) << "error=" << at_server.error;
  EXPECT_EQ(field(wait_event(c, "inspect"), "reason"), "host_switch");
}

// A later HTTP/1.0 head without Host would get the server's default virtual host, not the one
// the connection was dialed for: a host switch.
TEST_F(GatewayNameTest, LaterRequestsThatCannotBeJudgedAreCut) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  struct Later {
    const char* what;
    std::string bytes;
    const char* reason;
  };
  const std::vector<Later> cases = {
      {"CONNECT", "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n", "http_connect"},
      {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", "host_switch"},
      {"not HTTP", std::string("\x16\x03\x01\x00\x05hello", 10), "bad_http_head"},
  };
  for (const Later& later : cases) {
    SCOPED_TRACE(later.what);
    Client c = connect(api_.original);
    const std::string first = http_get("api.test");
    ASSERT_TRUE(test::write_all(c.fd.get(), first + later.bytes));
    UniqueFd s = api_.server.accept();
    ASSERT_TRUE(s);
    EXPECT_EQ(test::read_to_end(s.get()).data, first);
    Json e = wait_event(c, "inspect");
    EXPECT_EQ(field(e, "verdict"), "deny");
    EXPECT_EQ(field(e, "reason"), later.reason);
  }
}

// An Upgrade field does not switch protocols by itself: only the server's 101 does. A server
// that ignores it keeps reading HTTP requests, so they must still be judged.
TEST_F(GatewayNameTest, IgnoredUpgradeDoesNotStopRequestChecks) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  Client c = connect(api_.original);
  const std::string first =
      "GET / HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: whatever\r\n\r\n";
  ASSERT_TRUE(test::write_all(c.fd.get(), first));
  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s);
  EXPECT_EQ(test::read_exactly(s.get(), first.size()).data, first);
  // The server does not upgrade: it answers as HTTP/1.1 and keeps the connection.
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ASSERT_TRUE(test::write_all(s.get(), response));
  EXPECT_EQ(test::read_exactly(c.fd.get(), response.size()).data, response);

  const std::string second = http_get("other-tenant.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), second));
  test::ReadResult at_server = test::read_exactly(s.get(), second.size());
  EXPECT_EQ(at_server.data.find("other-tenant.test"), std::string::npos)
      << "after an Upgrade the server ignored, a request naming another host reached it";
}

// --- Port-qualified rules ------------------------------------------------------------------------

// Tests that set up their own names and rules (start_with() fixes api.test on any port).
class GatewayDialTest : public GatewayTest {};

TEST_F(GatewayDialTest, PortQualifiedRuleAllowsItsPortAndDeniesOthersAsWrongPort) {
  Site api = site("127.0.0.2");
  add_name("api.test", {"127.0.0.2"});
  const std::string rule = "api.test:" + port_text(api.server.port);
  ASSERT_NO_FATAL_FAILURE(start({rule, "127.0.0.2"}));

  Client good = connect(api.original);
  const test::Bytes hello = hello_for("api.test");
  ASSERT_TRUE(test::write_all(good.fd.get(), hello));
  UniqueFd s = api.server.accept();
  ASSERT_TRUE(s);
  EXPECT_EQ(test::read_exactly(s.get(), hello.size()).data, text(hello));
  Json e = wait_event(good, "connect");
  EXPECT_EQ(field(e, "verdict"), "allow");
  EXPECT_EQ(field(e, "rule"), rule);

  const Destination other = sentinel();  // same name, another port
  ASSERT_NE(other.port, api.server.port);
  Client tls = connect(other);
  ASSERT_TRUE(test::write_all(tls.fd.get(), hello));
  expect_tls_alert(tls);
  e = wait_event(tls, "connect");
  EXPECT_EQ(field(e, "verdict"), "deny");
  EXPECT_EQ(field(e, "reason"), "wrong_port");
  EXPECT_EQ(field(e, "rule"), rule);
  EXPECT_NE(field(e, "detail").find(port_text(other.port)), std::string::npos);

  Client http = connect(other);
  ASSERT_TRUE(test::write_all(http.fd.get(), http_get("api.test")));
  test::ReadResult r = answer_of(http);
  expect_forbidden(r.data, "wrong_port");
  EXPECT_NE(body_of(r.data).find("--allow-net api.test:" + port_text(other.port)),
            std::string::npos)
      << r.data;
  EXPECT_EQ(resolved_names(), std::vector<std::string>{"api.test"});
  EXPECT_FALSE(api.server.touched());
}

// --- Dial failures -------------------------------------------------------------------------------

TEST_F(GatewayDialTest, DialFailureAnswersTlsWithAnAlertAndHttpWithAResponse) {
  Site down = site("127.0.0.2", /*listening=*/false);  // connections to it are refused
  add_name("down.test", {"127.0.0.2"});
  ASSERT_NO_FATAL_FAILURE(start({"down.test", "127.0.0.2"}));
  const std::string dialed = "127.0.0.2:" + port_text(down.server.port);

  Client tls = connect(down.original);
  ASSERT_TRUE(test::write_all(tls.fd.get(), text(hello_for("down.test"))));
  // Allowed, but unreachable: internal_error (not access_denied, which would say "denied").
  expect_tls_alert(tls, kTlsInternalErrorAlert);
  Json connect_event = wait_event(tls, "connect");
  EXPECT_EQ(field(connect_event, "verdict"), "allow");
  Json dial = wait_event(tls, "dial");
  EXPECT_EQ(field(dial, "verdict"), "deny");
  EXPECT_EQ(field(dial, "reason"), "dial_failed");
  EXPECT_NE(field(dial, "detail").find(dialed), std::string::npos) << field(dial, "detail");
  EXPECT_EQ(field(wait_event(tls, "close"), "reason"), "dial_failed");

  Client http = connect(down.original);
  ASSERT_TRUE(test::write_all(http.fd.get(), http_get("down.test")));
  test::ReadResult r = answer_of(http);
  // Allowed, but unreachable: a 502 (not a 403 "denied") that says why.
  EXPECT_EQ(r.data.rfind("HTTP/1.1 502 Bad Gateway\r\n", 0), 0u) << r.data;
  EXPECT_NE(header_block(r.data).find("\r\nX-Netfence-Reason: dial_failed\r\n"), std::string::npos)
      << r.data;
  EXPECT_NE(r.data.find("could not reach it: connecting to " + dialed), std::string::npos)
      << r.data;
  EXPECT_EQ(field(wait_event(http, "dial"), "reason"), "dial_failed");
  EXPECT_EQ(stats().dial_failures, 2u);
}

TEST_F(GatewayDialTest, DialByNameTriesTheResolvedAddressesInTurn) {
  Site api = site("127.0.0.2");
  auto refusing = test::bound_tcp("127.0.0.3", api.server.port);  // connect: ECONNREFUSED
  if (!refusing) GTEST_SKIP() << refusing.error().message;
  // 127.0.0.9 is refused by the policy (no IP rule covers it), 127.0.0.3 by the network.
  add_name("multi.test", {"127.0.0.9", "127.0.0.3", "127.0.0.2"});
  ASSERT_NO_FATAL_FAILURE(start({"multi.test", "127.0.0.0/29"}));
  Client c = connect(api.original);
  const test::Bytes hello = hello_for("multi.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), hello));
  UniqueFd s = api.server.accept();
  ASSERT_TRUE(s);
  EXPECT_EQ(test::read_exactly(s.get(), hello.size()).data, text(hello));
  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "allow");
  EXPECT_EQ(field(e, "dialed"), "127.0.0.2:" + port_text(api.server.port));
}

TEST_F(GatewayDialTest, FailedDialByNameLogsEveryAddressTried) {
  Site down = site("127.0.0.2", /*listening=*/false);               // connections to it are refused
  auto also_down = test::bound_tcp("127.0.0.3", down.server.port);  // bound, not listening
  if (!also_down) GTEST_SKIP() << also_down.error().message;
  add_name("down.test", {"127.0.0.3", "127.0.0.2"});
  ASSERT_NO_FATAL_FAILURE(start({"down.test", "127.0.0.0/29"}));
  Client c = connect(down.original);
  ASSERT_TRUE(test::write_all(c.fd.get(), text(hello_for("down.test"))));
  expect_tls_alert(c, kTlsInternalErrorAlert);
  const std::string port = port_text(down.server.port);
  EXPECT_EQ(field(wait_event(c, "dial"), "detail"),
            "connecting to 127.0.0.3:" + port + " failed: Connection refused; connecting to " +
                "127.0.0.2:" + port + " failed: Connection refused");
}

TEST_F(GatewayDialTest, NameResolvingOnlyToRefusedAddressesIsNeverDialed) {
  // DNS rebinding: an allowed name that resolves to loopback no IP rule opens.
  Site rebound = site("127.0.0.9");
  add_name("rebound.test", {"127.0.0.9"});
  ASSERT_NO_FATAL_FAILURE(start({"rebound.test"}));
  Client c = connect(rebound.original);
  ASSERT_TRUE(test::write_all(c.fd.get(), text(hello_for("rebound.test"))));
  expect_tls_alert(c, kTlsInternalErrorAlert);
  Json dial = wait_event(c, "dial");
  EXPECT_EQ(field(dial, "reason"), "dial_failed");
  EXPECT_NE(field(dial, "detail").find("refused"), std::string::npos) << field(dial, "detail");
  EXPECT_FALSE(has(dial, "dialed"));
  EXPECT_FALSE(rebound.server.touched());
}

TEST_F(GatewayDialTest, NameThatDoesNotResolveFailsTheDial) {
  ASSERT_NO_FATAL_FAILURE(start({"nowhere.test"}));
  Client c = connect(sentinel());
  ASSERT_TRUE(test::write_all(c.fd.get(), text(hello_for("nowhere.test"))));
  expect_tls_alert(c, kTlsInternalErrorAlert);
  Json dial = wait_event(c, "dial");
  EXPECT_EQ(field(dial, "reason"), "dial_failed");
  EXPECT_NE(field(dial, "detail").find("resolving nowhere.test failed"), std::string::npos)
      << field(dial, "detail");
}

// --- Input that names nothing usable -------------------------------------------------------------

struct BadInput {
  const char* what;
  std::string bytes;
  const char* reason;
  enum class Answer { kReset, kAlert, k403 } answer;
};

std::vector<BadInput> bad_inputs() {
  using A = BadInput::Answer;
  test::ClientHelloSpec no_sni;
  no_sni.sni = std::nullopt;
  test::ClientHelloSpec ip_sni;
  ip_sni.sni = "192.0.2.7";
  const test::Bytes broken_handshake = {std::byte{0x01}, std::byte{0x00}, std::byte{0x00},
                                        std::byte{0x04}, std::byte{0xde}, std::byte{0xad},
                                        std::byte{0xbe}, std::byte{0xef}};
  std::string oversized =
      "GET / HTTP/1.1\r\nHost: api.test\r\nX-Pad: " + std::string(17 * 1024, 'a') + "\r\n\r\n";
  return {
      {"binary garbage", std::string("\x00\x01\x02\xff garbage\r\n", 13), "no_name", A::kReset},
      {"oversized HTTP head", oversized, "bad_http_head", A::k403},
      {"HTTP CONNECT", "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
       "http_connect", A::k403},
      {"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "h2c", A::k403},
      {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", "no_host", A::k403},
      {"ClientHello without SNI", text(test::build_client_hello(no_sni)), "no_sni", A::kAlert},
      {"ClientHello with an IP literal SNI", text(test::build_client_hello(ip_sni)),
       "sni_ip_literal", A::kAlert},
      {"malformed ClientHello", text(test::tls_record(0x16, 0x0301, broken_handshake)),
       "bad_client_hello", A::kAlert},
  };
}

TEST_F(GatewayNameTest, InputThatNamesNothingUsableIsDeniedWithItsReason) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  const Destination dst = sentinel();
  for (const BadInput& input : bad_inputs()) {
    SCOPED_TRACE(input.what);
    Client c = connect(dst);
    ASSERT_TRUE(test::write_all(c.fd.get(), input.bytes));
    test::ReadResult r = answer_of(c);
    switch (input.answer) {
      case BadInput::Answer::kReset:
        EXPECT_EQ(r.data, "");
        EXPECT_EQ(r.error, ECONNRESET);
        break;
      case BadInput::Answer::kAlert:
        EXPECT_EQ(r.data, kTlsAlert);
        break;
      case BadInput::Answer::k403:
        expect_forbidden(r.data, input.reason);
        break;
    }
    Json e = wait_event(c, "connect");
    EXPECT_EQ(field(e, "verdict"), "deny");
    EXPECT_EQ(field(e, "reason"), input.reason) << e.dump();
    EXPECT_FALSE(has(e, "dialed"));
  }
  EXPECT_TRUE(resolved_names().empty());

  // Still serving.
  Client c = connect(api_.original);
  const test::Bytes hello = hello_for("api.test");
  ASSERT_TRUE(test::write_all(c.fd.get(), hello));
  UniqueFd s = api_.server.accept();
  ASSERT_TRUE(s);
  EXPECT_EQ(test::read_exactly(s.get(), hello.size()).data, text(hello));
}

TEST_F(GatewayNameTest, ClientClosingMidHelloIsDeniedAsClosed) {
  ASSERT_NO_FATAL_FAILURE(start_with({"api.test"}));
  const test::Bytes hello = hello_for("api.test");
  Client c = connect(sentinel());
  ASSERT_TRUE(test::write_all(c.fd.get(), ByteSpan(hello).first(hello.size() / 2)));
  ASSERT_EQ(::shutdown(c.fd.get(), SHUT_WR), 0);
  Json e = wait_event(c, "connect");
  EXPECT_EQ(field(e, "verdict"), "deny");
  EXPECT_EQ(field(e, "reason"), "closed");
  EXPECT_FALSE(api_.server.touched());
}

}  // namespace
}  // namespace netfence::gateway::fixture
