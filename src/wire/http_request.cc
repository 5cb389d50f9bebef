// HTTP/1 request-head reader; see http_request.h for the theory of operation.
#include "wire/http_request.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

namespace netfence::wire {
namespace {

// Character classes, one bit each, indexed by byte value.
constexpr uint8_t kTchar = 1;       // RFC 9110 token character
constexpr uint8_t kTargetChar = 2;  // allowed in a request-target: VCHAR except '#'
constexpr uint8_t kValueChar = 4;   // allowed in a field value: VCHAR, obs-text, SP, HTAB

constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> table{};
  for (int c = 0; c < 256; ++c) {
    uint8_t bits = 0;
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (alnum ||
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos) {
      bits |= kTchar;
    }
    if (c > 0x20 && c < 0x7f && c != '#') bits |= kTargetChar;
    if ((c > 0x20 && c != 0x7f) || c == ' ' || c == '\t') bits |= kValueChar;
    table[static_cast<size_t>(c)] = bits;
  }
  return table;
}
constexpr std::array<uint8_t, 256> kClasses = make_classes();

bool is(uint8_t c, uint8_t cls) {
  return (kClasses[c] & cls) != 0;
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Case-insensitive comparison against an already-lowercase string.
bool iequals(std::string_view text, std::string_view lowercase) {
  if (text.size() != lowercase.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (lower(text[i]) != lowercase[i]) return false;
  }
  return true;
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view slice(ByteSpan buffer, size_t begin, size_t end) {
  return as_chars(buffer.subspan(begin, end - begin));
}

// The rest of the HTTP/2 connection preface after "PRI * HTTP/2.0\r\n".
constexpr std::string_view kPrefaceTail = "\r\nSM\r\n\r\n";

std::optional<uint16_t> parse_port(std::string_view digits) {
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  uint32_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

// A DNS-style host name: 1..253 chars of letters, digits, '-', '_' in labels of 1..63 chars.
// Returns the lowercase form, or nullopt.
std::optional<std::string> normalise_reg_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(name.size());
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return std::nullopt;
      label = 0;
    } else {
      const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      c == '-' || c == '_';
      if (!ok || ++label > 63) return std::nullopt;
    }
    out.push_back(lower(c));
  }
  if (label == 0) return std::nullopt;
  return out;
}

std::optional<std::string> normalise_ipv6_literal(std::string_view inner) {
  if (inner.empty() || inner.size() > 45) return std::nullopt;
  std::array<char, 46> text{};
  for (size_t i = 0; i < inner.size(); ++i) {
    const char c = inner[i];
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                    c == ':' || c == '.';
    if (!ok) return std::nullopt;
    text[i] = lower(c);
  }
  in6_addr addr{};
  if (inet_pton(AF_INET6, text.data(), &addr) != 1) return std::nullopt;
  return std::string(text.data(), inner.size());
}

}  // namespace

std::optional<HttpAuthority> parse_http_authority(std::string_view text) {
  HttpAuthority out;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    auto host = normalise_ipv6_literal(text.substr(1, close - 1));
    if (!host) return std::nullopt;
    out.host = std::move(*host);
    rest = text.substr(close + 1);
  } else {
    const size_t colon = text.find(':');
    auto host = normalise_reg_name(text.substr(0, colon));
    if (!host) return std::nullopt;
    out.host = std::move(*host);
    if (colon != std::string_view::npos) rest = text.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.front() != ':') return std::nullopt;
    out.port = parse_port(rest.substr(1));
    if (!out.port) return std::nullopt;
  }
  return out;
}

ParseState check_http1_start(ByteSpan first_bytes) {
  const size_t n = first_bytes.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = u8_at(first_bytes, i);
    if (c == '\n') {
      ++i;
    } else if (c == '\r') {
      if (i + 1 >= n) return ParseState::kNeedMore;
      if (u8_at(first_bytes, i + 1) != '\n') return ParseState::kInvalid;
      i += 2;
    } else {
      break;
    }
  }
  const size_t start = i;
  while (i < n && i - start < kMaxHttpMethodLength && is(u8_at(first_bytes, i), kTchar)) ++i;
  if (i == n) return ParseState::kNeedMore;
  return (i > start && u8_at(first_bytes, i) == ' ') ? ParseState::kDone : ParseState::kInvalid;
}

