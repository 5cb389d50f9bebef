#include "wire/http_request.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace netfence::wire {
namespace {

struct Parsed {
  ParseState state;
  HttpRequestHead head;
  std::string reason;
};

Parsed parse(std::string_view text) {
  HttpRequestReader reader;
  const ParseState state = reader.feed(as_bytes(text));
  return {state, reader.head(), std::string(reader.reason())};
}

// Feeds growing prefixes, one byte more each time, through a buffer that is re-created (so it
// moves) on every call, as a gateway appending to a vector would.
Parsed parse_bytewise(std::string_view text) {
  HttpRequestReader reader;
  ParseState state = reader.feed(ByteSpan());
  for (size_t n = 1; n <= text.size() && state == ParseState::kNeedMore; ++n) {
    const std::string copy(text.substr(0, n));
    state = reader.feed(as_bytes(copy));
  }
  return {state, reader.head(), std::string(reader.reason())};
}

std::string invalid_reason(std::string_view text) {
  const Parsed p = parse(text);
  EXPECT_EQ(p.state, ParseState::kInvalid) << text;
  return p.reason;
}

// ---- BoxLite's peekHTTPHost tests (reference/boxlite-allow-net.md 5a #16-21), adapted ----

TEST(HttpRequestBoxLite, ExtractsHost) {  // #16
  const std::string text = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
  const Parsed p = parse(text);
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.kind, HttpRequestKind::kHttp1);
  EXPECT_EQ(p.head.method, "GET");
  EXPECT_EQ(p.head.target, "/");
  EXPECT_EQ(p.head.host, "example.com");
  EXPECT_EQ(p.head.port, std::nullopt);
  EXPECT_EQ(p.head.host_source, HttpHostSource::kHostHeader);
  EXPECT_EQ(p.head.head_length, text.size());
  EXPECT_EQ(p.head.version_minor, 1);
}

TEST(HttpRequestBoxLite, PortStripped) {  // #17
  const Parsed p = parse("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "example.com");
  EXPECT_EQ(p.head.port, 8080);
}

TEST(HttpRequestBoxLite, CaseInsensitive) {  // #18, plus the field name's case
  const Parsed p = parse("GET / HTTP/1.1\r\nHOST: API.OpenAI.COM\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "api.openai.com");
}

TEST(HttpRequestBoxLite, TlsBytesAreNotHttp) {  // #19
  const std::string tls("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03", 10);
  EXPECT_EQ(invalid_reason(tls), "not_http");
  EXPECT_EQ(check_http1_start(as_bytes(tls)), ParseState::kInvalid);
  // The very first byte is enough to decide.
  EXPECT_EQ(parse(tls.substr(0, 1)).state, ParseState::kInvalid);
}

TEST(HttpRequestBoxLite, EmptyInputNeedsMore) {  // #20
  // Difference: BoxLite returned "" (blocked) for no input; here nothing is decided yet and the
  // gateway's peek timeout turns a silent client into a deny.
  HttpRequestReader reader;
  EXPECT_EQ(reader.feed(ByteSpan()), ParseState::kNeedMore);
  EXPECT_TRUE(reader.reason().empty());
  EXPECT_EQ(check_http1_start(ByteSpan()), ParseState::kNeedMore);
}

TEST(HttpRequestBoxLite, PostWithBody) {  // #21
  const std::string head =
      "POST /api/v1/chat HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\n\r\n";
  const Parsed p = parse(head + "{}");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.method, "POST");
  EXPECT_EQ(p.head.host, "api.openai.com");
  EXPECT_EQ(p.head.head_length, head.size());
  EXPECT_EQ(p.head.content_length, 2u);
  EXPECT_FALSE(p.head.chunked);
}

TEST(HttpRequestBoxLite, PostWithoutContentLengthEndsAtBlankLine) {
  // BoxLite's #21 sends "{}" without Content-Length. A request without Content-Length or
  // Transfer-Encoding has no body (RFC 9112 6.3), so "{}" is where the next request would start.
  const std::string head =
      "POST /api/v1/chat HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
      "\r\n";
  const Parsed p = parse(head + "{}");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.head_length, head.size());
  EXPECT_EQ(p.head.content_length, std::nullopt);
}

// ---- host ----

