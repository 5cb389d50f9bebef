// RuleSet: a compiled list of rules answering "which rule matches this name (or address) on this
// port?" in time that depends on the query, not on the number of rules:
//  - exact names: one hash lookup of the whole name;
//  - wildcards: one hash lookup per proper suffix of the name at label boundaries, longest first
//    (cost grows with the name's label count);
//  - addresses and prefixes: one hash table per (family, prefix length) present in the rules,
//    probed longest prefix first with the masked address (at most 33 or 129 probes, in practice
//    the handful of distinct lengths a policy uses). A binary trie would do the same walk but
//    costs ~32 nodes per IPv4 rule; the per-length tables keep 100,000 rules in a few MB.
// The most specific match wins: exact name over wildcard, longer wildcard suffix over shorter,
// longer prefix over shorter; among rules on the same key, the first listed whose ports match.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/address.h"
#include "policy/rule.h"

namespace netfence::policy {

struct Match {
  const Rule* rule = nullptr;        // the matching rule, or nullptr
  const Rule* other_port = nullptr;  // when no rule matched: one that matched on another port
  explicit operator bool() const { return rule != nullptr; }
};

class RuleSet {
 public:
  RuleSet() = default;
  explicit RuleSet(std::vector<Rule> rules);
  RuleSet(RuleSet&&) noexcept = default;
  RuleSet& operator=(RuleSet&&) noexcept = default;
  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;

  const std::vector<Rule>& rules() const { return rules_; }
  bool empty() const { return rules_.empty(); }
  bool has_host_rules() const { return !exact_.empty() || !wildcard_.empty(); }
  bool has_address_rules() const { return !lengths_[0].empty() || !lengths_[1].empty(); }

  // `name` must already be normalised (normalize_hostname). Port 0 matches any rule's ports.
  Match match_name(std::string_view name, uint16_t port) const;
  // Only address/prefix rules whose prefix length is at least `min_length` take part (used so
  // that a broad 0.0.0.0/0 does not open the always-deny set).
  Match match_address(const IpAddress& address, uint16_t port, int min_length = 0) const;
  // The first wildcard rule "*.<name>", or nullptr: used to explain that a wildcard does not
  // match its apex.
  const Rule* wildcard_over(std::string_view name) const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using NameIndex = std::unordered_map<std::string, std::vector<uint32_t>, Hash, std::equal_to<>>;
  struct KeyHash {
    size_t operator()(const std::array<uint64_t, 2>& k) const {
      return std::hash<uint64_t>{}(k[0] * 0x9e3779b97f4a7c15ULL ^ k[1]);
    }
  };
  using PrefixIndex = std::unordered_map<std::array<uint64_t, 2>, std::vector<uint32_t>, KeyHash>;

  bool pick(const std::vector<uint32_t>& candidates, uint16_t port, Match& match) const;

  std::vector<Rule> rules_;
  NameIndex exact_;
  NameIndex wildcard_;
  // Per family (0 = IPv4, 1 = IPv6): prefix lengths present, longest first, and their tables.
  std::vector<int> lengths_[2];
  std::unordered_map<int, PrefixIndex> prefixes_[2];
};

}  // namespace netfence::policy
