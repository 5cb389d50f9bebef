// Where a redirected UDP datagram was going. SO_ORIGINAL_DST answers only for TCP, so the UDP
// relay asks conntrack itself, over a NETLINK_NETFILTER socket that the sandbox opened inside
// its own network namespace (a netlink socket answers for the namespace it was created in). The
// question is the reply-direction tuple the gateway can see (listener -> client); the answer's
// original tuple holds the destination the client chose.
#pragma once

#include <sys/socket.h>

#include "common/result.h"

namespace netfence::sandbox {

// `netlink_fd` (borrowed): the Listeners::conntrack socket. `client`: the datagram's source;
// `local`: the relay listener's address. Fails with a message (errno text) when conntrack has
// no such flow (ENOENT) or the socket cannot be used (EPERM without CAP_NET_ADMIN over the
// sandbox's namespace).
Result<sockaddr_storage> udp_original_destination(int netlink_fd, const sockaddr_storage& client,
                                                  const sockaddr_storage& local);

}  // namespace netfence::sandbox
