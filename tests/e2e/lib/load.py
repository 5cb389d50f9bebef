#!/usr/bin/env python3
"""Load, fault and hostile-traffic helpers for the e2e tests (run_faults, run_load, run_hostile).

In the "internet" namespace (tests/e2e/lib/world.sh), started by the test:

  serve DIR
      asyncio servers with a 4096-connection backlog. Each logs to DIR/load.log, line by line,
      "accept <identity> <port>" when it accepts a TCP connection (before any TLS handshake) and
      "close <identity> <port>" when the connection is gone:
        - TCP echo on 203.0.113.10:7002 ("good") and 203.0.113.20:7002 ("evil");
        - 203.0.113.10:7001 ("reset"): after the client's first bytes it sends an HTTP head
          promising 1 MiB and 64 KiB of body, waits 300 ms, then resets (SO_LINGER 0): a
          transfer cut in the middle;
        - TLS (DIR/cert.pem, DIR/key.pem) on 203.0.113.10:8443 ("good") and 203.0.113.20:8443
          ("evil"): reads one line, answers "<identity> <line>" and closes.
      Writes DIR/load.ready once listening.

Inside a sandbox (each bounded in time; prints one line of key=value words; a file named
--sync DIR/<name> is how the shell and the client take turns):

  probe-loop FILE ADDR PORT NAME
      Every 100 ms: a TCP echo round trip to ADDR:PORT and a lookup of NAME (getaddrinfo, the
      sandbox's resolver); appends "<ms> tcp=<outcome> dns=<outcome>" to FILE. Runs until
      killed (at most 120 s).
  hold ADDR PORT N --sync DIR
      Writes DIR/hold-started, waits for DIR/hold-go, opens N connections (at most 256 connects
      in flight), writes "opened=<n>" to DIR/hold-opened, waits for DIR/hold-echo, then sends
      one byte on every connection and reads it back: opened= echoed= failed=<outcome:count>.
  mixed N
      N connections at once, kinds in turn: an allowed IP (203.0.113.10:7002, echo), a denied IP
      (203.0.113.20:7002), an allowed SNI sent to the other server's address (TLS to
      203.0.113.20:8443 naming api.example.com: must be answered by "good"), a denied SNI (TLS to
      203.0.113.10:8443 naming evil.example.net). Prints per kind the count of each outcome,
      e.g. ip_allow=echo:250 ip_deny=reset:250 sni_allow=good:250 sni_deny=alert_access_denied:250.
  openhold ADDR PORT N [--exit CODE] [--ready FILE] [--hold S]
      Opens N connections and checks one echo on each; then writes FILE (if given) and either
      exits at once with CODE leaving them open, or holds them S seconds.
  fdload ADDR PORT N --sync DIR [--hold S] [--after M]
      Writes DIR/fd-started, waits for DIR/fd-go; opens N connections at once and sends a byte
      on each; counts the echoes that come back within S seconds (the exhausted period); writes
      DIR/fd-exhausted; closes them all; 1 s later opens M new ones, each of which must echo:
      opened= echoed_exhausted= after_ok=<ok>/<M>.
  peek N ADDR PORT --echo ADDR PORT --probe-host NAME [--check-s S] [--wait-s W]
      Opens an echo connection (an established relay), then N connections to ADDR:PORT that
      never name a host: the odd ones send nothing, the even ones the first 60 bytes of a
      ClientHello. While they are all held, for S seconds, round-trips on the echo connection
      every 100 ms and, half-way, fetches http://NAME/ on a new connection. Then waits up to W
      seconds for the gateway to close the N: held_before= held_after= echo_ok=<ok>/<total>
      probe=<body> closed_alert= closed_reset= closed_eof= still_open=.
  drip ADDR PORT SNI [--size BYTES] [--chunk BYTES] [--interval-ms MS] [--max-s S]
      Sends a ClientHello for SNI (about --size bytes, in 16 KiB TLS records), --chunk bytes
      (default 1) every MS ms (default 200), until netfence answers or closes:
      result=denied|alert|reset|eof|serverhello|timeout sent=<bytes> of=<bytes> hello_len= ms=.
  fetch ADDR PORT
      Sends a GET and reads until the end: result=eof|reset|timeout bytes=<received>.
"""
import argparse
import asyncio
import collections
import errno
import os
import resource
import socket
import ssl
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ written into the source tree by root
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clients import DENIED_ALERT, client_hello  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Servers (the "internet" namespace)


