#include "dns/resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "dns_test_util.h"

namespace netfence::dns {
namespace {

using test::FakeUpstream;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;
using Clock = std::chrono::steady_clock;

std::string write_temp(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() /
              ("netfence-dns-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(path) << text;
  return path.string();
}

wire::DnsMessage make_query(const std::string& name, uint16_t type, uint16_t id = 7) {
  return wire::parse_dns_message(test::query(name, type, true, id)).value();
}

// A resolver against fake upstreams, run on this thread.
struct Fixture {
  explicit Fixture(std::vector<asio::ip::udp::endpoint> servers,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(500),
                   int attempts = 1) {
    ResolverConfig config;
    config.servers = std::move(servers);
    config.timeout = timeout;
    config.attempts = attempts;
    config.hosts_file = "";
    config.clock = &Fixture::now;
    resolver.emplace(io.get_executor(), config);
    fake_now = Clock::time_point() + std::chrono::hours(1);
  }
  Result<wire::DnsMessage> exchange(const wire::DnsMessage& q) {
    return test::run_on(io, resolver->exchange(q));
  }
  static Clock::time_point now() { return fake_now; }

  static inline Clock::time_point fake_now;
  asio::io_context io{1};
  std::optional<Resolver> resolver;
};

// A port on 127.0.0.1 with nothing listening: queries to it are refused at once.
asio::ip::udp::endpoint closed_port() {
  UniqueFd fd = test::bound_socket(SOCK_DGRAM, test::loopback(0));
  uint16_t port = test::port_of(fd.get());
  return asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), port);
}

TEST(ResolvConf, ReadsNameserversAndOptions) {
  auto path = write_temp("resolv.conf",
                         "# comment\n; other comment\nsearch example.com\n"
                         "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
                         "nameserver fe80::1%eth0\nnameserver not-an-address\n"
                         "options ndots:2 timeout:3 attempts:4 rotate\n");
  auto config = config_from_resolv_conf(path);
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_EQ(config->servers.size(), 2u);
  EXPECT_EQ(config->servers[0].address().to_string(), "192.0.2.53");
  EXPECT_EQ(config->servers[0].port(), 53);
  EXPECT_EQ(config->servers[1].address().to_string(), "2001:db8::53");
  EXPECT_EQ(config->timeout, std::chrono::seconds(3));
  EXPECT_EQ(config->attempts, 4);
  std::filesystem::remove(path);
}

TEST(ResolvConf, FailsWithoutUsableNameserver) {
  auto path = write_temp("resolv-empty.conf", "nameserver fe80::1%eth0\noptions timeout:1\n");
  auto config = config_from_resolv_conf(path);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.error().message, HasSubstr("no usable nameserver"));
  std::filesystem::remove(path);
  EXPECT_FALSE(config_from_resolv_conf("/nonexistent/resolv.conf").ok());
}

TEST(ParseServer, AcceptsAddressesWithOptionalPorts) {
  EXPECT_EQ(parse_server("192.0.2.1").value(),
            asio::ip::udp::endpoint(asio::ip::make_address("192.0.2.1"), 53));
  EXPECT_EQ(parse_server("192.0.2.1:5353").value().port(), 5353);
  EXPECT_EQ(parse_server("2001:db8::1").value().address().to_string(), "2001:db8::1");
  EXPECT_EQ(parse_server("[2001:db8::1]:5353").value().port(), 5353);
  EXPECT_EQ(parse_server("[::1]").value().port(), 53);
  for (const char* bad : {"", "example.com", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:x",
                          "[::1", "[::1]5353", "1.2.3.4:53:53"}) {
    auto parsed = parse_server(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_THAT(parsed.error().message, HasSubstr(bad));
    }
  }
}

TEST(HostsFile, FindsNamesAndAliasesIgnoringCaseAndComments) {
  auto path = write_temp("hosts",
                         "127.0.0.1 localhost\n192.0.2.10 Web.Example.com web # the web\n"
                         "2001:db8::10 web.example.com.\n# 192.0.2.99 web.example.com\n"
                         "garbage web.example.com\n192.0.2.11 other.example.com\n");
  auto found = lookup_hosts_file(path, "web.example.com");
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].to_string(), "192.0.2.10");
  EXPECT_EQ(found[1].to_string(), "2001:db8::10");
  EXPECT_EQ(lookup_hosts_file(path, "WEB").size(), 1u);
  EXPECT_THAT(lookup_hosts_file(path, "missing.example.com"), IsEmpty());
  EXPECT_THAT(lookup_hosts_file("", "web.example.com"), IsEmpty());
  EXPECT_THAT(lookup_hosts_file("/nonexistent/hosts", "web.example.com"), IsEmpty());
  std::filesystem::remove(path);
}

