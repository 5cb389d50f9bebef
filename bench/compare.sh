#!/usr/bin/env bash
# The peer comparison (issue 7): netfence against the direct path and against peers that do a
# similar job (pasta, slirp4netns, bubblewrap, HAProxy, dnsmasq), all measured in one run on the
# same machine, printed as one table with ratios and issue 7's targets. As root:
#
#   sudo bench/compare.sh [path/to/netfence]          (default build/netfence)
#
# Builds its own test world (tests/e2e/lib/world.sh: namespaces on documentation addresses) plus
# a "client" namespace for the HAProxy rows, starts its own servers and peers there with their
# own config files (nothing touches the system's services), and removes all of it on exit.
# Sections (docs/benchmarks.md, "Peer comparison", says what each measures and how):
#   throughput   iperf3 upload and download, 1 and 8 streams: direct, netfence (full access;
#                hostname rule), the floor (bench/floor_relay: the least a socket-level relay
#                does; on the way down also copying instead of splicing), pasta, slirp4netns
#   connections  short HTTP/HTTPS requests, a fresh connection each (bench/conn_load): rate and
#                connect-to-first-byte p50/p99: direct, netfence (IP rule; hostname rule, dial
#                by SNI/Host), HAProxy (SNI routing in mode tcp; Host routing in mode http);
#                and CPU per connection (middle of each run): the proxy's own (schedstat), and
#                the machine's (/proc/stat) with the client's and the server's share
#   dns          queries per second, sinkholed and forwarded: netfence vs dnsmasq
#                (bench/dns_compare.sh)
#   start        start to exit of `true`: netfence run, unshare -Urn, bwrap, pasta
#   memory       memory per idle TCP connection: netfence's RSS vs HAProxy's; kernel slab
#                through netfence vs direct
# Knobs (environment): SECTIONS (default: all five, in that order), REPS (3: throughput and
# connection rows are the median of REPS runs, the paths alternating), IPERF_SECONDS (3),
# TPUT_CONFIGS (1up 1down 8up: streams, and "up" from the sandbox to the server or "down" with
# iperf3 -R), TPUT_PATHS (direct nf-full nf-name floor floor-copy pasta slirp; floor-copy runs
# only downloads), IPERF_EXTRA (more iperf3 client flags), FLOOR_RELAY (build/bench/floor_relay),
# FLOOR_COPY_BYTES (262144: floor-copy's buffer), CONN_SECONDS (3), CONCURRENCY (8),
# CONN_PATHS (direct nf-ip nf-name haproxy), CONN_PROTOS (http https), HAPROXY_GLOBAL (lines
# for HAProxy's global section, e.g. "nbthread 1"),
# START_RUNS (21), IDLE_CONNS (8000; with the hard RLIMIT_NOFILE of 20000 here the gateway's
# own thread relays up to 8848 and relay workers the rest), DNS_SECONDS (3), DNS_REPS (3).
# A peer that fails prints "failed: <why>" in its row; the rest goes on. A benchmark: it prints
# figures and never fails on them.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
NF=$(realpath -e "${1:-$here/build/netfence}" 2>/dev/null) || {
  echo "usage: $0 [path/to/netfence] (not found: ${1:-$here/build/netfence})" >&2
  exit 2
}
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (it builds network namespaces)" >&2; exit 2; }
CONN_LOAD=${CONN_LOAD:-$here/build/bench/conn_load}
FLOOR_RELAY=${FLOOR_RELAY:-$here/build/bench/floor_relay}
FLOOR_COPY_BYTES=${FLOOR_COPY_BYTES:-262144}
SECTIONS=${SECTIONS:-throughput connections dns start memory}
REPS=${REPS:-3}
IPERF_SECONDS=${IPERF_SECONDS:-3}
IPERF_EXTRA=${IPERF_EXTRA:-}
TPUT_CONFIGS=${TPUT_CONFIGS:-1up 1down 8up}
CONN_SECONDS=${CONN_SECONDS:-3}
CONCURRENCY=${CONCURRENCY:-8}
START_RUNS=${START_RUNS:-21}
IDLE_CONNS=${IDLE_CONNS:-8000}
DNS_SECONDS=${DNS_SECONDS:-3}
DNS_REPS=${DNS_REPS:-3}
PY=/usr/bin/python3 # not a pyenv shim: it also runs inside sandboxes
HELP="$here/bench/compare_helpers.py"
UP=(--upstream 198.51.100.2) # netfence must never read the machine's /etc/resolv.conf here
T0=$(date +%s)
ulimit -n "$(ulimit -Hn)" # netfence holds two descriptors per connection (memory section)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

