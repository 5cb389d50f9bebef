#include "cli/probes.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <thread>

#include "cli/tls_hello.h"
#include "common/fd.h"
#include "fmt/format.h"
#include "sandbox/sandbox.h"
#include "wire/dns_message.h"

namespace netfence::cli {
namespace {

using Clock = std::chrono::steady_clock;
using policy::Decision;
using policy::IpAddress;
using policy::Policy;
using Bytes = std::vector<std::byte>;

enum class Kind {
  kHttp,       // TCP, an HTTP/1.1 GET naming the target
  kTls,        // TCP, a ClientHello with the probe's name as SNI
  kTlsSplit,   // the same ClientHello in 4 TLS records, each in its own TCP segment
  kEch,        // a ClientHello with an encrypted_client_hello extension
  kKeepAlive,  // an allowed Host, then on the same connection a denied one
  kDnsUdp,
  kDnsTcp,
  kQuic,  // a QUIC Initial-shaped datagram
  kPing,  // ICMP echo through an unprivileged ping socket
  kRawV4,
  kRawV6,
  kPacket,
  kNftDeleteTable,
  kRouteAdd,
  kLinkDown,
};

struct ProbeDef {
  std::string_view id;
  Kind kind;
  std::string_view address = {};  // an IP literal (inet_aton forms too), or "host"
  uint16_t port = 0;
  std::string_view name = {};  // SNI, DNS question, or the denied second Host
  uint16_t qtype = wire::dns_type::kA;
};

constexpr std::string_view kHost = "host";
constexpr uint16_t kGatewayPort = sandbox::kTcpPort;

// Table order is report order.
constexpr ProbeDef kProbes[] = {
    {"ip-literal-v4", Kind::kHttp, "192.0.2.1", 80},
    {"ip-literal-v6", Kind::kHttp, "2001:db8::1", 80},
    {"metadata-v4", Kind::kHttp, "169.254.169.254", 80},
    {"metadata-v6", Kind::kHttp, "fd00:ec2::254", 80},
    {"metadata-v4-mapped", Kind::kHttp, "::ffff:169.254.169.254", 80},
    {"metadata-nat64", Kind::kHttp, "64:ff9b::a9fe:a9fe", 80},
    // inet_aton("2852039166") is 169.254.169.254: what curl and many libraries accept.
    {"metadata-decimal", Kind::kHttp, "2852039166", 80},
    {"metadata-azure", Kind::kHttp, "168.63.129.16", 80},
    {"zero-address", Kind::kHttp, "0.0.0.0", 80},
    {"loopback", Kind::kHttp, "127.0.0.1", 80},
    {"host-address", Kind::kHttp, kHost, 80},
    {"gateway-listener", Kind::kHttp, "127.0.0.1", kGatewayPort},
    {"sni-denied", Kind::kTls, "192.0.2.1", 443, kDeniedProbeName},
    {"sni-split", Kind::kTlsSplit, "192.0.2.1", 443, kDeniedProbeName},
    {"ech", Kind::kEch, "192.0.2.1", 443, kDeniedProbeName},
    {"keepalive-host-switch", Kind::kKeepAlive, "192.0.2.1", 80, kDeniedProbeName},
    {"dns-udp", Kind::kDnsUdp, "192.0.2.53", 53, kDeniedProbeName},
    {"dns-udp-v6", Kind::kDnsUdp, "2001:db8::53", 53, kDeniedProbeName, wire::dns_type::kAaaa},
    {"dns-tcp", Kind::kDnsTcp, "192.0.2.53", 53, kDeniedProbeName},
    {"dns-metadata", Kind::kDnsUdp, "192.0.2.53", 53, "metadata.google.internal"},
    {"dot", Kind::kTls, "192.0.2.53", 853, "dns.selftest.netfence.invalid"},
    {"udp-443", Kind::kQuic, "192.0.2.1", 443},
    {"icmp-echo", Kind::kPing, "192.0.2.1", 0},
    {"raw-socket-v4", Kind::kRawV4},
    {"raw-socket-v6", Kind::kRawV6},
    {"packet-socket", Kind::kPacket},
    {"nft-delete-table", Kind::kNftDeleteTable},
    {"route-add", Kind::kRouteAdd},
    {"link-down", Kind::kLinkDown},
};

const ProbeDef* find_probe(std::string_view id) {
  for (const ProbeDef& def : kProbes) {
    if (def.id == id) return &def;
  }
  return nullptr;
}

// ---- targets ----

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

std::string_view address_text(const ProbeDef& def, const ProbeContext& context) {
  return def.address == kHost ? std::string_view(context.host_address) : def.address;
}

// Parses as applications do: IPv6 with inet_pton, IPv4 with inet_aton (which also takes
// "2852039166", "0xa9fea9fe", "169.254.43518").
std::optional<SocketAddress> socket_address(std::string_view text, uint16_t port) {
  std::string s(text);
  SocketAddress out;
  if (s.find(':') != std::string::npos) {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(out.storage);
    if (::inet_pton(AF_INET6, s.c_str(), &sin6.sin6_addr) != 1) return std::nullopt;
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    out.length = sizeof sin6;
    return out;
  }
  auto& sin = reinterpret_cast<sockaddr_in&>(out.storage);
  if (s.empty() || ::inet_aton(s.c_str(), &sin.sin_addr) == 0) return std::nullopt;
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  out.length = sizeof sin;
  return out;
}

std::string endpoint_text(std::string_view address, uint16_t port) {
  if (address.find(':') != std::string_view::npos) return fmt::format("[{}]:{}", address, port);
  return fmt::format("{}:{}", address, port);
}

std::string target_text(const ProbeDef& def, const ProbeContext& context) {
  std::string endpoint = endpoint_text(address_text(def, context), def.port);
  switch (def.kind) {
    case Kind::kHttp:
      return def.address == kHost && context.host_address.empty() ? "this host's address"
                                                                  : endpoint;
    case Kind::kTls:
    case Kind::kTlsSplit:
      return fmt::format("{} SNI {}", endpoint, def.name);
    case Kind::kEch:
      return fmt::format(
          "{} ECH, outer SNI {}", endpoint,
          context.allowed_host.empty() ? std::string(def.name) : context.allowed_host);
    case Kind::kKeepAlive:
      return fmt::format("{} Host {}, then {}", endpoint,
                         context.allowed_host.empty() ? "<allowed>" : context.allowed_host,
                         def.name);
    case Kind::kDnsUdp:
    case Kind::kDnsTcp:
      return fmt::format("{}/{} {} {}", endpoint, def.kind == Kind::kDnsUdp ? "udp" : "tcp",
                         def.qtype == wire::dns_type::kAaaa ? "AAAA" : "A", def.name);
    case Kind::kQuic:
      return fmt::format("{}/udp (QUIC Initial)", endpoint);
    case Kind::kPing:
      return fmt::format("ICMP echo to {}", def.address);
    case Kind::kRawV4:
      return "socket(AF_INET, SOCK_RAW)";
    case Kind::kRawV6:
      return "socket(AF_INET6, SOCK_RAW)";
    case Kind::kPacket:
      return "socket(AF_PACKET, SOCK_RAW)";
    case Kind::kNftDeleteTable:
      return "NFT_MSG_DELTABLE inet netfence";
    case Kind::kRouteAdd:
      return "RTM_NEWROUTE 192.0.2.255/32";
    case Kind::kLinkDown:
      return fmt::format("RTM_SETLINK {} down", sandbox::kLinkName);
  }
  return endpoint;
}

// The Host header an HTTP probe sends: the target as a browser writes it.
std::string host_header(const ProbeDef& def, const ProbeContext& context) {
  std::string endpoint = endpoint_text(address_text(def, context), def.port);
  if (def.port == 80) endpoint.resize(endpoint.rfind(':'));
  return endpoint;
}

// ---- planning ----

std::string deny_text(const Decision& d) {
  return fmt::format("deny ({})", policy::to_string(d.reason));
}

std::string sinkhole_text(policy::BlockedAnswer answer, uint16_t qtype) {
  switch (answer) {
    case policy::BlockedAnswer::kNull:
      return qtype == wire::dns_type::kAaaa ? "AAAA :: (sinkhole)" : "A 0.0.0.0 (sinkhole)";
    case policy::BlockedAnswer::kNxdomain:
      return "NXDOMAIN (sinkhole)";
    case policy::BlockedAnswer::kRefused:
      return "REFUSED (sinkhole)";
  }
  return "sinkhole";
}

PlannedProbe plan_one(const ProbeDef& def, const Policy& policy, const ProbeContext& context) {
  PlannedProbe out{std::string(def.id), target_text(def, context), "", ""};
  std::optional<IpAddress> ip;
  if (!def.address.empty()) {
    if (auto sa = socket_address(address_text(def, context), def.port)) {
      ip = IpAddress::from_sockaddr(sa->get());
    }
    if (!ip) {
      out.skip = def.address == kHost ? "no address of this host was found"
                                      : "the target is not an address";
      return out;
    }
  }
  auto skip_allowed = [&](std::string_view what) {
    out.skip = fmt::format("the policy allows {}", what);
  };
  std::string endpoint = endpoint_text(address_text(def, context), def.port);
  switch (def.kind) {
    case Kind::kHttp: {
      if (def.port == kGatewayPort) {
        // Not a policy question: a connection the sandbox makes to the gateway's own listener
        // (not redirected) is never a destination.
        out.expected = policy.disabled() ? "deny (disabled)" : "deny (not_redirected)";
        return out;
      }
      Decision d = policy.judge_address(*ip, def.port);
      if (d.allowed()) {
        skip_allowed(endpoint);
        return out;
      }
      out.expected = deny_text(d);
      if (!policy.disabled() &&
          (d.reason == policy::Reason::kNoMatch || d.reason == policy::Reason::kWrongPort)) {
        // The gateway reads the request and judges its Host, which is the IP literal itself.
        Decision nd = policy.judge_name(host_header(def, context), def.port);
        if (!nd.allowed()) out.expected = deny_text(nd);
      }
      return out;
    }
    case Kind::kTls:
    case Kind::kTlsSplit:
    case Kind::kEch: {
      Decision d = policy.judge_address(*ip, def.port);
      if (d.allowed()) {
        skip_allowed(endpoint);
        return out;
      }
      if (policy.disabled() || d.reason == policy::Reason::kDenyRule ||
          d.reason == policy::Reason::kAlwaysDeny) {
        out.expected = deny_text(d);
        return out;
      }
      if (def.kind == Kind::kEch) {
        // The outer SNI of an ECH hello is only a public name: denied even when it is allowed.
        if (context.allowed_host.empty() && policy.judge_name(def.name, def.port).allowed()) {
          skip_allowed(fmt::format("{}:{}", def.name, def.port));
        } else {
          out.expected = "deny (ech)";
        }
        return out;
      }
      Decision nd = policy.judge_name(def.name, def.port);
      if (nd.allowed()) {
        skip_allowed(fmt::format("{}:{}", def.name, def.port));
      } else {
        out.expected = deny_text(nd);
      }
      return out;
    }
    case Kind::kKeepAlive: {
      Decision d = policy.judge_address(*ip, def.port);
      if (d.allowed()) {
        skip_allowed(endpoint);
      } else if (context.allowed_host.empty()) {
        out.skip = "needs --allowed-host NAME (its first request goes to that host)";
      } else if (!policy.judge_name(context.allowed_host, def.port).allowed()) {
        out.skip = fmt::format("the policy does not allow --allowed-host {}:{}",
                               context.allowed_host, def.port);
      } else if (d.reason == policy::Reason::kDenyRule || d.reason == policy::Reason::kAlwaysDeny) {
        out.skip = fmt::format("the policy denies {} outright: no first request", endpoint);
      } else {
        out.expected = "deny 2nd request (host_switch)";
      }
      return out;
    }
    case Kind::kDnsUdp:
    case Kind::kDnsTcp: {
      if (policy.disabled()) {
        out.expected = "deny (disabled)";
        return out;
      }
      // Port-53 traffic to any address is netfence's DNS; the name decides.
      if (policy.judge_name(def.name, 0).allowed()) {
        out.skip = fmt::format("the policy allows {} (the query would be forwarded)", def.name);
      } else {
        out.expected = sinkhole_text(context.dns_answer, def.qtype);
      }
      return out;
    }
    case Kind::kQuic: {
      Decision d = policy.judge_address(*ip, def.port);
      if (d.allowed()) {
        skip_allowed(endpoint + "/udp");
      } else {
        out.expected = deny_text(d);
      }
      return out;
    }
    case Kind::kPing:
      out.expected = "no echo reply (ICMP is not forwarded)";
      return out;
    case Kind::kRawV4:
    case Kind::kRawV6:
    case Kind::kPacket:
    case Kind::kNftDeleteTable:
    case Kind::kRouteAdd:
    case Kind::kLinkDown:
      out.expected = "EPERM";
      return out;
  }
  return out;
}

// ---- observing ----

std::string errno_text(int error) {
  const char* name = ::strerrorname_np(error);
  return fmt::format("{} ({})", name != nullptr ? name : std::to_string(error),
                     std::strerror(error));
}

ProbeOutcome ok(std::string observed) {
  return {std::move(observed), ProbeStatus::kOk};
}
ProbeOutcome got_through(std::string observed) {
  return {std::move(observed), ProbeStatus::kGotThrough};
}
ProbeOutcome inconclusive(std::string observed) {
  return {std::move(observed), ProbeStatus::kInconclusive};
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Waits for `events` on `fd` until the deadline: true when ready.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

struct Connected {
  UniqueFd fd;
  int error = 0;  // ETIMEDOUT when the deadline passed
};

Connected connect_to(const SocketAddress& to, int type, Clock::time_point deadline) {
  Connected out;
  out.fd = UniqueFd(::socket(to.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!out.fd) {
    out.error = errno;
    return out;
  }
  if (::connect(out.fd.get(), to.get(), to.length) == 0) return out;
  if (errno != EINPROGRESS) {
    out.error = errno;
    return out;
  }
  if (!wait_for(out.fd.get(), POLLOUT, deadline)) {
    out.error = ETIMEDOUT;
    return out;
  }
  int error = 0;
  socklen_t length = sizeof error;
  ::getsockopt(out.fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
  out.error = error;
  return out;
}

// 0, or the errno of the failed send (ETIMEDOUT when the deadline passed).
int send_all(int fd, const void* data, size_t size, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLOUT, deadline)) return ETIMEDOUT;
      continue;
    }
    return n < 0 ? errno : EPIPE;
  }
  return 0;
}

struct Received {
  enum class End { kEof, kReset, kTimeout, kError, kDone };
  std::string data;
  End end = End::kTimeout;
  int error = 0;
};

// Reads until EOF, an error, the deadline, `cap` bytes, or `done(data)`.
Received receive(int fd, Clock::time_point deadline, size_t cap,
                 const std::function<bool(const std::string&)>& done = nullptr) {
  Received r;
  char buffer[4096];
  while (r.data.size() < cap) {
    if (done && done(r.data)) {
      r.end = Received::End::kDone;
      return r;
    }
    if (!wait_for(fd, POLLIN, deadline)) {
      r.end = Received::End::kTimeout;
      return r;
    }
    ssize_t n = ::recv(fd, buffer, std::min(sizeof buffer, cap - r.data.size()), 0);
    if (n > 0) {
      r.data.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      r.end = Received::End::kEof;
      return r;
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    r.error = errno;
    r.end = errno == ECONNRESET ? Received::End::kReset : Received::End::kError;
    return r;
  }
  r.end = Received::End::kDone;
  return r;
}

std::string printable(std::string_view bytes, size_t max) {
  std::string out;
  for (char ch : bytes.substr(0, max)) {
    auto u = static_cast<unsigned char>(ch);
    if (ch == '\r' || ch == '\n') break;
    out += u >= 0x20 && u < 0x7f ? ch : '.';
  }
  return out;
}

std::string hex(std::string_view bytes, size_t max) {
  std::string out;
  for (char ch : bytes.substr(0, max)) out += fmt::format("{:02x}", static_cast<unsigned char>(ch));
  return out;
}

constexpr std::string_view kAccessDeniedAlert("\x15\x03\x03\x00\x02\x02\x31", 7);

// The value of an HTTP header in a response head (case-insensitive name), or "".
std::string header_value(std::string_view head, std::string_view name) {
  size_t end = head.find("\r\n\r\n");
  if (end != std::string_view::npos) head = head.substr(0, end + 2);
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    size_t start = pos + 2;
    size_t line_end = head.find("\r\n", start);
    if (line_end == std::string_view::npos) break;
    std::string_view line = head.substr(start, line_end - start);
    size_t colon = line.find(':');
    if (colon == name.size() &&
        std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
      }
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
      }
      return std::string(value);
    }
    pos = line_end;
  }
  return "";
}

