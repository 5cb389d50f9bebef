// The DNS server end to end on loopback sockets, against a fake upstream that records every
// question it receives.
#include "dns/server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "dns_test_util.h"

namespace netfence::dns {
namespace {

using test::addresses;
using test::DnsBuilder;
using test::FakeUpstream;
using test::Harness;
using test::HarnessOptions;
using test::parsed;
using test::query;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
namespace type = wire::dns_type;
namespace rcode = wire::dns_rcode;

HarnessOptions allow(std::vector<std::string> rules, std::vector<std::string> deny = {}) {
  HarnessOptions o;
  o.allow = std::move(rules);
  o.deny = std::move(deny);
  return o;
}

// The upstream's view of the world (documentation addresses, plus the rebinding traps).
void populate(FakeUpstream& up) {
  for (const char* name : {"api.example.com", "example.org", "a.example.org", "a.b.example.org",
                           "x.blocked.example", "anything.example.net"}) {
    up.a(name, {203, 0, 113, 10}, 300);
    up.aaaa(name, test::v6("2001:db8:2::10"), 300);
    up.txt(name, "secret", 300);
  }
  up.a("rebind.example.com", {10, 1, 2, 3});
  up.a("rebind.example.com", {169, 254, 169, 254});
  up.a("rebind.example.com", {203, 0, 113, 5});
  up.a("rebind.example.com", {127, 0, 0, 1});
  up.aaaa("rebind.example.com", test::v6("fc00::1"));
  up.aaaa("rebind.example.com", test::v6("::ffff:10.1.2.3"));
  up.aaaa("rebind.example.com", test::v6("fe80::1"));
  up.aaaa("rebind.example.com", test::v6("2001:db8:2::5"));
  up.cname("www.example.com", "cdn.example.net", 600);
  up.a("cdn.example.net", {203, 0, 113, 20}, 60);
}

// A local NODATA: NOERROR, no answers, the synthetic SOA with the short TTL.
void expect_nodata(const wire::DnsMessage& m) {
  EXPECT_TRUE(m.header.qr);
  EXPECT_EQ(m.header.rcode, rcode::kNoError);
  EXPECT_THAT(m.answers, IsEmpty());
  ASSERT_EQ(m.authorities.size(), 1u);
  EXPECT_EQ(m.authorities[0].type, type::kSoa);
  EXPECT_EQ(m.authorities[0].ttl, wire::kDnsDefaultSinkholeTtl);
}

std::vector<nlohmann::json> events(const Harness& h) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : h.log_lines()) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(DnsServer, RelaysAllowedAddressesAndLearnsThem) {
  Harness h(allow({"api.example.com"}));
  ASSERT_TRUE(h.serving());
  populate(h.upstream());
  auto a = parsed(h.udp(query("api.example.com", type::kA)));
  EXPECT_EQ(a.header.id, 0x4242);
  EXPECT_EQ(a.header.rcode, rcode::kNoError);
  EXPECT_THAT(addresses(a), ElementsAre("203.0.113.10"));
  auto aaaa = parsed(h.udp(query("api.example.com", type::kAaaa)));
  EXPECT_THAT(addresses(aaaa), ElementsAre("2001:db8:2::10"));
  EXPECT_EQ(h.upstream().count("api.example.com"), 2u);
  EXPECT_THAT(h.owners("203.0.113.10"), ElementsAre("api.example.com"));
  EXPECT_THAT(h.owners("2001:db8:2::10"), ElementsAre("api.example.com"));
  // Other allowed types are relayed too, unfiltered.
  auto txt = parsed(h.udp(query("api.example.com", type::kTxt)));
  ASSERT_EQ(txt.answers.size(), 1u);
  EXPECT_EQ(txt.answers[0].type, type::kTxt);
  EXPECT_EQ(h.stats().forwarded, 3u);
}

TEST(DnsServer, BlockedNamesAreAnsweredLocallyAndNeverForwarded) {
  Harness h(allow({"api.example.com"}));
  populate(h.upstream());
  for (bool edns : {true, false}) {
    for (bool tcp : {false, true}) {
      SCOPED_TRACE(std::string(edns ? "edns " : "plain ") + (tcp ? "tcp" : "udp"));
      auto ask = [&](std::string_view name, uint16_t t) {
        auto q = query(name, t, edns);
        return parsed(tcp ? h.tcp(q) : h.udp(q));
      };
      auto a = ask("x.blocked.example", type::kA);
      EXPECT_EQ(a.header.rcode, rcode::kNoError);
      EXPECT_THAT(addresses(a), ElementsAre("0.0.0.0"));
      ASSERT_EQ(a.answers.size(), 1u);
      EXPECT_EQ(a.answers[0].ttl, wire::kDnsDefaultSinkholeTtl);
      EXPECT_EQ(a.edns.has_value(), edns);
      EXPECT_THAT(addresses(ask("x.blocked.example", type::kAaaa)), ElementsAre("::"));
      for (uint16_t t : {type::kTxt, type::kMx, type::kAny, type::kSrv, type::kNs, type::kPtr,
                         type::kCname, uint16_t{257}}) {
        SCOPED_TRACE(t);
        expect_nodata(ask("x.blocked.example", t));
      }
      // A sub-name of an allowed exact name is not allowed either.
      EXPECT_THAT(addresses(ask("sub.api.example.com", type::kA)), ElementsAre("0.0.0.0"));
      expect_nodata(ask("4.3.2.1.in-addr.arpa", type::kPtr));
    }
  }
  // CHAOS class (version.bind): not IN, not forwarded.
  expect_nodata(parsed(h.udp(DnsBuilder().question("version.bind", type::kTxt, 3).build())));
  EXPECT_THAT(h.upstream().seen(), IsEmpty()) << "a blocked name reached the upstream";
  EXPECT_EQ(h.stats().forwarded, 0u);
}

TEST(DnsServer, BlockedAnswerIsConfigurable) {
  for (auto [blocked, expected] : {std::pair{policy::BlockedAnswer::kNxdomain, rcode::kNxDomain},
                                   std::pair{policy::BlockedAnswer::kRefused, rcode::kRefused}}) {
    HarnessOptions o = allow({"api.example.com"});
    o.blocked = blocked;
    Harness h(o);
    populate(h.upstream());
    for (uint16_t t : {type::kA, type::kAaaa, type::kTxt}) {
      auto m = parsed(h.udp(query("x.blocked.example", t)));
      EXPECT_EQ(m.header.rcode, expected);
      EXPECT_THAT(m.answers, IsEmpty());
    }
    EXPECT_THAT(addresses(parsed(h.udp(query("api.example.com", type::kA)))),
                ElementsAre("203.0.113.10"));
    EXPECT_EQ(h.upstream().seen().size(), 1u);
  }
}

TEST(DnsServer, HttpsAndSvcbAreWithheldAndTheDohCanaryIsNxdomain) {
  Harness h(allow({"api.example.com", "use-application-dns.net"}));
  populate(h.upstream());
  expect_nodata(parsed(h.udp(query("api.example.com", type::kHttps))));
  expect_nodata(parsed(h.tcp(query("api.example.com", type::kSvcb))));
  auto canary = parsed(h.udp(query("use-application-dns.net", type::kA)));
  EXPECT_EQ(canary.header.rcode, rcode::kNxDomain);
  EXPECT_THAT(h.upstream().seen(), IsEmpty());
}

TEST(DnsServer, WildcardsCoverSubdomainsButNotTheApex) {
  {
    Harness h(allow({"*.example.org"}));
    populate(h.upstream());
    EXPECT_THAT(addresses(parsed(h.udp(query("a.example.org", type::kA)))),
                ElementsAre("203.0.113.10"));
    EXPECT_THAT(addresses(parsed(h.udp(query("a.b.example.org", type::kA)))),
                ElementsAre("203.0.113.10"));
    EXPECT_THAT(addresses(parsed(h.udp(query("example.org", type::kA)))), ElementsAre("0.0.0.0"));
    EXPECT_EQ(h.upstream().count("example.org"), 0u);
    EXPECT_EQ(h.upstream().seen().size(), 2u);
  }
  {
    Harness h(allow({"*.example.org", "example.org"}));
    populate(h.upstream());
    EXPECT_THAT(addresses(parsed(h.udp(query("example.org", type::kA)))),
                ElementsAre("203.0.113.10"));
  }
}

TEST(DnsServer, CaseAndTrailingDotVariantsMatchAndTheQuestionIsEchoedAsAsked) {
  Harness h(allow({"API.Example.com."}));  // the rule's own case and trailing dot
  populate(h.upstream());
  for (const char* name : {"api.example.com", "API.EXAMPLE.COM", "aPi.ExAmPlE.cOm"}) {
    SCOPED_TRACE(name);
    auto reply = h.udp(query(name, type::kA));
    auto m = parsed(reply);
    EXPECT_THAT(addresses(m), ElementsAre("203.0.113.10"));
    // 0x20: the question comes back byte for byte as the client wrote it.
    auto sent = query(name, type::kA);
    ASSERT_TRUE(reply.has_value());
    size_t question_end = 12 + std::string_view(name).size() + 2 + 4;
    EXPECT_TRUE(std::equal(sent.begin() + 12, sent.begin() + static_cast<long>(question_end),
                           reply->begin() + 12));
  }
  auto blocked = h.udp(query("X.Blocked.Example", type::kA));
  auto sent = query("X.Blocked.Example", type::kA);
  ASSERT_TRUE(blocked.has_value());
  EXPECT_TRUE(std::equal(sent.begin() + 12, sent.begin() + 12 + 19 + 4, blocked->begin() + 12));
}

TEST(DnsServer, ServesTcpIncludingPipelinedQueries) {
  Harness h(allow({"api.example.com"}));
  populate(h.upstream());
  auto replies = test::tcp_exchange(
      h.address(),
      {query("api.example.com", type::kA, true, 1), query("x.blocked.example", type::kA, true, 2),
       query("api.example.com", type::kAaaa, false, 3)},
      /*pipelined=*/true);
  ASSERT_EQ(replies.size(), 3u);
  auto first = parsed(replies[0]);
  EXPECT_EQ(first.header.id, 1);
  EXPECT_THAT(addresses(first), ElementsAre("203.0.113.10"));
  EXPECT_THAT(addresses(parsed(replies[1])), ElementsAre("0.0.0.0"));
  EXPECT_THAT(addresses(parsed(replies[2])), ElementsAre("2001:db8:2::10"));
  EXPECT_EQ(h.stats().tcp_connections, 1u);
}

TEST(DnsServer, RetriesOverTcpWhenTheUpstreamTruncates) {
  Harness h(allow({"api.example.com"}));
  populate(h.upstream());
  h.upstream().set_mode(FakeUpstream::Mode::kTruncateUdp);
  auto m = parsed(h.udp(query("api.example.com", type::kA)));
  EXPECT_FALSE(m.header.tc);
  EXPECT_THAT(addresses(m), ElementsAre("203.0.113.10"));
  EXPECT_EQ(h.upstream().tcp_queries(), 1u);
}

TEST(DnsServer, LargeAnswersAreTruncatedForUdpClientsAndWholeOverTcp) {
  Harness h(allow({"big.example.com"}));
  for (int i = 0; i < 100; ++i) {
    h.upstream().a("big.example.com", {198, 51, 100, static_cast<uint8_t>(i)}, 300);
  }
  auto udp = parsed(h.udp(query("big.example.com", type::kA)));
  EXPECT_TRUE(udp.header.tc);
  EXPECT_THAT(udp.answers, IsEmpty());
  ASSERT_EQ(udp.questions.size(), 1u);
  auto tcp = parsed(h.tcp(query("big.example.com", type::kA)));
  EXPECT_FALSE(tcp.header.tc);
  EXPECT_EQ(tcp.answers.size(), 100u);
  // The upstream answered over UDP in full (it can: netfence's EDNS size is not enforced by the
  // fake); the TC is netfence's own, for this client's limit.
  EXPECT_EQ(h.upstream().tcp_queries(), 0u);
}

TEST(DnsServer, UpstreamDownMeansServfail) {
  {
    HarnessOptions o = allow({"api.example.com"});
    o.timeout = std::chrono::milliseconds(200);
    Harness h(o);
    h.upstream().set_mode(FakeUpstream::Mode::kSilent);
    auto m = parsed(h.udp(query("api.example.com", type::kA)));
    EXPECT_TRUE(m.header.qr);
    EXPECT_EQ(m.header.rcode, rcode::kServFail);
    auto t = parsed(h.tcp(query("api.example.com", type::kAaaa)));
    EXPECT_EQ(t.header.rcode, rcode::kServFail);
    EXPECT_EQ(h.stats().servfail, 2u);
  }
  {
    UniqueFd closed = test::bound_socket(SOCK_DGRAM, test::loopback(0));
    HarnessOptions o = allow({"api.example.com"});
    o.upstreams = {
        asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), test::port_of(closed.get()))};
    closed.reset();
    Harness h(o);
    auto m = parsed(h.udp(query("api.example.com", type::kA)));
    EXPECT_EQ(m.header.rcode, rcode::kServFail);
  }
}

