#include "gateway/classify.h"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/redirect_error.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "gateway/deadline.h"
#include "wire/http_request.h"
#include "wire/tls_client_hello.h"

namespace netfence::gateway {

using asio::redirect_error;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kReadChunk = 4096;
constexpr size_t kCap = 16 * 1024 + 5;  // a maximal ClientHello record header and body, or head

enum class Protocol { kUnknown, kTls, kHttp, kOther };

// True when the first line (or what has arrived of it, up to the cap) carries " HTTP/": the
// bytes claim to be an HTTP request, so a parse failure is a malformed request, not another
// protocol.
bool has_http_version(ByteSpan bytes) {
  std::string_view text = as_chars(bytes);
  size_t end = text.find('\n');
  return text.substr(0, end).find(" HTTP/") != std::string_view::npos;
}

// Examines the buffer; returns true when classification is final.
bool examine(const std::vector<std::byte>& buffer, Protocol& protocol,
             wire::ClientHelloReader& hello, wire::HttpRequestReader& http, Classified& out) {
  ByteSpan bytes(buffer.data(), buffer.size());
  if (protocol == Protocol::kUnknown) {
    wire::TlsSniff tls = wire::sniff_tls(bytes);
    if (tls == wire::TlsSniff::kTls) {
      protocol = Protocol::kTls;
    } else if (tls == wire::TlsSniff::kNotTls) {
      wire::ParseState h = wire::check_http1_start(bytes);
      if (h == wire::ParseState::kDone) protocol = Protocol::kHttp;
      if (h == wire::ParseState::kInvalid) protocol = Protocol::kOther;
    }
  }
  switch (protocol) {
    case Protocol::kUnknown:
      return false;
    case Protocol::kOther:
      out.kind = Classified::Kind::kOther;
      out.source = "none";
      out.problem = "no_name";
      return true;
    case Protocol::kTls: {
      wire::ParseState s = hello.feed(bytes);
      if (s == wire::ParseState::kNeedMore) return false;
      out.kind = Classified::Kind::kTls;
      out.source = "sni";
      const wire::ClientHelloInfo& info = hello.info();
      if (s == wire::ParseState::kInvalid) {
        out.problem = "bad_client_hello";
      } else if (info.kind != wire::HelloKind::kClientHello || info.sni_absent) {
        out.problem = "no_sni";
      } else if (info.sni_ip_literal) {
        out.problem = "sni_ip_literal";
      } else if (info.ech_present) {
        out.problem = "ech";
        out.name = info.sni;
      } else {
        out.name = info.sni;
      }
      return true;
    }
    case Protocol::kHttp: {
      wire::ParseState s = http.feed(bytes);
      if (s == wire::ParseState::kNeedMore) return false;
      out.kind = Classified::Kind::kHttp;
      out.source = "host";
      const wire::HttpRequestHead& head = http.head();
      if (s == wire::ParseState::kInvalid) {
        if (!has_http_version(bytes)) {
          // A token and a space, but no HTTP version on the first line: not HTTP at all (an SSH
          // version line such as "SSH-2.0-OpenSSH_9.2p1 Debian-2" looks like that).
          out.kind = Classified::Kind::kOther;
          out.source = "none";
          out.problem = "no_name";
          return true;
        }
        out.problem = "bad_http_head";
      } else if (head.kind == wire::HttpRequestKind::kConnect) {
        out.problem = "http_connect";
      } else if (head.kind == wire::HttpRequestKind::kHttp2Preface) {
        out.problem = "h2c";
      } else if (head.host.empty()) {
        out.problem = "no_host";
      } else {
        out.name = head.host;
      }
      return true;
    }
  }
  return true;
}

}  // namespace

asio::awaitable<Classified> classify(asio::ip::tcp::socket& socket, std::vector<std::byte>& buffer,
                                     std::chrono::milliseconds timeout,
                                     std::chrono::milliseconds first_byte_wait) {
  Classified out;
  Protocol protocol = Protocol::kUnknown;
  wire::ClientHelloReader hello;
  wire::HttpRequestReader http;
  asio::error_code ec;
  Deadline deadline(co_await asio::this_coro::executor);
  if (first_byte_wait.count() > 0 && buffer.empty()) {
    deadline.arm(Clock::now() + first_byte_wait);
    co_await socket.async_wait(
        asio::ip::tcp::socket::wait_read,
        asio::bind_cancellation_slot(deadline.slot(), redirect_error(use_awaitable, ec)));
    deadline.slot().clear();
    if (ec == asio::error::operation_aborted && deadline.fired()) {
      out.timed_out = true;
      out.problem = "timeout";
      co_return out;
    }
    if (ec) {
      out.problem = "closed";
      co_return out;
    }
  }
  if (!buffer.empty() && examine(buffer, protocol, hello, http, out)) co_return out;
  deadline.arm(Clock::now() + timeout);
  while (buffer.size() < kCap) {
    size_t old = buffer.size();
    buffer.resize(old + std::min(kReadChunk, kCap - old));
    size_t got = 0;
    if (deadline.fired()) {
      ec = asio::error::timed_out;  // it passed while bytes were being examined
    } else {
      got = co_await socket.async_read_some(
          asio::buffer(buffer.data() + old, buffer.size() - old),
          asio::bind_cancellation_slot(deadline.slot(), redirect_error(use_awaitable, ec)));
      deadline.slot().clear();
    }
    if ((ec == asio::error::operation_aborted || ec == asio::error::timed_out) &&
        deadline.fired()) {
      buffer.resize(old);
      if (protocol == Protocol::kTls) out.kind = Classified::Kind::kTls;
      if (protocol == Protocol::kHttp) out.kind = Classified::Kind::kHttp;
      out.timed_out = true;
      out.problem = "timeout";
      co_return out;
    }
    if (ec) {
      buffer.resize(old);
      out.problem = "closed";
      co_return out;
    }
    buffer.resize(old + got);
    if (examine(buffer, protocol, hello, http, out)) co_return out;
  }
  // Over the cap without a decision: the parsers cap themselves first, so this is only reached
  // by bytes that stay "consistent" forever; treat them as unparseable.
  out.kind = protocol == Protocol::kTls ? Classified::Kind::kTls : Classified::Kind::kHttp;
  out.problem = protocol == Protocol::kTls ? "bad_client_hello" : "bad_http_head";
  co_return out;
}

}  // namespace netfence::gateway