bool is_netfence_403(std::string_view data) {
  return data.starts_with("HTTP/1.1 403 ") && !header_value(data, "X-Netfence-Reason").empty();
}

std::string describe_bytes(std::string_view data) {
  if (data.starts_with("HTTP/")) {
    std::string reason = header_value(data, "X-Netfence-Reason");
    return fmt::format("got {} bytes: '{}'{}", data.size(), printable(data, 40),
                       reason.empty() ? "" : fmt::format(" (X-Netfence-Reason: {})", reason));
  }
  if (data.size() >= 6 && data[0] == 0x16 && data[5] == 0x02) {
    return fmt::format("got {} bytes: a TLS ServerHello", data.size());
  }
  if (data.size() >= 7 && data[0] == 0x15) {
    return fmt::format("got {} bytes: TLS alert {} (not netfence's)", data.size(),
                       static_cast<unsigned char>(data[6]));
  }
  return fmt::format("got {} bytes: {}", data.size(), hex(data, 16));
}

std::string describe_silence(const Received& r, std::chrono::milliseconds timeout) {
  switch (r.end) {
    case Received::End::kEof:
      return "closed without a byte";
    case Received::End::kReset:
      return "connection reset";
    case Received::End::kTimeout:
      return fmt::format("no answer within {} ms", timeout.count());
    case Received::End::kError:
      return "recv: " + errno_text(r.error);
    case Received::End::kDone:
      break;
  }
  return "no answer";
}