TEST(HostsFile, IsParsedOnceAndAgainWhenItChanges) {
  auto path = write_temp("hosts", "192.0.2.10 web.example.com\n");
  HostsFile hosts(path);
  ASSERT_EQ(hosts.lookup("web.example.com").size(), 1u);
  EXPECT_EQ(hosts.lookup("web.example.com")[0].to_string(), "192.0.2.10");
  // Replaced (a new inode, as editors and package managers do): the next lookup sees it.
  auto replacement = write_temp("hosts2", "198.51.100.7 web.example.com\n192.0.2.1 new.example\n");
  std::filesystem::rename(replacement, path);
  ASSERT_EQ(hosts.lookup("web.example.com").size(), 1u);
  EXPECT_EQ(hosts.lookup("web.example.com")[0].to_string(), "198.51.100.7");
  EXPECT_EQ(hosts.lookup("NEW.example").size(), 1u);
  std::filesystem::remove(path);
  EXPECT_THAT(hosts.lookup("web.example.com"), IsEmpty());
}

Clock::time_point hosts_now;

TEST(HostsFile, WithARecheckIntervalChangesShowOnlyOnceItHasPassed) {
  auto path = write_temp("hosts-recheck", "192.0.2.10 web.example.com\n");
  hosts_now = Clock::time_point() + std::chrono::hours(1);
  HostsFile hosts(path, std::chrono::seconds(1), [] { return hosts_now; });
  ASSERT_EQ(hosts.lookup("web.example.com").size(), 1u);
  auto replacement = write_temp("hosts-recheck2", "198.51.100.7 web.example.com\n");
  std::filesystem::rename(replacement, path);
  hosts_now += std::chrono::milliseconds(999);
  EXPECT_EQ(hosts.lookup("web.example.com")[0].to_string(), "192.0.2.10");  // not checked yet
  hosts_now += std::chrono::milliseconds(1);
  EXPECT_EQ(hosts.lookup("web.example.com")[0].to_string(), "198.51.100.7");
  std::filesystem::remove(path);
  EXPECT_EQ(hosts.lookup("web.example.com").size(), 1u);  // within the second: still known
  hosts_now += std::chrono::seconds(1);
  EXPECT_THAT(hosts.lookup("web.example.com"), IsEmpty());
}

TEST(Resolver, RelaysAnAnswerWithTheQueryId) {
  FakeUpstream up;
  up.a("api.example.com", {203, 0, 113, 10});
  Fixture f({up.endpoint()});
  auto answer = f.exchange(make_query("api.example.com", wire::dns_type::kA, 999));
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  EXPECT_EQ(answer->header.id, 999);
  EXPECT_THAT(test::addresses(*answer), ElementsAre("203.0.113.10"));
  ASSERT_EQ(up.seen().size(), 1u);
  EXPECT_TRUE(up.seen()[0].edns);  // netfence always asks with EDNS (1232)
}

TEST(Resolver, IgnoresAnswersWithTheWrongId) {
  FakeUpstream up;
  up.a("api.example.com", {203, 0, 113, 10});
  up.set_mode(FakeUpstream::Mode::kWrongIdFirst);
  Fixture f({up.endpoint()});
  auto answer = f.exchange(make_query("api.example.com", wire::dns_type::kA));
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  EXPECT_THAT(test::addresses(*answer), ElementsAre("203.0.113.10"));
}

TEST(Resolver, RetriesOverTcpWhenTheUdpAnswerIsTruncated) {
  FakeUpstream up;
  up.a("big.example.com", {203, 0, 113, 1});
  up.a("big.example.com", {203, 0, 113, 2});
  up.set_mode(FakeUpstream::Mode::kTruncateUdp);
  Fixture f({up.endpoint()});
  auto answer = f.exchange(make_query("big.example.com", wire::dns_type::kA));
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  EXPECT_FALSE(answer->header.tc);
  EXPECT_THAT(test::addresses(*answer), ElementsAre("203.0.113.1", "203.0.113.2"));
  auto seen = up.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_FALSE(seen[0].tcp);
  EXPECT_TRUE(seen[1].tcp);
}

