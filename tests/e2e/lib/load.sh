# Helpers shared by the fault, load and hostile-traffic e2e tests (run_faults, run_load,
# run_hostile); sourced after lib/world.sh and world_up.
#
#   load_servers        starts lib/load.py's servers in the "internet" namespace (echo on
#                       203.0.113.10/.20:7002, reset-midway on .10:7001, TLS line servers on
#                       .10/.20:8443); they log "accept|close <identity> <port>" to $W_DIR/load.log
#   load_mark / load_since WORD IDENTITY PORT
#                       how many such lines the load servers logged since load_mark
#   bg_nf [run flags] -- COMMAND...
#                       starts `netfence run --upstream 198.51.100.2 --log $W_DIR/nf.log ...` in the
#                       background in the host namespace; BG_PID is netfence itself
#                       (bg_wait [TENTHS], in lib/world.sh, waits for it)
#   wait_for TENTHS COMMAND...  runs COMMAND every 0.1 s until it succeeds (bounded)
#   cpu_ticks PID       utime+stime of PID in clock ticks (/proc/PID/stat)
#   rss_kib PID         VmRSS of PID in KiB
#   gone PID            true when PID has exited (a zombie counts as gone)
#   check_match DESCRIPTION TEXT ERE   like check_has, with an extended regular expression
#   KEEP_PIDS+=(PID)    processes the test started outside the namespaces (sandbox children that
#                       netfence did not reap): killed on exit before the world goes down

LOAD="${NETFENCE_SOURCE_DIR}/tests/e2e/lib/load.py"
KEEP_PIDS=()
load_cleanup() {
  for pid in "${KEEP_PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; done
  world_down
}
trap load_cleanup EXIT

load_servers() {
  start_until_ready "$W_DIR/load.ready" "$W_DIR/load-servers.log" "load: servers" \
    in_inet "$W_PY" "$LOAD" serve "$W_DIR"
}

L_MARK=0
load_mark() { L_MARK=$(wc -l <"$W_DIR/load.log" 2>/dev/null || echo 0); }
load_since() { # load_since accept|close IDENTITY PORT: count of such lines since load_mark
  tail -n +$((L_MARK + 1)) "$W_DIR/load.log" 2>/dev/null | grep -c "^$1 $2 $3\$"
}

bg_nf() {
  : >"$W_DIR/nf.log"
  ip netns exec "$W_HOST" "$NF" run --upstream 198.51.100.2 --log "$W_DIR/nf.log" "$@" \
    >"$W_DIR/bg.out" 2>"$W_DIR/bg.err" &
  BG_PID=$!
}
wait_for() { # wait_for TENTHS COMMAND...
  local tenths=$1
  shift
  for _ in $(seq 1 "$tenths"); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
gone() { # gone PID: no such process, or only a zombie (killed, not yet reaped by its parent)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -z "$state" ] || [ "$state" = Z ]
}
check_match() { # check_match DESCRIPTION TEXT ERE: some line of TEXT matches ERE
  if grep -qE -- "$3" <<<"$2"; then pass; else failed "$1 (no line matches /$3/)"; show_observed "$2"; fi
}
cpu_ticks() { # fields 14 and 15 of /proc/PID/stat, after the ")" that ends the command name
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
