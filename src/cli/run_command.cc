#include "cli/run_command.h"

#include <ifaddrs.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "dns/learned.h"
#include "dns/resolver.h"
#include "dns/server.h"
#include "fmt/format.h"
#include "gateway/gateway.h"
#include "gateway/udp_relay.h"
#include "sandbox/conntrack.h"
#include "sandbox/original_destination.h"
#include "sandbox/sandbox.h"
#include "sandbox/signal_forwarder.h"

namespace netfence::cli {

namespace {

constexpr int kExitSetup = sandbox::kExitSetupFailed;

Result<gateway::Destination> destination_of(const sockaddr_storage& original);

Result<gateway::Destination> lookup_destination(int fd) {
  auto original = sandbox::original_destination(fd);
  if (!original) return original.error();
  auto address =
      policy::IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&original->address));
  if (!address) return fail("original destination of an unknown address family");
  uint16_t port = original->address.ss_family == AF_INET
                      ? ntohs(reinterpret_cast<const sockaddr_in&>(original->address).sin_port)
                      : ntohs(reinterpret_cast<const sockaddr_in6&>(original->address).sin6_port);
  return gateway::Destination{address->canonical(), port, original->redirected};
}

Result<gateway::Destination> destination_of(const sockaddr_storage& original) {
  auto address = policy::IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&original));
  if (!address) return fail("original destination of an unknown address family");
  uint16_t port = original.ss_family == AF_INET
                      ? ntohs(reinterpret_cast<const sockaddr_in&>(original).sin_port)
                      : ntohs(reinterpret_cast<const sockaddr_in6&>(original).sin6_port);
  return gateway::Destination{address->canonical(), port, true};
}

// Which UDP may reach the relay at all (the gateway still judges each flow): everything in full
// access, else what the IP/CIDR allow rules cover. Names never allow UDP (no SNI to read; QUIC
// falls back to TCP).
// The kernel refuses overlapping elements in an interval set ("File exists"), and rules may
// overlap (192.0.2.0/24 and 192.0.2.128/25:53). Broader prefixes first; each rule keeps only the
// ports that no element over a prefix containing its own already has, so the elements are
// disjoint and together cover exactly what the rules cover.
std::vector<std::string> disjoint_udp_elements(
    std::vector<std::pair<policy::IpPrefix, policy::PortRange>> rules) {
  std::stable_sort(rules.begin(), rules.end(), [](const auto& a, const auto& b) {
    return a.first.length() < b.first.length();
  });
  struct Element {
    policy::IpPrefix prefix;
    uint32_t first;
    uint32_t last;
  };
  std::vector<Element> elements;
  for (const auto& [prefix, ports] : rules) {
    std::vector<std::pair<uint32_t, uint32_t>> left{{ports.first, ports.last}};
    for (const Element& e : elements) {
      if (e.prefix.length() > prefix.length() || !e.prefix.contains(prefix.address())) continue;
      std::vector<std::pair<uint32_t, uint32_t>> rest;
      for (auto [first, last] : left) {
        if (e.last < first || e.first > last) {
          rest.emplace_back(first, last);
          continue;
        }
        if (first < e.first) rest.emplace_back(first, e.first - 1);
        if (last > e.last) rest.emplace_back(e.last + 1, last);
      }
      left = std::move(rest);
    }
    for (auto [first, last] : left) elements.push_back({prefix, first, last});
  }
  std::vector<std::string> text;
  for (const Element& e : elements) {
    text.push_back(fmt::format("{} . {}-{}", e.prefix.to_string(), e.first, e.last));
  }
  return text;
}

void udp_allow_sets(const policy::Policy& p, sandbox::Options& options) {
  if (p.full_access()) {
    options.udp_allow_v4 = {"0.0.0.0/0 . 1-65535"};
    options.udp_allow_v6 = {"::/0 . 1-65535"};
    return;
  }
  std::vector<std::pair<policy::IpPrefix, policy::PortRange>> v4;
  std::vector<std::pair<policy::IpPrefix, policy::PortRange>> v6;
  for (const policy::Rule& rule : p.allow().rules()) {
    if (rule.is_host()) continue;
    (rule.prefix.address().family() == policy::Family::kV4 ? v4 : v6)
        .emplace_back(rule.prefix, rule.ports);
  }
  options.udp_allow_v4 = disjoint_udp_elements(std::move(v4));
  options.udp_allow_v6 = disjoint_udp_elements(std::move(v6));
}

