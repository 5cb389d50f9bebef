// Test helpers for the dns component: a fake upstream DNS server that records every question it
// receives (so tests can assert that a blocked name never left), blocking UDP/TCP clients, and a
// harness that runs a real Server on loopback sockets in an event-loop thread.
// Everything listens on 127.0.0.1 or ::1 only; answers use documentation addresses.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/event_log.h"
#include "common/fd.h"
#include "dns/learned.h"
#include "dns/resolver.h"
#include "dns/server.h"
#include "policy/policy.h"
#include "support/dns_builder.h"
#include "wire/dns_message.h"

namespace netfence::dns::test {

using netfence::test::bytes_of;
using netfence::test::DnsBuilder;
using Section = DnsBuilder::Section;

inline constexpr std::chrono::seconds kClientTimeout{5};  // a hang guard, not a measurement

// ---- sockets ----

inline sockaddr_storage loopback(uint16_t port, bool v6 = false) {
  sockaddr_storage ss{};
  if (v6) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    sin6.sin6_addr = in6addr_loopback;
    std::memcpy(&ss, &sin6, sizeof sin6);
  } else {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::memcpy(&ss, &sin, sizeof sin);
  }
  return ss;
}

inline sockaddr_storage ipv4(const char* address, uint16_t port) {
  sockaddr_storage ss{};
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  inet_pton(AF_INET, address, &sin.sin_addr);
  std::memcpy(&ss, &sin, sizeof sin);
  return ss;
}

inline socklen_t length_of(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

inline uint16_t port_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// A socket of `type` bound to `address`; invalid on failure.
inline UniqueFd bound_socket(int type, const sockaddr_storage& address) {
  UniqueFd fd(::socket(address.ss_family, type | SOCK_CLOEXEC, 0));
  int on = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length_of(address)) != 0) {
    return UniqueFd();
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), 64) != 0) return UniqueFd();
  return fd;
}

// A UDP and a TCP socket on the same free port of `host` (loopback or a wildcard).
struct SocketPair {
  UniqueFd udp;
  UniqueFd tcp;
  uint16_t port = 0;
};

inline SocketPair socket_pair(const sockaddr_storage& host) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    SocketPair pair;
    pair.udp = bound_socket(SOCK_DGRAM, host);
    if (!pair.udp) continue;
    pair.port = port_of(pair.udp.get());
    sockaddr_storage same = host;
    if (same.ss_family == AF_INET6) {
      reinterpret_cast<sockaddr_in6*>(&same)->sin6_port = htons(pair.port);
    } else {
      reinterpret_cast<sockaddr_in*>(&same)->sin_port = htons(pair.port);
    }
    pair.tcp = bound_socket(SOCK_STREAM, same);
    if (pair.tcp) return pair;
  }
  return {};
}

inline void set_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

