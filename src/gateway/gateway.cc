#include "gateway/gateway.h"

#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "common/socket.h"
#include "fmt/format.h"
#include "gateway/classify.h"
#include "gateway/deadline.h"
#include "gateway/endpoint.h"
#include "wire/http_stream.h"

namespace netfence::gateway {

using asio::redirect_error;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
using policy::Decision;
using policy::Reason;
using policy::Verdict;

namespace {

// A denial the policy did not make (the connection could not be judged); callers set the
// connection's reason_override, which the log shows instead of the policy reason.
Decision gateway_denial(std::string detail) {
  Decision d;
  d.verdict = Verdict::kDeny;
  d.detail = std::move(detail);
  return d;
}

std::string suggestion(const std::string& name, const policy::IpAddress& address, uint16_t port) {
  if (!name.empty()) return fmt::format("--allow-net {}:{}", name, port);
  return address.family() == policy::Family::kV6
             ? fmt::format("--allow-net [{}]:{}", address.to_string(), port)
             : fmt::format("--allow-net {}:{}", address.to_string(), port);
}

}  // namespace

ConnectionLimits connection_limits_for_fd_limit(uint64_t fd_limit) {
  uint64_t reserve = std::min<uint64_t>(256, fd_limit / 4);
  auto per_table =
      static_cast<size_t>(std::clamp<uint64_t>((fd_limit - reserve) / 2, 1, kMaxConnectionsCap));
  ConnectionLimits limits{};
  limits.held_here = per_table;
  limits.local_relays = per_table - std::min<size_t>(per_table / 4, 1024);
  // A worker's table also holds its splice pipes (two descriptors per direction in flight): an
  // eighth of its share, at most 256 connections' worth, stays free for them.
  limits.relays_per_worker = per_table - std::min<size_t>(per_table / 8, 256);
  size_t beyond = kMaxConnectionsCap - per_table;
  limits.relay_workers = std::min(
      kMaxRelayWorkers, (beyond + limits.relays_per_worker - 1) / limits.relays_per_worker);
  limits.max_connections =
      std::min(kMaxConnectionsCap, per_table + limits.relay_workers * limits.relays_per_worker);
  return limits;
}

std::vector<std::byte> tls_fatal_alert(uint8_t description) {
  // A TLS 1.2-framed fatal alert: every TLS client understands it, and TLS 1.3 clients accept
  // the 0x0303 record version.
  return {std::byte{0x15}, std::byte{0x03}, std::byte{0x03},       std::byte{0x00},
          std::byte{0x02}, std::byte{0x02}, std::byte{description}};
}

std::string http_forbidden(std::string_view target, std::string_view reason,
                           std::string_view detail, std::string_view suggest) {
  std::string body = fmt::format("netfence denied {}: {}.\n", target, detail);
  if (!suggest.empty()) body += fmt::format("To allow it, add {}\n", suggest);
  return fmt::format(
      "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: {}\r\nConnection: close\r\nX-Netfence-Reason: {}\r\n\r\n{}",
      body.size(), reason, body);
}

std::string http_bad_gateway(std::string_view target, std::string_view detail) {
  std::string body =
      fmt::format("netfence allowed {} but could not reach it: {}.\n", target, detail);
  return fmt::format(
      "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: {}\r\nConnection: close\r\nX-Netfence-Reason: dial_failed\r\n\r\n{}",
      body.size(), body);
}

struct Gateway::Connection {
  uint64_t id = 0;
  uint64_t early_down = 0;   // server bytes carried down during inline inspection
  std::string close_reason;  // why inline inspection ended the connection
  tcp::socket client;
  Clock::time_point start = Clock::now();
  std::string src;
  Destination dst;
  std::string dst_text;
  std::vector<std::byte> first_bytes;
  Classified::Kind kind = Classified::Kind::kNothing;
  std::string name;
  std::string name_source = "none";
  std::string dialed;
  std::string reason_override;  // a gateway reason code replacing the policy's in the log
  bool http = false;            // the client speaks HTTP/1: every request head gets judged

