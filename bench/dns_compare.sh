#!/usr/bin/env bash
# DNS throughput: `netfence dns` against dnsmasq, side by side, same machine, same query files,
# measured with dnsperf (all Debian packages: dnsmasq-base, dnsperf).
#
#   bench/dns_compare.sh [NETFENCE_BINARY] [--seconds N] [--reps N] [--clients N]
#                        [--outstanding N] [--pin] [--quick] [--rows "ROW..."]
#
# Rows (each the median of --reps runs; runs of the two servers alternate, so a burst of load
# from other jobs hurts both alike):
#   sinkhole      names netfence answers locally (not in allow_net: A 0.0.0.0, AAAA ::) vs the
#                 same names answered by dnsmasq from its own address=/blocked.test/ entries
#   sinkhole+log  the same, netfence writing every decision as JSON lines to a file (--log)
#                 vs dnsmasq writing every query to a file (--log-queries --log-facility)
#   forward       names both forward to the same upstream dnsmasq (each with its own cache on,
#                 as deployed; the upstream is authoritative for fwd.test)
#   forward-nc    the same with both caches off (netfence --cache-size 0, dnsmasq
#                 --cache-size=0): every query goes upstream
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
# Prints figures; it is a benchmark, never a test.
set -euo pipefail

netfence=${NETFENCE:-}
seconds=10
reps=5
clients=4
outstanding=100
pin=0
rows="sinkhole sinkhole+log forward forward-nc"
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --outstanding) outstanding=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --rows) rows=$2; shift 2 ;;
    --quick) seconds=3; reps=3; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) netfence=$1; shift ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
if [[ -z $netfence ]]; then
  for candidate in "$here/../build/netfence" "$here/../build-dns/netfence"; do
    [[ -x $candidate ]] && netfence=$candidate && break
  done
fi
[[ -x $netfence ]] || { echo "usage: $0 NETFENCE_BINARY (not found: '$netfence')" >&2; exit 2; }
for tool in dnsperf dnsmasq dig; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install dnsperf dnsmasq-base bind9-dnsutils)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/dns_compare.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Free UDP+TCP ports on 127.0.0.1, chosen by the kernel.
free_port() {
  python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
upstream_port=$(free_port)
dnsmasq_port=$(free_port)
netfence_port=$(free_port)

# Server-side CPU pinning (--pin): servers on CPU 0, dnsperf on CPU 1.
server_cpu=() client_cpu=()
if [[ $pin == 1 ]] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) client_cpu=(taskset -c 1)
fi

names=1000
for ((i = 0; i < names; i++)); do
  echo "h$i.blocked.test A"
  echo "h$i.blocked.test AAAA"
done >"$work/sinkhole.txt"
for ((i = 0; i < names; i++)); do
  echo "h$i.fwd.test A"
  echo "h$i.fwd.test AAAA"
done >"$work/forward.txt"

# The upstream: authoritative-style local answers for fwd.test with a cacheable TTL.
dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll --log-facility=- \
  --listen-address=127.0.0.1 --bind-interfaces --port="$upstream_port" --user=root \
  --local-ttl=300 --cache-size=10000 \
  --address=/fwd.test/192.0.2.1 --address=/fwd.test/2001:db8::1 \
  >"$work/upstream.log" 2>&1 &
pids+=($!)

start_dnsmasq() {  # $1 cache size, then extra flags
  local cache=$1
  shift
  "${server_cpu[@]}" dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
    --listen-address=127.0.0.1 --bind-interfaces --port="$dnsmasq_port" --user=root \
    --cache-size="$cache" --dns-forward-max=1000 --local-ttl=5 \
    --server=/fwd.test/127.0.0.1#"$upstream_port" \
    --address=/blocked.test/0.0.0.0 --address=/blocked.test/:: "$@" \
    >>"$work/dnsmasq.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
}