TEST(DnsServer, MalformedMessagesGetFormerrOrNothingAndServingGoesOn) {
  Harness h(allow({"api.example.com"}));
  populate(h.upstream());
  using test::bytes_of;
  struct Case {
    std::vector<std::byte> bytes;
    std::optional<uint16_t> rcode;  // nullopt: no reply at all
  };
  std::vector<Case> cases = {
      {bytes_of({0x12}), std::nullopt},                          // too short to answer
      {bytes_of({0x12, 0x34, 0x01, 0x00, 0, 1}), std::nullopt},  // shorter than a header
      {bytes_of({0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}), rcode::kFormErr},  // no q
      {bytes_of({0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', 'b'}), rcode::kFormErr},
      {bytes_of({0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}),
       rcode::kFormErr},  // a pointer loop
      {DnsBuilder().question("a.example", 1).question("b.example", 1).build(), rcode::kFormErr},
      {DnsBuilder().counts(0, 0, 0, 0).build(), rcode::kFormErr},
      {DnsBuilder().question("a.example", 1).tail(bytes_of({1, 2, 3})).build(), rcode::kFormErr},
      {DnsBuilder().qr().question("a.example", 1).build(), std::nullopt},             // a response
      {DnsBuilder().flags(0x2100).question("a.example", 1).build(), rcode::kNotImp},  // opcode 4
      {DnsBuilder().question("a.example", 1).opt(1232, false, 1).build(), uint16_t{16}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    const Case& c = cases[i];
    if (!c.rcode) {
      // No reply: check that the next, valid query on the same socket gets its own answer.
      UniqueFd fd(::socket(AF_INET, SOCK_DGRAM, 0));
      sockaddr_storage server = h.address();
      ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&server), test::length_of(server)),
                0);
      test::set_timeout(fd.get(), test::kClientTimeout);
      ASSERT_GT(::send(fd.get(), c.bytes.data(), c.bytes.size(), 0), 0);
      auto valid = query("x.blocked.example", type::kA, true, 0x7777);
      ASSERT_GT(::send(fd.get(), valid.data(), valid.size(), 0), 0);
      std::vector<std::byte> reply(4096);
      ssize_t n = ::recv(fd.get(), reply.data(), reply.size(), 0);
      ASSERT_GT(n, 0);
      reply.resize(static_cast<size_t>(n));
      EXPECT_EQ(parsed(reply).header.id, 0x7777);
      continue;
    }
    auto reply = h.udp(c.bytes);
    ASSERT_TRUE(reply.has_value());
    auto header = wire::parse_dns_header(*reply);
    ASSERT_TRUE(header.has_value());
    EXPECT_TRUE(header->qr);
    EXPECT_EQ(header->id, 0x1234);
    auto full = wire::parse_dns_message(*reply);
    uint16_t got = full ? wire::dns_full_rcode(*full) : header->rcode;
    EXPECT_EQ(got, *c.rcode);
  }
  // A TCP frame too short to hold a header ends that connection, not the server.
  auto replies = test::tcp_exchange(h.address(), {test::bytes_of({1, 2, 3})});
  EXPECT_THAT(replies, IsEmpty());
  EXPECT_THAT(addresses(parsed(h.tcp(query("api.example.com", type::kA)))),
              ElementsAre("203.0.113.10"));
  EXPECT_THAT(addresses(parsed(h.udp(query("api.example.com", type::kA)))),
              ElementsAre("203.0.113.10"));
  ServerStats s = h.stats();
  EXPECT_EQ(s.formerr, 6u);
  EXPECT_EQ(s.dropped, 3u);
  EXPECT_THAT(h.upstream().count("a.example"), 0u);
}

TEST(DnsServer, RebindingAddressesAreFilteredUnlessAnIpRuleCoversThem) {
  {
    Harness h(allow({"rebind.example.com"}));
    populate(h.upstream());
    EXPECT_THAT(addresses(parsed(h.udp(query("rebind.example.com", type::kA)))),
                ElementsAre("203.0.113.5"));
    EXPECT_THAT(addresses(parsed(h.udp(query("rebind.example.com", type::kAaaa)))),
                ElementsAre("2001:db8:2::5"));
    EXPECT_THAT(h.owners("10.1.2.3"), IsEmpty());
    EXPECT_THAT(h.owners("169.254.169.254"), IsEmpty());
    EXPECT_THAT(h.owners("203.0.113.5"), ElementsAre("rebind.example.com"));
    EXPECT_EQ(h.stats().filtered_addresses, 6u);
  }
  {
    Harness h(allow({"rebind.example.com", "10.0.0.0/8", "169.254.169.254"}));
    populate(h.upstream());
    EXPECT_THAT(addresses(parsed(h.udp(query("rebind.example.com", type::kA)))),
                ElementsAre("10.1.2.3", "169.254.169.254", "203.0.113.5"));
    EXPECT_THAT(addresses(parsed(h.udp(query("rebind.example.com", type::kAaaa)))),
                ElementsAre("::ffff:10.1.2.3", "2001:db8:2::5"));
    EXPECT_THAT(h.owners("10.1.2.3"), ElementsAre("rebind.example.com"));
  }
  {
    // A broad rule does not open the always-deny set (SPEC 1.4).
    Harness h(allow({"rebind.example.com", "0.0.0.0/0"}));
    populate(h.upstream());
    EXPECT_THAT(addresses(parsed(h.udp(query("rebind.example.com", type::kA)))),
                ElementsAre("10.1.2.3", "203.0.113.5"));
  }
}

TEST(DnsServer, CachedAnswersAreRelayedLikeFreshOnes) {
  Harness h(allow({"api.example.com", "rebind.example.com"}));
  populate(h.upstream());
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    auto id = static_cast<uint16_t>(100 + round);
    const char* name = round == 1 ? "API.example.COM" : "api.example.com";
    auto reply = h.udp(query(name, type::kA, round != 2, id));
    auto m = parsed(reply);
    EXPECT_EQ(m.header.id, id);
    EXPECT_THAT(addresses(m), ElementsAre("203.0.113.10"));
    ASSERT_EQ(m.questions.size(), 1u);
    EXPECT_EQ(m.edns.has_value(), round != 2);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(static_cast<char>((*reply)[13]), name[0]);  // the question as asked
    // The rebinding filter applies to cached answers too.
    EXPECT_THAT(addresses(parsed(h.tcp(query("rebind.example.com", type::kA)))),
                ElementsAre("203.0.113.5"));
  }
  EXPECT_EQ(h.upstream().count("api.example.com"), 1u);
  EXPECT_EQ(h.upstream().count("rebind.example.com"), 1u);
  EXPECT_EQ(h.stats().forwarded, 6u);
  EXPECT_EQ(h.log_lines().size(), 6u);
}

