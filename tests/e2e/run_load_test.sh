#!/usr/bin/env bash
# `netfence run` under load (issue 6), with bounded counts and times, in the test world:
#   - 10,000 concurrent idle connections through one sandbox: held (every one echoes a byte
#     afterwards) within netfence's connection cap, which it derives from RLIMIT_NOFILE (two
#     descriptors per connection in each descriptor table; beyond its own table's share the
#     gateway moves relays to worker threads with tables of their own: gateway.h
#     connection_limits_for_fd_limit); any over the cap are refused (too_many_connections).
#     Prints netfence's memory per connection (VmRSS) and checks only a generous bound
#     (< 64 KiB), and that the relays beyond the gateway's share left its table.
#   - 1,000 connections opened at once from one sandbox, allowed and denied IPs and SNIs mixed:
#     each is judged right (allowed ones served by the right server, denied ones refused) and the
#     decision log has exactly the right counts.
#   - 50 sandboxes running at the same time: each exits with its own code and reached what it
#     was allowed; afterwards nothing is left (processes, network namespaces, mounts, links).
#
# Usage: run_load_test.sh path/to/netfence (as root; ctest e2e.run_load)
NF=$(readlink -f "${1:?usage: $0 path/to/netfence}")
: "${NETFENCE_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/world.sh"
[ "$(id -u)" -eq 0 ] || { echo "run_load: needs root (network namespaces)"; exit 1; }
world_up || exit 1
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/load.sh"
load_servers || exit 1

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
log_count() { grep -cE -- "$1" "$W_DIR/nf.log"; }

# --- 10,000 concurrent idle connections ---------------------------------------------------------
# netfence raises its soft RLIMIT_NOFILE to the hard limit. A descriptor table carries
# per=(limit - min(256, limit / 4)) / 2 connections; the gateway's thread holds per and relays
# per - min(per / 4, 1024) itself, and moves the rest to at most 8 workers, each carrying
# per - min(per / 8, 256) (room for its splice pipes); at most 65536 in all. The client and the
# servers raise their limits too.
hard=$(ulimit -Hn)
reserve=$((hard / 4 < 256 ? hard / 4 : 256))
per=$(((hard - reserve) / 2))
[ "$per" -gt 65536 ] && per=65536
[ "$per" -lt 1 ] && per=1
local_relays=$((per - (per / 4 < 1024 ? per / 4 : 1024)))
per_worker=$((per - (per / 8 < 256 ? per / 8 : 256)))
workers=$(((65536 - per + per_worker - 1) / per_worker))
[ "$workers" -gt 8 ] && workers=8
cap=$((per + workers * per_worker))
[ "$cap" -gt 65536 ] && cap=65536
want=10000
[ "$want" -gt $((hard - 100)) ] && want=$((hard - 100))  # the client's own descriptors
held=$((want < cap ? want : cap))
if [ "$held" -lt 10000 ]; then
  echo "note: RLIMIT_NOFILE hard limit $hard: netfence can carry $cap connections, the client open" \
    "$want; expecting $held of $want held, $((want - held)) refused as too_many_connections"
