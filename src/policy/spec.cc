#include "policy/spec.h"

#include <algorithm>

#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace netfence::policy {

namespace {

constexpr size_t kMaxSpecBytes = 4 << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return out;
}

Result<std::vector<std::string>> string_list(const nlohmann::json& value, std::string_view field) {
  if (!value.is_array()) {
    return fail(fmt::format("policy: \"{}\" must be an array of strings", field));
  }
  std::vector<std::string> out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (!value[i].is_string()) {
      return fail(fmt::format("policy: \"{}\"[{}] must be a string", field, i));
    }
    out.push_back(value[i].get<std::string>());
  }
  return out;
}

}  // namespace

Result<Mode> parse_mode(std::string_view text) {
  std::string l = lower(text);
  if (l == "enabled") return Mode::kEnabled;
  if (l == "disabled") return Mode::kDisabled;
  return fail(fmt::format("invalid network mode '{}': expected 'enabled' or 'disabled'", text));
}

Result<BlockedAnswer> parse_blocked_answer(std::string_view text) {
  std::string l = lower(text);
  if (l == "null") return BlockedAnswer::kNull;
  if (l == "nxdomain") return BlockedAnswer::kNxdomain;
  if (l == "refused") return BlockedAnswer::kRefused;
  return fail(
      fmt::format("invalid blocked-name answer '{}': expected 'null', 'nxdomain' or "
                  "'refused'",
                  text));
}

std::string_view to_string(Mode mode) {
  return mode == Mode::kEnabled ? "enabled" : "disabled";
}

std::string_view to_string(BlockedAnswer answer) {
  switch (answer) {
    case BlockedAnswer::kNull:
      return "null";
    case BlockedAnswer::kNxdomain:
      return "nxdomain";
    case BlockedAnswer::kRefused:
      return "refused";
  }
  return "null";
}

Result<NetworkSpec> parse_spec_json(std::string_view json) {
  if (json.size() > kMaxSpecBytes) return fail("policy: larger than 4 MiB");
  // Policy files are read once at start-up, off the data path: nlohmann's exceptions carry the
  // position of a syntax error, which is worth more here than avoiding a throw.
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    return fail(fmt::format("policy: not valid JSON: {}", e.what()));
  }
  if (!doc.is_object()) return fail("policy: expected a JSON object");
  NetworkSpec spec;
  for (const auto& [key, value] : doc.items()) {
    if (key == "mode") {
      if (!value.is_string()) return fail("policy: \"mode\" must be a string");
      auto mode = parse_mode(value.get<std::string>());
      if (!mode) return fail("policy: " + mode.error().message);
      spec.mode = *mode;
    } else if (key == "allow_net" || key == "deny_net") {
      auto list = string_list(value, key);
      if (!list) return list.error();
      (key == "allow_net" ? spec.allow_net : spec.deny_net) = std::move(list.value());
    } else if (key == "dns_blocked_answer") {
      if (!value.is_string()) return fail("policy: \"dns_blocked_answer\" must be a string");
      auto answer = parse_blocked_answer(value.get<std::string>());
      if (!answer) return fail("policy: " + answer.error().message);
      spec.blocked_answer = *answer;
    } else {
      return fail(
          fmt::format("policy: unknown field \"{}\" (known: mode, allow_net, deny_net, "
                      "dns_blocked_answer)",
                      key));
    }
  }
  return spec;
}

std::string to_json(const NetworkSpec& spec) {
  nlohmann::json doc = {{"mode", to_string(spec.mode)},
                        {"allow_net", spec.allow_net},
                        {"deny_net", spec.deny_net},
                        {"dns_blocked_answer", to_string(spec.blocked_answer)}};
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace netfence::policy
