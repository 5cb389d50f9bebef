// `netfence run [policy flags] [log flags] -- COMMAND [ARGS...]`: runs COMMAND in its own
// network namespace whose only way out is netfence's gateway and DNS server, and exits with
// COMMAND's exit code (125 when netfence's own set-up fails, 126/127 when COMMAND cannot be
// executed or found).
#pragma once

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

  void add_to(CLI::App& app);
  int run(std::vector<std::string> argv) const;
};

}  // namespace netfence::cli