fi
h=$W_DIR/hold
mkdir -p "$h"
bg_nf --allow-net 203.0.113.10:7002 -- "$W_PY" "$LOAD" hold 203.0.113.10 7002 "$want" --sync "$h"
if wait_for 100 test -f "$h/hold-started"; then
  sleep 0.2
  rss0=$(rss_kib "$BG_PID")
  load_mark
  t=$(date +%s%N)
  touch "$h/hold-go"
  wait_for 900 test -f "$h/hold-opened"
  wait_for 300 eval '[ "$(load_since accept good 7002)" -ge "$held" ]'
  open_ms=$(ms_since "$t")
  sleep 0.5  # connections over the cap are refused by now; none more reach the server
  rss1=$(rss_kib "$BG_PID")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$BG_PID/status")
  table=$(ls "/proc/$BG_PID/fd" | wc -l)  # the main thread's descriptor table
  accepted=$(load_since accept good 7002)
  touch "$h/hold-echo"
  bg_wait 900
  out=$(cat "$W_DIR/bg.out")
  per_conn=$(((rss1 - rss0) * 1024 / (held > 0 ? held : 1)))
  echo "idle connections: $out; server accepted $accepted in ${open_ms} ms;" \
    "netfence VmRSS ${rss0} KiB -> ${rss1} KiB: ${per_conn} bytes per connection;" \
    "$threads threads, $table descriptors in the gateway's table"
  check_eq "idle connections: netfence exits with the command's code" "$BG_CODE" 0
  refused_text=$([ "$want" -gt "$held" ] && echo "reset:$((want - held))" || echo "-")
  check_match "idle connections: the rest ($((want - held))) were reset, nothing else failed" "$out" "failed=$refused_text\$"
  check_eq "idle connections: the server got exactly $held" "$accepted" "$held"
  check_has "idle connections: every held connection still echoes afterwards" "$out" "echoed=$held "
  check_eq "idle connections: refused over the cap, as too_many_connections" \
    "$(log_count '"event":"connect".*"reason":"too_many_connections"')" "$((want - held))"
  check_eq "idle connections: one allowed connect event per held connection" \
    "$(log_count '"event":"connect".*"verdict":"allow"')" "$held"
  check "idle connections: memory per connection ${per_conn} B < 64 KiB" test "$per_conn" -lt 65536
  if [ "$held" -gt "$local_relays" ]; then
    spilled=$(((held - local_relays + per_worker - 1) / per_worker))
    check "idle connections: relays beyond the gateway's $local_relays went to worker threads" \
      test "$threads" -ge $((1 + spilled))
    check "idle connections: the gateway's table holds its share, not all $((2 * held)) sockets" \
      test "$table" -le $((2 * local_relays + 256))
  fi
  wait_for 100 eval '[ "$(load_since close good 7002)" -ge "$held" ]'
  check_eq "idle connections: the server saw them all closed" "$(load_since close good 7002)" "$held"
else
  failed "idle connections: the command did not start"
  kill -KILL "$BG_PID" 2>/dev/null
fi

# --- 1,000 connections at once, judged right --------------------------------------------------
# 250 of each: the allowed IP (echo at 203.0.113.10:7002), an IP no rule allows
# (203.0.113.20:7002: read for a name, none comes, reset), TLS naming api.example.com sent to
# evil's address (dialed by name: "good" must answer), TLS naming evil.example.net (alert).
load_mark
t=$(date +%s%N)
out=$(nf --allow-net 203.0.113.10:7002,api.example.com:8443 -- "$W_PY" "$LOAD" mixed 1000)
echo "1,000 mixed connections: $out (whole run $(ms_since "$t") ms)"
check_has "mixed: 250 allowed-IP connections echoed" "$out" "ip_allow=echo:250 "
check_has "mixed: 250 denied-IP connections reset" "$out" "ip_deny=reset:250 "
check_has "mixed: 250 allowed-SNI connections answered by good" "$out" "sni_allow=good:250 "
check_has "mixed: 250 denied-SNI connections got access_denied" "$out" "sni_deny=alert_access_denied:250 "
check_eq "mixed: servers saw 250 at good:7002, 250 at good:8443, none at evil" \
  "$(load_since accept good 7002) $(load_since accept good 8443) $(load_since accept evil 7002) $(load_since accept evil 8443)" \
  "250 250 0 0"
check_eq "mixed log: 1000 connect events" "$(log_count '"event":"connect"')" 1000
check_eq "mixed log: 250 allowed by the IP rule" \
  "$(log_count '"event":"connect".*"dst":"203\.0\.113\.10","port":7002,"name":null,"name_source":"none","verdict":"allow","rule":"203\.0\.113\.10:7002","reason":"allow_rule"')" 250
check_eq "mixed log: 250 denied at the other IP (no name)" \
  "$(log_count '"event":"connect".*"dst":"203\.0\.113\.20","port":7002,.*"verdict":"deny".*"reason":"no_name"')" 250