trap 'exit 130' INT TERM # exit runs the EXIT trap: everything is cleaned up
export NETFENCE_SOURCE_DIR=$here
# The world's names get a 60 s TTL (dnsmasq's default, 0, would make netfence's dial by name
# resolve for every connection: real names have TTLs, and HAProxy's backend is an address).
W_DNS_TTL=${W_DNS_TTL:-60}
source "$here/tests/e2e/lib/world.sh"
W_CLIENT="${W_ID}c"
W_FLOOR="${W_ID}f"
C_PIDS=()
compare_down() {
  for pid in "${C_PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
  # pasta and slirp4netns children live in namespaces of their own: their pid files name them.
  # Only a process that is still what the file says (pids are reused).
  local f pid
  for f in "$W_DIR"/*.pid; do
    pid=$(cat "$f" 2>/dev/null)
    [[ $pid =~ ^[0-9]+$ ]] || continue
    case $(cat "/proc/$pid/comm" 2>/dev/null) in
      pasta | slirp4netns | timeout | haproxy | nginx) kill "$pid" 2>/dev/null ;;
    esac
  done
  local ns
  for ns in "$W_CLIENT" "$W_FLOOR"; do
    ip netns list | grep -qw "$ns" || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns delete "$ns" 2>/dev/null
  done
}
world_up || { echo "$0: could not build the test world" >&2; exit 1; }
trap 'compare_down; world_down' EXIT
in_client() { ip netns exec "$W_CLIENT" "$@"; }
host_t() { # host_t SECONDS COMMAND...: in the host namespace, killed after SECONDS
  local t=$1
  shift
  timeout -k 3 "$t" ip netns exec "$W_HOST" "$@"
}
wait_listen() { # wait_listen NS-RUNNER ADDR:PORT: bounded wait for a TCP listener
  for _ in $(seq 1 100); do
    "$1" ss -Hltn "( sport = :${2##*:} )" | grep -qF "$2" && return 0
    sleep 0.05
  done
  return 1
}

# --- the bench world's additions -------------------------------------------------------------
# pasta and slirp4netns copy their namespace's setup from a default route: give the host
# namespace one, into the "internet" namespace (its only link), which has no route further.
in_host ip route add default via 198.51.100.2
# The client namespace (HAProxy's clients): a veth into the host namespace, like a sandbox's.
ip netns add "$W_CLIENT"
ip link add "${W_ID}c" netns "$W_CLIENT" type veth peer name "${W_ID}d" netns "$W_HOST"
in_client ip link set lo up
in_client ip addr add 192.0.2.1/24 dev "${W_ID}c"
in_client ip link set "${W_ID}c" up
in_host ip addr add 192.0.2.2/24 dev "${W_ID}d"
in_host ip link set "${W_ID}d" up
# The floor's namespace: a sandbox's loopback leg and nothing else. `lo` as netfence sets it up
# (floor_relay calls the sandbox's own code for it), an address and a route for the world, and the
# same kind of NAT redirect netfence's ruleset makes, to bench/floor_relay's listener, which
# runs in the host namespace and dials from there.
in_floor() { ip netns exec "$W_FLOOR" "$@"; }
floor_up() { # floor_up: 0, or 1 with the reason in FLOOR_ERR (the namespace, no relay yet)
  FLOOR_ERR="$FLOOR_RELAY not built"
  [ -x "$FLOOR_RELAY" ] || return 1
  FLOOR_ERR="could not build the floor's namespace (ip netns, lo, its address or route)"
  ip netns add "$W_FLOOR" || return 1
  in_floor ip link set lo up || return 1 # floor_relay then gives it the sandbox's GSO limit
  in_floor ip addr add 192.0.2.200/32 dev lo || return 1
  in_floor ip route add 203.0.113.0/24 dev lo src 192.0.2.200 || return 1
  FLOOR_ERR="nft refused the floor's redirect"
  # 5201 (iperf3's port) to the floor, 5211 to floor-copy: both relays dial the real 5201.
  in_floor nft -f - <<NFT || return 1
table ip floor {
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr 203.0.113.10 tcp dport 5201 redirect to :5202
    ip daddr 203.0.113.10 tcp dport 5211 redirect to :5203
  }
}
NFT
  FLOOR_ERR=""
}
floor_relay_up() { # floor_relay_up NAME PORT [FLAGS...]: 0, or 1 with the reason in FLOOR_ERR
  local name=$1 port=$2
  shift 2
  ip netns exec "$W_HOST" "$FLOOR_RELAY" --netns "/run/netns/$W_FLOOR" --listen-port "$port" \
    --to 203.0.113.10:5201 "$@" >"$W_DIR/$name.log" 2>&1 &
  C_PIDS+=("$!")
  wait_listen in_floor "127.0.0.1:$port" && return 0
  FLOOR_ERR="floor_relay $* did not start: $(tail -n 1 "$W_DIR/$name.log")"
  return 1
}
# A fast HTTP/HTTPS server (nginx) on api.example.com's address, ports 8080 and 8443 (the
# world's python servers keep 80 and 443), with an ECDSA certificate.
mkdir -p "$W_DIR/nginx"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=api.example.com" -keyout "$W_DIR/nginx/key.pem" -out "$W_DIR/nginx/cert.pem" \
  >/dev/null 2>&1
cat >"$W_DIR/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $W_DIR/nginx.pid;
error_log $W_DIR/nginx/error.log warn;
user nobody nogroup;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W_DIR/nginx/body;
  proxy_temp_path $W_DIR/nginx/proxy;
  fastcgi_temp_path $W_DIR/nginx/fastcgi;
  uwsgi_temp_path $W_DIR/nginx/uwsgi;
  scgi_temp_path $W_DIR/nginx/scgi;
  ssl_session_cache off;
  ssl_session_tickets off;
  server {
    listen 203.0.113.10:8080;
    listen 203.0.113.10:8443 ssl;
    ssl_certificate $W_DIR/nginx/cert.pem;
    ssl_certificate_key $W_DIR/nginx/key.pem;
    location / { return 200 "ok\n"; }
  }
}
CONF
NGINX_ERR=""
NGINX_PID=""
if command -v nginx >/dev/null; then
  ip netns exec "$W_INET" nginx -e "$W_DIR/nginx/error.log" -c "$W_DIR/nginx/nginx.conf" -g 'daemon off;' \
    >>"$W_DIR/nginx/error.log" 2>&1 &
  NGINX_PID=$!
  C_PIDS+=("$NGINX_PID")
  wait_listen in_inet 203.0.113.10:8443 || NGINX_ERR="nginx did not start: $(tail -n 2 "$W_DIR/nginx/error.log" | tr '\n' ' ')"
else
  NGINX_ERR="nginx not installed (apt-get install nginx-light)"
fi
# HAProxy in the host namespace on 192.0.2.2: SNI routing (mode tcp), Host routing (mode http),
# and a plain TCP forward for the idle-connection memory row.
mkdir -p "$W_DIR/haproxy"
cat >"$W_DIR/haproxy/haproxy.cfg" <<CONF
global
  pidfile $W_DIR/haproxy.pid
${HAPROXY_GLOBAL:-}
  maxconn 9500
defaults
  mode tcp
  maxconn 9500
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend sni
  bind 192.0.2.2:8443
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend api_tls if { req.ssl_sni -i api.example.com }
backend api_tls
  server api 203.0.113.10:8443
frontend host
  mode http
  bind 192.0.2.2:8080
  timeout client 30s
  use_backend api_http if { hdr(host) -i api.example.com }
backend api_http
  mode http
  timeout server 30s
  server api 203.0.113.10:8080
frontend hold
  bind 192.0.2.2:7001
  default_backend hold
backend hold
  server hold 203.0.113.10:7001
CONF
HAPROXY_ERR=""
HAPROXY_PID=""
if command -v haproxy >/dev/null; then
  ip netns exec "$W_HOST" haproxy -db -f "$W_DIR/haproxy/haproxy.cfg" >"$W_DIR/haproxy/log" 2>&1 &
  HAPROXY_PID=$!
  C_PIDS+=("$HAPROXY_PID")
  wait_listen in_host 192.0.2.2:8443 || HAPROXY_ERR="haproxy did not start: $(tail -n 2 "$W_DIR/haproxy/log" | tr '\n' ' ')"
else
  HAPROXY_ERR="haproxy not installed"
fi

# --- results ---------------------------------------------------------------------------------
declare -A VAL ERR # VAL[key]: space-separated figures of the repetitions; ERR[key]: first failure
note_fail() { [ -n "${ERR[$1]:-}" ] || ERR[$1]=$(printf '%s' "$2" | tr '\n' ' ' | cut -c1-120); }
median_of() { tr ' ' '\n' <<<"${VAL[$1]:-}" | grep . | sort -g |
  awk '{a[NR]=$1} END {if (NR == 0) exit 1; if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
figure() { # figure KEY: the median, or "failed: why" (the failure noted for KEY or its prefix)
  local p=${1%,*}
  median_of "$1" || { echo "failed: ${ERR[$1]:-${ERR[$p]:-${ERR[${p%,*}]:-not measured}}}"; return 1; }
}

# --- 1. throughput ---------------------------------------------------------------------------
slirp_run() { # slirp_run SECONDS COMMAND...: COMMAND in a namespace that slirp4netns connects
  local t=$1 child slirp
  shift
  ip netns exec "$W_HOST" unshare -Urn timeout -k 3 "$t" sh -c \
    'for i in $(seq 1 100); do ip -4 route show default | grep -q . && break; sleep 0.05; done
     exec "$@"' sh "$@" &
  child=$!
  echo "$child" >"$W_DIR/slirp-child.pid"
  # slirp4netns joins the namespaces of the pid it is given: wait until that pid has left
  # unshare (it execs timeout once its namespaces exist), or slirp4netns joins the host's.
  for _ in $(seq 1 100); do
    [ "$(cat "/proc/$child/comm" 2>/dev/null)" = timeout ] && break
    sleep 0.02
  done
  ip netns exec "$W_HOST" slirp4netns --configure --mtu=65520 --disable-host-loopback \
    "$child" tap0 >"$W_DIR/slirp.log" 2>&1 &
  slirp=$!
  echo "$slirp" >"$W_DIR/slirp.pid"
  wait "$child"
  local rc=$?
  kill "$slirp" 2>/dev/null
  wait "$slirp" 2>/dev/null
  : >"$W_DIR/slirp.pid"
  : >"$W_DIR/slirp-child.pid"
  return $rc
}
iperf_once() { # iperf_once PATH CONFIG: one iperf3 run; its Mbit/s into VAL[tput,PATH,CONFIG]
  local path=$1 p=${2%%[a-z]*} key="tput,$1,$2" out="$W_DIR/iperf.json" err="$W_DIR/iperf.err" srv
  # shellcheck disable=SC2206 # IPERF_EXTRA is a list of flags
  local args=(-t "$IPERF_SECONDS" -P "$p" -J $IPERF_EXTRA)
  [[ $2 == *down ]] && args+=(-R)
  local t=$((IPERF_SECONDS + 20))
  ip netns exec "$W_INET" iperf3 -s -1 >/dev/null 2>&1 &
  srv=$!
  if ! wait_listen in_inet :5201; then
    note_fail "$key" "iperf3 server did not start"
    kill "$srv" 2>/dev/null
    return
  fi
  : >"$out"
  case $path in
    direct) host_t "$t" iperf3 -c 203.0.113.10 "${args[@]}" ;;
    nf-full) host_t "$t" "$NF" run -q "${UP[@]}" -- iperf3 -c 203.0.113.10 "${args[@]}" ;;
    nf-name) host_t "$t" "$NF" run -q "${UP[@]}" --allow-net api.example.com -- \
      iperf3 -4 -c api.example.com "${args[@]}" ;;
    floor) timeout -k 3 "$t" ip netns exec "$W_FLOOR" iperf3 -c 203.0.113.10 "${args[@]}" ;;
    floor-copy) timeout -k 3 "$t" ip netns exec "$W_FLOOR" iperf3 -c 203.0.113.10 -p 5211 \
      "${args[@]}" ;;
    pasta) host_t "$t" pasta -q -f --runas 0 --config-net -P "$W_DIR/pasta.pid" -- \
      iperf3 -c 203.0.113.10 "${args[@]}" ;;
    slirp) slirp_run "$t" iperf3 -c 203.0.113.10 "${args[@]}" ;;
  esac >"$out" 2>"$err"
  local rc=$? r
  : >"$W_DIR/pasta.pid"
  if r=$("$PY" "$HELP" iperf "$out"); then
    VAL[$key]+="$r "
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    note_fail "$key" "timed out after ${t}s; $(tail -n 1 "$err")"
  else
    local why
    why=$(grep -v -i syslog "$err" | tail -n 1)
    [ "$path" = slirp ] && why+=" slirp4netns: $(tail -n 1 "$W_DIR/slirp.log")"
    note_fail "$key" "${r#failed: } (exit code $rc) $why"
  fi
  kill "$srv" 2>/dev/null
  wait "$srv" 2>/dev/null
}
TPUT_PATHS=${TPUT_PATHS:-direct nf-full nf-name floor floor-copy pasta slirp}
if [[ " $SECTIONS " == *" throughput "* ]]; then
  echo "# throughput: iperf3 ${IPERF_SECONDS}s x $REPS reps per path, $TPUT_CONFIGS ..." >&2
  command -v pasta >/dev/null || note_fail "tput,pasta" "pasta not installed"
  command -v slirp4netns >/dev/null || note_fail "tput,slirp" "slirp4netns not installed"
  if [[ " $TPUT_PATHS " == *" floor "* || " $TPUT_PATHS " == *" floor-copy "* ]]; then
    if floor_up; then
      [[ " $TPUT_PATHS " != *" floor "* ]] || floor_relay_up floor 5202 ||
        note_fail "tput,floor" "$FLOOR_ERR"
      [[ " $TPUT_PATHS " != *" floor-copy "* ]] ||
        floor_relay_up floor-copy 5203 --copy-down "$FLOOR_COPY_BYTES" ||
        note_fail "tput,floor-copy" "$FLOOR_ERR"
    else
      note_fail "tput,floor" "$FLOOR_ERR"
      note_fail "tput,floor-copy" "$FLOOR_ERR"
    fi
  fi
  for _ in $(seq 1 "$REPS"); do
    for p in $TPUT_CONFIGS; do
      for path in $TPUT_PATHS; do
        case $path in
          pasta) command -v pasta >/dev/null || continue ;;
          slirp) command -v slirp4netns >/dev/null || continue ;;
          floor) [ -z "${ERR[tput,floor]:-}" ] || continue ;;
          floor-copy) [[ -z "${ERR[tput,floor-copy]:-}" && $p == *down ]] || continue ;;
        esac
        iperf_once "$path" "$p"
      done
    done
  done
fi

# --- 2. connection rate and latency ----------------------------------------------------------
cpu_ns() { # cpu_ns PID: nanoseconds on CPU, all threads (schedstat: exact, not in clock ticks)
  local t a s=0
  for t in /proc/"$1"/task/*/schedstat; do read -r a _ <"$t" 2>/dev/null && s=$((s + a)); done
  echo "$s"
}
sum_ns() { local x t=0; for x in "$@"; do t=$((t + $(cpu_ns "$x"))); done; echo "$t"; }
nginx_opens() { awk '/^Tcp:/ {if (h) print $7; else h=1}' "/proc/$NGINX_PID/net/snmp" 2>/dev/null; }
machine_busy_ticks() { # the machine's busy time, all CPUs, in clock ticks (/proc/stat: user,
  # nice, system, irq, softirq, steal; not idle or iowait)
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}
cpu_sampler() { # cpu_sampler PATH FILE: CPU per connection nginx accepted over the middle of a
  # run (from 1 s in to 1 s before its end), in microseconds, into FILE as "PROXY CLIENT SERVER
  # MACHINE": the proxy's own ("-" for the direct path), conn_load's, nginx's workers' and the
  # whole machine's (every process, the kernel's softirq work included)
  local path=$1 file=$2 pid="" client workers c1=0 c2=0 l1 l2 n1 n2 o1 o2 m1 m2 w
  sleep 0.7 # past the sandbox's start (the processes are looked up, then 0.3 s more)
  case $path in
    direct) ;;
    haproxy) pid=$HAPROXY_PID ;;
    *) pid=$(pgrep -n -f "^$NF run") ;;
  esac
  client=$(pgrep -n -x conn_load) workers=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
  [ "$path" = direct ] || [ -n "$pid" ] || return 0
  [ -n "$NGINX_PID" ] && [ -n "$client" ] || return 0
  sleep 0.3
  [ -z "$pid" ] || c1=$(cpu_ns "$pid")
  l1=$(cpu_ns "$client") n1=$(sum_ns $workers) o1=$(nginx_opens) m1=$(machine_busy_ticks)
  sleep "$(awk -v s="$CONN_SECONDS" 'BEGIN {print s - 2}')"
  [ -z "$pid" ] || c2=$(cpu_ns "$pid")
  l2=$(cpu_ns "$client") n2=$(sum_ns $workers) o2=$(nginx_opens) m2=$(machine_busy_ticks)
  for w in $pid $client; do [ -d "/proc/$w" ] || return 0; done
  [ "${o2:-0}" -gt "${o1:-0}" ] &&
    awk -v c=$((c2 - c1)) -v l=$((l2 - l1)) -v n=$((n2 - n1)) -v m=$((m2 - m1)) \
      -v o=$((o2 - o1)) -v hz="$(getconf CLK_TCK)" -v p="$pid" 'BEGIN {
        printf "%s %.1f %.1f %.1f\n", p == "" ? "-" : sprintf("%.1f", c / o / 1000),
          l / o / 1000, n / o / 1000, m / hz * 1e6 / o }' >"$file"
}
conn_once() { # conn_once PATH PROTO: one conn_load run into VAL[conn,PATH,PROTO,{rate,p50,p99}]
  local path=$1 proto=$2 key="conn,$1,$2" port=8080 tls=() out line
  [ "$proto" = https ] && port=8443 tls=(--tls)
  local load=("$CONN_LOAD" --port "$port" "${tls[@]}" --name api.example.com
    --concurrency "$CONCURRENCY" --duration "$CONN_SECONDS")
  local t=$((CONN_SECONDS + 20)) sampler="" cpu_file="$W_DIR/cpu-$path-$proto"
  rm -f "$cpu_file"
  if [ "$CONN_SECONDS" -ge 3 ]; then
    cpu_sampler "$path" "$cpu_file" &
    sampler=$!
  fi
  case $path in
    direct) out=$(host_t "$t" "${load[@]}" --ip 203.0.113.10 2>&1) ;;
    nf-ip) out=$(host_t "$t" "$NF" run -q "${UP[@]}" --allow-net 203.0.113.10 -- "${load[@]}" \
      --ip 203.0.113.10 2>&1) ;;
    nf-name) out=$(host_t "$t" "$NF" run -q "${UP[@]}" --allow-net api.example.com -- \
      "${load[@]}" --ip 203.0.113.10 2>&1) ;;
    haproxy)
      if [ -n "$HAPROXY_ERR" ]; then note_fail "$key" "$HAPROXY_ERR"; return; fi
      out=$(timeout -k 3 "$t" ip netns exec "$W_CLIENT" "${load[@]}" --ip 192.0.2.2 2>&1) ;;
  esac
  local rc=$?
  [ -n "$sampler" ] && wait "$sampler"
  if [ -s "$cpu_file" ]; then
    local proxy_us client_us server_us machine_us
    read -r proxy_us client_us server_us machine_us <"$cpu_file"
    [ "$proxy_us" = - ] || VAL[$key,cpu]+="$proxy_us "
    VAL[$key,ccpu]+="$client_us " VAL[$key,scpu]+="$server_us " VAL[$key,mcpu]+="$machine_us "
  fi
  line=$(grep '^conn_load ' <<<"$out")
  if [ -z "$line" ]; then
    note_fail "$key" "exit code $rc: $(grep -v '^$' <<<"$out" | tail -n 1)"
    return
  fi
  local conns errors rate p50 p99
  conns=$(sed -n 's/.* conns=\([0-9]*\).*/\1/p' <<<"$line")
  errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
  rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
  if [ "${errors:-1}" -gt 0 ] && [ "${errors:-1}" -gt $((conns / 100)) ]; then
    # More than 1% of the requests failed: the figure would measure failures.
    note_fail "$key" "$errors of $((conns + errors)) requests failed: $(grep 'first error' <<<"$out" | sed 's/.*first error: //')"
    return
  fi
  VAL[$key,rate]+="$rate "
  VAL[$key,p50]+="$p50 "
  VAL[$key,p99]+="$p99 "
  VAL[$key,errors]+="$errors "
}
CONN_PATHS=${CONN_PATHS:-direct nf-ip nf-name haproxy}
CONN_PROTOS=${CONN_PROTOS:-http https}
if [[ " $SECTIONS " == *" connections "* ]]; then
  echo "# connections: conn_load ${CONN_SECONDS}s, concurrency $CONCURRENCY, x $REPS reps ..." >&2
  for _ in $(seq 1 "$REPS"); do
    for proto in $CONN_PROTOS; do
      for path in $CONN_PATHS; do
        if [ -n "$NGINX_ERR" ]; then note_fail "conn,$path,$proto" "$NGINX_ERR"; continue; fi
        if [ ! -x "$CONN_LOAD" ]; then
          note_fail "conn,$path,$proto" "no $CONN_LOAD (cmake --build build --target conn_load)"
          continue
        fi
        conn_once "$path" "$proto"
      done
    done
  done