  explicit Connection(tcp::socket s) : client(std::move(s)) {}
};

// What judging admitted: the decision logged with the connect event, whether the names are
// still read inline, and whether the connection holds a learned address (released at its end).
struct Gateway::Admission {
  Decision decision;
  bool inspect_inline = false;
  bool holds_learned = false;
};

Gateway::Gateway(asio::any_io_executor executor, const policy::Policy& policy,
                 dns::Resolver& resolver, dns::LearnedAddresses& learned, EventLog& log,
                 Options options)
    : executor_(std::move(executor)),
      policy_(policy),
      resolver_(resolver),
      learned_(learned),
      log_(log),
      options_(std::move(options)) {
  // splice(2) into a socket the peer has reset raises SIGPIPE (it has no MSG_NOSIGNAL); the
  // relay handles EPIPE itself. The sandbox child resets every disposition before exec.
  ::signal(SIGPIPE, SIG_IGN);
  if (options_.limits.relay_workers > 0) {
    workers_ = std::make_unique<RelayWorkers>(executor_, options_.limits.relay_workers,
                                              options_.limits.relays_per_worker);
  }
}

Result<void> Gateway::serve(UniqueFd listener) {
  auto family = socket_family(listener.get(), SOCK_STREAM);
  if (!family) return fail("gateway: the listener is not a stream socket");
  auto acceptor = std::make_shared<tcp::acceptor>(executor_);
  asio::error_code ec;
  acceptor->assign(*family == AF_INET6 ? tcp::v6() : tcp::v4(), listener.get(), ec);
  if (ec) return fail("gateway: cannot adopt the listener: " + ec.message());
  listener.release();
  acceptors_.push_back(acceptor);
  asio::co_spawn(executor_, accept_loop(acceptor), asio::detached);
  return {};
}

void Gateway::stop() {
  stopped_ = true;
  asio::error_code ec;
  for (auto& a : acceptors_) a->close(ec);
  if (workers_) workers_->stop();
}

asio::awaitable<void> Gateway::accept_loop(std::shared_ptr<tcp::acceptor> acceptor) {
  while (!stopped_) {
    asio::error_code ec;
    tcp::endpoint peer;  // from accept itself: no getpeername per connection
    tcp::socket socket = co_await acceptor->async_accept(peer, redirect_error(use_awaitable, ec));
    if (stopped_ || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
      co_return;
    }
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: give back the idle splice pipes' descriptors, and pause instead
      // of spinning; the pending connection waits.
      pool_.trim();
      asio::steady_timer pause(executor_, std::chrono::milliseconds(50));
      co_await pause.async_wait(redirect_error(use_awaitable, ec));
      continue;
    }
    asio::co_spawn(executor_, handle(std::move(socket), peer), asio::detached);
  }
}

Event Gateway::base_event(const Connection& c, std::string_view event) const {
  Event e;
  e.event = std::string(event);
  e.id = c.id;
  e.proto = "tcp";
  e.src = c.src;
  e.dst = c.dst.address.to_string();
  e.port = c.dst.port;
  e.name = c.name;
  e.name_source = c.name_source;
  e.dialed = c.dialed;
  return e;
}

void Gateway::log_event(const Connection& c, std::string_view event, const Decision& d) {
  if (!log_.wants(d.allowed())) return;
  Event e = base_event(c, event);
  e.verdict = std::string(policy::to_string(d.verdict));
  e.rule = c.reason_override.empty() ? d.rule : "";
  e.reason =
      c.reason_override.empty() ? std::string(policy::to_string(d.reason)) : c.reason_override;
  e.detail = d.detail;
  log_.write(e);
}

void Gateway::log_close(const Connection& c, const RelayResult& r, std::string_view problem) {
  stats_.bytes_up += r.bytes_up;
  stats_.bytes_down += r.bytes_down;
  if (!log_.wants(true)) return;
  Event e = base_event(c, "close");
  e.verdict = "allow";
  e.reason = !problem.empty() ? std::string(problem)
             : r.cut          ? "inspect_denied"
             : r.idle_timeout ? "idle_timeout"
             : r.reset        ? "reset"
                              : "eof";
  e.bytes_up = r.bytes_up;
  e.bytes_down = r.bytes_down;
  e.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - c.start).count();
  log_.write(e);
}

