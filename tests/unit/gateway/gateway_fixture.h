// GatewayTest: a whole Gateway in process, driven by ordinary blocking sockets.
//
// The gateway runs on its own thread (one asio::io_context, as in `netfence run`); the test
// thread plays the sandboxed client and the servers with blocking sockets whose reads time out
// (so a broken gateway fails a test rather than hanging it). The fixture stands in for the
// sandbox around the gateway:
//   - original destination: each client binds its source port first and registers the
//     destination it "meant" under that port; Options::destination looks it up by getpeername;
//   - name resolution: Options::resolve answers from a table the test fills (no DNS at all);
//   - decision log: JSON lines in a temporary file, read back to assert events.
//
// Addresses. Everything is on this host. Loopback (127.0.0.0/8) is in the always-deny set, so a
// loopback *original destination* is refused at step 1 unless an IP rule covers it, and then
// step 2 allows it without looking at the bytes. Tests of the name paths (SNI/Host, learned
// addresses, inline inspection) therefore need an original destination that is neither: the
// host's own non-loopback address, which the kernel delivers locally exactly like loopback (no
// packet leaves the machine). A listening "sentinel" sits there; the gateway must never connect
// to it in those tests, and TearDown checks that it never did. On a host without such an address
// the original destination is an unroutable documentation address and the sentinel check is
// skipped (tests that need a real server there skip).
//
// TearDown waits until the gateway has no active connection, stops it, and requires the event
// loop to run out of work by itself (a leaked coroutine, timer or socket fails the test), then
// checks that no file descriptor leaked.
#pragma once

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/awaitable.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/event_log.h"
#include "dns/learned.h"
#include "dns/resolver.h"
#include "gateway/gateway.h"
#include "policy/policy.h"
#include "support/client_hello_builder.h"
#include "support/loopback_sockets.h"

namespace netfence::gateway::fixture {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// Bound on any single blocking step (a read, an accept, waiting for an event).
inline constexpr std::chrono::milliseconds kStepTimeout = 5s;
inline constexpr char kClientIp[] = "127.0.0.1";
// Where the original destination points when the host has no address of its own besides
// loopback (TEST-NET-3: never routed; such a host has no route out anyway).
inline constexpr char kUnroutableIp[] = "203.0.113.99";
// A fatal access_denied alert, TLS 1.2 record framing (SPEC 1.3).
inline const std::string kTlsAlert("\x15\x03\x03\x00\x02\x02\x31", 7);

inline int count_open_fds() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;  // the directory's own fd
}

inline std::string text(const test::Bytes& bytes) {
  return std::string(as_chars(bytes));
}

inline test::Bytes hello_for(const std::string& sni, size_t records = 1) {
  test::ClientHelloSpec spec;
  spec.sni = sni;
  return test::build_client_hello(spec, records);
}

inline std::string http_get(const std::string& host) {
  return "GET /path HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: gateway-test\r\n\r\n";
}

// A string field of an event; "" when absent, null or not a string.
inline std::string field(const Json& event, const char* key) {
  if (!event.is_object()) return "";
  auto it = event.find(key);
  return it != event.end() && it->is_string() ? it->get<std::string>() : "";
}

