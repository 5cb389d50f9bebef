// `netfence selftest [run flags] [--allowed-host NAME] [--json]`: starts a sandbox under the given
// policy, exactly as `netfence run` does, and runs inside it the known escape attempts
// (cli/probes.h), each one a probe the policy must deny; prints a table of probe, target,
// expected, observed and result. Exit codes: 0 when every probe was denied or skipped, 1 when
// any got through (or reported nothing), 2 for bad usage or a bad policy, 125-127 when the
// sandbox could not be started (as `run`).
//
// The command inside the sandbox is netfence itself (/proc/self/exe, resolved in the forked child
// before exec, so a moved or replaced binary is still the one running) with the hidden
// subcommand `selftest-probe`, which writes one JSON line per probe to its stdout: a memfd the
// parent reads once the sandbox has exited (no pipe that could fill up, no reader thread).
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli/run_command.h"

namespace netfence::cli {

struct SelftestCommand {
  RunCommand run;  // policy, log, upstream and timeout flags: the same as `run`
  bool json = false;
  std::string allowed_host;
  unsigned probe_timeout_ms = 1500;

  void add_to(CLI::App& app);
  int execute() const;
};

// `netfence selftest-probe [--dns-answer null|nxdomain|refused] [--host-address IP]
// [--allowed-host NAME] [--timeout-ms N] PROBE...` (hidden): runs the named probes from where it
// stands and prints one JSON object per probe: {"probe","observed","status"}. Exit codes: 0 when
// none got through, 1 when any did, 2 for an unknown probe or bad flags. Meant to run inside the
// sandbox `selftest` starts; run outside one it really sends (tests use that to show that the
// probes detect an escape).
struct ProbeCommand {
  std::string dns_answer = "null";
  std::string host_address;
  std::string allowed_host;
  unsigned timeout_ms = 1500;
  std::vector<std::string> probes;

  void add_to(CLI::App& app);
  int execute() const;
};

}  // namespace netfence::cli
