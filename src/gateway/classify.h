// Classify: reads a connection's first bytes into the gateway's own buffer (they are replayed to
// the server later, SPEC 2.1: never rely on MSG_PEEK alone) until it knows what they are:
//   - a TLS ClientHello (reassembled across TCP reads and TLS records, up to 16 KiB): its SNI;
//   - an HTTP/1.x request head (up to 16 KiB): its Host, or the absolute-form authority;
//   - anything else: no name.
// It stops at the first of: a decision, the cap, EOF, an error, or the deadline.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace netfence::gateway {

struct Classified {
  enum class Kind {
    kTls,      // a complete ClientHello
    kHttp,     // a complete HTTP/1 request head
    kOther,    // bytes that are neither: problem "no_name"
    kNothing,  // the client sent nothing before the deadline, or closed
  };
  Kind kind = Kind::kNothing;
  std::string name;     // SNI or Host, normalised by the wire parser; "" when none
  std::string source;   // "sni", "host" or "none"
  std::string problem;  // when the bytes cannot authorise anything: a reason code
                        // ("no_sni", "ech", "sni_ip_literal", "bad_client_hello",
                        //  "bad_http_head", "http_connect", "h2c", "no_host", "timeout",
                        //  "closed")
  bool timed_out = false;
};

// Reads from `socket` into `buffer` (appending) and classifies. `deadline` bounds the whole
// read. With `first_byte_wait` zero the deadline applies from the start (the peek path: the
// client must speak first); otherwise the client may take up to `first_byte_wait` to send its
// first byte (the learned and full-access paths, where the server may speak first; the gateway
// passes its idle timeout) and the deadline starts counting at that byte.
asio::awaitable<Classified> classify(asio::ip::tcp::socket& socket, std::vector<std::byte>& buffer,
                                     std::chrono::milliseconds timeout,
                                     std::chrono::milliseconds first_byte_wait);

}  // namespace netfence::gateway
