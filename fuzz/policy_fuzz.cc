// Fuzz target for everything the policy layer takes from users: the rule grammar (a
// comma-separated list, as --allow-net takes it), the NetworkSpec JSON, compilation, and the
// decision functions on names and addresses derived from the input. The first byte selects
// what the rest is. Invariants checked (abort on violation): a parsed rule's canonical text
// parses again to the same rule; decisions never allow in disabled mode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/policy.h"

using namespace netfence::policy;

namespace {

void judge_some(const Policy& policy, std::string_view seed) {
  const uint16_t ports[] = {0, 22, 80, 443, 65535};
  for (uint16_t port : ports) {
    Decision d = policy.judge_name(seed, port);
    if (policy.disabled() && d.allowed()) std::abort();
    if (auto a = IpAddress::parse(seed)) {
      if (policy.judge_address(*a, port).allowed() && policy.disabled()) std::abort();
      (void)policy.judge_resolved(*a, port);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {  // a rule list, re-parsed from its canonical text
      auto rules = parse_rule_list(input);
      if (!rules) return 0;
      for (const Rule& rule : *rules) {
        auto again = parse_rule(rule.text);
        if (!again || !(*again == rule)) std::abort();
      }
      (void)lint_rules(*rules, *rules);
      NetworkSpec spec;
      for (const Rule& rule : *rules) spec.allow_net.push_back(rule.text);
      auto policy = Policy::compile(spec);
      if (!policy) std::abort();  // every rule already parsed
      for (const Rule& rule : *rules)
        judge_some(*policy, rule.is_host() ? rule.host : rule.prefix.address().to_string());
      return 0;
    }
    case 1: {  // a NetworkSpec JSON document
      auto spec = parse_spec_json(input);
      if (!spec) return 0;
      auto policy = Policy::compile(*spec);
      if (!policy) return 0;
      auto again = parse_spec_json(to_json(*spec));
      if (!again) std::abort();
      for (const std::string& entry : spec->allow_net) judge_some(*policy, entry);
      return 0;
    }
    default: {  // a name or address judged against a fixed policy
      static const Policy policy = [] {
        NetworkSpec spec;
        spec.allow_net = {"api.example.com", "*.example.org:443",  "10.0.0.0/8",
                          "2001:db8::/32",   "[2001:db8:1::1]:22", "bücher.example"};
        spec.deny_net = {"secret.example.org", "10.9.0.0/16"};
        return Policy::compile(spec).value();
      }();
      judge_some(policy, input);
      return 0;
    }
  }
}