// A TCP reply to a probe that netfence must refuse.
ProbeOutcome judge_tcp_reply(const Received& r, std::chrono::milliseconds timeout) {
  if (r.data.empty()) return ok(describe_silence(r, timeout));
  if (r.data == kAccessDeniedAlert) return ok("TLS alert 49 (access_denied)");
  if (is_netfence_403(r.data)) {
    return ok(
        fmt::format("HTTP 403, X-Netfence-Reason: {}", header_value(r.data, "X-Netfence-Reason")));
  }
  return got_through(describe_bytes(r.data));
}

// Connects for a TCP probe; the outcome when that already decides it.
std::optional<ProbeOutcome> connect_failed(const Connected& c) {
  if (c.error == 0) return std::nullopt;
  // A reset that arrives before the probe looks is still a reset (the gateway refuses a denied
  // address as soon as it accepts, so the handshake completes and the RST follows at once).
  if (c.error == ECONNRESET) return ok("connection reset");
  return ok("connect: " + errno_text(c.error));
}

// A failed send of a probe's request. The gateway's RST can beat the request, and then the
// send, not the receive, is what reports it: the same reset, so the same words.
std::string describe_send_error(int error) {
  if (error == ECONNRESET) return "connection reset";
  return "send: " + errno_text(error);
}

