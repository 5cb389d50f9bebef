#include "policy/rule.h"

#include <libpsl.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "fmt/format.h"
#include "policy/hostname.h"

namespace netfence::policy {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The PSL from the system's publicsuffix package when present (newest), else libpsl's built-in
// copy. Loaded once; libpsl's context is immutable and safe to share across threads.
const psl_ctx_t* suffix_list() {
  static const psl_ctx_t* ctx = [] {
    const psl_ctx_t* latest = psl_latest(nullptr);
    return latest != nullptr ? latest : psl_builtin();
  }();
  return ctx;
}

Result<uint16_t> parse_port(std::string_view entry, std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size()) {
    return fail(fmt::format("'{}': port '{}' is not a number", entry, text));
  }
  if (ec == std::errc::result_out_of_range || value < 1 || value > 65535) {
    return fail(fmt::format("'{}': port {} is out of range (1-65535)", entry, text));
  }
  return static_cast<uint16_t>(value);
}

Result<PortRange> parse_ports(std::string_view entry, std::string_view text) {
  if (text.empty()) return fail(fmt::format("'{}': the port after ':' is missing", entry));
  size_t dash = text.find('-');
  auto first = parse_port(entry, text.substr(0, dash));
  if (!first) return first.error();
  if (dash == std::string_view::npos) return PortRange{*first, *first};
  auto last = parse_port(entry, text.substr(dash + 1));
  if (!last) return last.error();
  if (*last < *first) {
    return fail(fmt::format("'{}': port range {} is backwards (first > last)", entry, text));
  }
  return PortRange{*first, *last};
}

Result<Rule> parse_address_or_prefix(std::string_view entry, std::string_view text) {
  Rule rule;
  if (text.find('/') != std::string_view::npos) {
    auto prefix = IpPrefix::parse(text);
    if (!prefix) {
      return fail(entry == text ? prefix.error().message
                                : fmt::format("in '{}': {}", entry, prefix.error().message));
    }
    rule.kind = RuleKind::kPrefix;
    rule.prefix = *prefix;
    return rule;
  }
  auto address = IpAddress::parse(text);
  if (!address) return fail(fmt::format("'{}': '{}' is not a valid IP address", entry, text));
  rule.kind = RuleKind::kAddress;
  IpAddress canonical = address->canonical();
  rule.prefix = IpPrefix(canonical, canonical.bit_length());
  return rule;
}

Result<Rule> parse_host(std::string_view entry, std::string_view host) {
  Rule rule;
  if (host.find('*') != std::string_view::npos) {
    if (host == "*") {
      return fail(fmt::format(
          "'{}' would allow every host; leave allow_net empty for full access instead", entry));
    }
    if (host.substr(0, 2) != "*." || host.find('*', 1) != std::string_view::npos) {
      return fail(fmt::format(
          "'{}': a wildcard must be '*.' followed by a domain, as in '*.example.com'", entry));
    }
    auto suffix = normalize_hostname(host.substr(2));
    if (!suffix) return fail(fmt::format("in '{}': {}", entry, suffix.error().message));
    if (is_public_suffix(*suffix)) {
      return fail(
          fmt::format("'{}' covers the whole public suffix '{}'; name a domain under it instead",
                      entry, *suffix));
    }
    rule.kind = RuleKind::kWildcardHost;
    rule.host = std::move(suffix.value());
    return rule;
  }
  auto name = normalize_hostname(host);
  if (!name) {
    return fail(entry == host ? name.error().message
                              : fmt::format("in '{}': {}", entry, name.error().message));
  }
  rule.kind = RuleKind::kExactHost;
  rule.host = std::move(name.value());
  return rule;
}

std::string canonical_text(const Rule& rule) {
  std::string base;
  switch (rule.kind) {
    case RuleKind::kExactHost:
      base = rule.host;
      break;
    case RuleKind::kWildcardHost:
      base = "*." + rule.host;
      break;
    case RuleKind::kAddress:
      base = rule.prefix.address().to_string();
      break;
    case RuleKind::kPrefix:
      base = rule.prefix.to_string();
      break;
  }
  if (rule.ports.all()) return base;
  bool v6 = !rule.is_host() && rule.prefix.address().family() == Family::kV6;
  return v6 ? fmt::format("[{}]:{}", base, rule.ports.to_string())
            : fmt::format("{}:{}", base, rule.ports.to_string());
}

}  // namespace