start_netfence() {  # extra flags
  "${server_cpu[@]}" "$netfence" dns --listen 127.0.0.1:"$netfence_port" \
    --upstream 127.0.0.1:"$upstream_port" --allow-net '*.fwd.test' "$@" \
    >>"$work/netfence.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

wait_ready() {  # port: until a query is answered
  for _ in $(seq 100); do
    if dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" ready.blocked.test A >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  echo "$0: server on port $1 did not come up" >&2
  cat "$work"/*.log >&2
  exit 1
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One dnsperf run against the server $server_pid; prints "QPS LOST CPU_US_PER_QUERY".
measure() {  # port file
  local out before after
  before=$(cpu_ticks "$server_pid")
  out=$("${client_cpu[@]}" dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$seconds" -c "$clients" \
    -q "$outstanding" -t 2 2>&1) || { echo "$out" >&2; exit 1; }
  after=$(cpu_ticks "$server_pid")
  local qps lost completed
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
  completed=$(awk '/Queries completed:/ {print $3}' <<<"$out")
  local us
  us=$(awk -v t=$((after - before)) -v n="$completed" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0)}')
  echo "${qps%.*} ${lost:-0} $us"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%g\n", (a[NR/2]+a[NR/2+1])/2}'; }

wait_ready "$upstream_port" 2>/dev/null || true
declare -A results
run_row() {  # row nf_flags... -- dnsmasq_cache dnsmasq_flags...
  local row=$1 file=$2
  shift 2
  local nf_flags=() dm_flags=()
  while [[ $1 != -- ]]; do nf_flags+=("$1"); shift; done
  shift
  dm_flags=("$@")
  for ((r = 1; r <= reps; r++)); do
    start_netfence "${nf_flags[@]}"
    wait_ready "$netfence_port"
    read -r qps lost us < <(measure "$netfence_port" "$file")
    results[$row,netfence]+="$qps "
    results[$row,netfence_us]+="$us "
    results[$row,netfence_lost]=$((${results[$row,netfence_lost]:-0} + lost))
    stop_server
    start_dnsmasq "${dm_flags[@]}"
    wait_ready "$dnsmasq_port"
    read -r qps lost us < <(measure "$dnsmasq_port" "$file")
    results[$row,dnsmasq]+="$qps "
    results[$row,dnsmasq_us]+="$us "
    results[$row,dnsmasq_lost]=$((${results[$row,dnsmasq_lost]:-0} + lost))
    stop_server
    rm -f "$work"/*.qlog
  done
}

echo "netfence: $netfence"
echo "dnsperf -l $seconds -c $clients -q $outstanding, $reps repetitions, alternating; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for row in $rows; do
  case $row in
    sinkhole) run_row sinkhole "$work/sinkhole.txt" -q -- 10000 ;;
    sinkhole+log)
      run_row sinkhole+log "$work/sinkhole.txt" --log "$work/netfence.qlog" -- 10000 \
        --log-queries --log-facility="$work/dnsmasq.qlog" ;;
    forward) run_row forward "$work/forward.txt" -q -- 10000 ;;
    forward-nc) run_row forward-nc "$work/forward.txt" -q --cache-size 0 -- 0 ;;
    *) echo "$0: unknown row '$row'" >&2; exit 2 ;;
  esac
done

printf '\n%-13s %12s %12s %6s   %13s %13s %6s\n' row "netfence qps" "dnsmasq qps" ratio \
  "netfence us/q" "dnsmasq us/q" ratio
for row in $rows; do
  med() { tr ' ' '\n' <<<"${results[$row,$1]}" | grep . | median; }
  nf=$(med netfence) dm=$(med dnsmasq) nf_us=$(med netfence_us) dm_us=$(med dnsmasq_us)
  printf '%-13s %12.0f %12.0f %6.2f   %13.2f %13.2f %6.2f\n' "$row" "$nf" "$dm" \
    "$(awk -v a="$nf" -v b="$dm" 'BEGIN {print (b > 0 ? a / b : 0)}')" "$nf_us" "$dm_us" \
    "$(awk -v a="$nf_us" -v b="$dm_us" 'BEGIN {print (a > 0 ? b / a : 0)}')"
done
echo
echo "qps: dnsperf's median over the runs (ratio: netfence / dnsmasq, higher is better for netfence)."
echo "us/q: server CPU time (user + system, from /proc) per completed query (ratio: dnsmasq /"
echo "netfence, higher is better for netfence). Every run, in order:"
for row in $rows; do
  echo "  $row qps: netfence ${results[$row,netfence]}| dnsmasq ${results[$row,dnsmasq]}"
  echo "  $row us/q: netfence ${results[$row,netfence_us]}| dnsmasq ${results[$row,dnsmasq_us]}"
  lost_nf=${results[$row,netfence_lost]} lost_dm=${results[$row,dnsmasq_lost]}
  if ((lost_nf + lost_dm > 0)); then
    echo "  $row queries lost over all runs: netfence $lost_nf, dnsmasq $lost_dm"
  fi
done
