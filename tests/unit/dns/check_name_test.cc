// Policy::check_name (the allocation-free name judgement the DNS fast path uses) must agree with
// Policy::judge_name on every name: same verdict, same reason, same rule.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "policy/policy.h"

namespace netfence::policy {
namespace {

Policy compile(std::vector<std::string> allow, std::vector<std::string> deny = {},
               Mode mode = Mode::kEnabled) {
  NetworkSpec spec;
  spec.mode = mode;
  spec.allow_net = std::move(allow);
  spec.deny_net = std::move(deny);
  auto policy = Policy::compile(spec);
  EXPECT_TRUE(policy.ok()) << policy.error().message;
  return std::move(policy).value();
}

const std::vector<std::string>& names() {
  static const std::vector<std::string> list = {
      "api.example.com",
      "API.Example.COM",
      "api.example.com.",
      "api.example.com..",
      "example.com",
      "a.b.example.com",
      "x.example.org",
      "example.org",
      "db.example.net",
      "evil.example.net",
      "other.test",
      "",
      ".",
      "a..b",
      "-a.example.com",
      "a-.example.com",
      "a_b.example.com",
      "_srv._tcp.example.com",
      "1.2.3.4",
      "10.0.0.1.",
      "2001:db8::1",
      "::ffff:10.0.0.1",
      "[::1]",
      "host.123",
      "123.host",
      "xn--bcher-kva.example",
      "bücher.example",
      "BÜCHER.example",
      "münchen.example.com",
      "a.b\\.c",
      "a b.example.com",
      std::string(63, 'a') + ".example.com",
      std::string(64, 'a') + ".example.com",
      std::string(250, 'a'),
      "use-application-dns.net",
      "localhost",
      "LOCALHOST.",
      std::string("nul\0byte.example.com", 20),
  };
  return list;
}

void expect_agreement(const Policy& policy) {
  for (const std::string& name : names()) {
    for (uint16_t port : {0, 443, 5432, 22}) {
      Decision slow = policy.judge_name(name, port);
      NameCheck fast = policy.check_name(name, port);
      SCOPED_TRACE("'" + name + "' port " + std::to_string(port) + ": " + slow.detail);
      EXPECT_EQ(fast.verdict, slow.verdict);
      EXPECT_EQ(fast.reason, slow.reason);
      EXPECT_EQ(fast.rule == nullptr ? std::string() : fast.rule->text, slow.rule);
    }
  }
}

TEST(CheckName, AgreesWithJudgeNameInAllowlistMode) {
  expect_agreement(
      compile({"api.example.com", "*.example.com:443", "example.org:80-90", "*.example.net",
               "xn--bcher-kva.example", "münchen.example.com", "10.0.0.0/8", "localhost"},
              {"evil.example.net", "*.bad.example.com"}));
}

TEST(CheckName, AgreesWithJudgeNameInFullAccessAndDisabledModes) {
  expect_agreement(compile({}, {"evil.example.net", "*.example.org:443"}));
  expect_agreement(compile({}));
  expect_agreement(compile({}, {}, Mode::kDisabled));
}

TEST(CheckName, ReportsTheDecidingRule) {
  Policy p = compile({"api.example.com:443", "*.example.com"}, {"*.bad.example.com"});
  NameCheck exact = p.check_name("API.example.com.", 443);
  ASSERT_TRUE(exact.allowed());
  EXPECT_EQ(exact.rule->text, "api.example.com:443");
  NameCheck wildcard = p.check_name("api.example.com", 80);  // the exact rule is for 443 only
  ASSERT_TRUE(wildcard.allowed());
  EXPECT_EQ(wildcard.rule->text, "*.example.com");
  NameCheck denied = p.check_name("x.bad.example.com", 0);
  EXPECT_EQ(denied.reason, Reason::kDenyRule);
  EXPECT_EQ(denied.rule->text, "*.bad.example.com");
  NameCheck apex = p.check_name("example.com", 0);
  EXPECT_EQ(apex.reason, Reason::kNoMatch);
  EXPECT_EQ(apex.rule, nullptr);
}

}  // namespace
}  // namespace netfence::policy
