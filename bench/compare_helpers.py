#!/usr/bin/env python3
"""Small helpers for bench/compare.sh (the peer comparison, issue 7). Not a benchmark itself.

  median-ms RUNS CMD [--- CMD]...
                             run each CMD once (warm-up), then RUNS times back to back, one
                             CMD after the other;
                             print "median_ms=M min_ms=N failures=F" (wall time of each run)
                             or "failed: <why>", one line per CMD
  iperf FILE                 print the receiver's rate in Mbit/s from `iperf3 -J` output,
                             or "failed: <iperf3's error>" (exit 1)
  hold-server IP PORT DIR    accept TCP connections and hold them, never reading; write DIR/ready
                             once listening and DIR/held (the count) whenever it changes
  hold-client IP PORT N      wait for a line on stdin, open N TCP connections (256 in flight at
                             most), print "opened=K errors=E [first error]", then hold them
                             until stdin reaches EOF
  slab                       print the bytes in use (active objects x object size) of the kernel
                             slab caches an idle TCP connection uses, summed
Every subcommand raises RLIMIT_NOFILE to its hard limit first.
"""
import errno
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time

SLAB_CACHES = ("TCP", "sock_inode_cache", "filp", "eventpoll_epi", "nf_conntrack")


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def median_ms(runs, argv):
    """Commands separated by "---"; one line per command, in order."""
    cmds, cur = [], []
    for a in argv + ["---"]:
        if a == "---":
            if cur:
                cmds.append(cur)
            cur = []
        else:
            cur.append(a)

    def once(cmd):
        # A blocking wait, with a timer that kills a hung run: Popen.wait(timeout=...) polls with
        # doubling sleeps (0.5, 1, 2, 4 ms ...) and so rounds each time up to the next poll
        # (a 4.5 ms run read as 7.5 ms, a 2.9 ms one as 3.5 ms).
        start = time.perf_counter()
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        except OSError:
            return 0.0, -1
        killer = threading.Timer(30, p.kill)
        killer.start()
        rc = p.wait()
        elapsed = (time.perf_counter() - start) * 1000
        killer.cancel()
        return elapsed, rc

    # One command at a time, as hyperfine does: a warm-up run, then RUNS timed runs back to back.
    # Taking turns instead put each command right after another one's exit, and the kernel's
    # teardown of pasta's namespace and tap device (after pasta exits, under the locks the next
    # command's namespace and links need) made whatever ran next 1.2 ms slower; pausing between
    # runs instead lets the idle CPUs sleep and slows every command by ~1 ms.
    times = [[] for _ in cmds]
    failures = [0 for _ in cmds]
    for i, cmd in enumerate(cmds):
        once(cmd)  # warm-up: page cache, first-exec costs, the previous command's teardown
        for _ in range(runs):
            ms, rc = once(cmd)
            if rc != 0:
                failures[i] += 1
            else:
                times[i].append(ms)
    for i in range(len(cmds)):
        if not times[i]:
            print(f"failed: all {runs} runs exited non-zero")
        else:
            print(f"median_ms={statistics.median(times[i]):.2f} min_ms={min(times[i]):.2f} "
                  f"failures={failures[i]}")
    return 0


def iperf(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"failed: no iperf3 JSON ({e.__class__.__name__})")
        return 1
    if data.get("error"):
        print(f"failed: iperf3: {data['error']}")
        return 1
    try:
        bps = data["end"]["sum_received"]["bits_per_second"]
    except (KeyError, TypeError):
        print("failed: iperf3 JSON without end.sum_received")
        return 1
    print(f"{bps / 1e6:.0f}")
    return 0


def hold_server(ip, port, directory):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((ip, port))
    listener.listen(4096)
    listener.setblocking(False)
    held = []
    with open(os.path.join(directory, "ready"), "w") as f:
        f.write("ready\n")
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    reported = -1
    while True:
        sel.select(timeout=0.2)
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # EMFILE and friends: report, keep going
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    time.sleep(0.05)
                    break
                raise
            held.append(conn)
        if len(held) != reported:
            reported = len(held)
            tmp = os.path.join(directory, "held.tmp")
            with open(tmp, "w") as f:
                f.write(f"{reported}\n")
            os.replace(tmp, os.path.join(directory, "held"))


def hold_client(ip, port, n):
    sys.stdin.readline()
    sel = selectors.DefaultSelector()
    opened, errors, first_error, pending = [], 0, "", 0
    started = 0
    deadline = time.monotonic() + 120
    while (started < n or pending) and time.monotonic() < deadline:
        while started < n and pending < 256:
            started += 1
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as e:  # EMFILE: count it, keep what is open
                errors += 1
                first_error = first_error or e.strerror
                continue
            s.setblocking(False)
            rc = s.connect_ex((ip, port))
            if rc in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                errors += 1
                first_error = first_error or os.strerror(rc)
                s.close()
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                errors += 1
                first_error = first_error or os.strerror(err)
                s.close()
            else:
                opened.append(s)
    extra = f" first_error={first_error.replace(' ', '_')}" if first_error else ""
    print(f"opened={len(opened)} errors={errors + pending}{extra}", flush=True)
    sys.stdin.read()  # hold until the harness closes our stdin
    return 0


def slab():
    total = 0
    with open("/proc/slabinfo") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in SLAB_CACHES:
                total += int(fields[1]) * int(fields[3])
    print(total)
    return 0


def main(argv):
    raise_nofile()
    if len(argv) >= 3 and argv[0] == "median-ms":
        return median_ms(int(argv[1]), argv[2:])
    if len(argv) == 2 and argv[0] == "iperf":
        return iperf(argv[1])
    if len(argv) == 4 and argv[0] == "hold-server":
        return hold_server(argv[1], int(argv[2]), argv[3])
    if len(argv) == 4 and argv[0] == "hold-client":
        return hold_client(argv[1], int(argv[2]), int(argv[3]))
    if len(argv) == 1 and argv[0] == "slab":
        return slab()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
