// Rule grammar (SPEC 1.2): accepted forms, normalisation, and refusals with clear messages.
#include "policy/rule.h"

#include <gtest/gtest.h>

#include "policy/hostname.h"

namespace netfence::policy {
namespace {

Rule parse_ok(std::string_view entry) {
  auto rule = parse_rule(entry);
  EXPECT_TRUE(rule.ok()) << entry << ": " << (rule.ok() ? "" : rule.error().message);
  return rule.ok() ? rule.value() : Rule{};
}

std::string parse_error(std::string_view entry) {
  auto rule = parse_rule(entry);
  EXPECT_FALSE(rule.ok()) << entry << " was accepted as " << (rule.ok() ? rule->text : "");
  return rule.ok() ? "" : rule.error().message;
}

TEST(RuleParse, ExactHost) {
  Rule r = parse_ok("api.example.com");
  EXPECT_EQ(r.kind, RuleKind::kExactHost);
  EXPECT_EQ(r.host, "api.example.com");
  EXPECT_TRUE(r.ports.all());
  EXPECT_EQ(r.text, "api.example.com");
}

TEST(RuleParse, HostIsLowercasedAndTrailingDotDropped) {
  // Deliberate difference from BoxLite: its rule "api.openai.com." never matched anything and
  // its DNS zones were case-sensitive; we normalise rules exactly like names.
  EXPECT_EQ(parse_ok("API.Example.COM.").text, "api.example.com");
  EXPECT_EQ(parse_ok("  api.example.com  ").text, "api.example.com");
}

TEST(RuleParse, Wildcard) {
  Rule r = parse_ok("*.Example.org");
  EXPECT_EQ(r.kind, RuleKind::kWildcardHost);
  EXPECT_EQ(r.host, "example.org");
  EXPECT_EQ(r.text, "*.example.org");
}

TEST(RuleParse, PortsAndRanges) {
  Rule r = parse_ok("example.com:443");
  EXPECT_EQ(r.ports, (PortRange{443, 443}));
  EXPECT_EQ(r.text, "example.com:443");
  r = parse_ok("*.example.com:8000-8100");
  EXPECT_EQ(r.ports, (PortRange{8000, 8100}));
  EXPECT_EQ(r.text, "*.example.com:8000-8100");
  EXPECT_EQ(parse_ok("1.2.3.4:22").text, "1.2.3.4:22");
  EXPECT_EQ(parse_ok("[2001:db8::1]:443").text, "[2001:db8::1]:443");
  EXPECT_EQ(parse_ok("10.0.0.0/8:5432").text, "10.0.0.0/8:5432");
  EXPECT_EQ(parse_ok("[2001:db8::/32]:443").text, "[2001:db8::/32]:443");
  EXPECT_EQ(parse_ok("example.com:1-65535").text, "example.com");
}

TEST(RuleParse, AddressesAndPrefixes) {
  Rule r = parse_ok("1.2.3.4");
  EXPECT_EQ(r.kind, RuleKind::kAddress);
  EXPECT_EQ(r.prefix.length(), 32);
  r = parse_ok("2001:DB8::1");
  EXPECT_EQ(r.kind, RuleKind::kAddress);
  EXPECT_EQ(r.text, "2001:db8::1");
  EXPECT_EQ(r.prefix.length(), 128);
  r = parse_ok("10.0.0.0/8");
  EXPECT_EQ(r.kind, RuleKind::kPrefix);
  EXPECT_EQ(r.text, "10.0.0.0/8");
  EXPECT_EQ(parse_ok("2001:db8::/32").text, "2001:db8::/32");
  // An IPv4-mapped rule is the IPv4 address it names.
  EXPECT_EQ(parse_ok("::ffff:192.0.2.1").text, "192.0.2.1");
}

TEST(RuleParse, Idna) {
  EXPECT_EQ(parse_ok("bücher.example").text, "xn--bcher-kva.example");
  EXPECT_EQ(parse_ok("*.Bücher.example").text, "*.xn--bcher-kva.example");
  EXPECT_EQ(parse_ok("xn--bcher-kva.example").text, "xn--bcher-kva.example");
}

// The "Done when" list: each is refused with a message that quotes it and says why.
TEST(RuleParse, RefusalsQuoteTheEntryAndSayWhy) {
  struct Case {
    const char* entry;
    const char* why;
  } cases[] = {
      {"*", "every host"},
      {"*.com", "public suffix"},
      {"https://a.com", "URL"},
      {"*example.com", "wildcard must be '*.'"},
      {"10.0.0.0/33", "from 0 to 32"},
      {"a..b", "empty label"},
      {"host:99999", "out of range"},
      {"[::1", "never closes"},
  };
  for (const Case& c : cases) {
    std::string message = parse_error(c.entry);
    EXPECT_NE(message.find(std::string("'") + c.entry + "'"), std::string::npos)
        << c.entry << " -> " << message;
    EXPECT_NE(message.find(c.why), std::string::npos) << c.entry << " -> " << message;
  }
}

TEST(RuleParse, MoreRefusals) {
  for (const char* entry : {"",
                            "   ",
                            "*.",
                            "*.co.uk",
                            "*.uk",
                            "a.*.com",
                            "**.a.com",
                            "example.com:",
                            "example.com:0",
                            "example.com:abc",
                            "example.com:443-80",
                            "example.com:-1",
                            "1.2.3.4/8",
                            "10.0.0.0/",
                            "10.0.0.0/08",
                            "2001:db8::/129",
                            "999.0.0.1",
                            "1.2.3",
                            "01.2.3.4",
                            "[example.com]:443",
                            "[::1]x",
                            "-a.com",
                            "a-.com",
                            "a_b.com",
                            "a b.com",
                            "a.com,b.com",
                            "http://a.com",
                            "a.com/path",
                            "[::1]:70000"}) {
    parse_error(entry);
  }
  std::string long_label(64, 'a');
  parse_error(long_label + ".com");
  std::string long_name;
  for (int i = 0; i < 26; ++i) long_name += "abcdefghi.";
  parse_error(long_name + "com");  // 263 characters
}

TEST(RuleParse, MultiTenantSuffixIsAllowedButLinted) {
  Rule r = parse_ok("*.github.io");
  auto warnings = lint_rules({r}, {});
  bool found = false;
  for (const auto& w : warnings) found |= w.find("shared hosting suffix") != std::string::npos;
  EXPECT_TRUE(found);
  EXPECT_TRUE(is_multi_tenant_suffix("s3.amazonaws.com"));
  EXPECT_TRUE(is_public_suffix("co.uk"));
  EXPECT_FALSE(is_public_suffix("example.com"));
}

TEST(RuleLint, WildcardWithoutApexDuplicatesAndShadowing) {
  auto allow = parse_rule_list("*.example.com,api.example.org,api.example.org,x.example.com:443");
  ASSERT_TRUE(allow.ok());
  auto deny = parse_rule_list("api.example.org");
  ASSERT_TRUE(deny.ok());
  auto warnings = lint_rules(*allow, *deny);
  auto has = [&](std::string_view needle) {
    for (const auto& w : warnings) {
      if (w.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("does not match 'example.com' itself"));
  EXPECT_TRUE(has("listed twice"));
  EXPECT_TRUE(has("'x.example.com:443' is redundant"));
  EXPECT_TRUE(has("can never match"));
  // Apex listed: no apex warning.
  auto both = parse_rule_list("*.example.com,example.com");
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(lint_rules(*both, {}).empty());
}

TEST(RuleParseList, SplitsAndRejectsEmptyItems) {
  auto rules = parse_rule_list("a.com, *.b.com ,10.0.0.0/8:22");
  ASSERT_TRUE(rules.ok());
  ASSERT_EQ(rules->size(), 3u);
  EXPECT_EQ((*rules)[1].text, "*.b.com");
  EXPECT_FALSE(parse_rule_list("a.com,,b.com").ok());
  EXPECT_FALSE(parse_rule_list("a.com,").ok());
}

TEST(Hostname, Normalisation) {
  EXPECT_EQ(normalize_hostname("WWW.Example.COM.").value(), "www.example.com");
  EXPECT_FALSE(normalize_hostname("").ok());
  EXPECT_FALSE(normalize_hostname(".").ok());
  EXPECT_FALSE(normalize_hostname("a..").ok());
  EXPECT_FALSE(normalize_hostname("1.2.3.4").ok());
  EXPECT_FALSE(normalize_hostname("a.b.123").ok());
  EXPECT_TRUE(normalize_hostname("123.example.com").ok());
  EXPECT_EQ(normalize_hostname("ÄPFEL.example").value(), "xn--pfel-koa.example");
  EXPECT_FALSE(normalize_hostname("\xff\xfe.example").ok());
}

}  // namespace
}  // namespace netfence::policy
