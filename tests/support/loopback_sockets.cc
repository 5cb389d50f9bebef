#include "support/loopback_sockets.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace netfence::test {

namespace {

std::string errno_text(std::string_view what, const std::string& ip, uint16_t port) {
  return std::string(what) + " " + ip + ":" + std::to_string(port) + ": " + std::strerror(errno);
}

Result<sockaddr_in> ipv4(const std::string& ip, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) return fail("not an IPv4 address: " + ip);
  return sa;
}

void set_io_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

Result<UniqueFd> bound_tcp(const std::string& ip, uint16_t port) {
  auto sa = ipv4(ip, port);
  if (!sa) return sa.error();
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(errno_text("socket for", ip, port));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa.value()), sizeof(sockaddr_in)) != 0) {
    return fail(errno_text("bind", ip, port));
  }
  return fd;
}

Result<UniqueFd> listen_tcp(const std::string& ip, uint16_t port, int backlog) {
  auto fd = bound_tcp(ip, port);
  if (!fd) return fd;
  if (listen(fd->get(), backlog) != 0) return fail(errno_text("listen", ip, port));
  return fd;
}

uint16_t local_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return 0;
  return ntohs(sa.sin_port);
}

Result<UniqueFd> client_socket(const std::string& source_ip, std::chrono::milliseconds timeout) {
  auto fd = bound_tcp(source_ip, 0);
  if (!fd) return fd;
  int one = 1;
  setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_io_timeout(fd->get(), timeout);
  return fd;
}

Result<void> connect_tcp(int fd, const std::string& ip, uint16_t port) {
  auto sa = ipv4(ip, port);
  if (!sa) return sa.error();
  if (connect(fd, reinterpret_cast<const sockaddr*>(&sa.value()), sizeof(sockaddr_in)) != 0) {
    return fail(errno_text("connect to", ip, port));
  }
  return {};
}

UniqueFd accept_within(int listener, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds io_timeout) {
  pollfd p{listener, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return UniqueFd();
  UniqueFd fd(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (fd) set_io_timeout(fd.get(), io_timeout);
  return fd;
}

Result<LoopbackPair> loopback_pair(std::chrono::milliseconds timeout) {
  Result<UniqueFd> listener = listen_tcp("127.0.0.1", 0);
  if (!listener) return listener.error();
  Result<UniqueFd> client = client_socket("127.0.0.1", timeout);
  if (!client) return client.error();
  Result<void> connected = connect_tcp(client->get(), "127.0.0.1", local_port(listener->get()));
  if (!connected) return connected.error();
  UniqueFd accepted = accept_within(listener->get(), timeout);
  if (!accepted) return fail("no connection accepted on 127.0.0.1");
  return LoopbackPair{std::move(*client), std::move(accepted)};
}

void write_until_it_fails(int fd) {
  const std::string chunk = pattern(1 << 20, 7);
  while (write_all(fd, chunk)) {
  }
}

bool has_pending_connection(int listener) {
  pollfd p{listener, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

bool write_all(int fd, ByteSpan bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return true;
}

bool write_all(int fd, std::string_view text) {
  return write_all(fd, as_bytes(text));
}

namespace {

ReadResult read_until(int fd, size_t n) {
  ReadResult r;
  char chunk[16384];
  while (r.data.size() < n) {
    ssize_t got = recv(fd, chunk, std::min(sizeof chunk, n - r.data.size()), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      r.error = errno;
      break;
    }
    if (got == 0) {
      r.eof = true;
      break;
    }
    r.data.append(chunk, static_cast<size_t>(got));
  }
  return r;
}

}  // namespace

ReadResult read_exactly(int fd, size_t n) {
  return read_until(fd, n);
}

ReadResult read_to_end(int fd, size_t limit) {
  return read_until(fd, limit);
}

std::optional<std::string> own_ipv4_address() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (ifaddrs* i = list; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    if ((i->ifa_flags & IFF_UP) == 0 || (i->ifa_flags & IFF_LOOPBACK) != 0) continue;
    const auto* sa = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if ((ntohl(sa->sin_addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &sa->sin_addr, text, sizeof text) != nullptr) found = text;
  }
  freeifaddrs(list);
  return found;
}

std::string pattern(size_t size, unsigned seed) {
  std::string out(size, '\0');
  uint32_t x = seed;
  for (char& ch : out) {
    x = x * 1664525u + 1013904223u;
    ch = static_cast<char>(x >> 24);
  }
  return out;
}

}  // namespace netfence::test
