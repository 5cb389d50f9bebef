#include "common/event_log.h"

#include <cerrno>
#include <cstring>
#include <utility>

#include "fmt/chrono.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace netfence {

namespace {

// "2026-11-29T23:46:21.102Z"
std::string utc_timestamp(std::chrono::system_clock::time_point time) {
  auto since_epoch = time.time_since_epoch();
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds);
  std::time_t t = static_cast<std::time_t>(seconds.count());
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(t), millis.count());
}

}  // namespace

EventLog::EventLog(FILE* file, LogFormat format, LogLevel level, std::string sandbox_id)
    : file_(file), format_(format), level_(level), sandbox_id_(std::move(sandbox_id)) {}

EventLog EventLog::open(const std::string& path, LogFormat format, LogLevel level,
                        std::string sandbox_id) {
  EventLog log;
  FILE* f = std::fopen(path.c_str(), "ae");
  if (f == nullptr) {
    log.error_ = fmt::format("cannot open log file '{}': {}", path, std::strerror(errno));
    return log;
  }
  log = EventLog(f, format, level, std::move(sandbox_id));
  log.owned_ = true;
  return log;
}

EventLog::EventLog(EventLog&& other) noexcept {
  *this = std::move(other);
}

EventLog& EventLog::operator=(EventLog&& other) noexcept {
  if (this != &other) {
    if (owned_ && file_ != nullptr) std::fclose(file_);
    file_ = std::exchange(other.file_, nullptr);
    owned_ = std::exchange(other.owned_, false);
    format_ = other.format_;
    level_ = other.level_;
    sandbox_id_ = std::move(other.sandbox_id_);
    error_ = std::move(other.error_);
    written_ = other.written_;
  }
  return *this;
}

EventLog::~EventLog() {
  if (owned_ && file_ != nullptr) std::fclose(file_);
}

void EventLog::write(const Event& event) {
  if (file_ == nullptr) return;
  auto now = std::chrono::system_clock::now();
  std::string line =
      format_ == LogFormat::kJson ? to_json(event, sandbox_id_, now) : to_text(event, now);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
  ++written_;
}

std::string EventLog::to_json(const Event& e, const std::string& sandbox_id,
                              std::chrono::system_clock::time_point time) {
  nlohmann::ordered_json j;
  j["time"] = utc_timestamp(time);
  j["sandbox"] = sandbox_id;
  j["event"] = e.event;
  if (e.id != 0) j["id"] = e.id;
  j["proto"] = e.proto;
  j["src"] = e.src;
  j["dst"] = e.dst;
  j["port"] = e.port;
  j["name"] = e.name.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.name);
  j["name_source"] = e.name_source.empty() ? "none" : e.name_source;
  if (!e.qtype.empty()) j["qtype"] = e.qtype;
  if (!e.answer.empty()) j["answer"] = e.answer;
  j["verdict"] = e.verdict;
  j["rule"] = e.rule.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.rule);
  j["reason"] = e.reason;
  if (!e.detail.empty()) j["detail"] = e.detail;
  if (!e.dialed.empty()) j["dialed"] = e.dialed;
  if (e.bytes_up) j["bytes_up"] = *e.bytes_up;
  if (e.bytes_down) j["bytes_down"] = *e.bytes_down;
  if (e.duration_ms) j["duration_ms"] = *e.duration_ms;
  // Names and details can carry bytes from the sandbox: never let invalid UTF-8 throw.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string EventLog::to_text(const Event& e, std::chrono::system_clock::time_point time) {
  std::string what = e.name.empty() ? e.dst : fmt::format("{} ({})", e.name, e.dst);
  if (e.event == "dns") what = fmt::format("{} {}", e.qtype, e.name);
  std::string line = fmt::format("{} netfence: {} {} {}", utc_timestamp(time).substr(11, 8),
                                 e.verdict, e.event, what);
  if (e.event != "dns" && e.port != 0) line += fmt::format(" port {}", e.port);
  if (e.event == "close") {
    line += fmt::format(": {} bytes up, {} bytes down, {:.0f} ms", e.bytes_up.value_or(0),
                        e.bytes_down.value_or(0), e.duration_ms.value_or(0));
    return line;
  }
  if (!e.answer.empty()) line += fmt::format(" -> {}", e.answer);
  line += fmt::format(": {}", e.detail.empty() ? e.reason : e.detail);
  return line;
}

}  // namespace netfence
