#!/usr/bin/env bash
# Installs everything netfence needs from Debian 12's archive (idempotent: only what is
# missing), then configures and builds it into ./build. Run from anywhere; uses sudo when not
# root. Nothing is downloaded from anywhere but Debian's archive.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
  # libraries
  libasio-dev libfmt-dev libcli11-dev nlohmann-json3-dev libidn2-dev libpsl-dev publicsuffix
  libcap-dev libnftables-dev libnftnl-dev libmnl-dev libunistring-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  # run time and the tests' real clients and servers
  nftables iproute2 procps util-linux dnsutils curl openssl python3 netcat-openbsd
  # the test world's DNS server, and the DNS benchmark's load generator
  dnsmasq-base dnsperf
  # benchmark harness peers (bench/compare.sh runs its own instances, in its own namespaces)
  iperf3 passt slirp4netns bubblewrap haproxy nginx-light
)

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  # Installing haproxy or nginx-light starts their system services where an init system runs;
  # the benchmark never uses them, so stop and disable the ones installed just now.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for p in "${missing[@]}"; do
      case $p in
        haproxy) "${sudo[@]}" systemctl disable --now haproxy >/dev/null 2>&1 || true ;;
        nginx-light) "${sudo[@]}" systemctl disable --now nginx >/dev/null 2>&1 || true ;;
      esac
    done
  fi
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNETFENCE_WERROR=ON >/dev/null
cmake --build build
echo "setup: built ./build/netfence"
