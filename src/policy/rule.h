// One allow_net / deny_net entry, parsed and normalised (SPEC 1.2):
//   example.com        exact host          *.example.com     any-depth subdomain, never the apex
//   1.2.3.4  2001:db8::1                   10.0.0.0/8  2001:db8::/32
// each with an optional port or range: example.com:443, *.example.com:8000-8100, 1.2.3.4:22,
// [2001:db8::1]:443, 10.0.0.0/8:5432, [2001:db8::/32]:443. No port means every port.
// Parsing rejects, quoting the entry, what cannot be meant as a rule (URLs, "*", "*.com" and
// other public suffixes, "*example.com", bad prefixes and ports). Lint finds legal rules that
// are likely mistakes; it warns and never rejects.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "policy/address.h"

namespace netfence::policy {

struct PortRange {
  uint16_t first = 1;
  uint16_t last = 65535;

  bool all() const { return first == 1 && last == 65535; }
  // Port 0 stands for "no particular port" (a `check` target without a port): it matches.
  bool contains(uint16_t port) const { return port == 0 || (port >= first && port <= last); }
  std::string to_string() const;  // "" for all ports, "443", "8000-8100"
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

enum class RuleKind : uint8_t { kExactHost, kWildcardHost, kAddress, kPrefix };

struct Rule {
  RuleKind kind = RuleKind::kExactHost;
  std::string host;  // kExactHost: the name; kWildcardHost: the suffix without "*."
  IpPrefix prefix;   // kAddress (full-length prefix) and kPrefix
  PortRange ports;
  std::string text;  // canonical text, e.g. "*.example.org:443"; what decisions quote

  bool is_host() const { return kind == RuleKind::kExactHost || kind == RuleKind::kWildcardHost; }
  friend bool operator==(const Rule&, const Rule&) = default;
};

// Parses one entry. On failure the error message quotes the entry and says why it is refused.
Result<Rule> parse_rule(std::string_view entry);

// Parses a comma-separated list (the --allow-net/--deny-net flag form); empty items between
// commas are errors. Fails on the first bad entry.
Result<std::vector<Rule>> parse_rule_list(std::string_view list);

// True when `suffix` (a normalised name) is an ICANN public suffix such as "com" or "co.uk".
bool is_public_suffix(std::string_view suffix);
// True when `suffix` is a suffix from the PSL's private section (multi-tenant hosting such as
// "github.io" or "s3.amazonaws.com"): anyone can get a name under it.
bool is_multi_tenant_suffix(std::string_view suffix);

// Warnings about a rule list as a whole, one sentence each, quoting the rules concerned.
std::vector<std::string> lint_rules(const std::vector<Rule>& allow, const std::vector<Rule>& deny);

}  // namespace netfence::policy
