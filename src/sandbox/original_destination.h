// Where a redirected connection was going: the destination the sandboxed program passed to
// connect(), before the sandbox's nftables `redirect` rewrote it to the gateway's listener.
#pragma once

#include <sys/socket.h>

#include <string>

#include "common/result.h"

namespace netfence::sandbox {

struct OriginalDestination {
  sockaddr_storage address{};  // AF_INET (sockaddr_in) or AF_INET6 (sockaddr_in6)
  // False when conntrack recorded no rewrite: the client connected straight to the listener's own
  // address and port (e.g. 127.0.0.1:1000 inside the sandbox). The gateway must deny such flows;
  // `address` is then the listener itself.
  bool redirected = false;
};

// Reads SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) from an accepted TCP socket `fd`
// (borrowed, not closed). Works only on sockets accepted in a network namespace where conntrack
// tracks the flow (the sandbox's). Fails with a message naming the errno, e.g. ENOENT when the
// flow is not tracked or ENOPROTOOPT for a non-TCP socket.
Result<OriginalDestination> original_destination(int fd);

// "203.0.113.7:8080" or "[2001:db8::7]:443"; "<unknown address family N>" otherwise.
std::string format_address(const sockaddr_storage& address);

}  // namespace netfence::sandbox
