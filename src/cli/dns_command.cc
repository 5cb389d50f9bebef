#include "cli/dns_command.h"

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/signal_set.hpp>
#include <cstdio>

#include "dns/learned.h"
#include "dns/resolver.h"
#include "dns/server.h"
#include "fmt/format.h"

namespace netfence::cli {

void DnsCommand::add_to(CLI::App& app) {
  policy.add_to(app, /*with_network=*/false);
  log.add_to(app);
  app.add_option("--listen", listen, "Address and port to serve on, e.g. 127.0.0.1:5353")
      ->required()
      ->type_name("ADDR:PORT");
  app.add_option("--upstream", upstreams, "Upstream resolver (default: /etc/resolv.conf)")
      ->type_name("ADDR[:PORT]")
      ->allow_extra_args(false);
  app.add_option("--timeout-ms", timeout_ms, "Per-try upstream timeout")
      ->check(CLI::Range(10u, 30000u));
  app.add_option("--cache-size", cache_size, "Upstream answers cached (0: no cache)")
      ->check(CLI::Range(size_t{0}, size_t{1} << 20));
}

int DnsCommand::run() const {
  auto compiled = policy.compile();
  if (!compiled) {
    std::fprintf(stderr, "netfence: %s\n", compiled.error().message.c_str());
    return 2;
  }
  for (const std::string& w : compiled->warnings()) {
    std::fprintf(stderr, "netfence: warning: %s\n", w.c_str());
  }
  auto listen_at = dns::parse_server(listen);
  if (!listen_at) {
    std::fprintf(stderr, "netfence: --listen %s\n", listen_at.error().message.c_str());
    return 2;
  }
  dns::ResolverConfig config;
  if (upstreams.empty()) {
    auto from_file = dns::config_from_resolv_conf(resolv_conf);
    if (!from_file) {
      std::fprintf(stderr, "netfence: %s (give --upstream)\n", from_file.error().message.c_str());
      return 2;
    }
    config = std::move(from_file.value());
  }
  for (const std::string& u : upstreams) {
    auto server = dns::parse_server(u);
    if (!server) {
      std::fprintf(stderr, "netfence: --upstream %s\n", server.error().message.c_str());
      return 2;
    }
    config.servers.push_back(*server);
  }
  config.timeout = std::chrono::milliseconds(timeout_ms);
  config.cache_capacity = cache_size;
  auto event_log = log.open("dns");
  if (!event_log) {
    std::fprintf(stderr, "netfence: %s\n", event_log.error().message.c_str());
    return 2;
  }

  event_log->flush_each_event(false);  // the server flushes once per batch
  asio::io_context io(1);
  asio::error_code ec;
  asio::ip::udp::socket udp(io);
  udp.open(listen_at->protocol(), ec);
  if (!ec) udp.bind(*listen_at, ec);
  asio::ip::tcp::acceptor tcp(io);
  asio::ip::tcp::endpoint tcp_at(listen_at->address(), listen_at->port());
  if (!ec) tcp.open(tcp_at.protocol(), ec);
  if (!ec) tcp.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) tcp.bind(tcp_at, ec);
  if (!ec) tcp.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "netfence: cannot listen on %s: %s\n", listen.c_str(),
                 ec.message().c_str());
    return 125;
  }

  dns::Resolver resolver(io.get_executor(), config);
  dns::LearnedAddresses learned;
  dns::Server server(io.get_executor(), *compiled, resolver, learned, *event_log, {});
  auto served = server.serve_udp(UniqueFd(udp.release()));
  if (served) served = server.serve_tcp(UniqueFd(tcp.release()));
  if (!served) {
    std::fprintf(stderr, "netfence: %s\n", served.error().message.c_str());
    return 125;
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const asio::error_code&, int) {
    server.stop();
    io.stop();
  });
  std::fprintf(stderr, "netfence: dns serving on %s (udp and tcp)\n", listen.c_str());
  io.run();
  const dns::ServerStats& s = server.stats();
  std::fprintf(
      stderr,
      "netfence: dns stopped: %llu queries, %llu forwarded, %llu answered locally, "
      "%llu formerr, %llu servfail, %llu dropped\n",
      static_cast<unsigned long long>(s.queries), static_cast<unsigned long long>(s.forwarded),
      static_cast<unsigned long long>(s.local), static_cast<unsigned long long>(s.formerr),
      static_cast<unsigned long long>(s.servfail), static_cast<unsigned long long>(s.dropped));
  return 0;
}

}  // namespace netfence::cli
