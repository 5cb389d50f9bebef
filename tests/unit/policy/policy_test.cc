// The decision function (SPEC 1.3 steps 1-3, 1.4) and BoxLite's matcher cases adapted.
// BoxLite's MatchesIP(ip) is our judge_address(ip, port) in allowlist mode; MatchesHostname(n)
// is judge_name(n, port). Where we deliberately differ, a test says so by name.
#include "policy/policy.h"

#include <gtest/gtest.h>

namespace netfence::policy {
namespace {

Policy compile(std::vector<std::string> allow, std::vector<std::string> deny = {}) {
  NetworkSpec spec;
  spec.allow_net = std::move(allow);
  spec.deny_net = std::move(deny);
  auto p = Policy::compile(spec);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  return std::move(p).value();
}

IpAddress ip(std::string_view text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

bool mi(const Policy& p, std::string_view address, uint16_t port = 80) {
  return p.judge_address(ip(address), port).allowed();
}
bool mh(const Policy& p, std::string_view name, uint16_t port = 443) {
  return p.judge_name(name, port).allowed();
}

// --- BoxLite reference section 5a (tcp_filter_test.go) ---

TEST(BoxLite, ExactIP) {  // #1
  Policy p = compile({"1.2.3.4", "5.6.7.8"});
  EXPECT_TRUE(mi(p, "1.2.3.4"));
  EXPECT_TRUE(mi(p, "5.6.7.8"));
  EXPECT_FALSE(mi(p, "9.9.9.9"));
}

TEST(BoxLite, Cidr) {  // #2
  Policy p = compile({"10.0.0.0/8"});
  EXPECT_TRUE(mi(p, "10.1.2.3"));
  EXPECT_TRUE(mi(p, "10.255.255.255"));
  EXPECT_FALSE(mi(p, "11.0.0.1"));
}

TEST(BoxLiteDifference, NoInternalAddressesAlwaysAllowed) {  // #3
  // BoxLite always allowed its gateway and guest addresses (192.168.127.1/.2) on any port. We
  // have no such addresses: the gateway is reached through redirection, never by address.
  Policy p = compile({"1.2.3.4"});
  EXPECT_FALSE(mi(p, "192.168.127.1"));
  EXPECT_FALSE(mi(p, "192.168.127.2"));
}

TEST(BoxLite, EmptyListIsFullAccess) {  // #4 (BoxLite: the filter is nil)
  Policy p = compile({});
  EXPECT_TRUE(p.full_access());
  EXPECT_TRUE(mi(p, "9.9.9.9"));
  EXPECT_TRUE(mh(p, "anything.example"));
  EXPECT_EQ(p.judge_address(ip("9.9.9.9"), 80).reason, Reason::kFullAccess);
}

TEST(BoxLite, ExactHostname) {  // #5
  Policy p = compile({"api.openai.com"});
  EXPECT_TRUE(mh(p, "api.openai.com"));
  EXPECT_TRUE(mh(p, "API.OPENAI.COM"));
  EXPECT_FALSE(mh(p, "evil.com"));
  EXPECT_FALSE(mh(p, "openai.com"));
  EXPECT_TRUE(p.allow().has_host_rules());
}

TEST(BoxLite, Wildcard) {  // #6
  Policy p = compile({"*.example.com"});
  EXPECT_TRUE(mh(p, "api.example.com"));
  EXPECT_TRUE(mh(p, "deep.sub.example.com"));
  EXPECT_FALSE(mh(p, "example.com"));
  EXPECT_FALSE(mh(p, "notexample.com"));
}

TEST(BoxLite, IpOnlyHasNoHostnameRules) {  // #7
  Policy p = compile({"1.2.3.4", "10.0.0.0/8"});
  EXPECT_FALSE(p.allow().has_host_rules());
  EXPECT_TRUE(p.allow().has_address_rules());
}

TEST(BoxLite, MixedRules) {  // #8
  Policy p = compile({"1.2.3.4", "10.0.0.0/8", "api.openai.com", "*.anthropic.com"});
  EXPECT_TRUE(mi(p, "1.2.3.4"));
  EXPECT_TRUE(mi(p, "10.50.0.1"));
  EXPECT_TRUE(mh(p, "api.openai.com"));
  EXPECT_TRUE(mh(p, "api.anthropic.com"));
  EXPECT_TRUE(p.allow().has_host_rules());
}

TEST(BoxLite, TrailingDotStripped) {  // #9
  Policy p = compile({"api.openai.com"});
  EXPECT_TRUE(mh(p, "api.openai.com."));
}

TEST(BoxLiteDifference, PortOnHostRuleIsEnforced) {  // #10
  // BoxLite discarded the port: "api.openai.com:443" allowed every port. We enforce it.
  Policy p = compile({"api.openai.com:443"});
  EXPECT_TRUE(mh(p, "api.openai.com", 443));
  EXPECT_FALSE(mh(p, "api.openai.com", 80));
  EXPECT_EQ(p.judge_name("api.openai.com", 80).reason, Reason::kWrongPort);
  EXPECT_EQ(p.judge_name("api.openai.com", 80).rule, "api.openai.com:443");
  EXPECT_TRUE(p.allow().has_host_rules());
}

TEST(BoxLite, EmptyHostnameNeverMatches) {  // #11
  Policy p = compile({"api.openai.com"});
  EXPECT_FALSE(mh(p, ""));
  EXPECT_EQ(p.judge_name("", 443).reason, Reason::kInvalidName);
}

// --- BoxLite reference section 5b (#410 draft AllowNetMatcher) ---

TEST(BoxLiteDraft, ExactHostname) {
  Policy p = compile({"api.openai.com", "api.anthropic.com"});
  EXPECT_TRUE(mh(p, "api.openai.com"));
  EXPECT_TRUE(mh(p, "Api.Anthropic.Com"));
  EXPECT_FALSE(mh(p, "evil.com"));
  EXPECT_FALSE(mh(p, "openai.com"));
}

TEST(BoxLiteDraft, ExactIP) {
  Policy p = compile({"192.168.1.1", "10.0.0.1"});
  EXPECT_TRUE(mi(p, "192.168.1.1"));
  EXPECT_FALSE(mi(p, "192.168.1.2"));
}

TEST(BoxLiteDraft, HostPort) {
  Policy p = compile({"api.openai.com:443"});
  EXPECT_TRUE(mh(p, "api.openai.com", 443));
}

TEST(BoxLiteDraft, EmptyAllowlistMeansFullAccessNotNothing) {
  // The draft's empty matcher matched nothing; the shipped semantics (and ours) are that an
  // empty allow_net is full access.
  Policy p = compile({});
  EXPECT_TRUE(mh(p, "evil.com"));
}

TEST(BoxLiteDraft, MixedRules) {
  Policy p = compile({"api.openai.com", "*.anthropic.com", "192.168.1.0/24", "10.0.0.1"});
  EXPECT_TRUE(mi(p, "192.168.1.100"));
  EXPECT_TRUE(mi(p, "10.0.0.1"));
  EXPECT_FALSE(mh(p, "evil.com"));
  EXPECT_FALSE(mi(p, "172.16.0.1"));
}

TEST(BoxLiteDifference, IpLiteralIsNotAHostName) {
  // The draft's MatchesHost("1.2.3.4") fell back to IP matching, and the shipped parser turned
  // "1.2.3.4:443" into a hostname rule that a Host header could satisfy. An IP literal in SNI,
  // Host or a DNS question is never a host name here.
  Policy p = compile({"1.2.3.4:443", "api.example.com"});
  EXPECT_FALSE(mh(p, "1.2.3.4"));
  EXPECT_EQ(p.judge_name("1.2.3.4", 443).reason, Reason::kInvalidName);
  EXPECT_TRUE(mi(p, "1.2.3.4", 443));
  EXPECT_FALSE(mi(p, "1.2.3.4", 80));
}

TEST(BoxLiteDifference, Ipv6RulesAreHonoured) {
  // BoxLite dropped IPv6 literals and kept IPv6 CIDRs that could never match.
  Policy p = compile({"2001:db8::1", "[2001:db8:1::/48]:443"});
  EXPECT_TRUE(mi(p, "2001:db8::1"));
  EXPECT_FALSE(mi(p, "2001:db8::2"));
  EXPECT_TRUE(mi(p, "2001:db8:1::77", 443));
  EXPECT_FALSE(mi(p, "2001:db8:1::77", 80));
}

// --- Our own semantics ---

TEST(Policy, PortsAndRanges) {
  Policy p = compile({"*.example.com:8000-8100", "10.0.0.0/8:5432", "[2001:db8::/32]:443"});
  EXPECT_TRUE(mh(p, "a.example.com", 8000));
  EXPECT_TRUE(mh(p, "a.example.com", 8100));
  EXPECT_FALSE(mh(p, "a.example.com", 8101));
  EXPECT_TRUE(mi(p, "10.9.9.9", 5432));
  EXPECT_FALSE(mi(p, "10.9.9.9", 5433));
  EXPECT_TRUE(mi(p, "2001:db8:ffff::1", 443));
  EXPECT_FALSE(mi(p, "2001:db8:ffff::1", 80));
}

TEST(Policy, SeveralRulesOnOneNameWithDifferentPorts) {
  Policy p = compile({"api.example.com:443", "api.example.com:8443", "*.example.com:22"});
  EXPECT_TRUE(mh(p, "api.example.com", 443));
  EXPECT_TRUE(mh(p, "api.example.com", 8443));
  EXPECT_TRUE(mh(p, "api.example.com", 22));  // through the wildcard
  EXPECT_FALSE(mh(p, "api.example.com", 80));
  EXPECT_EQ(p.judge_name("api.example.com", 22).rule, "*.example.com:22");
}

TEST(Policy, MostSpecificRuleIsReported) {
  Policy p = compile(
      {"*.example.com", "*.api.example.com", "v1.api.example.com", "10.0.0.0/8", "10.1.0.0/16"});
  EXPECT_EQ(p.judge_name("v1.api.example.com", 443).rule, "v1.api.example.com");
  EXPECT_EQ(p.judge_name("v2.api.example.com", 443).rule, "*.api.example.com");
  EXPECT_EQ(p.judge_name("www.example.com", 443).rule, "*.example.com");
  EXPECT_EQ(p.judge_address(ip("10.1.2.3"), 1).rule, "10.1.0.0/16");
  EXPECT_EQ(p.judge_address(ip("10.2.2.3"), 1).rule, "10.0.0.0/8");
}

TEST(Policy, DenyTakesPrecedence) {
  Policy p = compile({"*.example.com", "10.0.0.0/8"},
                     {"secret.example.com", "10.0.0.5", "*.internal.example.com:22"});
  EXPECT_TRUE(mh(p, "www.example.com"));
  EXPECT_FALSE(mh(p, "secret.example.com"));
  EXPECT_EQ(p.judge_name("secret.example.com", 443).reason, Reason::kDenyRule);
  EXPECT_EQ(p.judge_name("secret.example.com", 443).rule, "secret.example.com");
  EXPECT_TRUE(mh(p, "a.internal.example.com", 443));
  EXPECT_FALSE(mh(p, "a.internal.example.com", 22));
  EXPECT_TRUE(mi(p, "10.0.0.4"));
  EXPECT_FALSE(mi(p, "10.0.0.5"));
}

TEST(Policy, DenyWorksInFullAccessMode) {
  // "internet but not the LAN"
  Policy p = compile({}, {"10.0.0.0/8", "192.168.0.0/16", "evil.example"});
  EXPECT_TRUE(mi(p, "203.0.113.5"));
  EXPECT_FALSE(mi(p, "10.1.1.1"));
  EXPECT_FALSE(mh(p, "evil.example"));
  EXPECT_FALSE(mh(p, "EVIL.example."));
  EXPECT_TRUE(mh(p, "good.example"));
  // Deny applies to IPv4 inside IPv6 too.
  EXPECT_FALSE(mi(p, "::ffff:10.1.1.1"));
  EXPECT_FALSE(mi(p, "64:ff9b::10.1.1.1"));
}

TEST(Policy, AlwaysDenySetInEveryEnabledMode) {
  for (const Policy& p : {compile({}), compile({"*.example.com", "203.0.113.0/24"})}) {
    for (const char* a :
         {"169.254.169.254", "168.63.129.16", "100.100.100.200", "192.0.0.192", "fd00:ec2::254",
          "0.0.0.0", "0.1.2.3", "127.0.0.1", "127.9.9.9", "169.254.1.1", "224.0.0.1",
          "255.255.255.255", "::", "::1", "fe80::1", "ff02::1"}) {
      Decision d = p.judge_address(ip(a), 80);
      EXPECT_FALSE(d.allowed()) << a;
      EXPECT_EQ(d.reason, Reason::kAlwaysDeny) << a;
    }
  }
  EXPECT_NE(compile({}).judge_address(ip("169.254.169.254"), 80).detail.find("metadata"),
            std::string::npos);
}

TEST(Policy, EmbeddedIpv4IsUnwrapped) {
  Policy p = compile({});
  for (const char* a : {"::ffff:169.254.169.254", "::169.254.169.254", "64:ff9b::a9fe:a9fe",
                        "64:ff9b:1::a9fe:a9fe", "2002:a9fe:a9fe::1", "::ffff:127.0.0.1",
                        // Teredo: client IPv4 inverted in the last 32 bits (~169.254.169.254).
                        "2001:0:4136:e378:8000:63bf:5601:5601"}) {
    Decision d = p.judge_address(ip(a), 80);
    EXPECT_EQ(d.reason, Reason::kAlwaysDeny) << a << ": " << d.detail;
  }
  EXPECT_TRUE(mi(p, "2001:db8::1"));
}

TEST(Policy, ExplicitSpecificRuleOpensAlwaysDenyButBroadOneDoesNot) {
  Policy broad = compile({"0.0.0.0/0", "::/0"});
  EXPECT_TRUE(mi(broad, "203.0.113.9"));
  EXPECT_FALSE(mi(broad, "169.254.169.254"));
  EXPECT_FALSE(mi(broad, "127.0.0.1"));
  EXPECT_FALSE(mi(broad, "::1"));
  Policy specific = compile({"169.254.169.254:80", "127.0.0.0/8"});
  EXPECT_TRUE(mi(specific, "169.254.169.254", 80));
  EXPECT_FALSE(mi(specific, "169.254.169.254", 443));
  EXPECT_TRUE(mi(specific, "127.0.0.53", 53));
}

TEST(Policy, HostAddressesAreAlwaysDenied) {
  Policy p = compile({});
  p.set_host_addresses({ip("198.51.100.10"), ip("2001:db8::10")});
  EXPECT_FALSE(mi(p, "198.51.100.10"));
  EXPECT_FALSE(mi(p, "::ffff:198.51.100.10"));
  EXPECT_FALSE(mi(p, "2001:db8::10"));
  EXPECT_TRUE(mi(p, "198.51.100.11"));
}

TEST(Policy, ResolvedAddressesNeverPrivateUnlessCovered) {
  Policy p = compile({"api.example.com", "10.1.0.0/16"});
  EXPECT_TRUE(p.judge_resolved(ip("203.0.113.5"), 443).allowed());
  for (const char* a : {"10.2.3.4", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12::1",
                        "::ffff:192.168.1.1", "64:ff9b::c0a8:101"}) {
    Decision d = p.judge_resolved(ip(a), 443);
    EXPECT_EQ(d.reason, Reason::kPrivateAddress) << a;
  }
  EXPECT_TRUE(p.judge_resolved(ip("10.1.3.4"), 443).allowed());
  EXPECT_EQ(p.judge_resolved(ip("169.254.169.254"), 80).reason, Reason::kAlwaysDeny);
  // Full access: private ranges are reachable (deny_net is the tool to close them).
  EXPECT_TRUE(compile({}).judge_resolved(ip("10.2.3.4"), 443).allowed());
}

TEST(Policy, DisabledDeniesEverythingAndRefusesRules) {
  NetworkSpec spec;
  spec.mode = Mode::kDisabled;
  auto p = Policy::compile(spec);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->judge_address(ip("203.0.113.1"), 80).reason, Reason::kDisabled);
  EXPECT_EQ(p->judge_name("a.example", 80).reason, Reason::kDisabled);
  spec.allow_net = {"a.example"};
  auto bad = Policy::compile(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("disabled"), std::string::npos);
}

TEST(Policy, IdnAndCaseAndTrailingDotOnNames) {
  Policy p = compile({"bücher.example", "*.Example.ORG."});
  EXPECT_TRUE(mh(p, "xn--bcher-kva.example"));
  EXPECT_TRUE(mh(p, "BÜCHER.example"));
  EXPECT_TRUE(mh(p, "WWW.EXAMPLE.org."));
  EXPECT_FALSE(mh(p, "example.org"));
  EXPECT_NE(p.judge_name("example.org", 443).detail.find("subdomains only"), std::string::npos);
}

TEST(Policy, DuplicatesAreHarmless) {
  Policy p = compile({"a.example", "a.example", "A.EXAMPLE."});
  EXPECT_TRUE(mh(p, "a.example"));
  EXPECT_FALSE(p.warnings().empty());
}

TEST(Policy, CompileErrorNamesTheList) {
  NetworkSpec spec;
  spec.deny_net = {"*.com"};
  auto p = Policy::compile(spec);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message.rfind("deny_net: '*.com'", 0), 0u) << p.error().message;
}

TEST(Address, ParseIsStrict) {
  for (const char* bad : {"1.2.3", "01.2.3.4", "1.2.3.4.5", "0x7f.0.0.1", "2130706433",
                          "fe80::1%eth0", "", "::ffff:1.2.3", "1.2.3.256"}) {
    EXPECT_FALSE(IpAddress::parse(bad).has_value()) << bad;
  }
  EXPECT_EQ(ip("::ffff:1.2.3.4").canonical().to_string(), "1.2.3.4");
  EXPECT_EQ(ip("2001:db8::1").canonical().to_string(), "2001:db8::1");
}

}  // namespace
}  // namespace netfence::policy
