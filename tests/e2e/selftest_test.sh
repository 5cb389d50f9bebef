#!/usr/bin/env bash
# `netfence selftest` (issue 6): the escape probes, run from inside a sandbox, are all denied for
# a full-access, an allowlist and a disabled policy (exit 0, the expected row per probe), and
# nothing they send reaches the test world's servers or its upstream DNS, except the one request
# the keep-alive probe is allowed to make. Then the detector is shown to detect: the probe
# process run *outside* any sandbox, in a namespace where a decoy metadata server and a rogue
# resolver answer, reports "got_through" and exits 1.
#
# Usage: selftest_test.sh path/to/netfence (as root; ctest e2e.selftest)
NF=$(readlink -f "${1:?usage: $0 path/to/netfence}")
: "${NETFENCE_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/world.sh"
[ "$(id -u)" -eq 0 ] || { echo "selftest: needs root (network namespaces)"; exit 1; }
world_up || exit 1

st() { # st [selftest flags]: netfence selftest in the host namespace, decisions in nf.log
  : >"$W_DIR/nf.log"
  in_host "$NF" selftest --upstream 198.51.100.2 --log "$W_DIR/nf.log" "$@"
}
check_row() { # check_row DESCRIPTION OUTPUT PROBE ERE: PROBE's table row matches ERE
  local row
  row=$(grep -E "^$3 " <<<"$2")
  if [ -n "$row" ] && grep -qE -- "$4" <<<"$row"; then
    pass
  else
    failed "$1 (the row of $3 should match /$4/)"
    show_observed "${row:-$2}"
  fi
}
check_no_contact() { # check_no_contact WHAT: no server saw a connection, dnsmasq no probe name
  check_eq "$1: no server in the test world saw a connection" "$(conns_since)" ""
  check_lacks "$1: the upstream never saw a probe's name" "$(dns_queries_since)" "selftest.netfence"
  check_lacks "$1: the upstream never saw metadata.google.internal" "$(dns_queries_since)" \
    "metadata.google.internal"
}
show() { # show TITLE OUTPUT: the table in the test's log (the selftest's output, for review)
  echo "--- $1"
  printf '%s\n' "$2"
}

# --- Full access ------------------------------------------------------------------------------
mark_logs
out=$(st 2>&1)
code=$?
show "netfence selftest (full access)" "$out"
check_eq "full access: exit 0" "$code" 0
check_has "full access: the header names the policy" "$out" "netfence selftest: full access"
check_lacks "full access: nothing got through" "$out" "GOT THROUGH"
for probe in metadata-v4 metadata-v6 metadata-v4-mapped metadata-nat64 metadata-decimal \
  metadata-azure host-address; do
  check_row "full access: $probe denied by the gateway" "$out" "$probe" \
    "deny \(always_deny\) +connection reset +ok$"
done
check_row "full access: metadata-decimal is 2852039166" "$out" metadata-decimal "2852039166:80"
check_row "full access: the host's own address is probed" "$out" host-address \
  "198\.51\.100\.1:80"
check_row "full access: 0.0.0.0 refused" "$out" zero-address "ECONNREFUSED.* ok$"
check_row "full access: the gateway's own listener is no destination" "$out" gateway-listener \
  "deny \(not_redirected\) +connection reset +ok$"
check_row "full access: a documentation address is allowed, so not probed" "$out" ip-literal-v4 \
  "skipped \(the policy allows 192\.0\.2\.1:80\)"
check_row "full access: DNS probes skipped (queries would be forwarded)" "$out" dns-udp \
  "skipped \(the policy allows selftest\.netfence\.invalid \(the query would be forwarded\)\)"
check_row "full access: UDP/443 allowed, not probed" "$out" udp-443 "skipped"
for probe in raw-socket-v4 raw-socket-v6 packet-socket nft-delete-table route-add link-down; do
  check_row "full access: $probe fails with EPERM" "$out" "$probe" "EPERM +(socket: )?EPERM \(.*\) +ok$"
done
check_row "full access: no ICMP echo reply" "$out" icmp-echo " ok$"
check_has "full access: summary line" "$out" "0 got through"
check_log "full access: the metadata denial is in the decision log" \
  '"dst":"169\.254\.169\.254","port":80.*"verdict":"deny".*"reason":"always_deny"'
check_no_contact "full access"

# --- Allowlist --------------------------------------------------------------------------------
mark_logs
A=(--allow-net api.example.com,203.0.113.10)
out=$(st "${A[@]}" --allowed-host api.example.com 2>&1)
code=$?
show "netfence selftest --allow-net api.example.com,203.0.113.10 --allowed-host api.example.com" "$out"
check_eq "allowlist: exit 0" "$code" 0
check_has "allowlist: the header names the policy" "$out" "allowlist, 2 allow rules"
check_lacks "allowlist: nothing got through" "$out" "GOT THROUGH"
check_has "allowlist: nothing skipped or inconclusive" "$out" "0 skipped, 0 inconclusive, 0 got through"
check_row "allowlist: IP literal v4 gets netfence's 403" "$out" ip-literal-v4 \
  "deny \(invalid_name\) +HTTP 403, X-Netfence-Reason: invalid_name +ok$"
