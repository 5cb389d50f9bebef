#include "dns/server.h"

#include "common/socket.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <cstring>

#include "dns/fast_path.h"
#include "fmt/format.h"

namespace netfence::dns {

using asio::redirect_error;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

struct Server::UdpListener {
  explicit UdpListener(const asio::any_io_executor& executor) : socket(executor) {}
  asio::ip::udp::socket socket;
  bool pktinfo = false;     // bound to a wildcard: each datagram reports its destination
  asio::ip::address local;  // the bound address
  uint16_t port = 0;        // the bound port
};

namespace {

constexpr std::string_view kDohCanary = "use-application-dns.net";
// Batches read per readiness notification before other work (forwards, TCP) gets a turn.
constexpr int kMaxUdpRounds = 8;

// "addr:port" or "[v6]:port". IPv4 by hand: glibc's inet_ntop goes through sprintf, which
// cost more than answering the query (callgrind).
void append_endpoint(std::string& out, const asio::ip::address& address, uint16_t port) {
  char text[INET6_ADDRSTRLEN + 8];
  char* p = text;
  auto put_decimal = [&p](unsigned value) {
    char digits[5];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    while (n > 0) *p++ = digits[--n];
  };
  if (address.is_v4()) {
    auto bytes = address.to_v4().to_bytes();
    for (size_t i = 0; i < 4; ++i) {
      if (i != 0) *p++ = '.';
      put_decimal(bytes[i]);
    }
  } else {
    auto bytes = address.to_v6().to_bytes();
    *p++ = '[';
    inet_ntop(AF_INET6, bytes.data(), p, INET6_ADDRSTRLEN);
    p += std::strlen(p);
    *p++ = ']';
  }
  if (port != 0) {
    *p++ = ':';
    put_decimal(port);
  }
  out.append(text, static_cast<size_t>(p - text));
}

policy::NameCheck fixed(policy::Verdict verdict, policy::Reason reason) {
  return policy::NameCheck{verdict, reason, nullptr};
}

}  // namespace

std::string qtype_name(uint16_t type) {
  switch (type) {
    case wire::dns_type::kA:
      return "A";
    case wire::dns_type::kNs:
      return "NS";
    case wire::dns_type::kCname:
      return "CNAME";
    case wire::dns_type::kSoa:
      return "SOA";
    case wire::dns_type::kPtr:
      return "PTR";
    case wire::dns_type::kMx:
      return "MX";
    case wire::dns_type::kTxt:
      return "TXT";
    case wire::dns_type::kAaaa:
      return "AAAA";
    case wire::dns_type::kSrv:
      return "SRV";
    case wire::dns_type::kSvcb:
      return "SVCB";
    case wire::dns_type::kHttps:
      return "HTTPS";
    case wire::dns_type::kAny:
      return "ANY";
    default:
      return fmt::format("TYPE{}", type);
  }
}

Server::Server(asio::any_io_executor executor, const policy::Policy& policy, Resolver& resolver,
               LearnedAddresses& learned, EventLog& log, Options options)
    : executor_(std::move(executor)),
      policy_(policy),
      resolver_(resolver),
      learned_(learned),
      log_(log),
      options_(options),
      batch_(std::make_unique<UdpBatch>()) {}

Result<void> Server::serve_udp(UniqueFd fd) {
  auto family = socket_family(fd.get(), SOCK_DGRAM);
  if (!family) return fail("dns: the UDP listener is not a bound datagram socket");
  auto listener = std::make_shared<UdpListener>(executor_);
  asio::error_code ec;
  listener->socket.assign(*family == AF_INET6 ? asio::ip::udp::v6() : asio::ip::udp::v4(), fd.get(),
                          ec);
  if (ec) return fail("dns: cannot adopt the UDP listener: " + ec.message());
  fd.release();
  listener->socket.non_blocking(true, ec);
  if (ec) return fail("dns: cannot make the UDP listener non-blocking: " + ec.message());
  auto bound = listener->socket.local_endpoint(ec);
  if (ec) return fail("dns: the UDP listener has no address: " + ec.message());
  listener->local = bound.address();
  listener->port = bound.port();
  listener->pktinfo = enable_pktinfo_if_wildcard(listener->socket.native_handle());
  udp_listeners_.push_back(listener);
  asio::co_spawn(executor_, udp_loop(listener), asio::detached);
  return {};
}

Result<void> Server::serve_tcp(UniqueFd fd) {
  auto family = socket_family(fd.get(), SOCK_STREAM);
  if (!family) return fail("dns: the TCP listener is not a listening stream socket");
  auto acceptor = std::make_shared<asio::ip::tcp::acceptor>(executor_);
  asio::error_code ec;
  acceptor->assign(*family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd.get(), ec);
  if (ec) return fail("dns: cannot adopt the TCP listener: " + ec.message());
  fd.release();
  tcp_acceptors_.push_back(acceptor);
  asio::co_spawn(executor_, tcp_accept_loop(acceptor), asio::detached);
  return {};
}

void Server::stop() {
  stopped_ = true;
  asio::error_code ec;
  for (auto& l : udp_listeners_) l->socket.close(ec);
  for (auto& a : tcp_acceptors_) a->close(ec);
}

// ---- decisions ----

Server::Route Server::route(std::string_view name, uint16_t type, uint16_t klass) const {
  Route r;
  bool full = policy_.full_access();
  if (name == kDohCanary) {
    r.kind = wire::DnsAnswerKind::kNxDomain;
    r.answer = "nxdomain";
    r.fixed_detail = "the DoH canary name: browsers keep their own DoH off";
    r.check = fixed(policy::Verdict::kDeny, policy::Reason::kDenyRule);
    return r;
  }
  bool names_filtered = !full || policy_.deny().has_host_rules();
  if (names_filtered && (type == wire::dns_type::kHttps || type == wire::dns_type::kSvcb)) {
    r.kind = wire::DnsAnswerKind::kNoData;
    r.answer = "nodata";
    r.fixed_detail =
        "HTTPS/SVCB records are withheld so that ECH stays off and the SNI stays readable";
    r.check = fixed(policy::Verdict::kDeny, policy::Reason::kDenyRule);
    return r;
  }
  r.check = policy_.check_name(name, 0);
  bool forward = r.check.allowed() || (full && r.check.reason != policy::Reason::kDenyRule);
  if (forward && !full && klass != wire::kDnsClassIn) {
    r.kind = wire::DnsAnswerKind::kNoData;
    r.answer = "nodata";
    r.fixed_detail = "only class IN queries are forwarded";
    r.check = fixed(policy::Verdict::kDeny, policy::Reason::kInvalidName);
    return r;
  }
  if (forward) {
    r.forward = true;
    r.answer = "forwarded";
    // In full access, names that are not host names (_srv labels, ...) are forwarded too.
    if (!r.check.allowed()) r.check = fixed(policy::Verdict::kAllow, policy::Reason::kFullAccess);
    return r;
  }
  switch (policy_.blocked_answer()) {
    case policy::BlockedAnswer::kNxdomain:
      r.kind = wire::DnsAnswerKind::kNxDomain;
      r.answer = "nxdomain";
      return r;
    case policy::BlockedAnswer::kRefused:
      r.kind = wire::DnsAnswerKind::kRefused;
      r.answer = "refused";
      return r;
    case policy::BlockedAnswer::kNull:
      break;
  }
  if ((type == wire::dns_type::kA || type == wire::dns_type::kAaaa) && klass == wire::kDnsClassIn) {
    r.kind = wire::DnsAnswerKind::kUnspecifiedAddress;
    r.answer = "sinkhole";
  } else {
    r.kind = wire::DnsAnswerKind::kNoData;
    r.answer = "nodata";
  }
  return r;
}

policy::Decision Server::decision_for(const Route& r, std::string_view name) const {
  if (!r.fixed_detail.empty()) {
    return policy::Decision{r.check.verdict, r.check.reason, "", std::string(r.fixed_detail)};
  }
  if (r.check.reason == policy::Reason::kFullAccess) {
    return policy::Decision{policy::Verdict::kAllow, policy::Reason::kFullAccess, "",
                            "full access (allow_net is empty)"};
  }
  // The sentence, only now that the event is going to be written.
  return policy_.judge_name(name, 0);
}

// ---- answering ----

Server::Disposition Server::answer_locally(ByteSpan message, const Client& client,
                                           std::vector<std::byte>& response,
                                           std::unique_ptr<Pending>& pending) {
  ++stats_.queries;
  auto start = Clock::now();
  SimpleQuery query;
  if (read_simple_query(message, query)) {
    Route r = route(query.name(), query.type, query.klass);
    if (!r.forward) {
      response.resize(kMaxLocalAnswerSize);
      size_t size = write_local_answer(message, query, r.kind, options_.local_ttl, response);
      if (size != 0) {
        response.resize(size);
        ++stats_.local;
        ++stats_.fast_path;
        if (log_.wants(r.check.allowed())) log_route(client, query.name(), query.type, r, start);
        return Disposition::kAnswered;
      }
    }
  }
  return answer_general(message, client, response, pending, start);
}

Server::Disposition Server::answer_general(ByteSpan message, const Client& client,
                                           std::vector<std::byte>& response,
                                           std::unique_ptr<Pending>& pending,
                                           Clock::time_point start) {
  auto parsed = wire::parse_dns_message(message);
  if (!parsed) {
    auto header = wire::parse_dns_header(message);
    auto formerr = wire::build_dns_formerr(message);
    if (!header || header->qr || !formerr) {
      ++stats_.dropped;
      log_malformed(client, "dropped", parsed.error().message, start);
      return Disposition::kDropped;
    }
    ++stats_.formerr;
    log_malformed(client, "formerr", parsed.error().message, start);
    response = std::move(formerr.value());
    return Disposition::kAnswered;
  }
  wire::DnsMessage& query = parsed.value();
  if (query.header.qr) {
    ++stats_.dropped;
    log_malformed(client, "dropped", "a response, not a query", start);
    return Disposition::kDropped;
  }
  if (query.questions.size() != 1) {
    auto formerr = wire::build_dns_formerr(message);
    ++stats_.formerr;
    log_malformed(client, "formerr", "not exactly one question", start);
    if (!formerr) return Disposition::kDropped;
    response = std::move(formerr.value());
    return Disposition::kAnswered;
  }
  const wire::DnsQuestion& q = query.questions.front();
  Route r;
  if (query.header.opcode != 0) {
    r.kind = wire::DnsAnswerKind::kNotImp;
    r.answer = "notimp";
    r.fixed_detail = "only standard queries are served";
    r.check = fixed(policy::Verdict::kDeny, policy::Reason::kInvalidName);
  } else if (query.edns && query.edns->version != 0) {
    r.kind = wire::DnsAnswerKind::kBadVers;
    r.answer = "badvers";
    r.fixed_detail = "EDNS version not supported";
    r.check = fixed(policy::Verdict::kDeny, policy::Reason::kInvalidName);
  } else {
    r = route(q.name.text, q.type, q.klass);
  }
  if (r.forward) {
    if (auto hit = resolver_.cached_answer(query)) {
      Pending here{std::move(query), client, start, r};
      response = relay(here, std::move(*hit));
      return response.empty() ? Disposition::kDropped : Disposition::kAnswered;
    }
    pending = std::make_unique<Pending>(Pending{std::move(query), client, start, r});
    return Disposition::kForward;
  }
  wire::DnsAnswerOptions options;
  options.ttl = options_.local_ttl;
  auto built = wire::build_dns_answer(query, r.kind, options);
  if (!built) {
    built = wire::build_dns_formerr(message);
    ++stats_.formerr;
    log_malformed(client, "formerr", built.error().message, start);
    if (!built) return Disposition::kDropped;
    response = std::move(built.value());
    return Disposition::kAnswered;
  }
  ++stats_.local;
  if (log_.wants(r.check.allowed())) log_route(client, q.name.text, q.type, r, start);
  response = std::move(built.value());
  return Disposition::kAnswered;
}

asio::awaitable<std::vector<std::byte>> Server::forward(std::unique_ptr<Pending> pending) {
  const wire::DnsMessage& query = pending->query;
  const wire::DnsQuestion& q = query.questions.front();
  auto upstream = co_await resolver_.exchange(query);
  if (!upstream) {
    ++stats_.servfail;
    auto built = wire::build_dns_answer(query, wire::DnsAnswerKind::kServFail);
    if (log_.wants(true)) {
      policy::Decision d = decision_for(pending->route, q.name.text);
      d.detail = "upstream failed: " + upstream.error().message;
      log_event(pending->client, q.name.text, q.type, "servfail", d, pending->start);
    }
    co_return built ? std::move(built.value()) : std::vector<std::byte>{};
  }
  co_return relay(*pending, std::move(upstream.value()));
}

std::vector<std::byte> Server::relay(const Pending& pending, wire::DnsMessage response) {
  const wire::DnsMessage& query = pending.query;
  const wire::DnsQuestion& q = query.questions.front();
  // The client's question exactly as it wrote it (0x20 case randomisation intact), its flags,
  // and EDNS only if it used EDNS (RFC 6891 7): our payload size, its DO bit, no options.
  response.questions = query.questions;
  response.header.id = query.header.id;
  response.header.rd = query.header.rd;
  response.header.cd = query.header.cd;
  if (query.edns) {
    wire::DnsEdns edns;
    edns.dnssec_ok = query.edns->dnssec_ok;
    edns.extended_rcode = response.edns ? response.edns->extended_rcode : 0;
    response.edns = edns;
  } else {
    response.edns.reset();
  }
  stats_.filtered_addresses += wire::remove_dns_addresses(response, [&](const wire::DnsAddress& a) {
    policy::IpAddress ip =
        a.type == wire::dns_type::kA
            ? policy::IpAddress::v4({a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]})
            : policy::IpAddress::v6(a.bytes);
    return !policy_.judge_resolved(ip, 0).allowed();
  });
  if (!policy_.full_access() && (q.type == wire::dns_type::kA || q.type == wire::dns_type::kAaaa)) {
    if (auto chain = wire::extract_dns_answer(response, q.name.text, q.type)) {
      for (const wire::DnsAddress& a : chain->addresses) {
        policy::IpAddress ip =
            a.type == wire::dns_type::kA
                ? policy::IpAddress::v4({a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]})
                : policy::IpAddress::v6(a.bytes);
        learned_.learn(q.name.text, ip, a.ttl);
      }
    }
  }
  return finish(pending, response);
}