void HttpRequestReader::reset() {
  *this = HttpRequestReader();
}

ParseState HttpRequestReader::fail(std::string_view reason) {
  reason_ = reason;
  state_ = ParseState::kInvalid;
  return state_;
}

ParseState HttpRequestReader::feed(ByteSpan buffer) {
  if (state_ != ParseState::kNeedMore) return state_;
  if (buffer.size() < pos_) return fail("buffer_shrank");
  const size_t limit = std::min(buffer.size(), kMaxHttpHeadBytes);
  while (pos_ < limit && state_ == ParseState::kNeedMore) {
    const uint8_t c = u8_at(buffer, pos_);
    switch (step_) {
      case Step::kLeading:
        line_start_ = pos_;
        line_kind_ = LineKind::kLeadingEmpty;
        if (c == '\r') {
          step_ = Step::kCr;
        } else if (c == '\n') {
          end_line(buffer, pos_, false);
          continue;
        } else if (is(c, kTchar)) {
          step_ = Step::kMethod;
        } else {
          return fail(c == 0 ? "nul_byte" : "not_http");
        }
        ++pos_;
        break;

      case Step::kMethod:
        while (pos_ < limit && is(u8_at(buffer, pos_), kTchar)) {
          if (pos_ - line_start_ >= kMaxHttpMethodLength) return fail("bad_method");
          ++pos_;
        }
        if (pos_ == limit) break;
        if (u8_at(buffer, pos_) != ' ')
          return fail(u8_at(buffer, pos_) == 0 ? "nul_byte" : "bad_method");
        target_start_ = ++pos_;
        step_ = Step::kTarget;
        break;

      case Step::kTarget:
        while (pos_ < limit && is(u8_at(buffer, pos_), kTargetChar)) ++pos_;
        if (pos_ == limit) break;
        switch (u8_at(buffer, pos_)) {
          case ' ':
            if (pos_ == target_start_) return fail("bad_request_line");
            mark_ = ++pos_;
            step_ = Step::kVersion;
            break;
          case '\r':
          case '\n':
            return fail("bad_request_line");
          case 0:
            return fail("nul_byte");
          default:
            return fail("bad_target");
        }
        break;

      case Step::kVersion:
        line_kind_ = LineKind::kRequest;
        if (c == '\r') {
          step_ = Step::kCr;
        } else if (c == '\n') {
          end_line(buffer, pos_, false);
          continue;
        } else if (c == 0) {
          return fail("nul_byte");
        } else if (c == ' ') {
          return fail("bad_request_line");
        } else if (pos_ - mark_ >= 8) {
          return fail("bad_version");
        }
        ++pos_;
        break;

      case Step::kCr:
        if (c != '\n') return fail("bare_cr");
        end_line(buffer, pos_ - 1, true);
        break;

      case Step::kFieldStart:
        line_start_ = pos_;
        if (c == '\r') {
          line_kind_ = LineKind::kBlank;
          step_ = Step::kCr;
        } else if (c == '\n') {
          line_kind_ = LineKind::kBlank;
          end_line(buffer, pos_, false);
          continue;
        } else if (c == ' ' || c == '\t') {
          return fail("obs_fold");
        } else if (is(c, kTchar)) {
          step_ = Step::kFieldName;
        } else {
          return fail(c == 0 ? "nul_byte" : "bad_header_name");
        }
        ++pos_;
        break;

      case Step::kFieldName:
        while (pos_ < limit && is(u8_at(buffer, pos_), kTchar)) ++pos_;
        if (pos_ == limit) break;
        switch (u8_at(buffer, pos_)) {
          case ':':
            mark_ = pos_++;
            step_ = Step::kFieldValue;
            break;
          case ' ':
          case '\t':
            return fail("space_before_colon");
          case 0:
            return fail("nul_byte");
          default:
            return fail("bad_header_name");
        }
        break;

      case Step::kFieldValue:
        while (pos_ < limit && is(u8_at(buffer, pos_), kValueChar)) ++pos_;
        if (pos_ == limit) break;
        line_kind_ = LineKind::kField;
        switch (u8_at(buffer, pos_)) {
          case '\r':
            step_ = Step::kCr;
            ++pos_;
            break;
          case '\n':
            end_line(buffer, pos_, false);
            break;
          case 0:
            return fail("nul_byte");
          default:
            return fail("bad_header_value");
        }
        break;

      case Step::kPreface:
        if (c != static_cast<uint8_t>(kPrefaceTail[preface_matched_])) {
          return fail("bad_http2_preface");
        }
        ++pos_;
        if (++preface_matched_ == kPrefaceTail.size()) {
          head_.head_length = pos_;
          state_ = ParseState::kDone;
        }
        break;
    }
  }
  if (state_ == ParseState::kNeedMore && buffer.size() > kMaxHttpHeadBytes) {
    return fail("head_too_large");
  }
  return state_;
}