fi

# --- 3. DNS ----------------------------------------------------------------------------------
if [[ " $SECTIONS " == *" dns "* ]]; then
  echo "# dns: bench/dns_compare.sh --seconds $DNS_SECONDS --reps $DNS_REPS (sinkhole, forward) ..." >&2
  dns_out=$(timeout -k 5 300 ip netns exec "$W_HOST" "$here/bench/dns_compare.sh" "$NF" \
    --seconds "$DNS_SECONDS" --reps "$DNS_REPS" --rows "sinkhole forward" 2>&1)
  for row in sinkhole forward; do
    line=$(grep -E "^$row +[0-9]" <<<"$dns_out")
    if [ -n "$line" ]; then
      read -r _ nfq dmq _ <<<"$line"
      VAL[dns,$row,netfence]=$nfq
      VAL[dns,$row,dnsmasq]=$dmq
    else
      why=$(grep -m1 -E 'dns_compare|usage|needs|did not' <<<"$dns_out" || tail -n 1 <<<"$dns_out")
      note_fail "dns,$row,netfence" "$why"
      note_fail "dns,$row,dnsmasq" "$why"
    fi
  done
fi

# --- 4. start to exit ------------------------------------------------------------------------
if [[ " $SECTIONS " == *" start "* ]]; then
  echo "# start: median of $START_RUNS runs each, the commands in turn ..." >&2
  start_keys=(netfence unshare)
  start_cmds=("$NF" run -q "${UP[@]}" -- true --- unshare -Urn true)
  if command -v bwrap >/dev/null; then
    start_keys+=(bwrap)
    start_cmds+=(--- bwrap --unshare-net --dev-bind / / true)
  else
    note_fail start,bwrap "bwrap not installed"
  fi
  if command -v pasta >/dev/null; then
    start_keys+=(pasta)
    start_cmds+=(--- pasta -q -f --runas 0 --config-net -- true)
  else
    note_fail start,pasta "pasta not installed"
  fi
  start_out=$(timeout -k 3 300 ip netns exec "$W_HOST" "$PY" "$HELP" median-ms "$START_RUNS" \
    "${start_cmds[@]}" 2>&1)
  i=0
  while IFS= read -r line; do
    [ "$i" -lt "${#start_keys[@]}" ] || break
    key=start,${start_keys[$i]}
    if [[ $line == median_ms=* ]]; then
      ms=${line#median_ms=}
      VAL[$key]=${ms%% *}
      fails=${line##*failures=}
      [ "$fails" = 0 ] || note_fail "$key" "$fails of $START_RUNS runs failed"
    else
      note_fail "$key" "${line#failed: }"
    fi
    i=$((i + 1))
  done <<<"$start_out"
  for k in "${start_keys[@]}"; do note_fail "start,$k" "no figure: $(tail -n 1 <<<"$start_out")"; done
fi

# --- 5. memory per idle connection -----------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
slab_bytes() { "$PY" "$HELP" slab; }
idle_row() { # idle_row PATH: hold IDLE_CONNS connections through PATH; record memory deltas
  local path=$1 key="mem,$1" pid="" target=203.0.113.10 runner=(ip netns exec "$W_HOST")
  local dir="$W_DIR/hold-$path" srv
  mkdir -p "$dir"
  ip netns exec "$W_INET" "$PY" "$HELP" hold-server 203.0.113.10 7001 "$dir" >"$dir/server.log" 2>&1 &
  srv=$!
  if ! wait_listen in_inet 203.0.113.10:7001; then
    note_fail "$key" "hold server did not start"
    kill "$srv" 2>/dev/null
    return
  fi
  local client=("$PY" "$HELP" hold-client)
  case $path in
    netfence) coproc IDLE { exec "${runner[@]}" "$NF" run -q "${UP[@]}" --allow-net 203.0.113.10 -- \
      "${client[@]}" "$target" 7001 "$IDLE_CONNS" 2>"$dir/client.err"; } ;;
    haproxy) target=192.0.2.2
      coproc IDLE { exec ip netns exec "$W_CLIENT" "${client[@]}" "$target" 7001 "$IDLE_CONNS" 2>"$dir/client.err"; } ;;
    direct) coproc IDLE { exec "${runner[@]}" "${client[@]}" "$target" 7001 "$IDLE_CONNS" 2>"$dir/client.err"; } ;;
  esac
  local cpid=${IDLE_PID:-} in_fd=${IDLE[1]:-} out_fd=${IDLE[0]:-}
  if [ -z "$in_fd" ] || [ -z "$out_fd" ]; then
    note_fail "$key" "the client exited at once: $(tail -n 1 "$dir/client.err")"
    kill "$srv" 2>/dev/null
    wait "$srv" 2>/dev/null
    return
  fi
  case $path in
    netfence) # the coprocess is `ip netns exec`, which execs netfence: same pid
      for _ in $(seq 1 100); do
        [ "$(cat "/proc/$cpid/comm" 2>/dev/null)" = netfence ] && pid=$cpid && break
        sleep 0.05
      done
      sleep 0.5 ;; # the sandbox is up and python has started
    haproxy) pid=$HAPROXY_PID ;;
  esac
  local rss0="" slab0 rss1="" slab1 line="" held=0
  [ -n "$pid" ] && rss0=$(rss_kib "$pid")
  slab0=$(slab_bytes)
  # A client that died must not cost this shell a SIGPIPE (coprocess fds are not available to
  # subshells, so ignore it here, briefly).
  trap '' PIPE
  echo go 1>&"$in_fd" 2>/dev/null
  trap - PIPE
  read -r -t 150 line <&"$out_fd"
  # The client counts its side; wait until the server holds them all (through a proxy the
  # last dials lag the client's connects), bounded.
  for _ in $(seq 1 200); do
    [[ $line == opened=* ]] || break
    held=$(cat "$dir/held" 2>/dev/null || echo 0)
    [ "$held" -ge "$IDLE_CONNS" ] && break
    sleep 0.1
  done
  sleep 0.5
  [ -n "$pid" ] && rss1=$(rss_kib "$pid")
  slab1=$(slab_bytes)
  { exec {in_fd}>&-; } 2>/dev/null
  kill "$cpid" 2>/dev/null
  wait "$cpid" 2>/dev/null
  kill "$srv" 2>/dev/null
  wait "$srv" 2>/dev/null
  local opened=${line#opened=}
  opened=${opened%% *}
  held=$(cat "$dir/held" 2>/dev/null || echo 0)
  if [[ $line != opened=* ]]; then
    note_fail "$key" "the client said nothing: $(tail -n 1 "$dir/client.err")"
    return
  fi
  if [ "${opened:-0}" != "$IDLE_CONNS" ] || [ "$held" -lt "$IDLE_CONNS" ]; then
    note_fail "$key" "client opened ${opened:-none} ($line), server holds $held of $IDLE_CONNS $(tail -n 1 "$dir/server.log")"
    return
  fi
  if [ "$path" != direct ]; then
    if [ -z "$rss0" ] || [ -z "$rss1" ]; then note_fail "$key" "no VmRSS for pid ${pid:-?}"; return; fi
    VAL[$key,rss]=$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CONNS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')
  fi
  VAL[$key,slab]=$(awk -v a="$slab0" -v b="$slab1" -v n="$IDLE_CONNS" 'BEGIN {printf "%.0f", (b - a) / n}')
  sleep 1 # let the closed connections' TIME_WAIT/slab settle before the next path
}
if [[ " $SECTIONS " == *" memory "* ]]; then
  echo "# memory: $IDLE_CONNS idle connections: direct, netfence, HAProxy ..." >&2
  idle_row direct
  idle_row netfence
  if [ -n "$HAPROXY_ERR" ]; then note_fail mem,haproxy "$HAPROXY_ERR"; else idle_row haproxy; fi
