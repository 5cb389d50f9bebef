#include "cli/log_flags.h"

#include "fmt/format.h"

namespace netfence::cli {

void LogFlags::add_to(CLI::App& app) {
  app.add_option("--log", file, "Append every decision to FILE (JSON lines by default)")
      ->type_name("FILE");
  app.add_option("--log-format", format, "text or json")->check(CLI::IsMember({"text", "json"}));
  auto* v = app.add_flag("-v,--verbose", verbose, "Log allowed decisions too, not only denials");
  app.add_flag("-q,--quiet", quiet, "No decision events on stderr (--log still writes its file)")
      ->excludes(v);
}

Result<EventLog> LogFlags::open(const std::string& sandbox_id) const {
  if (file.empty() && quiet) return EventLog();
  if (file.empty()) {
    LogFormat f = format == "json" ? LogFormat::kJson : LogFormat::kText;
    return EventLog(stderr, f, verbose ? LogLevel::kAll : LogLevel::kDenials, sandbox_id);
  }
  LogFormat f = format == "text" ? LogFormat::kText : LogFormat::kJson;
  EventLog log = EventLog::open(file, f, LogLevel::kAll, sandbox_id);
  if (!log.error().empty()) return fail(log.error());
  return log;
}

}  // namespace netfence::cli
