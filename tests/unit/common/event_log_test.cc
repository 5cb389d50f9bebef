// The decision log's JSON lines: the hand-written serializer must produce exactly what a JSON
// library would (docs/log.md's schema), including escapes and invalid UTF-8 from the sandbox.
#include "common/event_log.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "nlohmann/json.hpp"

namespace netfence {
namespace {

Event sample() {
  Event e;
  e.event = "connect";
  e.id = 7;
  e.proto = "tcp";
  e.src = "192.0.0.2:40112";
  e.dst = "203.0.113.20";
  e.port = 443;
  e.name = "api.example.com";
  e.name_source = "sni";
  e.verdict = "allow";
  e.rule = "api.example.com";
  e.reason = "allow_rule";
  e.detail = "allowed by rule 'api.example.com'";
  e.dialed = "203.0.113.10:443";
  return e;
}

TEST(EventLog, JsonHasTheSchemaFieldsInOrder) {
  auto time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796000000123));
  std::string line = EventLog::to_json(sample(), "nf-1", time);
  auto j = nlohmann::ordered_json::parse(line);
  std::vector<std::string> keys;
  for (auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"time", "sandbox", "event", "id", "proto", "src", "dst",
                                            "port", "name", "name_source", "verdict", "rule",
                                            "reason", "detail", "dialed"}));
  EXPECT_EQ(j["time"], "2026-11-30T00:53:20.123Z");
  EXPECT_EQ(j["port"], 443);
  EXPECT_EQ(j["id"], 7);
}

TEST(EventLog, NullsAndOptionalFields) {
  Event e;
  e.event = "close";
  e.proto = "tcp";
  e.verdict = "allow";
  e.reason = "eof";
  e.bytes_up = 517;
  e.bytes_down = 2310;
  e.duration_ms = 31.5;
  auto j = nlohmann::ordered_json::parse(EventLog::to_json(e, "nf-1", {}));
  EXPECT_TRUE(j["name"].is_null());
  EXPECT_TRUE(j["rule"].is_null());
  EXPECT_EQ(j["name_source"], "none");
  EXPECT_FALSE(j.contains("detail"));
  EXPECT_FALSE(j.contains("id"));
  EXPECT_EQ(j["bytes_up"], 517);
  EXPECT_EQ(j["bytes_down"], 2310);
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 31.5);
}

TEST(EventLog, HostileStringsStayValidJson) {
  Event e = sample();
  e.name = std::string("ev\"il\\name\n\x01\xff\xfe", 13);  // quotes, control bytes, bad UTF-8
  e.detail = "tab\there";
  std::string line = EventLog::to_json(e, "nf-1", {});
  auto j = nlohmann::ordered_json::parse(line);  // throws (fails the test) if invalid
  EXPECT_EQ(j["detail"], "tab\there");
  EXPECT_EQ(j["name"].get<std::string>().substr(0, 11), "ev\"il\\name\n");
}

TEST(EventLog, WritesOnlyWhatTheLevelWants) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    EventLog log(f, LogFormat::kJson, LogLevel::kDenials, "nf-1");
    EXPECT_TRUE(log.wants(false));
    EXPECT_FALSE(log.wants(true));
    Event denied = sample();
    denied.verdict = "deny";
    log.write(denied);
    EXPECT_EQ(log.written(), 1u);
  }
  std::rewind(f);
  char buffer[4096] = {};
  size_t n = std::fread(buffer, 1, sizeof buffer - 1, f);
  std::fclose(f);
  std::string text(buffer, n);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  EXPECT_NE(text.find("\"verdict\":\"deny\""), std::string::npos);
}

}  // namespace
}  // namespace netfence
