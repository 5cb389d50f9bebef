// The escape attempts of `netfence selftest` (docs/security.md, "netfence selftest").
//
// Theory of operation
// -------------------
// A probe is one thing a hostile command inside the sandbox would try in order to reach what the
// policy denies: a connection to an IP literal or a metadata address (also in IPv4-mapped, NAT64
// and decimal spellings), a ClientHello naming a denied host (whole, split across records and
// segments, with Encrypted Client Hello), a keep-alive connection that switches Host, DNS to
// another resolver over UDP and TCP, DNS over TLS, QUIC-like UDP, ICMP, raw and packet sockets,
// and netlink requests that would delete netfence's nftables table, add a route or take the link
// down. Every probe is plain socket code, so the selftest needs no curl or dig in the sandbox.
//
// The parent (`netfence selftest`) plans: plan_probes() judges each probe's target with the very
// policy the sandbox enforces and skips a probe whose target the policy allows (it would leave
// the machine); every other target is a documentation address (192.0.2.0/24, 2001:db8::/32), a
// name under .invalid, a metadata or loopback address, or this host's own address, so nothing
// reaches a real host even if netfence failed. The child (`netfence selftest-probe`, run inside
// the sandbox) runs the probes it is given with run_probe() and reports what really happened.
//
// A probe "got through" when it reached something: bytes back that are not netfence's own
// refusal (its TLS access_denied alert, its HTTP 403 with X-Netfence-Reason), a DNS answer that
// is not the sinkhole's, a raw socket that opened, a netlink request the kernel did not refuse
// with EPERM. Resets, refusals, unreachable networks and silence are denials. Each probe is
// bounded by ProbeContext::timeout (the keep-alive probe's first request by three times that).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.h"

namespace netfence::cli {

// The name every name-based probe asks for: under .invalid (RFC 2606), so no resolver on earth
// has an answer for it.
inline constexpr std::string_view kDeniedProbeName = "selftest.netfence.invalid";

enum class ProbeStatus { kOk, kGotThrough, kInconclusive };
// "ok", "got_through", "inconclusive"; parse_probe_status() is the inverse.
std::string_view to_string(ProbeStatus status);
std::optional<ProbeStatus> parse_probe_status(std::string_view text);

struct ProbeContext {
  // The answer the sandbox's DNS gives names that are not allowed (the policy's blocked answer).
  policy::BlockedAnswer dns_answer = policy::BlockedAnswer::kNull;
  // One of this host's own addresses (an IP literal), or empty: the host-address probe target.
  std::string host_address;
  // A name the user let the selftest reach (--allowed-host): the keep-alive probe's first request
  // goes there, and the ECH probe uses it as its outer SNI. Empty: those probes use denied names
  // or are skipped.
  std::string allowed_host;
  std::chrono::milliseconds timeout{1500};
};

struct ProbeOutcome {
  std::string observed;  // what happened, e.g. "connection reset", "TLS alert 49 (access_denied)"
  ProbeStatus status = ProbeStatus::kOk;
};

struct PlannedProbe {
  std::string id;
  std::string target;    // e.g. "192.0.2.1:80", "socket(AF_PACKET, SOCK_RAW)"
  std::string expected;  // e.g. "deny (no_match)", "EPERM", "A 0.0.0.0 (sinkhole)"
  std::string skip;      // non-empty: the probe is not run, and this says why
};

// Every probe in table order, with its target and the outcome the policy calls for; probes whose
// target the policy allows (or that lack what they need) carry a skip reason. Pass the policy
// with the host's addresses set, as the gateway has it.
std::vector<PlannedProbe> plan_probes(const policy::Policy& policy, const ProbeContext& context);

// The ids of all probes, in table order.
std::vector<std::string_view> probe_ids();

// Runs one probe from wherever the calling process is (inside a sandbox: that is the point;
// outside one it really sends, to the documentation and metadata addresses above). nullopt for an
// unknown id. Never throws on network errors; each is an observation.
std::optional<ProbeOutcome> run_probe(std::string_view id, const ProbeContext& context);

}  // namespace netfence::cli
