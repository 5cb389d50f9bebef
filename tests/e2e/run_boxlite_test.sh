#!/usr/bin/env bash
# BoxLite's own acceptance suite for allow_net, run against `netfence run` in the test world:
# the 21 Python integration tests (7 classes) of reference/boxlite-allow-net.md section 5d and
# the VM tests of section 5c, with their hosts mapped onto the world (lib/world.sh):
#   example.com -> api.example.com (203.0.113.10)    example.org -> other.example.org (.11)
#   github.com, evil.com -> evil.example.net (.20)    8.8.8.8, blocked_ip -> 203.0.113.20
#   allowed_ip -> 203.0.113.10    allowed_cidr -> 203.0.113.0/28 (holds .10 and .11, not .20)
# Where BoxLite only looked at an exit code, these also check content: which server answered
# (each answers with its identity) and which servers saw a connection at all.
#
# One deliberate difference: BoxLite probed blocked addresses with `nc -z`, which only tests the
# TCP handshake. netfence accepts every connection inside the sandbox first (it needs the first
# bytes to judge names), so `nc -z` succeeds even where nothing is reachable; these tests send a
# request instead and assert that it gets no answer from the server and that the server never
# saw a connection.
#
# Usage: run_boxlite_test.sh path/to/netfence (as root; ctest e2e.run_boxlite)
NF=$(readlink -f "${1:?usage: $0 path/to/netfence}")
: "${NETFENCE_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/world.sh"
[ "$(id -u)" -eq 0 ] || { echo "run_boxlite: needs root (network namespaces)"; exit 1; }
world_up || exit 1

CURL="curl -s --max-time 5"
NSL="nslookup -timeout=2 -retry=0"

# --- 5d.1 TestDefaultFullAccess (no allow_net) -------------------------------------------------
out=$(nf -- sh -c "$NSL api.example.com; echo EXIT:\$?")
check_has "full access: nslookup api.example.com exits 0" "$out" "EXIT:0"
check_has "full access: nslookup api.example.com gives its address" "$out" "203.0.113.10"
check_lacks "full access: nslookup api.example.com is not sinkholed" "$out" "0.0.0.0"

