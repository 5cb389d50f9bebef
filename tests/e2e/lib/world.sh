# The e2e test world (SPEC 3), sourced by tests/e2e/*_test.sh. Builds two network namespaces on
# documentation addresses and tears them down on exit, even when the test fails:
#
#   ns $W_HOST (netfence runs here)            ns $W_INET ("the internet")
#   veth h: 198.51.100.1/24, 2001:db8:1::1/64 <-> veth i: 198.51.100.2/24, 2001:db8:1::2/64
#   routes to 203.0.113.0/24, 2001:db8:2::/48       lo: 203.0.113.10, .11, .20  2001:db8:2::10, ::20
#   and to 169.254.169.254, 10.1.2.3 via the        also 169.254.169.254 and 10.1.2.3 (decoys:
#   inet side                                       netfence must never dial them for a sandbox)
#                                                   dnsmasq on 198.51.100.2:53 (the upstream)
#
# Names (served by dnsmasq; everything else NXDOMAIN):
#   api.example.com, www.example.com -> 203.0.113.10, 2001:db8:2::10   ("good")
#   other.example.org                -> 203.0.113.11                    ("other")
#   evil.example.net                 -> 203.0.113.20, 2001:db8:2::20   ("evil")
#   rebind.example.com -> 10.1.2.3;  meta.example.com -> 169.254.169.254
#   loop.example.com -> 127.0.0.1;   self.example.com -> 198.51.100.1 (the host's own address)
# Servers: HTTP on :80 and HTTPS on :443 at .10/.11/.20 (and the v6 ones) answering with their
# own identity ("good", "other", "evil"; the decoys "metadata", "private"); TCP echo on
# 203.0.113.10:5432; a banner-first server on 203.0.113.10:2222; UDP echo on 203.0.113.10:9999.
# Every connection a server accepts is logged in $W_DIR/conns.log ("<identity> <port> <peer>");
# dnsmasq logs every query it receives in $W_DIR/dnsmasq.log.
# Nothing here sends a packet outside these namespaces.
#
# W_DNS_TTL (set before world_up; default unset: dnsmasq's TTL 0) gives those answers a TTL, for
# benchmarks that want resolvers to cache them (bench/compare.sh).
#
# world_host_self starts (on demand) HTTP servers in the host namespace on 127.0.0.1:8081,
# 198.51.100.1:8081 and [2001:db8:1::1]:8081 answering "hostself": the host's own services,
# which a sandbox must never reach.
#
# Helpers for tests (after world_up):
#   nf ARGS...  runs `$NF run --upstream <dnsmasq> --log $W_DIR/nf.log ARGS...` in the host
#               namespace (the test sets NF to the binary); nf.log (JSON lines) is emptied per run
#   $W_PY $W_CLIENTS ...  hand-made TLS/UDP/TCP clients (lib/clients.py) for inside a sandbox
#   check_has / check_lacks / check_not_served / check_eq / check_log: assertions that print
#               what was observed and the last run's decisions on failure
#   mark_logs, then conns_since / dns_queries_since: what servers and dnsmasq saw since the mark

set -u
W_ID="nf$$"
W_HOST="${W_ID}h"
W_INET="${W_ID}i"
W_DIR=$(mktemp -d /tmp/netfence-world.XXXXXX)
W_PIDS=()

world_down() {
  for pid in "${W_PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
  for ns in "$W_HOST" "$W_INET"; do
    if ip netns list | grep -qw "$ns"; then
      # Kill whatever still runs in the namespace, then delete it.
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
      ip netns delete "$ns" 2>/dev/null
    fi
  done
  rm -rf "$W_DIR"
}

in_host() { ip netns exec "$W_HOST" "$@"; }
in_inet() { ip netns exec "$W_INET" "$@"; }

