// HttpRequestStream: every head of a keep-alive / pipelined stream is surfaced for judging, and
// bodies (Content-Length, chunked) are skipped exactly.
#include "wire/http_stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace netfence::wire {
namespace {

// Feeds `stream_bytes` in chunks of `chunk` bytes the way the gateway does (keeping unforwarded
// bytes) and returns the hosts of the heads in order, or "INVALID:<reason>" / "OPAQUE" markers.
std::vector<std::string> hosts(const std::string& stream_bytes, size_t chunk) {
  HttpRequestStream stream;
  std::vector<std::string> out;
  std::string pending;
  size_t forwarded = 0;
  for (size_t at = 0; at < stream_bytes.size(); at += chunk) {
    pending += stream_bytes.substr(at, chunk);
    while (true) {
      auto step = stream.scan(as_bytes(pending));
      if (step.kind == HttpRequestStream::Kind::kInvalid) {
        out.push_back("INVALID:" + std::string(stream.reason()));
        return out;
      }
      if (step.kind == HttpRequestStream::Kind::kOpaque) {
        if (out.empty() || out.back() != "OPAQUE") out.push_back("OPAQUE");
      }
      if (step.kind == HttpRequestStream::Kind::kHead) out.push_back(stream.head().host);
      if (step.forwardable == 0) break;
      forwarded += step.forwardable;
      pending.erase(0, step.forwardable);
    }
  }
  EXPECT_LE(forwarded, stream_bytes.size());
  return out;
}

void expect_hosts(const std::string& bytes, const std::vector<std::string>& want) {
  for (size_t chunk : {bytes.size(), size_t{1}, size_t{3}, size_t{7}, size_t{64}}) {
    if (chunk == 0) continue;
    EXPECT_EQ(hosts(bytes, chunk), want) << "chunk size " << chunk;
  }
}

TEST(HttpRequestStream, PipelinedGetsEachSurface) {
  expect_hosts(
      "GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET /x HTTP/1.1\r\nHost: b.example\r\n\r\n",
      {"a.example", "b.example"});
}

TEST(HttpRequestStream, ContentLengthBodyIsSkippedExactly) {
  // The body contains a fake request line: it must not be mistaken for a head.
  expect_hosts(
      "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 38\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: c.example\r\n\r\n",
      {"a.example", "c.example"});
}

TEST(HttpRequestStream, ChunkedBodyWithExtensionsAndTrailers) {
  expect_hosts(
      "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4;ext=1\r\nWiki\r\n1e\r\nGET / HTTP/1.1\r\nHost: x.ex\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n",
      {"a.example", "b.example"});
}

TEST(HttpRequestStream, BadChunkFramingIsInvalid) {
  expect_hosts("POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
               {"a.example", "INVALID:bad_chunk_size"});
  expect_hosts(
      "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
      {"a.example", "INVALID:bad_chunk_end"});
  expect_hosts(
      "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
      "ffffffffffffffffff\r\n",
      {"a.example", "INVALID:chunk_size_too_large"});
}

TEST(HttpRequestStream, UpgradeThenFramesIsOpaque) {
  expect_hosts(
      "GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
      "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58GET / HTTP/1.1\r\nHost: b.example\r\n\r\n",
      {"a.example", "OPAQUE"});
}

TEST(HttpRequestStream, IgnoredUpgradeKeepsJudgingRequests) {
  // The server answered 200 and stayed HTTP: the next request is a request like any other.
  expect_hosts(
      "GET / HTTP/1.1\r\nHost: a.example\r\nUpgrade: whatever\r\nConnection: Upgrade\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n",
      {"a.example", "b.example"});
}

TEST(HttpRequestStream, SecondHeadInvalidIsInvalid) {
  expect_hosts(
      "GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\nHost: c\r\n\r\n",
      {"a.example", "INVALID:duplicate_host"});
}

TEST(HttpRequestStream, NothingForwardableBeforeAHeadCompletes) {
  HttpRequestStream stream;
  std::string partial = "GET / HTTP/1.1\r\nHost: a.exa";
  auto step = stream.scan(as_bytes(partial));
  EXPECT_EQ(step.kind, HttpRequestStream::Kind::kNeedMore);
  EXPECT_EQ(step.forwardable, 0u);
}

}  // namespace
}  // namespace netfence::wire