TEST(Resolver, FailsWhenTheUpstreamIsSilentOrRefuses) {
  FakeUpstream silent;
  silent.set_mode(FakeUpstream::Mode::kSilent);
  Fixture f({silent.endpoint()}, std::chrono::milliseconds(100), 2);
  auto answer = f.exchange(make_query("api.example.com", wire::dns_type::kA));
  ASSERT_FALSE(answer.ok());
  EXPECT_THAT(answer.error().message, StartsWith("upstream_timeout"));
  EXPECT_EQ(silent.count("api.example.com"), 2u);  // one try per attempt

  Fixture g({closed_port()});
  auto refused = g.exchange(make_query("api.example.com", wire::dns_type::kA));
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message, StartsWith("upstream_unreachable"));

  FakeUpstream garbage;
  garbage.set_mode(FakeUpstream::Mode::kGarbage);
  Fixture h({garbage.endpoint()}, std::chrono::milliseconds(100));
  EXPECT_FALSE(h.exchange(make_query("api.example.com", wire::dns_type::kA)).ok());
}

TEST(Resolver, MovesToTheNextServerOnFailureAndRotates) {
  FakeUpstream dead;
  dead.set_mode(FakeUpstream::Mode::kSilent);
  FakeUpstream failing;
  failing.set_mode(FakeUpstream::Mode::kServFail);
  FakeUpstream good;
  good.a("a.example.com", {203, 0, 113, 1});
  good.a("b.example.com", {203, 0, 113, 2});
  Fixture f({dead.endpoint(), failing.endpoint(), good.endpoint()}, std::chrono::milliseconds(100));
  auto a = f.exchange(make_query("a.example.com", wire::dns_type::kA));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_THAT(test::addresses(*a), ElementsAre("203.0.113.1"));
  EXPECT_EQ(dead.count("a.example.com"), 1u);
  EXPECT_EQ(failing.count("a.example.com"), 1u);  // SERVFAIL: try the next one
  // The next query starts at the next server in rotation (the SERVFAIL one), not at the dead one.
  auto b = f.exchange(make_query("b.example.com", wire::dns_type::kA));
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(dead.count("b.example.com"), 0u);
  EXPECT_EQ(failing.count("b.example.com"), 1u);
  EXPECT_EQ(good.count("b.example.com"), 1u);
}

TEST(Resolver, EverythingFailingIsAnErrorNamingTheLastReason) {
  FakeUpstream failing;
  failing.set_mode(FakeUpstream::Mode::kServFail);
  Fixture f({failing.endpoint()});
  auto answer = f.exchange(make_query("a.example.com", wire::dns_type::kA));
  ASSERT_FALSE(answer.ok());
  EXPECT_THAT(answer.error().message, StartsWith("upstream_rcode"));
}

TEST(Resolver, CachesByTtlAndCountsTtlsDown) {
  FakeUpstream up;
  up.a("api.example.com", {203, 0, 113, 10}, 100);
  up.txt("api.example.com", "hello", 0);  // TTL 0: never cached
  Fixture f({up.endpoint()});
  auto first = f.exchange(make_query("api.example.com", wire::dns_type::kA, 1));
  ASSERT_TRUE(first.ok());
  Fixture::fake_now += std::chrono::seconds(40);
  auto second = f.exchange(make_query("API.EXAMPLE.com", wire::dns_type::kA, 2));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->header.id, 2);
  ASSERT_EQ(second->answers.size(), 1u);
  EXPECT_EQ(second->answers[0].ttl, 60u);
  EXPECT_EQ(up.count("api.example.com"), 1u);
  EXPECT_EQ(f.resolver->cache_hits(), 1u);
  Fixture::fake_now += std::chrono::seconds(60);  // expired now
  ASSERT_TRUE(f.exchange(make_query("api.example.com", wire::dns_type::kA)).ok());
  EXPECT_EQ(up.count("api.example.com"), 2u);
  // Another type is another entry; TTL 0 is not cached.
  ASSERT_TRUE(f.exchange(make_query("api.example.com", wire::dns_type::kTxt)).ok());
  ASSERT_TRUE(f.exchange(make_query("api.example.com", wire::dns_type::kTxt)).ok());
  EXPECT_EQ(up.count("api.example.com"), 4u);
}

