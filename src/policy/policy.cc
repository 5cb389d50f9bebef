#include "policy/policy.h"

#include <algorithm>
#include <optional>

#include "fmt/format.h"
#include "policy/hostname.h"

namespace netfence::policy {

namespace {

struct Block {
  const char* prefix;
  const char* why;
};

// Most specific first, so the description names the metadata endpoint rather than the
// link-local range around it.
constexpr Block kAlwaysDeny[] = {
    {"169.254.169.254/32", "a cloud metadata endpoint"},
    {"168.63.129.16/32", "a cloud metadata endpoint (Azure WireServer)"},
    {"100.100.100.200/32", "a cloud metadata endpoint (Alibaba Cloud)"},
    {"192.0.0.192/32", "a cloud metadata endpoint (Oracle Cloud)"},
    {"fd00:ec2::254/128", "a cloud metadata endpoint (AWS IPv6)"},
    {"0.0.0.0/8", "'this network' (0.0.0.0/8), which reaches local services"},
    {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"},
    {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved or broadcast"},
    {"::/128", "the unspecified address ::, which reaches local services"},
    {"::1/128", "loopback"},
    {"fe80::/10", "link-local"},
    {"ff00::/8", "multicast"},
};

constexpr const char* kPrivate[] = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                    "100.64.0.0/10", "fc00::/7"};

std::vector<IpPrefix> parse_table(auto&& table, auto&& text_of) {
  std::vector<IpPrefix> out;
  for (const auto& entry : table) out.push_back(IpPrefix::parse(text_of(entry)).value());
  return out;
}

const std::vector<IpPrefix>& always_deny_prefixes() {
  static const std::vector<IpPrefix> prefixes =
      parse_table(kAlwaysDeny, [](const Block& b) { return b.prefix; });
  return prefixes;
}

const std::vector<IpPrefix>& private_prefixes() {
  static const std::vector<IpPrefix> prefixes =
      parse_table(kPrivate, [](const char* p) { return p; });
  return prefixes;
}

Decision make(Verdict verdict, Reason reason, std::string rule, std::string detail) {
  return Decision{verdict, reason, std::move(rule), std::move(detail)};
}

Decision no_match(const Match& match, std::string_view what, uint16_t port) {
  if (match.other_port != nullptr) {
    return make(
        Verdict::kDeny, Reason::kWrongPort, match.other_port->text,
        fmt::format("rule '{}' matches {} but not port {}", match.other_port->text, what, port));
  }
  return make(Verdict::kDeny, Reason::kNoMatch, "",
              fmt::format("no allow_net rule matches {}", what));
}

std::string endpoint(const IpAddress& address, uint16_t port) {
  if (port == 0) return address.to_string();
  return address.family() == Family::kV6 ? fmt::format("[{}]:{}", address.to_string(), port)
                                         : fmt::format("{}:{}", address.to_string(), port);
}

}  // namespace

std::optional<std::string_view> always_denied(const IpAddress& address, int* length) {
  const auto& prefixes = always_deny_prefixes();
  for (size_t i = 0; i < prefixes.size(); ++i) {
    if (prefixes[i].contains(address)) {
      if (length != nullptr) *length = prefixes[i].length();
      return kAlwaysDeny[i].why;
    }
  }
  return std::nullopt;
}

bool is_private(const IpAddress& address) {
  for (const IpPrefix& prefix : private_prefixes()) {
    if (prefix.contains(address)) return true;
  }
  return false;
}

std::string_view to_string(Verdict verdict) {
  return verdict == Verdict::kAllow ? "allow" : "deny";
}

std::string_view to_string(Reason reason) {
  switch (reason) {
    case Reason::kFullAccess:
      return "full_access";
    case Reason::kAllowRule:
      return "allow_rule";
    case Reason::kDenyRule:
      return "deny_rule";
    case Reason::kAlwaysDeny:
      return "always_deny";
    case Reason::kPrivateAddress:
      return "private_address";
    case Reason::kWrongPort:
      return "wrong_port";
    case Reason::kNoMatch:
      return "no_match";
    case Reason::kDisabled:
      return "disabled";
    case Reason::kInvalidName:
      return "invalid_name";
  }
  return "unknown";
}

Result<Policy> Policy::compile(const NetworkSpec& spec) {
  if (spec.mode == Mode::kDisabled && (!spec.allow_net.empty() || !spec.deny_net.empty())) {
    return fail(
        "network mode 'disabled' cannot be combined with allow_net or deny_net; remove the rules "
        "or use mode 'enabled'");
  }
  std::vector<Rule> lists[2];
  const std::vector<std::string>* inputs[2] = {&spec.allow_net, &spec.deny_net};
  for (int i = 0; i < 2; ++i) {
    for (const std::string& entry : *inputs[i]) {
      auto rule = parse_rule(entry);
      if (!rule) {
        return fail(fmt::format("{}: {}", i == 0 ? "allow_net" : "deny_net", rule.error().message));
      }
      lists[i].push_back(std::move(rule.value()));
    }
  }
  Policy policy;
  policy.mode_ = spec.mode;
  policy.blocked_answer_ = spec.blocked_answer;
  policy.warnings_ = lint_rules(lists[0], lists[1]);
  policy.allow_ = RuleSet(std::move(lists[0]));
  policy.deny_ = RuleSet(std::move(lists[1]));
  return policy;
}

std::optional<Decision> Policy::deny_side(const IpAddress& address, uint16_t port) const {
  IpAddress canonical = address.canonical();
  std::optional<IpAddress> inner = address.embedded_v4();
  for (const IpAddress* a : {&canonical, inner ? &*inner : nullptr}) {
    if (a == nullptr) continue;
    if (Match m = deny_.match_address(*a, port)) {
      return make(
          Verdict::kDeny, Reason::kDenyRule, m.rule->text,
          fmt::format("{} is denied by deny_net rule '{}'", endpoint(address, port), m.rule->text));
    }
  }
  for (const IpAddress* a : {&canonical, inner ? &*inner : nullptr}) {
    if (a == nullptr) continue;
    int length = 0;
    std::optional<std::string_view> why = always_denied(*a, &length);
    bool own =
        std::find(host_addresses_.begin(), host_addresses_.end(), *a) != host_addresses_.end();
    if (!why && own) {
      why = "an address of this host";
      length = a->bit_length();
    }
    if (!why) continue;
    // Only an IP/CIDR rule at least as specific as the blocked range opens it: a broad
    // "0.0.0.0/0" must not silently expose metadata endpoints or loopback.
    if (allow_.match_address(*a, port, length)) continue;
    std::string shown = a == &canonical ? endpoint(address, port)
                                        : fmt::format("{} (which embeds {})",
                                                      endpoint(address, port), a->to_string());
    return make(
        Verdict::kDeny, Reason::kAlwaysDeny, "",
        fmt::format("{} is {}; only an explicit IP/CIDR allow_net rule opens it", shown, *why));
  }
  return std::nullopt;
}

Decision Policy::judge_address(const IpAddress& address, uint16_t port) const {
  if (disabled()) return make(Verdict::kDeny, Reason::kDisabled, "", "the network is disabled");
  if (auto denied = deny_side(address, port)) return *denied;
  if (full_access()) {
    return make(Verdict::kAllow, Reason::kFullAccess, "", "full access (allow_net is empty)");
  }
  Match match = allow_.match_address(address.canonical(), port);
  if (match) {
    return make(Verdict::kAllow, Reason::kAllowRule, match.rule->text,
                fmt::format("allowed by rule '{}'", match.rule->text));
  }
  return no_match(match, endpoint(address, port), port);
}

Decision Policy::judge_name(std::string_view name, uint16_t port) const {
  if (disabled()) return make(Verdict::kDeny, Reason::kDisabled, "", "the network is disabled");
  if (IpAddress::parse(name)) {
    return make(Verdict::kDeny, Reason::kInvalidName, "",
                fmt::format("'{}' is an IP address, not a host name; only an IP/CIDR rule "
                            "allows an address",
                            name));
  }
  auto normalized = normalize_hostname(name);
  if (!normalized) {
    return make(Verdict::kDeny, Reason::kInvalidName, "", normalized.error().message);
  }
  const std::string& host = *normalized;
  if (Match m = deny_.match_name(host, port)) {
    return make(Verdict::kDeny, Reason::kDenyRule, m.rule->text,
                fmt::format("{} is denied by deny_net rule '{}'", host, m.rule->text));
  }
  if (full_access()) {
    return make(Verdict::kAllow, Reason::kFullAccess, "", "full access (allow_net is empty)");
  }
  Match match = allow_.match_name(host, port);
  if (match) {
    return make(Verdict::kAllow, Reason::kAllowRule, match.rule->text,
                fmt::format("allowed by rule '{}'", match.rule->text));
  }
  Decision decision = no_match(match, host, port);
  if (const Rule* wildcard = allow_.wildcard_over(host);
      wildcard != nullptr && decision.reason == Reason::kNoMatch) {
    decision.detail +=
        fmt::format(" ('{}' covers subdomains only, not {} itself)", wildcard->text, host);
  }
  return decision;
}

namespace {

// normalize_hostname() for an ASCII name, into `buffer`, without allocating: the same checks, in
// the same order, so both accept exactly the same names. nullopt: not a host name.
std::optional<std::string_view> normalize_ascii(std::string_view name, char (&buffer)[256]) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return std::nullopt;
  size_t label_start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    char c = i < name.size() ? name[i] : '.';
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '.') {
      size_t length = i - label_start;
      if (length == 0 || length > 63) return std::nullopt;
      if (buffer[label_start] == '-' || buffer[i - 1] == '-') return std::nullopt;
      label_start = i + 1;
    } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return std::nullopt;
    }
    if (i < name.size()) buffer[i] = c;
  }
  std::string_view host(buffer, name.size());
  if (looks_numeric(host)) return std::nullopt;
  return host;
}

}  // namespace

