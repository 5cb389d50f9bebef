// The sandbox's nftables ruleset and the two ways of loading it into the calling process's
// network namespace. docs/sandbox.md shows the ruleset and the measurements behind the default.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace netfence::sandbox {

// The complete ruleset (one `inet` table, replaced atomically as one transaction): TCP that is not
// for the sandbox itself goes to `tcp_port`, port-53 UDP/TCP to any address goes to `dns_port`,
// other UDP is rejected with port-unreachable, everything else that would leave is dropped.
// UDP to an element of `udp_allow_v4`/`udp_allow_v6` ("ADDR[/LEN] . PORT[-PORT]") goes to
// `udp_port` instead of being rejected.
std::string nft_ruleset(uint16_t tcp_port, uint16_t dns_port, uint16_t udp_port = 0,
                        const std::vector<std::string>& udp_allow_v4 = {},
                        const std::vector<std::string>& udp_allow_v6 = {});

// Loads `ruleset` in-process with libnftables. Fails with nft's own error text.
Result<void> load_ruleset_with_library(std::string_view ruleset);

// Loads `ruleset` by running `nft -f -` (found in /usr/sbin, /sbin or PATH) and feeding it on
// stdin. In a user namespace where the caller is not uid 0, CAP_NET_ADMIN is passed to nft as an
// ambient capability. Fails if nft is missing or exits non-zero (its stderr is inherited).
Result<void> load_ruleset_with_binary(std::string_view ruleset);

}  // namespace netfence::sandbox
