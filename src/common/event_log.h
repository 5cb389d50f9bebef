// The decision log (SPEC 1.6): one event per decision (a DNS query, a connection, a datagram)
// and one when a connection closes. Events are written as JSON lines (the stable, documented
// schema of docs/log.md) or as one human-readable line each. Writing is buffered and flushed
// after each event's line so a crash loses nothing that was decided; the log never blocks
// decisions on anything slower than a write(2) to the chosen file.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace netfence {

struct Event {
  std::string event;                 // "dns", "connect", "close", "udp"
  std::string proto;                 // "udp", "tcp"
  std::string src;                   // "addr:port" of the sandboxed client ("[v6]:port")
  std::string dst;                   // the destination address the client chose (or the DNS server)
  uint16_t port = 0;                 // destination port
  std::string name;                  // the name judged, if any
  std::string name_source;           // "sni", "host", "dns", "learned", "none"
  std::string qtype;                 // DNS only: "A", "AAAA", "TXT", "TYPE65", ...
  std::string answer;                // DNS only: "forwarded", "sinkhole", "nodata", "nxdomain", ...
  std::string verdict;               // "allow" or "deny"
  std::string rule;                  // the deciding rule, "" for none
  std::string reason;                // a policy or gateway reason code (docs/log.md)
  std::string detail;                // one human sentence
  std::string dialed;                // the address netfence connected to, for allowed connections
  std::optional<uint64_t> bytes_up;  // close: bytes from the sandbox
  std::optional<uint64_t> bytes_down;  // close: bytes to the sandbox
  std::optional<double> duration_ms;   // close: connection lifetime; dns: time to answer
  uint64_t id = 0;                     // connection id, shared by its connect and close events
};

enum class LogFormat { kText, kJson };

// Which events reach the log: everything, or only denials (the default for an interactive
// stderr, so that a session shows what was blocked without drowning in allowed traffic).
enum class LogLevel { kDenials, kAll };

class EventLog {
 public:
  // A log that writes nothing.
  EventLog() = default;
  // Writes to `file` (not owned; e.g. stderr) or, with a path, to a file it opens for appending.
  EventLog(FILE* file, LogFormat format, LogLevel level, std::string sandbox_id);
  // Opens `path` for appending; on failure returns a log with error() set.
  static EventLog open(const std::string& path, LogFormat format, LogLevel level,
                       std::string sandbox_id);
  EventLog(EventLog&& other) noexcept;
  EventLog& operator=(EventLog&& other) noexcept;
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;
  ~EventLog();

  bool enabled() const { return file_ != nullptr; }
  const std::string& error() const { return error_; }
  // Cheap check before building an Event: would an event with this verdict be written?
  bool wants(bool allowed) const {
    return file_ != nullptr && (level_ == LogLevel::kAll || !allowed);
  }
  void write(const Event& event);
  // With flush_each_event(false), write() leaves lines in the stdio buffer and the owner calls
  // flush() before it acts on the decisions written (the DNS server: before sending a batch of
  // answers). The destructor flushes.
  void flush_each_event(bool on) { flush_each_ = on; }
  void flush();
  uint64_t written() const { return written_; }

  // Formats one event (exposed for tests and for docs/log.md examples).
  static std::string to_json(const Event& event, const std::string& sandbox_id,
                             std::chrono::system_clock::time_point time);
  static void append_json(std::string& out, const Event& event, const std::string& sandbox_id,
                          std::string_view time_text);
  static std::string to_text(const Event& event, std::chrono::system_clock::time_point time);

 private:
  FILE* file_ = nullptr;
  bool owned_ = false;
  LogFormat format_ = LogFormat::kText;
  LogLevel level_ = LogLevel::kDenials;
  std::string sandbox_id_;
  std::string error_;
  uint64_t written_ = 0;
  bool flush_each_ = true;
  std::string line_;      // reused for every event
  int64_t time_ms_ = -1;  // the millisecond time_text_ shows
  std::string time_text_;
};

}  // namespace netfence
