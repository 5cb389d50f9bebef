#!/usr/bin/env bash
# The main job, runnable without internet access: builds a private test world (two network
# namespaces on documentation addresses, a DNS server and web servers; tests/e2e/lib/world.sh),
# then runs one command sandboxed under an allowlist and shows what it could and could not reach,
# with netfence's decisions. Needs root (namespaces); tears everything down on exit.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
NF=${NETFENCE:-$here/build/netfence}
if [ "$(id -u)" -ne 0 ]; then
  exec sudo NETFENCE="$NF" "$0" "$@"
fi
export NETFENCE_SOURCE_DIR=$here
source "$here/tests/e2e/lib/world.sh"
world_up || { echo "demo: could not build the test world" >&2; exit 1; }

echo "# netfence run -v --allow-net 'api.example.com,*.example.org:443' -- sh -c '...'"
echo "# (the test world: api.example.com = 203.0.113.10 \"good\"; evil.example.net = 203.0.113.20)"
echo
in_host "$NF" run -v --upstream 198.51.100.2 --allow-net 'api.example.com,*.example.org:443' -- sh -c '
  say() { printf "\n\$ %s\n" "$*"; }
  say curl http://api.example.com/;               curl -sS --max-time 5 http://api.example.com/
  say curl -k https://api.example.com/;           curl -sSk --max-time 5 https://api.example.com/
  say getent hosts evil.example.net;              getent hosts evil.example.net
  say curl http://203.0.113.20/;                  curl -sS --max-time 5 http://203.0.113.20/
  say "curl -k --resolve api.example.com:443:203.0.113.20 https://api.example.com/  (SNI spoofing)"
  curl -sSk --max-time 5 --resolve api.example.com:443:203.0.113.20 https://api.example.com/
  say curl -k https://evil.example.net/ --resolve evil.example.net:443:203.0.113.20
  curl -sSk --max-time 5 --resolve evil.example.net:443:203.0.113.20 https://evil.example.net/
  say dig +short @192.0.2.53 evil.example.net TXT; dig +short +time=2 +tries=1 @192.0.2.53 evil.example.net TXT
  true' 2>&1
echo
echo "# The same policy, judged without running anything:"
"$NF" check --allow-net 'api.example.com,*.example.org:443' api.example.com:443 www.example.org:443 \
  example.org:443 www.example.org:80 203.0.113.20:80 169.254.169.254:80
echo
echo "# The known escape attempts, run from inside a sandbox under the same policy (nothing they"
echo "# try is allowed, so nothing leaves the machine; exit 1 if any got through):"
in_host "$NF" selftest --upstream 198.51.100.2 --allow-net 'api.example.com,*.example.org:443' 2>&1
exit 0