// ---- TCP probes ----

ProbeOutcome probe_http(const SocketAddress& to, std::string_view host,
                        const ProbeContext& context) {
  auto deadline = Clock::now() + context.timeout;
  Connected c = connect_to(to, SOCK_STREAM, deadline);
  if (auto failed = connect_failed(c)) return *failed;
  std::string request = fmt::format(
      "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: netfence-selftest\r\nConnection: close\r\n\r\n",
      host);
  if (int error = send_all(c.fd.get(), request.data(), request.size(), deadline)) {
    return ok(describe_send_error(error));
  }
  return judge_tcp_reply(receive(c.fd.get(), deadline, 16384), context.timeout);
}

ProbeOutcome probe_tls(const SocketAddress& to, const HelloSpec& spec, size_t records,
                       const ProbeContext& context) {
  auto deadline = Clock::now() + context.timeout;
  Connected c = connect_to(to, SOCK_STREAM, deadline);
  if (auto failed = connect_failed(c)) return *failed;
  int one = 1;
  ::setsockopt(c.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto parts = client_hello_records(client_hello_message(spec), records);
  for (size_t i = 0; i < parts.size(); ++i) {
    // A gap between the records puts each in its own segment (with TCP_NODELAY).
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (int error = send_all(c.fd.get(), parts[i].data(), parts[i].size(), deadline)) {
      return ok(
          fmt::format("{} (at record {}/{})", describe_send_error(error), i + 1, parts.size()));
    }
  }
  return judge_tcp_reply(receive(c.fd.get(), deadline, 16384), context.timeout);
}

struct HttpResponse {
  bool complete = false;
  int status = 0;
  size_t size = 0;  // bytes of the whole response
  std::string connection;
};

// Where the first HTTP/1.1 response in `data` ends (Content-Length or chunked bodies; no body
// for 1xx/204/304). complete is false while more bytes are needed or the length is unknown.
HttpResponse first_response(std::string_view data) {
  HttpResponse r;
  size_t head_end = data.find("\r\n\r\n");
  if (head_end == std::string_view::npos || !data.starts_with("HTTP/1.")) return r;
  std::string_view head = data.substr(0, head_end + 4);
  if (head.size() > 12) {
    std::string_view code = head.substr(9, 3);
    for (char ch : code) {
      if (ch < '0' || ch > '9') return r;
      r.status = r.status * 10 + (ch - '0');
    }
  }
  r.connection = header_value(head, "Connection");
  size_t body = head_end + 4;
  if (r.status / 100 == 1 || r.status == 204 || r.status == 304) {
    r.complete = true;
    r.size = body;
    return r;
  }
  std::string length = header_value(head, "Content-Length");
  if (!length.empty()) {
    size_t n = 0;
    for (char ch : length) {
      if (ch < '0' || ch > '9' || n > (1u << 24)) return r;
      n = n * 10 + static_cast<size_t>(ch - '0');
    }
    if (data.size() >= body + n) {
      r.complete = true;
      r.size = body + n;
    }
    return r;
  }
  if (header_value(head, "Transfer-Encoding").find("chunked") != std::string::npos) {
    size_t pos = body;
    while (true) {
      size_t line_end = data.find("\r\n", pos);
      if (line_end == std::string_view::npos) return r;
      size_t n = 0;
      for (char ch : data.substr(pos, line_end - pos)) {
        int v = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (v < 0) break;  // chunk extensions
        if (n > (1u << 24)) return r;
        n = n * 16 + static_cast<size_t>(v);
      }
      pos = line_end + 2;
      if (n == 0) {
        size_t trailer_end = data.find("\r\n", pos);
        while (trailer_end != std::string_view::npos && trailer_end != pos) {
          pos = trailer_end + 2;
          trailer_end = data.find("\r\n", pos);
        }
        if (trailer_end == std::string_view::npos) return r;
        r.complete = true;
        r.size = trailer_end + 2;
        return r;
      }
      if (data.size() < pos + n + 2) return r;
      pos += n + 2;
    }
  }
  return r;  // delimited by close: the connection cannot carry a second request
}

ProbeOutcome probe_keepalive(const SocketAddress& to, std::string_view denied,
                             const ProbeContext& context) {
  // The first request is dialed by its Host, which may take a resolution and a connect.
  auto deadline = Clock::now() + 3 * context.timeout;
  Connected c = connect_to(to, SOCK_STREAM, deadline);
  if (auto failed = connect_failed(c)) return *failed;
  std::string first = fmt::format(
      "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: netfence-selftest\r\n\r\n", context.allowed_host);
  if (int error = send_all(c.fd.get(), first.data(), first.size(), deadline)) {
    return inconclusive("first request: send: " + errno_text(error));
  }
  Received r1 = receive(c.fd.get(), deadline, 1 << 20,
                        [](const std::string& d) { return first_response(d).complete; });
  if (r1.data.empty()) {
    return inconclusive("first request: " + describe_silence(r1, 3 * context.timeout));
  }
  if (is_netfence_403(r1.data) || !header_value(r1.data, "X-Netfence-Reason").empty()) {
    return inconclusive(fmt::format(
        "first request refused by netfence ({}): nothing to switch from", printable(r1.data, 40)));
  }
  HttpResponse response = first_response(r1.data);
  if (!response.complete) {
    return inconclusive(fmt::format("first response ('{}') has no length the probe can follow",
                                    printable(r1.data, 40)));
  }
  std::string connection = response.connection;
  std::transform(connection.begin(), connection.end(), connection.begin(), ::tolower);
  if (connection.find("close") != std::string::npos) {
    return inconclusive("the server closes after the first response (Connection: close)");
  }
  std::string answered = fmt::format("1st answered (HTTP {}), 2nd: ", response.status);
  std::string extra = r1.data.substr(response.size);
  deadline = Clock::now() + context.timeout;
  std::string second = fmt::format(
      "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: netfence-selftest\r\nConnection: close\r\n\r\n",
      denied);
  if (int error = send_all(c.fd.get(), second.data(), second.size(), deadline)) {
    return ok(answered + describe_send_error(error));
  }
  Received r2 = receive(c.fd.get(), deadline, 16384);
  r2.data = extra + r2.data;
  ProbeOutcome outcome = judge_tcp_reply(r2, context.timeout);
  outcome.observed = answered + outcome.observed;
  return outcome;
}

// ---- DNS ----

Bytes dns_query(std::string_view name, uint16_t qtype, uint16_t id) {
  wire::DnsMessage m;
  m.header.id = id;
  m.header.rd = true;
  wire::DnsQuestion q;
  q.name.wire = wire::dns_name_wire(name).value_or(Bytes{});
  q.name.text = std::string(name);
  q.type = qtype;
  m.questions.push_back(std::move(q));
  auto encoded = wire::encode_dns_message(m);
  return encoded ? std::move(encoded.value()) : Bytes{};
}

std::string rcode_text(uint16_t rcode) {
  switch (rcode) {
    case wire::dns_rcode::kNoError:
      return "NOERROR";
    case wire::dns_rcode::kServFail:
      return "SERVFAIL";
    case wire::dns_rcode::kNxDomain:
      return "NXDOMAIN";
    case wire::dns_rcode::kRefused:
      return "REFUSED";
    default:
      return fmt::format("RCODE {}", rcode);
  }
}

ProbeOutcome judge_dns_reply(std::string_view reply, uint16_t id, const ProbeContext& context) {
  auto parsed = wire::parse_dns_message(as_bytes(reply));
  if (!parsed) return got_through(fmt::format("an unparsable {}-byte reply", reply.size()));
  const wire::DnsMessage& m = *parsed;
  if (!m.header.qr || m.header.id != id) {
    return got_through(
        fmt::format("a {}-byte message that is not this query's answer", reply.size()));
  }
  uint16_t rcode = wire::dns_full_rcode(m);
  std::string text = rcode_text(rcode);
  bool all_unspecified = !m.answers.empty();
  for (const wire::DnsRecord& record : m.answers) {
    auto address = wire::dns_record_address(record);
    if (!address) {
      text += fmt::format(" type-{} record", record.type);
      all_unspecified = false;
      continue;
    }
    bool v4 = address->type == wire::dns_type::kA;
    auto ip = v4 ? IpAddress::v4(
                       {address->bytes[0], address->bytes[1], address->bytes[2], address->bytes[3]})
                 : IpAddress::v6(address->bytes);
    text += fmt::format(" {} {}", v4 ? "A" : "AAAA", ip.to_string());
    if (std::any_of(address->bytes.begin(), address->bytes.end(), [](uint8_t b) { return b; })) {
      all_unspecified = false;
    }
  }
  if (m.answers.empty() && rcode == wire::dns_rcode::kNoError) text += ", no answer";
  bool sinkhole = false;
  switch (context.dns_answer) {
    case policy::BlockedAnswer::kNull:
      sinkhole = rcode == wire::dns_rcode::kNoError && all_unspecified;
      break;
    case policy::BlockedAnswer::kNxdomain:
      sinkhole = rcode == wire::dns_rcode::kNxDomain && m.answers.empty();
      break;
    case policy::BlockedAnswer::kRefused:
      sinkhole = rcode == wire::dns_rcode::kRefused && m.answers.empty();
      break;
  }
  if (sinkhole) return ok(text + " (sinkhole)");
  return got_through(text + ": not the sinkhole's answer");
}

uint16_t random_id() {
  uint16_t id = 0;
  if (::getrandom(&id, sizeof id, 0) != sizeof id) id = static_cast<uint16_t>(::getpid());
  return id;
}

// Sends `datagram` on a connected UDP socket and waits (until `deadline`) for one back. Either
// the reply, or what happened instead: the send or receive error, or (failure empty) silence.
struct DatagramReply {
  std::optional<std::string> reply;
  std::string failure;
};
DatagramReply exchange_datagram(int fd, const Bytes& datagram, Clock::time_point deadline) {
  if (::send(fd, datagram.data(), datagram.size(), MSG_NOSIGNAL) < 0) {
    return {std::nullopt, "send: " + errno_text(errno)};
  }
  char reply[4096];
  while (wait_for(fd, POLLIN, deadline)) {
    ssize_t n = ::recv(fd, reply, sizeof reply, 0);
    if (n >= 0) return {std::string(reply, static_cast<size_t>(n)), ""};
    if (errno == EINTR || errno == EAGAIN) continue;
    if (errno == ECONNREFUSED) return {std::nullopt, "ICMP port unreachable (ECONNREFUSED)"};
    return {std::nullopt, "recv: " + errno_text(errno)};
  }
  return {};
}

ProbeOutcome probe_dns_udp(const SocketAddress& to, const ProbeDef& def,
                           const ProbeContext& context) {
  auto deadline = Clock::now() + context.timeout;
  uint16_t id = random_id();
  Bytes query = dns_query(def.name, def.qtype, id);
  Connected c = connect_to(to, SOCK_DGRAM, deadline);
  if (auto failed = connect_failed(c)) return *failed;
  DatagramReply r = exchange_datagram(c.fd.get(), query, deadline);
  if (r.reply) return judge_dns_reply(*r.reply, id, context);
  if (!r.failure.empty()) return ok(r.failure);
  return ok(fmt::format("no answer within {} ms", context.timeout.count()));
}

ProbeOutcome probe_dns_tcp(const SocketAddress& to, const ProbeDef& def,
                           const ProbeContext& context) {
  auto deadline = Clock::now() + context.timeout;
  uint16_t id = random_id();
  Bytes query = dns_query(def.name, def.qtype, id);
  Connected c = connect_to(to, SOCK_STREAM, deadline);
  if (auto failed = connect_failed(c)) return *failed;
  auto framed = wire::frame_dns_tcp(query);
  if (!framed) return inconclusive("cannot frame the query: " + framed.error().message);
  if (int error = send_all(c.fd.get(), framed->data(), framed->size(), deadline)) {
    return ok(describe_send_error(error));
  }
  Received r = receive(c.fd.get(), deadline, 65537, [](const std::string& d) {
    return wire::read_dns_tcp_frame(as_bytes(d)).state != wire::ParseState::kNeedMore;
  });
  if (r.data.empty()) return ok(describe_silence(r, context.timeout));
  wire::DnsTcpFrame frame = wire::read_dns_tcp_frame(as_bytes(r.data));
  if (r.end != Received::End::kDone || frame.state != wire::ParseState::kDone) {
    return got_through(
        fmt::format("got {} bytes that are not one whole DNS message", r.data.size()));
  }
  return judge_dns_reply(as_chars(frame.message), id, context);
}

// ---- UDP, ICMP ----

ProbeOutcome probe_quic(const SocketAddress& to, const ProbeContext& context) {
  auto deadline = Clock::now() + context.timeout;
  // A QUIC v1 Initial's shape: long header, version 1, 8-byte DCID, no SCID, no token, a
  // length, and padding to the 1200 bytes a client must send.
  Bytes datagram = {std::byte{0xc3}, std::byte{0}, std::byte{0},
                    std::byte{0},    std::byte{1}, std::byte{8}};
  for (int i = 0; i < 8; ++i) datagram.push_back(static_cast<std::byte>(0x51 + i));
  datagram.push_back(std::byte{0});  // SCID length
  datagram.push_back(std::byte{0});  // token length
  size_t rest = 1200 - datagram.size() - 2;
  datagram.push_back(static_cast<std::byte>(0x40 | (rest >> 8)));
  datagram.push_back(static_cast<std::byte>(rest & 0xff));
  datagram.resize(1200, std::byte{0});
  Connected c = connect_to(to, SOCK_DGRAM, deadline);
  if (auto failed = connect_failed(c)) return *failed;
  DatagramReply r = exchange_datagram(c.fd.get(), datagram, deadline);
  if (r.reply) return got_through(fmt::format("got a {}-byte datagram back", r.reply->size()));
  if (!r.failure.empty()) return ok(r.failure);
  return ok(fmt::format("no answer within {} ms", context.timeout.count()));
}

ProbeOutcome probe_ping(const SocketAddress& to, const ProbeContext& context) {
  auto deadline = Clock::now() + context.timeout;
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP));
  if (!fd) return ok("socket(ICMP ping): " + errno_text(errno));
  if (::connect(fd.get(), to.get(), to.length) != 0) return ok("connect: " + errno_text(errno));
  icmphdr echo{};
  echo.type = ICMP_ECHO;
  echo.un.echo.sequence = htons(1);
  if (::send(fd.get(), &echo, sizeof echo, MSG_NOSIGNAL) < 0) {
    return ok("send: " + errno_text(errno));
  }
  char reply[512];
  while (wait_for(fd.get(), POLLIN, deadline)) {
    ssize_t n = ::recv(fd.get(), reply, sizeof reply, 0);
    if (n >= 0) return got_through("an echo reply came back");
    if (errno == EINTR || errno == EAGAIN) continue;
    return ok("recv: " + errno_text(errno));
  }
  return ok(fmt::format("no echo reply within {} ms", context.timeout.count()));
}

