// Theory of operation
// -------------------
// The gateway judges and carries every TCP connection the sandbox makes. nftables in the
// sandbox redirects each one to a listener whose accepted sockets still know where the client
// meant to go (the original destination). For each connection (SPEC 1.3):
//
//   1. deny_net, the always-deny set, disabled           -> reset, at once
//   2. full access, or an IP/CIDR rule for (ip, port)    -> dial ip:port, relay
//   3. ip is in a netfence DNS answer for an allowed name, and that name's rule allows this
//      port (LearnedAddresses)                           -> dial ip:port at once, relay, while
//      the client's first bytes are inspected as they pass: a ClientHello or HTTP head that
//      names a name this port does not allow cuts the connection before they are forwarded
//   4. otherwise read the first bytes (bounded size and time): the SNI of a ClientHello or the
//      Host of an HTTP/1 head; if the policy allows that name on this port, resolve the name
//      on the host side, keep the addresses that pass judge_resolved (deny_net, always-deny,
//      private ranges), dial them (the client's chosen IP is ignored: no SNI/Host spoofing),
//      replay the bytes already read, relay
//   5. anything else                                     -> deny
// (In full access with deny_net host rules, step 2 also inspects the first bytes inline, so
// "everything but X" holds for names.)
//
// Denials fail fast and say why: a TLS client gets an access_denied alert, an HTTP client a
// 403 naming the decision and the rule that would allow it, anything else a reset. Every
// connection is one "connect" event in the decision log, and one "close" event when an allowed
// connection ends (bytes each way, duration). Single-threaded: the gateway, DNS server,
// resolver and learned table share one executor; only relays beyond what this thread's
// descriptor table holds move to relay workers (relay_workers.h), which touch nothing else.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event_log.h"
#include "common/fd.h"
#include "common/result.h"
#include "dns/learned.h"
#include "dns/resolver.h"
#include "gateway/relay.h"
#include "gateway/relay_workers.h"
#include "policy/policy.h"

namespace netfence::gateway {

struct Destination {
  policy::IpAddress address;
  uint16_t port = 0;
  bool redirected = true;  // false: the client connected to the listener itself
};

// How the gateway learns an accepted socket's original destination (in a sandbox:
// SO_ORIGINAL_DST; in tests: anything).
using DestinationLookup = std::function<Result<Destination>(int fd)>;

struct ConnectionLimits {
  // Over this many, a connection is refused (too_many_connections).
  size_t max_connections = 8192;
  // A connection that arrives while this many connections hold their sockets on the gateway's
  // own thread is refused too (too_many_connections).
  size_t held_here = SIZE_MAX;
  // Relay workers (relay_workers.h): once more than `local_relays` connections hold their
  // sockets on the gateway's thread, further relays move to worker threads with descriptor
  // tables of their own, at most `relays_per_worker` on each of at most `relay_workers`. No
  // workers: everything stays on this thread.
  size_t local_relays = SIZE_MAX;
  size_t relay_workers = 0;
  size_t relays_per_worker = 0;
};

struct Options {
  DestinationLookup destination;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds first_bytes_timeout{5'000};  // step 4: the client must speak
  std::chrono::milliseconds inspect_timeout{5'000};      // step 3: once its first byte came
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};
  // How many connections, and where (relay workers); `netfence run` sets them with
  // connection_limits_for_fd_limit().
  ConnectionLimits limits;
  // Dial by name (step 4) resolves through this instead of the Resolver when set (tests).
  std::function<asio::awaitable<Result<std::vector<policy::IpAddress>>>(const std::string&)>
      resolve;
};

struct Stats {
  uint64_t accepted = 0;
  uint64_t allowed = 0;
  uint64_t denied = 0;
  uint64_t dial_failures = 0;
  uint64_t active = 0;
  uint64_t on_workers = 0;  // of the active ones, relays carried by relay workers
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
};

class Gateway {
 public:
  // The references must outlive the gateway and share its executor.
  Gateway(asio::any_io_executor executor, const policy::Policy& policy, dns::Resolver& resolver,
          dns::LearnedAddresses& learned, EventLog& log, Options options);
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Accepts connections on a listening TCP socket. Takes ownership. Errors: not a listening
  // stream socket.
  Result<void> serve(UniqueFd listener);
  // Stops accepting; open connections end when the executor stops.
  void stop();