TEST(HttpRequestHost, AbsoluteFormAuthorityIsUsed) {
  const Parsed p =
      parse("GET http://Example.com:8080/x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "example.com");
  EXPECT_EQ(p.head.port, 8080);
  EXPECT_EQ(p.head.host_source, HttpHostSource::kTarget);
  EXPECT_EQ(p.head.target, "http://Example.com:8080/x?y=1");
}

TEST(HttpRequestHost, AbsoluteFormWithoutHostField) {
  const Parsed p = parse("GET HTTPS://example.com HTTP/1.1\r\nAccept: */*\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "example.com");
  EXPECT_EQ(p.head.port, std::nullopt);
  EXPECT_EQ(p.head.host_source, HttpHostSource::kTarget);
}

TEST(HttpRequestHost, AbsoluteFormDefaultPortAgreesWithExplicitPort) {
  EXPECT_EQ(parse("GET http://example.com/ HTTP/1.1\r\nHost: example.com:80\r\n\r\n").state,
            ParseState::kDone);
  EXPECT_EQ(parse("GET https://example.com:443/ HTTP/1.1\r\nHost: example.com\r\n\r\n").state,
            ParseState::kDone);
}

TEST(HttpRequestHost, ConflictWithAbsoluteForm) {
  EXPECT_EQ(invalid_reason("GET http://allowed.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
            "host_conflict");
  EXPECT_EQ(invalid_reason("GET http://example.com:8080/ HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            "host_conflict");
  EXPECT_EQ(invalid_reason("GET http://example.com/ HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"),
            "host_conflict");
}

TEST(HttpRequestHost, AbsoluteFormRejects) {
  EXPECT_EQ(invalid_reason("GET http://allowed.example@evil.example/ HTTP/1.1\r\n\r\n"),
            "bad_target");
  EXPECT_EQ(invalid_reason("GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            "bad_target");
  EXPECT_EQ(invalid_reason("GET http:///x HTTP/1.1\r\nHost: example.com\r\n\r\n"), "bad_target");
  EXPECT_EQ(invalid_reason("GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            "bad_target");
  EXPECT_EQ(invalid_reason("GET /a#frag HTTP/1.1\r\nHost: example.com\r\n\r\n"), "bad_target");
}

TEST(HttpRequestHost, DuplicateHostRejectedEvenIfEqual) {
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
            "duplicate_host");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n"),
            "duplicate_host");
}

TEST(HttpRequestHost, MissingHost) {
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), "no_host");
  const Parsed old = parse("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n");
  ASSERT_EQ(old.state, ParseState::kDone);  // the caller denies: nothing to judge
  EXPECT_EQ(old.head.host, "");
  EXPECT_EQ(old.head.host_source, HttpHostSource::kNone);
  EXPECT_EQ(old.head.version_minor, 0);
}

TEST(HttpRequestHost, Ipv6Literal) {
  const Parsed p = parse("GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8443\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "2001:db8::1");
  EXPECT_EQ(p.head.port, 8443);
  const Parsed bare = parse("GET / HTTP/1.1\r\nHost: [::ffff:127.0.0.1]\r\n\r\n");
  ASSERT_EQ(bare.state, ParseState::kDone);
  EXPECT_EQ(bare.head.host, "::ffff:127.0.0.1");
  EXPECT_EQ(bare.head.port, std::nullopt);
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: [2001:db8::g]\r\n\r\n"), "bad_host");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n"), "bad_host");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: 2001:db8::1\r\n\r\n"), "bad_host");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), "bad_host");
}

TEST(HttpRequestHost, TrailingDotStrippedOnce) {
  const Parsed p = parse("GET / HTTP/1.1\r\nHost: Example.COM.:80\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "example.com");
  EXPECT_EQ(p.head.port, 80);
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: example.com..\r\n\r\n"), "bad_host");
}

TEST(HttpRequestHost, BadHostValues) {
  for (const char* host :
       {"", ".", "a..b", "exa mple.com", "exa%2emple.com", "a.example:", "a.example:0",
        "a.example:65536", "a.example:80:80", "user@a.example", "a.example/x"}) {
    EXPECT_EQ(invalid_reason(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n"),
              "bad_host")
        << host;
  }
}

TEST(HttpRequestHost, OptionalWhitespaceAroundValueIsTrimmed) {
  const Parsed p = parse("GET / HTTP/1.1\r\nHost:\t example.com \t\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "example.com");
}

TEST(HttpRequestAuthority, Parse) {
  EXPECT_EQ(parse_http_authority("A_b.Example:1"), (HttpAuthority{"a_b.example", 1}));
  EXPECT_EQ(parse_http_authority("[::1]:65535"), (HttpAuthority{"::1", 65535}));
  EXPECT_EQ(parse_http_authority("1.2.3.4"), (HttpAuthority{"1.2.3.4", std::nullopt}));
  EXPECT_EQ(parse_http_authority(std::string(63, 'a') + ".example"),
            (HttpAuthority{std::string(63, 'a') + ".example", std::nullopt}));
  EXPECT_EQ(parse_http_authority(std::string(64, 'a') + ".example"), std::nullopt);
  std::string long_name;
  while (long_name.size() < 254) long_name += "a.";
  long_name.pop_back();  // 253 or 254 chars of "a.a.a..."
  EXPECT_EQ(parse_http_authority(long_name).has_value(), long_name.size() <= 253);
  EXPECT_EQ(parse_http_authority("[::1"), std::nullopt);
  EXPECT_EQ(parse_http_authority("a.example:+80"), std::nullopt);
  EXPECT_EQ(parse_http_authority("a.example:123456"), std::nullopt);
}

// ---- request line ----

TEST(HttpRequestLine, Rejects) {
  EXPECT_EQ(invalid_reason("GET  / HTTP/1.1\r\n"), "bad_request_line");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1 \r\n"), "bad_request_line");
  EXPECT_EQ(invalid_reason("GET /\r\n\r\n"), "bad_request_line");  // HTTP/0.9
  EXPECT_EQ(invalid_reason("GET\r\n"), "bad_method");
  EXPECT_EQ(invalid_reason("G(T / HTTP/1.1\r\n"), "bad_method");
  EXPECT_EQ(invalid_reason("GET / http/1.1\r\n"), "bad_version");
  EXPECT_EQ(invalid_reason("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), "bad_version");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.10\r\n"), "bad_version");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.\r\n"), "bad_version");
  EXPECT_EQ(invalid_reason("GET /caf\xc3\xa9 HTTP/1.1\r\n"), "bad_target");
  EXPECT_EQ(invalid_reason("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), "bad_target");
  EXPECT_EQ(invalid_reason(" GET / HTTP/1.1\r\n"), "not_http");
}

TEST(HttpRequestLine, MethodLengthCap) {
  const std::string longest(kMaxHttpMethodLength, 'M');
  EXPECT_EQ(parse(longest + " / HTTP/1.1\r\nHost: a\r\n\r\n").state, ParseState::kDone);
  EXPECT_EQ(invalid_reason(longest + "M / HTTP/1.1\r\nHost: a\r\n\r\n"), "bad_method");
  EXPECT_EQ(check_http1_start(as_bytes(longest + " ")), ParseState::kDone);
  EXPECT_EQ(check_http1_start(as_bytes(longest + "M")), ParseState::kInvalid);
}

TEST(HttpRequestLine, MethodsAreTokensAndCaseSensitive) {
  const Parsed p = parse("get /x HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.method, "get");
}

TEST(HttpRequestLine, AsteriskFormForOptions) {
  const Parsed p = parse("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.host, "a.example");
  EXPECT_EQ(p.head.target, "*");
}

TEST(HttpRequestLine, MinorVersionsOfHttp1) {
  const Parsed p = parse("GET / HTTP/1.9\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.version_minor, 9);
}

// ---- header hygiene (request smuggling) ----

TEST(HttpRequestHygiene, BareCr) {
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), "bare_cr");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\rHost: a\r\n\r\n"), "bare_cr");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), "bare_cr");
}

TEST(HttpRequestHygiene, Nul) {
  EXPECT_EQ(invalid_reason(std::string("GET / HTTP/1.1\r\nHost: a.exa\0mple\r\n\r\n", 36)),
            "nul_byte");
  EXPECT_EQ(invalid_reason(std::string("GET /\0 HTTP/1.1\r\n", 17)), "nul_byte");
  EXPECT_EQ(invalid_reason(std::string("GET / HTTP/1.1\r\nX\0: y\r\n", 23)), "nul_byte");
}

TEST(HttpRequestHygiene, ObsFold) {
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), "obs_fold");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n"), "obs_fold");
}

TEST(HttpRequestHygiene, WhitespaceBeforeColon) {
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost : evil\r\nHost: a\r\n\r\n"),
            "space_before_colon");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost\t: evil\r\n\r\n"), "space_before_colon");
}

TEST(HttpRequestHygiene, BadFieldNamesAndValues) {
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHo@st: a\r\n\r\n"), "bad_header_name");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\n: a\r\n\r\n"), "bad_header_name");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), "bad_header_name");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), "bad_header_value");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), "bad_header_value");
  // obs-text is allowed in values (RFC 9110 5.5).
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n").state, ParseState::kDone);
}