class Logged(asyncio.Protocol):
    log = None  # the line-buffered DIR/load.log

    def __init__(self, ident, port):
        self.ident, self.port = ident, port
        self.transport = None
        Logged.log.write(f"accept {ident} {port}\n")

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        Logged.log.write(f"close {self.ident} {self.port}\n")


class Echo(Logged):
    def data_received(self, data):
        self.transport.write(data)


class ResetMidway(Logged):
    sent = False

    def data_received(self, data):
        if self.sent:
            return
        self.sent = True
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 1048576\r\n\r\n")
        self.transport.write(head + b"x" * 65536)
        asyncio.get_running_loop().call_later(0.3, self.reset)

    def reset(self):
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class LineReply(Logged):
    buffer = b""

    def data_received(self, data):
        self.buffer += data
        if b"\n" in self.buffer:
            line = self.buffer.split(b"\n", 1)[0].decode(errors="replace").strip()
            self.transport.write(f"{self.ident} {line}\n".encode())
            self.transport.close()


async def serve(directory):
    Logged.log = open(f"{directory}/load.log", "a", buffering=1)
    loop = asyncio.get_running_loop()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(f"{directory}/cert.pem", f"{directory}/key.pem")
    servers = [
        (Echo, "203.0.113.10", 7002, "good", None),
        (Echo, "203.0.113.20", 7002, "evil", None),
        (ResetMidway, "203.0.113.10", 7001, "reset", None),
        (LineReply, "203.0.113.10", 8443, "good", tls),
        (LineReply, "203.0.113.20", 8443, "evil", tls),
    ]
    for cls, address, port, ident, ctx in servers:
        await loop.create_server(lambda c=cls, i=ident, p=port: c(i, p), address, port,
                                 backlog=4096, reuse_address=True, ssl=ctx)
    open(f"{directory}/load.ready", "w").close()
    await asyncio.Event().wait()


# ----------------------------------------------------------------------------------------------
# Clients (inside a sandbox)


def outcome(e):
    """A short word for how an attempt ended."""
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (TimeoutError, asyncio.TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(e, (EOFError, asyncio.IncompleteReadError)):
        return "eof"
    if isinstance(e, ssl.SSLError):
        return "alert_access_denied" if "ACCESS_DENIED" in str(e) else "tls_error"
    if isinstance(e, OSError) and e.errno is not None:
        return "error_" + errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


def counts(outcomes):
    c = collections.Counter(outcomes)
    return ",".join(f"{k}:{v}" for k, v in sorted(c.items())) or "-"


async def connect(addr, port, timeout=10.0):
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(s, (addr, port)), timeout)
    except BaseException:
        s.close()
        raise
    return s


async def round_trip(s, data=b"x", timeout=10.0):
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_sendall(s, data), timeout)
    got = b""
    while len(got) < len(data):
        chunk = await asyncio.wait_for(loop.sock_recv(s, 4096), timeout)
        if not chunk:
            raise EOFError
        got += chunk
    if got != data:
        raise ValueError("echo mismatch")


