#!/usr/bin/env bash
# Hostile traffic against `netfence run` (issue 6): a ClientHello dripped one byte every 200 ms
# (the first-bytes timeout ends it, with the right reason), an HTTP head and a ClientHello over
# the 16 KiB cap (denied with their reasons, on the peek path and on the inline path of a
# learned address), and 2,000 connections that never name a host, held open at once: they
# must not starve an established relay or a new allowed connection, and each is closed at the
# first-bytes timeout.
#
# Usage: run_hostile_test.sh path/to/netfence (as root; ctest e2e.run_hostile)
NF=$(readlink -f "${1:?usage: $0 path/to/netfence}")
: "${NETFENCE_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/world.sh"
[ "$(id -u)" -eq 0 ] || { echo "run_hostile: needs root (network namespaces)"; exit 1; }
world_up || exit 1
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/load.sh"
load_servers || exit 1

CURL="curl -s --max-time 5"
log_count() { grep -cE -- "$1" "$W_DIR/nf.log"; }

# --- Slow drip ----------------------------------------------------------------------------------
# One byte of a ClientHello naming an allowed host every 200 ms: the first-bytes deadline
# (1000 ms, for the whole hello, not per byte) runs out after a few bytes.
mark_logs
out=$(nf --allow-net api.example.com --first-bytes-timeout-ms 1000 -- \
  "$W_PY" "$LOAD" drip 203.0.113.10 443 api.example.com --interval-ms 200 --max-s 10)
echo "slow drip: $out"
check_has "slow drip: denied with a TLS alert" "$out" "result=denied"
if [[ $out =~ sent=([0-9]+)\ of=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -lt "${BASH_REMATCH[2]}" ]; then pass; else
  failed "slow drip: cut before the hello was complete"; show_observed "$out"
fi
check_log "slow drip: logged as no_name, naming the 1000 ms deadline" \
  '"event":"connect".*"port":443,.*"verdict":"deny".*"reason":"no_name","detail":".*within 1000 ms'
check_eq "slow drip: no server saw a connection" "$(conns_since)" ""

# --- Over the 16 KiB caps -----------------------------------------------------------------------
pad=$(head -c 20000 /dev/zero | tr '\0' a)
mark_logs
out=$(nf --allow-net api.example.com -- sh -c "
  $CURL -i -H 'X-Pad: $pad' -H 'Host: api.example.com' http://203.0.113.20/ | tr -d '\r' | grep -E '^(HTTP|X-Netfence)'
  $W_PY $LOAD drip 203.0.113.20 443 api.example.com --size 17000 --chunk 4096 --interval-ms 10")
check_has "oversize HTTP head (peek path): 403" "$out" "HTTP/1.1 403 Forbidden"
check_has "oversize HTTP head (peek path): reason bad_http_head" "$out" "X-Netfence-Reason: bad_http_head"
check_log "oversize HTTP head (peek path): logged" '"event":"connect".*"port":80,.*"verdict":"deny".*"reason":"bad_http_head"'
check_has "oversize ClientHello (peek path): TLS alert" "$out" "result=denied "
check_log "oversize ClientHello (peek path): logged" '"event":"connect".*"port":443,.*"verdict":"deny".*"reason":"bad_client_hello"'
# After a DNS lookup the address is learned: the connection is dialed at once and the first
# bytes are inspected as they pass; over the cap they are cut, never forwarded.
out=$(nf --allow-net api.example.com -- sh -c "
  dig +short api.example.com >/dev/null
  $CURL -i -H 'X-Pad: $pad' http://api.example.com/ | tr -d '\r' | grep -E '^(HTTP|X-Netfence)'
  $W_PY $LOAD drip api.example.com 443 api.example.com --size 17000 --chunk 4096 --interval-ms 10")
check_has "oversize HTTP head (inline path): 403" "$out" "HTTP/1.1 403 Forbidden"
check_has "oversize HTTP head (inline path): reason bad_http_head" "$out" "X-Netfence-Reason: bad_http_head"
check_log "oversize HTTP head (inline path): an inspect denial" '"event":"inspect".*"port":80,.*"reason":"bad_http_head"'
check_has "oversize ClientHello (inline path): TLS alert" "$out" "result=denied "
check_log "oversize ClientHello (inline path): an inspect denial" '"event":"inspect".*"port":443,.*"reason":"bad_client_hello"'
check_eq "oversize: the servers got nothing (the dialed connections were cut before any byte)" \
  "$(grep -E '"event":"close".*"port":(80|443),' "$W_DIR/nf.log" | grep -vc '"bytes_up":0,')" 0

# --- 2,000 held connections that never name a host ---------------------------------------------
# Half send nothing, half the first 60 bytes of a ClientHello; all to an address no rule allows,
# so netfence waits for a name (first-bytes timeout 8 s). Meanwhile an echo connection opened
# before them keeps echoing, and a new allowed connection (http://api.example.com/) is served.
out=$(nf --allow-net 203.0.113.10:7002,api.example.com --first-bytes-timeout-ms 8000 -- \
  "$W_PY" "$LOAD" peek 2000 203.0.113.20 443 --echo 203.0.113.10 7002 \
  --probe-host api.example.com --check-s 2 --wait-s 20)
echo "2,000 peeking connections: $out"
check_has "peeking: all 2000 held at once" "$out" "held_before=2000 held_after=2000 "
if [[ $out =~ echo_ok=([0-9]+)/([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -eq "${BASH_REMATCH[2]}" ] &&
  [ "${BASH_REMATCH[2]}" -ge 5 ]; then pass; else
  failed "peeking: the established connection kept echoing"; show_observed "$out"
fi
check_has "peeking: a new allowed connection was served meanwhile" "$out" "probe=good_api.example.com"
check_has "peeking: the partial hellos got a TLS alert at the timeout" "$out" "closed_alert=1000 "
check_has "peeking: the silent ones were reset at the timeout" "$out" "closed_reset=1000 "
check_has "peeking: none left open" "$out" "still_open=0"
check_eq "peeking: 2000 denials logged as no_name" \
  "$(log_count '"event":"connect".*"dst":"203\.0\.113\.20","port":443,.*"verdict":"deny".*"reason":"no_name"')" 2000

finish run_hostile