world_up() {
  trap world_down EXIT
  ip netns add "$W_HOST" && ip netns add "$W_INET" || return 1
  ip link add "${W_ID}a" netns "$W_HOST" type veth peer name "${W_ID}b" netns "$W_INET" || return 1
  in_host ip link set lo up
  in_inet ip link set lo up
  in_host ip addr add 198.51.100.1/24 dev "${W_ID}a"
  in_host ip addr add 2001:db8:1::1/64 dev "${W_ID}a" nodad
  in_inet ip addr add 198.51.100.2/24 dev "${W_ID}b"
  in_inet ip addr add 2001:db8:1::2/64 dev "${W_ID}b" nodad
  in_host ip link set "${W_ID}a" up
  in_inet ip link set "${W_ID}b" up
  for a in 203.0.113.10 203.0.113.11 203.0.113.20; do in_inet ip addr add "$a/32" dev lo; done
  for a in 2001:db8:2::10 2001:db8:2::20; do in_inet ip addr add "$a/128" dev lo nodad; done
  for a in 169.254.169.254 10.1.2.3; do in_inet ip addr add "$a/32" dev lo; done
  in_host ip route add 203.0.113.0/24 via 198.51.100.2
  in_host ip route add 169.254.169.254/32 via 198.51.100.2
  in_host ip route add 10.1.2.3/32 via 198.51.100.2
  in_host ip -6 route add 2001:db8:2::/48 via 2001:db8:1::2
  world_servers
}

world_servers() {
  cat >"$W_DIR/dnsmasq.conf" <<CONF
port=53
listen-address=198.51.100.2
bind-interfaces
no-resolv
no-hosts
log-facility=$W_DIR/dnsmasq.log
log-queries
host-record=api.example.com,203.0.113.10,2001:db8:2::10
host-record=www.example.com,203.0.113.10,2001:db8:2::10
host-record=other.example.org,203.0.113.11
host-record=evil.example.net,203.0.113.20,2001:db8:2::20
host-record=rebind.example.com,10.1.2.3
host-record=meta.example.com,169.254.169.254
host-record=loop.example.com,127.0.0.1
host-record=self.example.com,198.51.100.1
txt-record=api.example.com,"txt-of-api"
CONF
  # Optional: a TTL for these answers (dnsmasq's default is 0: nothing may cache them).
  if [ -n "${W_DNS_TTL:-}" ]; then echo "local-ttl=$W_DNS_TTL" >>"$W_DIR/dnsmasq.conf"; fi
  in_inet dnsmasq --conf-file="$W_DIR/dnsmasq.conf" --pid-file="$W_DIR/dnsmasq.pid" -k &
  W_PIDS+=($!)
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=netfence test" \
    -keyout "$W_DIR/key.pem" -out "$W_DIR/cert.pem" >/dev/null 2>&1
  in_inet python3 "${NETFENCE_SOURCE_DIR}/tests/e2e/lib/servers.py" "$W_DIR" \
    >"$W_DIR/servers.log" 2>&1 &
  W_PIDS+=($!)
  # Wait until every server answers (bounded).
  for _ in $(seq 1 100); do
    if [ -f "$W_DIR/servers.ready" ] && in_host dig +short +time=1 +tries=1 @198.51.100.2 \
      api.example.com >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "world: servers did not start" >&2
  cat "$W_DIR/servers.log" >&2
  return 1
}

# start_until_ready READY LOG WHAT CMD...: runs CMD in the background (its pid joins W_PIDS,
# its output goes to the end of LOG) and waits up to 10 s for the file READY to appear; if it
# does not, says that WHAT did not start and shows LOG.
start_until_ready() {
  local ready=$1 log=$2 what=$3
  shift 3
  "$@" >>"$log" 2>&1 &
  W_PIDS+=($!)
  for _ in $(seq 1 100); do
    [ -f "$ready" ] && return 0
    sleep 0.1
  done
  echo "$what did not start" >&2
  cat "$log" >&2
  return 1
}

world_host_self() {
  start_until_ready "$W_DIR/hostself.ready" "$W_DIR/servers.log" "world: host-self servers" \
    in_host python3 "${NETFENCE_SOURCE_DIR}/tests/e2e/lib/servers.py" "$W_DIR" host-self
}