check_row "allowlist: IP literal v6 gets netfence's 403" "$out" ip-literal-v6 \
  "\[2001:db8::1\]:80 .*HTTP 403, X-Netfence-Reason: invalid_name +ok$"
check_row "allowlist: metadata reset" "$out" metadata-v4 "connection reset +ok$"
check_row "allowlist: a denied SNI gets the access_denied alert" "$out" sni-denied \
  "deny \(no_match\) +TLS alert 49 \(access_denied\) +ok$"
check_row "allowlist: a split ClientHello is read and denied" "$out" sni-split \
  "TLS alert 49 \(access_denied\) +ok$"
check_row "allowlist: ECH with an allowed outer SNI is denied" "$out" ech \
  "outer SNI api\.example\.com +deny \(ech\) +TLS alert 49 \(access_denied\) +ok$"
check_row "allowlist: DNS over TLS denied" "$out" dot "192\.0\.2\.53:853 .*TLS alert 49.* ok$"
check_row "allowlist: keep-alive Host switch cut after an answered first request" "$out" \
  keepalive-host-switch "1st answered \(HTTP 200\), 2nd: .* ok$"
check_row "allowlist: UDP DNS to another resolver sinkholed" "$out" dns-udp \
  "A 0\.0\.0\.0 \(sinkhole\) +NOERROR A 0\.0\.0\.0 \(sinkhole\) +ok$"
check_row "allowlist: UDP DNS to another resolver over IPv6 sinkholed" "$out" dns-udp-v6 \
  "NOERROR AAAA :: \(sinkhole\) +ok$"
check_row "allowlist: TCP DNS to another resolver sinkholed" "$out" dns-tcp \
  "NOERROR A 0\.0\.0\.0 \(sinkhole\) +ok$"
check_row "allowlist: metadata.google.internal sinkholed" "$out" dns-metadata \
  "NOERROR A 0\.0\.0\.0 \(sinkhole\) +ok$"
check_row "allowlist: UDP/443 (QUIC) rejected inside the sandbox" "$out" udp-443 \
  "deny \(no_match\) +send: EPERM .* ok$"
check_log "allowlist: the keep-alive switch is logged as host_switch" \
  '"event":"inspect".*"name":"selftest\.netfence\.invalid".*"reason":"host_switch"'
check_log "allowlist: the ECH hello is logged with reason ech" '"reason":"ech"'
check_eq "allowlist: only the keep-alive probe's first request reached a server" \
  "$(conns_since | cut -d' ' -f1,2 | sort | uniq -c | sed 's/^ *//')" "1 good 80"
check_lacks "allowlist: the upstream never saw a probe's name" "$(dns_queries_since)" \
  "selftest.netfence"
check_lacks "allowlist: the upstream never saw metadata.google.internal" \
  "$(dns_queries_since)" "metadata.google.internal"

# Without --allowed-host nothing may leave at all; --json gives one object per probe.
mark_logs
out=$(st "${A[@]}" --json 2>&1)
code=$?
check_eq "allowlist --json: exit 0" "$code" 0
check_eq "allowlist --json: one JSON object per probe, none got through" "$(python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
print(len(rows), sorted({r["result"] for r in rows}),
      [r["skip_reason"] for r in rows if r["probe"] == "keepalive-host-switch"])' <<<"$out")" \
  "29 ['ok', 'skipped'] ['needs --allowed-host NAME (its first request goes to that host)']"
check_no_contact "allowlist without --allowed-host"

# NXDOMAIN as the blocked answer: the DNS probes expect (and see) it.
out=$(st "${A[@]}" --dns-blocked-answer nxdomain 2>&1)
code=$?
check_eq "allowlist, nxdomain answers: exit 0" "$code" 0
check_row "allowlist, nxdomain answers: UDP DNS" "$out" dns-udp \
  "NXDOMAIN \(sinkhole\) +NXDOMAIN \(sinkhole\) +ok$"

# --- Disabled ---------------------------------------------------------------------------------
mark_logs
out=$(st --network disabled 2>&1)
code=$?
show "netfence selftest --network disabled" "$out"
check_eq "disabled: exit 0" "$code" 0
check_has "disabled: the header names the policy" "$out" "netfence selftest: network disabled"
check_lacks "disabled: nothing got through" "$out" "GOT THROUGH"
for probe in ip-literal-v4 ip-literal-v6 metadata-v4 sni-denied dot; do
  check_row "disabled: $probe cannot connect" "$out" "$probe" \
    "deny \(disabled\) +connect: ENETUNREACH .* ok$"
done
check_row "disabled: DNS cannot be sent" "$out" dns-udp "deny \(disabled\) +connect: ENETUNREACH"
check_row "disabled: keep-alive has nothing to start from" "$out" keepalive-host-switch "skipped"
check_row "disabled: raw sockets still EPERM" "$out" raw-socket-v4 "EPERM +(socket: )?EPERM"
check_no_contact "disabled"

