#!/usr/bin/env bash
# Runs every test: unit tests, fuzz-corpus replays and the CLI tests, through ctest. Expects
# ./scripts/setup.sh to have built ./build. Some tests create network namespaces and need root.
set -euo pipefail
cd "$(dirname "$0")/.."
ctest --test-dir build --output-on-failure --timeout 300 -j "$(nproc)"