async def wait_file(path, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            print(f"result=sync_timeout waiting_for={path}", flush=True)
            os._exit(3)
        await asyncio.sleep(0.02)


def write_file(path, text=""):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


async def open_many(addr, port, n, limit=256, timeout=10.0):
    """Opens n connections, at most `limit` connects in flight; returns (sockets, failures)."""
    gate = asyncio.Semaphore(limit)
    socks, failures = [], []

    async def one():
        async with gate:
            try:
                socks.append(await connect(addr, port, timeout))
            except Exception as e:  # noqa: BLE001 - every failure is counted
                failures.append(outcome(e))

    await asyncio.gather(*(one() for _ in range(n)))
    return socks, failures


async def echo_all(socks, limit=512, timeout=10.0):
    gate = asyncio.Semaphore(limit)
    results = []

    async def one(s):
        async with gate:
            try:
                await round_trip(s, b"x", timeout)
                results.append("echo")
            except Exception as e:  # noqa: BLE001
                results.append(outcome(e))

    await asyncio.gather(*(one(s) for s in socks))
    return results


def probe_loop(a):
    deadline = time.monotonic() + 120
    start = time.monotonic()
    with open(a.file, "a", buffering=1) as log:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((a.addr, a.port), timeout=1) as s:
                    s.sendall(b"p")
                    tcp = "ok" if s.recv(1) == b"p" else "eof"
            except Exception as e:  # noqa: BLE001
                tcp = outcome(e)
            try:
                socket.getaddrinfo(a.name, 80, socket.AF_INET, socket.SOCK_STREAM)
                dns = "ok"
            except socket.gaierror as e:
                dns = f"fail_{e.errno}"
            log.write(f"{int((time.monotonic() - start) * 1000)} tcp={tcp} dns={dns}\n")
            time.sleep(0.1)


async def hold(a):
    write_file(f"{a.sync}/hold-started")
    await wait_file(f"{a.sync}/hold-go")
    socks, failures = await open_many(a.addr, a.port, a.n)
    write_file(f"{a.sync}/hold-opened", f"opened={len(socks)}\n")
    await wait_file(f"{a.sync}/hold-echo")
    results = await echo_all(socks)
    echoed = results.count("echo")
    for s in socks:
        s.close()
    print(f"opened={len(socks)} echoed={echoed} "
          f"failed={counts([r for r in results if r != 'echo'] + failures)}")


async def mixed(a):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()

    async def plain(addr):
        try:
            s = await connect(addr, 7002)
        except Exception as e:  # noqa: BLE001
            return outcome(e)
        try:
            await round_trip(s, b"ping\n")
            return "echo"
        except Exception as e:  # noqa: BLE001
            return outcome(e)
        finally:
            s.close()

    async def tls(addr, sni):
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(addr, 8443, ssl=ctx, server_hostname=sni), 15)
            writer.write(f"hello {sni}\n".encode())
            line = await asyncio.wait_for(reader.readline(), 15)
            if not line:
                return "eof"
            return line.decode(errors="replace").split()[0]  # the server's identity
        except Exception as e:  # noqa: BLE001
            return outcome(e)
        finally:
            if writer is not None:
                writer.transport.abort()

    kinds = {
        "ip_allow": lambda: plain("203.0.113.10"),
        "ip_deny": lambda: plain("203.0.113.20"),
        "sni_allow": lambda: tls("203.0.113.20", "api.example.com"),
        "sni_deny": lambda: tls("203.0.113.10", "evil.example.net"),
    }
    names = list(kinds)
    order = [names[i % len(names)] for i in range(a.n)]
    start = loop.time()
    results = await asyncio.gather(*(kinds[k]() for k in order))
    by_kind = collections.defaultdict(list)
    for k, r in zip(order, results):
        by_kind[k].append(r)
    words = [f"{k}={counts(by_kind[k])}" for k in names]
    words.append(f"ms={int((loop.time() - start) * 1000)}")
    print(" ".join(words))


