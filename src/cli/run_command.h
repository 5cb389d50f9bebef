// `netfence run [policy flags] [log flags] -- COMMAND [ARGS...]`: runs COMMAND in its own
// network namespace whose only way out is netfence's gateway and DNS server, and exits with
// COMMAND's exit code (125 when netfence's own set-up fails, 126/127 when COMMAND cannot be
// executed or found).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "cli/log_flags.h"
#include "cli/options.h"

namespace netfence::cli {

struct RunCommand {
  PolicyFlags policy;
  LogFlags log;
  std::string resolv_conf = "/etc/resolv.conf";
  std::vector<std::string> upstreams;
  unsigned first_bytes_timeout_ms = 5000;
  unsigned connect_timeout_ms = 10000;
  // Borrowed fds for the command's stdin/stdout/stderr (-1: netfence's own); not a flag, for
  // callers such as `selftest` that read what the command prints.
  std::array<int, 3> stdio = {-1, -1, -1};

  void add_to(CLI::App& app);
  int run(std::vector<std::string> argv) const;
};

// The host's own addresses (every interface's), which join the always-deny set (SPEC 1.4).
std::vector<policy::IpAddress> host_addresses();

}  // namespace netfence::cli
