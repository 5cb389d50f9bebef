// Theory of operation
// -------------------
// The DNS server answers every DNS query the sandbox sends, whatever address it sent it to
// (nftables redirects all UDP and TCP port 53 to this server's sockets, SPEC 1.5):
//
//   message ──► a response, or too short to answer: dropped
//     ├─► malformed: FORMERR; opcode other than QUERY: NOTIMP; EDNS version > 0: BADVERS
//     ├─► use-application-dns.net: NXDOMAIN (browsers keep their own DoH off)
//     ├─► HTTPS/SVCB (types 64/65): NODATA, so clients never learn ECH keys and the SNI stays
//     │   readable (skipped only in full access with no deny_net host rule: nothing to read)
//     ├─► name allowed (any port), or anything but a deny_net name in full access: forwarded
//     │   upstream (Resolver); the answer's addresses filtered (judge_resolved: deny_net,
//     │   always-deny, and in allowlist mode the private ranges), the rest learned for the
//     │   gateway (LearnedAddresses, allowlist mode), the answer relayed with the client's
//     │   question and EDNS as it asked
//     └─► not allowed: answered here, never forwarded (no exfiltration through query names):
//         A 0.0.0.0 / AAAA :: (or NXDOMAIN / REFUSED, per the policy), other types NODATA
//
// Local answers, and forwarded queries whose answer is in the Resolver's cache, are answered
// synchronously on the receiving path; only queries that must go upstream become coroutines, at
// most kMaxInFlight at once (more are dropped and logged: the client retries).
// UDP is read and answered in batches (UdpBatch: recvmmsg/sendmmsg); a query of the common shape
// is judged and answered without allocating (fast_path.h, Policy::check_name), anything else goes
// through wire::parse_dns_message and the general builders, with the same decisions. UDP answers
// larger than the client's limit are truncated with TC set, so the client retries over TCP. Every
// message received is one decision-log event (the sentence is only formatted when the event is
// actually written). Single-threaded: the server, its Resolver and its LearnedAddresses share one
// executor.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/event_log.h"
#include "common/fd.h"
#include "common/result.h"
#include "dns/learned.h"
#include "dns/resolver.h"
#include "dns/udp_io.h"
#include "policy/policy.h"
#include "wire/dns_message.h"

namespace netfence::dns {

struct ServerStats {
  uint64_t queries = 0;    // messages received
  uint64_t forwarded = 0;  // relayed answers
  uint64_t local = 0;      // answered here: sinkhole, NODATA, NXDOMAIN, REFUSED, NOTIMP, BADVERS
  uint64_t fast_path = 0;  // of those, answered without parsing into a DnsMessage
  uint64_t formerr = 0;
  uint64_t servfail = 0;            // upstream failed
  uint64_t dropped = 0;             // responses, unanswerable garbage, over the in-flight cap
  uint64_t send_failures = 0;       // UDP replies the kernel refused (full socket buffer)
  uint64_t filtered_addresses = 0;  // A/AAAA removed from relayed answers
  uint64_t tcp_connections = 0;
};

enum class Transport { kUdp, kTcp };

// Who asked and how, for the answer (UDP size limit) and the log.
struct Client {
  Transport transport = Transport::kUdp;
  asio::ip::udp::endpoint peer;  // the sandboxed client
  asio::ip::address local;       // the address it sent the query to (unspecified: unknown)
};

class Server {
 public:
  static constexpr size_t kMaxInFlight = 1024;
  static constexpr size_t kMaxTcpConnections = 256;
  static constexpr std::chrono::seconds kTcpIdleTimeout{10};

  struct Options {
    uint32_t local_ttl = wire::kDnsDefaultSinkholeTtl;
  };

