#!/usr/bin/env bash
# Whole-path figures for `netfence run` (issue 5; the full peer comparison is issue 7's harness):
#  - start to exit of `netfence run -- true` (enabled, allowlist, disabled): median of N runs;
#  - a 1 GiB TCP transfer from the test world's server: direct (host namespace) and through
#    netfence (IP rule, and hostname rule: dial by name), in MiB/s and as a ratio to direct.
# Builds its own test world (tests/e2e/lib/world.sh) on documentation addresses; as root.
# Usage: bench/run_bench.sh [path/to/netfence] [runs]
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
NF=${1:-$here/build/netfence}
RUNS=${2:-21}
export NETFENCE_SOURCE_DIR=$here
source "$here/tests/e2e/lib/world.sh"
world_up || exit 1

median_ms() { # median_ms COMMAND...: median wall time of RUNS runs, in ms
  local times=()
  for _ in $(seq 1 "$RUNS"); do
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}

echo "== start to exit of true (median of $RUNS)"
printf '%-44s %8s ms\n' "netfence run -- true (full access)" "$(median_ms in_host "$NF" run -q -- true)"
printf '%-44s %8s ms\n' "netfence run --allow-net api.example.com -- true" \
  "$(median_ms in_host "$NF" run -q --allow-net api.example.com -- true)"
printf '%-44s %8s ms\n' "netfence run --network disabled -- true" \
  "$(median_ms in_host "$NF" run -q --network disabled -- true)"
printf '%-44s %8s ms\n' "unshare -rn true (reference)" "$(median_ms in_host unshare -rn true)"

SIZE=$((1024 * 1024 * 1024))
serve_once() { # a server in "the internet" that sends SIZE bytes to one client, then exits
  in_inet sh -c "head -c $SIZE /dev/zero | nc -N -l 203.0.113.10 7000" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 50); do in_inet ss -ltn | grep -q 203.0.113.10:7000 && break; sleep 0.05; done
  echo "$pid"
}
transfer() { # transfer LABEL COMMAND...: MiB/s for one SIZE transfer
  local pid t0 t1 got
  shift
  pid=$(serve_once)
  t0=$(date +%s%N)
  got=$("$@" 2>/dev/null | wc -c)
  t1=$(date +%s%N)
  wait "$pid" 2>/dev/null
  if [ "$got" -ne "$SIZE" ]; then echo "0 (got $got bytes)"; return; fi
  awk -v b="$SIZE" -v ns="$((t1 - t0))" 'BEGIN {printf "%.0f", b / 1048576 / (ns / 1e9)}'
}

echo "== 1 GiB TCP download (MiB/s)"
direct=$(transfer direct in_host nc -d 203.0.113.10 7000)
ip_rule=$(transfer ip in_host "$NF" run -q --allow-net 203.0.113.10 -- nc -d 203.0.113.10 7000)
full=$(transfer full in_host "$NF" run -q -- nc -d 203.0.113.10 7000)
name=$(transfer name in_host "$NF" run -q --upstream 198.51.100.2 --allow-net api.example.com:7000 \
  -- nc -d api.example.com 7000)
ratio() { awk -v a="$1" -v b="$direct" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
printf '%-40s %8s MiB/s  %5s x direct\n' "direct (host namespace)" "$direct" "1.00"
printf '%-40s %8s MiB/s  %5s x direct\n' "netfence, full access" "$full" "$(ratio "$full")"
printf '%-40s %8s MiB/s  %5s x direct\n' "netfence, IP rule" "$ip_rule" "$(ratio "$ip_rule")"
printf '%-40s %8s MiB/s  %5s x direct\n' "netfence, hostname rule (learned)" "$name" "$(ratio "$name")"
