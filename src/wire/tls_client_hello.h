// Incremental reader of a TLS ClientHello: the first flight of a client connection.
//
// Theory of operation
// -------------------
// The gateway reads a connection's first bytes into its own buffer (it replays them upstream
// later) and, after every read, hands the reader *all the bytes received so far*. The reader keeps
// only offsets and counters between calls, never pointers into that buffer, so the buffer may
// grow or move. It walks TLS records (RFC 8446 5.1) as their headers arrive, validates each header
// as soon as the bytes that make it up are present, and treats the payloads of consecutive
// handshake records as one stream, so a ClientHello spanning several TCP reads and several TLS
// records is reassembled. Once the handshake message is complete it is parsed in place when it
// sits in one record, or copied once into a private buffer when it spans several (the only copy;
// it is released right after parsing). Results that must outlive the caller's buffer (the SNI and
// ALPN names) are copied into ClientHelloInfo.
//
// Every verdict is taken at the earliest byte that decides it, and in stream order, so feeding a
// message whole or one byte at a time gives the same state, reason and info (the fuzz target and
// a unit test check this). Bytes after the ClientHello's last record (0-RTT data, a
// change_cipher_spec) are not looked at. Work and memory are bounded by the cap (16 KiB by
// default): a record or handshake header that announces data beyond the cap is rejected as soon
// as it is read, without waiting for the data.
//
// Outcomes (ParseState and ClientHelloInfo::kind):
//   kNeedMore                         a valid prefix; read more (the caller owns the timeout).
//   kDone + HelloKind::kClientHello   a complete, well-formed ClientHello; sni/alpn/versions set.
//   kDone + HelloKind::kSslv2Hello    an SSL 2.0-compatible CLIENT-HELLO header: TLS, but it
//                                     cannot carry extensions, hence no SNI.
//   kDone + HelloKind::kNotHandshake  a TLS record of another content type (alert, CCS,
//                                     application data, heartbeat): TLS, but no ClientHello.
//   kInvalid                          reason() says why; "not_tls" after one byte when the first
//                                     byte is neither a TLS content type nor an SSLv2 header, so
//                                     a caller can try HTTP next.
// The states kDone and kInvalid are final: later calls return them unchanged.
//
// Not thread-safe; one reader per connection. No exceptions (except std::bad_alloc from the
// small result strings), no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "wire/parse_state.h"

namespace netfence::wire {

// Default cap on the bytes of a first flight the reader will consume (record headers included).
inline constexpr size_t kClientHelloCap = 16 * 1024;
// RFC 8446 5.1: a TLSPlaintext fragment (which every ClientHello record is) is at most 2^14 bytes.
inline constexpr size_t kMaxPlaintextRecord = 1 << 14;
// RFC 5246 6.2.3: a TLSCiphertext fragment is at most 2^14 + 2048 bytes (for non-handshake types).
inline constexpr size_t kMaxCiphertextRecord = (1 << 14) + 2048;
// More extensions than any real client sends (browsers send fewer than 25); bounds the
// duplicate check.
inline constexpr size_t kMaxExtensions = 128;
// RFC 1035: at most 253 characters in a name without its trailing dot.
inline constexpr size_t kMaxHostNameLength = 253;

inline constexpr uint16_t kExtServerName = 0;
inline constexpr uint16_t kExtAlpn = 16;
inline constexpr uint16_t kExtPreSharedKey = 41;
inline constexpr uint16_t kExtSupportedVersions = 43;
inline constexpr uint16_t kExtEncryptedClientHello = 0xfe0d;

enum class HelloKind : uint8_t {
  kUnknown,       // nothing decided yet, or kInvalid
  kClientHello,   // TLS handshake records carrying a ClientHello
  kSslv2Hello,    // SSL 2.0-compatible CLIENT-HELLO (RFC 5246 E.2): TLS-ish, never an SNI
  kNotHandshake,  // first record is alert/change_cipher_spec/application_data/heartbeat
};

// Stable names for logs: "unknown", "client_hello", "sslv2_hello", "not_handshake".
std::string_view to_string(HelloKind kind);

struct ClientHelloInfo {
  HelloKind kind = HelloKind::kUnknown;
  // server_name host_name, ASCII-lowercased, one trailing dot removed, checked to be a plausible
  // DNS name. Empty when there is no usable name: see sni_absent and sni_ip_literal.
  std::string sni;
  bool sni_absent = true;         // no server_name extension (always true unless kClientHello)
  bool sni_ip_literal = false;    // host_name was an IPv4/IPv6 literal (RFC 6066 forbids): no name
  bool ech_present = false;       // encrypted_client_hello: `sni` is only the outer public_name
  std::vector<std::string> alpn;  // protocol names in the client's order (raw bytes)
  // supported_versions (ext 43) in the client's order, GREASE values included; without that
  // extension, just legacy_version.
  std::vector<uint16_t> versions;
  uint16_t legacy_version = 0;  // ClientHello.legacy_version, or the SSLv2 hello's version
  uint16_t record_version = 0;  // version field of the first record header (0 for SSLv2)
  uint8_t content_type = 0;     // first record's content type (22 = handshake; 0 for SSLv2)
  size_t record_count = 0;      // TLS records the ClientHello spans
  size_t extension_count = 0;
  // Bytes at the start of the input that the verdict covers: for kClientHello the end of the last
  // record of the ClientHello; otherwise the header bytes examined.
  size_t consumed = 0;

