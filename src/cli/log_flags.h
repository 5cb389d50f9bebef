// --log FILE, --log-format text|json and -v, shared by the commands that make decisions.
// Without --log, events go to stderr as text, denials only (-v: every event). With --log FILE,
// every event goes to the file, as JSON lines unless --log-format text. -q: no events on stderr.
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "common/event_log.h"
#include "common/result.h"

namespace netfence::cli {

struct LogFlags {
  std::string file;
  std::string format;
  bool verbose = false;
  bool quiet = false;

  void add_to(CLI::App& app);
  // Opens the log. Errors: an unknown format, or the file cannot be opened.
  Result<EventLog> open(const std::string& sandbox_id) const;
};

}  // namespace netfence::cli