// Called with pos_ at the LF that ends the current line; `content_end` is where the line's
// content ends (at the CR of a CRLF). Leaves pos_ after the LF.
ParseState HttpRequestReader::end_line(ByteSpan buffer, size_t content_end, bool crlf) {
  const LineEnding ending = crlf ? LineEnding::kCrlf : LineEnding::kLf;
  if (line_ending_ == LineEnding::kUnknown) {
    line_ending_ = ending;
    head_.bare_lf = !crlf;
  } else if (line_ending_ != ending) {
    return fail("mixed_line_endings");
  }
  ++pos_;
  switch (line_kind_) {
    case LineKind::kLeadingEmpty:
      step_ = Step::kLeading;
      return state_;
    case LineKind::kRequest:
      return end_request_line(buffer, content_end);
    case LineKind::kField:
      return end_field_line(buffer, content_end);
    case LineKind::kBlank:
      return end_head(pos_);
  }
  return state_;
}

ParseState HttpRequestReader::end_request_line(ByteSpan buffer, size_t content_end) {
  const std::string_view method = slice(buffer, line_start_, target_start_ - 1);
  const std::string_view target = slice(buffer, target_start_, mark_ - 1);
  const std::string_view version = slice(buffer, mark_, content_end);
  head_.method = method;
  head_.target = target;
  step_ = Step::kFieldStart;

  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return fail("bad_version");
  }
  head_.version_major = static_cast<uint8_t>(version[5] - '0');
  head_.version_minor = static_cast<uint8_t>(version[7] - '0');

  if (method == "PRI" && target == "*" && version == "HTTP/2.0") {
    // Only a preface at the very start of the stream, with CRLF, is one.
    if (line_start_ != 0 || line_ending_ != LineEnding::kCrlf) return fail("bad_http2_preface");
    head_.kind = HttpRequestKind::kHttp2Preface;
    step_ = Step::kPreface;
    return state_;
  }
  if (head_.version_major != 1) return fail("bad_version");

  if (method == "CONNECT") {
    head_.kind = HttpRequestKind::kConnect;
    target_authority_ = parse_http_authority(target);
    if (!target_authority_ || !target_authority_->port) return fail("bad_target");
    return state_;
  }
  if (target == "*") {
    return method == "OPTIONS" ? state_ : fail("bad_target");
  }
  if (target.front() == '/') return state_;  // origin-form

  // absolute-form: only http and https URIs, authority without userinfo.
  const size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return fail("bad_target");
  const std::string_view scheme = target.substr(0, scheme_end);
  if (iequals(scheme, "http")) {
    target_default_port_ = 80;
  } else if (iequals(scheme, "https")) {
    target_default_port_ = 443;
  } else {
    return fail("bad_target");
  }
  std::string_view authority = target.substr(scheme_end + 3);
  authority = authority.substr(0, authority.find_first_of("/?"));
  if (authority.find('@') != std::string_view::npos) return fail("bad_target");
  target_authority_ = parse_http_authority(authority);
  if (!target_authority_) return fail("bad_target");
  return state_;
}

