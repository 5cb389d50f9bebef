#!/usr/bin/env python3
"""The e2e test world's servers, run inside the "internet" namespace (tests/e2e/lib/world.sh).

HTTP on :80 and HTTPS on :443 at each identity address answer "<identity> <Host>\n"; a TCP echo
on 203.0.113.10:5432; a banner-first server on 203.0.113.10:2222 (sends "BANNER\n" at once, then
echoes); a UDP echo on 203.0.113.10:9999. Writes <dir>/servers.ready when listening.

With a second argument "host-self" (run in the "host" namespace instead), it serves only HTTP
on 127.0.0.1:8081, 198.51.100.1:8081 and [2001:db8:1::1]:8081 answering "hostself <Host>": the host's own services,
which a sandbox must never reach; writes <dir>/hostself.ready.

Every accepted TCP connection and every UDP datagram is appended to <dir>/conns.log as
"<identity> <port> <peer address>" (before any byte is read), so a test can assert that a server
was never reached. The TLS handshake runs in the connection's own thread (not in accept), so a
client that stalls cannot block a server; connections idle for 10 s are dropped.
"""
import http.server
import socket
import socketserver
import ssl
import sys
import threading

DIR = sys.argv[1]
IDENTITIES = {
    "203.0.113.10": "good", "2001:db8:2::10": "good",
    "203.0.113.11": "other",
    "203.0.113.20": "evil", "2001:db8:2::20": "evil",
    # Addresses netfence must never dial for a sandbox (always-deny, private): if it wrongly
    # did, the test sees who answered instead of a mere dial failure.
    "169.254.169.254": "metadata", "10.1.2.3": "private",
}
HOST_SELF = {"127.0.0.1": "hostself", "198.51.100.1": "hostself", "2001:db8:1::1": "hostself"}
LOG_LOCK = threading.Lock()


def identity(address):
    return IDENTITIES.get(address) or HOST_SELF.get(address, "unknown")


def log_connection(ident, port, peer):
    with LOG_LOCK, open(f"{DIR}/conns.log", "a") as f:
        f.write(f"{ident} {port} {peer}\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def do_GET(self):
        ident = identity(self.server.server_address[0])
        body = f"{ident} {self.headers.get('Host', '')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


class Server4(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def verify_request(self, request, client_address):
        log_connection(identity(self.server_address[0]), self.server_address[1],
                       client_address[0])
        return True


class Server6(Server4):
    address_family = socket.AF_INET6


def serve_http(address, port, tls):
    cls = Server6 if ":" in address else Server4
    server = cls((address, port), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{DIR}/cert.pem", f"{DIR}/key.pem")
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()


class Echo(socketserver.BaseRequestHandler):
    banner = b""

    def handle(self):
        self.request.settimeout(10)
        if self.banner:
            self.request.sendall(self.banner)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)
        except OSError:
            return


class Banner(Echo):
    banner = b"BANNER\n"


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def verify_request(self, request, client_address):
        log_connection(identity(self.server_address[0]), self.server_address[1],
                       client_address[0])
        return True


def main():
    if len(sys.argv) > 2 and sys.argv[2] == "host-self":
        for address in HOST_SELF:
            serve_http(address, 8081, False)
        open(f"{DIR}/hostself.ready", "w").close()
        threading.Event().wait()
    for address in IDENTITIES:
        serve_http(address, 80, False)
        serve_http(address, 443, True)
    for handler, port in ((Echo, 5432), (Banner, 2222)):
        server = TcpServer(("203.0.113.10", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("203.0.113.10", 9999))
    open(f"{DIR}/servers.ready", "w").close()
    while True:
        data, peer = udp.recvfrom(65536)
        log_connection("good-udp", 9999, peer[0])
        udp.sendto(data, peer)


main()
