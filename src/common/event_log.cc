#include "common/event_log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
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
  line_.clear();
  if (format_ == LogFormat::kJson) {
    int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    if (ms != time_ms_) {
      time_ms_ = ms;
      time_text_ = utc_timestamp(now);
    }
    append_json(line_, event, sandbox_id_, time_text_);
  } else {
    line_ = to_text(event, now);
  }
  line_ += '\n';
  std::fwrite(line_.data(), 1, line_.size(), file_);
  if (flush_each_) std::fflush(file_);
  ++written_;
}

void EventLog::flush() {
  if (file_ != nullptr) std::fflush(file_);
}

namespace {

// Printable ASCII other than '"' and '\\' is written as it is; anything else goes through
// nlohmann, so escaping and the replacement of invalid UTF-8 stay exactly as they were.
void put_string(std::string& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
  });
  if (plain) {
    out += '"';
    out += s;
    out += '"';
    return;
  }
  out += nlohmann::ordered_json(std::string(s))
             .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void put_key(std::string& out, std::string_view key) {
  out += out.back() == '{' ? "\"" : ",\"";
  out += key;
  out += "\":";
}

void put_optional(std::string& out, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  put_key(out, key);
  put_string(out, value);
}

}  // namespace

void EventLog::append_json(std::string& out, const Event& e, const std::string& sandbox_id,
                           std::string_view time_text) {
  auto number = [&out](std::string_view key, auto value) {
    put_key(out, key);
    fmt::format_to(std::back_inserter(out), "{}", value);
  };
  out += '{';
  put_key(out, "time");
  put_string(out, time_text);
  put_key(out, "sandbox");
  put_string(out, sandbox_id);
  put_key(out, "event");
  put_string(out, e.event);
  if (e.id != 0) number("id", e.id);
  put_key(out, "proto");
  put_string(out, e.proto);
  put_key(out, "src");
  put_string(out, e.src);
  put_key(out, "dst");
  put_string(out, e.dst);
  number("port", e.port);
  put_key(out, "name");
  if (e.name.empty()) {
    out += "null";
  } else {
    put_string(out, e.name);
  }
  put_key(out, "name_source");
  put_string(out, e.name_source.empty() ? std::string_view("none") : e.name_source);
  put_optional(out, "qtype", e.qtype);
  put_optional(out, "answer", e.answer);
  put_key(out, "verdict");
  put_string(out, e.verdict);
  put_key(out, "rule");
  if (e.rule.empty()) {
    out += "null";
  } else {
    put_string(out, e.rule);
  }
  put_key(out, "reason");
  put_string(out, e.reason);
  put_optional(out, "detail", e.detail);
  put_optional(out, "dialed", e.dialed);
  if (e.bytes_up) number("bytes_up", *e.bytes_up);
  if (e.bytes_down) number("bytes_down", *e.bytes_down);
  if (e.duration_ms) {
    put_key(out, "duration_ms");
    out += nlohmann::ordered_json(*e.duration_ms).dump();  // nlohmann's number format, as before
  }
  out += '}';
}

std::string EventLog::to_json(const Event& e, const std::string& sandbox_id,
                              std::chrono::system_clock::time_point time) {
  std::string out;
  append_json(out, e, sandbox_id, utc_timestamp(time));
  return out;
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