async def openhold(a):
    socks, failures = await open_many(a.addr, a.port, a.n)
    results = await echo_all(socks)
    sys.stdout.write(f"opened={len(socks)} echoed={results.count('echo')} "
                     f"failed={counts(failures)}\n")
    sys.stdout.flush()
    if a.ready:
        write_file(a.ready)
    if a.exit is not None:
        os._exit(a.exit)  # no close: the connections are still open when the command ends
    await asyncio.sleep(a.hold)


async def fdload(a):
    loop = asyncio.get_running_loop()
    write_file(f"{a.sync}/fd-started")
    await wait_file(f"{a.sync}/fd-go")
    start = loop.time()
    socks, failures = await open_many(a.addr, a.port, a.n, limit=a.n, timeout=3)
    remaining = max(0.1, a.hold - (loop.time() - start))
    results = await echo_all(socks, limit=a.n, timeout=remaining)
    echoed = results.count("echo")
    rest = a.hold - (loop.time() - start)
    if rest > 0:
        await asyncio.sleep(rest)
    write_file(f"{a.sync}/fd-exhausted",
               f"opened={len(socks)} echoed={echoed} outcomes={counts(results + failures)}\n")
    for s in socks:
        s.close()
    await asyncio.sleep(1)
    after, after_failures = await open_many(a.addr, a.port, a.after, timeout=5)
    after_results = await echo_all(after, timeout=5)
    for s in after:
        s.close()
    ok = after_results.count("echo")
    print(f"opened={len(socks)} echoed_exhausted={echoed} after_ok={ok}/{a.after} "
          f"after_failed={counts([r for r in after_results if r != 'echo'] + after_failures)}")


def still_open(s):
    try:
        data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return bool(data)  # bytes waiting (an alert) mean netfence has answered: not held


