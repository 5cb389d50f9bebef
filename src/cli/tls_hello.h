// A small TLS 1.3 ClientHello builder for `netfence selftest` probes: an SNI, optionally an outer
// encrypted_client_hello extension, cut into any number of TLS records. The hello is well formed
// (X25519 key share, TLS 1.3/1.2 suites, supported_versions, signature_algorithms) so that a real
// server would answer it with a ServerHello: a probe that got through is then visible. Random
// fields come from getrandom(2). (tests/support/client_hello_builder.h is the test suite's much
// richer builder; this one is production code and stays minimal.)
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace netfence::cli {

struct HelloSpec {
  std::string sni;   // host_name as is; empty: no server_name extension
  bool ech = false;  // adds an outer encrypted_client_hello (0xfe0d) extension
};

// The handshake message: msg_type 1, u24 length, body.
std::vector<std::byte> client_hello_message(const HelloSpec& spec);
// `message` as `records` TLS handshake records (record version 0x0301) of near-equal size;
// records is clamped to [1, message.size()].
std::vector<std::vector<std::byte>> client_hello_records(const std::vector<std::byte>& message,
                                                         size_t records);

}  // namespace netfence::cli
