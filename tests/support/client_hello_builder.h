// Builds TLS ClientHellos for tests, the seed corpus and benchmarks: arbitrary SNI, ALPN,
// supported_versions, ECH, extra (even malformed or duplicate) extensions, padding to a target
// size, a post-quantum-sized key share; and cuts the result into TLS records and into reads.
//
// The defaults produce a hello OpenSSL 3.0 accepts (TLS 1.3 and 1.2 suites, X25519 key share,
// supported_groups, signature_algorithms), so the differential test can use built hellos. All
// "random" bytes come from a fixed generator, so the output is deterministic. Nothing here
// validates: garbage in gives garbage out, which is the point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"

namespace netfence::test {

using Bytes = std::vector<std::byte>;

struct TlsExtension {
  uint16_t type = 0;
  Bytes data;
};

inline constexpr uint16_t kGroupX25519 = 0x001d;
inline constexpr uint16_t kGroupX25519MlKem768 = 0x11ec;
inline constexpr size_t kX25519MlKem768ShareSize = 1216;  // ML-KEM-768 key (1184) + X25519 (32)

struct ClientHelloSpec {
  // host_name written as is (no lowercasing, "" gives a zero-length name); nullopt: no
  // server_name extension.
  std::optional<std::string> sni = "example.com";
  std::vector<std::string> alpn;  // empty: no ALPN extension
  // Empty: no supported_versions extension (and no TLS 1.3 extensions): a TLS 1.2 hello.
  std::vector<uint16_t> supported_versions = {0x0304, 0x0303};
  uint16_t legacy_version = 0x0303;
  std::vector<uint16_t> cipher_suites = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030};
  size_t session_id_length = 32;
  // Adds an X25519MLKEM768 key share (group 0x11ec, 1,216 bytes) before the X25519 one, as
  // Chrome and Firefox do: the hello grows to about 1.8 KB.
  bool post_quantum_key_share = false;
  // Adds an outer encrypted_client_hello extension (0xfe0d) with a payload of this many bytes.
  std::optional<size_t> ech_payload_size;
  // Appended after the standard extensions, in order, without any check.
  std::vector<TlsExtension> extra_extensions;
  // If nonzero and bigger than the hello, a padding extension (21) grows the handshake message
  // (header included) to exactly this many bytes; a gap under 4 bytes becomes 4.
  size_t pad_to = 0;
};

// The handshake message: msg_type 1, u24 length, body.
Bytes build_client_hello_message(const ClientHelloSpec& spec);
// The message in `records` TLS handshake records (see split_into_records).
Bytes build_client_hello(const ClientHelloSpec& spec, size_t records = 1);

// A TLS record header + payload, written as is (the length field is payload.size() truncated to
// 16 bits, so over-long payloads give inconsistent records on purpose).
Bytes tls_record(uint8_t content_type, uint16_t version, ByteSpan payload);
// Splits `message` into `records` handshake records of near-equal size (the first ones one byte
// bigger), record version `version`. records is clamped to [1, message.size()].
Bytes split_into_records(ByteSpan message, size_t records, uint16_t version = 0x0301);
// Handshake records carrying at most `fragment` bytes each.
Bytes records_of_size(ByteSpan message, size_t fragment, uint16_t version = 0x0301);
// Cuts `bytes` into reads of `chunk` bytes (the last may be shorter).
std::vector<Bytes> split_into_chunks(ByteSpan bytes, size_t chunk);

// server_name extension with arbitrary entries (name_type, name), for malformed-SNI tests.
TlsExtension server_name_extension(const std::vector<std::pair<uint8_t, std::string>>& entries);
// ALPN extension with the given protocol names (an empty name is written as length 0).
TlsExtension alpn_extension(const std::vector<std::string>& protocols);

// An SSL 2.0-compatible CLIENT-HELLO (RFC 5246 E.2) offering `version` and three TLS 1.2 suites.
Bytes sslv2_client_hello(uint16_t version = 0x0303);
// A fatal handshake_failure alert record.
Bytes alert_record();

Bytes concat(std::initializer_list<ByteSpan> parts);

// A file's bytes; empty if it cannot be read.
Bytes read_file_bytes(const std::string& path);
struct CorpusEntry {
  std::string name;  // file name within the directory
  Bytes bytes;
};
// Every regular file directly in `dir`, sorted by name; empty if the directory is missing.
std::vector<CorpusEntry> read_corpus(const std::string& dir);

}  // namespace netfence::test