NameCheck Policy::check_name(std::string_view name, uint16_t port) const {
  if (disabled()) return NameCheck{Verdict::kDeny, Reason::kDisabled, nullptr};
  bool ascii = std::all_of(name.begin(), name.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (!ascii) {
    // IDN: rare on hot paths; take the slow path and find the rule again by its text.
    Decision d = judge_name(name, port);
    NameCheck check{d.verdict, d.reason, nullptr};
    const RuleSet& set = d.reason == Reason::kDenyRule ? deny_ : allow_;
    for (const Rule& rule : set.rules()) {
      if (!d.rule.empty() && rule.text == d.rule) {
        check.rule = &rule;
        break;
      }
    }
    return check;
  }
  char buffer[256];
  std::optional<std::string_view> host = normalize_ascii(name, buffer);
  if (!host) return NameCheck{Verdict::kDeny, Reason::kInvalidName, nullptr};
  if (Match m = deny_.match_name(*host, port)) {
    return NameCheck{Verdict::kDeny, Reason::kDenyRule, m.rule};
  }
  if (full_access()) return NameCheck{Verdict::kAllow, Reason::kFullAccess, nullptr};
  Match match = allow_.match_name(*host, port);
  if (match) return NameCheck{Verdict::kAllow, Reason::kAllowRule, match.rule};
  if (match.other_port != nullptr) {
    return NameCheck{Verdict::kDeny, Reason::kWrongPort, match.other_port};
  }
  return NameCheck{Verdict::kDeny, Reason::kNoMatch, nullptr};
}

Decision Policy::judge_resolved(const IpAddress& address, uint16_t port) const {
  if (disabled()) return make(Verdict::kDeny, Reason::kDisabled, "", "the network is disabled");
  if (auto denied = deny_side(address, port)) return *denied;
  if (!full_access()) {
    IpAddress canonical = address.canonical();
    std::optional<IpAddress> inner = address.embedded_v4();
    bool priv = is_private(canonical) || (inner && is_private(*inner));
    if (priv && !allow_.match_address(canonical, port)) {
      return make(Verdict::kDeny, Reason::kPrivateAddress, "",
                  fmt::format("{} is a private address; a host name rule never leads to one "
                              "unless an IP/CIDR allow_net rule covers it",
                              endpoint(address, port)));
    }
  }
  return make(Verdict::kAllow, full_access() ? Reason::kFullAccess : Reason::kAllowRule, "",
              "resolved address passes the address checks");
}

}  // namespace netfence::policy