# --- Bad usage --------------------------------------------------------------------------------
in_host "$NF" selftest --network disabled --allow-net api.example.com >/dev/null 2>&1
check_eq "disabled + allow_net: usage error 2" "$?" 2
in_host "$NF" selftest --allowed-host 203.0.113.10 >/dev/null 2>&1
check_eq "--allowed-host with an address: usage error 2" "$?" 2
in_host "$NF" selftest-probe no-such-probe >/dev/null 2>&1
check_eq "selftest-probe with an unknown probe: usage error 2" "$?" 2

# --- Unprivileged (user namespaces) -----------------------------------------------------------
if ! nobody_netfence; then
  echo "SKIP: unprivileged user namespaces are disabled on this machine"
else
  nf_bin=$NF_NOBODY
  mark_logs
  out=$(in_host $NOBODY "$nf_bin" selftest --upstream 198.51.100.2 "${A[@]}" 2>&1)
  code=$?
  check_eq "unprivileged allowlist: exit 0" "$code" 0
  check_lacks "unprivileged allowlist: nothing got through" "$out" "GOT THROUGH"
  check_row "unprivileged allowlist: raw sockets EPERM" "$out" raw-socket-v4 "EPERM +(socket: )?EPERM"
  check_row "unprivileged allowlist: nft table cannot be deleted" "$out" nft-delete-table \
    "EPERM +(socket: )?EPERM"
  check_row "unprivileged allowlist: DNS sinkholed" "$out" dns-udp "A 0\.0\.0\.0 \(sinkhole\) +ok$"
  check_no_contact "unprivileged allowlist"
fi

# --- The detector detects: the probes outside any sandbox -------------------------------------
# In the world's host namespace (no sandbox) 169.254.169.254 is routed to the decoy metadata
# server, and a rogue resolver answers at 192.0.2.53; as root, raw sockets and netlink work.
in_inet ip addr add 192.0.2.53/32 dev lo
in_host ip route add 192.0.2.53/32 via 198.51.100.2
cat >"$W_DIR/rogue_dns.py" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.53", 53))
open(sys.argv[1], "w").close()
while True:
    q, peer = s.recvfrom(4096)
    end = q.index(b"\0", 12) + 5  # the question
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("203.0.113.20")
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:end] + answer,
             peer)
PY
in_inet python3 "$W_DIR/rogue_dns.py" "$W_DIR/rogue.ready" &
W_PIDS+=($!)
for _ in $(seq 1 50); do [ -f "$W_DIR/rogue.ready" ] && break; sleep 0.1; done

mark_logs
out=$(in_host "$NF" selftest-probe metadata-v4 2>&1)
code=$?
check_eq "outside a sandbox: metadata-v4 exits 1" "$code" 1
check_has "outside a sandbox: metadata-v4 got through, and says what answered" "$out" \
  '"status":"got_through"'
check_has "outside a sandbox: the decoy's answer is quoted" "$out" "HTTP/1.1 200 OK"
check_has "outside a sandbox: the decoy metadata server did see the probe" "$(conns_since)" \
  "metadata 80"
out=$(in_host "$NF" selftest-probe dns-udp 2>&1)
check_has "outside a sandbox: a rogue resolver's answer got through" "$out" \
  '"observed":"NOERROR A 203.0.113.20: not the sinkhole'"'"'s answer","status":"got_through"'
out=$(in_host "$NF" selftest-probe raw-socket-v4 packet-socket nft-delete-table route-add \
  link-down 2>&1)
check_eq "outside a sandbox, as root: raw, packet, nft, route and link probes all got through" \
  "$(grep -c '"status":"got_through"' <<<"$out")" 5
show "netfence selftest-probe outside any sandbox (must report got_through)" "$out"
check_eq "outside a sandbox: the route probe removed its route again" \
  "$(in_host ip route show 192.0.2.255/32)" ""
# A TLS server at 192.0.2.1:443 answers the ClientHello probes (whole, split, with ECH).
in_inet ip addr add 192.0.2.1/32 dev lo
in_host ip route add 192.0.2.1/32 via 198.51.100.2
in_inet openssl s_server -accept 192.0.2.1:443 -cert "$W_DIR/cert.pem" -key "$W_DIR/key.pem" \
  -quiet </dev/null >/dev/null 2>&1 &
W_PIDS+=($!)
for _ in $(seq 1 50); do in_inet ss -ltn | grep -q '192.0.2.1:443' && break; sleep 0.1; done
out=$(in_host "$NF" selftest-probe sni-denied sni-split ech 2>&1)
check_eq "outside a sandbox: a real TLS server answers the ClientHello probes (ServerHello)" \
  "$(grep -c 'a TLS ServerHello","status":"got_through"' <<<"$out")" 3
# The same probes inside a sandbox are denied (control for the ones above).
out=$(in_host "$NF" run --upstream 198.51.100.2 --allow-net api.example.com -- \
  "$NF" selftest-probe metadata-v4 dns-udp raw-socket-v4 sni-denied sni-split ech 2>/dev/null)
check_eq "inside a sandbox: the same probes are all ok" \
  "$(grep -c '"status":"ok"' <<<"$out")" 6

finish selftest
