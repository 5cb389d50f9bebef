#include "policy/matcher.h"

#include <algorithm>
#include <cstring>

namespace netfence::policy {

namespace {

int family_index(Family f) {
  return f == Family::kV4 ? 0 : 1;
}

// The address with every bit past `length` cleared, as a hash key. On the lookup path: no loops
// over bits, no allocation.
std::array<uint64_t, 2> masked_key(const IpAddress& address, int length) {
  std::array<uint8_t, 16> bytes{};
  int full = length / 8;
  std::memcpy(bytes.data(), address.data(), full);
  if (length % 8 != 0) {
    bytes[full] = static_cast<uint8_t>(address.data()[full] & (0xff00 >> (length % 8)));
  }
  std::array<uint64_t, 2> key;
  std::memcpy(key.data(), bytes.data(), 16);
  return key;
}

}  // namespace

RuleSet::RuleSet(std::vector<Rule> rules) : rules_(std::move(rules)) {
  for (uint32_t i = 0; i < rules_.size(); ++i) {
    const Rule& rule = rules_[i];
    switch (rule.kind) {
      case RuleKind::kExactHost:
        exact_[rule.host].push_back(i);
        break;
      case RuleKind::kWildcardHost:
        wildcard_[rule.host].push_back(i);
        break;
      case RuleKind::kAddress:
      case RuleKind::kPrefix: {
        int f = family_index(rule.prefix.address().family());
        int length = rule.prefix.length();
        auto& table = prefixes_[f][length];
        table[masked_key(rule.prefix.address(), length)].push_back(i);
        if (std::find(lengths_[f].begin(), lengths_[f].end(), length) == lengths_[f].end()) {
          lengths_[f].push_back(length);
        }
        break;
      }
    }
  }
  for (auto& lengths : lengths_) std::sort(lengths.begin(), lengths.end(), std::greater<>());
}

bool RuleSet::pick(const std::vector<uint32_t>& candidates, uint16_t port, Match& match) const {
  for (uint32_t index : candidates) {
    const Rule& rule = rules_[index];
    if (rule.ports.contains(port)) {
      match.rule = &rule;
      return true;
    }
    if (match.other_port == nullptr) match.other_port = &rule;
  }
  return false;
}

Match RuleSet::match_name(std::string_view name, uint16_t port) const {
  Match match;
  if (name.empty()) return match;
  if (auto it = exact_.find(name); it != exact_.end() && pick(it->second, port, match)) {
    return match;
  }
  if (wildcard_.empty()) return match;
  // "*.example.com" is stored as "example.com" and matches names strictly below it.
  for (size_t dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.', dot + 1)) {
    auto it = wildcard_.find(name.substr(dot + 1));
    if (it != wildcard_.end() && pick(it->second, port, match)) return match;
  }
  return match;
}

const Rule* RuleSet::wildcard_over(std::string_view name) const {
  auto it = wildcard_.find(name);
  return it == wildcard_.end() ? nullptr : &rules_[it->second.front()];
}

Match RuleSet::match_address(const IpAddress& address, uint16_t port, int min_length) const {
  Match match;
  int f = family_index(address.family());
  for (int length : lengths_[f]) {
    if (length < min_length) break;
    const auto& table = prefixes_[f].at(length);
    auto it = table.find(masked_key(address, length));
    if (it != table.end() && pick(it->second, port, match)) return match;
  }
  return match;
}

}  // namespace netfence::policy
