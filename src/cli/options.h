// Policy flags shared by the subcommands that take a policy (check, and later run and dns):
// --network, --allow-net, --deny-net (comma-separated, repeatable), --policy FILE.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "common/result.h"
#include "policy/policy.h"

namespace netfence::cli {

struct PolicyFlags {
  std::string network;  // empty: from the policy file, else "enabled"
  std::vector<std::string> allow_net;
  std::vector<std::string> deny_net;
  std::string policy_file;
  std::string dns_blocked_answer;

  void add_to(CLI::App& app, bool with_network);
  // Builds the spec: the policy file first, then the flags' rules appended and the flags' mode
  // overriding. Errors quote the file or the entry.
  Result<policy::NetworkSpec> spec() const;
  Result<policy::Policy> compile() const;
};

// Splits "a,b,c" as the flags take it; keeps empty items so the rule parser can reject them.
std::vector<std::string> split_list(const std::string& list);

}  // namespace netfence::cli
