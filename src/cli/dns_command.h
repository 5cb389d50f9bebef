// `netfence dns --listen ADDR:PORT [--upstream ADDR]... [policy flags]`: the DNS sinkhole and
// forwarder on its own, on UDP and TCP, until SIGINT or SIGTERM. For testing with dig, for
// benchmarks, and as a standalone sinkhole resolver.
#pragma once

#include <string>
#include <vector>

#include "cli/log_flags.h"
#include "cli/options.h"

namespace netfence::cli {

struct DnsCommand {
  PolicyFlags policy;
  LogFlags log;
  std::string listen;
  std::vector<std::string> upstreams;
  std::string resolv_conf = "/etc/resolv.conf";
  unsigned timeout_ms = 2000;
  size_t cache_size = 4096;

  void add_to(CLI::App& app);
  int run() const;  // exit code: 0 after a clean stop, 2 for bad flags, 125 for setup failures
};

}  // namespace netfence::cli
