#!/usr/bin/env bash
# How `netfence run` carries what is allowed, and how it says no (SPEC 1.3, 1.6): port-qualified
# rules and the 403 that names the rule that would allow a request; hostname rules on non-TLS
# ports through addresses learned from netfence's own DNS answers (a client-speaks-first echo
# and a server-speaks-first banner); a ~1.8 KB ClientHello split into several TLS records and
# TCP segments; a client that connects and says nothing; UDP to allowed and denied addresses;
# the JSON decision log (every field of docs/log.md; a close event with bytes and duration).
#
# Usage: run_protocols_test.sh path/to/netfence (as root; ctest e2e.run_protocols)
NF=$(readlink -f "${1:?usage: $0 path/to/netfence}")
: "${NETFENCE_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/world.sh"
[ "$(id -u)" -eq 0 ] || { echo "run_protocols: needs root (network namespaces)"; exit 1; }
world_up || exit 1

CURL="curl -s --max-time 5"
DIG="dig +time=2 +tries=1"
CLIENT="$W_PY $W_CLIENTS"

# --- A port on a hostname rule is enforced -----------------------------------------------------
mark_logs
out=$(nf --allow-net api.example.com:443 -- sh -c "
  $CURL -k https://api.example.com/; $CURL -6 -k https://api.example.com/
  echo ===; $CURL -i http://api.example.com/
  echo ===; $CURL -6 -i http://api.example.com/
  echo ===; printf 'hello\n' | nc -w 3 -N api.example.com 5432; echo")
part() { awk -v n="$1" '/^===$/ { i++; next } i == n' <<<"$2"; }  # part N TEXT: Nth "==="-section
sec=$(part 0 "$out")
h4=$(part 1 "$out")
h6=$(part 2 "$out")
other=$(part 3 "$out")
check_eq "api.example.com:443: https over v4 and v6" "$(grep -c '^good api.example.com$' <<<"$sec")" 2
check_has "api.example.com:443: http :80 gets 403 (v4)" "$h4" "HTTP/1.1 403 Forbidden"
check_has "api.example.com:443: 403 body names the rule that would allow it (v4)" "$h4" "To allow it, add --allow-net api.example.com:80"
check_has "api.example.com:443: 403 body names the rule that matched another port" "$h4" "'api.example.com:443'"
check_has "api.example.com:443: 403 reason wrong_port" "$h4" "X-Netfence-Reason: wrong_port"
check_has "api.example.com:443: http :80 gets 403 (v6)" "$h6" "To allow it, add --allow-net api.example.com:80"
check_not_served "api.example.com:443: http :80 never served" "$h4$h6" good
check_lacks "api.example.com:443: port 5432 not reachable" "$other" "hello"
check_eq "api.example.com:443: only the 443 servers saw connections" "$(conns_since | cut -d' ' -f1,2 | sort -u)" "good 443"
check_log "api.example.com:443: the :80 denial is logged as wrong_port with the rule" \
  '"event":"connect".*"port":80,"name":"api\.example\.com".*"verdict":"deny","rule":"api\.example\.com:443","reason":"wrong_port"'

# --- Hostname rules on non-TLS ports, through learned addresses --------------------------------
mark_logs
out=$(nf --allow-net api.example.com:5432,api.example.com:2222 -- sh -c "
  printf 'ping-5432\n' | nc -w 3 -N api.example.com 5432
  $CLIENT banner api.example.com 2222")
check_has "learned address: echo on api.example.com:5432" "$out" "ping-5432"
check_has "learned address: banner-first server on :2222 speaks first, then echoes" "$out" "banner=BANNER echo=hi"
check_log "learned address: logged with name_source dns" \
  '"event":"connect".*"dst":"203\.0\.113\.10","port":5432,"name":"api\.example\.com","name_source":"dns","verdict":"allow","rule":"api\.example\.com:5432"'
mark_logs
out=$(nf --allow-net api.example.com:5432,api.example.com:2222 --first-bytes-timeout-ms 1000 -- sh -c "
  printf 'ping-direct\n' | nc -w 3 -N 203.0.113.10 5432
  $CLIENT banner 203.0.113.10 2222
  printf 'ping-learned-80\n' | nc -w 3 -N api.example.com 80")
check_lacks "not learned (IP literal, no DNS answer): no echo" "$out" "ping-direct"
check_lacks "not learned: the banner server is not dialed" "$out" "BANNER"
check_lacks "learned address on a port no rule allows (:80): not relayed" "$out" "ping-learned-80"
check_eq "not learned / wrong port: no server saw a connection" "$(conns_since)" ""

# --- A large ClientHello split into several TLS records ----------------------------------------
# Sent to evil's address so that netfence must read the whole ClientHello to get the SNI; an
# allowed name is dialed by name (good answers), a blocked one gets netfence's access_denied
# alert (15 03 03 00 02 02 31) and nothing is dialed.
mark_logs
out=$(nf --allow-net api.example.com -- sh -c "
  $CLIENT hello 203.0.113.20 443 api.example.com --records 3 --size 1800
  $CLIENT hello 2001:db8:2::20 443 api.example.com --records 3 --size 1800
  $CLIENT hello 203.0.113.20 443 api.example.com --records 8 --size 4000 --gap-ms 10
  $CLIENT hello 203.0.113.20 443 api.example.com --records 1 --size 1800")
check_eq "split ClientHello (3 records, 1.8 KB, v4, v6; 8 records 4 KB; 1 record): ServerHello every time" \
  "$(grep -c 'result=serverhello' <<<"$out")" 4
check_has "split ClientHello: the hello was ~1.8 KB in 3 records" "$out" "hello_len=1800 records=3"
check_eq "split ClientHello: only good's :443 saw connections" "$(conns_since | cut -d' ' -f1,2 | sort -u)" "good 443"
check_log "split ClientHello: the SNI was read across records" \
  '"event":"connect".*"dst":"203\.0\.113\.20","port":443,"name":"api\.example\.com","name_source":"sni","verdict":"allow"'
mark_logs
out=$(nf --allow-net api.example.com -- sh -c "
  $CLIENT hello 203.0.113.20 443 evil.example.net --records 3 --size 1800
  $CLIENT hello 203.0.113.10 443 evil.example.net --records 3 --size 1800
  $CLIENT hello 2001:db8:2::20 443 other.example.org --records 1")
check_eq "ClientHello naming a blocked name (split or not, v4/v6): access_denied alert" \
  "$(grep -c 'result=denied' <<<"$out")" 3
check_eq "ClientHello naming a blocked name: no server saw a connection" "$(conns_since)" ""
check_log "ClientHello naming a blocked name: logged (sni, deny)" \
  '"event":"connect".*"name":"evil\.example\.net","name_source":"sni","verdict":"deny"'

# --- A client that connects and says nothing --------------------------------------------------
mark_logs
out=$(nf --allow-net api.example.com --first-bytes-timeout-ms 1000 -- \
  $CLIENT silent 203.0.113.20 443 --probe-host api.example.com --wait 5)
check_has "silent client: other connections work meanwhile" "$out" "probe=good_api.example.com"
if [[ $out =~ result=(eof|reset)\ ms=([0-9]+) ]] && [ "${BASH_REMATCH[2]}" -ge 800 ] &&
  [ "${BASH_REMATCH[2]}" -le 4000 ]; then pass; else
  failed "silent client: closed by netfence after the 1000 ms first-bytes timeout"; show_observed "$out"
fi
check_log "silent client: denied with reason no_name" \
  '"event":"connect".*"dst":"203\.0\.113\.20","port":443,.*"verdict":"deny".*"reason":"no_name"'
check_eq "silent client: evil never saw a connection" "$(conns_since evil)" ""

# --- UDP ---------------------------------------------------------------------------------------
# Allowed by an IP rule: the datagram goes out and the echo comes back (SPEC 1.6).
mark_logs
out=$(nf --allow-net 203.0.113.10 -- $CLIENT udp 203.0.113.10 9999)
check_has "UDP to an address an IP rule allows: echo comes back" "$out" "result=echo"
check_log "UDP flow: one connect event (udp, allow, the rule)" \
  '"event":"connect".*"proto":"udp".*"dst":"203\.0\.113\.10","port":9999,.*"verdict":"allow","rule":"203\.0\.113\.10"'
# A port-qualified rule: only that port. Full access relays UDP too.
out=$(nf --allow-net 203.0.113.10:9999 -- $CLIENT udp 203.0.113.10 9999)
check_has "UDP under a port-qualified IP rule: echo comes back" "$out" "result=echo"
out=$(nf -- $CLIENT udp 203.0.113.10 9999)
check_has "UDP in full access: echo comes back" "$out" "result=echo"
# Overlapping IP rules (the kernel refuses overlapping set elements: netfence splits them).
out=$(nf --allow-net 203.0.113.0/24:9000-9999,203.0.113.10,203.0.113.10:9990-10010 -- \
  $CLIENT udp 203.0.113.10 9999 2>&1)
check_has "UDP under overlapping IP rules: the sandbox starts and the echo comes back" "$out" \
  "result=echo"
out=$(nf --allow-net 203.0.113.0/24:9000-9998,203.0.113.10:1-9000 -- \
  $CLIENT udp 203.0.113.10 9999 2>&1)
check_lacks "UDP to a port no overlapping rule covers: no echo" "$out" "result=echo"
mark_logs
out=$(nf --allow-net 203.0.113.10:9998 -- $CLIENT udp 203.0.113.10 9999)
check_lacks "UDP to a port the IP rule does not cover: no echo" "$out" "result=echo"
check_eq "UDP to a port the IP rule does not cover: the server never saw it" "$(conns_since good-udp)" ""
# Denied (hostname rules only): fails at once (refused), never a timeout, never reaches the server.
mark_logs
out=$(nf --allow-net api.example.com -- sh -c "$CLIENT udp 203.0.113.10 9999; $CLIENT udp 2001:db8:2::10 9999")
check_eq "UDP to a denied address (v4, v6): fails at once, not a timeout" \
  "$(grep -cE 'result=(refused|eperm) ' <<<"$out")" 2
check_eq "UDP to a denied address: the UDP server never saw a datagram" "$(conns_since good-udp)" ""

# --- The JSON decision log ---------------------------------------------------------------------
log="$W_DIR/decisions.jsonl"
rm -f "$log"
out=$(in_host "$NF" run --upstream 198.51.100.2 --log "$log" --allow-net api.example.com -- sh -c "
  $CURL http://api.example.com/; $CURL http://203.0.113.20/ >/dev/null; $DIG +short evil.example.net")
check_has "JSON log run: the allowed request worked" "$out" "good api.example.com"
verdict=$("$W_PY" - "$log" <<'PY'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
events, problems = [], []
fields = ["time", "sandbox", "event", "proto", "src", "dst", "port", "name", "name_source",
          "verdict", "rule", "reason"]
for n, line in enumerate(lines, 1):
    try:
        e = json.loads(line)
    except ValueError:
        problems.append(f"line {n} is not JSON: {line[:80]}")
        continue
    missing = [f for f in fields if f not in e]
    if missing:
        problems.append(f"line {n} lacks {missing}")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", str(e.get("time"))):
        problems.append(f"line {n}: bad time {e.get('time')!r}")
    if not re.fullmatch(r"nf-\d+", str(e.get("sandbox"))):
        problems.append(f"line {n}: bad sandbox {e.get('sandbox')!r}")
    events.append(e)
def find(**kv):
    return [e for e in events if all(e.get(k) == v for k, v in kv.items())]
conn = find(event="connect", proto="tcp", dst="203.0.113.10", port=80, name="api.example.com",
            name_source="dns", verdict="allow", rule="api.example.com")
if not conn:
    problems.append("no allow connect event for api.example.com:80")
else:
    c = conn[0]
    if not re.fullmatch(r"192\.0\.0\.2:\d+|\[[0-9a-f:]+\]:\d+|[0-9.]+:\d+", c["src"]):
        problems.append(f"connect src {c['src']!r}")
    close = [e for e in find(event="close") if e.get("id") == c.get("id")]
    if not close:
        problems.append("no close event for the allowed connection")
    else:
        z = close[0]
        if not (isinstance(z.get("bytes_up"), int) and z["bytes_up"] > 0 and
                isinstance(z.get("bytes_down"), int) and z["bytes_down"] > 0 and
                isinstance(z.get("duration_ms"), (int, float)) and z["duration_ms"] >= 0):
            problems.append(f"close event without bytes/duration: {z}")
deny = find(event="connect", dst="203.0.113.20", port=80, verdict="deny")
if not deny or deny[0]["rule"] is not None or not deny[0]["reason"]:
    problems.append(f"no deny connect event for 203.0.113.20:80 with a reason: {deny}")
dns = find(event="dns", name="evil.example.net", name_source="dns", verdict="deny")
if not dns or dns[0].get("answer") != "sinkhole" or dns[0].get("qtype") not in ("A", "AAAA"):
    problems.append(f"no sinkhole dns event for evil.example.net: {dns}")
print("\n".join(problems) if problems else f"ok {len(events)} events")
PY
)
check_has "JSON log: every line an object with the documented fields; connect/close/deny/dns events" "$verdict" "ok "
# --log-format json without --log: denials as JSON lines on stderr.
err=$(in_host "$NF" run --upstream 198.51.100.2 --log-format json --allow-net api.example.com -- \
  $CURL http://203.0.113.20/ 2>&1 >/dev/null)
line=$(grep '"event":"connect"' <<<"$err" | head -n 1)
check_has "--log-format json: the denial is a JSON line on stderr" \
  "$("$W_PY" -c 'import json,sys; e=json.loads(sys.argv[1]); print(e["verdict"], e["dst"], e["port"])' "$line" 2>&1)" \
  "deny 203.0.113.20 80"

finish run_protocols