  const Stats& stats() const { return stats_; }

 private:
  struct Connection;
  struct Admission;

  // A connection's steps, each a coroutine of its own that returns before the next begins: an
  // idle relayed connection keeps only handle's frame and the relay's, not those of the
  // judging and dialing that came before (docs/benchmarks.md, memory per idle connection).
  asio::awaitable<void> accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor);
  asio::awaitable<void> handle(asio::ip::tcp::socket client, asio::ip::tcp::endpoint peer);
  // Judges the connection (SPEC 1.3 steps 1-5): what was admitted, or nullopt when it was
  // refused (and told so, and logged).
  asio::awaitable<std::optional<Admission>> judge(Connection& c);
  // Dials what was admitted and, where asked, reads the names inline: the server's socket, or
  // nullopt when the connection ended (refused or closed, and logged).
  asio::awaitable<std::optional<asio::ip::tcp::socket>> connect_server(Connection& c,
                                                                       const policy::Decision& d,
                                                                       bool inspect_inline);
  // Relays until both sides end, then logs the close.
  asio::awaitable<void> relay_connection(Connection& c, asio::ip::tcp::socket& server);
  asio::awaitable<Result<asio::ip::tcp::socket>> dial(const policy::IpAddress& address,
                                                      uint16_t port);
  asio::awaitable<Result<asio::ip::tcp::socket>> dial_name(Connection& c, const std::string& name);
  asio::awaitable<bool> inspect_inline(Connection& c, asio::ip::tcp::socket& server);
  UpstreamFilter http_filter(Connection& c);
  void refuse(Connection& c, std::string_view event, const policy::Decision& d);
  Event base_event(const Connection& c, std::string_view event) const;
  void log_event(const Connection& c, std::string_view event, const policy::Decision& d);
  void log_close(const Connection& c, const RelayResult& r, std::string_view problem);

  asio::any_io_executor executor_;
  const policy::Policy& policy_;
  dns::Resolver& resolver_;
  dns::LearnedAddresses& learned_;
  EventLog& log_;
  Options options_;
  BufferPool pool_;
  std::unique_ptr<RelayWorkers> workers_;  // only with Options::relay_workers
  Stats stats_;
  uint64_t next_id_ = 0;
  bool stopped_ = false;
  std::vector<std::shared_ptr<asio::ip::tcp::acceptor>> acceptors_;
};

// How many connections a gateway can carry with `fd_limit` file descriptors (RLIMIT_NOFILE, a
// bound on each descriptor table). A table holds two per connection (the client's socket and
// the dialed one) once a reserve is set aside for the listeners, DNS and UDP sockets, the log
// and the event loop (a quarter of the limit, at most 256): `per_table` connections, at least
// 1. The gateway's thread keeps room for connections still being judged (a quarter of its
// share, at most 1,024) and relays the rest of its share itself; relay workers (each a table)
// carry the others, each its share less room for its splice pipes (an eighth, at most 256). In all
// at most kMaxConnectionsCap (a memory bound), at most kMaxRelayWorkers workers. Beyond it a
// connection is refused with too_many_connections instead of failing for want of a descriptor.
inline constexpr size_t kMaxConnectionsCap = 65536;
inline constexpr size_t kMaxRelayWorkers = 8;
ConnectionLimits connection_limits_for_fd_limit(uint64_t fd_limit);

// What a denied client is told, in its own protocol (SPEC 1.3).
// TLS alert descriptions (RFC 8446 6.2): a denial is access_denied; a connection the policy
// allowed but that could not be dialed is internal_error (HTTP clients get a 502 for it).
inline constexpr uint8_t kTlsAlertAccessDenied = 49;
inline constexpr uint8_t kTlsAlertInternalError = 80;
std::vector<std::byte> tls_fatal_alert(uint8_t description);
std::string http_forbidden(std::string_view target, std::string_view reason,
                           std::string_view detail, std::string_view suggestion);
// What an HTTP client is told when its allowed connection could not be dialed.
std::string http_bad_gateway(std::string_view target, std::string_view detail);

}  // namespace netfence::gateway
