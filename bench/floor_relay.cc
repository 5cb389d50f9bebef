// floor_relay: the least a socket-level gateway can do, as a reference row for
// bench/compare.sh's throughput section (issue 7). It listens on 127.0.0.1:--listen-port inside
// the network namespace --netns names (its listener is made there, as netfence's are), dials
// --to (IPv4 address:port) from the namespace it was started in, and moves the bytes of each
// direction on a thread of its own with blocking splice(2) through a 1 MiB pipe (or, with
// --copy-down, the way down with blocking read/write through a buffer): no event loop, no
// policy, no inspection, no timers, no log. Whatever netfence's relay costs beyond this is
// netfence's; what this costs beyond the direct path is the price of a relay that moves bytes
// this way and terminates the sandbox's TCP connection to open a second one.
//
//   floor_relay --netns /run/netns/NAME --listen-port PORT --to ADDR:PORT [--copy-down BYTES]
//
// --copy-down: the way down (server to client) copies through a buffer of BYTES with blocking
// read(2) and write(2) instead of splicing; the way up still splices.
//
// A benchmark tool for namespaces the harness builds, not a product: it serves until killed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "common/fd.h"
#include "sandbox/netlink.h"

namespace {

constexpr int kPipeSize = 1024 * 1024;  // netfence's relay pipes are this size too

using netfence::UniqueFd;

// Ends a relay that failed: wakes the other direction's blocking splice, whichever socket it is
// reading, and makes the close after it a reset for both peers (as netfence's relay does), not
// an end of stream that would look like a clean one.
void abort_relay(int from, int to) {
  linger reset{1, 0};
  for (int fd : {from, to}) {
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    ::shutdown(fd, SHUT_RDWR);
  }
}

// Moves bytes from `from` to `to` until end of stream, then passes the end on; on an error, ends
// the whole relay.
void pump(int from, int to) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return abort_relay(from, to);
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  ::fcntl(write_end.get(), F_SETPIPE_SZ, kPipeSize);
  for (;;) {
    ssize_t in = ::splice(from, nullptr, write_end.get(), nullptr, kPipeSize, SPLICE_F_MOVE);
    if (in == 0) break;
    if (in < 0) return abort_relay(from, to);
    while (in > 0) {
      ssize_t out =
          ::splice(read_end.get(), nullptr, to, nullptr, static_cast<size_t>(in), SPLICE_F_MOVE);
      if (out <= 0) return abort_relay(from, to);
      in -= out;
    }
  }
  ::shutdown(to, SHUT_WR);
}

// The same through a user-space buffer: one copy in, one copy out.
void copy_pump(int from, int to, size_t size) {
  std::unique_ptr<char[]> buffer;
  try {
    buffer = std::make_unique<char[]>(size);
  } catch (const std::bad_alloc&) {
    return abort_relay(from, to);
  }
  for (;;) {
    ssize_t in = ::read(from, buffer.get(), size);
    if (in == 0) break;
    if (in < 0) return abort_relay(from, to);
    for (ssize_t done = 0; done < in;) {
      ssize_t out = ::write(to, buffer.get() + done, static_cast<size_t>(in - done));
      if (out <= 0) return abort_relay(from, to);
      done += out;
    }
  }
  ::shutdown(to, SHUT_WR);
}

void relay(int accepted, sockaddr_in server, size_t copy_down) {
  UniqueFd client(accepted);
  UniqueFd upstream(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!upstream) return;
  int one = 1;
  ::setsockopt(upstream.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(upstream.get(), reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
    std::fprintf(stderr, "floor_relay: connect: %s\n", std::strerror(errno));
    return;
  }
  std::thread down;
  try {
    if (copy_down > 0) {
      down = std::thread(copy_pump, upstream.get(), client.get(), copy_down);
    } else {
      down = std::thread(pump, upstream.get(), client.get());
    }
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "floor_relay: no thread for a direction: %s\n", e.what());
    return;
  }
  pump(client.get(), upstream.get());
  down.join();
}

// A port number: all of `text`, 1-65535; 0 for anything else.
int parse_port(std::string_view text) {
  int port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc() || end != text.data() + text.size() || port < 1 || port > 65535) return 0;
  return port;
}

[[noreturn]] void usage(const char* self) {
  std::fprintf(stderr,
               "usage: %s --netns /run/netns/NAME --listen-port PORT --to ADDR:PORT "
               "[--copy-down BYTES]\n",
               self);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string netns, to;
  int listen_port = 0;
  size_t copy_down = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    std::string value = argv[++i];
    if (arg == "--netns") {
      netns = value;
    } else if (arg == "--listen-port") {
      listen_port = parse_port(value);
    } else if (arg == "--to") {
      to = value;
    } else if (arg == "--copy-down") {
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), copy_down);
      if (ec != std::errc() || end != value.data() + value.size() || copy_down == 0 ||
          copy_down > (64u << 20)) {
        usage(argv[0]);
      }
    } else {
      usage(argv[0]);
    }
  }
  sockaddr_in server{};
  server.sin_family = AF_INET;
  size_t colon = to.rfind(':');
  int port = colon == std::string::npos ? 0 : parse_port(std::string_view(to).substr(colon + 1));
  if (netns.empty() || listen_port == 0 || port == 0 ||
      ::inet_pton(AF_INET, to.substr(0, colon).c_str(), &server.sin_addr) != 1) {
    usage(argv[0]);
  }
  server.sin_port = htons(static_cast<uint16_t>(port));
  std::signal(SIGPIPE, SIG_IGN);  // splice into a reset socket raises it

  // Inside the sandbox-like namespace: lo as a sandbox's (the same code sets it up), and the
  // listener. The dialed sockets are made in ours.
  UniqueFd home(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home) {
    std::fprintf(stderr, "floor_relay: /proc/self/ns/net: %s\n", std::strerror(errno));
    return 1;
  }
  UniqueFd target(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!target || ::setns(target.get(), CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "floor_relay: cannot enter %s: %s\n", netns.c_str(), std::strerror(errno));
    return 1;
  }
  if (auto lo = netfence::sandbox::bring_up_loopback(/*large_packets=*/true); !lo) {
    std::fprintf(stderr, "floor_relay: %s\n", lo.error().message.c_str());
    return 1;
  }
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener) {
    std::fprintf(stderr, "floor_relay: socket: %s\n", std::strerror(errno));
    return 1;
  }
  int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(listener.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as netfence's
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(static_cast<uint16_t>(listen_port));
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0 ||
      ::listen(listener.get(), 128) != 0) {
    std::fprintf(stderr, "floor_relay: listen: %s\n", std::strerror(errno));
    return 1;
  }
  if (::setns(home.get(), CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "floor_relay: cannot return: %s\n", std::strerror(errno));
    return 1;
  }
  for (;;) {
    int accepted = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): say so, let the
      // relays in flight end, try again; anything else is a bug here.
      std::fprintf(stderr, "floor_relay: accept: %s\n", std::strerror(errno));
      if (errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM) return 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    try {
      std::thread(relay, accepted, server, copy_down).detach();
    } catch (const std::system_error& e) {
      std::fprintf(stderr, "floor_relay: no thread for a connection: %s\n", e.what());
      ::close(accepted);
    }
  }
}
