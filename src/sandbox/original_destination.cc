#include "sandbox/original_destination.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

namespace netfence::sandbox {
namespace {

// From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>; those headers clash with
// glibc's, and the values are kernel ABI.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;

bool same_endpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
  const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
  return x.sin6_port == y.sin6_port &&
         std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
}

}  // namespace

Result<OriginalDestination> original_destination(int fd) {
  sockaddr_storage local{};
  socklen_t local_length = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) != 0) {
    return fail(std::string("cannot read the socket's local address: ") + std::strerror(errno));
  }
  OriginalDestination result;
  socklen_t length = sizeof result.address;
  int rc = -1;
  if (local.ss_family == AF_INET) {
    length = sizeof(sockaddr_in);
    rc = ::getsockopt(fd, SOL_IP, kSoOriginalDst, &result.address, &length);
  } else if (local.ss_family == AF_INET6) {
    length = sizeof(sockaddr_in6);
    rc = ::getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &result.address, &length);
  } else {
    return fail("cannot read the original destination of a socket of address family " +
                std::to_string(local.ss_family));
  }
  if (rc != 0) {
    return fail(std::string("cannot read the original destination: ") + std::strerror(errno));
  }
  result.address.ss_family = local.ss_family;  // the kernel fills it, but do not trust padding
  result.redirected = !same_endpoint(result.address, local);
  return result;
}

std::string format_address(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  if (address.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
    ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6.sin6_port));
  }
  return "<unknown address family " + std::to_string(address.ss_family) + ">";
}

}  // namespace netfence::sandbox
