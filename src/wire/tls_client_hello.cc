// TLS ClientHello reader; see tls_client_hello.h for the theory of operation.
//
// Layouts (RFC 8446 4.1.2 and 5.1, RFC 6066 3, RFC 7301 3.1, RFC 5246 E.2):
//   record   : type(1) version(2) length(2) fragment[length]
//   handshake: msg_type(1) length(3) body[length]              (msg_type 1 = client_hello)
//   body     : legacy_version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
//              compression_methods<1..2^8-1> [extensions<0..2^16-1>]
//   SSLv2    : 1MMMMMMM LLLLLLLL msg_type(1) version(2) ...  (length 15 bits, msg_type 1)
#include "wire/tls_client_hello.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>

namespace netfence::wire {
namespace {

constexpr uint8_t kContentChangeCipherSpec = 20;
constexpr uint8_t kContentHeartbeat = 24;
constexpr uint8_t kContentHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeaderSize = 5;
constexpr size_t kHandshakeHeaderSize = 4;
constexpr size_t kSslv2HeaderSize = 5;  // length(2) msg_type(1) version(2)
constexpr size_t kSslv2MinLength = 9;   // msg_type, version, three u16 lengths
constexpr size_t kMaxSessionId = 32;
constexpr size_t kMaxAlpnProtocols = 32;

bool is_record_type(uint8_t b) {
  return b >= kContentChangeCipherSpec && b <= kContentHeartbeat;
}
bool is_sslv2_start(uint8_t b) {
  return (b & 0x80) != 0;
}

// Checks the header bytes of a record at the start of `hdr` that are present (at most 5), given
// that the content type (byte 0) was already accepted. Returns a reason, or "" if consistent.
std::string_view check_record_header(ByteSpan hdr) {
  if (hdr.size() >= 2 && u8_at(hdr, 1) != 3) return "bad_record_version";
  if (hdr.size() < kRecordHeaderSize) return {};
  const size_t length = u16_at(hdr, 3);
  if (length == 0) return "record_empty";
  const size_t max =
      u8_at(hdr, 0) == kContentHandshake ? kMaxPlaintextRecord : kMaxCiphertextRecord;
  if (length > max) return "record_too_long";
  return {};
}

// Checks the bytes present (at most 5) of an SSLv2 CLIENT-HELLO header whose first byte has the
// high bit set. Returns a reason, or "" if consistent.
std::string_view check_sslv2_header(ByteSpan hdr) {
  if (hdr.size() >= 2 &&
      (static_cast<size_t>(u8_at(hdr, 0) & 0x7f) << 8 | u8_at(hdr, 1)) < kSslv2MinLength) {
    return "sslv2_bad_header";
  }
  if (hdr.size() >= 3 && u8_at(hdr, 2) != kHandshakeClientHello) return "sslv2_bad_header";
  // Version: 0x0002 (SSL 2.0) or 0x03xx (a v3-capable client in compatibility format).
  if (hdr.size() >= 4 && u8_at(hdr, 3) != 0 && u8_at(hdr, 3) != 3) return "sslv2_bad_header";
  if (hdr.size() >= 5 && u8_at(hdr, 3) == 0 && u8_at(hdr, 4) != 2) return "sslv2_bad_header";
  return {};
}

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_ip_literal(std::string_view name) {
  // inet_pton needs a NUL-terminated string; names reaching here are at most 253 bytes.
  std::array<char, kMaxHostNameLength + 1> buf{};
  if (name.size() >= buf.size()) return false;
  std::copy(name.begin(), name.end(), buf.begin());
  std::array<unsigned char, sizeof(in6_addr)> addr{};
  return inet_pton(AF_INET, buf.data(), addr.data()) == 1 ||
         inet_pton(AF_INET6, buf.data(), addr.data()) == 1;
}

// A cursor over one ClientHello body: every read checks the bounds first and turns the cursor
// into the failed state instead of reading past the end.
class Cursor {
 public:
  explicit Cursor(ByteSpan data) : data_(data) {}
  size_t remaining() const { return data_.size() - pos_; }
  bool empty() const { return pos_ == data_.size(); }
  bool ok() const { return ok_; }