void Gateway::refuse(Connection& c, std::string_view event, const Decision& d) {
  bool dial_failed = c.reason_override == "dial_failed";
  if (!dial_failed) ++stats_.denied;
  log_event(c, event, d);
  asio::error_code ec;
  std::string reason =
      c.reason_override.empty() ? std::string(policy::to_string(d.reason)) : c.reason_override;
  if (c.kind == Classified::Kind::kTls) {
    // A failed dial was allowed: internal_error, as HTTP clients get a 502 rather than a 403.
    auto alert = tls_fatal_alert(dial_failed ? kTlsAlertInternalError : kTlsAlertAccessDenied);
    c.client.non_blocking(true, ec);
    c.client.write_some(asio::buffer(alert), ec);
    c.client.shutdown(tcp::socket::shutdown_send, ec);
    c.client.close(ec);
  } else if (c.kind == Classified::Kind::kHttp) {
    std::string target = c.name.empty() ? c.dst_text : fmt::format("{}:{}", c.name, c.dst.port);
    bool fixable = d.reason == Reason::kNoMatch || d.reason == Reason::kWrongPort;
    // A failed dial was allowed: the network, not the policy, said no.
    std::string response =
        dial_failed ? http_bad_gateway(target, d.detail)
                    : http_forbidden(target, reason, d.detail,
                                     fixable ? suggestion(c.name, c.dst.address, c.dst.port) : "");
    c.client.non_blocking(true, ec);
    c.client.write_some(asio::buffer(response), ec);
    c.client.shutdown(tcp::socket::shutdown_send, ec);
    c.client.close(ec);
  } else {
    reset(c.client);
  }
}

asio::awaitable<void> Gateway::handle(tcp::socket socket, tcp::endpoint peer) {
  ++stats_.accepted;
  Connection c(std::move(socket));
  c.id = ++next_id_;
  if (auto ip = policy::IpAddress::parse(peer.address().to_string())) {
    c.src = endpoint_text(*ip, peer.port());
  }
  auto dst = options_.destination ? options_.destination(c.client.native_handle())
                                  : Result<Destination>(fail("no destination lookup"));
  if (!dst || !dst->redirected) {
    c.reason_override = dst ? "not_redirected" : "no_original_destination";
    refuse(c, "connect",
           gateway_denial(dst ? "a connection to the gateway's own listener is not a destination"
                              : dst.error().message));
    co_return;
  }
  c.dst = *dst;
  c.dst_text = endpoint_text(c.dst.address, c.dst.port);
  if (stats_.active >= options_.limits.max_connections ||
      stats_.active - stats_.on_workers >= options_.limits.held_here) {
    c.reason_override = "too_many_connections";
    refuse(c, "connect",
           gateway_denial(stats_.active >= options_.limits.max_connections
                              ? fmt::format("over the limit of {} concurrent connections",
                                            options_.limits.max_connections)
                              : fmt::format("over the limit of {} connections being judged "
                                            "or relayed on the gateway's thread",
                                            options_.limits.held_here)));
    co_return;
  }
  ++stats_.active;
  if (std::optional<Admission> admitted = co_await judge(c)) {
    std::optional<tcp::socket> server =
        co_await connect_server(c, admitted->decision, admitted->inspect_inline);
    if (server) co_await relay_connection(c, *server);
    if (admitted->holds_learned) learned_.release(c.dst.address);
  }
  --stats_.active;
}

asio::awaitable<std::optional<Gateway::Admission>> Gateway::judge(Connection& c) {
  const policy::IpAddress& ip = c.dst.address;
  uint16_t port = c.dst.port;
  Decision d = policy_.judge_address(ip, port);
  if (d.allowed()) {
    // Full access or an IP/CIDR rule: the address is the authority. Names are still read
    // inline when deny_net names hosts ("everything but X").
    co_return Admission{std::move(d), policy_.deny().has_host_rules(), false};
  }
  if (d.reason == Reason::kDenyRule || d.reason == Reason::kAlwaysDeny ||
      d.reason == Reason::kDisabled) {
    refuse(c, "connect", d);
    co_return std::nullopt;
  }

  // The address came from netfence's own answer for an allowed name (SPEC 1.3 step 4).
  for (const std::string& owner : learned_.owners(ip)) {
    Decision nd = policy_.judge_name(owner, port);
    if (!nd.allowed() || !policy_.judge_resolved(ip, port).allowed()) continue;
    c.name = owner;
    c.name_source = "dns";
    nd.detail =
        fmt::format("{} was in netfence's DNS answer for {}, {}", ip.to_string(), owner, nd.detail);
    learned_.hold(ip);
    co_return Admission{std::move(nd), /*inspect_inline=*/true, /*holds_learned=*/true};
  }

  // Read the name the client wants (SPEC 1.3 step 5).
  Classified cl = co_await classify(c.client, c.first_bytes, options_.first_bytes_timeout,
                                    std::chrono::milliseconds(0));
  c.kind = cl.kind;
  c.name = cl.name;
  c.name_source = cl.source.empty() ? "none" : cl.source;
  c.http = cl.kind == Classified::Kind::kHttp;
  if (!cl.problem.empty()) {
    c.reason_override = cl.problem;
    std::string why;
    if (cl.problem == "timeout" || cl.problem == "closed" || cl.problem == "no_name") {
      c.reason_override = cl.problem == "closed" ? "closed" : "no_name";
      why = fmt::format(
          "{}; {} (neither TLS with an SNI nor HTTP with a Host arrived{})", d.detail, c.dst_text,
          cl.timed_out ? fmt::format(" within {} ms", options_.first_bytes_timeout.count()) : "");
    } else if (cl.problem == "ech") {
      why = fmt::format(
          "the ClientHello uses Encrypted Client Hello: its SNI '{}' is only the "
          "outer public name, not the host it reaches",
          cl.name);
    } else {
      why = fmt::format("{} ({})", d.detail, cl.problem);
    }
    Decision denied = d;
    denied.detail = why;
    refuse(c, "connect", denied);
    co_return std::nullopt;
  }
  Decision nd = policy_.judge_name(c.name, port);
  if (!nd.allowed()) {
    refuse(c, "connect", nd);
    co_return std::nullopt;
  }
  co_return Admission{std::move(nd), false, false};
}