// Raises this process's soft RLIMIT_NOFILE to its hard limit (each relayed connection takes
// two descriptors) and returns the soft limit now in force. Called once the command has been
// forked, so the command keeps the limits it was given (a program may close every descriptor
// up to its limit, or still use select()).
uint64_t raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised{limit.rlim_max, limit.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return raised.rlim_cur;
  }
  return limit.rlim_cur;
}

int setup_failed(const std::string& message) {
  std::fprintf(stderr, "netfence: %s\n", message.c_str());
  return kExitSetup;
}

}  // namespace

// The host's own addresses join the always-deny set: a sandbox must not reach services that
// listen on the host (SPEC 1.4).
std::vector<policy::IpAddress> host_addresses() {
  std::vector<policy::IpAddress> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (auto a = policy::IpAddress::from_sockaddr(i->ifa_addr)) out.push_back(*a);
  }
  freeifaddrs(list);
  return out;
}

void RunCommand::add_to(CLI::App& app) {
  policy.add_to(app, /*with_network=*/true);
  log.add_to(app);
  app.add_option("--upstream", upstreams, "Resolver for allowed names (default: /etc/resolv.conf)")
      ->type_name("ADDR[:PORT]")
      ->allow_extra_args(false);
  app.add_option("--first-bytes-timeout-ms", first_bytes_timeout_ms,
                 "How long a connection that needs a name (SNI/Host) may take to send it")
      ->check(CLI::Range(100u, 120000u));
  app.add_option("--connect-timeout-ms", connect_timeout_ms, "Timeout for dialing out")
      ->check(CLI::Range(100u, 120000u));
}