async def http_get(name, timeout=5.0):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(name, 80), timeout)
    try:
        writer.write(f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
        reply = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.transport.abort()
    return reply.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip().replace(" ", "_")


async def peek(a):
    loop = asyncio.get_running_loop()
    echo = await connect(a.echo[0], int(a.echo[1]))
    await round_trip(echo)
    partial = client_hello("held.example.com", 0)
    partial = (b"\x16\x03\x01" + struct.pack("!H", len(partial)) + partial)[:60]
    socks, failures = await open_many(a.addr, a.port, a.n)
    for i, s in enumerate(socks):
        if i % 2 == 0:
            s.send(partial)
    held_before = sum(still_open(s) for s in socks)
    ok = total = 0
    probe = "-"
    start = loop.time()
    while loop.time() - start < a.check_s:
        total += 1
        try:
            await round_trip(echo, b"e", 5)
            ok += 1
        except Exception:  # noqa: BLE001
            pass
        if probe == "-" and loop.time() - start >= a.check_s / 2:
            try:
                probe = await http_get(a.probe_host)
            except Exception as e:  # noqa: BLE001
                probe = "error_" + outcome(e)
        await asyncio.sleep(0.1)
    held_after = sum(still_open(s) for s in socks)
    echo.close()
    # How netfence ends each held connection (its first-bytes timeout).
    ended = collections.Counter()
    pending = set(range(len(socks)))
    deadline = loop.time() + a.wait_s
    while pending and loop.time() < deadline:
        for i in list(pending):
            s = socks[i]
            try:
                data = s.recv(16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                ended["reset"] += 1
            except OSError:
                ended["error"] += 1
            else:
                ended["alert" if data.startswith(DENIED_ALERT) else "eof" if not data else
                      "data"] += 1
            pending.discard(i)
            s.close()
        await asyncio.sleep(0.1)
    print(f"peekers={len(socks)} open_failed={counts(failures)} held_before={held_before} "
          f"held_after={held_after} echo_ok={ok}/{total} probe={probe} "
          f"closed_alert={ended['alert']} closed_reset={ended['reset']} "
          f"closed_eof={ended['eof']} closed_other={ended['error'] + ended['data']} "
          f"still_open={len(pending)}")


def drip(a):
    hello = client_hello(a.sni, a.size)
    # TLS records carry at most 16 KiB each: a larger hello takes several.
    record = b"".join(b"\x16\x03\x01" + struct.pack("!H", len(hello[i:i + 16384])) +
                      hello[i:i + 16384] for i in range(0, len(hello), 16384))
    start = time.monotonic()
    s = socket.create_connection((a.addr, a.port), timeout=5)
    s.settimeout(None)  # blocking: recv(MSG_DONTWAIT) must not wait for the timeout
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = 0
    result = "timeout"
    while time.monotonic() - start < a.max_s:
        try:
            data = s.recv(16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            data = None
        except ConnectionResetError:
            result = "reset"
            break
        if data is not None:
            if data.startswith(DENIED_ALERT):
                result = "denied"
            elif not data:
                result = "eof"
            elif data[0] == 0x15:
                result = "alert"
            else:
                result = "serverhello" if data[0] == 0x16 else "other"
            break
        if sent < len(record):
            try:
                sent += s.send(record[sent:sent + a.chunk])
            except OSError:
                sent = len(record)  # refused mid-way: look for the answer
                continue
        time.sleep(a.interval_ms / 1000)
    print(f"result={result} sent={sent} of={len(record)} hello_len={len(hello)} "
          f"ms={int((time.monotonic() - start) * 1000)}")


def fetch(a):
    received = 0
    try:
        # A connection refused at once may already fail in connect (reset while connecting).
        s = socket.create_connection((a.addr, a.port), timeout=5)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {a.addr}\r\n\r\n".encode())
        while True:
            chunk = s.recv(65536)
            if not chunk:
                result = "eof"
                break
            received += len(chunk)
    except Exception as e:  # noqa: BLE001
        result = outcome(e)
    print(f"result={result} bytes={received}")


def raise_fd_limit():
    """Thousands of sockets: the soft RLIMIT_NOFILE up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    raise_fd_limit()
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("serve")
    c.add_argument("dir")
    c = sub.add_parser("probe-loop")
    c.add_argument("file")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("name")
    c = sub.add_parser("hold")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("n", type=int)
    c.add_argument("--sync", required=True)
    c = sub.add_parser("mixed")
    c.add_argument("n", type=int)
    c = sub.add_parser("openhold")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("n", type=int)
    c.add_argument("--exit", type=int)
    c.add_argument("--ready")
    c.add_argument("--hold", type=float, default=60)
    c = sub.add_parser("fdload")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("n", type=int)
    c.add_argument("--sync", required=True)
    c.add_argument("--hold", type=float, default=3)
    c.add_argument("--after", type=int, default=20)
    c = sub.add_parser("peek")
    c.add_argument("n", type=int)
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("--echo", nargs=2, required=True, metavar=("ADDR", "PORT"))
    c.add_argument("--probe-host", required=True)
    c.add_argument("--check-s", type=float, default=2)
    c.add_argument("--wait-s", type=float, default=15)
    c = sub.add_parser("drip")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("sni")
    c.add_argument("--size", type=int, default=0)
    c.add_argument("--chunk", type=int, default=1)
    c.add_argument("--interval-ms", type=int, default=200)
    c.add_argument("--max-s", type=float, default=10)
    c = sub.add_parser("fetch")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    a = p.parse_args()
    try:
        if a.cmd == "serve":
            asyncio.run(serve(a.dir))
        elif a.cmd == "probe-loop":
            probe_loop(a)
        elif a.cmd in ("drip", "fetch"):
            {"drip": drip, "fetch": fetch}[a.cmd](a)
        else:
            coroutine = {"hold": hold, "mixed": mixed, "openhold": openhold, "fdload": fdload,
                         "peek": peek}[a.cmd]
            asyncio.run(coroutine(a))
    except Exception as e:  # noqa: BLE001 - the shell test prints what it got
        print(f"result=error {outcome(e)}: {e}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