inline bool read_exactly(int fd, std::byte* data, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::recv(fd, data + got, size - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

inline bool write_all(int fd, const std::byte* data, size_t size) {
  size_t sent = 0;
  while (sent < size) {
    ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

inline std::vector<std::byte> framed(const std::vector<std::byte>& message) {
  std::vector<std::byte> out{static_cast<std::byte>(message.size() >> 8),
                             static_cast<std::byte>(message.size() & 0xff)};
  out.insert(out.end(), message.begin(), message.end());
  return out;
}

// Sends one datagram from a socket connected to `server` (so only replies from exactly that
// address and port count) and returns the reply; nullopt when none came within kClientTimeout.
inline std::optional<std::vector<std::byte>> udp_exchange(
    const sockaddr_storage& server, const std::vector<std::byte>& query,
    std::chrono::milliseconds timeout = kClientTimeout) {
  UniqueFd fd(::socket(server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&server), length_of(server)) != 0) {
    return std::nullopt;
  }
  set_timeout(fd.get(), timeout);
  if (::send(fd.get(), query.data(), query.size(), 0) < 0) return std::nullopt;
  std::vector<std::byte> reply(65535);
  ssize_t n = ::recv(fd.get(), reply.data(), reply.size(), 0);
  if (n < 0) return std::nullopt;
  reply.resize(static_cast<size_t>(n));
  return reply;
}

inline std::optional<std::vector<std::byte>> udp_exchange(uint16_t port,
                                                          const std::vector<std::byte>& query) {
  return udp_exchange(loopback(port), query);
}

// One TCP connection; sends each of `queries` framed, returns the replies read (fewer when the
// server closed the connection or stayed silent for kClientTimeout).
inline std::vector<std::vector<std::byte>> tcp_exchange(
    const sockaddr_storage& server, const std::vector<std::vector<std::byte>>& queries,
    bool pipelined = false) {
  std::vector<std::vector<std::byte>> replies;
  UniqueFd fd(::socket(server.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  set_timeout(fd.get(), kClientTimeout);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&server), length_of(server)) != 0) {
    return replies;
  }
  auto read_reply = [&]() {
    std::array<std::byte, 2> length;
    if (!read_exactly(fd.get(), length.data(), 2)) return false;
    std::vector<std::byte> reply(static_cast<size_t>(static_cast<uint8_t>(length[0])) << 8 |
                                 static_cast<uint8_t>(length[1]));
    if (!read_exactly(fd.get(), reply.data(), reply.size())) return false;
    replies.push_back(std::move(reply));
    return true;
  };
  if (pipelined) {
    std::vector<std::byte> all;
    for (const auto& q : queries) {
      auto f = framed(q);
      all.insert(all.end(), f.begin(), f.end());
    }
    if (!write_all(fd.get(), all.data(), all.size())) return replies;
    for (size_t i = 0; i < queries.size(); ++i) {
      if (!read_reply()) break;
    }
    return replies;
  }
  for (const auto& q : queries) {
    auto f = framed(q);
    if (!write_all(fd.get(), f.data(), f.size()) || !read_reply()) break;
  }
  return replies;
}

inline std::optional<std::vector<std::byte>> tcp_exchange(uint16_t port,
                                                          const std::vector<std::byte>& query) {
  auto replies = tcp_exchange(loopback(port), {query});
  if (replies.empty()) return std::nullopt;
  return replies.front();
}

// ---- messages ----

inline std::vector<std::byte> query(std::string_view name, uint16_t type, bool edns = true,
                                    uint16_t id = 0x4242) {
  DnsBuilder b;
  b.id(id).rd().question(name, type);
  if (edns) b.opt(1232);
  return b.build();
}

inline wire::DnsMessage parsed(const std::optional<std::vector<std::byte>>& bytes) {
  if (!bytes) return wire::DnsMessage{};
  auto message = wire::parse_dns_message(*bytes);
  return message ? std::move(message.value()) : wire::DnsMessage{};
}

// Addresses of the A/AAAA records in the answer section, as text.
inline std::vector<std::string> addresses(const wire::DnsMessage& m) {
  std::vector<std::string> out;
  for (const auto& rr : m.answers) {
    auto a = wire::dns_record_address(rr);
    if (!a) continue;
    char text[INET6_ADDRSTRLEN];
    inet_ntop(a->type == wire::dns_type::kA ? AF_INET : AF_INET6, a->bytes.data(), text,
              sizeof text);
    out.emplace_back(text);
  }
  return out;
}

inline std::array<uint8_t, 16> v6(const char* text) {
  std::array<uint8_t, 16> bytes{};
  inet_pton(AF_INET6, text, bytes.data());
  return bytes;
}

// ---- the fake upstream ----

class FakeUpstream {
 public:
  enum class Mode {
    kAnswer,        // answers from its records (NXDOMAIN for unknown names)
    kSilent,        // reads queries, never answers
    kTruncateUdp,   // over UDP: header and question with TC; over TCP: the full answer
    kServFail,      // RCODE SERVFAIL
    kWrongIdFirst,  // over UDP: first an answer with a wrong ID, then the right one
    kGarbage,       // over UDP: bytes that are not a DNS message
  };
  struct Seen {
    std::string name;
    uint16_t type = 0;
    bool tcp = false;
    bool edns = false;
  };

  FakeUpstream() {
    auto pair = socket_pair(loopback(0));
    udp_ = std::move(pair.udp);
    tcp_ = std::move(pair.tcp);
    port_ = pair.port;
    stop_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
    thread_ = std::thread([this] { run(); });
  }
  ~FakeUpstream() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
    thread_.join();
  }
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  uint16_t port() const { return port_; }
  asio::ip::udp::endpoint endpoint() const {
    return asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), port_);
  }

  void set_mode(Mode mode) {
    std::lock_guard lock(mutex_);
    mode_ = mode;
  }
  void a(const std::string& name, std::array<uint8_t, 4> address, uint32_t ttl = 300) {
    std::lock_guard lock(mutex_);
    records_[name].push_back(Record{wire::dns_type::kA, ttl, {address.begin(), address.end()}, ""});
  }
  void aaaa(const std::string& name, std::array<uint8_t, 16> address, uint32_t ttl = 300) {
    std::lock_guard lock(mutex_);
    records_[name].push_back(
        Record{wire::dns_type::kAaaa, ttl, {address.begin(), address.end()}, ""});
  }
  void cname(const std::string& name, const std::string& target, uint32_t ttl = 300) {
    std::lock_guard lock(mutex_);
    records_[name].push_back(Record{wire::dns_type::kCname, ttl, {}, target});
  }
  void txt(const std::string& name, const std::string& text, uint32_t ttl = 300) {
    std::lock_guard lock(mutex_);
    std::vector<uint8_t> rdata{static_cast<uint8_t>(text.size())};
    rdata.insert(rdata.end(), text.begin(), text.end());
    records_[name].push_back(Record{wire::dns_type::kTxt, ttl, rdata, ""});
  }

  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  size_t count(const std::string& name) const {
    std::lock_guard lock(mutex_);
    size_t n = 0;
    for (const Seen& s : seen_) n += s.name == name ? 1 : 0;
    return n;
  }
  size_t tcp_queries() const {
    std::lock_guard lock(mutex_);
    size_t n = 0;
    for (const Seen& s : seen_) n += s.tcp ? 1 : 0;
    return n;
  }
  void clear_seen() {
    std::lock_guard lock(mutex_);
    seen_.clear();
  }

 private:
  struct Record {
    uint16_t type;
    uint32_t ttl;
    std::vector<uint8_t> rdata;
    std::string target;  // CNAME
  };

  void run() {
    while (true) {
      std::array<pollfd, 3> fds{pollfd{udp_.get(), POLLIN, 0}, pollfd{tcp_.get(), POLLIN, 0},
                                pollfd{stop_.get(), POLLIN, 0}};
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[2].revents != 0) return;
      if (fds[0].revents != 0) serve_udp();
      if (fds[1].revents != 0) serve_tcp();
    }
  }

  void serve_udp() {
    std::vector<std::byte> buffer(65535);
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    ssize_t n = ::recvfrom(udp_.get(), buffer.data(), buffer.size(), 0,
                           reinterpret_cast<sockaddr*>(&peer), &len);
    if (n < 0) return;
    buffer.resize(static_cast<size_t>(n));
    auto q = wire::parse_dns_message(buffer);
    if (!q || q->questions.size() != 1) return;
    Mode mode = record(*q, false);
    auto send = [&](const std::vector<std::byte>& bytes) {
      ::sendto(udp_.get(), bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
    };
    switch (mode) {
      case Mode::kSilent:
        return;
      case Mode::kGarbage:
        send(std::vector<std::byte>(7, std::byte{0x41}));
        return;
      case Mode::kWrongIdFirst: {
        wire::DnsMessage wrong = *q;
        wrong.header.id = static_cast<uint16_t>(q->header.id + 1);
        send(answer(wrong, false));
        send(answer(*q, false));
        return;
      }
      default:
        send(answer(*q, mode == Mode::kTruncateUdp));
    }
  }

  void serve_tcp() {
    UniqueFd conn(::accept4(tcp_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;
    set_timeout(conn.get(), std::chrono::milliseconds(2000));
    std::array<std::byte, 2> length;
    if (!read_exactly(conn.get(), length.data(), 2)) return;
    std::vector<std::byte> message(static_cast<size_t>(static_cast<uint8_t>(length[0])) << 8 |
                                   static_cast<uint8_t>(length[1]));
    if (!read_exactly(conn.get(), message.data(), message.size())) return;
    auto q = wire::parse_dns_message(message);
    if (!q || q->questions.size() != 1) return;
    if (record(*q, true) == Mode::kSilent) return;
    auto reply = framed(answer(*q, false));
    write_all(conn.get(), reply.data(), reply.size());
  }

  Mode record(const wire::DnsMessage& q, bool tcp) {
    std::lock_guard lock(mutex_);
    seen_.push_back(Seen{q.questions[0].name.text, q.questions[0].type, tcp, q.edns.has_value()});
    return mode_;
  }

  std::vector<std::byte> answer(const wire::DnsMessage& q, bool truncated) {
    std::lock_guard lock(mutex_);
    const wire::DnsQuestion& question = q.questions[0];
    DnsBuilder b;
    b.id(q.header.id).qr().rd(q.header.rd);
    b.flags(static_cast<uint16_t>(0x8000 | (q.header.rd ? 0x0100 : 0) | 0x0080));
    b.question(question.name.text, question.type, question.klass);
    bool known = false;
    if (mode_ == Mode::kServFail) {
      b.rcode(wire::dns_rcode::kServFail);
    } else if (truncated) {
      b.tc();
    } else {
      std::string name = question.name.text;
      for (int hops = 0; hops < 8; ++hops) {
        auto it = records_.find(name);
        if (it == records_.end()) break;
        known = true;
        std::string next;
        for (const Record& r : it->second) {
          if (r.type == wire::dns_type::kCname) {
            b.cname(name, r.target, r.ttl);
            next = r.target;
          } else if (r.type == question.type || question.type == wire::dns_type::kAny) {
            std::vector<std::byte> rdata;
            for (uint8_t byte : r.rdata) rdata.push_back(std::byte{byte});
            b.record(Section::kAnswer, name, r.type, r.ttl, rdata);
          }
        }
        if (next.empty()) break;
        name = next;
      }
      if (!known) b.rcode(wire::dns_rcode::kNxDomain);
    }
    if (q.edns) b.opt(1232);
    return b.build();
  }

  UniqueFd udp_;
  UniqueFd tcp_;
  UniqueFd stop_;
  uint16_t port_ = 0;
  mutable std::mutex mutex_;
  Mode mode_ = Mode::kAnswer;
  std::map<std::string, std::vector<Record>> records_;
  std::vector<Seen> seen_;
  std::thread thread_;
};

// ---- a server on loopback ----

struct HarnessOptions {
  std::vector<std::string> allow;
  std::vector<std::string> deny;
  policy::BlockedAnswer blocked = policy::BlockedAnswer::kNull;
  std::vector<asio::ip::udp::endpoint> upstreams;  // default: the harness's FakeUpstream
  std::chrono::milliseconds timeout{1000};
  int attempts = 1;
  size_t cache = 4096;
  bool v6 = false;        // listen on ::1 instead of 127.0.0.1
  bool wildcard = false;  // listen on 0.0.0.0 (IP_PKTINFO path)
};

class Harness {
 public:
  explicit Harness(HarnessOptions options)
      : policy_(compile(options)),
        log_path_(temp_log()),
        log_(EventLog::open(log_path_, LogFormat::kJson, LogLevel::kAll, "test")),
        resolver_(io_.get_executor(), resolver_config(options)),
        server_(io_.get_executor(), policy_, resolver_, learned_, log_, Server::Options{}),
        work_(io_.get_executor()) {
    sockaddr_storage host = options.v6 ? loopback(0, true) : loopback(0);
    if (options.wildcard) host = ipv4("0.0.0.0", 0);
    auto pair = socket_pair(host);
    port_ = pair.port;
    address_ = options.v6 ? loopback(port_, true) : loopback(port_);
    serving_ =
        server_.serve_udp(std::move(pair.udp)).ok() && server_.serve_tcp(std::move(pair.tcp)).ok();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Harness() {
    on_loop([this] {
      server_.stop();
      return 0;
    });
    work_.reset();
    io_.stop();
    thread_.join();
    std::filesystem::remove(log_path_);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  bool serving() const { return serving_; }
  uint16_t port() const { return port_; }
  const sockaddr_storage& address() const { return address_; }
  FakeUpstream& upstream() { return upstream_; }

  std::optional<std::vector<std::byte>> udp(const std::vector<std::byte>& q) {
    return udp_exchange(address_, q);
  }
  std::optional<std::vector<std::byte>> tcp(const std::vector<std::byte>& q) {
    auto replies = tcp_exchange(address_, {q});
    if (replies.empty()) return std::nullopt;
    return replies.front();
  }

  // Runs `f` on the server's event loop and returns its result.
  template <class F>
  auto on_loop(F f) -> decltype(f()) {
    std::promise<decltype(f())> done;
    asio::post(io_, [&] { done.set_value(f()); });
    return done.get_future().get();
  }
  ServerStats stats() {
    return on_loop([this] { return server_.stats(); });
  }
  std::vector<std::string> owners(const std::string& ip) {
    return on_loop([&] { return learned_.owners(policy::IpAddress::parse(ip).value()); });
  }
  // The decision log's lines so far (each event is flushed before its answer is sent).
  std::vector<std::string> log_lines() const {
    std::ifstream in(log_path_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

 private:
  static policy::Policy compile(const HarnessOptions& o) {
    policy::NetworkSpec spec;
    spec.allow_net = o.allow;
    spec.deny_net = o.deny;
    spec.blocked_answer = o.blocked;
    auto compiled = policy::Policy::compile(spec);
    if (!compiled) ADD_FAILURE() << compiled.error().message;
    return compiled ? std::move(compiled.value()) : policy::Policy{};
  }
  ResolverConfig resolver_config(const HarnessOptions& o) {
    ResolverConfig config;
    config.servers = o.upstreams.empty() ? std::vector{upstream_.endpoint()} : o.upstreams;
    config.timeout = o.timeout;
    config.attempts = o.attempts;
    config.hosts_file = "";
    config.cache_capacity = o.cache;
    return config;
  }
  static std::string temp_log() {
    static int counter = 0;
    return (std::filesystem::temp_directory_path() /
            ("netfence-dns-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) +
             ".log"))
        .string();
  }

  FakeUpstream upstream_;
  asio::io_context io_{1};
  policy::Policy policy_;
  std::string log_path_;
  EventLog log_;
  Resolver resolver_;
  LearnedAddresses learned_;
  Server server_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  uint16_t port_ = 0;
  sockaddr_storage address_{};
  bool serving_ = false;
  std::thread thread_;
};

// Runs an awaitable to completion on `io` (in the calling thread) and returns its result.
template <class T>
T run_on(asio::io_context& io, asio::awaitable<T> awaitable) {
  std::optional<T> result;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { result.emplace(co_await std::move(awaitable)); },
      asio::detached);
  io.restart();
  io.run();
  return std::move(*result);
}

}  // namespace netfence::dns::test
