#!/usr/bin/env bash
# Captures the first flight (the ClientHello) of real TLS clients installed on this machine into
# binary files, for the seed corpus of the TLS ClientHello reader (fuzz/corpus/tls_client_hello/).
#
# Every client connects to a one-shot listener on 127.0.0.1 that records what it receives until
# the client goes quiet, then closes the connection; no packet leaves loopback, names are never
# resolved (curl gets --resolve, the others connect to 127.0.0.1 with an explicit SNI).
#
# usage: scripts/capture-client-hellos.sh OUTDIR
set -euo pipefail

out=${1:?usage: $0 OUTDIR}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One-shot listener: prints its port, accepts one connection, saves the bytes received until
# 700 ms of silence (or 64 KiB), closes.
cat >"$work/listen.py" <<'EOF'
import socket, sys
dest = sys.argv[1]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(0.7)
data = b""
while len(data) < 65536:
    try:
        chunk = c.recv(65536)
    except socket.timeout:
        break
    if not chunk:
        break
    data += chunk
c.close()
with open(dest, "wb") as f:
    f.write(data)
EOF

cat >"$work/Hello.java" <<'EOF'
import java.net.Socket;
import javax.net.ssl.*;
public class Hello {
  public static void main(String[] a) throws Exception {
    Socket raw = new Socket("127.0.0.1", Integer.parseInt(a[0]));
    SSLSocket s = (SSLSocket) ((SSLSocketFactory) SSLSocketFactory.getDefault())
        .createSocket(raw, a[1], raw.getPort(), true);
    SSLParameters p = s.getSSLParameters();
    p.setApplicationProtocols(new String[] {"h2", "http/1.1"});
    s.setSSLParameters(p);
    s.setSoTimeout(3000);
    try { s.startHandshake(); } catch (Exception e) { }
  }
}
EOF

# capture NAME COMMAND...: COMMAND may use {PORT}.
capture() {
  local name=$1
  shift
  local portfile="$work/port.$name"
  python3 "$work/listen.py" "$out/$name" >"$portfile" &
  local pid=$!
  for _ in $(seq 50); do
    [[ -s $portfile ]] && break
    sleep 0.1
  done
  local port
  port=$(cat "$portfile")
  local args=()
  for a in "$@"; do args+=("${a//\{PORT\}/$port}"); done
  timeout 10 "${args[@]}" </dev/null >/dev/null 2>&1 || true
  wait "$pid" || true
  printf '%-48s %6s bytes\n' "$name" "$(stat -c %s "$out/$name" 2>/dev/null || echo missing)"
}

export no_proxy='*' NO_PROXY='*'
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

sc=(openssl s_client -connect 127.0.0.1:{PORT})
capture real_openssl_s_client_example_com "${sc[@]}" -servername example.com
capture real_openssl_s_client_api_openai_com "${sc[@]}" -servername api.openai.com
capture real_openssl_s_client_api_anthropic_com "${sc[@]}" -servername api.anthropic.com
capture real_openssl_s_client_tls1_2 "${sc[@]}" -servername example.com -tls1_2
capture real_openssl_s_client_tls1_3_groups "${sc[@]}" -servername example.com -tls1_3 \
  -groups X25519:P-256:P-384:ffdhe2048
capture real_openssl_s_client_alpn "${sc[@]}" -servername example.com -alpn h2,http/1.1
capture real_openssl_s_client_uppercase_sni "${sc[@]}" -servername WWW.Example.COM
capture real_openssl_s_client_no_sni "${sc[@]}" -noservername
capture real_openssl_s_client_ip_connect "${sc[@]}"
capture real_curl_example_com curl -sk --noproxy '*' --max-time 5 \
  --resolve example.com:{PORT}:127.0.0.1 https://example.com:{PORT}/
capture real_curl_tls1_2_http1_1 curl -sk --noproxy '*' --max-time 5 --tls-max 1.2 --http1.1 \
  --resolve api.example.com:{PORT}:127.0.0.1 https://api.example.com:{PORT}/
capture real_python_ssl python3 -c '
import socket, ssl, sys
c = ssl.create_default_context()
c.check_hostname = False
c.verify_mode = ssl.CERT_NONE
c.set_alpn_protocols(["h2", "http/1.1"])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
try:
    c.wrap_socket(s, server_hostname="pypi.org")
except Exception:
    pass' {PORT}
capture real_node_tls node -e '
const tls = require("tls");
const s = tls.connect({host: "127.0.0.1", port: +process.argv[1], servername: "registry.npmjs.org",
                       ALPNProtocols: ["h2", "http/1.1"], rejectUnauthorized: false});
s.on("error", () => {}); setTimeout(() => process.exit(0), 2000);' {PORT}
if command -v javac >/dev/null && javac -d "$work" "$work/Hello.java" 2>/dev/null; then
  capture real_java_sslsocket java -cp "$work" Hello {PORT} repo.maven.apache.org
fi
capture real_wget_gnutls_localhost wget -q -4 -O /dev/null --no-check-certificate --tries=1 \
  --timeout=3 https://localhost:{PORT}/