TEST(Resolver, FailuresAreNotCached) {
  FakeUpstream up;
  up.set_mode(FakeUpstream::Mode::kServFail);
  Fixture f({up.endpoint()});
  EXPECT_FALSE(f.exchange(make_query("a.example.com", wire::dns_type::kA)).ok());
  up.set_mode(FakeUpstream::Mode::kAnswer);
  up.a("a.example.com", {203, 0, 113, 1});
  EXPECT_TRUE(f.exchange(make_query("a.example.com", wire::dns_type::kA)).ok());
  EXPECT_EQ(up.count("a.example.com"), 2u);
}

TEST(Resolver, ResolveFollowsCnamesForBothFamilies) {
  FakeUpstream up;
  up.cname("www.example.com", "cdn.example.net");
  up.a("cdn.example.net", {203, 0, 113, 20});
  up.aaaa("cdn.example.net", test::v6("2001:db8::20"));
  Fixture f({up.endpoint()});
  auto addresses = test::run_on(f.io, f.resolver->resolve("www.example.com"));
  ASSERT_TRUE(addresses.ok()) << addresses.error().message;
  std::vector<std::string> text;
  for (const auto& a : *addresses) text.push_back(a.to_string());
  EXPECT_THAT(text, UnorderedElementsAre("203.0.113.20", "2001:db8::20"));
  // A name that does not exist: no addresses, not an error.
  auto none = test::run_on(f.io, f.resolver->resolve("missing.example.com"));
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());
}

TEST(Resolver, ResolveAnswersFromTheCacheUntilEitherFamilyExpires) {
  FakeUpstream up;
  up.cname("www.example.com", "cdn.example.net", 300);
  up.a("cdn.example.net", {203, 0, 113, 20}, 300);
  up.aaaa("cdn.example.net", test::v6("2001:db8::20"), 100);
  Fixture f({up.endpoint()});
  auto text = [](const std::vector<policy::IpAddress>& addresses) {
    std::vector<std::string> out;
    for (const auto& a : addresses) out.push_back(a.to_string());
    return out;
  };
  auto first = test::run_on(f.io, f.resolver->resolve("www.example.com"));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(up.count("www.example.com"), 2u);  // A and AAAA
  // From the cache: the same addresses (CNAME followed), nothing sent.
  Fixture::fake_now += std::chrono::seconds(50);
  auto cached = test::run_on(f.io, f.resolver->resolve("www.example.com"));
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(text(*cached), text(*first));
  EXPECT_THAT(text(*cached), UnorderedElementsAre("203.0.113.20", "2001:db8::20"));
  EXPECT_EQ(up.count("www.example.com"), 2u);
  EXPECT_EQ(f.resolver->cache_hits(), 2u);
  // The AAAA answer (TTL 100) has expired: AAAA is asked again, A still comes from the cache.
  Fixture::fake_now += std::chrono::seconds(60);
  auto renewed = test::run_on(f.io, f.resolver->resolve("www.example.com"));
  ASSERT_TRUE(renewed.ok());
  EXPECT_THAT(text(*renewed), UnorderedElementsAre("203.0.113.20", "2001:db8::20"));
  EXPECT_EQ(up.count("www.example.com"), 3u);
  EXPECT_EQ(f.resolver->cache_hits(), 3u);
}

TEST(Resolver, ResolveHonoursTheHostsFileFirst) {
  FakeUpstream up;
  up.a("web.example.com", {203, 0, 113, 99});
  auto hosts = write_temp("hosts-resolve", "192.0.2.10 web.example.com\n");
  ResolverConfig config;
  config.servers = {up.endpoint()};
  config.hosts_file = hosts;
  asio::io_context io(1);
  Resolver resolver(io.get_executor(), config);
  auto addresses = test::run_on(io, resolver.resolve("web.example.com"));
  ASSERT_TRUE(addresses.ok());
  ASSERT_EQ(addresses->size(), 1u);
  EXPECT_EQ((*addresses)[0].to_string(), "192.0.2.10");
  EXPECT_EQ(up.count("web.example.com"), 0u);
  std::filesystem::remove(hosts);
}

TEST(Resolver, ResolveFailsWhenTheUpstreamIsDown) {
  Fixture f({closed_port()});
  auto addresses = test::run_on(f.io, f.resolver->resolve("api.example.com"));
  ASSERT_FALSE(addresses.ok());
  EXPECT_THAT(addresses.error().message, StartsWith("upstream_unreachable"));
}

}  // namespace
}  // namespace netfence::dns