TEST(HttpRequestHygiene, LineEndings) {
  const Parsed lf = parse("GET / HTTP/1.0\nHost: example.com\n\n");
  ASSERT_EQ(lf.state, ParseState::kDone);
  EXPECT_TRUE(lf.head.bare_lf);
  EXPECT_EQ(lf.head.host, "example.com");
  EXPECT_EQ(lf.head.head_length, 34u);
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").head.bare_lf);
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"), "mixed_line_endings");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\nHost: a\r\n\n"), "mixed_line_endings");
  EXPECT_EQ(invalid_reason("GET / HTTP/1.1\r\nHost: a\r\n\n"), "mixed_line_endings");
}

TEST(HttpRequestHygiene, LeadingEmptyLinesAreSkipped) {
  const std::string text = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const Parsed p = parse(text);
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.head_length, text.size());
  EXPECT_EQ(check_http1_start(as_bytes(text)), ParseState::kDone);
}

// ---- caps ----

TEST(HttpRequestCap, HeadOverSixteenKiB) {
  std::string head = "GET / HTTP/1.1\r\nHost: a.example\r\nX-Pad: ";
  const std::string end = "\r\n\r\n";
  head += std::string(kMaxHttpHeadBytes - head.size() - end.size(), 'a');
  // Exactly at the cap: accepted.
  const Parsed exact = parse(head + end);
  ASSERT_EQ(exact.state, ParseState::kDone);
  EXPECT_EQ(exact.head.head_length, kMaxHttpHeadBytes);
  // One byte more: rejected as soon as byte 16385 is there, not before.
  const std::string over = head + "b" + end;
  EXPECT_EQ(parse(over.substr(0, kMaxHttpHeadBytes)).state, ParseState::kNeedMore);
  EXPECT_EQ(invalid_reason(over.substr(0, kMaxHttpHeadBytes + 1)), "head_too_large");
  EXPECT_EQ(invalid_reason(over), "head_too_large");
  EXPECT_EQ(parse_bytewise(over).reason, "head_too_large");
}