asio::awaitable<Result<tcp::socket>> Gateway::dial(const policy::IpAddress& address,
                                                   uint16_t port) {
  tcp::socket socket(executor_);
  Deadline deadline(executor_);
  deadline.arm(Clock::now() + options_.connect_timeout);
  asio::error_code ec;
  co_await socket.async_connect(
      to_endpoint<tcp::endpoint>(address, port),
      asio::bind_cancellation_slot(deadline.slot(), redirect_error(use_awaitable, ec)));
  deadline.slot().clear();
  if (ec == asio::error::operation_aborted && deadline.fired()) {
    co_return fail(fmt::format("connecting to {} timed out after {} ms",
                               endpoint_text(address, port), options_.connect_timeout.count()));
  }
  if (ec) {
    co_return fail(
        fmt::format("connecting to {} failed: {}", endpoint_text(address, port), ec.message()));
  }
  socket.set_option(tcp::no_delay(true), ec);
  co_return std::move(socket);
}

asio::awaitable<Result<tcp::socket>> Gateway::dial_name(Connection& c, const std::string& name) {
  // Not a conditional expression: GCC 12 miscompiles co_await inside ?: (heap corruption).
  Result<std::vector<policy::IpAddress>> found = Error{};
  if (options_.resolve) {
    found = co_await options_.resolve(name);
  } else {
    found = co_await resolver_.resolve(name);
  }
  if (!found) co_return fail(fmt::format("resolving {} failed: {}", name, found.error().message));
  std::vector<policy::IpAddress> usable;
  std::string refused;
  for (const policy::IpAddress& a : *found) {
    Decision d = policy_.judge_resolved(a, c.dst.port);
    if (d.allowed()) {
      usable.push_back(a);
    } else if (refused.empty()) {
      refused = d.detail;
    }
  }
  if (usable.empty()) {
    co_return fail(refused.empty()
                       ? fmt::format("{} has no addresses", name)
                       : fmt::format("{} resolves only to refused addresses: {}", name, refused));
  }
  // The family the client used first, then the other.
  std::stable_partition(usable.begin(), usable.end(), [&](const policy::IpAddress& a) {
    return a.family() == c.dst.address.family();
  });
  std::string failures;  // every address's error, in the order tried
  for (size_t i = 0; i < usable.size() && i < 4; ++i) {
    auto s = co_await dial(usable[i], c.dst.port);
    if (s) {
      c.dialed = endpoint_text(usable[i], c.dst.port);
      co_return s;
    }
    if (!failures.empty()) failures += "; ";
    failures += s.error().message;
  }
  co_return fail(failures);
}