  // The references must outlive the server. The policy is immutable; the resolver and table
  // belong to the same executor.
  Server(asio::any_io_executor executor, const policy::Policy& policy, Resolver& resolver,
         LearnedAddresses& learned, EventLog& log, Options options);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serve on an already bound UDP socket or listening TCP socket (created, e.g., inside the
  // sandbox's network namespace), of either family, bound to one address or a wildcard. Takes
  // ownership. Errors: not a socket of that kind.
  Result<void> serve_udp(UniqueFd fd);
  Result<void> serve_tcp(UniqueFd fd);
  // Closes every socket; loops end and in-flight forwards finish without replying.
  void stop();

  // What the server does with one message, for the cases it handles without I/O (exposed for
  // tests and fuzzing; the socket loops call it). kAnswered: the response is in `response`
  // (replaced); kDropped: nothing is to be sent; kForward: `pending` holds the query, and
  // forward() does the rest. Every message not forwarded is logged here. A query allowed upstream
  // whose answer is cached is answered here too (kAnswered), as forward() would.
  enum class Disposition { kAnswered, kDropped, kForward };
  // Where a query goes, decided before anything is built.
  struct Route {
    bool forward = false;
    wire::DnsAnswerKind kind = wire::DnsAnswerKind::kNoData;
    std::string_view answer;        // what the log calls the answer: "sinkhole", "nodata", ...
    std::string_view fixed_detail;  // for decisions not about the name (canary, HTTPS, ...)
    policy::NameCheck check;
  };
  // A query on its way upstream; callers only pass it on to forward().
  struct Pending {
    wire::DnsMessage query;
    Client client;
    std::chrono::steady_clock::time_point start;
    Route route;
  };
  Disposition answer_locally(ByteSpan message, const Client& client,
                             std::vector<std::byte>& response, std::unique_ptr<Pending>& pending);
  // Forwards a query answer_locally() passed on; returns the response (SERVFAIL when every
  // upstream failed), already truncated for UDP if needed. Logs the event.
  asio::awaitable<std::vector<std::byte>> forward(std::unique_ptr<Pending> pending);

  const ServerStats& stats() const { return stats_; }

 private:
  struct UdpListener;

  Route route(std::string_view name, uint16_t type, uint16_t klass) const;
  Disposition answer_general(ByteSpan message, const Client& client,
                             std::vector<std::byte>& response, std::unique_ptr<Pending>& pending,
                             std::chrono::steady_clock::time_point start);
  std::vector<std::byte> relay(const Pending& pending, wire::DnsMessage response);
  std::vector<std::byte> finish(const Pending& pending, const wire::DnsMessage& response);
  policy::Decision decision_for(const Route& route, std::string_view name) const;
  void log_event(const Client& client, std::string_view name, uint16_t qtype,
                 std::string_view answer, const policy::Decision& decision,
                 std::chrono::steady_clock::time_point start);
  void log_route(const Client& client, std::string_view name, uint16_t qtype, const Route& route,
                 std::chrono::steady_clock::time_point start);
  void log_malformed(const Client& client, std::string_view answer, std::string_view why,
                     std::chrono::steady_clock::time_point start);

  asio::awaitable<void> udp_loop(std::shared_ptr<UdpListener> listener);
  void udp_drain(const std::shared_ptr<UdpListener>& listener);
  asio::awaitable<void> udp_forward(std::shared_ptr<UdpListener> listener, UdpRoute route,
                                    std::unique_ptr<Pending> pending);
  asio::awaitable<void> tcp_accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor);
  asio::awaitable<void> tcp_session(asio::ip::tcp::socket socket);

  asio::any_io_executor executor_;
  const policy::Policy& policy_;
  Resolver& resolver_;
  LearnedAddresses& learned_;
  EventLog& log_;
  Options options_;
  ServerStats stats_;
  size_t in_flight_ = 0;
  size_t tcp_sessions_ = 0;
  bool stopped_ = false;
  Event event_;  // reused for every event: its strings keep their capacity
  std::unique_ptr<UdpBatch> batch_;
  std::vector<std::shared_ptr<UdpListener>> udp_listeners_;
  std::vector<std::shared_ptr<asio::ip::tcp::acceptor>> tcp_acceptors_;
};

// "A", "AAAA", "TXT", ..., "TYPE<n>" for the rest.
std::string qtype_name(uint16_t type);

}  // namespace netfence::dns
