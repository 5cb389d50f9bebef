#include "cli/check.h"

#include <algorithm>
#include <charconv>

#include "fmt/format.h"

namespace netfence::cli {

Result<Target> parse_target(std::string_view text) {
  Target target;
  std::string_view host = text;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return fail(fmt::format("target '{}' opens '[' but never closes it", text));
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return fail(fmt::format("target '{}': expected ':PORT'", text));
      port = rest.substr(1);
      if (port.empty()) return fail(fmt::format("target '{}': the port is missing", text));
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (port.empty()) return fail(fmt::format("target '{}': the port is missing", text));
  }
  if (host.empty()) return fail(fmt::format("target '{}' has no host", text));
  if (!port.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
      return fail(
          fmt::format("target '{}': port '{}' must be a number from 1 to 65535", text, port));
    }
    target.port = static_cast<uint16_t>(value);
  }
  target.host = std::string(host);
  return target;
}

policy::Decision judge_target(const policy::Policy& policy, const Target& target) {
  if (auto address = policy::IpAddress::parse(target.host)) {
    return policy.judge_address(*address, target.port);
  }
  return policy.judge_name(target.host, target.port);
}

}  // namespace netfence::cli