ProbeOutcome probe_socket(int family, int type, int protocol, std::string_view what) {
  UniqueFd fd(::socket(family, type | SOCK_CLOEXEC, protocol));
  if (!fd) return ok("socket: " + errno_text(errno));
  return got_through(fmt::format("{} opened (closed unused)", what));
}

// ---- netlink ----

void put_bytes(Bytes& out, const void* data, size_t size) {
  const auto* p = static_cast<const std::byte*>(data);
  out.insert(out.end(), p, p + size);
}

void align4(Bytes& out) {
  while (out.size() % 4 != 0) out.push_back(std::byte{0});
}

void put_attr(Bytes& out, uint16_t type, const void* data, size_t size) {
  nlattr attr{static_cast<uint16_t>(NLA_HDRLEN + size), type};
  put_bytes(out, &attr, sizeof attr);
  put_bytes(out, data, size);
  align4(out);
}

// Appends a netlink message: header, the fixed part, then whatever `attrs` appends.
template <class Fixed>
void put_message(Bytes& out, uint16_t type, uint16_t flags, uint32_t seq, const Fixed& fixed,
                 const std::function<void(Bytes&)>& attrs = nullptr) {
  size_t start = out.size();
  nlmsghdr header{};
  header.nlmsg_type = type;
  header.nlmsg_flags = flags;
  header.nlmsg_seq = seq;
  put_bytes(out, &header, sizeof header);
  put_bytes(out, &fixed, sizeof fixed);
  align4(out);
  if (attrs) attrs(out);
  auto length = static_cast<uint32_t>(out.size() - start);
  std::memcpy(out.data() + start, &length, sizeof length);
}

