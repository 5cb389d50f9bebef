#!/usr/bin/env bash
# The life of a `netfence run` (SPEC 1.1, 1.7, 2.1): disabled mode (only lo, DNS fails at once),
# exit codes passed through (and 125/126/127 for netfence's own failures), signals (a command
# killed by a signal; SIGTERM/SIGINT sent to netfence reach the command), nothing left behind
# (namespaces, processes, mounts), and the same runs as an unprivileged user (user namespaces).
#
# Usage: run_lifecycle_test.sh path/to/netfence (as root; ctest e2e.run_lifecycle)
NF=$(readlink -f "${1:?usage: $0 path/to/netfence}")
: "${NETFENCE_SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
source "$NETFENCE_SOURCE_DIR/tests/e2e/lib/world.sh"
[ "$(id -u)" -eq 0 ] || { echo "run_lifecycle: needs root (network namespaces)"; exit 1; }

netns_before=$(ip netns list | sort)
world_up || exit 1
# Mount points of this (the root) mount namespace; `ip netns add` (ours and other tests') adds
# /run/netns/*, which is not netfence's doing.
mounts() { cut -d' ' -f5 /proc/self/mountinfo | grep -v '^/run/netns' | sort; }
mounts_before=$(mounts)

CURL="curl -s --max-time 5"
DIG="dig +time=2 +tries=1"
ms_now() { echo $(($(date +%s%N) / 1000000)); }

# Starts netfence in the background in the host namespace (not through a shell function, so
# that $! is netfence itself); waits until the command has written $W_DIR/ready.
bg_netfence() {
  rm -f "$W_DIR/ready"
  ip netns exec "$W_HOST" "$NF" run --upstream 198.51.100.2 "$@" &
  BG_PID=$!
  for _ in $(seq 1 100); do
    [ -f "$W_DIR/ready" ] && return 0
    sleep 0.05
  done
  return 1
}