TEST(HttpRequestCap, BodyBytesAfterTheHeadDoNotCount) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n";
  const Parsed p = parse(head + std::string(20000, 'x'));
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.content_length, 20000u);
}

// ---- body framing ----

TEST(HttpRequestFraming, ContentLength) {
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").head.content_length,
            0u);
  EXPECT_EQ(invalid_reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                           "Content-Length: 4\r\n\r\n"),
            "duplicate_content_length");
  for (const char* value : {"", "5, 5", "-1", "+5", "0x10", "1 2", "1234567890123456789"}) {
    EXPECT_EQ(invalid_reason(std::string("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ") + value +
                             "\r\n\r\n"),
              "bad_content_length")
        << value;
  }
}

TEST(HttpRequestFraming, TransferEncoding) {
  const Parsed p = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_TRUE(p.head.chunked);
  const Parsed split = parse(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: ,chunked"
      "\r\n\r\n");
  EXPECT_TRUE(split.head.chunked);
  for (const char* value :
       {"chunked, gzip", "chunked, chunked", "gzip", "", " , ", "chunked;x=1", "identity"}) {
    EXPECT_EQ(invalid_reason(std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") +
                             value + "\r\n\r\n"),
              "bad_transfer_encoding")
        << value;
  }
  EXPECT_EQ(invalid_reason("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"),
            "bad_transfer_encoding");
  EXPECT_EQ(invalid_reason("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "bad_transfer_encoding");
}

TEST(HttpRequestFraming, ContentLengthWithTransferEncoding) {
  EXPECT_EQ(invalid_reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"),
            "content_length_and_transfer_encoding");
  EXPECT_EQ(invalid_reason("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: a\r\n"
                           "Content-Length: 4\r\n\r\n"),
            "content_length_and_transfer_encoding");
}

TEST(HttpRequestFraming, UpgradeIsReported) {
  const Parsed p =
      parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_TRUE(p.head.upgrade);
}

// ---- other kinds ----

TEST(HttpRequestKinds, Connect) {
  const Parsed p = parse("CONNECT Example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.kind, HttpRequestKind::kConnect);
  EXPECT_EQ(p.head.host, "example.com");
  EXPECT_EQ(p.head.port, 443);
  EXPECT_EQ(p.head.host_source, HttpHostSource::kTarget);
  const Parsed v6 = parse("CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n");
  ASSERT_EQ(v6.state, ParseState::kDone);
  EXPECT_EQ(v6.head.host, "2001:db8::1");
  // A Host without a port does not conflict (CONNECT has no default port).
  EXPECT_EQ(parse("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n").state,
            ParseState::kDone);
  EXPECT_EQ(invalid_reason("CONNECT a.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n"),
            "host_conflict");
  EXPECT_EQ(invalid_reason("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:80\r\n\r\n"),
            "host_conflict");
  EXPECT_EQ(invalid_reason("CONNECT a.example HTTP/1.1\r\n\r\n"), "bad_target");
  EXPECT_EQ(invalid_reason("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), "bad_target");
}

TEST(HttpRequestKinds, Http2Preface) {
  const std::string preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
  const std::string settings("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  const Parsed p = parse(preface + settings);
  ASSERT_EQ(p.state, ParseState::kDone);
  EXPECT_EQ(p.head.kind, HttpRequestKind::kHttp2Preface);
  EXPECT_EQ(p.head.head_length, 24u);
  EXPECT_EQ(p.head.version_major, 2);
  EXPECT_EQ(p.head.host_source, HttpHostSource::kNone);
  EXPECT_EQ(check_http1_start(as_bytes(preface)), ParseState::kDone);
  EXPECT_EQ(parse(preface.substr(0, 20)).state, ParseState::kNeedMore);
  EXPECT_EQ(invalid_reason("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), "bad_http2_preface");
  EXPECT_EQ(invalid_reason("\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "bad_http2_preface");
  EXPECT_EQ(invalid_reason("PRI * HTTP/2.0\n\nSM\n\n"), "bad_http2_preface");
}

// ---- quick check ----

TEST(HttpRequestQuickCheck, FirstBytes) {
  EXPECT_EQ(check_http1_start(as_bytes("GET ")), ParseState::kDone);
  EXPECT_EQ(check_http1_start(as_bytes("GE")), ParseState::kNeedMore);
  EXPECT_EQ(check_http1_start(as_bytes("\r")), ParseState::kNeedMore);
  EXPECT_EQ(check_http1_start(as_bytes("\r\n\nM-SEARCH ")), ParseState::kDone);
  EXPECT_EQ(check_http1_start(as_bytes("\rX")), ParseState::kInvalid);
  EXPECT_EQ(check_http1_start(as_bytes(" GET")), ParseState::kInvalid);
  EXPECT_EQ(check_http1_start(as_bytes("GET\t/")), ParseState::kInvalid);
  EXPECT_EQ(check_http1_start(as_bytes(std::string("\0", 1))), ParseState::kInvalid);
}

// ---- incremental use ----

TEST(HttpRequestIncremental, EveryProperPrefixNeedsMore) {
  const std::string text =
      "POST /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nX-Empty:\r\n\r\n";
  for (size_t n = 0; n < text.size(); ++n) {
    EXPECT_EQ(parse(text.substr(0, n)).state, ParseState::kNeedMore) << n;
  }
  EXPECT_EQ(parse(text).state, ParseState::kDone);
}

TEST(HttpRequestIncremental, FinalStatesAreSticky) {
  HttpRequestReader reader;
  const std::string text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  ASSERT_EQ(reader.feed(as_bytes(text)), ParseState::kDone);
  EXPECT_EQ(reader.feed(as_bytes(text + "garbage")), ParseState::kDone);
  EXPECT_EQ(reader.head().host, "a");
  reader.reset();
  EXPECT_EQ(reader.state(), ParseState::kNeedMore);
  EXPECT_EQ(reader.head().host, "");
  ASSERT_EQ(reader.feed(as_bytes("\x16")), ParseState::kInvalid);
  EXPECT_EQ(reader.feed(as_bytes(text)), ParseState::kInvalid);
}

TEST(HttpRequestIncremental, ShrinkingBufferIsRejected) {
  HttpRequestReader reader;
  ASSERT_EQ(reader.feed(as_bytes("GET / HT")), ParseState::kNeedMore);
  EXPECT_EQ(reader.feed(as_bytes("GET")), ParseState::kInvalid);
  EXPECT_EQ(reader.reason(), "buffer_shrank");
}

TEST(HttpRequestIncremental, PipelinedHeadsOnOneConnection) {
  // Peers 5 #22: every request of a keep-alive connection must be judged, not only the first.
  const std::string first = "POST /1 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n";
  const std::string second = "GET /2 HTTP/1.1\r\nHost: evil.example\r\n\r\n";
  const std::string third = "GET /3 HTTP/1.1\r\nHost: b.example:81\r\n\r\n";
  const std::string stream = first + "hello" + second + third;
  HttpRequestReader reader;
  ByteSpan rest = as_bytes(stream);
  std::vector<std::string> hosts;
  while (!rest.empty()) {
    ASSERT_EQ(reader.feed(rest), ParseState::kDone);
    hosts.push_back(reader.head().host);
    rest = rest.subspan(reader.head().head_length + reader.head().content_length.value_or(0));
    reader.reset();
  }
  EXPECT_EQ(hosts, (std::vector<std::string>{"a.example", "evil.example", "b.example"}));
}

// Every corpus input, read one byte at a time, ends exactly as when read whole.
TEST(HttpRequestIncremental, BytewiseEqualsWholeForEveryCorpusEntry) {
  const std::filesystem::path dir =
      std::filesystem::path(NETFENCE_SOURCE_DIR) / "fuzz" / "corpus" / "http_request";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const Parsed whole = parse(text);
    const Parsed bytewise = parse_bytewise(text);
    EXPECT_EQ(whole.state, bytewise.state) << entry.path();
    EXPECT_EQ(whole.head, bytewise.head) << entry.path();
    EXPECT_EQ(whole.reason, bytewise.reason) << entry.path();
    ++files;
  }
  EXPECT_GT(files, 0) << "empty corpus: " << dir;
}

// The captured requests of real clients are all accepted, with the host they named.
TEST(HttpRequestCorpus, RealClientsParse) {
  const std::filesystem::path dir =
      std::filesystem::path(NETFENCE_SOURCE_DIR) / "fuzz" / "corpus" / "http_request";
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"curl_get", "127.0.0.1"},
      {"curl_host_port_mixed_case", "example.com"},
      {"curl_post_json", "127.0.0.1"},
      {"curl_proxy_absolute_form", "example.com"},
      {"curl_proxy_connect", "example.com"},
      {"curl_h2c_upgrade", "127.0.0.1"},
      {"curl_http10", "127.0.0.1"},
      {"curl_post_chunked", "127.0.0.1"},
      {"wget_get", "127.0.0.1"},
      {"python_urllib_get", "127.0.0.1"},
      {"curl_websocket_upgrade", "127.0.0.1"},
      {"curl_options_asterisk", "127.0.0.1"},
      {"curl_head_browser_like", "127.0.0.1"},
      {"curl_host_v6_literal", "2001:db8::1"},
      {"curl_h2_prior_knowledge", ""},
  };
  for (const auto& [file, host] : expected) {
    std::ifstream in(dir / file, std::ios::binary);
    ASSERT_TRUE(in) << file;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const Parsed p = parse(text);
    ASSERT_EQ(p.state, ParseState::kDone) << file << ": " << p.reason;
    EXPECT_EQ(p.head.host, host) << file;
  }
}

}  // namespace
}  // namespace netfence::wire
