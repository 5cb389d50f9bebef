// Matcher lookup cost at 10, 1,000 and 100,000 rules, for exact names, wildcards and CIDRs,
// hits and misses. The claim under test: lookup cost depends on the query (label count,
// distinct prefix lengths), not on the number of rules. Compare the 10 and 100,000 rows.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "fmt/format.h"
#include "policy/policy.h"

using namespace netfence::policy;

namespace {

enum Kind { kExact, kWildcard, kCidr };

Policy make_policy(Kind kind, int count) {
  NetworkSpec spec;
  for (int i = 0; i < count; ++i) {
    switch (kind) {
      case kExact:
        spec.allow_net.push_back(fmt::format("host{}.service{}.example.com", i, i % 97));
        break;
      case kWildcard:
        spec.allow_net.push_back(fmt::format("*.tenant{}.example.net", i));
        break;
      case kCidr:  // a mix of /16, /24 and /32 inside 198.18.0.0/15 and 2001:db8::/32
        if (i % 3 == 0) {
          spec.allow_net.push_back(fmt::format("2001:db8:{:x}:{:x}::/64", i / 65536, i % 65536));
        } else {
          int a = 18 + (i >> 16) % 2;
          spec.allow_net.push_back(i % 3 == 1
                                       ? fmt::format("198.{}.{}.{}", a, (i >> 8) & 255, i & 255)
                                       : fmt::format("198.{}.{}.0/24", a, (i >> 8) & 255));
        }
        break;
    }
  }
  return Policy::compile(spec).value();
}

void run(benchmark::State& state, Kind kind, bool hit) {
  int count = static_cast<int>(state.range(0));
  Policy policy = make_policy(kind, count);
  std::vector<std::string> names;
  std::vector<IpAddress> addresses;
  for (int i = 0; i < 64; ++i) {
    int k = (i * 7919) % count;
    switch (kind) {
      case kExact:
        names.push_back(hit ? fmt::format("host{}.service{}.example.com", k, k % 97)
                            : fmt::format("host{}.service{}.example.com", k, (k + 1) % 97));
        break;
      case kWildcard:
        names.push_back(hit ? fmt::format("api.v2.tenant{}.example.net", k)
                            : fmt::format("api.v2.tenant{}.example.org", k));
        break;
      case kCidr:
        addresses.push_back(
            *IpAddress::parse(hit ? fmt::format("198.18.{}.{}", (k >> 8) & 255, k & 255)
                                  : fmt::format("203.0.113.{}", k & 255)));
        break;
    }
  }
  size_t i = 0;
  int64_t allowed = 0;
  for (auto _ : state) {
    Decision d = kind == kCidr ? policy.judge_address(addresses[i++ % addresses.size()], 443)
                               : policy.judge_name(names[i++ % names.size()], 443);
    allowed += d.allowed();
    benchmark::DoNotOptimize(d);
  }
  if (hit && allowed == 0) state.SkipWithError("hits did not match: benchmark is wrong");
  if (!hit && allowed != 0) state.SkipWithError("misses matched: benchmark is wrong");
}

void BM_ExactHit(benchmark::State& s) {
  run(s, kExact, true);
}
void BM_ExactMiss(benchmark::State& s) {
  run(s, kExact, false);
}
void BM_WildcardHit(benchmark::State& s) {
  run(s, kWildcard, true);
}
void BM_WildcardMiss(benchmark::State& s) {
  run(s, kWildcard, false);
}
void BM_CidrHit(benchmark::State& s) {
  run(s, kCidr, true);
}
void BM_CidrMiss(benchmark::State& s) {
  run(s, kCidr, false);
}

}  // namespace

BENCHMARK(BM_ExactHit)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_ExactMiss)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_WildcardHit)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_WildcardMiss)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_CidrHit)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_CidrMiss)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK_MAIN();