fi

# --- the table -------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else print ""}'; }
met() { # met RATIO OP LIMIT: yes/no, or "" without a ratio
  [ -n "$1" ] || return 0
  awk -v r="$1" -v l="$3" -v op="$2" 'BEGIN {ok = (op == ">=") ? (r >= l) : (r <= l); print (ok ? "yes" : "NO")}'
}
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }
num() { [[ $1 != failed:* ]]; }
# row_vs WHAT FIGURE_TEXT VALUE REF_LABEL REF_VALUE REF_TEXT [OP LIMIT TARGET_TEXT]
row_vs() {
  local what=$1 ftext=$2 v=$3 rlabel=$4 rv=$5 rtext=$6 op=${7:-} lim=${8:-} ttext=${9:-}
  local r="" m=""
  if num "$v" && num "$rv"; then r=$(ratio "$v" "$rv"); fi
  [ -n "$op" ] && m=$(met "$r" "$op" "$lim")
  [ -n "$op" ] && [ -z "$r" ] && m="n/a"
  row "$what" "$ftext" "$rlabel ${rtext}" "${r:+${r}x}" "$ttext" "$m"
}
mbit() { local f; f=$(figure "$1") && printf "%.0f Mbit/s" "$f" || echo "$f"; }
spread() { # spread KEY: " (min-max)" over the repetitions, when there are several
  tr ' ' '\n' <<<"${VAL[$1]:-}" | grep . | sort -g |
    awk '{a[NR]=$1} END {if (NR > 1) printf " (%.0f-%.0f)", a[1], a[NR]}'
}
tput_rows() {
  local c=$1 d nf nn pa sl fl p=${1%%[a-z]*} dir=upload
  [[ $1 == *down ]] && dir=download
  d=$(figure "tput,direct,$c") nf=$(figure "tput,nf-full,$c") nn=$(figure "tput,nf-name,$c")
  pa=$(figure "tput,pasta,$c") sl=$(figure "tput,slirp,$c") fl=$(figure "tput,floor,$c")
  local s="iperf3 $dir, $p stream"
  [ "$p" = 1 ] || s="iperf3 $dir, $p streams"
  local dref pref
  dref="($(mbit "tput,direct,$c"))" pref="($(mbit "tput,pasta,$c"))"
  row "$s, direct" "$(mbit "tput,direct,$c")$(spread "tput,direct,$c")" "" "" "" ""
  if [ "$p" = 1 ]; then
    row_vs "$s, netfence full access" "$(mbit "tput,nf-full,$c")$(spread "tput,nf-full,$c")" "$nf" direct "$d" "$dref" ">=" 0.75 ">= 0.75x"
    row_vs "$s, netfence full access" "$(mbit "tput,nf-full,$c")" "$nf" pasta "$pa" "$pref" ">=" 2 ">= 2x"
  else
    row_vs "$s, netfence full access" "$(mbit "tput,nf-full,$c")$(spread "tput,nf-full,$c")" "$nf" direct "$d" "$dref"
  fi
  row_vs "$s, netfence hostname rule" "$(mbit "tput,nf-name,$c")$(spread "tput,nf-name,$c")" "$nn" direct "$d" "$dref"
  row_vs "$s, floor: bench/floor_relay" "$(mbit "tput,floor,$c")$(spread "tput,floor,$c")" "$fl" direct "$d" "$dref"
  row_vs "$s, netfence full access" "$(mbit "tput,nf-full,$c")" "$nf" floor "$fl" "($(mbit "tput,floor,$c"))"
  if [[ " $TPUT_PATHS " == *" floor-copy "* && $dir == download ]]; then
    local fc fref
    fc=$(figure "tput,floor-copy,$c") fref="($(mbit "tput,floor-copy,$c"))"
    row_vs "$s, floor copying the way down" "$(mbit "tput,floor-copy,$c")$(spread "tput,floor-copy,$c")" "$fc" direct "$d" "$dref"
    row_vs "$s, floor copying the way down" "$(mbit "tput,floor-copy,$c")" "$fc" pasta "$pa" "$pref"
    row_vs "$s, netfence full access" "$(mbit "tput,nf-full,$c")" "$nf" "floor copying" "$fc" "$fref"
  fi
  row_vs "$s, pasta" "$(mbit "tput,pasta,$c")$(spread "tput,pasta,$c")" "$pa" direct "$d" "$dref"
  row_vs "$s, slirp4netns" "$(mbit "tput,slirp,$c")$(spread "tput,slirp,$c")" "$sl" direct "$d" "$dref"
}
conn_text() { # conn_text KEY: "R conn/s, p50 X ms, p99 Y ms" or the failure
  local r p50 p99
  r=$(figure "$1,rate") || { echo "$r"; return; }
  p50=$(figure "$1,p50") p99=$(figure "$1,p99")
  awk -v r="$r" -v s="$(spread "$1,rate")" -v a="$p50" -v b="$p99" \
    'BEGIN {printf "%.0f conn/s%s, p50 %.2f ms, p99 %.2f ms", r, s, a / 1000, b / 1000}'
}
rate_text() { local r; r=$(figure "$1,rate") && printf '%.0f conn/s' "$r" || echo "$r"; }
conn_rows() {
  local proto=$1 d ip nn hp P=${1^^}
  d=$(figure "conn,direct,$proto,rate") ip=$(figure "conn,nf-ip,$proto,rate")
  nn=$(figure "conn,nf-name,$proto,rate") hp=$(figure "conn,haproxy,$proto,rate")
  local hlabel="HAProxy SNI routing (mode tcp)"
  [ "$proto" = http ] && hlabel="HAProxy Host routing (mode http)"
  row "$P requests, direct" "$(conn_text "conn,direct,$proto")" "" "" "" ""
  row_vs "$P requests, netfence IP rule" "$(conn_text "conn,nf-ip,$proto")" "$ip" direct "$d" "($(rate_text "conn,direct,$proto"))"
  if [ "$proto" = https ]; then
    row_vs "$P requests, netfence hostname rule (dial by SNI)" "$(conn_text "conn,nf-name,$proto")" "$nn" HAProxy "$hp" "($(rate_text "conn,haproxy,$proto"))" ">=" 1.0 ">= 1.0x"
  else
    row_vs "$P requests, netfence hostname rule (dial by Host)" "$(conn_text "conn,nf-name,$proto")" "$nn" HAProxy "$hp" "($(rate_text "conn,haproxy,$proto"))"
  fi
  row_vs "$P requests, $hlabel" "$(conn_text "conn,haproxy,$proto")" "$hp" direct "$d" "($(rate_text "conn,direct,$proto"))"
  # The proxy's own CPU per connection (lower is better): steadier than the rates, which move
  # with everything else the two cores run.
  local ci cn ch href
  ci=$(figure "conn,nf-ip,$proto,cpu") cn=$(figure "conn,nf-name,$proto,cpu")
  ch=$(figure "conn,haproxy,$proto,cpu")
  href="($(us_text "conn,haproxy,$proto,cpu"))"
  row_vs "$P: proxy CPU per connection, netfence IP rule" "$(us_text "conn,nf-ip,$proto,cpu")" "$ci" HAProxy "$ch" "$href"
  row_vs "$P: proxy CPU per connection, netfence hostname rule" "$(us_text "conn,nf-name,$proto,cpu")" "$cn" HAProxy "$ch" "$href"
  row "$P: proxy CPU per connection, HAProxy" "$(us_text "conn,haproxy,$proto,cpu")" "" "" "" ""
  # The whole machine's CPU per connection: what the two cores spend on one (client, server,
  # proxy, kernel); a rate above is about two cores divided by it, less idle time. The client's
  # and server's shares show what a path costs them (the sandbox's NAT runs in the client's).
  local path label mref
  mref="($(us_text "conn,haproxy,$proto,mcpu"))"
  for path in direct nf-ip nf-name haproxy; do
    case $path in
      direct) label=direct ;; nf-ip) label="netfence IP rule" ;;
      nf-name) label="netfence hostname rule" ;; haproxy) label=HAProxy ;;
    esac
    local k="conn,$path,$proto" text
    text="$(us_text "$k,mcpu")"
    num "$text" && text+=", of which client $(us_only "$k,ccpu"), server $(us_only "$k,scpu")"
    if [ "$path" = haproxy ]; then
      row "$P: machine CPU per connection, $label" "$text" "" "" "" ""
    else
      row_vs "$P: machine CPU per connection, $label" "$text" "$(figure "$k,mcpu")" HAProxy "$(figure "conn,haproxy,$proto,mcpu")" "$mref"
    fi
  done
}
us_only() { local f; f=$(figure "$1") && printf "%.0f us" "$f" || echo "$f"; }
us_text() { local t; t=$(us_only "$1") && num "$t" && t+="$(spread "$1")"; echo "$t"; }
dns_rows() {
  local r nf dm
  for r in sinkhole forward; do
    nf=$(figure "dns,$r,netfence") dm=$(figure "dns,$r,dnsmasq")
    local t=() && [ "$r" = sinkhole ] && t=(">=" 1.0 ">= 1.0x")
    row_vs "DNS $r, netfence" "$(num "$nf" && echo "$nf qps" || echo "$nf")" "$nf" dnsmasq \
      "$dm" "$(num "$dm" && echo "($dm qps)")" "${t[@]}"
  done
}
ms() { num "$1" && echo "$1 ms" || echo "$1"; }
start_rows() {
  local nf us bw pa
  nf=$(figure start,netfence) us=$(figure start,unshare) bw=$(figure start,bwrap) pa=$(figure start,pasta)
  row_vs "start to exit, netfence run -- true" "$(ms "$nf")" "$nf" "bwrap --unshare-net" "$bw" "($(ms "$bw"))" "<=" 2 "<= 2x"
  row_vs "start to exit, netfence run -- true" "$(ms "$nf")" "$nf" "pasta --config-net" "$pa" "($(ms "$pa"))" "<=" 0.2 "<= 0.2x (5x faster)"
  row "start to exit, unshare -Urn true" "$(ms "$us")" "" "" "" ""
}
mem_rows() {
  local nr hr nk dk hk
  nr=$(figure mem,netfence,rss) hr=$(figure mem,haproxy,rss)
  nk=$(figure mem,netfence,slab) dk=$(figure mem,direct,slab) hk=$(figure mem,haproxy,slab)
  b() { num "$1" && echo "$1 B/conn" || echo "$1"; }
  row_vs "idle TCP connection: netfence RSS" "$(b "$nr")" "$nr" "HAProxy RSS" "$hr" "($(b "$hr"))"
  row_vs "idle TCP connection: kernel slab, through netfence" "$(b "$nk")" "$nk" direct "$dk" "($(b "$dk"))"
  row_vs "idle TCP connection: kernel slab, through HAProxy" "$(b "$hk")" "$hk" direct "$dk" "($(b "$dk"))"
}
for s in $SECTIONS; do
  case $s in
    throughput) for c in $TPUT_CONFIGS; do tput_rows "$c"; done ;;
    connections) conn_rows http; conn_rows https ;;
    dns) dns_rows ;;
    start) start_rows ;;
    memory) mem_rows ;;
  esac
done

# --- header and table ------------------------------------------------------------------------
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"; }
echo "netfence peer comparison, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "netfence: $NF ($(git -C "$here" describe --always --dirty 2>/dev/null || echo "no git"))"
echo "kernel $(uname -r), $(nproc) CPUs, load average at start $LOAD0, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peers: iperf3 $(ver iperf3), passt/pasta $(ver passt), slirp4netns $(ver slirp4netns), bubblewrap $(ver bubblewrap),"
echo "       haproxy $(ver haproxy), nginx-light $(ver nginx-light), dnsmasq $(ver dnsmasq-base), dnsperf $(ver dnsperf)"
echo "servers and proxies: nginx worker_processes auto, HAProxy nbthread default (one per CPU), netfence one thread; the world's names have a ${W_DNS_TTL} s TTL"
echo "figures: median of $REPS runs, (min-max) where shown (iperf3 ${IPERF_SECONDS}s; conn_load ${CONN_SECONDS}s at concurrency $CONCURRENCY); DNS median of $DNS_REPS x ${DNS_SECONDS}s; start median of $START_RUNS; $IDLE_CONNS idle connections; took $(($(date +%s) - T0)) s"
echo
echo "| what | figure | reference | ratio | target | met |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
