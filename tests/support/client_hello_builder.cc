// Included relative to this file (not as "support/...") so bench/tls_bench.cc can compile this
// file directly: benchmarks do not link the test support library.
#include "support/client_hello_builder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace netfence::test {
namespace {

constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtSupportedGroups = 10;
constexpr uint16_t kExtEcPointFormats = 11;
constexpr uint16_t kExtSignatureAlgorithms = 13;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtPadding = 21;
constexpr uint16_t kExtExtendedMasterSecret = 23;
constexpr uint16_t kExtSupportedVersions = 43;
constexpr uint16_t kExtPskKeyExchangeModes = 45;
constexpr uint16_t kExtKeyShare = 51;
constexpr uint16_t kExtEncryptedClientHello = 0xfe0d;

// Deterministic filler for random, session ids and key shares.
class Filler {
 public:
  explicit Filler(uint32_t seed) : state_(seed) {}
  Bytes bytes(size_t n) {
    Bytes out(n);
    for (auto& b : out) {
      state_ = state_ * 1664525u + 1013904223u;
      b = static_cast<std::byte>(state_ >> 24);
    }
    return out;
  }

 private:
  uint32_t state_;
};

class Writer {
 public:
  void u8(size_t v) { out_.push_back(static_cast<std::byte>(v & 0xff)); }
  void u16(size_t v) {
    u8(v >> 8);
    u8(v);
  }
  void u24(size_t v) {
    u8(v >> 16);
    u16(v & 0xffff);
  }
  void raw(ByteSpan b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void raw(std::string_view s) { raw(as_bytes(s)); }
  // Writes a u8/u16-length-prefixed vector.
  void vec8(ByteSpan b) {
    u8(b.size());
    raw(b);
  }
  void vec16(ByteSpan b) {
    u16(b.size());
    raw(b);
  }
  Bytes take() { return std::move(out_); }
  size_t size() const { return out_.size(); }

 private:
  Bytes out_;
};

TlsExtension extension(uint16_t type, Writer&& w) {
  return {type, w.take()};
}

std::vector<TlsExtension> standard_extensions(const ClientHelloSpec& spec, Filler& filler) {
  std::vector<TlsExtension> exts;
  if (spec.sni) exts.push_back(server_name_extension({{0, *spec.sni}}));
  {
    Writer w;
    w.vec8(std::vector<std::byte>{std::byte{0}});  // uncompressed
    exts.push_back(extension(kExtEcPointFormats, std::move(w)));
  }
  {
    Writer groups;
    if (spec.post_quantum_key_share) groups.u16(kGroupX25519MlKem768);
    for (uint16_t g : {kGroupX25519, uint16_t{0x0017}, uint16_t{0x0018}}) groups.u16(g);
    Writer w;
    w.vec16(groups.take());
    exts.push_back(extension(kExtSupportedGroups, std::move(w)));
  }
  if (!spec.alpn.empty()) exts.push_back(alpn_extension(spec.alpn));
  exts.push_back({kExtExtendedMasterSecret, {}});
  {
    Writer algs;
    for (uint16_t a : {0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601}) {
      algs.u16(a);
    }
    Writer w;
    w.vec16(algs.take());
    exts.push_back(extension(kExtSignatureAlgorithms, std::move(w)));
  }
  if (!spec.supported_versions.empty()) {
    Writer versions;
    for (uint16_t v : spec.supported_versions) versions.u16(v);
    Writer list;
    list.vec8(versions.take());
    exts.push_back(extension(kExtSupportedVersions, std::move(list)));
    Writer modes;
    modes.vec8(std::vector<std::byte>{std::byte{1}});  // psk_dhe_ke
    exts.push_back(extension(kExtPskKeyExchangeModes, std::move(modes)));
    Writer shares;
    if (spec.post_quantum_key_share) {
      shares.u16(kGroupX25519MlKem768);
      shares.vec16(filler.bytes(kX25519MlKem768ShareSize));
    }
    shares.u16(kGroupX25519);
    shares.vec16(filler.bytes(32));
    Writer w;
    w.vec16(shares.take());
    exts.push_back(extension(kExtKeyShare, std::move(w)));
  }
  if (spec.ech_payload_size) {
    Writer w;
    w.u8(0);        // ECHClientHelloType outer
    w.u16(0x0001);  // HKDF-SHA256
    w.u16(0x0001);  // AES-128-GCM
    w.u8(0x42);     // config_id
    w.vec16(filler.bytes(32));
    w.vec16(filler.bytes(*spec.ech_payload_size));
    exts.push_back(extension(kExtEncryptedClientHello, std::move(w)));
  }
  for (const auto& e : spec.extra_extensions) exts.push_back(e);
  return exts;
}

Bytes body_with(const ClientHelloSpec& spec, const std::vector<TlsExtension>& exts,
                Filler& filler) {
  Writer w;
  w.u16(spec.legacy_version);
  w.raw(filler.bytes(32));
  w.vec8(filler.bytes(spec.session_id_length));
  Writer suites;
  for (uint16_t s : spec.cipher_suites) suites.u16(s);
  w.vec16(suites.take());
  w.vec8(std::vector<std::byte>{std::byte{0}});  // null compression
  Writer ext_block;
  for (const auto& e : exts) {
    ext_block.u16(e.type);
    ext_block.vec16(e.data);
  }
  w.vec16(ext_block.take());
  return w.take();
}

}  // namespace

TlsExtension server_name_extension(const std::vector<std::pair<uint8_t, std::string>>& entries) {
  Writer list;
  for (const auto& [type, name] : entries) {
    list.u8(type);
    list.vec16(as_bytes(name));
  }
  Writer w;
  w.vec16(list.take());
  return extension(kExtServerName, std::move(w));
}

TlsExtension alpn_extension(const std::vector<std::string>& protocols) {
  Writer list;
  for (const auto& p : protocols) list.vec8(as_bytes(p));
  Writer w;
  w.vec16(list.take());
  return extension(kExtAlpn, std::move(w));
}

Bytes build_client_hello_message(const ClientHelloSpec& spec) {
  Filler filler(0x5eed);
  std::vector<TlsExtension> exts = standard_extensions(spec, filler);
  Filler body_filler(0xb0d7);
  Bytes body = body_with(spec, exts, body_filler);
  const size_t size = body.size() + 4;
  if (spec.pad_to > size) {
    const size_t gap = spec.pad_to - size;
    exts.push_back({kExtPadding, Bytes(gap >= 4 ? gap - 4 : 0)});
    body_filler = Filler(0xb0d7);
    body = body_with(spec, exts, body_filler);
  }
  Writer w;
  w.u8(1);
  w.u24(body.size());
  w.raw(body);
  return w.take();
}

Bytes build_client_hello(const ClientHelloSpec& spec, size_t records) {
  return split_into_records(build_client_hello_message(spec), records);
}

Bytes tls_record(uint8_t content_type, uint16_t version, ByteSpan payload) {
  Writer w;
  w.u8(content_type);
  w.u16(version);
  w.u16(payload.size() & 0xffff);
  w.raw(payload);
  return w.take();
}

Bytes split_into_records(ByteSpan message, size_t records, uint16_t version) {
  records = std::clamp<size_t>(records, 1, std::max<size_t>(message.size(), 1));
  Bytes out;
  size_t at = 0;
  for (size_t i = 0; i < records; ++i) {
    const size_t n = message.size() / records + (i < message.size() % records ? 1 : 0);
    const Bytes record = tls_record(22, version, message.subspan(at, n));
    out.insert(out.end(), record.begin(), record.end());
    at += n;
  }
  return out;
}

Bytes records_of_size(ByteSpan message, size_t fragment, uint16_t version) {
  fragment = std::max<size_t>(fragment, 1);
  Bytes out;
  for (size_t at = 0; at < message.size(); at += fragment) {
    const Bytes record =
        tls_record(22, version, message.subspan(at, std::min(fragment, message.size() - at)));
    out.insert(out.end(), record.begin(), record.end());
  }
  return out;
}

std::vector<Bytes> split_into_chunks(ByteSpan bytes, size_t chunk) {
  chunk = std::max<size_t>(chunk, 1);
  std::vector<Bytes> out;
  for (size_t at = 0; at < bytes.size(); at += chunk) {
    const ByteSpan piece = bytes.subspan(at, std::min(chunk, bytes.size() - at));
    out.emplace_back(piece.begin(), piece.end());
  }
  return out;
}

Bytes sslv2_client_hello(uint16_t version) {
  Writer body;
  body.u8(1);  // CLIENT-HELLO
  body.u16(version);
  // Three-byte SSLv2 cipher specs: 0x00 + a TLS suite.
  const uint8_t specs[] = {0x00, 0xc0, 0x2f, 0x00, 0xc0, 0x2b, 0x00, 0x00, 0x9c};
  body.u16(sizeof specs);
  body.u16(0);   // session id length
  body.u16(16);  // challenge length
  for (const uint8_t b : specs) body.u8(b);
  body.raw(Filler(0x55).bytes(16));
  const Bytes b = body.take();
  Writer w;
  w.u16(0x8000 | b.size());
  w.raw(b);
  return w.take();
}

Bytes alert_record() {
  const std::byte alert[] = {std::byte{2}, std::byte{40}};  // fatal, handshake_failure
  return tls_record(21, 0x0303, alert);
}

Bytes concat(std::initializer_list<ByteSpan> parts) {
  Bytes out;
  for (const ByteSpan p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  Bytes out(chars.size());
  std::transform(chars.begin(), chars.end(), out.begin(),
                 [](char c) { return static_cast<std::byte>(c); });
  return out;
}

std::vector<CorpusEntry> read_corpus(const std::string& dir) {
  std::vector<CorpusEntry> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    out.push_back({entry.path().filename().string(), read_file_bytes(entry.path().string())});
  }
  std::sort(out.begin(), out.end(),
            [](const CorpusEntry& a, const CorpusEntry& b) { return a.name < b.name; });
  return out;
}

}  // namespace netfence::test
