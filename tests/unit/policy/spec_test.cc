// NetworkSpec JSON (the REST/SDK shape).
#include "policy/spec.h"

#include <gtest/gtest.h>

namespace netfence::policy {
namespace {

TEST(SpecJson, ParsesAllFields) {
  auto s = parse_spec_json(
      R"({"mode":"Enabled","allow_net":["a.example","10.0.0.0/8"],"deny_net":["b.example"],
          "dns_blocked_answer":"nxdomain"})");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->mode, Mode::kEnabled);
  EXPECT_EQ(s->allow_net, (std::vector<std::string>{"a.example", "10.0.0.0/8"}));
  EXPECT_EQ(s->deny_net, (std::vector<std::string>{"b.example"}));
  EXPECT_EQ(s->blocked_answer, BlockedAnswer::kNxdomain);
}

TEST(SpecJson, DefaultsToEnabledFullAccess) {
  auto s = parse_spec_json("{}");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->mode, Mode::kEnabled);
  EXPECT_TRUE(s->allow_net.empty());
}

TEST(SpecJson, RoundTrip) {
  NetworkSpec spec;
  spec.mode = Mode::kDisabled;
  auto back = parse_spec_json(to_json(spec));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->mode, Mode::kDisabled);
}

TEST(SpecJson, RejectsWithClearMessages) {
  struct Case {
    const char* json;
    const char* why;
  } cases[] = {
      {R"({"mode":"enabled","allownet":[]})", "unknown field \"allownet\""},
      {R"({"mode":"isolated"})", "expected 'enabled' or 'disabled'"},
      {R"({"mode":1})", "\"mode\" must be a string"},
      {R"({"allow_net":"a.com"})", "\"allow_net\" must be an array"},
      {R"({"allow_net":["a.com",3]})", "\"allow_net\"[1] must be a string"},
      {R"([1,2])", "expected a JSON object"},
      {R"({"mode":"enabled",)", "not valid JSON"},
      {"", "not valid JSON"},
      {R"({"dns_blocked_answer":"drop"})", "expected 'null', 'nxdomain' or 'refused'"},
  };
  for (const Case& c : cases) {
    auto s = parse_spec_json(c.json);
    ASSERT_FALSE(s.ok()) << c.json;
    EXPECT_NE(s.error().message.find(c.why), std::string::npos)
        << c.json << " -> " << s.error().message;
  }
}

TEST(SpecJson, DeepNestingIsAnErrorNotACrash) {
  std::string deep(100000, '[');
  EXPECT_FALSE(parse_spec_json(deep).ok());
}

}  // namespace
}  // namespace netfence::policy