struct NetlinkAck {
  int socket_error = 0;       // socket()/send() failed with this
  std::optional<int> result;  // the first acknowledgement's error (0: success); nullopt: none
};

NetlinkAck netlink_request(int protocol, const Bytes& message, Clock::time_point deadline) {
  NetlinkAck out;
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
  if (!fd) {
    out.socket_error = errno;
    return out;
  }
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), message.data(), message.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    out.socket_error = errno;
    return out;
  }
  char buffer[8192];
  while (wait_for(fd.get(), POLLIN, deadline)) {
    ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      out.socket_error = errno;
      return out;
    }
    // Walk the messages (NLMSG_OK/NLMSG_NEXT without their C casts).
    size_t offset = 0;
    auto size = static_cast<size_t>(n);
    while (offset + sizeof(nlmsghdr) <= size) {
      nlmsghdr h;
      std::memcpy(&h, buffer + offset, sizeof h);
      if (h.nlmsg_len < sizeof h || offset + h.nlmsg_len > size) break;
      if (h.nlmsg_type == NLMSG_ERROR && h.nlmsg_len >= NLMSG_HDRLEN + sizeof(nlmsgerr)) {
        nlmsgerr e;
        std::memcpy(&e, buffer + offset + NLMSG_HDRLEN, sizeof e);
        out.result = -e.error;
        return out;
      }
      offset += (h.nlmsg_len + NLMSG_ALIGNTO - 1) & ~static_cast<size_t>(NLMSG_ALIGNTO - 1);
    }
  }
  return out;
}