std::vector<std::byte> Server::finish(const Pending& pending, const wire::DnsMessage& response) {
  const wire::DnsQuestion& q = pending.query.questions.front();
  auto bytes = wire::encode_dns_message(response);
  if (bytes && pending.client.transport == Transport::kUdp &&
      bytes->size() > wire::dns_udp_response_limit(pending.query)) {
    bytes = wire::build_dns_truncated(response);
  }
  if (!bytes) {
    ++stats_.servfail;
    auto built = wire::build_dns_answer(pending.query, wire::DnsAnswerKind::kServFail);
    if (log_.wants(true)) {
      policy::Decision d = decision_for(pending.route, q.name.text);
      d.detail = "upstream answer cannot be relayed: " + bytes.error().message;
      log_event(pending.client, q.name.text, q.type, "servfail", d, pending.start);
    }
    return built ? std::move(built.value()) : std::vector<std::byte>{};
  }
  ++stats_.forwarded;
  if (log_.wants(true))
    log_route(pending.client, q.name.text, q.type, pending.route, pending.start);
  return std::move(bytes.value());
}

// ---- the decision log ----

void Server::log_route(const Client& client, std::string_view name, uint16_t qtype, const Route& r,
                       Clock::time_point start) {
  log_event(client, name, qtype, r.answer, decision_for(r, name), start);
}

