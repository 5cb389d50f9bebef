// conn_load: a short-request load generator for bench/compare.sh (issue 7). Each of
// --concurrency threads loops until --duration runs out: open a fresh TCP connection to
// --ip:--port, optionally do a full TLS handshake (SNI --name, no session resumption, no
// certificate check: the test world's certificate is self-signed), send
// `GET --path HTTP/1.1` with `Host: --name` and `Connection: close`, read the response to the
// end and close. It reports connections per second and the connect-to-first-byte latency (from
// just before connect() to the first byte of the HTTP response) at p50 and p99, as one line:
//
//   conn_load conns=N errors=E seconds=S rate=R p50_us=X p99_us=Y
//
// A connection counts only when the response starts with "HTTP/1.1 200" (or 1.0) and ends
// cleanly; everything else (refused, reset, timeout, TLS failure, other status) is an error,
// and the first error's text is printed on stderr. Blocking sockets with 5 s timeouts: a stuck
// peer costs a thread 5 s, never the whole run.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string ip;
  uint16_t port = 0;
  bool tls = false;
  std::string name;
  std::string path = "/";
  int concurrency = 8;
  double duration = 3.0;
};

struct Totals {
  std::mutex mutex;
  std::vector<uint32_t> latencies_us;
  uint64_t errors = 0;
  std::string first_error;
};

struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};

std::string ssl_error_text(const char* what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "";
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  return std::string(what) + ": " + (code != 0 ? buf : std::strerror(errno));
}

// One request on a fresh connection. Returns an empty string and sets latency_us on success,
// or the reason it failed.
std::string one_request(const Config& config, const sockaddr_in& addr, SSL_CTX* ctx,
                        const std::string& request, uint32_t& latency_us) {
  auto start = Clock::now();
  netfence::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::string("socket: ") + std::strerror(errno);
  timeval timeout{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return std::string("connect: ") + std::strerror(errno);
  }

  std::string response;
  char buf[16384];
  bool first = true;
  auto got_bytes = [&](const char* data, size_t n) {
    if (first) {
      latency_us = static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
      first = false;
    }
    if (response.size() < 64) response.append(data, std::min<size_t>(n, 64 - response.size()));
  };

  if (config.tls) {
    std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx));
    if (!ssl) return ssl_error_text("SSL_new");
    SSL_set_fd(ssl.get(), fd.get());
    if (!config.name.empty()) {  // SSL_set_tlsext_host_name, without the macro's C cast
      SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(config.name.c_str()));
    }
    if (SSL_connect(ssl.get()) != 1) return ssl_error_text("TLS handshake");
    if (SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())) !=
        static_cast<int>(request.size())) {
      return ssl_error_text("TLS write");
    }
    for (;;) {
      int n = SSL_read(ssl.get(), buf, sizeof buf);
      if (n > 0) {
        got_bytes(buf, static_cast<size_t>(n));
        continue;
      }
      int err = SSL_get_error(ssl.get(), n);
      if (err == SSL_ERROR_ZERO_RETURN) break;  // close_notify
      // A peer that closes without close_notify after a complete response is common; treat
      // EOF after data as the end.
      if (err == SSL_ERROR_SYSCALL && errno == 0 && !first) break;
      if (first) return ssl_error_text("TLS read");
      break;
    }
  } else {
    if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return std::string("send: ") + std::strerror(errno);
    }
  }
  // Read to the peer's FIN so that this side closes second (no TIME_WAIT on the client: a
  // few seconds at thousands of connections a second would otherwise exhaust its ports).
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      got_bytes(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (first) return std::string("recv: ") + std::strerror(errno);
    break;
  }
  if (first) return "no response";
  if (response.rfind("HTTP/1.1 200", 0) != 0 && response.rfind("HTTP/1.0 200", 0) != 0) {
    return "unexpected response: " + response.substr(0, response.find('\r'));
  }
  return {};
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --ip IPV4 --port PORT [--tls] [--name HOST] [--path /]\n"
               "          [--concurrency 8] [--duration 3]\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (arg == "--ip") {
      config.ip = value();
    } else if (arg == "--port") {
      config.port = static_cast<uint16_t>(std::atoi(value().c_str()));
    } else if (arg == "--tls") {
      config.tls = true;
    } else if (arg == "--name") {
      config.name = value();
    } else if (arg == "--path") {
      config.path = value();
    } else if (arg == "--concurrency") {
      config.concurrency = std::atoi(value().c_str());
    } else if (arg == "--duration") {
      config.duration = std::atof(value().c_str());
    } else {
      usage(argv[0]);
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(config.port);
  if (config.ip.empty() || config.port == 0 || config.concurrency < 1 ||
      config.concurrency > 1024 || !(config.duration > 0 && config.duration <= 3600) ||
      ::inet_pton(AF_INET, config.ip.c_str(), &addr.sin_addr) != 1) {
    usage(argv[0]);
  }
  std::string host = config.name.empty() ? config.ip : config.name;
  std::string request = "GET " + config.path + " HTTP/1.1\r\nHost: " + host +
                        "\r\nUser-Agent: conn_load\r\nConnection: close\r\n\r\n";

  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(nullptr, SSL_CTX_free);
  if (config.tls) {
    ctx.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
      std::fprintf(stderr, "conn_load: SSL_CTX_new failed\n");
      return 1;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  }

  Totals totals;
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(config.duration));
  std::vector<std::thread> threads;
  for (int t = 0; t < config.concurrency; ++t) {
    threads.emplace_back([&] {
      std::vector<uint32_t> latencies;
      uint64_t errors = 0;
      std::string first_error;
      while (Clock::now() < deadline) {
        uint32_t latency = 0;
        std::string error = one_request(config, addr, ctx.get(), request, latency);
        if (error.empty()) {
          latencies.push_back(latency);
        } else {
          if (errors++ == 0) first_error = error;
          // Do not spin on a refused port: a failing path shows as errors, not as a busy CPU.
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
      std::lock_guard lock(totals.mutex);
      totals.latencies_us.insert(totals.latencies_us.end(), latencies.begin(), latencies.end());
      totals.errors += errors;
      if (totals.first_error.empty()) totals.first_error = first_error;
    });
  }
  for (auto& thread : threads) thread.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  auto& lat = totals.latencies_us;
  std::sort(lat.begin(), lat.end());
  auto percentile = [&](double p) -> uint32_t {
    if (lat.empty()) return 0;
    size_t index = static_cast<size_t>(p * static_cast<double>(lat.size() - 1) + 0.5);
    return lat[std::min(index, lat.size() - 1)];
  };
  if (!totals.first_error.empty()) {
    std::fprintf(stderr, "conn_load: first error: %s\n", totals.first_error.c_str());
  }
  std::printf("conn_load conns=%zu errors=%llu seconds=%.2f rate=%.0f p50_us=%u p99_us=%u\n",
              lat.size(), static_cast<unsigned long long>(totals.errors), seconds,
              static_cast<double>(lat.size()) / seconds, percentile(0.50), percentile(0.99));
  return lat.empty() ? 1 : 0;
}
