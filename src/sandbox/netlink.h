// A minimal rtnetlink client: exactly what the sandbox child needs to configure its own, freshly
// created network namespace (bring links up, create a veth pair, add addresses and default
// routes), and `lo` as the sandbox sets it up. It speaks to the kernel of the calling thread's
// network namespace; nothing here is meant for the host namespace.
#pragma once

#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/fd.h"
#include "common/result.h"

namespace netfence::sandbox {

class Rtnetlink {
 public:
  // Opens a NETLINK_ROUTE socket. Fails with a message naming the errno.
  static Result<Rtnetlink> open();

  // The index of the named link in the current namespace; fails if there is no such link.
  Result<int> link_index(std::string_view name);

  // Sets IFF_UP on the link, and its largest GSO packet (IPv6 and, from Linux 6.3, IPv4) unless
  // `gso_max_size` is 0. Fails if the link does not exist, the caller lacks CAP_NET_ADMIN, or
  // the kernel refuses the size (before Linux 5.19 nothing above 65,536).
  Result<void> set_link_up(int ifindex, uint32_t gso_max_size = 0);

  // Creates a veth pair `name` <-> `peer` in the current namespace; `name` is up, `peer` down.
  // `mtu` and `gso_max_size` (0: the kernel's defaults) apply to `name`; fails as set_link_up.
  Result<void> add_veth(std::string_view name, std::string_view peer, uint32_t mtu = 0,
                        uint32_t gso_max_size = 0);

  // Adds `address`/`prefix_len` to the link; IPv6 addresses get IFA_F_NODAD so they are usable at
  // once (the link never carries traffic, duplicate detection would only cost time).
  Result<void> add_address(int ifindex, const in_addr& address, int prefix_len);
  Result<void> add_address(int ifindex, const in6_addr& address, int prefix_len);

  // Adds a default route (0.0.0.0/0 or ::/0) out of the link, with no gateway (scope link).
  // `preferred_source` (may be null) becomes RTA_PREFSRC for IPv4.
  Result<void> add_default_route_v4(int ifindex, const in_addr* preferred_source);
  Result<void> add_default_route_v6(int ifindex);

 private:
  explicit Rtnetlink(UniqueFd fd) : fd_(std::move(fd)) {}
  // Sends one request (with NLM_F_ACK set by the caller) and waits for its acknowledgement.
  Result<void> transact(std::span<const std::byte> message, std::string_view what);

  UniqueFd fd_;
  uint32_t sequence_ = 0;
};

// The GSO limit the sandbox gives `lo` and its veth (BIG TCP; docs/sandbox.md, "Packet sizes").
inline constexpr uint32_t kSandboxGsoMaxSize = 512 * 1024 - 8;

// Brings `lo` up in the calling thread's namespace and returns the socket, for more links. With
// `large_packets`, lo gets kSandboxGsoMaxSize, or the kernel's defaults where set_link_up refuses
// that. bench/floor_relay gives its namespace the same `lo` with it.
Result<Rtnetlink> bring_up_loopback(bool large_packets);

}  // namespace netfence::sandbox