out=$(nf -- $CURL http://evil.example.net/)
check_eq "full access: http to any host (evil.example.net) is served" "$out" "evil evil.example.net"

mark_logs
out=$(nf -- sh -c 'nc -w 3 -z 203.0.113.10 80; echo EXIT:$?')
check_has "full access: nc -z to an IP connects" "$out" "EXIT:0"
check_has "full access: the server at that IP saw the connection" "$(conns_since good)" "good 80"

# --- 5d.2 TestHostnameAllowlist (allow_net=[api.example.com]) ----------------------------------
A=(--allow-net api.example.com)
out=$(nf "${A[@]}" -- sh -c "$NSL api.example.com; echo EXIT:\$?")
check_has "hostname allowlist: allowed host resolves (exit 0)" "$out" "EXIT:0"
check_has "hostname allowlist: allowed host resolves to its address" "$out" "203.0.113.10"
check_lacks "hostname allowlist: allowed host not sinkholed" "$out" "0.0.0.0"

out=$(nf "${A[@]}" -- $NSL evil.example.net)
check_has "hostname allowlist: blocked host sinkholed to 0.0.0.0" "$out" "0.0.0.0"
check_lacks "hostname allowlist: blocked host's real address not given" "$out" "203.0.113.20"

out=$(nf "${A[@]}" -- $CURL http://api.example.com/)
check_eq "hostname allowlist: http to allowed host" "$out" "good api.example.com"

out=$(nf "${A[@]}" -- $CURL -k https://api.example.com/ 2>&1)
check_eq "hostname allowlist: https to allowed host" "$out" "good api.example.com"

mark_logs
out=$(nf "${A[@]}" -- $CURL -i http://203.0.113.10/)
check_not_served "hostname allowlist: direct IP (the allowed host's own) not served" "$out" good
check_has "hostname allowlist: direct IP answered by netfence's 403" "$out" "403 Forbidden"
check_eq "hostname allowlist: direct IP never reached the server" "$(conns_since)" ""

mark_logs
out=$(nf "${A[@]}" -- sh -c "$CURL http://evil.example.net/; echo EXIT:\$?")
check_lacks "hostname allowlist: http to blocked host fails (exit != 0)" "$out" "EXIT:0"
check_not_served "hostname allowlist: blocked host not served" "$out" evil
check_eq "hostname allowlist: blocked host never reached" "$(conns_since evil)" ""

# --- 5d.3 TestWildcardAllowlist (allow_net=[*.example.com]) ------------------------------------
W=(--allow-net '*.example.com')
out=$(nf "${W[@]}" -- $NSL www.example.com 2>/dev/null)
check_lacks "wildcard: subdomain www.example.com not sinkholed" "$out" "0.0.0.0"
check_has "wildcard: subdomain www.example.com resolves" "$out" "203.0.113.10"

out=$(nf "${W[@]}" -- $NSL evil.example.net 2>/dev/null)
check_has "wildcard: different domain sinkholed" "$out" "0.0.0.0"

# --- 5d.4 TestIPCIDRAllowlist ------------------------------------------------------------------
mark_logs
out=$(nf --allow-net 203.0.113.10 -- sh -c 'nc -w 3 -z 203.0.113.10 80; echo EXIT:$?; curl -s --max-time 5 http://203.0.113.10/')
check_has "exact IP allowed: nc -z connects" "$out" "EXIT:0"
check_has "exact IP allowed: served by that address" "$out" "good 203.0.113.10"
check_has "exact IP allowed: the server saw the nc connection" "$(conns_since good)" "good 80"

mark_logs
out=$(nf --allow-net 203.0.113.0/28 -- sh -c 'nc -w 3 -z 203.0.113.11 80; echo EXIT:$?; curl -s --max-time 5 http://203.0.113.11/')
check_has "CIDR allows range: nc -z to .11 connects" "$out" "EXIT:0"
check_has "CIDR allows range: .11 served" "$out" "other 203.0.113.11"
check_has "CIDR allows range: the server saw the nc connection" "$(conns_since other)" "other 80"

mark_logs
out=$(nf --allow-net 10.0.0.0/8 -- sh -c "$CURL http://203.0.113.10/; echo EXIT:\$?")
check_not_served "IP outside CIDR (10.0.0.0/8) blocked: not served" "$out" good
check_eq "IP outside CIDR (10.0.0.0/8) blocked: server never reached" "$(conns_since)" ""

mark_logs
out=$(nf --allow-net 203.0.113.0/28 -- sh -c 'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 3 203.0.113.20 80; echo EXIT:$?')
check_not_served "blocked_ip outside allowed_cidr: no answer from the server" "$out" evil
check_eq "blocked_ip outside allowed_cidr: server never reached" "$(conns_since evil)" ""

# --- 5d.5 TestMixedRules (allow_net=[api.example.com, 203.0.113.16/28]) ------------------------
mark_logs
out=$(nf --allow-net api.example.com,203.0.113.16/28 -- sh -c '
  curl -s --max-time 5 http://api.example.com/
  printf "GET / HTTP/1.0\r\nHost: evil.example.net\r\n\r\n" | nc -w 3 203.0.113.20 80; echo EXIT_CODE:$?
  nc -w 3 -z 203.0.113.20 80; echo EXIT:$?')
check_has "mixed: hostname rule serves api.example.com" "$out" "good api.example.com"
check_has "mixed: CIDR rule reaches 203.0.113.20 (original destination)" "$out" "evil evil.example.net"
check_has "mixed: nc to the CIDR exits 0" "$out" "EXIT_CODE:0"
check_has "mixed: nc -z to the CIDR exits 0" "$out" "EXIT:0"

# --- 5d.6 TestDisabledNetwork -----------------------------------------------------------------
out=$(nf --network disabled -- echo hello; echo "EXIT:$?")
check_has "disabled: commands work" "$out" "hello"
check_has "disabled: echo exits 0" "$out" "EXIT:0"

out=$(nf --network disabled -- sh -c "$NSL api.example.com; echo EXIT:\$?")
check_lacks "disabled: DNS fails (nslookup exit != 0)" "$out" "EXIT:0"
check_lacks "disabled: no address comes back" "$out" "203.0.113.10"

# --- 5d.7 TestEdgeCases -----------------------------------------------------------------------
echo '{"mode":"enabled","allow_net":[]}' >"$W_DIR/empty.json"
out=$(nf --policy "$W_DIR/empty.json" -- sh -c "$NSL api.example.com; echo EXIT:\$?; $CURL http://evil.example.net/")
check_has "empty allowlist: nslookup exits 0" "$out" "EXIT:0"
check_lacks "empty allowlist: not sinkholed" "$out" "0.0.0.0"
check_has "empty allowlist: any host served" "$out" "evil evil.example.net"

out=$(nf --allow-net api.example.com,other.example.org -- sh -c "$NSL api.example.com; $NSL other.example.org; echo ===; $NSL evil.example.net")
check_has "multiple hosts: api.example.com resolves" "$out" "203.0.113.10"
check_has "multiple hosts: other.example.org resolves" "$out" "203.0.113.11"
check_lacks "multiple hosts: allowed ones not sinkholed" "${out%%===*}" "0.0.0.0"
check_has "multiple hosts: unlisted evil.example.net sinkholed" "${out##*===}" "0.0.0.0"

out=$(nf "${A[@]}" -- sh -c "$NSL api.example.com; echo EXIT:\$?; ns=\$(awk '/^nameserver/{print \$2; exit}' /etc/resolv.conf); dig +short +time=2 +tries=1 @\$ns api.example.com")
check_has "gateway always reachable: DNS to the gateway works (exit 0)" "$out" "EXIT:0"
check_has "gateway always reachable: the resolv.conf nameserver answers" "$(tail -n 1 <<<"$out")" "203.0.113.10"

mark_logs
out=$(nf "${A[@]}" -- sh -c 'printf "hello\n" | nc -w 3 -N 203.0.113.10 5432; echo EXIT:$?')
check_lacks "non-http port with hostname-only rules: no echo" "$out" "hello"
check_eq "non-http port with hostname-only rules: echo server never reached" "$(conns_since)" ""

# --- 5c VM tests ------------------------------------------------------------------------------
out=$(nf --network disabled -- sh -c 'ip -o link | cut -d: -f2 | tr -d " "; echo ---; ls / >/dev/null && echo ls-ok')
check_eq "5c disabled_network_runs_without_eth0: ip link shows only lo" "${out%%---*}" $'lo\n'
check_has "5c disabled_network_runs_without_eth0: ls works" "$out" "ls-ok"
# BoxLite's later form looks in /sys/class/net; sysfs must show the sandbox's own namespace there,
# not the one netfence was started in.
out=$(nf --network disabled -- ls /sys/class/net)
check_eq "5c disabled_network_runs_without_eth0: /sys/class/net lists only lo" "$out" "lo"

out=$(nf "${A[@]}" -- $NSL evil.example.net)
check_has "5c dns_sinkhole_blocks_unlisted_host" "$out" "0.0.0.0"

out=$(nf "${A[@]}" -- $NSL api.example.com)
check_lacks "5c dns_sinkhole_allows_listed_host: no 0.0.0.0" "$out" "0.0.0.0"
check_has "5c dns_sinkhole_allows_listed_host: real address" "$out" "203.0.113.10"

out=$(nf -- sh -c "$NSL evil.example.net; $CURL http://203.0.113.20/")
check_has "5c empty_allowlist_allows_all: resolves" "$out" "203.0.113.20"
check_has "5c empty_allowlist_allows_all: direct IP served" "$out" "evil 203.0.113.20"

mark_logs
out=$(nf "${A[@]}" -- wget -q -O- --timeout=3 --tries=1 http://203.0.113.20/)
check_eq "5c tcp_filter_blocks_direct_ip_connection: empty output" "$out" ""
check_eq "5c tcp_filter_blocks_direct_ip_connection: server never reached" "$(conns_since)" ""

out=$(nf "${A[@]}" -- wget -q -O- --timeout=5 --tries=1 --no-check-certificate https://api.example.com/)
check_eq "5c tcp_filter_sni_allows_https_to_allowed_host" "$out" "good api.example.com"

finish run_boxlite