ProbeOutcome judge_netlink(const NetlinkAck& ack, std::string_view accepted,
                           const ProbeContext& context) {
  if (ack.socket_error != 0) return ok("netlink: " + errno_text(ack.socket_error));
  if (!ack.result) {
    return inconclusive(fmt::format("no acknowledgement within {} ms", context.timeout.count()));
  }
  if (*ack.result == EPERM || *ack.result == EACCES) return ok(errno_text(*ack.result));
  if (*ack.result == 0) return got_through(std::string(accepted));
  return got_through(fmt::format("not refused for lack of privilege: {}", errno_text(*ack.result)));
}

ProbeOutcome probe_nft_delete_table(const ProbeContext& context) {
  // One nf_tables batch, as nft sends it: BEGIN, DELTABLE inet netfence (acknowledged), END.
  Bytes message;
  nfgenmsg batch{AF_UNSPEC, NFNETLINK_V0, htons(NFNL_SUBSYS_NFTABLES)};
  put_message(message, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, batch);
  nfgenmsg table{NFPROTO_INET, NFNETLINK_V0, 0};
  put_message(message, static_cast<uint16_t>(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_DELTABLE),
              NLM_F_REQUEST | NLM_F_ACK, 2, table,
              [](Bytes& out) { put_attr(out, NFTA_TABLE_NAME, "netfence", sizeof "netfence"); });
  put_message(message, NFNL_MSG_BATCH_END, NLM_F_REQUEST, 3, batch);
  auto ack = netlink_request(NETLINK_NETFILTER, message, Clock::now() + context.timeout);
  return judge_netlink(ack, "the table was deleted", context);
}

