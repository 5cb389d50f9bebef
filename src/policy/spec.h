// NetworkSpec: what the user asked for, before compilation (SPEC 1.1). The same shape comes from
// command-line flags and from JSON ({"mode":"enabled","allow_net":[...],"deny_net":[...]}), the
// form the REST API and SDKs use.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace netfence::policy {

enum class Mode { kEnabled, kDisabled };

// How the DNS server answers names that are not allowed (SPEC 1.5).
enum class BlockedAnswer { kNull, kNxdomain, kRefused };

struct NetworkSpec {
  Mode mode = Mode::kEnabled;
  std::vector<std::string> allow_net;
  std::vector<std::string> deny_net;
  BlockedAnswer blocked_answer = BlockedAnswer::kNull;
};

// Parses "enabled"/"disabled" (any case). The error names the accepted values.
Result<Mode> parse_mode(std::string_view text);
Result<BlockedAnswer> parse_blocked_answer(std::string_view text);
std::string_view to_string(Mode mode);
std::string_view to_string(BlockedAnswer answer);

// Parses the JSON form. Unknown fields, wrong types and inputs over 4 MiB are rejected with a
// message that names the field. Does not validate the rules themselves (compile does).
Result<NetworkSpec> parse_spec_json(std::string_view json);
std::string to_json(const NetworkSpec& spec);

}  // namespace netfence::policy
