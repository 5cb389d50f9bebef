// Theory of operation
// -------------------
// A Policy is a NetworkSpec compiled for matching: the allow and deny rule lists as RuleSets,
// plus the fixed always-deny set and private ranges of SPEC 1.4. It answers three questions,
// each with a Decision that carries the verdict, the rule that decided and a reason:
//
//   judge_address(ip, port)   a connection or datagram to an IP the client chose (SPEC 1.3
//                             steps 1-3): deny_net, always-deny set, full access, IP/CIDR rules.
//   judge_name(name, port)    a name seen in SNI, Host or a DNS question: deny_net host rules,
//                             full access, allow_net host rules.
//   judge_resolved(ip, port)  an address that a name allowed by judge_name resolved to, before
//                             netfence dials it: deny_net, always-deny, and in allowlist mode the
//                             private-range (DNS rebinding) rule.
//
// IPv4 embedded in IPv6 (mapped, NAT64, 6to4, Teredo) is unwrapped for every deny-side check;
// allow rules see the address itself (IPv4-mapped counted as the IPv4 it is). A Policy is
// immutable after compile and safe to share between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "policy/address.h"
#include "policy/matcher.h"
#include "policy/rule.h"
#include "policy/spec.h"

namespace netfence::policy {

enum class Verdict { kAllow, kDeny };

enum class Reason {
  kFullAccess,      // allow: enabled with an empty allow_net
  kAllowRule,       // allow: an allow_net rule matched
  kDenyRule,        // deny: a deny_net rule matched
  kAlwaysDeny,      // deny: loopback, link-local, metadata, multicast, this host, ...
  kPrivateAddress,  // deny: a host rule resolved into a private range no IP/CIDR rule covers
  kWrongPort,       // deny: a rule matches the name or address, but not this port
  kNoMatch,         // deny: no allow_net rule matches
  kDisabled,        // deny: the network is disabled
  kInvalidName,     // deny: the name is not a host name (IP literal, bad syntax)
};

std::string_view to_string(Verdict verdict);
std::string_view to_string(Reason reason);  // stable snake_case, used in the decision log

struct Decision {
  Verdict verdict = Verdict::kDeny;
  Reason reason = Reason::kNoMatch;
  std::string rule;    // the deciding rule's text; for kWrongPort the rule that would match
  std::string detail;  // one human sentence

  bool allowed() const { return verdict == Verdict::kAllow; }
};

// The verdict part of a Decision, without the sentence: what hot paths (the DNS sinkhole) need.
struct NameCheck {
  Verdict verdict = Verdict::kDeny;
  Reason reason = Reason::kNoMatch;
  const Rule* rule = nullptr;  // the deciding rule (kWrongPort: the one that would match), or null

  bool allowed() const { return verdict == Verdict::kAllow; }
};

class Policy {
 public:
  // Parses and checks every rule. Errors: the first bad rule (quoted, with why), or
  // "disabled" combined with rules.
  static Result<Policy> compile(const NetworkSpec& spec);

  Mode mode() const { return mode_; }
  BlockedAnswer blocked_answer() const { return blocked_answer_; }
  bool disabled() const { return mode_ == Mode::kDisabled; }
  // Enabled with no allow_net: everything but deny_net and the always-deny set is allowed.
  bool full_access() const { return mode_ == Mode::kEnabled && allow_.empty(); }
  const RuleSet& allow() const { return allow_; }
  const RuleSet& deny() const { return deny_; }
  // Lint warnings found at compile time (SPEC 1.2); never errors.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The host's own addresses join the always-deny set (the gateway fills this at start).
  void set_host_addresses(std::vector<IpAddress> addresses) {
    host_addresses_ = std::move(addresses);
  }

  Decision judge_address(const IpAddress& address, uint16_t port) const;
  // `name` may be in any case, with a trailing dot, or Unicode; it is normalised here.
  Decision judge_name(std::string_view name, uint16_t port) const;
  // judge_name's verdict, reason and rule, without its detail sentence and, for ASCII names,
  // without allocating (the name is checked and lower-cased in a stack buffer). Always agrees
  // with judge_name; call that for the sentence when a decision is to be shown or logged.
  NameCheck check_name(std::string_view name, uint16_t port) const;
  Decision judge_resolved(const IpAddress& address, uint16_t port) const;

 private:
  // A deny Decision when `address` (or the IPv4 inside it) is in deny_net or the always-deny
  // set and no specific enough allow rule covers it; nullopt otherwise.
  std::optional<Decision> deny_side(const IpAddress& address, uint16_t port) const;

  Mode mode_ = Mode::kEnabled;
  BlockedAnswer blocked_answer_ = BlockedAnswer::kNull;
  RuleSet allow_;
  RuleSet deny_;
  std::vector<IpAddress> host_addresses_;
  std::vector<std::string> warnings_;
};

// Describes why `address` is in the always-deny set ("cloud metadata endpoint", ...), with the
// block's prefix length through `length`; nullopt when it is not.
std::optional<std::string_view> always_denied(const IpAddress& address, int* length = nullptr);
// True for RFC 1918, 100.64.0.0/10 (CGNAT) and fc00::/7 (unique local) addresses.
bool is_private(const IpAddress& address);

}  // namespace netfence::policy