std::string PortRange::to_string() const {
  if (all()) return "";
  if (first == last) return std::to_string(first);
  return fmt::format("{}-{}", first, last);
}

bool is_public_suffix(std::string_view suffix) {
  std::string s(suffix);
  return psl_is_public_suffix2(suffix_list(), s.c_str(), PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE) !=
         0;
}

bool is_multi_tenant_suffix(std::string_view suffix) {
  std::string s(suffix);
  return psl_is_public_suffix2(suffix_list(), s.c_str(),
                               PSL_TYPE_PRIVATE | PSL_TYPE_NO_STAR_RULE) != 0;
}

Result<Rule> parse_rule(std::string_view raw) {
  std::string_view entry = trim(raw);
  if (entry.empty()) return fail("empty allow_net/deny_net entry");
  if (entry.find("://") != std::string_view::npos) {
    return fail(fmt::format(
        "'{}' is a URL; a rule names a host, address or network (e.g. 'api.example.com:443')",
        entry));
  }
  if (entry.find_first_of(" \t,") != std::string_view::npos) {
    return fail(
        fmt::format("'{}' contains white space or a comma; give one rule per entry", entry));
  }

  std::string_view host = entry;
  std::string_view ports;
  bool has_ports = false;
  bool bracketed = false;
  if (entry.front() == '[') {
    size_t close = entry.find(']');
    if (close == std::string_view::npos) {
      return fail(fmt::format("'{}' opens '[' but never closes it with ']'", entry));
    }
    host = entry.substr(1, close - 1);
    std::string_view rest = entry.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return fail(fmt::format("'{}': only ':PORT' may follow ']'", entry));
      }
      ports = rest.substr(1);
      has_ports = true;
    }
    if (host.find(':') == std::string_view::npos) {
      return fail(fmt::format("'{}': brackets are only for IPv6 addresses", entry));
    }
    bracketed = true;
  } else {
    size_t colons = std::count(entry.begin(), entry.end(), ':');
    if (colons == 1) {
      size_t colon = entry.find(':');
      host = entry.substr(0, colon);
      ports = entry.substr(colon + 1);
      has_ports = true;
      if (host.empty()) return fail(fmt::format("'{}': the host before ':' is missing", entry));
    }
    // Two or more colons: a bare IPv6 address or prefix, which cannot carry a port.
  }

  Result<Rule> rule = Error{};
  bool ip_like = bracketed || host.find(':') != std::string_view::npos ||
                 host.find('/') != std::string_view::npos || IpAddress::parse(host).has_value();
  if (ip_like) {
    rule = parse_address_or_prefix(entry, host);
  } else {
    rule = parse_host(entry, host);
  }
  if (!rule) return rule;
  if (has_ports) {
    auto range = parse_ports(entry, ports);
    if (!range) return range.error();
    rule->ports = *range;
  }
  rule->text = canonical_text(*rule);
  return rule;
}