void Server::log_malformed(const Client& client, std::string_view answer, std::string_view why,
                           Clock::time_point start) {
  if (!log_.wants(false)) return;
  policy::Decision d{policy::Verdict::kDeny, policy::Reason::kInvalidName, "",
                     fmt::format("malformed DNS message: {}", why)};
  log_event(client, "", 0, answer, d, start);
}

void Server::log_event(const Client& client, std::string_view name, uint16_t qtype,
                       std::string_view answer, const policy::Decision& d,
                       Clock::time_point start) {
  if (!log_.wants(d.allowed())) return;
  Event& e = event_;
  e.event.assign("dns");
  e.proto.assign(client.transport == Transport::kUdp ? "udp" : "tcp");
  e.src.clear();
  append_endpoint(e.src, client.peer.address(), client.peer.port());
  e.dst.clear();
  if (!client.local.is_unspecified()) append_endpoint(e.dst, client.local, 0);
  e.port = 53;
  e.name.assign(name);
  e.name_source.assign("dns");
  e.qtype = name.empty() && qtype == 0 ? std::string() : qtype_name(qtype);
  e.answer.assign(answer);
  e.verdict.assign(policy::to_string(d.verdict));
  e.rule.assign(d.rule);
  e.reason.assign(policy::to_string(d.reason));
  e.detail.assign(d.detail);
  e.dialed.clear();
  e.bytes_up.reset();
  e.bytes_down.reset();
  e.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  e.id = 0;
  log_.write(e);
}