TEST(DnsServer, CnameTargetsAreLearnedUnderTheNameAsked) {
  Harness h(allow({"www.example.com"}));
  populate(h.upstream());
  auto m = parsed(h.udp(query("www.example.com", type::kA)));
  EXPECT_THAT(addresses(m), ElementsAre("203.0.113.20"));
  EXPECT_THAT(h.owners("203.0.113.20"), ElementsAre("www.example.com"));
}

TEST(DnsServer, FullAccessForwardsEverythingButDenyNetNames) {
  HarnessOptions o;
  o.deny = {"x.blocked.example"};
  Harness h(o);
  populate(h.upstream());
  EXPECT_THAT(addresses(parsed(h.udp(query("anything.example.net", type::kA)))),
              ElementsAre("203.0.113.10"));
  auto txt = parsed(h.udp(query("anything.example.net", type::kTxt)));
  EXPECT_EQ(txt.answers.size(), 1u);
  parsed(h.udp(query("_sip._tcp.example.net", type::kSrv)));  // not a host name: forwarded
  EXPECT_EQ(h.upstream().count("_sip._tcp.example.net"), 1u);
  EXPECT_THAT(addresses(parsed(h.udp(query("x.blocked.example", type::kA)))),
              ElementsAre("0.0.0.0"));
  EXPECT_EQ(h.upstream().count("x.blocked.example"), 0u);
  // deny_net has no host rule... it does here, so HTTPS is still withheld.
  expect_nodata(parsed(h.udp(query("anything.example.net", type::kHttps))));
  // Private addresses pass in full access; the always-deny set does not.
  EXPECT_THAT(addresses(parsed(h.udp(query("rebind.example.com", type::kA)))),
              ElementsAre("10.1.2.3", "203.0.113.5"));
  EXPECT_THAT(h.owners("203.0.113.10"), IsEmpty());  // nothing to learn for in full access
  auto canary = parsed(h.udp(query("use-application-dns.net", type::kA)));
  EXPECT_EQ(canary.header.rcode, rcode::kNxDomain);
}

