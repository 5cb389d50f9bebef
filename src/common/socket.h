// Small socket facts shared by the components that adopt sockets created elsewhere (inside the
// sandbox's namespace) into their event loops.
#pragma once

#include <sys/socket.h>

#include <optional>

namespace netfence {

// The address family (AF_INET or AF_INET6) of `fd` when it is a socket of `type` (SOCK_STREAM,
// SOCK_DGRAM) with a local address; nullopt otherwise. `fd` is borrowed.
inline std::optional<int> socket_family(int fd, int type) {
  int actual = 0;
  socklen_t length = sizeof actual;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &actual, &length) != 0 || actual != type) {
    return std::nullopt;
  }
  sockaddr_storage local{};
  length = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) return std::nullopt;
  if (local.ss_family != AF_INET && local.ss_family != AF_INET6) return std::nullopt;
  return local.ss_family;
}

}  // namespace netfence
