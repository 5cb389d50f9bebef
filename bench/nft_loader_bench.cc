// The sandbox's nftables loaders alone: building the netlink batch, and loading the ruleset with
// the netlink loader (batch built beforehand, as the sandbox does before fork) and with
// libnftables (text built beforehand; the library already dlopen'ed, which in the sandbox's child
// it is not). Each load goes into an empty table-less namespace: the table is deleted, untimed,
// after every iteration. Runs in a network namespace of its own (as root, or as a user with user
// namespaces), never in the caller's.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "sandbox/nftables.h"
#include "support/namespaces.h"

using namespace netfence::sandbox;

namespace {

struct Input {
  uint16_t udp_port;
  std::vector<std::string> v4;
  std::vector<std::string> v6;
};

// 0: no sets; 1: full access (one element per family); 2: an allowlist of 100 CIDR/port elements.
Input input(int64_t which) {
  if (which == 0) return {1000, {}, {}};
  if (which == 1) return {1000, {"0.0.0.0/0 . 1-65535"}, {"::/0 . 1-65535"}};
  Input in{1000, {}, {}};
  for (int i = 0; i < 50; ++i) {
    in.v4.push_back("198.18." + std::to_string(i) + ".0/24 . 443");
    in.v6.push_back("2001:db8:" + std::to_string(i) + "::/48 . 1000-2000");
  }
  return in;
}

void delete_table(benchmark::State& state) {
  if (auto deleted = load_ruleset_with_library("delete table inet netfence\n"); !deleted) {
    state.SkipWithError(deleted.error().message.c_str());
  }
}

void BM_BuildNetlinkBatch(benchmark::State& state) {
  const Input in = input(state.range(0));
  for (auto _ : state) {
    auto batch = nft_ruleset_batch(1000, 53, in.udp_port, in.v4, in.v6);
    if (!batch) state.SkipWithError(batch.error().message.c_str());
    benchmark::DoNotOptimize(batch);
  }
}
BENCHMARK(BM_BuildNetlinkBatch)->Arg(0)->Arg(1)->Arg(2)->ArgName("sets");

// Times `load` alone per iteration; the table is deleted, untimed, after each.
template <typename Load>
void time_loads(benchmark::State& state, Load load) {
  for (auto _ : state) {
    const auto begin = std::chrono::steady_clock::now();
    auto loaded = load();
    const auto end = std::chrono::steady_clock::now();
    if (!loaded) {
      state.SkipWithError(loaded.error().message.c_str());
      break;
    }
    state.SetIterationTime(std::chrono::duration<double>(end - begin).count());
    delete_table(state);
  }
}

void BM_LoadNetlink(benchmark::State& state) {
  const Input in = input(state.range(0));
  const NftBatch batch = nft_ruleset_batch(1000, 53, in.udp_port, in.v4, in.v6).value();
  time_loads(state, [&] { return load_ruleset_batch(batch); });
}
BENCHMARK(BM_LoadNetlink)->Arg(0)->Arg(1)->Arg(2)->ArgName("sets")->UseManualTime();

void BM_LoadLibnftables(benchmark::State& state) {
  const Input in = input(state.range(0));
  const std::string text = nft_ruleset(1000, 53, in.udp_port, in.v4, in.v6);
  time_loads(state, [&] { return load_ruleset_with_library(text); });
}
BENCHMARK(BM_LoadLibnftables)->Arg(0)->Arg(1)->Arg(2)->ArgName("sets")->UseManualTime();

}  // namespace

int main(int argc, char** argv) {
  if (!netfence::test::enter_fresh_network_namespace()) {
    std::fprintf(stderr,
                 "nft_loader_bench: needs root or user namespaces (a namespace of its own)\n");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
