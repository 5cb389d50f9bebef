// HTTP/1 request-head reader: the gateway's view of a plaintext HTTP request.
//
// Theory of operation
// -------------------
// The gateway must learn which host a plaintext connection wants (SPEC 1.3 step 5) from the
// request head, and it must do so for *every* request of a keep-alive connection (peers.md 5 #22).
// HttpRequestReader is a byte-level state machine over the request head (request line, header
// fields, blank line). The caller keeps every byte received since reset() in one buffer and calls
// feed() with the whole buffer each time more arrives; the reader resumes at the byte where it
// stopped, so the total work is linear in the head size no matter how the bytes were segmented.
// Because every check runs in byte order, the outcome (state, fields, reason) is the same whether
// the head arrives whole or one byte at a time; the fuzz target asserts exactly that.
//
// What is accepted is deliberately narrower than what RFC 9112 allows a lenient recipient to
// accept, because the gateway forwards the client's bytes verbatim to a server that may parse them
// differently (request smuggling, vhost confusion):
//  - request line: `method SP request-target SP HTTP-version`, exactly one SP each; method is a
//    token of at most kMaxHttpMethodLength chars; the target is visible ASCII (no obs-text, no
//    `#`); versions HTTP/1.0 ... HTTP/1.9 (and HTTP/2.0 only in the h2 prior-knowledge preface).
//  - header fields: `token ":" OWS value OWS`; whitespace before the colon, obs-fold (a line that
//    starts with SP/HTAB), NUL, a CR not followed by LF, and control characters in values are
//    rejected.
//  - line endings: CRLF, or bare LF, but one style per head: the first line terminator fixes it and
//    a head that mixes them is rejected ("mixed_line_endings"). RFC 9112 2.2 lets a recipient
//    accept bare LF; BoxLite accepted "\n\n" heads (hand-written requests); mixing is where two
//    parsers disagree about where a header line ends, so it is refused.
//  - empty lines before the request line are skipped (RFC 9112 2.2: clients may send an extra CRLF
//    after a body), and count towards the head.
//  - the whole head, including the blank line, is capped at kMaxHttpHeadBytes.
//  - Host: exactly one Host field; an absolute-form (`http://host:port/path`) or authority-form
//    (CONNECT) target's authority wins over Host but must agree with it when both are present.
//    HTTP/1.1 needs a host (from Host or the target); HTTP/1.0 without one is kDone with an empty
//    host and HttpHostSource::kNone (the caller denies).
//  - body framing: Content-Length (one field, digits only) or Transfer-Encoding whose final coding
//    is chunked (HTTP/1.1 only), never both. The reader stops at the end of the head; the caller
//    skips the body and calls reset() before the next head.
//
// No exceptions, no I/O, no allocation beyond the strings in HttpRequestHead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "wire/parse_state.h"

namespace netfence::wire {

// Longest request head (request line + fields + blank line) the reader accepts.
inline constexpr size_t kMaxHttpHeadBytes = 16 * 1024;
// Longest method token; the longest registered method (UPDATEREDIRECTREF) has 17 chars.
inline constexpr size_t kMaxHttpMethodLength = 32;

enum class HttpRequestKind : uint8_t {
  kHttp1,         // an ordinary HTTP/1.x request (origin-, absolute- or asterisk-form target)
  kConnect,       // CONNECT host:port (authority-form): a tunnel request, not a plain request
  kHttp2Preface,  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": HTTP/2 with prior knowledge (h2c)
};

// Where HttpRequestHead::host came from.
enum class HttpHostSource : uint8_t {
  kNone,        // no host at all (HTTP/1.0 without Host, or the HTTP/2 preface)
  kHostHeader,  // the Host header field (origin-form or asterisk-form target)
  kTarget,      // the authority of an absolute-form or authority-form (CONNECT) target
};

// A host and optional port as they appear in a Host field or a target's authority.
struct HttpAuthority {
  std::string host;  // lowercase; IPv6 literals without brackets; one trailing dot removed
  std::optional<uint16_t> port;
  bool operator==(const HttpAuthority&) const = default;
};

struct HttpRequestHead {
  HttpRequestKind kind = HttpRequestKind::kHttp1;
  std::string method;  // as sent (methods are case-sensitive)
  std::string target;  // the request-target as sent
  uint8_t version_major = 1;
  uint8_t version_minor = 1;
  std::string host;              // normalised (see HttpAuthority); empty when source is kNone
  std::optional<uint16_t> port;  // the explicit port next to that host, if any
  HttpHostSource host_source = HttpHostSource::kNone;
  // Bytes from the start of the buffer to the first byte after the blank line (the body, or the
  // next request, starts here). For kHttp2Preface: the 24 preface bytes.
  size_t head_length = 0;
  std::optional<uint64_t> content_length;  // Content-Length, if present
  bool chunked = false;                    // Transfer-Encoding present with chunked as final coding
  bool upgrade = false;                    // an Upgrade field is present (websocket, h2c, ...)
  bool bare_lf = false;                    // lines ended in LF rather than CRLF
  bool operator==(const HttpRequestHead&) const = default;
};

// Incremental reader for one request head. Usage:
//   HttpRequestReader reader;
//   buffer += received bytes; switch (reader.feed(buffer)) ...
//   after kDone: skip head().head_length bytes, then the body (content_length, or chunked), then
//   reader.reset() and feed the bytes that follow.
class HttpRequestReader {
 public:
  // `buffer` holds every byte received since construction or reset(); each call passes the bytes of
  // the previous call unchanged, possibly followed by more (it may live at a different address).
  // Returns kNeedMore while the head is an incomplete prefix of an acceptable head (at most
  // kMaxHttpHeadBytes long), kDone once the blank line ending the head has been read (bytes after
  // it are not examined), kInvalid when the bytes cannot be, or cannot become, an acceptable head
  // (reason() says why). kDone and kInvalid are final until reset(); further calls return them.
  ParseState feed(ByteSpan buffer);