asio::awaitable<bool> Gateway::inspect_inline(Connection& c, tcp::socket& server) {
  // While waiting for the client's first bytes, the server may speak first (SSH, SMTP, MySQL):
  // carry its bytes down until the client's bytes are classified.
  bool classified = false;
  bool stalled = false;  // the client did not take the server's bytes for the idle timeout
  Clock::time_point last_down = Clock::now();
  auto early_down = [&]() -> asio::awaitable<void> {
    asio::error_code ec;
    Deadline deadline(executor_);
    while (!classified) {
      co_await server.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
      if (ec || classified) co_return;
      // A server that speaks first may send a lot before the client says anything (a download
      // the client never answers): full-size buffers, as in the relay.
      BufferPool::Lease chunk = pool_.take();
      size_t n = read_now(server, chunk.data(), chunk.size(), ec);
      if (ec == asio::error::would_block) continue;
      if (ec == asio::error::eof) {
        // The server said all it will say (daytime, a refusal): let the client see the end.
        c.client.shutdown(tcp::socket::shutdown_send, ec);
        co_return;
      }
      if (ec) co_return;  // an error: the relay that follows sees it again
      // A client that stops reading must not hold this write (and the connection) forever.
      deadline.arm(Clock::now() + options_.idle_timeout);
      co_await asio::async_write(
          c.client, asio::buffer(chunk.data(), n),
          asio::bind_cancellation_slot(deadline.slot(), redirect_error(use_awaitable, ec)));
      deadline.slot().clear();
      if (ec == asio::error::operation_aborted && deadline.fired()) {
        stalled = true;
        reset(c.client);
        reset(server);
        co_return;
      }
      if (ec) co_return;
      c.early_down += n;
      last_down = Clock::now();
    }
  };
  auto read_up = [&]() -> asio::awaitable<Classified> {
    Classified cl;
    while (true) {
      cl = co_await classify(c.client, c.first_bytes, options_.inspect_timeout,
                             options_.idle_timeout);
      // Bytes flowing down count as activity: a download the client never answers is not idle.
      if (cl.problem == "timeout" && c.first_bytes.empty() && !stalled &&
          Clock::now() - last_down < options_.idle_timeout) {
        continue;
      }
      break;
    }
    classified = true;
    asio::error_code ec;
    server.cancel(ec);  // wakes early_down from its wait
    co_return cl;
  };
  Classified cl = co_await (read_up() && early_down());
  if (stalled || (cl.problem == "timeout" && c.first_bytes.empty())) {
    // Nothing moved for the idle timeout: an idle connection, closed like any other.
    c.close_reason = "idle_timeout";
    reset(c.client);
    reset(server);
    co_return false;
  }
  c.http = cl.kind == Classified::Kind::kHttp;
  // Bytes that announced TLS or HTTP but cannot be read to a name (malformed, over the cap, cut
  // short) are not waved through: a lenient server might still read a name the policy never saw.
  // A hello without SNI or with an IP literal names nothing, so the address decision stands.
  bool unreadable = (cl.kind == Classified::Kind::kTls || cl.kind == Classified::Kind::kHttp) &&
                    !cl.problem.empty() && cl.problem != "no_sni" &&
                    cl.problem != "sni_ip_literal" && cl.problem != "no_host" &&
                    cl.problem != "closed" && cl.problem != "ech";
  if (unreadable) {
    c.kind = cl.kind;
    c.reason_override =
        cl.problem == "timeout"
            ? (cl.kind == Classified::Kind::kTls ? "bad_client_hello" : "bad_http_head")
            : cl.problem;
    Decision d;
    d.detail = fmt::format("the first bytes {} but cannot be read to a host name ({})",
                           cl.kind == Classified::Kind::kTls ? "are TLS" : "are an HTTP request",
                           cl.problem);
    c.close_reason = "inspect_denied";
    reset(server);
    refuse(c, "inspect", d);
    co_return false;
  }
  if (cl.name.empty()) co_return true;  // nothing names a host: the address decision stands
  Decision nd = policy_.judge_name(cl.name, c.dst.port);
  bool ok = policy_.full_access() ? nd.reason != Reason::kDenyRule : nd.allowed();
  if (ok && cl.problem != "ech") co_return true;
  c.kind = cl.kind;
  std::string learned_name = c.name;
  c.name = cl.name;
  c.name_source = cl.source;
  if (cl.problem == "ech") {
    c.reason_override = "ech";
    nd.detail = "the ClientHello uses Encrypted Client Hello: the host it reaches is hidden";
  } else if (!learned_name.empty()) {
    nd.detail = fmt::format(
        "{} (the connection went to an address of {}, but its first bytes "
        "name {})",
        nd.detail, learned_name, cl.name);
  }
  c.close_reason = "inspect_denied";
  reset(server);
  refuse(c, "inspect", nd);
  co_return false;
}

