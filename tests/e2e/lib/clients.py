#!/usr/bin/env python3
"""Hand-made clients for the e2e tests, run inside a netfence sandbox (tests/e2e/*_test.sh).

Each subcommand prints one line of "key=value" words that the shell tests match on, and is
bounded by timeouts (it never hangs longer than a few seconds):

  hello ADDR PORT SNI [--records N] [--size BYTES] [--gap-ms MS]
      Sends a hand-made TLS 1.3 ClientHello for SNI (about BYTES long, with a 1216-byte
      X25519MLKEM768-sized key share and a real X25519 share), split into N TLS records, each
      record in its own TCP segment (TCP_NODELAY, MS between writes). Prints what came back:
      result=serverhello (a TLS handshake record with a ServerHello), result=denied (exactly
      netfence's access_denied alert 15 03 03 00 02 02 31), result=alert desc=N (any other
      alert), result=closed, result=reset, result=timeout; plus hello_len and records.
  udp ADDR PORT
      Sends one datagram and waits 2 s for the echo: result=echo, result=refused (ICMP
      unreachable: ECONNREFUSED), result=eperm (dropped by a local firewall rule: EPERM),
      result=timeout; plus ms= (time to the result).
  silent ADDR PORT [--probe-host NAME] [--wait S]
      Connects and sends nothing. While that connection is open, optionally makes a plain HTTP
      request to NAME:80 (resolved by the sandbox's DNS) and prints its body (probe=...). Then
      waits up to S seconds for the silent connection to be closed by the other side:
      result=eof|reset|open and ms= (from connect to close).
  banner ADDR PORT
      Connects (ADDR may be a name) and reads without sending: prints banner=<first line>; then
      sends "hi\\n" and prints echo=<line>.
"""
import argparse
import errno
import os
import socket
import struct
import sys
import time

DENIED_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31])


def ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(sni, size):
    """A ClientHello handshake message (type 1) that OpenSSL 3 answers with a ServerHello."""
    name = sni.encode()
    exts = [
        ext(0x0000, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name),  # server_name
        ext(0x000A, struct.pack("!HHH", 4, 0x11EC, 0x001D)),  # groups: X25519MLKEM768, x25519
        ext(0x000B, b"\x01\x00"),  # ec_point_formats
        ext(0x000D, struct.pack("!H7H", 14, 0x0804, 0x0403, 0x0401, 0x0805, 0x0501, 0x0806,
                                0x0601)),  # signature_algorithms
        ext(0x002B, b"\x04\x03\x04\x03\x03"),  # supported_versions: TLS 1.3, 1.2
        ext(0x002D, b"\x01\x01"),  # psk_key_exchange_modes
    ]
    shares = (struct.pack("!HH", 0x11EC, 1216) + os.urandom(1216) +
              struct.pack("!HH", 0x001D, 32) + os.urandom(32))
    exts.append(ext(0x0033, struct.pack("!H", len(shares)) + shares))  # key_share
    suites = struct.pack("!6H", 0x1301, 0x1302, 0x1303, 0xC02F, 0xC030, 0x009E)
    fixed = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32) +
             struct.pack("!H", len(suites)) + suites + b"\x01\x00")

    def message(extensions):
        blob = b"".join(extensions)
        body = fixed + struct.pack("!H", len(blob)) + blob
        return b"\x01" + struct.pack("!I", len(body))[1:] + body

    current = len(message(exts))
    if size > current + 4:  # padding extension (RFC 7685) up to the requested size
        exts.append(ext(0x0015, bytes(size - current - 4)))
    return message(exts)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def cmd_hello(a):
    msg = client_hello(a.sni, a.size)
    cut = [len(msg) * i // a.records for i in range(a.records + 1)]
    records = [b"\x16\x03\x01" + struct.pack("!H", cut[i + 1] - cut[i]) + msg[cut[i]:cut[i + 1]]
               for i in range(a.records)]
    s = socket.create_connection((a.addr, a.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i, r in enumerate(records):
            if i:
                time.sleep(a.gap_ms / 1000)
            s.sendall(r)
        head = recv_exact(s, 7)
    except socket.timeout:
        result = "result=timeout"
    except ConnectionResetError:
        result = "result=reset"
    else:
        if head == DENIED_ALERT:
            result = "result=denied"
        elif len(head) >= 6 and head[0] == 0x16 and head[5] == 0x02:
            result = "result=serverhello"
        elif len(head) == 7 and head[0] == 0x15:
            result = f"result=alert desc={head[6]}"
        elif not head:
            result = "result=closed"
        else:
            result = "result=other bytes=" + head.hex()
    print(f"{result} hello_len={len(msg)} records={len(records)}")


def cmd_udp(a):
    family = socket.AF_INET6 if ":" in a.addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(2)
    start = time.monotonic()
    try:
        s.connect((a.addr, a.port))
        s.send(b"netfence-udp-probe")
        data = s.recv(2048)
        result = "result=echo" if data == b"netfence-udp-probe" else "result=other"
    except socket.timeout:
        result = "result=timeout"
    except ConnectionRefusedError:
        result = "result=refused"
    except PermissionError:
        result = "result=eperm"
    except OSError as e:
        result = f"result=error errno={errno.errorcode.get(e.errno, e.errno)}"
    print(f"{result} ms={int((time.monotonic() - start) * 1000)}")


def cmd_silent(a):
    start = time.monotonic()
    s = socket.create_connection((a.addr, a.port), timeout=5)
    words = []
    if a.probe_host:
        try:
            p = socket.create_connection((a.probe_host, 80), timeout=5)
            p.sendall(f"GET / HTTP/1.0\r\nHost: {a.probe_host}\r\n\r\n".encode())
            reply = b""
            while True:
                chunk = p.recv(4096)
                if not chunk:
                    break
                reply += chunk
            body = reply.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
            words.append("probe=" + body.replace(" ", "_"))
            words.append(f"probe_ms={int((time.monotonic() - start) * 1000)}")
        except OSError as e:
            words.append(f"probe=error:{e.__class__.__name__}")
    s.settimeout(a.wait)
    try:
        data = s.recv(1)
        result = "result=eof" if not data else "result=data"
    except socket.timeout:
        result = "result=open"
    except ConnectionResetError:
        result = "result=reset"
    words.append(result)
    words.append(f"ms={int((time.monotonic() - start) * 1000)}")
    print(" ".join(words))


def cmd_banner(a):
    s = socket.create_connection((a.addr, a.port), timeout=5)
    f = s.makefile("rb")
    try:
        banner = f.readline().decode(errors="replace").strip()
        s.sendall(b"hi\n")
        echo = f.readline().decode(errors="replace").strip()
    except OSError as e:
        print(f"error={e.__class__.__name__}")
        return
    print(f"banner={banner or '-'} echo={echo or '-'}")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("hello")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("sni")
    p.add_argument("--records", type=int, default=1)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--gap-ms", type=int, default=30)
    p = sub.add_parser("udp")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p = sub.add_parser("silent")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("--probe-host")
    p.add_argument("--wait", type=float, default=5)
    p = sub.add_parser("banner")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    a = parser.parse_args()
    try:
        {"hello": cmd_hello, "udp": cmd_udp, "silent": cmd_silent, "banner": cmd_banner}[a.cmd](a)
    except OSError as e:
        print(f"result=error {e.__class__.__name__}: {e}")
    sys.stdout.flush()


if __name__ == "__main__":  # lib/load.py imports client_hello
    main()
