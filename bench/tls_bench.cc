// ClientHello reader cost per connection: a fresh reader per iteration (as the gateway has), for a
// small (~250 B) and a 2 KB hello (post-quantum key share, padded), fed whole or as growing
// prefixes in 100-byte reads, in one record or three.
#include <benchmark/benchmark.h>

#include <vector>

#include "support/client_hello_builder.h"
#include "wire/tls_client_hello.h"

namespace {

using netfence::ByteSpan;
using netfence::wire::ClientHelloReader;
using netfence::wire::ParseState;

std::vector<std::byte> small_hello() {
  netfence::test::ClientHelloSpec spec;
  spec.alpn = {"h2", "http/1.1"};
  spec.pad_to = 250 - 5;  // 250 bytes on the wire
  return netfence::test::build_client_hello(spec, 1);
}

std::vector<std::byte> big_hello(size_t records) {
  netfence::test::ClientHelloSpec spec;
  spec.alpn = {"h2", "http/1.1"};
  spec.post_quantum_key_share = true;
  spec.pad_to = 2048 - 5 * records;
  return netfence::test::build_client_hello(spec, records);
}

void parse(benchmark::State& state, const std::vector<std::byte>& hello, size_t chunk) {
  for (auto _ : state) {
    ClientHelloReader reader;
    ParseState s = ParseState::kNeedMore;
    for (size_t fed = chunk; s == ParseState::kNeedMore; fed += chunk) {
      s = reader.feed(ByteSpan(hello).first(std::min(fed, hello.size())));
    }
    if (s != ParseState::kDone) state.SkipWithError("hello not parsed");
    benchmark::DoNotOptimize(reader.info().sni.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * hello.size()));
  state.counters["hello_bytes"] = static_cast<double>(hello.size());
}

void BM_SmallHelloWhole(benchmark::State& s) {
  static const auto h = small_hello();
  parse(s, h, h.size());
}
void BM_SmallHello100ByteReads(benchmark::State& s) {
  parse(s, small_hello(), 100);
}
void BM_Big2KHelloWhole(benchmark::State& s) {
  static const auto h = big_hello(1);
  parse(s, h, h.size());
}
void BM_Big2KHello100ByteReads(benchmark::State& s) {
  parse(s, big_hello(1), 100);
}
void BM_Big2KHello3RecordsWhole(benchmark::State& s) {
  static const auto h = big_hello(3);
  parse(s, h, h.size());
}
void BM_Big2KHello3Records100ByteReads(benchmark::State& s) {
  parse(s, big_hello(3), 100);
}

BENCHMARK(BM_SmallHelloWhole);
BENCHMARK(BM_SmallHello100ByteReads);
BENCHMARK(BM_Big2KHelloWhole);
BENCHMARK(BM_Big2KHello100ByteReads);
BENCHMARK(BM_Big2KHello3RecordsWhole);
BENCHMARK(BM_Big2KHello3Records100ByteReads);

}  // namespace

BENCHMARK_MAIN();