  bool operator==(const ClientHelloInfo&) const = default;
};

class ClientHelloReader {
 public:
  // `cap`: most bytes of input the reader will consume; values above kClientHelloCap are
  // clamped to it (ClientHelloInfo::consumed never exceeds the cap).
  explicit ClientHelloReader(size_t cap = kClientHelloCap);

  // `all_bytes` is everything received on the connection so far; each call's input must start
  // with the previous call's input (the caller only appends). Returns kNeedMore, kDone, or
  // kInvalid (reason() set; also when the input is shorter than last time: "input_shrank").
  // Once kDone or kInvalid, returns that state again without looking at the input.
  ParseState feed(ByteSpan all_bytes);

  ParseState state() const { return state_; }
  // Valid after kDone. After kInvalid it is default-constructed (kind kUnknown, no name).
  const ClientHelloInfo& info() const { return info_; }
  // A short machine-readable token for the decision log ("record_too_long", "over_cap", ...;
  // the full list is in docs/wire-tls.md); empty unless state() is kInvalid.
  std::string_view reason() const { return reason_; }

 private:
  ParseState fail(std::string_view reason);
  ParseState feed_handshake(ByteSpan data);
  ParseState feed_other_record(ByteSpan data);
  ParseState feed_sslv2(ByteSpan data);
  ParseState finish(ByteSpan data);

  size_t cap_;
  ParseState state_ = ParseState::kNeedMore;
  std::string_view reason_;
  ClientHelloInfo info_;
  size_t seen_ = 0;                // size of the previous input
  size_t next_record_ = 0;         // offset of the first record header not yet complete
  size_t handshake_complete_ = 0;  // handshake bytes in complete records
  size_t handshake_declared_ = 0;  // handshake bytes announced by every record header read
  size_t records_ = 0;             // record headers read
  bool header_counted_ = false;    // the record at next_record_ is in handshake_declared_
  bool have_message_length_ = false;
  uint32_t message_length_ = 0;  // ClientHello body length from the handshake header
  std::vector<std::byte> reassembly_;
};

// What the first bytes of a connection say about TLS, judged on at most 5 bytes (a record header,
// or an SSLv2 hello header) with the same checks the reader applies:
enum class TlsSniff : uint8_t {
  kNeedMore,  // empty, or fewer than 5 bytes that are all consistent with TLS
  kTls,       // a plausible TLS record or SSLv2 CLIENT-HELLO header
  kNotTls,    // ruled out; usually decided by the first byte alone
};
TlsSniff sniff_tls(ByteSpan first_bytes);

// True if `name` (already lowercased, trailing dot removed) is a plausible DNS host name: 1-253
// characters, labels of 1-63 characters from [a-z0-9_-], not an IP literal. Used for the SNI.
bool is_plausible_host_name(std::string_view name);

}  // namespace netfence::wire
