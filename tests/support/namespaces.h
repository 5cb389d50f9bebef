// Scratch network namespaces for tests and benchmarks that load nftables rules.
#pragma once

namespace netfence::test {

// Moves the calling process (call it in a forked child, or in a process of its own) into a fresh
// network namespace; as non-root, into a user namespace as well where it is uid 0 (so that nft,
// exec'ed later, keeps CAP_NET_ADMIN there). False if the kernel refuses.
bool enter_fresh_network_namespace();

}  // namespace netfence::test
