#include "cli/options.h"

#include <fstream>
#include <sstream>

#include "fmt/format.h"

namespace netfence::cli {

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t comma = list.find(',', start);
    out.push_back(
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void PolicyFlags::add_to(CLI::App& app, bool with_network) {
  if (with_network) {
    app.add_option("--network", network, "enabled (default) or disabled");
  }
  app.add_option("--allow-net", allow_net,
                 "Allowed hosts, *.wildcards, IPs, CIDRs, each with an optional :port or "
                 ":first-last (comma-separated; repeatable)")
      ->type_name("RULES")
      ->allow_extra_args(false);
  app.add_option("--deny-net", deny_net, "Denied destinations, same grammar; checked first")
      ->type_name("RULES")
      ->allow_extra_args(false);
  app.add_option("--policy", policy_file,
                 "NetworkSpec JSON: {\"mode\":..,\"allow_net\":[..],\"deny_net\":[..]}")
      ->type_name("FILE");
  app.add_option("--dns-blocked-answer", dns_blocked_answer,
                 "Answer for names not allowed: null (0.0.0.0 / ::, default), nxdomain, refused");
}

Result<policy::NetworkSpec> PolicyFlags::spec() const {
  policy::NetworkSpec spec;
  if (!policy_file.empty()) {
    std::ifstream in(policy_file, std::ios::binary);
    if (!in) return fail(fmt::format("cannot read policy file '{}'", policy_file));
    std::ostringstream text;
    text << in.rdbuf();
    auto parsed = policy::parse_spec_json(text.str());
    if (!parsed) return fail(fmt::format("{}: {}", policy_file, parsed.error().message));
    spec = std::move(parsed.value());
  }
  for (const std::string& flag : allow_net) {
    for (std::string& item : split_list(flag)) spec.allow_net.push_back(std::move(item));
  }
  for (const std::string& flag : deny_net) {
    for (std::string& item : split_list(flag)) spec.deny_net.push_back(std::move(item));
  }
  if (!network.empty()) {
    auto mode = policy::parse_mode(network);
    if (!mode) return mode.error();
    spec.mode = *mode;
  }
  if (!dns_blocked_answer.empty()) {
    auto answer = policy::parse_blocked_answer(dns_blocked_answer);
    if (!answer) return answer.error();
    spec.blocked_answer = *answer;
  }
  return spec;
}

Result<policy::Policy> PolicyFlags::compile() const {
  auto s = spec();
  if (!s) return s.error();
  return policy::Policy::compile(*s);
}

}  // namespace netfence::cli