int RunCommand::run(std::vector<std::string> argv) const {
  if (argv.empty()) return setup_failed("run: no command given (netfence run [flags] -- COMMAND)");
  auto compiled = policy.compile();
  if (!compiled) return setup_failed(compiled.error().message);
  policy::Policy& pol = compiled.value();
  for (const std::string& w : pol.warnings())
    std::fprintf(stderr, "netfence: warning: %s\n", w.c_str());
  // Before the fork: the dump of the host's addresses would wait for the RTNL lock that the
  // child holds while it builds its links.
  pol.set_host_addresses(host_addresses());

  dns::ResolverConfig resolver_config;
  if (!pol.disabled()) {
    if (upstreams.empty()) {
      auto from_file = dns::config_from_resolv_conf(resolv_conf);
      if (from_file) {
        resolver_config = std::move(from_file.value());
      } else {
        std::fprintf(stderr, "netfence: warning: %s: allowed names will not resolve\n",
                     from_file.error().message.c_str());
      }
    }
    for (const std::string& u : upstreams) {
      auto server = dns::parse_server(u);
      if (!server) return setup_failed("--upstream " + server.error().message);
      resolver_config.servers.push_back(*server);
    }
  }
  std::string sandbox_id = fmt::format("nf-{}", getpid());
  auto event_log = log.open(sandbox_id);
  if (!event_log) return setup_failed(event_log.error().message);

  auto forwarder = sandbox::SignalForwarder::create();
  if (!forwarder) return setup_failed(forwarder.error().message);
  sandbox::Options options;
  options.mode = pol.disabled() ? sandbox::NetworkMode::kDisabled : sandbox::NetworkMode::kEnabled;
  options.argv = std::move(argv);
  options.stdio = stdio;
  udp_allow_sets(pol, options);
  // The child builds its namespace (a few milliseconds of kernel work) while this process does
  // its own set-up; the gateway serves only once both are done.
  auto box = sandbox::Sandbox::spawn(options);
  if (!box) return setup_failed(box.error().message);
  // Defence in depth for the gateway, which acts from the host's network namespace: the
  // command shares our pid namespace, and ptrace or /proc/PID/mem of netfence is already refused
  // (it lacks CAP_SYS_PTRACE across the user-namespace boundary, or our capabilities as root);
  // non-dumpable also refuses it to any other same-uid process. Only after the fork: the child
  // has to be dumpable to write its own uid maps (it inherits the flag).
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return setup_failed(std::string("cannot make netfence non-dumpable: ") + std::strerror(errno));
  }

  if (pol.disabled()) {
    if (auto ready = box->await_ready(); !ready) return setup_failed(ready.error().message);
    if (auto released = box->release(); !released) {
      std::fprintf(stderr, "netfence: %s\n", released.error().message.c_str());
    }
    auto code = sandbox::wait_forwarding_signals(*box, *forwarder);
    return code ? *code : setup_failed(code.error().message);
  }

  asio::io_context io(1);
  dns::Resolver resolver(io.get_executor(), resolver_config);
  dns::LearnedAddresses learned;
  dns::Server dns_server(io.get_executor(), pol, resolver, learned, *event_log, {});
  gateway::Options gateway_options;
  gateway_options.destination = lookup_destination;
  gateway_options.first_bytes_timeout = std::chrono::milliseconds(first_bytes_timeout_ms);
  gateway_options.connect_timeout = std::chrono::milliseconds(connect_timeout_ms);
  gateway_options.limits = gateway::connection_limits_for_fd_limit(raise_fd_limit());
  gateway::Gateway gw(io.get_executor(), pol, resolver, learned, *event_log, gateway_options);
  UniqueFd conntrack;  // the child's, received with the listeners
  gateway::UdpRelay udp(
      io.get_executor(), pol, *event_log,
      [&conntrack](const sockaddr_storage& client,
                   const sockaddr_storage& local) -> Result<gateway::Destination> {
        auto original = sandbox::udp_original_destination(conntrack.get(), client, local);
        if (!original) return original.error();
        auto destination = destination_of(*original);
        // Sent to the relay listener itself (no rewrite): not a destination.
        if (destination && std::memcmp(&*original, &local, sizeof(sockaddr_storage)) == 0) {
          destination->redirected = false;
        }
        return destination;
      });

  if (auto ready = box->await_ready(); !ready) return setup_failed(ready.error().message);
  sandbox::Listeners& l = box->listeners();
  conntrack = std::move(l.conntrack);
  Result<void> served;
  for (UniqueFd* fd : {&l.dns_udp_v4, &l.dns_udp_v6}) {
    if (served && fd->valid()) served = dns_server.serve_udp(std::move(*fd));
  }
  for (UniqueFd* fd : {&l.dns_tcp_v4, &l.dns_tcp_v6}) {
    if (served && fd->valid()) served = dns_server.serve_tcp(std::move(*fd));
  }
  for (UniqueFd* fd : {&l.tcp_v4, &l.tcp_v6}) {
    if (served && fd->valid()) served = gw.serve(std::move(*fd));
  }
  for (UniqueFd* fd : {&l.udp_v4, &l.udp_v6}) {
    if (served && fd->valid()) served = udp.serve(std::move(*fd));
  }
  if (!served) return setup_failed(served.error().message);

  if (auto released = box->release(); !released) {
    std::fprintf(stderr, "netfence: %s\n", released.error().message.c_str());
    auto code = box->wait();
    return code ? *code : kExitSetup;
  }

  // Serve until the command exits: its pidfd becomes readable; signals for netfence are passed
  // on to it as they arrive.
  std::optional<int> exit_code;
  auto finish = [&](int code) {
    exit_code = code;
    dns_server.stop();
    gw.stop();
    udp.stop();
    io.stop();
  };
  asio::posix::stream_descriptor signals(io, dup(forwarder->fd()));
  std::function<void()> watch_signals = [&] {
    signals.async_wait(asio::posix::stream_descriptor::wait_read, [&](const asio::error_code& ec) {
      if (ec) return;
      (void)forwarder->forward_pending(*box);
      watch_signals();
    });
  };
  watch_signals();
  std::optional<asio::posix::stream_descriptor> pidfd;
  asio::steady_timer poll(io);
  std::function<void()> poll_child = [&] {
    poll.expires_after(std::chrono::milliseconds(50));
    poll.async_wait([&](const asio::error_code& ec) {
      if (ec) return;
      auto done = box->try_wait();
      if (!done) return finish(kExitSetup);
      if (*done) return finish(**done);
      poll_child();
    });
  };
  if (box->pidfd() >= 0) {
    pidfd.emplace(io, dup(box->pidfd()));
    pidfd->async_wait(asio::posix::stream_descriptor::wait_read, [&](const asio::error_code& ec) {
      if (ec) return;
      auto code = box->wait();
      finish(code ? *code : kExitSetup);
    });
  } else {
    poll_child();
  }
  io.run();
  if (!exit_code) {
    auto code = box->wait();
    exit_code = code ? *code : kExitSetup;
  }
  return *exit_code;
}

}  // namespace netfence::cli
