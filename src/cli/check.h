// `netfence check TARGET...`: judges each host[:port] / ip[:port] / [v6]:port target against a
// policy, without touching the network (no DNS lookups: names are judged as names, addresses
// as addresses). Prints one line per target (or one JSON object per line with --json) and
// returns 0 when every target is allowed, 1 when any is denied.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "policy/policy.h"

namespace netfence::cli {

struct Target {
  std::string host;   // a name or an IP literal, brackets removed
  uint16_t port = 0;  // 0 when the target has none: any port matches
};

// Parses "host", "host:port", "1.2.3.4:22", "[2001:db8::1]:443", "2001:db8::1". The error
// quotes the target.
Result<Target> parse_target(std::string_view text);

// Judges one target: as an address when it is an IP literal, else as a name.
policy::Decision judge_target(const policy::Policy& policy, const Target& target);

}  // namespace netfence::cli