// A number field of an event; nullopt when absent.
inline std::optional<uint64_t> number(const Json& event, const char* key) {
  if (!event.is_object()) return std::nullopt;
  auto it = event.find(key);
  if (it == event.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}

inline bool has(const Json& event, const char* key) {
  return event.is_object() && event.contains(key);
}

struct Client {
  UniqueFd fd;
  uint16_t port = 0;  // the source port: how the test's events are matched to this client
  std::string src() const { return std::string(kClientIp) + ":" + std::to_string(port); }
};

struct Server {
  UniqueFd listener;
  std::string ip;
  uint16_t port = 0;
  // The next connection the gateway made to this server.
  UniqueFd accept() const { return test::accept_within(listener.get(), kStepTimeout); }
  bool touched() const { return test::has_pending_connection(listener.get()); }
};

// A named server and the original destination a client claims (a sentinel on the same port).
struct Site {
  Server server;
  Destination original;
};

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_at_start_ = count_open_fds();
    own_ip_ = test::own_ipv4_address();
  }

  void TearDown() override {
    if (thread_.joinable()) {
      wait_until_idle();
      on_io([this] {
        gateway_->stop();
        return 0;
      });
      work_.reset();
      // With every connection over and the acceptors closed, the loop must run dry by itself.
      if (loop_done_.wait_for(kStepTimeout) != std::future_status::ready) {
        ADD_FAILURE() << "the event loop still has work after stop() with no connection left";
        io_->stop();
        thread_.join();
        // Pending coroutine frames may still point into the gateway: never free it under them.
        static_cast<void>(gateway_.release());
      } else {
        thread_.join();
      }
    }
    for (const UniqueFd& s : sentinels_) {
      EXPECT_FALSE(test::has_pending_connection(s.get()))
          << "the gateway connected to the client's chosen destination (port "
          << test::local_port(s.get()) << ") instead of the name";
    }
    sentinels_.clear();
    gateway_.reset();
    resolver_.reset();
    io_.reset();
    log_.reset();
    if (!log_path_.empty()) ::unlink(log_path_.c_str());
    EXPECT_EQ(count_open_fds(), fds_at_start_) << "a file descriptor leaked";
  }

  // Compiles the policy and starts a gateway on its own thread. Use with
  // ASSERT_NO_FATAL_FAILURE.
  void start(std::vector<std::string> allow, std::vector<std::string> deny = {},
             const std::function<void(Options&)>& tweak = {}) {
    policy::NetworkSpec spec;
    spec.allow_net = std::move(allow);
    spec.deny_net = std::move(deny);
    auto compiled = policy::Policy::compile(spec);
    ASSERT_TRUE(compiled) << compiled.error().message;
    policy_.emplace(std::move(compiled.value()));

    std::string pattern = ::testing::TempDir() + "gateway_test_log_XXXXXX";
    int fd = ::mkstemp(pattern.data());
    ASSERT_GE(fd, 0);
    ::close(fd);
    log_path_ = pattern;
    log_.emplace(EventLog::open(log_path_, LogFormat::kJson, LogLevel::kAll, "test"));
    ASSERT_TRUE(log_->enabled()) << log_->error();

    io_.emplace(1);
    dns::ResolverConfig resolver_config;  // no servers: names resolve through resolve_fake
    resolver_config.hosts_file = "";
    resolver_.emplace(io_->get_executor(), resolver_config);

    Options options;
    options.connect_timeout = kStepTimeout;
    options.first_bytes_timeout = kStepTimeout;
    options.inspect_timeout = kStepTimeout;
    options.destination = [this](int client_fd) { return lookup_destination(client_fd); };
    options.resolve =
        [this](const std::string& name) -> asio::awaitable<Result<std::vector<policy::IpAddress>>> {
      co_return resolve_fake(name);
    };
    if (tweak) tweak(options);
    gateway_ = std::make_unique<Gateway>(io_->get_executor(), *policy_, *resolver_, learned_, *log_,
                                         std::move(options));

    auto listener = test::listen_tcp(kClientIp, 0, 64);
    ASSERT_TRUE(listener) << listener.error().message;
    gateway_port_ = test::local_port(listener->get());
    auto served = gateway_->serve(std::move(listener.value()));
    ASSERT_TRUE(served) << served.error().message;

    work_.emplace(io_->get_executor());
    loop_done_ = loop_finished_.get_future();
    thread_ = std::thread([this] {
      io_->run();
      loop_finished_.set_value();
    });
  }

  // Runs `f` on the gateway's thread and returns its result.
  template <class F>
  auto on_io(F f) -> decltype(f()) {
    std::promise<decltype(f())> result;
    asio::post(*io_, [&] { result.set_value(f()); });
    return result.get_future().get();
  }

  Stats stats() {
    return on_io([this] { return gateway_->stats(); });
  }

  void wait_until_idle() {
    auto deadline = std::chrono::steady_clock::now() + kStepTimeout;
    while (stats().active != 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "the gateway still has " << stats().active << " active connections";
        return;
      }
      std::this_thread::sleep_for(2ms);
    }
  }

  static Destination destination(const std::string& ip, uint16_t port) {
    return Destination{policy::IpAddress::parse(ip).value(), port, true};
  }

  // Makes `name` resolve (for dial-by-name) to `ips`.
  void add_name(const std::string& name, std::vector<std::string> ips) {
    std::vector<policy::IpAddress> addresses;
    for (const std::string& ip : ips) addresses.push_back(policy::IpAddress::parse(ip).value());
    std::lock_guard lock(mutex_);
    names_[name] = std::move(addresses);
  }

  // The names the gateway asked to resolve, in order.
  std::vector<std::string> resolved_names() {
    std::lock_guard lock(mutex_);
    return resolved_;
  }

  // Opens a client connection to the gateway as if it were going to `dst`.
  Client connect(const Destination& dst) {
    Client c;
    auto fd = test::client_socket(kClientIp, kStepTimeout);
    if (!fd) {
      ADD_FAILURE() << fd.error().message;
      return c;
    }
    c.port = test::local_port(fd->get());
    {
      std::lock_guard lock(mutex_);
      destinations_[c.port] = dst;
    }
    if (auto connected = test::connect_tcp(fd->get(), kClientIp, gateway_port_); !connected) {
      ADD_FAILURE() << connected.error().message;
      return c;
    }
    c.fd = std::move(fd.value());
    return c;
  }

  // Like connect(), with no destination registered for the client.
  Client connect_unregistered() {
    Client c;
    auto fd = test::client_socket(kClientIp, kStepTimeout);
    if (!fd) {
      ADD_FAILURE() << fd.error().message;
      return c;
    }
    c.port = test::local_port(fd->get());
    if (auto connected = test::connect_tcp(fd->get(), kClientIp, gateway_port_); !connected) {
      ADD_FAILURE() << connected.error().message;
      return c;
    }
    c.fd = std::move(fd.value());
    return c;
  }

  Server listen_on(const std::string& ip, uint16_t port = 0) {
    auto fd = test::listen_tcp(ip, port);
    if (!fd) {
      ADD_FAILURE() << fd.error().message;
      return {};
    }
    uint16_t bound = test::local_port(fd->get());
    return Server{std::move(fd.value()), ip, bound};
  }

  bool has_own_ip() const { return own_ip_.has_value(); }
  std::string own_ip() const { return own_ip_.value_or(kUnroutableIp); }

  // An original destination the gateway must never connect to (see the file comment), on
  // `port` (0: any free one).
  Destination sentinel(uint16_t port = 0) {
    if (!own_ip_) return destination(kUnroutableIp, port == 0 ? 9 : port);
    auto fd = test::listen_tcp(*own_ip_, port);
    if (!fd) {
      ADD_FAILURE() << fd.error().message;
      return destination(*own_ip_, port);
    }
    uint16_t bound = test::local_port(fd->get());
    sentinels_.push_back(std::move(fd.value()));
    return destination(*own_ip_, bound);
  }

  // A server on `ip` and a sentinel original destination on the same port (a dial by name
  // keeps the client's port). With `listening` false the server's port is bound but refuses
  // connections (a dial that fails).
  Site site(const std::string& ip, bool listening = true) {
    auto open = [&](uint16_t port) {
      return listening ? test::listen_tcp(ip, port) : test::bound_tcp(ip, port);
    };
    for (int attempt = 0; attempt < 20; ++attempt) {
      std::optional<UniqueFd> lookout;
      uint16_t port = 0;
      if (own_ip_) {
        auto fd = test::listen_tcp(*own_ip_, 0);
        if (!fd) break;
        port = test::local_port(fd->get());
        lookout = std::move(fd.value());
      }
      auto server = open(port);
      if (!server) continue;  // the port is taken on `ip`: try another
      port = test::local_port(server->get());
      Server s{std::move(server.value()), ip, port};
      if (!lookout) return Site{std::move(s), destination(kUnroutableIp, port)};
      sentinels_.push_back(std::move(*lookout));
      return Site{std::move(s), destination(*own_ip_, port)};
    }
    ADD_FAILURE() << "cannot find a port free on both " << ip << " and " << own_ip();
    return {};
  }

  // Every complete event line written so far.
  std::vector<Json> events() {
    std::vector<Json> out;
    std::ifstream in(log_path_);
    std::string line;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // no newline yet: the line is still being written
      Json e = Json::parse(line, nullptr, false);
      if (!e.is_discarded()) out.push_back(std::move(e));
    }
    return out;
  }

  std::vector<Json> events_of(const Client& c) {
    std::vector<Json> out;
    for (Json& e : events()) {
      if (field(e, "src") == c.src()) out.push_back(std::move(e));
    }
    return out;
  }

  // Waits for the first event of type `type` from client `c`; null (and a failure) if none
  // came within kStepTimeout.
  Json wait_event(const Client& c, const std::string& type) {
    auto deadline = std::chrono::steady_clock::now() + kStepTimeout;
    while (true) {
      for (Json& e : events_of(c)) {
        if (field(e, "event") == type) return std::move(e);
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(2ms);
    }
    std::string all;
    for (const Json& e : events()) all += e.dump() + "\n";
    ADD_FAILURE() << "no '" << type << "' event from " << c.src() << "; the log has:\n" << all;
    return Json();
  }

  std::optional<policy::Policy> policy_;
  dns::LearnedAddresses learned_;
  std::optional<EventLog> log_;
  std::optional<asio::io_context> io_;
  std::optional<dns::Resolver> resolver_;
  std::unique_ptr<Gateway> gateway_;
  uint16_t gateway_port_ = 0;

 private:
  Result<Destination> lookup_destination(int fd) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
      return fail("test: getpeername failed");
    }
    auto ip = policy::IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&peer));
    uint16_t port = ntohs(reinterpret_cast<const sockaddr_in*>(&peer)->sin_port);
    std::lock_guard lock(mutex_);
    auto it = destinations_.find(port);
    if (!ip || it == destinations_.end()) {
      return fail("test: no destination registered for source port " + std::to_string(port));
    }
    return it->second;
  }

  Result<std::vector<policy::IpAddress>> resolve_fake(const std::string& name) {
    std::lock_guard lock(mutex_);
    resolved_.push_back(name);
    auto it = names_.find(name);
    if (it == names_.end()) return fail("test: " + name + " is not in the fake resolver");
    return it->second;
  }

  int fds_at_start_ = 0;
  std::string log_path_;
  std::optional<std::string> own_ip_;
  std::vector<UniqueFd> sentinels_;
  std::mutex mutex_;
  std::map<uint16_t, Destination> destinations_;
  std::map<std::string, std::vector<policy::IpAddress>> names_;
  std::vector<std::string> resolved_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::promise<void> loop_finished_;
  std::future<void> loop_done_;
  std::thread thread_;
};

}  // namespace netfence::gateway::fixture