check_eq "mixed log: 250 allowed by SNI, dialed by name" \
  "$(log_count '"event":"connect".*"dst":"203\.0\.113\.20","port":8443,"name":"api\.example\.com","name_source":"sni","verdict":"allow","rule":"api\.example\.com:8443".*"dialed":"203\.0\.113\.10:8443"')" 250
check_eq "mixed log: 250 denied by SNI" \
  "$(log_count '"event":"connect".*"dst":"203\.0\.113\.10","port":8443,"name":"evil\.example\.net","name_source":"sni","verdict":"deny","rule":null,"reason":"no_match"')" 250
check_eq "mixed log: 500 close events (one per allowed connection)" "$(log_count '"event":"close"')" 500

# --- 50 sandboxes at the same time ----------------------------------------------------------------
# Each command waits until all 50 are running, then fetches its allowed host, is refused an IP
# literal, and exits with its own code (10 + i).
mounts() { cut -d' ' -f5 /proc/self/mountinfo | grep -v '^/run/netns' | sort; }
links() { ip -o link | cut -d: -f2 | tr -d ' ' | grep -i netfence; in_host ip -o link | cut -d: -f2 | sort; }
mounts_before=$(mounts)
links_before=$(links)
s=$W_DIR/many
mkdir -p "$s"
t=$(date +%s%N)
pids=()
for i in $(seq 1 50); do
  ip netns exec "$W_HOST" "$NF" run --upstream 198.51.100.2 --allow-net api.example.com -- sh -c "
    readlink /proc/self/ns/net
    touch $s/up.$i
    n=0
    while [ \$(ls $s | grep -c '^up\.') -lt 50 ] && [ \$n -lt 300 ]; do sleep 0.1; n=\$((n + 1)); done
    echo together=\$(ls $s | grep -c '^up\.')
    curl -s --max-time 10 http://api.example.com/
    curl -s -o /dev/null -w 'literal=%{http_code}\n' --max-time 10 http://203.0.113.20/
    exit $((10 + i))" >"$s/out.$i" 2>&1 &
  pids+=($!)
done
codes_ok=0
served=0
refused=0
together=0
for i in $(seq 1 50); do
  wait "${pids[$((i - 1))]}"
  code=$?
  [ "$code" -eq $((10 + i)) ] && codes_ok=$((codes_ok + 1))
  grep -q '^good api.example.com$' "$s/out.$i" && served=$((served + 1))
  grep -q '^literal=403$' "$s/out.$i" && refused=$((refused + 1))
  grep -q '^together=50$' "$s/out.$i" && together=$((together + 1))
done
echo "50 sandboxes: all done in $(ms_since "$t") ms"
check_eq "50 sandboxes: all 50 ran at the same time" "$together" 50
check_eq "50 sandboxes: each exited with its own code" "$codes_ok" 50
check_eq "50 sandboxes: each reached its allowed host" "$served" 50
check_eq "50 sandboxes: each was refused the IP literal (403)" "$refused" 50
[ "$codes_ok" -eq 50 ] || head -n 5 "$s"/out.* | head -n 40
namespaces=$(cat "$s"/out.* | grep -o '^net:\[[0-9]*\]' | sort -u)
check_eq "50 sandboxes: 50 distinct network namespaces" "$(grep -c . <<<"$namespaces")" 50
# Afterwards: no process of theirs, no process in any of their namespaces, no namespace pinned by
# a mount, no mount or link added.
check_eq "afterwards: no process left in the host namespace" "$(ip netns pids "$W_HOST")" ""
in_use=$(for p in /proc/[0-9]*; do readlink "$p/ns/net" 2>/dev/null; done | sort -u | grep -xF "$namespaces")
check_eq "afterwards: no process in any of the 50 namespaces" "$in_use" ""
check_eq "afterwards: no namespace kept by a mount" \
  "$(grep -F "$namespaces" /proc/self/mountinfo)" ""
check_eq "afterwards: no mount added" "$(mounts)" "$mounts_before"
check_eq "afterwards: no link added (host namespace, netfence* links)" "$(links)" "$links_before"

finish run_load
