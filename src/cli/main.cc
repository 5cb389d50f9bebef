// netfence command line: subcommands and their output. Exit codes: 0 success (check: all
// targets allowed), 1 check found a denied target (selftest: a probe got through), 2 bad usage
// or a bad policy; `run` uses the command's code and 125/126/127 for its own failures (SPEC
// 1.7), as does selftest when its sandbox cannot start.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "CLI/CLI.hpp"
#include "cli/check.h"
#include "cli/dns_command.h"
#include "cli/options.h"
#include "cli/run_command.h"
#include "cli/selftest_command.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace netfence::cli {
namespace {

constexpr int kExitDenied = 1;
constexpr int kExitUsage = 2;

int run_check(const PolicyFlags& flags, const std::vector<std::string>& targets, bool json) {
  auto compiled = flags.compile();
  if (!compiled) {
    std::fprintf(stderr, "netfence: %s\n", compiled.error().message.c_str());
    return kExitUsage;
  }
  const policy::Policy& policy = *compiled;
  for (const std::string& warning : policy.warnings()) {
    std::fprintf(stderr, "netfence: warning: %s\n", warning.c_str());
  }
  int status = 0;
  for (const std::string& text : targets) {
    auto target = parse_target(text);
    if (!target) {
      std::fprintf(stderr, "netfence: %s\n", target.error().message.c_str());
      return kExitUsage;
    }
    policy::Decision d = judge_target(policy, *target);
    if (!d.allowed()) status = kExitDenied;
    if (json) {
      nlohmann::ordered_json line = {
          {"target", text},
          {"verdict", policy::to_string(d.verdict)},
          {"reason", policy::to_string(d.reason)},
          {"rule", d.rule.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(d.rule)},
          {"detail", d.detail}};
      std::cout << line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
                << '\n';
    } else {
      std::string why = d.allowed() && !d.rule.empty() ? fmt::format("rule {}", d.rule) : d.detail;
      std::cout << fmt::format("{:<5}  {:<28}  {}\n", policy::to_string(d.verdict), text, why);
    }
  }
  return status;
}

int main_impl(int argc, char** argv) {
  CLI::App app{"netfence: an egress allowlist network for sandboxed commands"};
  app.set_version_flag("--version", std::string("netfence ") + NETFENCE_VERSION);
  app.require_subcommand(1);

  PolicyFlags check_flags;
  std::vector<std::string> targets;
  bool json = false;
  CLI::App* check = app.add_subcommand(
      "check", "Judge host[:port] and ip[:port] targets against a policy, without networking");
  check_flags.add_to(*check, /*with_network=*/true);
  check->add_flag("--json", json, "One JSON object per target");
  check->add_option("targets", targets, "host[:port], ip[:port] or [v6]:port")->required();

  RunCommand run_command;
  CLI::App* run = app.add_subcommand(
      "run", "Run COMMAND with a network that reaches only what the policy allows");
  run_command.add_to(*run);
  std::vector<std::string> command;
  run->add_option("command", command, "COMMAND [ARGS...] (after --)");

  DnsCommand dns_command;
  CLI::App* dns = app.add_subcommand(
      "dns", "Serve the DNS sinkhole/forwarder on its own (UDP and TCP) until SIGINT/SIGTERM");
  dns_command.add_to(*dns);

  SelftestCommand selftest_command;
  CLI::App* selftest = app.add_subcommand(
      "selftest", "Start a sandbox under the policy and try, from inside, the known escapes");
  selftest_command.add_to(*selftest);
  ProbeCommand probe_command;
  // Hidden (empty group): what `selftest` runs inside its sandbox.
  CLI::App* probe =
      app.add_subcommand("selftest-probe", "Run selftest probes from here (internal)")->group("");
  probe_command.add_to(*probe);

  // Everything after the first "--" is the command, verbatim: CLI11 must not read its flags.
  int split = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      split = i;
      break;
    }
  }
  try {
    app.parse(split, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  if (check->parsed()) return run_check(check_flags, targets, json);
  if (dns->parsed()) return dns_command.run();
  if (selftest->parsed() || probe->parsed()) {
    if (split < argc) {
      std::fprintf(stderr, "netfence: %s takes no command (nothing after --)\n",
                   selftest->parsed() ? "selftest" : "selftest-probe");
      return kExitUsage;
    }
  }
  if (selftest->parsed()) return selftest_command.execute();
  if (probe->parsed()) return probe_command.execute();
  if (run->parsed()) {
    for (int i = split + 1; i < argc; ++i) command.emplace_back(argv[i]);
    return run_command.run(std::move(command));
  }
  return kExitUsage;
}

}  // namespace
}  // namespace netfence::cli

int main(int argc, char** argv) {
  return netfence::cli::main_impl(argc, argv);
}
