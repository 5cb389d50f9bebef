#!/usr/bin/env bash
# `netfence dns` end to end: the real binary, a real upstream (dnsmasq from Debian, which logs
# every query it receives) and real clients (dig, python sockets), all on 127.0.0.1 only.
# Answers use documentation addresses (and the rebinding traps 10.1.2.3 / 169.254.169.254, which
# are only ever written into answers, never contacted).
#
#   tests/e2e/dns_test.sh PATH/TO/netfence
#
# Prints one line per failure and a closing "dns e2e: N passed, M failed"; exits non-zero on any
# failure. Every process it starts is stopped on exit, even on failure.
set -u
NF=${1:?usage: dns_test.sh PATH/TO/netfence}
for tool in dnsmasq dig python3; do
  command -v "$tool" >/dev/null || { echo "dns e2e: needs $tool"; echo "dns e2e: 0 passed, 1 failed"; exit 1; }
done

pass=0
failed=0
dir=$(mktemp -d /tmp/netfence-dns-e2e.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ok() { pass=$((pass + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
# check DESCRIPTION ACTUAL EXPECTED
check() { if [[ "$2" == "$3" ]]; then ok; else bad "$1: got '$2', want '$3'"; fi; }
# check_match DESCRIPTION ACTUAL REGEX
check_match() { if [[ "$2" =~ $3 ]]; then ok; else bad "$1: got '$2', want /$3/"; fi; }

free_port() {
  python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# dig against a port: q PORT NAME TYPE [dig flags...] -> the short answer, sorted, space-joined
q() {
  local port=$1 name=$2 type=$3
  shift 3
  dig +short +time=3 +tries=1 -p "$port" @127.0.0.1 "$name" "$type" "$@" 2>&1 | sort | tr '\n' ' ' | sed 's/ $//'
}
# status PORT NAME TYPE [dig flags...] -> NOERROR, NXDOMAIN, SERVFAIL, ...
status() {
  local port=$1 name=$2 type=$3
  shift 3
  dig +time=3 +tries=1 -p "$port" @127.0.0.1 "$name" "$type" "$@" 2>&1 |
    sed -n 's/.*status: \([A-Z]*\),.*/\1/p' | head -1
}
# count PORT NAME TYPE: records in the answer section
count() {
  dig +noall +answer +time=3 +tries=1 -p "$1" @127.0.0.1 "$2" "$3" "${@:4}" 2>/dev/null | grep -c .
}

# wait_answer PORT NAME REGEX: bounded wait until the server on PORT answers NAME's A query with
# something matching REGEX (an answer, not just output: dig prints "connection refused" to stdout
# while nothing listens).
wait_answer() {
  for _ in $(seq 100); do
    [[ $(dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null) =~ $3 ]] && return 0
    sleep 0.05
  done
  return 1
}

wait_ready() {  # PORT LOG: an address for ready.invalid, else LOG is printed
  wait_answer "$1" ready.invalid '^[0-9]+(\.[0-9]+){3}$' && return 0
  echo "server on port $1 did not come up:"
  cat "$2"
  return 1
}

# ---- the upstream: dnsmasq, authoritative for the test names, logging every query ----
up=$(free_port)
big_records=()
for i in $(seq 1 40); do big_records+=(--host-record=big.example.com,198.51.100.$i); done
dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll --bind-interfaces \
  --listen-address=127.0.0.1 --port="$up" --user=root --local-ttl=60 \
  --log-queries --log-facility="$dir/upstream.log" --edns-packet-max=512 \
  --address=/api.example.com/203.0.113.10 --address=/api.example.com/2001:db8:2::10 \
  --address=/example.org/203.0.113.11 --address=/ready.invalid/192.0.2.1 \
  --address=/rebind.example.com/10.1.2.3 --address=/meta.example.com/169.254.169.254 \
  --address=/other.example.net/203.0.113.20 \
  --txt-record=api.example.com,"hello from upstream" "${big_records[@]}" \
  >"$dir/upstream.out" 2>&1 &
pids+=($!)
wait_ready "$up" "$dir/upstream.out" || { echo "dns e2e: 0 passed, 1 failed"; exit 1; }

upstream_saw() { grep -c "query\[[A-Z0-9]*\] $1 from" "$dir/upstream.log"; }

# start NAME ARGS...: netfence dns on a fresh port; sets $port and $pid
start() {
  local name=$1
  shift
  port=$(free_port)
  "$NF" dns --listen 127.0.0.1:"$port" --upstream 127.0.0.1:"$up" "$@" \
    >"$dir/$name.out" 2>"$dir/$name.err" &
  pid=$!
  pids+=("$pid")
  wait_ready "$port" "$dir/$name.err"
}

# ---- allowlist mode ----
start allow --allow-net 'api.example.com,*.example.org,ready.invalid,rebind.example.com,meta.example.com,big.example.com' \
  --log "$dir/decisions.jsonl" --timeout-ms 500 || exit 1
P=$port
check "allowed A relayed" "$(q $P api.example.com A)" "203.0.113.10"
check "allowed AAAA relayed" "$(q $P api.example.com AAAA)" "2001:db8:2::10"
check "allowed TXT relayed" "$(q $P api.example.com TXT)" '"hello from upstream"'
check "case variant" "$(q $P API.Example.COM A)" "203.0.113.10"
check "trailing-dot variant" "$(q $P api.example.com. A)" "203.0.113.10"
check "wildcard subdomain" "$(q $P a.example.org A)" "203.0.113.11"
check "wildcard deep subdomain" "$(q $P x.y.example.org A)" "203.0.113.11"
check "wildcard apex not covered" "$(q $P example.org A)" "0.0.0.0"
check "over TCP" "$(q $P api.example.com A +tcp)" "203.0.113.10"

# Blocked names: answered locally, never forwarded.
before=$(grep -c . "$dir/upstream.log")
check "blocked A" "$(q $P secret-1.evil.example A)" "0.0.0.0"
check "blocked AAAA" "$(q $P secret-2.evil.example AAAA)" "::"
for t in TXT MX ANY SRV CAA NS; do
  check "blocked $t is NODATA" "$(status $P secret-3.evil.example $t)/$(count $P secret-3.evil.example $t)" "NOERROR/0"
done
check "blocked A over TCP" "$(q $P secret-4.evil.example A +tcp)" "0.0.0.0"
check "blocked TXT over TCP" "$(status $P secret-5.evil.example TXT +tcp)" "NOERROR"
check "sub-name of an exact rule is blocked" "$(q $P x.api.example.com A)" "0.0.0.0"
check "other.example.net is blocked" "$(q $P other.example.net A)" "0.0.0.0"
check "HTTPS withheld for an allowed name" "$(status $P api.example.com HTTPS)/$(count $P api.example.com HTTPS)" "NOERROR/0"
check "SVCB withheld" "$(count $P api.example.com TYPE64)" "0"
check "DoH canary" "$(status $P use-application-dns.net A)" "NXDOMAIN"
check "upstream saw no blocked name" "$(grep -cE 'evil\.example|x\.api\.example|other\.example\.net|use-application-dns|HTTPS|type=64|type=65' "$dir/upstream.log")" "0"
check "upstream saw nothing at all for the blocked queries" "$(grep -c . "$dir/upstream.log")" "$before"

# Rebinding: private and metadata answers are filtered out.
check "rebinding: private address filtered" "$(q $P rebind.example.com A)" ""
check "rebinding: answer still NOERROR" "$(status $P rebind.example.com A)" "NOERROR"
check "rebinding: metadata address filtered" "$(q $P meta.example.com A)" ""
check "rebinding: upstream asked once (then cached)" "$(upstream_saw rebind.example.com)" "1"

# The upstream truncates at 512 bytes: netfence retries over TCP; the client gets every record.
check "upstream TC -> TCP retry (UDP client, 1232-byte buffer)" "$(count $P big.example.com A +bufsize=1232)" "40"
check "TC for a client with a 512-byte limit" "$(dig +time=3 +tries=1 +ignore +noedns -p $P @127.0.0.1 big.example.com A | grep -c 'flags:.* tc')" "1"
check "TCP client gets the whole answer" "$(count $P big.example.com A +tcp)" "40"

# Malformed input: FORMERR or nothing, and the server keeps serving.
python3 - "$P" >"$dir/malformed.out" 2>&1 <<'EOF'
import socket, sys
port = int(sys.argv[1])
cases = [b"\x12", b"\x12\x34\x01\x00\x00\x01", b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6,
         b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
         b"\x12\x34\x81\x80" + b"\x00" * 8, bytes(range(256)) * 4]
out = []
for c in cases:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    s.sendto(c, ("127.0.0.1", port))
    try:
        r = s.recv(4096)
        out.append("rcode=%d" % (r[3] & 0x0f) if len(r) >= 12 else "short")
    except socket.timeout:
        out.append("none")
# A TCP frame that cannot hold a header: the connection is closed.
t = socket.create_connection(("127.0.0.1", port), timeout=2)
t.sendall(b"\x00\x03abc")
try:
    out.append("tcp:" + ("closed" if t.recv(10) == b"" else "data"))
except (socket.timeout, ConnectionResetError):
    out.append("tcp:closed")
print(" ".join(out))
EOF
check "malformed messages" "$(cat "$dir/malformed.out")" "none none rcode=1 rcode=1 none rcode=1 tcp:closed"
check "still serving after malformed input" "$(q $P api.example.com A)" "203.0.113.10"

# Decision log: one JSON event per message, each parseable.
sleep 0.2
log_check=$(python3 - "$dir/decisions.jsonl" <<'EOF'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
dns = [e for e in events if e.get("event") == "dns"]
bad = [e for e in events if e.get("event") != "dns" or "verdict" not in e or "answer" not in e]
sink = [e for e in dns if e.get("name") == "secret-1.evil.example"]
fwd = [e for e in dns if e.get("name") == "api.example.com" and e.get("qtype") == "A"]
print(len(bad), sink[0]["answer"], sink[0]["verdict"], sink[0]["reason"],
      fwd[0]["answer"], fwd[0]["verdict"], fwd[0]["rule"], len(dns))
EOF
)
read -r nbad sink_answer sink_verdict sink_reason fwd_answer fwd_verdict fwd_rule nevents <<<"$log_check"
check "log: every line is a dns event" "$nbad" "0"
check "log: sinkhole event" "$sink_answer $sink_verdict $sink_reason" "sinkhole deny no_match"
check "log: forwarded event" "$fwd_answer $fwd_verdict $fwd_rule" "forwarded allow api.example.com"
kill -TERM "$pid"
wait "$pid"
check "clean exit on SIGTERM" "$?" "0"
queries=$(sed -n 's/.*dns stopped: \([0-9]*\) queries.*/\1/p' "$dir/allow.err")
check "log: one event per message received" "$nevents" "$queries"

# ---- upstream down ----
dead=$(free_port)  # nothing listens there: refused at once
port=$(free_port)
"$NF" dns --listen 127.0.0.1:"$port" --upstream 127.0.0.1:"$dead" --allow-net 'api.example.com,ready.invalid' \
  -q --timeout-ms 300 2>"$dir/down.err" &
pid=$!
pids+=("$pid")
wait_answer "$port" x.invalid '^0\.0\.0\.0$'  # the sinkhole answers; the upstream cannot
check "upstream refused -> SERVFAIL" "$(status $port api.example.com A)" "SERVFAIL"
check "blocked names still answered with the upstream down" "$(q $port x.invalid A)" "0.0.0.0"
# A silent upstream (reads, never answers): SERVFAIL after the per-try timeout, well within dig's.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
time.sleep(60)' >"$dir/silent.port" &
pids+=($!)
for _ in $(seq 50); do [[ -s $dir/silent.port ]] && break; sleep 0.05; done
port=$(free_port)
"$NF" dns --listen 127.0.0.1:"$port" --upstream 127.0.0.1:"$(cat "$dir/silent.port")" \
  --allow-net api.example.com -q --timeout-ms 300 2>"$dir/silent.err" &
pids+=($!)
wait_answer "$port" x.invalid '^0\.0\.0\.0$'  # the sinkhole answers; the upstream cannot
check "upstream silent -> SERVFAIL" "$(status $port api.example.com A)" "SERVFAIL"

# ---- blocked-answer modes and full access ----
start nx --allow-net 'api.example.com,ready.invalid' --dns-blocked-answer nxdomain -q || exit 1
check "--dns-blocked-answer nxdomain" "$(status $port secret-6.evil.example A)" "NXDOMAIN"
check "nxdomain mode: allowed still relayed" "$(q $port api.example.com A)" "203.0.113.10"
start refused --allow-net 'api.example.com,ready.invalid' --dns-blocked-answer refused -q || exit 1
check "--dns-blocked-answer refused" "$(status $port secret-7.evil.example AAAA)" "REFUSED"
start ipallow --allow-net 'rebind.example.com,ready.invalid,10.0.0.0/8' -q || exit 1
check "rebinding: an IP/CIDR rule keeps the private address" "$(q $port rebind.example.com A)" "10.1.2.3"
start full --deny-net 'other.example.net' -q || exit 1
check "full access forwards everything" "$(q $port api.example.com A)" "203.0.113.10"
check "full access: deny_net name sinkholed" "$(q $port other.example.net A)" "0.0.0.0"
check "full access: deny_net name not forwarded" "$(upstream_saw other.example.net)" "0"
check "full access: private answers pass" "$(q $port rebind.example.com A)" "10.1.2.3"
check "full access: metadata answers do not" "$(q $port meta.example.com A)" ""
check "full access: DoH canary" "$(status $port use-application-dns.net A)" "NXDOMAIN"

# ---- bad flags ----
"$NF" dns --listen 127.0.0.1:"$(free_port)" --upstream not-an-address -q 2>"$dir/bad.err"
check "bad --upstream exits 2" "$?" "2"
check_match "bad --upstream message" "$(cat "$dir/bad.err")" "not-an-address"
"$NF" dns --listen 127.0.0.1:"$(free_port)" --allow-net '*.com' -q 2>"$dir/bad.err"
check "bad rule exits 2" "$?" "2"

echo "dns e2e: $pass passed, $failed failed"
[[ $failed -eq 0 ]]
