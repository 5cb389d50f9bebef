// Unit tests of `netfence selftest`'s planning and ClientHello builder (src/cli/probes.h,
// src/cli/tls_hello.h). The probes themselves run against real namespaces in
// tests/e2e/selftest_test.sh, inside a sandbox (all denied) and outside one (all detected).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/probes.h"
#include "cli/tls_hello.h"
#include "policy/address.h"
#include "wire/tls_client_hello.h"

namespace netfence::cli {
namespace {

policy::Policy compile(policy::NetworkSpec spec) {
  auto p = policy::Policy::compile(spec);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  return std::move(p.value());
}

policy::Policy full_access() {
  return compile({});
}
policy::Policy allowlist(std::vector<std::string> allow) {
  policy::NetworkSpec spec;
  spec.allow_net = std::move(allow);
  return compile(spec);
}
policy::Policy disabled() {
  policy::NetworkSpec spec;
  spec.mode = policy::Mode::kDisabled;
  return compile(spec);
}

std::map<std::string, PlannedProbe> plan(const policy::Policy& p, ProbeContext context = {}) {
  std::map<std::string, PlannedProbe> out;
  for (PlannedProbe& probe : plan_probes(p, context)) out[probe.id] = probe;
  return out;
}

// ---- the ClientHello builder, read back by the gateway's own reader ----

wire::ClientHelloInfo read_hello(const std::vector<std::vector<std::byte>>& records) {
  std::vector<std::byte> all;
  for (const auto& r : records) all.insert(all.end(), r.begin(), r.end());
  wire::ClientHelloReader reader;
  EXPECT_EQ(reader.feed(ByteSpan(all.data(), all.size())), wire::ParseState::kDone)
      << reader.reason();
  return reader.info();
}

TEST(SelftestHello, CarriesTheSni) {
  auto message = client_hello_message({"selftest.netfence.invalid", false});
  wire::ClientHelloInfo info = read_hello(client_hello_records(message, 1));
  EXPECT_EQ(info.kind, wire::HelloKind::kClientHello);
  EXPECT_EQ(info.sni, "selftest.netfence.invalid");
  EXPECT_FALSE(info.ech_present);
  EXPECT_EQ(info.record_count, 1u);
  EXPECT_EQ(info.versions, (std::vector<uint16_t>{0x0304, 0x0303}));
}

TEST(SelftestHello, SplitIntoRecordsReassemblesToTheSameHello) {
  auto message = client_hello_message({"selftest.netfence.invalid", false});
  auto records = client_hello_records(message, 4);
  ASSERT_EQ(records.size(), 4u);
  size_t payload = 0;
  for (const auto& r : records) payload += r.size() - 5;
  EXPECT_EQ(payload, message.size());
  wire::ClientHelloInfo info = read_hello(records);
  EXPECT_EQ(info.sni, "selftest.netfence.invalid");
  EXPECT_EQ(info.record_count, 4u);
}

TEST(SelftestHello, EchIsSeen) {
  wire::ClientHelloInfo info =
      read_hello(client_hello_records(client_hello_message({"api.example.com", true}), 1));
  EXPECT_TRUE(info.ech_present);
  EXPECT_EQ(info.sni, "api.example.com");
}

TEST(SelftestHello, RecordCountIsClamped) {
  auto message = client_hello_message({"a.invalid", false});
  EXPECT_EQ(client_hello_records(message, 0).size(), 1u);
  EXPECT_EQ(client_hello_records(message, message.size() + 10).size(), message.size());
}

// ---- planning: a probe runs only when the policy denies its target ----

TEST(SelftestPlan, FullAccessSkipsWhatItAllowsAndKeepsTheAlwaysDenySet) {
  auto probes = plan(full_access());
  EXPECT_EQ(probes["ip-literal-v4"].skip, "the policy allows 192.0.2.1:80");
  EXPECT_EQ(probes["ip-literal-v6"].skip, "the policy allows [2001:db8::1]:80");
  EXPECT_EQ(probes["sni-denied"].skip, "the policy allows 192.0.2.1:443");
  EXPECT_EQ(probes["udp-443"].skip, "the policy allows 192.0.2.1:443/udp");
  EXPECT_EQ(probes["dns-udp"].skip,
            "the policy allows selftest.netfence.invalid (the query would be forwarded)");
  for (const char* id : {"metadata-v4", "metadata-v6", "metadata-v4-mapped", "metadata-nat64",
                         "metadata-decimal", "metadata-azure", "zero-address", "loopback"}) {
    EXPECT_EQ(probes[id].skip, "") << id;
    EXPECT_EQ(probes[id].expected, "deny (always_deny)") << id;
  }
  EXPECT_EQ(probes["gateway-listener"].expected, "deny (not_redirected)");
  EXPECT_EQ(probes["raw-socket-v4"].expected, "EPERM");
  EXPECT_EQ(probes["nft-delete-table"].expected, "EPERM");
}

TEST(SelftestPlan, HostAddressComesFromTheContextAndIsDenied) {
  policy::Policy p = full_access();
  EXPECT_EQ(plan(p)["host-address"].skip, "no address of this host was found");
  p.set_host_addresses({*policy::IpAddress::parse("198.51.100.7")});
  ProbeContext context;
  context.host_address = "198.51.100.7";
  PlannedProbe probe = plan(p, context)["host-address"];
  EXPECT_EQ(probe.target, "198.51.100.7:80");
  EXPECT_EQ(probe.skip, "");
  EXPECT_EQ(probe.expected, "deny (always_deny)");
}

TEST(SelftestPlan, AllowlistRunsEveryProbeButKeepAlive) {
  auto probes = plan(allowlist({"api.example.com", "203.0.113.10"}));
  for (const auto& [id, probe] : probes) {
    if (id == "keepalive-host-switch" || id == "host-address") continue;
    EXPECT_EQ(probe.skip, "") << id;
  }
  EXPECT_EQ(probes["keepalive-host-switch"].skip,
            "needs --allowed-host NAME (its first request goes to that host)");
  // An IP literal's Host header is no name: the gateway's reason is invalid_name.
  EXPECT_EQ(probes["ip-literal-v4"].expected, "deny (invalid_name)");
  EXPECT_EQ(probes["sni-denied"].expected, "deny (no_match)");
  EXPECT_EQ(probes["ech"].expected, "deny (ech)");
  EXPECT_EQ(probes["dns-udp"].expected, "A 0.0.0.0 (sinkhole)");
  EXPECT_EQ(probes["dns-udp-v6"].expected, "AAAA :: (sinkhole)");
  EXPECT_EQ(probes["udp-443"].expected, "deny (no_match)");
}

TEST(SelftestPlan, KeepAliveNeedsAnAllowedHost) {
  policy::Policy p = allowlist({"api.example.com"});
  ProbeContext context;
  context.allowed_host = "other.example.org";
  EXPECT_EQ(plan(p, context)["keepalive-host-switch"].skip,
            "the policy does not allow --allowed-host other.example.org:80");
  context.allowed_host = "api.example.com";
  PlannedProbe probe = plan(p, context)["keepalive-host-switch"];
  EXPECT_EQ(probe.skip, "");
  EXPECT_EQ(probe.expected, "deny 2nd request (host_switch)");
  EXPECT_EQ(probe.target, "192.0.2.1:80 Host api.example.com, then selftest.netfence.invalid");
  EXPECT_EQ(plan(p, context)["ech"].target, "192.0.2.1:443 ECH, outer SNI api.example.com");
}

TEST(SelftestPlan, RulesThatAllowAProbeTargetSkipIt) {
  auto probes = plan(allowlist({"192.0.2.0/24", "*.netfence.invalid"}));
  EXPECT_EQ(probes["ip-literal-v4"].skip, "the policy allows 192.0.2.1:80");
  EXPECT_EQ(probes["dns-udp"].skip,
            "the policy allows selftest.netfence.invalid (the query would be forwarded)");
  EXPECT_EQ(probes["dns-metadata"].skip, "");
  EXPECT_EQ(probes["ip-literal-v6"].skip, "");
  // An explicit IP rule opens even the always-deny set (SPEC 1.4), so the probe stays away.
  EXPECT_EQ(plan(allowlist({"169.254.169.254"}))["metadata-v4"].skip,
            "the policy allows 169.254.169.254:80");
  // A name allowed as SNI: the gateway would dial it, so the probe is not sent.
  auto named = plan(allowlist({"selftest.netfence.invalid:443"}));
  EXPECT_EQ(named["sni-denied"].skip, "the policy allows selftest.netfence.invalid:443");
  EXPECT_EQ(named["ech"].skip, "the policy allows selftest.netfence.invalid:443");
}

TEST(SelftestPlan, BlockedAnswerSetsTheDnsExpectation) {
  ProbeContext context;
  context.dns_answer = policy::BlockedAnswer::kNxdomain;
  EXPECT_EQ(plan(allowlist({"api.example.com"}), context)["dns-tcp"].expected,
            "NXDOMAIN (sinkhole)");
  context.dns_answer = policy::BlockedAnswer::kRefused;
  EXPECT_EQ(plan(allowlist({"api.example.com"}), context)["dns-udp"].expected,
            "REFUSED (sinkhole)");
}

TEST(SelftestPlan, DisabledDeniesEverything) {
  for (const auto& [id, probe] : plan(disabled())) {
    if (id == "keepalive-host-switch" || id == "host-address") {
      EXPECT_NE(probe.skip, "") << id;
      continue;
    }
    EXPECT_EQ(probe.skip, "") << id;
    EXPECT_FALSE(probe.expected.empty()) << id;
    if (probe.expected != "EPERM" && id != "icmp-echo") {
      EXPECT_EQ(probe.expected, "deny (disabled)") << id;
    }
  }
}

// Whatever a probe targets can never be a real host: documentation ranges, .invalid names,
// metadata, loopback, the unspecified address (or this host's own, from the context).
TEST(SelftestPlan, EveryTargetIsADocumentationOrForbiddenAddress) {
  std::vector<policy::IpPrefix> safe;
  for (const char* p :
       {"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "169.254.169.254/32",
        "168.63.129.16/32", "fd00:ec2::254/128", "::ffff:169.254.169.254/128",
        "64:ff9b::a9fe:a9fe/128", "0.0.0.0/32", "127.0.0.0/8"}) {
    safe.push_back(policy::IpPrefix::parse(p).value());
  }
  size_t checked = 0;
  for (const PlannedProbe& probe : plan_probes(disabled(), {})) {
    std::string first = probe.target.substr(0, probe.target.find(' '));
    if (probe.target.starts_with("ICMP echo to ")) first = probe.target.substr(13);
    if (first.empty() || !(std::isdigit(static_cast<unsigned char>(first[0])) || first[0] == '[')) {
      continue;  // socket(...), NFT_MSG_..., RTM_...: no address
    }
    std::string host = first.front() == '[' ? first.substr(1, first.find(']') - 1)
                                            : first.substr(0, first.find(':'));
    std::optional<policy::IpAddress> ip = policy::IpAddress::parse(host);
    in_addr v4{};
    if (!ip && inet_aton(host.c_str(), &v4) != 0) {  // the decimal form
      auto bytes = reinterpret_cast<const uint8_t*>(&v4.s_addr);
      ip = policy::IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]});
    }
    ASSERT_TRUE(ip) << probe.id << ": " << probe.target;
    bool ok = false;
    for (const policy::IpPrefix& p : safe) ok = ok || p.contains(*ip);
    EXPECT_TRUE(ok) << probe.id << " targets " << ip->to_string();
    ++checked;
    if (probe.target.find(" SNI ") != std::string::npos ||
        probe.target.find("/udp A") != std::string::npos) {
      EXPECT_TRUE(probe.target.ends_with(".invalid") ||
                  probe.target.ends_with("metadata.google.internal"))
          << probe.target;
    }
  }
  EXPECT_GE(checked, 20u);
}

TEST(SelftestProbe, UnknownIdIsNotRun) {
  EXPECT_FALSE(run_probe("no-such-probe", {}).has_value());
  EXPECT_EQ(probe_ids().size(), plan_probes(full_access(), {}).size());
}

TEST(SelftestProbe, StatusNamesRoundTrip) {
  for (ProbeStatus s : {ProbeStatus::kOk, ProbeStatus::kGotThrough, ProbeStatus::kInconclusive}) {
    EXPECT_EQ(parse_probe_status(to_string(s)), s);
  }
  EXPECT_FALSE(parse_probe_status("GOT THROUGH").has_value());
}

}  // namespace
}  // namespace netfence::cli