// ---- UDP ----

asio::awaitable<void> Server::udp_loop(std::shared_ptr<UdpListener> listener) {
  while (!stopped_) {
    asio::error_code ec;
    co_await listener->socket.async_wait(asio::socket_base::wait_read,
                                         redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor || stopped_) {
      co_return;
    }
    if (ec) continue;
    udp_drain(listener);
  }
}

void Server::udp_drain(const std::shared_ptr<UdpListener>& listener) {
  int fd = listener->socket.native_handle();
  UdpBatch& batch = *batch_;
  for (int round = 0; round < kMaxUdpRounds; ++round) {
    size_t received = batch.receive(fd, listener->pktinfo, listener->local);
    for (size_t i = 0; i < received; ++i) {
      const UdpRoute& route = batch.route(i);
      Client client{Transport::kUdp, route.peer, route.local};
      std::unique_ptr<Pending> pending;
      if (batch.cut(i)) {
        // Longer than any query we accept: its end is lost, so it cannot be read.
        ++stats_.queries;
        auto formerr = wire::build_dns_formerr(batch.datagram(i));
        if (formerr) {
          ++stats_.formerr;
          batch.reply(i) = std::move(formerr.value());
          batch.queue(i);
        } else {
          ++stats_.dropped;
        }
        log_malformed(client, formerr ? "formerr" : "dropped", "datagram_too_large", Clock::now());
        continue;
      }
      switch (answer_locally(batch.datagram(i), client, batch.reply(i), pending)) {
        case Disposition::kAnswered:
          batch.queue(i);
          break;
        case Disposition::kDropped:
          break;
        case Disposition::kForward:
          if (in_flight_ >= kMaxInFlight) {
            ++stats_.dropped;
            const wire::DnsQuestion& q = pending->query.questions.front();
            if (log_.wants(true)) {
              policy::Decision d = decision_for(pending->route, q.name.text);
              d.detail = "dropped: too many queries waiting for upstream answers";
              log_event(client, q.name.text, q.type, "dropped", d, pending->start);
            }
            break;
          }
          ++in_flight_;
          asio::co_spawn(executor_, udp_forward(listener, route, std::move(pending)),
                         asio::detached);
          break;
      }
    }
    log_.flush();  // every event of the batch is written before any of its answers leaves
    stats_.send_failures += batch.flush(fd);
    if (received < UdpBatch::kSlots) break;
  }
}

