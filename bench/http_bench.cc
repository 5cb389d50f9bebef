// HTTP/1 request-head reader cost per head: a curl request, a browser-sized head, the same head
// arriving in three segments (the reader resumes, it never rescans), and the quick first-bytes
// check. Figures are per head, including reset().
#include <benchmark/benchmark.h>

#include <string>

#include "wire/http_request.h"

using namespace netfence::wire;
using netfence::as_bytes;
using netfence::ByteSpan;

namespace {

const std::string kCurlHead =
    "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
    "\r\n";

const std::string kBrowserHead =
    "GET /search?q=netfence&hl=en HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
    "\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; consent=yes\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "\r\n";

void run_whole(benchmark::State& state, const std::string& head) {
  HttpRequestReader reader;
  const ByteSpan bytes = as_bytes(head);
  for (auto _ : state) {
    reader.reset();
    if (reader.feed(bytes) != ParseState::kDone) state.SkipWithError("not parsed");
    benchmark::DoNotOptimize(reader.head().host.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * head.size()));
}

void BM_HttpCurlHead(benchmark::State& state) {
  run_whole(state, kCurlHead);
}
BENCHMARK(BM_HttpCurlHead);

void BM_HttpBrowserHead(benchmark::State& state) {
  run_whole(state, kBrowserHead);
}
BENCHMARK(BM_HttpBrowserHead);

void BM_HttpBrowserHeadThreeSegments(benchmark::State& state) {
  HttpRequestReader reader;
  const ByteSpan bytes = as_bytes(kBrowserHead);
  const size_t third = bytes.size() / 3;
  for (auto _ : state) {
    reader.reset();
    reader.feed(bytes.first(third));
    reader.feed(bytes.first(2 * third));
    if (reader.feed(bytes) != ParseState::kDone) state.SkipWithError("not parsed");
    benchmark::DoNotOptimize(reader.head().host.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBrowserHead.size()));
}
BENCHMARK(BM_HttpBrowserHeadThreeSegments);

void BM_HttpQuickCheck(benchmark::State& state) {
  const ByteSpan bytes = as_bytes(kBrowserHead).first(16);
  for (auto _ : state) benchmark::DoNotOptimize(check_http1_start(bytes));
}
BENCHMARK(BM_HttpQuickCheck);

}  // namespace

BENCHMARK_MAIN();