  // Forgets everything; the next feed() starts a new head at offset 0 of its buffer.
  void reset();

  ParseState state() const { return state_; }
  // The parsed head; complete only in state kDone (partially filled otherwise).
  const HttpRequestHead& head() const { return head_; }
  // A stable snake_case reason after kInvalid (see docs/wire-http-dns.md); empty otherwise.
  std::string_view reason() const { return reason_; }

 private:
  enum class Step : uint8_t {
    kLeading,     // before the request line: skipping empty lines
    kMethod,      // inside the method token
    kTarget,      // inside the request-target
    kVersion,     // inside the HTTP-version
    kCr,          // after a CR that must be followed by LF
    kFieldStart,  // at the first byte of a field line (or of the blank line)
    kFieldName,   // inside a field name
    kFieldValue,  // after the colon of a field line
    kPreface,     // matching the rest of the HTTP/2 connection preface
  };
  enum class LineKind : uint8_t { kLeadingEmpty, kRequest, kField, kBlank };
  enum class LineEnding : uint8_t { kUnknown, kCrlf, kLf };

  ParseState fail(std::string_view reason);
  ParseState end_line(ByteSpan buffer, size_t content_end, bool crlf);
  ParseState end_request_line(ByteSpan buffer, size_t content_end);
  ParseState end_field_line(ByteSpan buffer, size_t content_end);
  ParseState end_head(size_t head_end);

  HttpRequestHead head_;
  ParseState state_ = ParseState::kNeedMore;
  std::string_view reason_;
  Step step_ = Step::kLeading;
  LineKind line_kind_ = LineKind::kLeadingEmpty;
  LineEnding line_ending_ = LineEnding::kUnknown;
  size_t pos_ = 0;         // next byte to examine
  size_t line_start_ = 0;  // first byte of the current line
  size_t mark_ = 0;        // end of method / start of version / end of field name, per step
  size_t target_start_ = 0;
  size_t preface_matched_ = 0;
  std::optional<HttpAuthority> host_field_;        // the Host field's value, once seen
  std::optional<HttpAuthority> target_authority_;  // absolute-form or authority-form authority
  uint16_t target_default_port_ = 0;               // 80/443 for http/https targets, 0 otherwise
  bool transfer_encoding_seen_ = false;
  bool chunked_seen_ = false;  // chunked was the last coding of the Transfer-Encoding fields so far
};

// Quick classification of the first bytes of a connection: could they start an HTTP/1 request?
// Skips empty lines, then looks for a method token (at most kMaxHttpMethodLength token chars)
// followed by SP. Returns kDone when that is present (worth running HttpRequestReader; the full
// parse may still fail), kNeedMore when every byte so far is consistent with it, kInvalid when the
// bytes cannot start a request (e.g. a TLS record). Whenever this returns kInvalid for a buffer,
// HttpRequestReader::feed() returns kInvalid for it too.
ParseState check_http1_start(ByteSpan first_bytes);

// Parses `host[:port]` (a Host field value or a target's authority; no userinfo). The host is a
// DNS-style name (letters, digits, '-', '_', labels of 1..63 chars, at most 253 chars after one
// trailing dot is removed), or a bracketed IPv6 literal without zone id; the port, if present, is
// 1..65535. Returns nullopt for anything else.
std::optional<HttpAuthority> parse_http_authority(std::string_view text);

std::string_view to_string(HttpRequestKind kind);
std::string_view to_string(HttpHostSource source);

}  // namespace netfence::wire
