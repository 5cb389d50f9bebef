// DNS costs on the sinkhole's hot paths: parsing a query as dig sends it (EDNS + cookie), building
// the local answers from the parsed query, parse+build end to end, and for relayed answers:
// parsing an upstream response with a two-CNAME chain and three A records, extracting the
// addresses, and filtering + re-encoding it.
#include <benchmark/benchmark.h>

#include <string_view>
#include <vector>

#include "wire/dns_message.h"

using namespace netfence::wire;
using netfence::ByteSpan;

namespace {

std::vector<std::byte> from_hex(std::string_view hex) {
  std::vector<std::byte> out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::byte>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  }
  return out;
}

// fuzz/corpus/dns_message/dig_query_a: `dig example.com A` (EDNS 1232, COOKIE option).
const std::vector<std::byte> kDigQuery = from_hex(
    "738101200001000000000001076578616d706c6503636f6d000001000100002904d000000000000c000a00080ac7c9"
    "72f7460a52");
// fuzz/corpus/dns_message/resp_cname_chain: www.example.com -> cdn.example.net ->
// edge.cdn.example.net, 3 A records, compressed, OPT with DO.
const std::vector<std::byte> kUpstream = from_hex(
    "beef8180000100050000000103777777076578616d706c6503636f6d0000010001c00c000500010000012c00110363"
    "646e076578616d706c65036e657400c02d000500010000003c00070465646765c02dc04a0001000100000014000"
    "4cb00710ac04a00010001000000140004cb00710bc04a00010001000000140004cb00710c00002904d0000080000"
    "000");

void BM_DnsParseQuery(benchmark::State& state) {
  for (auto _ : state) {
    auto m = parse_dns_message(kDigQuery);
    if (!m) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_DnsParseQuery);

void BM_DnsBuildAnswer(benchmark::State& state) {
  const DnsMessage query = parse_dns_message(kDigQuery).value();
  const auto kind = static_cast<DnsAnswerKind>(state.range(0));
  for (auto _ : state) {
    auto r = build_dns_answer(query, kind);
    if (!r) state.SkipWithError("build failed");
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_DnsBuildAnswer)
    ->Arg(static_cast<int>(DnsAnswerKind::kUnspecifiedAddress))
    ->Arg(static_cast<int>(DnsAnswerKind::kNxDomain))
    ->Arg(static_cast<int>(DnsAnswerKind::kRefused))
    ->ArgName("kind");

void BM_DnsParseQueryAndBuildSinkhole(benchmark::State& state) {
  for (auto _ : state) {
    auto query = parse_dns_message(kDigQuery);
    auto r = build_dns_answer(*query, DnsAnswerKind::kUnspecifiedAddress);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_DnsParseQueryAndBuildSinkhole);

void BM_DnsParseUpstream(benchmark::State& state) {
  for (auto _ : state) {
    auto m = parse_dns_message(kUpstream);
    if (!m) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_DnsParseUpstream);

void BM_DnsExtractUpstream(benchmark::State& state) {
  const DnsMessage m = parse_dns_message(kUpstream).value();
  for (auto _ : state) {
    auto chain = extract_dns_answer(m, "www.example.com", dns_type::kA);
    if (!chain || chain->addresses.size() != 3) state.SkipWithError("extract failed");
    benchmark::DoNotOptimize(chain);
  }
}
BENCHMARK(BM_DnsExtractUpstream);

void BM_DnsParseAndExtractUpstream(benchmark::State& state) {
  for (auto _ : state) {
    auto m = parse_dns_message(kUpstream);
    auto chain = extract_dns_answer(*m, m->questions[0].name.text, m->questions[0].type);
    benchmark::DoNotOptimize(chain);
  }
}
BENCHMARK(BM_DnsParseAndExtractUpstream);

void BM_DnsFilterAndEncodeUpstream(benchmark::State& state) {
  const DnsMessage parsed = parse_dns_message(kUpstream).value();
  for (auto _ : state) {
    DnsMessage m = parsed;
    remove_dns_addresses(m, [](const DnsAddress& a) { return a.bytes[3] == 11; });
    auto bytes = encode_dns_message(m);
    benchmark::DoNotOptimize(bytes);
  }
}
BENCHMARK(BM_DnsFilterAndEncodeUpstream);

}  // namespace

BENCHMARK_MAIN();