  uint8_t u8() {
    if (!need(1)) return 0;
    return u8_at(data_, pos_++);
  }
  uint16_t u16() {
    if (!need(2)) return 0;
    const uint16_t v = u16_at(data_, pos_);
    pos_ += 2;
    return v;
  }
  ByteSpan bytes(size_t n) {
    if (!need(n)) return {};
    const ByteSpan out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

 private:
  bool need(size_t n) {
    if (ok_ && remaining() >= n) return true;
    ok_ = false;
    pos_ = data_.size();
    return false;
  }

  ByteSpan data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// server_name (RFC 6066 3). Only host_name entries have a known layout; like OpenSSL and
// BoringSSL we reject any other name type, and, as the RFC allows one name per type, a second
// host_name. Returns a reason, or "".
std::string_view parse_server_name(ByteSpan ext, ClientHelloInfo& info) {
  Cursor c(ext);
  const size_t list_length = c.u16();
  if (!c.ok() || list_length == 0 || list_length != c.remaining()) return "sni_bad_length";
  bool have_name = false;
  ByteSpan name;
  while (!c.empty()) {
    if (c.u8() != 0) return "sni_not_hostname";
    const size_t name_length = c.u16();
    const ByteSpan entry = c.bytes(name_length);
    if (!c.ok()) return "sni_bad_length";
    if (have_name) return "sni_multiple_names";
    have_name = true;
    name = entry;
  }
  if (name.empty()) return "sni_empty";
  // One trailing dot is allowed, so a valid name has at most 254 bytes: reject longer ones before
  // copying anything.
  if (name.size() > kMaxHostNameLength + 1) return "sni_bad_name";
  std::string host(as_chars(name));
  std::transform(host.begin(), host.end(), host.begin(), ascii_lower);
  if (host.back() == '.') host.pop_back();
  info.sni_absent = false;
  if (is_plausible_host_name(host)) {
    info.sni = std::move(host);
    return {};
  }
  if (is_ip_literal(host)) {
    info.sni_ip_literal = true;
    return {};
  }
  return "sni_bad_name";
}

// application_layer_protocol_negotiation (RFC 7301 3.1): ProtocolName<1..2^8-1>
// protocol_name_list<2..2^16-1>. Returns a reason, or "".
std::string_view parse_alpn(ByteSpan ext, ClientHelloInfo& info) {
  Cursor c(ext);
  const size_t list_length = c.u16();
  if (!c.ok() || list_length < 2 || list_length != c.remaining()) return "alpn_bad_length";
  while (!c.empty()) {
    const size_t length = c.u8();
    if (length == 0) return "alpn_empty_protocol";
    const ByteSpan protocol = c.bytes(length);
    if (!c.ok()) return "alpn_bad_length";
    if (info.alpn.size() == kMaxAlpnProtocols) return "alpn_too_many";
    info.alpn.emplace_back(as_chars(protocol));
  }
  return {};
}

// supported_versions in a ClientHello (RFC 8446 4.2.1): ProtocolVersion versions<2..254>.
std::string_view parse_supported_versions(ByteSpan ext, ClientHelloInfo& info) {
  Cursor c(ext);
  const size_t list_length = c.u8();
  if (!c.ok() || list_length < 2 || list_length % 2 != 0 || list_length != c.remaining()) {
    return "versions_bad_length";
  }
  info.versions.clear();
  while (!c.empty()) info.versions.push_back(c.u16());
  return {};
}

// Parses a complete ClientHello body into `info`. Returns a reason, or "" on success.
std::string_view parse_body(ByteSpan body, ClientHelloInfo& info) {
  Cursor c(body);
  info.legacy_version = c.u16();
  if (!c.ok()) return "truncated_body";
  if (info.legacy_version >> 8 != 3) return "bad_client_version";
  info.versions = {info.legacy_version};
  c.bytes(32);  // random
  const size_t session_id_length = c.u8();
  if (!c.ok()) return "truncated_body";
  if (session_id_length > kMaxSessionId) return "bad_session_id";
  c.bytes(session_id_length);
  const size_t suites_length = c.u16();
  if (!c.ok()) return "truncated_body";
  if (suites_length < 2 || suites_length % 2 != 0) return "bad_cipher_suites";
  c.bytes(suites_length);
  const size_t compression_length = c.u8();
  if (!c.ok()) return "truncated_body";
  if (compression_length == 0) return "bad_compression_methods";
  c.bytes(compression_length);
  if (!c.ok()) return "truncated_body";
  if (c.empty()) return {};  // no extensions block (allowed before TLS 1.3)

  const size_t extensions_length = c.u16();
  if (!c.ok()) return "truncated_body";
  if (extensions_length > c.remaining()) return "bad_extensions_length";
  if (extensions_length < c.remaining()) return "trailing_bytes";

  // Sorted types seen so far, for the duplicate check (RFC 8446 4.2: at most one of each type).
  std::array<uint16_t, kMaxExtensions> seen{};
  size_t count = 0;
  while (!c.empty()) {
    const uint16_t type = c.u16();
    const size_t length = c.u16();
    const ByteSpan data = c.bytes(length);
    if (!c.ok()) return "bad_extension_length";
    if (count == kMaxExtensions) return "too_many_extensions";
    const auto end = seen.begin() + count;
    const auto at = std::lower_bound(seen.begin(), end, type);
    if (at != end && *at == type) return "duplicate_extension";
    std::copy_backward(at, end, end + 1);
    *at = type;
    ++count;

    std::string_view reason;
    switch (type) {
      case kExtServerName:
        reason = parse_server_name(data, info);
        break;
      case kExtAlpn:
        reason = parse_alpn(data, info);
        break;
      case kExtSupportedVersions:
        reason = parse_supported_versions(data, info);
        break;
      case kExtEncryptedClientHello:
        info.ech_present = true;
        break;
      case kExtPreSharedKey:
        // RFC 8446 4.2.11: pre_shared_key MUST be the last extension.
        if (!c.empty()) reason = "psk_not_last";
        break;
      default:
        break;
    }
    if (!reason.empty()) return reason;
  }
  info.extension_count = count;
  return {};
}

}  // namespace

std::string_view to_string(HelloKind kind) {
  switch (kind) {
    case HelloKind::kClientHello:
      return "client_hello";
    case HelloKind::kSslv2Hello:
      return "sslv2_hello";
    case HelloKind::kNotHandshake:
      return "not_handshake";
    case HelloKind::kUnknown:
      break;
  }
  return "unknown";
}

bool is_plausible_host_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxHostNameLength) return false;
  size_t label = 0;
  bool last_label_numeric = true;
  for (const char ch : name) {
    if (ch == '.') {
      if (label == 0) return false;
      label = 0;
      last_label_numeric = true;
      continue;
    }
    const bool digit = ch >= '0' && ch <= '9';
    if (!digit && !(ch >= 'a' && ch <= 'z') && ch != '-' && ch != '_') return false;
    if (!digit) last_label_numeric = false;
    if (++label > 63) return false;
  }
  // An all-numeric top label is never a DNS name (RFC 3696 2); it is how IPv4 literals look.
  return label != 0 && !last_label_numeric;
}

TlsSniff sniff_tls(ByteSpan first_bytes) {
  if (first_bytes.empty()) return TlsSniff::kNeedMore;
  const uint8_t first = u8_at(first_bytes, 0);
  const ByteSpan hdr = first_bytes.first(std::min(first_bytes.size(), kRecordHeaderSize));
  std::string_view reason;
  if (is_record_type(first)) {
    reason = check_record_header(hdr);
  } else if (is_sslv2_start(first)) {
    reason = check_sslv2_header(hdr);
  } else {
    return TlsSniff::kNotTls;
  }
  if (!reason.empty()) return TlsSniff::kNotTls;
  return hdr.size() == kRecordHeaderSize ? TlsSniff::kTls : TlsSniff::kNeedMore;
}

ClientHelloReader::ClientHelloReader(size_t cap) : cap_(std::min(cap, kClientHelloCap)) {}

ParseState ClientHelloReader::fail(std::string_view reason) {
  info_ = ClientHelloInfo{};
  reassembly_ = {};
  reason_ = reason;
  state_ = ParseState::kInvalid;
  return state_;
}

ParseState ClientHelloReader::feed(ByteSpan all_bytes) {
  if (state_ != ParseState::kNeedMore) return state_;
  if (all_bytes.size() < seen_) return fail("input_shrank");
  seen_ = all_bytes.size();
  if (all_bytes.empty()) return state_;
  const uint8_t first = u8_at(all_bytes, 0);
  if (first == kContentHandshake) return feed_handshake(all_bytes);
  if (is_record_type(first)) return feed_other_record(all_bytes);
  if (is_sslv2_start(first)) return feed_sslv2(all_bytes);
  return fail("not_tls");
}

ParseState ClientHelloReader::feed_other_record(ByteSpan data) {
  const ByteSpan hdr = data.first(std::min(data.size(), kRecordHeaderSize));
  if (const std::string_view reason = check_record_header(hdr); !reason.empty()) {
    return fail(reason);
  }
  if (hdr.size() < kRecordHeaderSize) return state_;
  info_.kind = HelloKind::kNotHandshake;
  info_.content_type = u8_at(hdr, 0);
  info_.record_version = u16_at(hdr, 1);
  info_.consumed = kRecordHeaderSize;
  state_ = ParseState::kDone;
  return state_;
}

ParseState ClientHelloReader::feed_sslv2(ByteSpan data) {
  const ByteSpan hdr = data.first(std::min(data.size(), kSslv2HeaderSize));
  if (const std::string_view reason = check_sslv2_header(hdr); !reason.empty()) {
    return fail(reason);
  }
  if (hdr.size() < kSslv2HeaderSize) return state_;
  info_.kind = HelloKind::kSslv2Hello;
  info_.legacy_version = u16_at(hdr, 3);
  info_.versions = {info_.legacy_version};
  info_.consumed = kSslv2HeaderSize;
  state_ = ParseState::kDone;
  return state_;
}

ParseState ClientHelloReader::feed_handshake(ByteSpan data) {
  for (;;) {
    const size_t pos = next_record_;
    // The caller needs at least one more record header: it must fit under the cap.
    if (pos + kRecordHeaderSize > cap_) return fail("over_cap");
    if (data.size() <= pos) return state_;
    const ByteSpan rest = data.subspan(pos);
    if (u8_at(rest, 0) != kContentHandshake) {
      return fail(is_record_type(u8_at(rest, 0)) ? "record_type_interleaved" : "bad_record_type");
    }
    const ByteSpan hdr = rest.first(std::min(rest.size(), kRecordHeaderSize));
    if (const std::string_view reason = check_record_header(hdr); !reason.empty()) {
      return fail(reason);
    }
    if (hdr.size() < kRecordHeaderSize) return state_;
    const size_t length = u16_at(hdr, 3);
    if (pos + kRecordHeaderSize + length > cap_) return fail("over_cap");
    if (!header_counted_) {
      header_counted_ = true;
      handshake_declared_ += length;
      ++records_;
      if (records_ == 1) info_.record_version = u16_at(hdr, 1);
    }

    const size_t payload = std::min(length, rest.size() - kRecordHeaderSize);
    const size_t handshake_available = handshake_complete_ + payload;
    // The first handshake byte is the message type; it arrives in the first record.
    if (handshake_available >= 1 && u8_at(data, kRecordHeaderSize) != kHandshakeClientHello) {
      return fail("bad_handshake_type");
    }
    if (!have_message_length_ && handshake_available >= kHandshakeHeaderSize) {
      // The 4-byte handshake header may itself be split over records (1-byte records are legal).
      std::array<std::byte, kHandshakeHeaderSize> header{};
      size_t got = 0;
      for (size_t at = 0; got < header.size(); at += kRecordHeaderSize + u16_at(data, at + 3)) {
        const size_t record_length = u16_at(data, at + 3);
        const size_t present = std::min(record_length, data.size() - at - kRecordHeaderSize);
        const size_t take = std::min(present, header.size() - got);
        std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(at + kRecordHeaderSize), take,
                    header.begin() + static_cast<std::ptrdiff_t>(got));
        got += take;
      }
      have_message_length_ = true;
      message_length_ = u24_at(header, 1);
      // Even in one record the message needs this many bytes of input.
      if (kRecordHeaderSize + kHandshakeHeaderSize + size_t{message_length_} > cap_) {
        return fail("over_cap");
      }
    }
    if (have_message_length_ &&
        handshake_declared_ > kHandshakeHeaderSize + size_t{message_length_}) {
      // A record carries bytes beyond the ClientHello: another handshake message in the same
      // flight, which no client sends before the server's reply.
      return fail("trailing_handshake_data");
    }
    if (payload < length) return state_;

    // This record is complete.
    handshake_complete_ += length;
    next_record_ = pos + kRecordHeaderSize + length;
    header_counted_ = false;
    if (have_message_length_ &&
        handshake_complete_ == kHandshakeHeaderSize + size_t{message_length_}) {
      return finish(data);
    }
  }
}

ParseState ClientHelloReader::finish(ByteSpan data) {
  ByteSpan message;
  if (records_ == 1) {
    message = data.subspan(kRecordHeaderSize, handshake_complete_);
  } else {
    reassembly_.reserve(handshake_complete_);
    for (size_t at = 0; at < next_record_; at += kRecordHeaderSize + u16_at(data, at + 3)) {
      const ByteSpan fragment = data.subspan(at + kRecordHeaderSize, u16_at(data, at + 3));
      reassembly_.insert(reassembly_.end(), fragment.begin(), fragment.end());
    }
    message = reassembly_;
  }
  ClientHelloInfo info;
  const std::string_view reason = parse_body(message.subspan(kHandshakeHeaderSize), info);
  reassembly_ = {};
  if (!reason.empty()) return fail(reason);
  info.kind = HelloKind::kClientHello;
  info.content_type = kContentHandshake;
  info.record_version = info_.record_version;
  info.record_count = records_;
  info.consumed = next_record_;
  info_ = std::move(info);
  state_ = ParseState::kDone;
  return state_;
}

}  // namespace netfence::wire
