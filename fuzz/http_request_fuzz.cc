// Fuzz target for the HTTP/1 request-head reader. The input is a client byte stream, possibly
// holding several pipelined requests. It is read three ways -- whole, one byte at a time, and in
// chunks whose sizes come from the input -- skipping Content-Length bodies between heads as the
// gateway would; all three must give the same heads, states and reasons. Also checked: the quick
// prefix check never says "not HTTP" for bytes the reader accepts, and parse_http_authority() is
// idempotent on its own output.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "wire/http_request.h"

namespace {

using netfence::ByteSpan;
using netfence::wire::check_http1_start;
using netfence::wire::HttpRequestHead;
using netfence::wire::HttpRequestKind;
using netfence::wire::HttpRequestReader;
using netfence::wire::ParseState;

struct Step {
  ParseState state;
  HttpRequestHead head;
  std::string reason;
  bool operator==(const Step&) const = default;
};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "http_request_fuzz: %s\n", what);
    std::abort();
  }
}

// Feeds `stream` to a reader `chunk(i)` bytes at a time (chunk 0 = everything at once).
template <class Chunk>
std::vector<Step> read_all(ByteSpan stream, Chunk chunk) {
  std::vector<Step> steps;
  HttpRequestReader reader;
  size_t offset = 0;
  for (int requests = 0; requests < 64; ++requests) {
    const ByteSpan rest = stream.subspan(offset);
    ParseState state = ParseState::kNeedMore;
    size_t fed = 0;
    for (size_t i = 0; state == ParseState::kNeedMore && fed < rest.size(); ++i) {
      const size_t n = chunk(i);
      fed = n == 0 ? rest.size() : std::min(rest.size(), fed + n);
      state = reader.feed(rest.first(fed));
      if (fed <= 256 && check_http1_start(rest.first(fed)) == ParseState::kInvalid) {
        check(state == ParseState::kInvalid, "quick check rejected bytes the reader accepts");
      }
    }
    if (rest.empty()) state = reader.feed(rest);
    check(reader.feed(rest) == state, "feed is not idempotent");
    steps.push_back({state, reader.head(), std::string(reader.reason())});
    check((state == ParseState::kInvalid) == !reader.reason().empty(), "reason iff invalid");
    if (state != ParseState::kDone) break;

    const HttpRequestHead& head = reader.head();
    check(head.head_length > 0 && head.head_length <= rest.size(), "head_length out of range");
    check(head.head_length <= netfence::wire::kMaxHttpHeadBytes, "head_length over the cap");
    check(head.host.empty() == (head.host_source == netfence::wire::HttpHostSource::kNone),
          "host present iff it has a source");
    check(!(head.chunked && head.content_length), "both chunked and Content-Length");
    if (head.kind != HttpRequestKind::kHttp1 || head.chunked || head.upgrade) break;
    const uint64_t body = head.content_length.value_or(0);
    if (body > rest.size() - head.head_length) break;
    offset += head.head_length + body;
    reader.reset();
  }
  return steps;
}

void check_authority(const uint8_t* data, size_t size) {
  if (size > 300) return;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto parsed = netfence::wire::parse_http_authority(text);
  if (!parsed) return;
  std::string again =
      parsed->host.find(':') != std::string::npos ? "[" + parsed->host + "]" : parsed->host;
  if (parsed->port) again += ":" + std::to_string(*parsed->port);
  check(netfence::wire::parse_http_authority(again) == parsed, "authority not idempotent");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan stream(reinterpret_cast<const std::byte*>(data), size);
  const auto whole = read_all(stream, [](size_t) { return size_t{0}; });
  const auto bytewise = read_all(stream, [](size_t) { return size_t{1}; });
  check(whole == bytewise, "whole and byte-at-a-time reads differ");
  const auto chunked = read_all(stream, [&](size_t i) {
    return size == 0 ? size_t{1} : size_t{1} + data[(i * 7) % size] % 13;
  });
  check(whole == chunked, "whole and chunked reads differ");
  check_authority(data, size);
  return 0;
}