UpstreamFilter Gateway::http_filter(Connection& c) {
  // Every request head of the connection is judged before it is forwarded (peers.md 5.22). A
  // connection dialed by its Host keeps that host: a later head naming another one would reach
  // that other virtual host on this server. Other connections (IP rule, learned address, full
  // access) judge each head's host as inline inspection does.
  auto stream = std::make_shared<wire::HttpRequestStream>();
  bool dialed_by_host = c.name_source == "host";
  std::string dialed_host = c.name;
  return [this, &c, stream, dialed_by_host,
          dialed_host](std::span<const std::byte> pending) -> std::optional<size_t> {
    auto step = stream->scan(ByteSpan(pending.data(), pending.size()));
    if (step.kind != wire::HttpRequestStream::Kind::kHead &&
        step.kind != wire::HttpRequestStream::Kind::kInvalid) {
      return step.forwardable;
    }
    Decision d;
    if (step.kind == wire::HttpRequestStream::Kind::kInvalid) {
      c.reason_override = "bad_http_head";
      d.detail = fmt::format("a later request on this connection is not valid HTTP/1 ({})",
                             stream->reason());
    } else {
      const wire::HttpRequestHead& head = stream->head();
      if (head.kind != wire::HttpRequestKind::kHttp1) {
        c.reason_override = head.kind == wire::HttpRequestKind::kConnect ? "http_connect" : "h2c";
        d.detail = "a later request on this connection is not a plain HTTP/1 request";
      } else if (head.host.empty() && !dialed_by_host) {
        // HTTP/1.0 without Host names nothing: the address decision stands.
        return step.forwardable;
      } else if (dialed_by_host) {
        // A hostless head would get the server's default virtual host: not the one dialed.
        if (head.host == dialed_host) return step.forwardable;
        c.reason_override = "host_switch";
        d.detail = fmt::format(
            "request {} on this connection names {}, but the connection was "
            "dialed for {}",
            stream->requests(), head.host.empty() ? "no host" : head.host, dialed_host);
      } else {
        d = policy_.judge_name(head.host, c.dst.port);
        bool ok = policy_.full_access() || c.name_source == "none" ? d.reason != Reason::kDenyRule
                                                                   : d.allowed();
        if (ok) return step.forwardable;
      }
      c.name = head.host;
      c.name_source = "host";
    }
    d.verdict = Verdict::kDeny;
    ++stats_.denied;
    log_event(c, "inspect", d);
    return std::nullopt;
  };
}

asio::awaitable<std::optional<tcp::socket>> Gateway::connect_server(Connection& c,
                                                                    const Decision& d,
                                                                    bool inspect) {
  Result<tcp::socket> server = Error{};
  bool by_name = c.name_source == "sni" || c.name_source == "host";
  if (by_name) {
    server = co_await dial_name(c, c.name);
  } else {
    server = co_await dial(c.dst.address, c.dst.port);
    if (server) c.dialed = c.dst_text;
  }
  ++stats_.allowed;
  log_event(c, "connect", d);
  if (!server) {
    ++stats_.dial_failures;
    Decision failed = d;
    failed.verdict = Verdict::kDeny;
    failed.detail = server.error().message;
    c.reason_override = "dial_failed";
    // The policy allowed it; the network did not. Tell the client in its own protocol.
    refuse(c, "dial", failed);
    log_close(c, RelayResult{}, "dial_failed");
    co_return std::nullopt;
  }
  if (inspect && !co_await inspect_inline(c, server.value())) {
    RelayResult none;
    none.bytes_down = c.early_down;
    log_close(c, none, c.close_reason);
    co_return std::nullopt;
  }
  co_return std::move(server.value());
}

asio::awaitable<void> Gateway::relay_connection(Connection& c, tcp::socket& server) {
  RelayResult r;
  if (c.http) {
    r = co_await relay_filtered(c.client, server, pool_, options_.idle_timeout,
                                std::move(c.first_bytes), http_filter(c));
  } else {
    if (!co_await send_all(server, c.first_bytes)) {
      reset(c.client);
      reset(server);
      log_close(c, RelayResult{}, "reset");
      co_return;
    }
    // Sent: the bytes (a ClientHello, say) need not stay with the connection while it relays.
    uint64_t first_bytes = c.first_bytes.size();
    std::vector<std::byte>().swap(c.first_bytes);
    std::optional<RelayResult> spilled;
    if (workers_ && stats_.active - stats_.on_workers > options_.limits.local_relays) {
      // This thread's descriptor table is kept for connections still being judged.
      ++stats_.on_workers;
      spilled = co_await workers_->relay(c.client, server, options_.idle_timeout);
      --stats_.on_workers;
    }
    if (spilled) {
      r = *spilled;
    } else {
      r = co_await relay(c.client, server, pool_, options_.idle_timeout);
    }
    r.bytes_up += first_bytes;
  }
  r.bytes_down += c.early_down;
  log_close(c, r, "");
}

}  // namespace netfence::gateway