TEST(DnsServer, FullAccessWithoutDenyNamesForwardsHttpsToo) {
  Harness h(HarnessOptions{});
  populate(h.upstream());
  parsed(h.udp(query("api.example.com", type::kHttps)));
  auto seen = h.upstream().seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].type, type::kHttps);
}

TEST(DnsServer, EdnsInTheAnswerMirrorsTheClient) {
  Harness h(allow({"api.example.com"}));
  populate(h.upstream());
  auto plain = parsed(h.udp(query("api.example.com", type::kA, false)));
  EXPECT_THAT(addresses(plain), ElementsAre("203.0.113.10"));
  EXPECT_FALSE(plain.edns.has_value());  // the upstream's OPT is not passed on
  auto with = parsed(h.udp(query("api.example.com", type::kAaaa, true)));
  ASSERT_TRUE(with.edns.has_value());
  EXPECT_EQ(with.edns->udp_payload_size, wire::kDnsEdnsPayloadSize);
  EXPECT_THAT(with.edns->options, IsEmpty());
}

TEST(DnsServer, EveryMessageIsOneDecisionLogEvent) {
  HarnessOptions o = allow({"api.example.com"});
  o.timeout = std::chrono::milliseconds(200);
  Harness h(o);
  populate(h.upstream());
  h.udp(query("api.example.com", type::kA));      // forwarded
  h.udp(query("x.blocked.example", type::kA));    // sinkhole (fast path)
  h.tcp(query("x.blocked.example", type::kTxt));  // nodata over TCP
  h.udp(DnsBuilder()
            .question("x.blocked.example", 1)
            .opt(1232, false, 0, {{10, {}}})
            .a(DnsBuilder::Section::kAdditional, "extra", {1, 2, 3, 4})
            .build());                                                      // general path
  h.udp(test::bytes_of({0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}));  // formerr
  h.upstream().set_mode(FakeUpstream::Mode::kSilent);
  h.udp(query("api.example.com", type::kTxt));  // servfail
  auto e = events(h);
  ASSERT_EQ(e.size(), 6u);
  EXPECT_EQ(e[0]["answer"], "forwarded");
  EXPECT_EQ(e[0]["verdict"], "allow");
  EXPECT_EQ(e[0]["rule"], "api.example.com");
  EXPECT_EQ(e[0]["qtype"], "A");
  EXPECT_EQ(e[0]["proto"], "udp");
  EXPECT_EQ(e[0]["dst"], "127.0.0.1");
  EXPECT_EQ(e[1]["answer"], "sinkhole");
  EXPECT_EQ(e[1]["verdict"], "deny");
  EXPECT_EQ(e[1]["reason"], "no_match");
  EXPECT_EQ(e[1]["name"], "x.blocked.example");
  EXPECT_EQ(e[1]["detail"], "no allow_net rule matches x.blocked.example");
  EXPECT_EQ(e[2]["answer"], "nodata");
  EXPECT_EQ(e[2]["proto"], "tcp");
  EXPECT_EQ(e[2]["qtype"], "TXT");
  EXPECT_EQ(e[3]["answer"], "sinkhole");
  EXPECT_EQ(e[4]["answer"], "formerr");
  EXPECT_EQ(e[5]["answer"], "servfail");
  for (const auto& event : e) {
    EXPECT_EQ(event["event"], "dns");
    EXPECT_EQ(event["name_source"], "dns");
    EXPECT_TRUE(event["src"].get<std::string>().starts_with("127.0.0.1:"));
  }
  ServerStats s = h.stats();
  EXPECT_EQ(s.queries, 6u);
  EXPECT_EQ(s.fast_path, 2u);  // the typical sinkhole queries; not the odd-shaped one
}

