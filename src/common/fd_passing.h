// Descriptor passing: one message on a Unix socket with descriptors attached (SCM_RIGHTS). The
// receiver gets its own descriptors for the same open files, in its own descriptor table; used
// by the sandbox to hand its listeners to the parent and by the gateway to move a connection's
// sockets to a relay worker.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <vector>

#include "common/fd.h"

namespace netfence {

// At most this many descriptors travel with one message.
inline constexpr size_t kMaxPassedFds = 16;

// Sends `data` as one message with `fds` attached (none: a plain message), with MSG_NOSIGNAL and
// `flags` (e.g. MSG_DONTWAIT). Returns 0 or the errno (EINVAL for more than kMaxPassedFds);
// retries EINTR. Allocates nothing: safe in a child between fork and exec. `fds` stay open here.
int send_with_fds(int socket, std::span<const std::byte> data, std::span<const int> fds,
                  int flags = 0);

struct ReceivedMessage {
  ssize_t size = 0;  // bytes of data; 0 at end of stream; -1 with `error` set
  int error = 0;
  bool truncated = false;     // the data or the descriptors did not fit (what came is in fds)
  std::vector<UniqueFd> fds;  // close-on-exec
};

// Receives one message into `data` with up to kMaxPassedFds descriptors, with `flags` (e.g.
// MSG_DONTWAIT). Retries EINTR.
ReceivedMessage receive_with_fds(int socket, std::span<std::byte> data, int flags = 0);

}  // namespace netfence