Result<std::vector<Rule>> parse_rule_list(std::string_view list) {
  std::vector<Rule> rules;
  size_t start = 0;
  while (true) {
    size_t comma = list.find(',', start);
    std::string_view item = list.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    auto rule = parse_rule(item);
    if (!rule) {
      if (trim(item).empty()) {
        return fail(fmt::format("'{}': empty entry in the comma-separated list", list));
      }
      return rule.error();
    }
    rules.push_back(std::move(rule.value()));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return rules;
}

namespace {

bool ports_cover(const PortRange& outer, const PortRange& inner) {
  return outer.first <= inner.first && inner.last <= outer.last;
}

// True when every connection `inner` allows is also matched by `outer`.
bool rule_covers(const Rule& outer, const Rule& inner) {
  if (!ports_cover(outer.ports, inner.ports)) return false;
  if (outer.is_host() != inner.is_host()) return false;
  if (!outer.is_host()) {
    return outer.prefix.address().family() == inner.prefix.address().family() &&
           outer.prefix.length() <= inner.prefix.length() &&
           outer.prefix.contains(inner.prefix.address());
  }
  auto under = [](std::string_view name, std::string_view suffix) {
    return name.size() > suffix.size() && name.ends_with(suffix) &&
           name[name.size() - suffix.size() - 1] == '.';
  };
  if (outer.kind == RuleKind::kExactHost) {
    return inner.kind == RuleKind::kExactHost && inner.host == outer.host;
  }
  return under(inner.host, outer.host) ||
         (inner.kind == RuleKind::kWildcardHost && inner.host == outer.host);
}

// Finds, for a rule, the rules of a list that could cover it: same or enclosing names, same or
// enclosing prefixes. Keeps lint linear in the number of rules (100,000-rule lists are real).
class CoverIndex {
 public:
  explicit CoverIndex(const std::vector<Rule>& rules) : rules_(rules) {
    for (uint32_t i = 0; i < rules.size(); ++i) {
      const Rule& r = rules[i];
      if (r.kind == RuleKind::kExactHost) exact_[r.host].push_back(i);
      if (r.kind == RuleKind::kWildcardHost) wildcard_[r.host].push_back(i);
      if (!r.is_host()) prefixes_[r.prefix.to_string()].push_back(i);
    }
  }

  // Index of a rule other than `self` that covers `rule` (preferring the first listed), or -1.
  long covering(const Rule& rule, long self) const {
    long found = -1;
    auto consider = [&](const std::vector<uint32_t>* list) {
      if (list == nullptr) return;
      for (uint32_t j : *list) {
        if (static_cast<long>(j) == self || !rule_covers(rules_[j], rule)) continue;
        // Of two rules that cover each other, only the later one is redundant.
        if (self >= 0 && rule_covers(rule, rules_[j]) && static_cast<long>(j) > self) continue;
        if (found < 0 || static_cast<long>(j) < found) found = j;
      }
    };
    if (rule.is_host()) {
      if (rule.kind == RuleKind::kExactHost) consider(find(exact_, rule.host));
      if (rule.kind == RuleKind::kWildcardHost) consider(find(wildcard_, rule.host));
      for (size_t dot = rule.host.find('.'); dot != std::string::npos;
           dot = rule.host.find('.', dot + 1)) {
        consider(find(wildcard_, rule.host.substr(dot + 1)));
      }
    } else {
      for (int length = rule.prefix.length(); length >= 0; --length) {
        consider(find(prefixes_, IpPrefix(rule.prefix.address(), length).to_string()));
      }
    }
    return found;
  }

 private:
  using Map = std::unordered_map<std::string, std::vector<uint32_t>>;
  static const std::vector<uint32_t>* find(const Map& map, const std::string& key) {
    auto it = map.find(key);
    return it == map.end() ? nullptr : &it->second;
  }

  const std::vector<Rule>& rules_;
  Map exact_, wildcard_, prefixes_;
};

void lint_list(const std::vector<Rule>& rules, std::string_view list_name,
               std::vector<std::string>& warnings) {
  CoverIndex index(rules);
  for (size_t i = 0; i < rules.size(); ++i) {
    long j = index.covering(rules[i], static_cast<long>(i));
    if (j < 0) continue;
    if (rules[j].text == rules[i].text) {
      warnings.push_back(fmt::format("{} rule '{}' is listed twice", list_name, rules[i].text));
    } else {
      warnings.push_back(fmt::format("{} rule '{}' is redundant: '{}' already covers it", list_name,
                                     rules[i].text, rules[j].text));
    }
  }
}

}  // namespace

std::vector<std::string> lint_rules(const std::vector<Rule>& allow, const std::vector<Rule>& deny) {
  std::vector<std::string> warnings;
  lint_list(allow, "allow_net", warnings);
  lint_list(deny, "deny_net", warnings);
  CoverIndex allow_index(allow);
  for (const Rule& rule : allow) {
    if (rule.kind != RuleKind::kWildcardHost) continue;
    if (is_multi_tenant_suffix(rule.host)) {
      warnings.push_back(fmt::format(
          "'{}' allows every tenant of the shared hosting suffix '{}': anyone can get a name "
          "under it",
          rule.text, rule.host));
    }
    Rule apex;
    apex.host = rule.host;
    apex.ports = rule.ports;
    if (allow_index.covering(apex, -1) < 0) {
      warnings.push_back(
          fmt::format("'{}' does not match '{}' itself; add '{}' if the apex is meant too",
                      rule.text, rule.host, rule.host));
    }
  }
  for (const Rule& rule : allow) {
    for (const Rule& d : deny) {
      if (rule_covers(d, rule)) {
        warnings.push_back(
            fmt::format("allow_net rule '{}' can never match: deny_net rule '{}' "
                        "is checked first and covers it",
                        rule.text, d.text));
        break;
      }
    }
  }
  return warnings;
}

}  // namespace netfence::policy