# --- Disabled mode ----------------------------------------------------------------------------
out=$(nf --network disabled -- sh -c 'ip -o link | cut -d: -f2 | tr -d " "; ip -o addr | grep -v " lo " | wc -l; ip route; ip -6 route')
check_eq "disabled: only lo, no address but lo's, no route" "$out" $'lo\n0'
out=$(nf --network disabled -- sh -c "t=\$(date +%s%N); $DIG api.example.com >/dev/null 2>&1; echo rc=\$? ms=\$(( (\$(date +%s%N) - t) / 1000000 ))")
if [[ $out =~ rc=([0-9]+)\ ms=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ne 0 ] && [ "${BASH_REMATCH[2]}" -lt 1500 ]; then
  pass
else
  failed "disabled: DNS fails at once (well before dig's 2 s timeout)"; show_observed "$out"
fi
mark_logs
out=$(nf --network disabled -- sh -c "$CURL http://203.0.113.10/; echo rc=\$?")
check_not_served "disabled: no TCP out" "$out" good
check_eq "disabled: no server saw a connection" "$(conns_since)" ""
check_eq "disabled: DNS never reached the upstream" "$(dns_queries_since)" ""
out=$(nf --network disabled --allow-net api.example.com -- true 2>&1)
code=$?
check_eq "disabled + allow_net: setup error 125" "$code" 125
check_has "disabled + allow_net: says why" "$out" "netfence:"

# --- Exit codes and signals -------------------------------------------------------------------
nf -- sh -c 'exit 3'
check_eq "exit code 3 passes through" "$?" 3
nf --allow-net api.example.com -- sh -c "$CURL http://api.example.com/ >/dev/null && exit 42"
check_eq "exit code 42 passes through (allowlist mode, after traffic)" "$?" 42
nf -- true
check_eq "exit code 0" "$?" 0
nf -- sh -c 'kill -TERM $$'
check_eq "command killed by SIGTERM -> 143" "$?" 143
nf -- sh -c 'kill -KILL $$'
check_eq "command killed by SIGKILL -> 137" "$?" 137
out=$(nf -- /nonexistent/command 2>&1)
check_eq "command not found -> 127" "$?" 127
check_has "command not found: one-line message" "$out" "netfence:"
out=$(nf -- netfence-no-such-command 2>&1)
check_eq "command not in PATH -> 127" "$?" 127
out=$(nf -- /etc/passwd 2>&1)
check_eq "command not executable -> 126" "$?" 126
out=$(nf --allow-net 'https://api.example.com' -- true 2>&1)
check_eq "bad rule -> 125" "$?" 125
check_has "bad rule: the message quotes the entry" "$out" "https://api.example.com"

if bg_netfence --allow-net api.example.com -- sh -c \
  "trap 'echo got-term >$W_DIR/trapped; exit 7' TERM; touch $W_DIR/ready; while :; do sleep 0.05; done"; then
  kill -TERM "$BG_PID"
  bg_wait
  check_eq "SIGTERM to netfence is forwarded: the command's handler ran and its code (7) came back" \
    "$BG_CODE:$(cat "$W_DIR/trapped" 2>/dev/null)" "7:got-term"
else
  failed "SIGTERM forwarding: the command did not start"
  kill -KILL "$BG_PID" 2>/dev/null
fi
if bg_netfence -- sh -c "touch $W_DIR/ready; exec sleep 30"; then
  kill -TERM "$BG_PID"
  bg_wait
  check_eq "SIGTERM to netfence kills a command without a handler -> 143" "$BG_CODE" 143
else
  failed "SIGTERM (no handler): the command did not start"
  kill -KILL "$BG_PID" 2>/dev/null
fi
if bg_netfence -- sh -c "touch $W_DIR/ready; exec sleep 30"; then
  kill -INT "$BG_PID"
  bg_wait
  check_eq "SIGINT to netfence is forwarded -> 130" "$BG_CODE" 130
else
  failed "SIGINT: the command did not start"
  kill -KILL "$BG_PID" 2>/dev/null
fi

# --- Nothing left behind ----------------------------------------------------------------------
# A command that leaves children running (one in a new session) when it exits: they must not
# outlive the sandbox (its network namespace and gateway are gone).
marker=$((RANDOM % 50 + 300)).$$
nf --allow-net api.example.com -- sh -c "sleep $marker & setsid sleep $marker.5 & exit 0"
alive=""
for _ in $(seq 1 20); do
  alive=$(pgrep -f "sleep $marker" || true)
  [ -z "$alive" ] && break
  sleep 0.05
done
check_eq "orphans of the command do not outlive netfence" "$alive" ""
[ -n "$alive" ] && kill $alive 2>/dev/null

# While a sandbox runs: its resolv.conf bind mount stays in its own mount namespace.
if bg_netfence --allow-net api.example.com -- sh -c "touch $W_DIR/ready; exec sleep 30"; then
  check_lacks "running: netfence's own mount namespace has no resolv.conf mount" \
    "$(cut -d' ' -f5 "/proc/$BG_PID/mountinfo")" "resolv.conf"
  child=$(pgrep -P "$BG_PID" | head -n 1)
  check_has "running: the sandboxed command sees netfence's resolv.conf" \
    "$(cat "/proc/$child/root/etc/resolv.conf" 2>/dev/null)" "netfence"
  kill -TERM "$BG_PID"
  bg_wait
fi
check_eq "afterwards: no process left in the host namespace" "$(ip netns pids "$W_HOST")" ""
check_eq "afterwards: no mount added" "$(mounts)" "$mounts_before"
check_eq "afterwards: no named namespace added" \
  "$(ip netns list | grep -vE "^nf[0-9]+[hi]\b" | sort)" "$(grep -vE "^nf[0-9]+[hi]\b" <<<"$netns_before")"

# --- Unprivileged (user namespaces) -----------------------------------------------------------
if ! nobody_netfence; then
  echo "SKIP: unprivileged user namespaces are disabled on this machine; the unprivileged run is not tested"
else
  nf_bin=$NF_NOBODY
  clients=$W_CLIENTS
  if ! $NOBODY test -r "$W_CLIENTS"; then
    mkdir -p "$W_DIR/bin" && chmod 755 "$W_DIR" "$W_DIR/bin" && cp "$W_CLIENTS" "$W_DIR/bin/" &&
      chmod 644 "$W_DIR/bin/clients.py"
    clients=$W_DIR/bin/clients.py
  fi
  mark_logs
  out=$(in_host $NOBODY "$nf_bin" run --upstream 198.51.100.2 --allow-net api.example.com -- sh -c "
    echo uid=\$(id -u)
    $CURL http://api.example.com/; $CURL -k https://api.example.com/; $CURL -6 http://api.example.com/
    echo dns:\$($DIG +short evil.example.net)
    $CURL -i http://203.0.113.20/ | head -n 1
    $CURL -k --resolve api.example.com:443:203.0.113.20 https://api.example.com/
    $W_PY $clients hello 203.0.113.20 443 api.example.com --records 3 --size 1800
    exit 3" 2>&1)
  code=$?
  check_eq "unprivileged: exit code 3 passes through" "$code" 3
  check_eq "unprivileged: http, https and v6 to the allowed host" "$(grep -c '^good api.example.com$' <<<"$out")" 4
  check_has "unprivileged: blocked name sinkholed" "$out" "dns:0.0.0.0"
  check_has "unprivileged: IP literal gets 403" "$out" "403 Forbidden"
  check_not_served "unprivileged: evil never answers" "$out" evil
  check_has "unprivileged: split ClientHello read" "$out" "result=serverhello"
  check_eq "unprivileged: evil never saw a connection" "$(conns_since evil)" ""
  out=$(in_host $NOBODY "$nf_bin" run --network disabled -- sh -c 'ip -o link | cut -d: -f2 | tr -d " "' 2>&1)
  check_eq "unprivileged: disabled mode has only lo" "$out" "lo"
  check_eq "unprivileged: no process left in the host namespace" "$(ip netns pids "$W_HOST")" ""
  # Same uid as netfence here: only netfence being non-dumpable stops a ptrace of the gateway.
  out=$(in_host $NOBODY "$nf_bin" run -- python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace=" + ("ok" if libc.ptrace(16, os.getppid(), 0, 0) == 0 else "denied"))
try:
    open(f"/proc/{os.getppid()}/mem", "rb").read(1); print("mem=ok")
except OSError:
    print("mem=denied")' 2>&1)
  check_has "unprivileged: the command cannot ptrace netfence" "$out" "ptrace=denied"
  check_has "unprivileged: the command cannot read netfence's memory" "$out" "mem=denied"
fi

# --- The workload cannot loosen its own confinement (issue 6) ----------------------------------
# netfence (the command's parent, in the host namespace) cannot be traced or written through
# /proc; raw/packet sockets, entering other namespaces and unsharing the network all fail.
out=$(nf -- python3 -c '
import ctypes, os, socket
ppid = os.getppid()
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace=" + ("ok" if libc.ptrace(16, ppid, 0, 0) == 0 else "denied"))  # PTRACE_ATTACH
try:
    open(f"/proc/{ppid}/mem", "rb").read(1); print("mem=ok")
except OSError:
    print("mem=denied")
for name, args in (("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0)),
                   ("raw", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP))):
    try:
        socket.socket(*args); print(name + "=ok")
    except OSError:
        print(name + "=denied")
try:
    fd = os.open("/proc/1/ns/net", os.O_RDONLY)
    print("setns=" + ("ok" if libc.setns(fd, 0x40000000) == 0 else "denied"))  # CLONE_NEWNET
except OSError:
    print("setns=denied")
print("unshare=" + ("ok" if libc.unshare(0x40000000) == 0 else "denied"))
' 2>&1)
for what in ptrace mem packet raw setns unshare; do
  check_has "confinement: $what from inside fails" "$out" "$what=denied"
done

finish run_lifecycle
