// Blocking TCP sockets for tests that talk to an in-process server (the gateway) from the test
// thread: listeners, clients bound to a chosen source address, reads bounded by SO_RCVTIMEO so a
// broken server fails a test instead of hanging it. IPv4 only; every address the tests use is on
// this host (loopback, or one of the host's own addresses, which the kernel also delivers
// locally), so nothing here ever sends a packet off the machine.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/bytes.h"
#include "common/fd.h"
#include "common/result.h"

namespace netfence::test {

// A listening TCP socket on ip:port (port 0: the kernel picks one). Errors: socket/bind/listen
// failed (the message names the address and errno).
Result<UniqueFd> listen_tcp(const std::string& ip, uint16_t port, int backlog = 16);
// A TCP socket bound to ip:port but not listening: connecting to it is refused, and the port
// stays reserved while the fd lives. Errors as listen_tcp.
Result<UniqueFd> bound_tcp(const std::string& ip, uint16_t port = 0);
// The local port of a bound socket; 0 on error.
uint16_t local_port(int fd);

// A blocking client socket bound to source_ip:0 (so the caller knows its source port before
// connecting), with TCP_NODELAY and `timeout` as SO_RCVTIMEO/SO_SNDTIMEO. Errors as listen_tcp.
Result<UniqueFd> client_socket(const std::string& source_ip, std::chrono::milliseconds timeout);
// Connects `fd` (blocking). Errors: connect failed.
Result<void> connect_tcp(int fd, const std::string& ip, uint16_t port);

// Accepts one connection within `timeout` and gives it `io_timeout` as SO_RCVTIMEO/SO_SNDTIMEO;
// an invalid fd when none came.
UniqueFd accept_within(int listener, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds io_timeout = std::chrono::seconds(5));
// A connected pair on 127.0.0.1: `client` as client_socket() makes it (`timeout` as its send and
// receive timeouts), `accepted` the listener's side. Errors: a step failed, or no connection
// was accepted within `timeout`.
struct LoopbackPair {
  UniqueFd client;
  UniqueFd accepted;
};
Result<LoopbackPair> loopback_pair(std::chrono::milliseconds timeout = std::chrono::seconds(2));
// Writes 1 MiB at a time until a write fails (the socket's send timeout, or its shutdown): more
// than any socket buffers between `fd` and a peer that does not read can take (this kernel lets
// a receive buffer grow to 32 MiB).
void write_until_it_fails(int fd);
// True when a connection is waiting in `listener`'s accept queue right now.
bool has_pending_connection(int listener);

// Writes all of `bytes` (MSG_NOSIGNAL). False on error.
bool write_all(int fd, ByteSpan bytes);
bool write_all(int fd, std::string_view text);

struct ReadResult {
  std::string data;
  bool eof = false;  // the peer closed (a read returned 0)
  int error = 0;     // errno of the read that ended it (ECONNRESET, EAGAIN for the timeout, ...)
};
// Reads until `n` bytes came, EOF, an error or the socket's receive timeout.
ReadResult read_exactly(int fd, size_t n);
// Reads until EOF, an error or the receive timeout (or `limit` bytes).
ReadResult read_to_end(int fd, size_t limit = 1 << 20);

// `size` pseudo-random bytes from `seed` (a linear congruential generator): payloads in which a
// lost, repeated or reordered chunk shows.
std::string pattern(size_t size, unsigned seed);

// An IPv4 address of this host outside 127.0.0.0/8 on an interface that is up: connections to
// it are delivered locally like loopback ones. nullopt when there is none.
std::optional<std::string> own_ipv4_address();

}  // namespace netfence::test