asio::awaitable<void> Server::udp_forward(std::shared_ptr<UdpListener> listener, UdpRoute route,
                                          std::unique_ptr<Pending> pending) {
  std::vector<std::byte> bytes = co_await forward(std::move(pending));
  --in_flight_;
  if (stopped_ || bytes.empty()) co_return;
  if (!send_udp(listener->socket.native_handle(), route, bytes)) ++stats_.send_failures;
}

// ---- TCP ----

asio::awaitable<void> Server::tcp_accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor) {
  while (!stopped_) {
    asio::error_code ec;
    asio::ip::tcp::socket socket =
        co_await acceptor->async_accept(redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor || stopped_) {
      co_return;
    }
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning on the same error.
      asio::steady_timer pause(executor_, std::chrono::milliseconds(50));
      co_await pause.async_wait(redirect_error(use_awaitable, ec));
      continue;
    }
    if (tcp_sessions_ >= kMaxTcpConnections) continue;  // closes the socket
    ++stats_.tcp_connections;
    ++tcp_sessions_;
    asio::co_spawn(executor_, tcp_session(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> Server::tcp_session(asio::ip::tcp::socket socket) {
  asio::error_code ec;
  Client client;
  client.transport = Transport::kTcp;
  if (auto remote = socket.remote_endpoint(ec); !ec) {
    client.peer = asio::ip::udp::endpoint(remote.address(), remote.port());
  }
  if (auto local = socket.local_endpoint(ec); !ec) client.local = local.address();
  std::vector<std::byte> buffer;
  buffer.reserve(4096);
  std::vector<std::byte> response;
  std::array<std::byte, 4096> chunk;
  std::array<std::byte, 2> length{};
  asio::steady_timer idle(executor_);
  while (!stopped_) {
    auto frame = wire::read_dns_tcp_frame(buffer);
    if (frame.state == wire::ParseState::kInvalid) break;
    if (frame.state == wire::ParseState::kDone) {
      std::unique_ptr<Pending> pending;
      Disposition disposition = answer_locally(frame.message, client, response, pending);
      size_t consumed = frame.frame_length;
      if (disposition == Disposition::kForward) {
        // Not a conditional expression: GCC 12 miscompiles co_await inside ?: (double free).
        response = co_await forward(std::move(pending));
        if (response.empty()) disposition = Disposition::kDropped;
      }
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(consumed));
      if (disposition == Disposition::kDropped || response.size() > wire::kDnsMaxMessageSize) {
        continue;
      }
      length[0] = static_cast<std::byte>(response.size() >> 8);
      length[1] = static_cast<std::byte>(response.size() & 0xff);
      std::array<asio::const_buffer, 2> parts{asio::buffer(length), asio::buffer(response)};
      co_await asio::async_write(socket, parts, redirect_error(use_awaitable, ec));
      if (ec) break;
      continue;
    }
    idle.expires_after(kTcpIdleTimeout);
    asio::error_code idle_ec;
    auto got =
        co_await (socket.async_read_some(asio::buffer(chunk), redirect_error(use_awaitable, ec)) ||
                  idle.async_wait(redirect_error(use_awaitable, idle_ec)));
    if (got.index() == 1 || ec) break;
    size_t n = std::get<0>(got);
    buffer.insert(buffer.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  }
  --tcp_sessions_;
}

}  // namespace netfence::dns
