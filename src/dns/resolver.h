// Resolver: netfence's client of the host's DNS resolvers, used by the DNS server to forward
// allowed queries and by the gateway to dial allowed names (SPEC 1.3 step 5, 1.5).
//
// Theory of operation: a query goes to the configured nameservers in rotation (the start server
// moves on with every query), over UDP from a fresh socket with a fresh random ID (so answers
// cannot be spoofed by guessing either), one try per server per attempt, each with its own
// timeout. An answer whose ID or question does not match is ignored and the wait continues. A
// truncated (TC) answer is retried over TCP to the same server. An answer with RCODE SERVFAIL,
// NOTIMP or REFUSED counts as a failed try (the next server may know better), as glibc does.
// When every try fails the caller gets an error (the server turns it into SERVFAIL). Answers
// are cached by (name, type, class, DO, CD) for their smallest TTL (negative answers: the SOA's
// TTL and MINIMUM, RFC 2308; at most kMaxCacheTtl; TTL 0 or no SOA: not cached), and served from
// the cache with TTLs counted down.
// For dial-by-name, resolve() reads /etc/hosts first, then asks for A and AAAA in parallel.
// Single-threaded: it belongs to one event loop (asio executor).
#pragma once

#include <sys/types.h>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/udp.hpp>
#include <chrono>
#include <cstddef>
#include <ctime>
#include <list>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "policy/address.h"
#include "wire/dns_message.h"

namespace netfence::dns {

struct ResolverConfig {
  std::vector<asio::ip::udp::endpoint> servers;
  std::chrono::milliseconds timeout{2000};  // per try
  int attempts = 2;                         // rounds over all servers
  std::string hosts_file = "/etc/hosts";    // "" to ignore
  size_t cache_capacity = 4096;             // cached answers; 0 disables the cache
  // The clock the cache ages by; tests pass a fake one.
  std::chrono::steady_clock::time_point (*clock)() = &std::chrono::steady_clock::now;
};

// Reads nameservers and "options timeout:N attempts:N" from a resolv.conf. Errors: unreadable
// file, or no usable nameserver line (scoped IPv6 addresses "fe80::1%eth0" are skipped).
Result<ResolverConfig> config_from_resolv_conf(const std::string& path = "/etc/resolv.conf");
// Parses "ADDR" or "ADDR:PORT" or "[V6]:PORT" (port 53 by default). Error quotes the text.
Result<asio::ip::udp::endpoint> parse_server(std::string_view text);

// Looks `name` up in a hosts(5) file; empty if absent or unreadable.
std::vector<policy::IpAddress> lookup_hosts_file(const std::string& path, std::string_view name);

// A hosts file, parsed once and parsed again only when it changes (device, inode, size or
// modification time): dial-by-name consults it for every connection, and opening and parsing it
// each time cost more than the rest of a cached resolution.
class HostsFile {
 public:
  using ClockFn = std::chrono::steady_clock::time_point (*)();
  // `recheck`: how long a check for changes holds (0: every lookup checks); `clock` measures it.
  explicit HostsFile(std::string path, std::chrono::milliseconds recheck = {},
                     ClockFn clock = &std::chrono::steady_clock::now)
      : path_(std::move(path)), recheck_(recheck), clock_(clock) {}
  // The addresses listed for `name` (case-insensitive, trailing dot ignored), in file order.
  std::vector<policy::IpAddress> lookup(std::string_view name);

 private:
  void refresh();

  std::string path_;
  std::chrono::milliseconds recheck_;
  ClockFn clock_;
  std::optional<std::chrono::steady_clock::time_point> checked_;  // the last check for changes
  bool loaded_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  off_t size_ = 0;
  timespec mtime_{};
  std::unordered_map<std::string, std::vector<policy::IpAddress>> entries_;
};

class Resolver {
 public:
  static constexpr uint32_t kMaxCacheTtl = 3600;
  // How long a check of the hosts file for changes holds: an edit is seen within a second,
  // and a dial by name does not stat the file for every connection.
  static constexpr std::chrono::milliseconds kHostsRecheck{1000};

  Resolver(asio::any_io_executor executor, ResolverConfig config);

  // Sends `query` (one question) upstream, or answers it from the cache, and returns the parsed
  // answer with the query's ID. Errors (the message starts with the reason): no server answered
  // within the tries ("upstream_timeout"), refused the connection ("upstream_unreachable"),
  // answered usably ("upstream_malformed", "upstream_rcode"), or the query itself is unusable
  // ("query_unusable").
  asio::awaitable<Result<wire::DnsMessage>> exchange(const wire::DnsMessage& query);

  // The cached answer to `query` with the query's ID and its TTLs counted down, without any
  // I/O (the server uses it to answer cache hits at once); nullopt when not cached, expired or
  // the query is unusable.
  std::optional<wire::DnsMessage> cached_answer(const wire::DnsMessage& query);

  // Addresses of `name` (normalised) for dialing: /etc/hosts, else A and AAAA upstream, CNAMEs
  // followed. Errors: the lookups failed; an empty list means the name has no addresses.
  asio::awaitable<Result<std::vector<policy::IpAddress>>> resolve(const std::string& name);

  const ResolverConfig& config() const { return config_; }
  uint64_t upstream_queries() const { return upstream_queries_; }
  uint64_t cache_hits() const { return cache_hits_; }

 private:
  struct CacheEntry {
    wire::DnsMessage answer;
    std::chrono::steady_clock::time_point stored;
    std::chrono::steady_clock::time_point expires;
    std::list<std::string>::iterator lru;
  };

  asio::awaitable<Result<wire::DnsMessage>> try_udp(const asio::ip::udp::endpoint& server,
                                                    const std::vector<std::byte>& query,
                                                    const wire::DnsQuestion& question);
  asio::awaitable<Result<wire::DnsMessage>> try_tcp(const asio::ip::udp::endpoint& server,
                                                    const std::vector<std::byte>& query,
                                                    const wire::DnsQuestion& question);
  bool cached(const std::string& key, uint16_t id, wire::DnsMessage& out);
  // resolve() without I/O: the addresses when both the A and the AAAA answer are cached.
  std::optional<std::vector<policy::IpAddress>> cached_addresses(const std::string& name);
  void store(const std::string& key, const wire::DnsMessage& answer);

  asio::any_io_executor executor_;
  ResolverConfig config_;
  HostsFile hosts_;
  size_t next_server_ = 0;
  std::mt19937_64 random_;
  std::unordered_map<std::string, CacheEntry> cache_;
  std::list<std::string> lru_;  // most recent first
  uint64_t upstream_queries_ = 0;
  uint64_t cache_hits_ = 0;
};

// True when `answer` answers `question` (same name ignoring case, type, class).
bool answers_question(const wire::DnsMessage& answer, const wire::DnsQuestion& question);

}  // namespace netfence::dns