Bytes blackhole_route(uint16_t type, uint16_t flags) {
  rtmsg route{};
  route.rtm_family = AF_INET;
  route.rtm_dst_len = 32;
  route.rtm_table = RT_TABLE_MAIN;
  route.rtm_protocol = RTPROT_STATIC;
  route.rtm_scope = RT_SCOPE_UNIVERSE;
  route.rtm_type = RTN_BLACKHOLE;
  in_addr dst{};
  ::inet_pton(AF_INET, "192.0.2.255", &dst);
  Bytes message;
  put_message(message, type, flags, 1, route,
              [&](Bytes& out) { put_attr(out, RTA_DST, &dst, sizeof dst); });
  return message;
}

ProbeOutcome probe_route_add(const ProbeContext& context) {
  auto ack = netlink_request(
      NETLINK_ROUTE,
      blackhole_route(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL),
      Clock::now() + context.timeout);
  if (ack.result && *ack.result == 0) {
    // It worked: take the route away again (harmless either way: a documentation address).
    (void)netlink_request(NETLINK_ROUTE, blackhole_route(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK),
                          Clock::now() + context.timeout);
  }
  return judge_netlink(ack, "the route was added (and removed again)", context);
}

Bytes set_link(bool up) {
  ifinfomsg link{};
  link.ifi_family = AF_UNSPEC;
  link.ifi_change = IFF_UP;
  link.ifi_flags = up ? IFF_UP : 0;
  Bytes message;
  put_message(message, RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, link, [](Bytes& out) {
    put_attr(out, IFLA_IFNAME, sandbox::kLinkName, sizeof sandbox::kLinkName);
  });
  return message;
}

ProbeOutcome probe_link_down(const ProbeContext& context) {
  auto ack = netlink_request(NETLINK_ROUTE, set_link(false), Clock::now() + context.timeout);
  if (ack.result && *ack.result == 0) {
    (void)netlink_request(NETLINK_ROUTE, set_link(true), Clock::now() + context.timeout);
  }
  return judge_netlink(
      ack, fmt::format("{} went down (and was brought up again)", sandbox::kLinkName), context);
}

}  // namespace

std::string_view to_string(ProbeStatus status) {
  switch (status) {
    case ProbeStatus::kOk:
      return "ok";
    case ProbeStatus::kGotThrough:
      return "got_through";
    case ProbeStatus::kInconclusive:
      return "inconclusive";
  }
  return "inconclusive";
}

std::optional<ProbeStatus> parse_probe_status(std::string_view text) {
  for (ProbeStatus s : {ProbeStatus::kOk, ProbeStatus::kGotThrough, ProbeStatus::kInconclusive}) {
    if (to_string(s) == text) return s;
  }
  return std::nullopt;
}

std::vector<PlannedProbe> plan_probes(const Policy& policy, const ProbeContext& context) {
  std::vector<PlannedProbe> out;
  for (const ProbeDef& def : kProbes) out.push_back(plan_one(def, policy, context));
  return out;
}

std::vector<std::string_view> probe_ids() {
  std::vector<std::string_view> out;
  for (const ProbeDef& def : kProbes) out.push_back(def.id);
  return out;
}

std::optional<ProbeOutcome> run_probe(std::string_view id, const ProbeContext& context) {
  const ProbeDef* def = find_probe(id);
  if (def == nullptr) return std::nullopt;
  std::optional<SocketAddress> to;
  if (!def->address.empty()) {
    to = socket_address(address_text(*def, context), def->port);
    if (!to) return inconclusive("no target address");
  }
  switch (def->kind) {
    case Kind::kHttp:
      return probe_http(*to, host_header(*def, context), context);
    case Kind::kTls:
      return probe_tls(*to, HelloSpec{std::string(def->name), false}, 1, context);
    case Kind::kTlsSplit:
      return probe_tls(*to, HelloSpec{std::string(def->name), false}, 4, context);
    case Kind::kEch:
      return probe_tls(
          *to,
          HelloSpec{context.allowed_host.empty() ? std::string(def->name) : context.allowed_host,
                    true},
          1, context);
    case Kind::kKeepAlive:
      if (context.allowed_host.empty()) return inconclusive("needs --allowed-host");
      return probe_keepalive(*to, def->name, context);
    case Kind::kDnsUdp:
      return probe_dns_udp(*to, *def, context);
    case Kind::kDnsTcp:
      return probe_dns_tcp(*to, *def, context);
    case Kind::kQuic:
      return probe_quic(*to, context);
    case Kind::kPing:
      return probe_ping(*to, context);
    case Kind::kRawV4:
      return probe_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP, "a raw IPv4 socket");
    case Kind::kRawV6:
      return probe_socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, "a raw IPv6 socket");
    case Kind::kPacket:
      return probe_socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), "a packet socket");
    case Kind::kNftDeleteTable:
      return probe_nft_delete_table(context);
    case Kind::kRouteAdd:
      return probe_route_add(context);
    case Kind::kLinkDown:
      return probe_link_down(context);
  }
  return std::nullopt;
}

}  // namespace netfence::cli