TEST(DnsServer, WildcardBoundSocketRepliesFromTheAddressAskedAndServesIpv6) {
  {
    HarnessOptions o = allow({"api.example.com"});
    o.wildcard = true;  // bound to 0.0.0.0: replies must come from the address asked (pktinfo)
    Harness h(o);
    ASSERT_TRUE(h.serving());
    populate(h.upstream());
    for (const char* address : {"127.0.0.1", "127.0.0.2", "127.1.2.3"}) {
      SCOPED_TRACE(address);
      // A connected client socket only accepts replies from exactly that source.
      auto reply =
          test::udp_exchange(test::ipv4(address, h.port()), query("x.blocked.example", type::kA));
      ASSERT_TRUE(reply.has_value());
      EXPECT_THAT(addresses(parsed(reply)), ElementsAre("0.0.0.0"));
      auto forwarded =
          test::udp_exchange(test::ipv4(address, h.port()), query("api.example.com", type::kA));
      EXPECT_THAT(addresses(parsed(forwarded)), ElementsAre("203.0.113.10"));
    }
    auto e = events(h);
    ASSERT_EQ(e.size(), 6u);
    EXPECT_EQ(e[2]["dst"], "127.0.0.2");
  }
  {
    HarnessOptions o = allow({"api.example.com"});
    o.v6 = true;
    Harness h(o);
    ASSERT_TRUE(h.serving());
    populate(h.upstream());
    EXPECT_THAT(addresses(parsed(h.udp(query("x.blocked.example", type::kAaaa)))),
                ElementsAre("::"));
    EXPECT_THAT(addresses(parsed(h.tcp(query("api.example.com", type::kAaaa)))),
                ElementsAre("2001:db8:2::10"));
    auto e = events(h);
    ASSERT_EQ(e.size(), 2u);
    EXPECT_TRUE(e[0]["src"].get<std::string>().starts_with("[::1]:"));
  }
}