ParseState HttpRequestReader::end_field_line(ByteSpan buffer, size_t content_end) {
  const std::string_view name = slice(buffer, line_start_, mark_);
  const std::string_view value = trim_ows(slice(buffer, mark_ + 1, content_end));
  step_ = Step::kFieldStart;

  if (iequals(name, "host")) {
    if (host_field_) return fail("duplicate_host");
    host_field_ = parse_http_authority(value);
    if (!host_field_) return fail("bad_host");
  } else if (iequals(name, "content-length")) {
    if (head_.content_length) return fail("duplicate_content_length");
    // At most 18 digits: always fits in uint64_t, and no real request body is larger.
    if (value.empty() || value.size() > 18) return fail("bad_content_length");
    uint64_t length = 0;
    for (char c : value) {
      if (c < '0' || c > '9') return fail("bad_content_length");
      length = length * 10 + static_cast<uint64_t>(c - '0');
    }
    head_.content_length = length;
  } else if (iequals(name, "transfer-encoding")) {
    // RFC 9112 6.1: HTTP/1.0 framing with Transfer-Encoding is faulty; chunked must be the final
    // coding, applied once. Codings are bare tokens (no parameters) separated by commas.
    if (head_.version_minor == 0) return fail("bad_transfer_encoding");
    transfer_encoding_seen_ = true;
    bool any = false;
    std::string_view rest = value;
    while (true) {
      const size_t comma = rest.find(',');
      const std::string_view coding = trim_ows(rest.substr(0, comma));
      if (!coding.empty()) {
        for (char c : coding) {
          if (!is(static_cast<uint8_t>(c), kTchar)) return fail("bad_transfer_encoding");
        }
        if (chunked_seen_) return fail("bad_transfer_encoding");
        chunked_seen_ = iequals(coding, "chunked");
        any = true;
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (!any) return fail("bad_transfer_encoding");
  } else if (iequals(name, "upgrade")) {
    head_.upgrade = true;
  }
  return state_;
}

ParseState HttpRequestReader::end_head(size_t head_end) {
  head_.head_length = head_end;
  if (transfer_encoding_seen_) {
    if (!chunked_seen_) return fail("bad_transfer_encoding");
    if (head_.content_length) return fail("content_length_and_transfer_encoding");
    head_.chunked = true;
  }
  if (target_authority_) {
    if (host_field_) {
      if (host_field_->host != target_authority_->host) return fail("host_conflict");
      // Ports must agree too; an omitted port means the scheme's default (no default for CONNECT,
      // where a Host without a port is accepted).
      const bool compare = host_field_->port || target_default_port_ != 0;
      if (compare && host_field_->port.value_or(target_default_port_) !=
                         target_authority_->port.value_or(target_default_port_)) {
        return fail("host_conflict");
      }
    }
    head_.host = target_authority_->host;
    head_.port = target_authority_->port;
    head_.host_source = HttpHostSource::kTarget;
  } else if (host_field_) {
    head_.host = host_field_->host;
    head_.port = host_field_->port;
    head_.host_source = HttpHostSource::kHostHeader;
  } else if (head_.version_minor >= 1) {
    return fail("no_host");
  }
  state_ = ParseState::kDone;
  return state_;
}

std::string_view to_string(HttpRequestKind kind) {
  switch (kind) {
    case HttpRequestKind::kHttp1:
      return "http1";
    case HttpRequestKind::kConnect:
      return "connect";
    case HttpRequestKind::kHttp2Preface:
      return "http2_preface";
  }
  return "unknown";
}

std::string_view to_string(HttpHostSource source) {
  switch (source) {
    case HttpHostSource::kNone:
      return "none";
    case HttpHostSource::kHostHeader:
      return "host";
    case HttpHostSource::kTarget:
      return "target";
  }
  return "unknown";
}

}  // namespace netfence::wire
