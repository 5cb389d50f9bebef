// The sandbox's nftables ruleset and the three ways of loading it into the calling process's
// network namespace: as a netlink transaction built with libnftnl (the default), with libnftables,
// or with the nft binary. docs/sandbox.md shows the ruleset and the measurements behind the
// default.
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

// The same ruleset as nft_ruleset() with the same arguments, as the nfnetlink transaction `nft -f`
// (1.0.6) sends for that text: NFNL_MSG_BATCH_BEGIN, the table, its chains, the named sets and
// their elements, then each rule in order (preceded by the anonymous set it looks up, if any),
// NFNL_MSG_BATCH_END. The messages carry the same attributes, expressions and set user data as
// nft's, byte for byte; they differ only in asking for an acknowledgement each, and large
// element lists are split at a fixed count rather than at 64 KiB. Built with libnftnl, no system
// call: fails only on an element that is not "ADDR[/LEN] . PORT[-PORT]" (numeric, LEN within
// the family's width, first port <= last port).
struct NftBatch {
  struct Message {
    size_t offset = 0;                  // of its nlmsghdr in `bytes`
    std::string what;                   // as an nft command, for error messages
    std::vector<std::string> elements;  // NEWSETELEM: the elements it carries, in order
  };
  std::vector<char> bytes;        // BATCH_BEGIN ... BATCH_END, ready for one sendmsg
  uint32_t first_seq = 0;         // BATCH_BEGIN's; messages[i] has first_seq + 1 + i
  std::vector<Message> messages;  // between BEGIN and END, each with NLM_F_ACK
};
Result<NftBatch> nft_ruleset_batch(uint16_t tcp_port, uint16_t dns_port, uint16_t udp_port = 0,
                                   const std::vector<std::string>& udp_allow_v4 = {},
                                   const std::vector<std::string>& udp_allow_v6 = {});

// Sends `batch` in one sendmsg on a NETLINK_NETFILTER socket and checks that the kernel
// acknowledged every message. Fails with the kernel's error, the message it was about (as an nft
// command; for a rejected set element, the element) and the extended-ack text if any. The
// receive side never blocks for long: the kernel processes a batch inside sendmsg, so every
// acknowledgement is queued when it returns (a missing one is waited for at most a second).
Result<void> load_ruleset_batch(const NftBatch& batch);

// Loads `ruleset` in-process with libnftables, which is opened with dlopen on first use (so that
// the netfence binary does not load it, nor libxtables, libjansson and libgmp, at exec). Fails
// with nft's own error text, or if libnftables.so.1 cannot be loaded.
Result<void> load_ruleset_with_library(std::string_view ruleset);

// Loads `ruleset` by running `nft -f -` (found in /usr/sbin, /sbin or PATH) and feeding it on
// stdin. In a user namespace where the caller is not uid 0, CAP_NET_ADMIN is passed to nft as an
// ambient capability. Fails if nft is missing or exits non-zero (its stderr is inherited).
Result<void> load_ruleset_with_binary(std::string_view ruleset);

}  // namespace netfence::sandbox