TEST(DnsServer, AnswerLocallyHandlesEveryCaseWithoutSockets) {
  // The entry point the fuzz target drives, called directly.
  FakeUpstream up;
  asio::io_context io(1);
  policy::NetworkSpec spec;
  spec.allow_net = {"api.example.com"};
  policy::Policy policy = policy::Policy::compile(spec).value();
  ResolverConfig config;
  config.servers = {up.endpoint()};
  Resolver resolver(io.get_executor(), config);
  LearnedAddresses learned;
  EventLog log;
  Server server(io.get_executor(), policy, resolver, learned, log, Server::Options{});
  Client client;
  std::vector<std::byte> response;
  std::unique_ptr<Server::Pending> pending;
  EXPECT_EQ(server.answer_locally(query("x.blocked.example", type::kA), client, response, pending),
            Server::Disposition::kAnswered);
  EXPECT_THAT(addresses(parsed(response)), ElementsAre("0.0.0.0"));
  EXPECT_EQ(server.answer_locally(query("api.example.com", type::kA), client, response, pending),
            Server::Disposition::kForward);
  ASSERT_NE(pending, nullptr);
  auto bytes = test::run_on(io, server.forward(std::move(pending)));
  EXPECT_EQ(parsed(bytes).header.rcode, rcode::kNxDomain);  // the fake knows no names here
  EXPECT_EQ(server.answer_locally(test::bytes_of({1}), client, response, pending),
            Server::Disposition::kDropped);
  EXPECT_EQ(up.seen().size(), 1u);
}

}  // namespace
}  // namespace netfence::dns