# Test bookkeeping.
T_PASS=0
T_FAIL=0
pass() { T_PASS=$((T_PASS + 1)); }
failed() { T_FAIL=$((T_FAIL + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then pass; else failed "$what"; fi
}
finish() { # finish NAME
  echo "$1: $T_PASS passed, $T_FAIL failed"
  [ "$T_FAIL" -eq 0 ]
}

# Running netfence and observing the world.
W_PY=/usr/bin/python3  # not a pyenv shim: the sandbox may run as an unprivileged user
[ -x "$W_PY" ] || W_PY=$(command -v python3)
W_CLIENTS="${NETFENCE_SOURCE_DIR}/tests/e2e/lib/clients.py"
nf() { # nf [netfence run flags] -- COMMAND...: in the host namespace, decisions in $W_DIR/nf.log
  : >"$W_DIR/nf.log"
  in_host "$NF" run --upstream 198.51.100.2 --log "$W_DIR/nf.log" "$@"
}
show_observed() { # show_observed TEXT: what a failed check saw, and the last run's decisions
  echo "  observed:"
  printf '%s\n' "$1" | head -c 800 | sed 's/^/    /'
  if [ -s "$W_DIR/nf.log" ]; then
    echo "  decision log (last run):"
    tail -n 6 "$W_DIR/nf.log" | sed 's/^/    /'
  fi
}
check_has() { # check_has DESCRIPTION TEXT NEEDLE: TEXT contains the fixed string NEEDLE
  if grep -qF -- "$3" <<<"$2"; then pass; else failed "$1 (expected to contain '$3')"; show_observed "$2"; fi
}
check_lacks() { # check_lacks DESCRIPTION TEXT NEEDLE: TEXT does not contain NEEDLE
  if grep -qF -- "$3" <<<"$2"; then failed "$1 (expected not to contain '$3')"; show_observed "$2"; else pass; fi
}
check_not_served() { # check_not_served DESCRIPTION TEXT IDENTITY: no line of TEXT is an answer
  # from the server IDENTITY (servers answer "<identity> <Host>")
  if grep -qE -- "^$3 " <<<"$2"; then failed "$1 (the '$3' server answered)"; show_observed "$2"; else pass; fi
}
check_eq() { # check_eq DESCRIPTION OBSERVED EXPECTED
  if [ "$2" = "$3" ]; then pass; else failed "$1 (expected '$3')"; show_observed "$2"; fi
}
check_log() { # check_log DESCRIPTION ERE: some line of the last run's decision log matches ERE
  if grep -qE -- "$2" "$W_DIR/nf.log"; then pass; else failed "$1 (no decision-log line matches /$2/)"; show_observed ""; fi
}
W_MARK_CONNS=0
W_MARK_DNS=0
mark_logs() { # remember how far the servers' and dnsmasq's logs go
  W_MARK_CONNS=$(cat "$W_DIR/conns.log" 2>/dev/null | wc -l)
  W_MARK_DNS=$(wc -l <"$W_DIR/dnsmasq.log")
}
conns_since() { # conns_since [IDENTITY]: connections servers accepted since mark_logs
  tail -n +$((W_MARK_CONNS + 1)) "$W_DIR/conns.log" 2>/dev/null | grep -E "^${1:-.}" || true
}
dns_queries_since() { # dns_queries_since: the query lines dnsmasq logged since mark_logs
  tail -n +$((W_MARK_DNS + 1)) "$W_DIR/dnsmasq.log" | grep 'query\[' || true
}

# Background runs and unprivileged runs (shared by several tests).
# bg_wait [TENTHS]: waits (default 5 s) for $BG_PID to exit: BG_CODE is its exit code, or "hung"
# (then it has been killed).
bg_wait() {
  local tenths=${1:-50}
  for _ in $(seq 1 "$tenths"); do
    if ! kill -0 "$BG_PID" 2>/dev/null; then
      wait "$BG_PID"
      BG_CODE=$?
      return
    fi
    sleep 0.1
  done
  kill -KILL "$BG_PID" 2>/dev/null
  wait "$BG_PID" 2>/dev/null
  BG_CODE=hung
}
# NOBODY COMMAND...: runs COMMAND as uid/gid 65534. nobody_netfence: false when unprivileged user
# namespaces are disabled; else sets NF_NOBODY to a netfence binary nobody can run (a copy in
# $W_DIR when the build directory is not readable by nobody).
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
nobody_netfence() {
  $NOBODY unshare --user --net true 2>/dev/null || return 1
  NF_NOBODY=$NF
  if ! $NOBODY test -x "$NF"; then
    mkdir -p "$W_DIR/bin" && chmod 755 "$W_DIR" "$W_DIR/bin" && cp "$NF" "$W_DIR/bin/" &&
      chmod 755 "$W_DIR/bin/netfence"
    NF_NOBODY=$W_DIR/bin/netfence
  fi
}
