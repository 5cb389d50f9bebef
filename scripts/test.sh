#!/usr/bin/env bash
# Runs every test: unit tests, fuzz-corpus replays, CLI and end-to-end tests, through ctest; then
# the same suite again built with AddressSanitizer + UndefinedBehaviorSanitizer (clang).
# Expects ./scripts/setup.sh to have built ./build. The e2e tests build network namespaces and
# need root.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
ctest --test-dir build --output-on-failure --timeout 300 -j "$jobs"

echo "test: building the sanitizer build (build-asan)"
CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNETFENCE_SANITIZE=ON -DNETFENCE_BENCH=OFF -DNETFENCE_WERROR=ON >/dev/null
cmake --build build-asan
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
  ctest --test-dir build-asan --output-on-failure --timeout 600 -j "$jobs"
