// Unit tests of the incremental TLS ClientHello reader (src/wire/tls_client_hello.h).
#include "wire/tls_client_hello.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/client_hello_builder.h"

namespace netfence::wire {
namespace {

using test::Bytes;
using test::ClientHelloSpec;

const std::string kCorpusDir = NETFENCE_SOURCE_DIR "/fuzz/corpus/tls_client_hello";

Bytes corpus_file(const std::string& name) {
  Bytes b = test::read_file_bytes(kCorpusDir + "/" + name);
  EXPECT_FALSE(b.empty()) << "missing corpus file " << name;
  return b;
}

Bytes text(std::string_view s) {
  const ByteSpan b = as_bytes(s);
  return {b.begin(), b.end()};
}

Bytes hex(std::initializer_list<int> values) {
  Bytes out;
  for (const int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

struct Outcome {
  ParseState state;
  std::string reason;
  ClientHelloInfo info;
  size_t fed;  // input length at which the state became final (or the whole input)
};

// Feeds growing prefixes of `bytes`, `chunk` bytes more each time, as a gateway would after
// each read; stops at the first final state.
Outcome feed_in_chunks(ByteSpan bytes, size_t chunk, size_t cap = kClientHelloCap) {
  ClientHelloReader reader(cap);
  ParseState state = reader.feed(bytes.first(0));
  size_t fed = 0;
  while (state == ParseState::kNeedMore && fed < bytes.size()) {
    fed = std::min(bytes.size(), fed + chunk);
    state = reader.feed(bytes.first(fed));
  }
  return {state, std::string(reader.reason()), reader.info(), fed};
}

Outcome feed_whole(ByteSpan bytes, size_t cap = kClientHelloCap) {
  return feed_in_chunks(bytes, std::max<size_t>(bytes.size(), 1), cap);
}

Bytes hello(const ClientHelloSpec& spec, size_t records = 1) {
  return test::build_client_hello(spec, records);
}

Bytes hello_with_sni(std::string sni) {
  ClientHelloSpec spec;
  spec.sni = std::move(sni);
  return hello(spec);
}

// --- BoxLite GB/sni_peek_test.go #12-15, adapted -------------------------------------------

// #12 TestPeekSNI_ExtractsSNI: a real client's hello (here: openssl s_client captured on
// loopback, see scripts/capture-client-hellos.sh) yields its name. BoxLite also checked that the
// peek consumed nothing; our reader never consumes: it reports how many bytes the hello covers
// and the caller keeps its buffer to replay.
TEST(TlsClientHello, BoxLite12RealClientHelloYieldsServerName) {
  const Bytes b = corpus_file("real_openssl_s_client_api_openai_com");
  const Outcome out = feed_whole(b);
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.kind, HelloKind::kClientHello);
  EXPECT_EQ(out.info.sni, "api.openai.com");
  EXPECT_FALSE(out.info.sni_absent);
  EXPECT_EQ(out.info.consumed, b.size());
}

// #13 TestPeekSNI_DifferentHostname.
TEST(TlsClientHello, BoxLite13DifferentHostName) {
  const Outcome out = feed_whole(corpus_file("real_openssl_s_client_api_anthropic_com"));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.sni, "api.anthropic.com");
}

// #14 TestPeekSNI_NotTLS: an HTTP request is not TLS, and the reader says so after one byte so
// the gateway can try the HTTP parser at once.
TEST(TlsClientHello, BoxLite14HttpBytesAreNotTls) {
  const Bytes http = text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
  const Outcome whole = feed_whole(http);
  EXPECT_EQ(whole.state, ParseState::kInvalid);
  EXPECT_EQ(whole.reason, "not_tls");
  const Outcome one = feed_in_chunks(http, 1);
  EXPECT_EQ(one.state, ParseState::kInvalid);
  EXPECT_EQ(one.fed, 1u);
  EXPECT_EQ(sniff_tls(ByteSpan(http).first(1)), TlsSniff::kNotTls);
}

// #15 TestPeekSNI_EmptyInput: BoxLite returned "" (blocked); an incremental reader must wait.
TEST(TlsClientHello, BoxLite15EmptyInputNeedsMore) {
  ClientHelloReader reader;
  EXPECT_EQ(reader.feed({}), ParseState::kNeedMore);
  EXPECT_EQ(reader.reason(), "");
  EXPECT_EQ(sniff_tls({}), TlsSniff::kNeedMore);
}

// --- Real clients captured on this machine -------------------------------------------------

TEST(TlsClientHello, RealClientsFromCorpus) {
  struct Case {
    const char* file;
    const char* sni;  // "" = no name expected
    std::vector<std::string> alpn;
    bool tls13;
  };
  const std::vector<Case> cases = {
      {"real_openssl_s_client_example_com", "example.com", {}, true},
      {"real_openssl_s_client_tls1_2", "example.com", {}, false},
      {"real_openssl_s_client_tls1_3_groups", "example.com", {}, true},
      {"real_openssl_s_client_alpn", "example.com", {"h2", "http/1.1"}, true},
      {"real_openssl_s_client_uppercase_sni", "www.example.com", {}, true},
      {"real_openssl_s_client_no_sni", "", {}, true},
      {"real_curl_example_com", "example.com", {"h2", "http/1.1"}, true},
      {"real_curl_tls1_2_http1_1", "api.example.com", {"http/1.1"}, false},
      {"real_python_ssl", "pypi.org", {"h2", "http/1.1"}, true},
      {"real_node_tls", "registry.npmjs.org", {"h2", "http/1.1"}, true},
      {"real_java_sslsocket", "repo.maven.apache.org", {"h2", "http/1.1"}, true},
      {"real_wget_gnutls_localhost", "localhost", {}, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    const Outcome out = feed_whole(corpus_file(c.file));
    ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
    EXPECT_EQ(out.info.kind, HelloKind::kClientHello);
    EXPECT_EQ(out.info.sni, c.sni);
    EXPECT_EQ(out.info.sni_absent, std::string_view(c.sni).empty());
    EXPECT_EQ(out.info.alpn, c.alpn);
    EXPECT_FALSE(out.info.ech_present);
    const bool offers_13 = std::find(out.info.versions.begin(), out.info.versions.end(), 0x0304) !=
                           out.info.versions.end();
    EXPECT_EQ(offers_13, c.tls13);
    EXPECT_EQ(out.info.legacy_version, 0x0303);
  }
}

// --- "Done when": a post-quantum-sized hello over several records and reads -------------------

// An X25519MLKEM768 key share (1,216 bytes) makes the hello ~1.8 KB: bigger than one TCP segment
// on many paths (peers.md 5.10) and, here, also split into three TLS records (5.11). Delivered in
// 100-byte reads, the reader must wait for the last byte and then yield the SNI.
TEST(TlsClientHello, PostQuantumHelloInThreeRecordsDeliveredIn100ByteReadsYieldsSni) {
  ClientHelloSpec spec;
  spec.sni = "api.example.com";
  spec.alpn = {"h2", "http/1.1"};
  spec.post_quantum_key_share = true;  // alone: ~1.45 KB with the builder's few extensions
  spec.pad_to = 1800;  // Chrome's other extensions (GREASE ECH, ALPS, ...) bring it to ~1.8 KB
  const Bytes message = test::build_client_hello_message(spec);
  ASSERT_GE(message.size(), 1700u);
  ASSERT_LE(message.size(), 1900u);
  const Bytes wire = test::split_into_records(message, 3);
  ASSERT_EQ(wire.size(), message.size() + 15);

  ClientHelloReader reader;
  Bytes received;
  const std::vector<Bytes> reads = test::split_into_chunks(wire, 100);
  ASSERT_EQ(reads.size(), (wire.size() + 99) / 100);
  for (size_t i = 0; i < reads.size(); ++i) {
    received.insert(received.end(), reads[i].begin(), reads[i].end());
    const ParseState state = reader.feed(received);
    if (i + 1 < reads.size()) {
      ASSERT_EQ(state, ParseState::kNeedMore) << "read " << i << ": " << reader.reason();
    } else {
      ASSERT_EQ(state, ParseState::kDone) << reader.reason();
    }
  }
  const ClientHelloInfo& info = reader.info();
  EXPECT_EQ(info.kind, HelloKind::kClientHello);
  EXPECT_EQ(info.sni, "api.example.com");
  EXPECT_EQ(info.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(info.versions, (std::vector<uint16_t>{0x0304, 0x0303}));
  EXPECT_EQ(info.record_count, 3u);
  EXPECT_EQ(info.consumed, wire.size());
}

// --- Chunking never changes the verdict --------------------------------------------------------

TEST(TlsClientHello, CorpusByteAtATimeMatchesWhole) {
  const std::vector<test::CorpusEntry> corpus = test::read_corpus(kCorpusDir);
  ASSERT_FALSE(corpus.empty()) << "empty corpus at " << kCorpusDir;
  size_t done = 0;
  for (const auto& entry : corpus) {
    SCOPED_TRACE(entry.name);
    const Outcome whole = feed_whole(entry.bytes);
    const Outcome bytewise = feed_in_chunks(entry.bytes, 1);
    EXPECT_EQ(whole.state, bytewise.state);
    EXPECT_EQ(whole.reason, bytewise.reason);
    EXPECT_EQ(whole.info, bytewise.info);
    for (const size_t chunk : {7u, 100u, 1460u}) {
      const Outcome chunked = feed_in_chunks(entry.bytes, chunk);
      EXPECT_EQ(whole.state, chunked.state) << "chunk " << chunk;
      EXPECT_EQ(whole.info, chunked.info) << "chunk " << chunk;
    }
    if (whole.state == ParseState::kDone) ++done;
  }
  EXPECT_GT(done, 10u);
}

TEST(TlsClientHello, EveryProperPrefixNeedsMore) {
  ClientHelloSpec spec;
  spec.alpn = {"h2"};
  const Bytes b = hello(spec, 2);
  for (size_t n = 0; n < b.size(); ++n) {
    ClientHelloReader reader;
    ASSERT_EQ(reader.feed(ByteSpan(b).first(n)), ParseState::kNeedMore) << n;
  }
  ClientHelloReader reader;
  EXPECT_EQ(reader.feed(b), ParseState::kDone);
}

TEST(TlsClientHello, OneByteRecordsSplitTheHandshakeHeader) {
  ClientHelloSpec spec;
  spec.sni = "one.example";
  const Bytes message = test::build_client_hello_message(spec);
  const Bytes wire = test::records_of_size(message, 1);
  const Outcome out = feed_in_chunks(wire, 3);
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.sni, "one.example");
  EXPECT_EQ(out.info.record_count, message.size());
}

TEST(TlsClientHello, BytesAfterTheHelloAreNotRead) {
  // A 0-RTT client follows its hello with change_cipher_spec and early data.
  const Bytes h = hello(ClientHelloSpec{});
  const Bytes ccs = test::tls_record(20, 0x0303, hex({1}));
  const Bytes early = test::tls_record(23, 0x0303, Bytes(300, std::byte{0xee}));
  const Outcome out = feed_whole(test::concat({h, ccs, early}));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.consumed, h.size());
}

// --- Caps and record headers ---------------------------------------------------------------------

TEST(TlsClientHello, HelloFillingTheCapExactlyIsAccepted) {
  ClientHelloSpec spec;
  spec.pad_to = kClientHelloCap - 10;  // two record headers
  const Bytes b = hello(spec, 2);
  ASSERT_EQ(b.size(), kClientHelloCap);
  const Outcome out = feed_in_chunks(b, 1000);
  EXPECT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.consumed, kClientHelloCap);
}

TEST(TlsClientHello, OneByteOverTheCapIsRejectedFromTheHeaders) {
  ClientHelloSpec spec;
  spec.pad_to = kClientHelloCap - 9;
  const Bytes b = hello(spec, 2);
  ASSERT_EQ(b.size(), kClientHelloCap + 1);
  // The handshake header alone shows the message cannot fit in one record under the cap; with
  // two records it is the second record header that crosses it.
  const Outcome out = feed_in_chunks(b, 1);
  EXPECT_EQ(out.state, ParseState::kInvalid);
  EXPECT_EQ(out.reason, "over_cap");
  EXPECT_LT(out.fed, b.size() / 2 + 10);
}

TEST(TlsClientHello, OverCapKnownFromTheHandshakeHeader) {
  ClientHelloSpec spec;
  spec.pad_to = 17000;
  const Bytes b = hello(spec, 2);
  const Outcome out = feed_in_chunks(b, 1);
  EXPECT_EQ(out.state, ParseState::kInvalid);
  EXPECT_EQ(out.reason, "over_cap");
  EXPECT_EQ(out.fed, 9u);  // record header + handshake header
}

TEST(TlsClientHello, SmallerCapIsHonoured) {
  const Bytes b = hello(ClientHelloSpec{});
  EXPECT_EQ(feed_whole(b, b.size()).state, ParseState::kDone);
  const Outcome out = feed_whole(b, b.size() - 1);
  EXPECT_EQ(out.state, ParseState::kInvalid);
  EXPECT_EQ(out.reason, "over_cap");
}

TEST(TlsClientHello, RecordHeaderChecks) {
  struct Case {
    Bytes bytes;
    const char* reason;
    size_t decided_at;
  };
  const std::vector<Case> cases = {
      {hex({0x16, 0x02, 0x01, 0x00, 0x10}), "bad_record_version", 2},
      {hex({0x16, 0x03, 0x01, 0x00, 0x00}), "record_empty", 5},
      {hex({0x16, 0x03, 0x01, 0x40, 0x01}), "record_too_long", 5},
      {hex({0x16, 0x03, 0x01, 0xff, 0xff}), "record_too_long", 5},
      {hex({0x15, 0x03, 0x03, 0x48, 0x01}), "record_too_long", 5},  // 2^14 + 2049
      {hex({0x15, 0x04, 0x03, 0x00, 0x02}), "bad_record_version", 2},
      {hex({0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00}), "bad_handshake_type", 6},
      // BoxLite's TestPeekHTTPHost_NotHTTP bytes: a one-byte ClientHello body.
      {hex({0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03}), "truncated_body", 10},
      // The record holds more than the handshake message announces.
      {hex({0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x01, 0x03}), "trailing_handshake_data",
       9},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.reason);
    const Outcome out = feed_in_chunks(c.bytes, 1);
    EXPECT_EQ(out.state, ParseState::kInvalid);
    EXPECT_EQ(out.reason, c.reason);
    EXPECT_EQ(out.fed, c.decided_at);
  }
}

TEST(TlsClientHello, NonHandshakeRecordBetweenFragmentsIsInvalid) {
  const Bytes message = test::build_client_hello_message(ClientHelloSpec{});
  const ByteSpan m(message);
  const Bytes first = test::tls_record(22, 0x0301, m.first(50));
  const Bytes rest = test::tls_record(22, 0x0301, m.subspan(50));
  Outcome out = feed_whole(test::concat({first, test::alert_record(), rest}));
  EXPECT_EQ(out.state, ParseState::kInvalid);
  EXPECT_EQ(out.reason, "record_type_interleaved");
  out = feed_whole(test::concat({first, hex({0x42, 0x03, 0x01, 0x00, 0x01, 0x00}), rest}));
  EXPECT_EQ(out.reason, "bad_record_type");
}

// --- Outcomes that are TLS but carry no name -------------------------------------------------

TEST(TlsClientHello, Sslv2CompatibleHelloIsTlsWithoutSni) {
  const Bytes b = test::sslv2_client_hello(0x0303);
  const Outcome out = feed_in_chunks(b, 1);
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.kind, HelloKind::kSslv2Hello);
  EXPECT_TRUE(out.info.sni_absent);
  EXPECT_EQ(out.info.sni, "");
  EXPECT_EQ(out.info.legacy_version, 0x0303);
  EXPECT_EQ(out.fed, 5u);
  EXPECT_EQ(sniff_tls(b), TlsSniff::kTls);
  EXPECT_EQ(feed_whole(test::sslv2_client_hello(0x0002)).info.kind, HelloKind::kSslv2Hello);
}

TEST(TlsClientHello, MalformedSslv2HeadersAreInvalid) {
  for (const Bytes& b :
       {hex({0x80, 0x05, 0x01, 0x03, 0x01}), hex({0x80, 0x40, 0x02, 0x03, 0x01}),
        hex({0x80, 0x40, 0x01, 0x01, 0x01}), hex({0x80, 0x40, 0x01, 0x00, 0x03})}) {
    const Outcome out = feed_in_chunks(b, 1);
    EXPECT_EQ(out.state, ParseState::kInvalid);
    EXPECT_EQ(out.reason, "sslv2_bad_header");
    EXPECT_EQ(sniff_tls(b), TlsSniff::kNotTls);
  }
}

TEST(TlsClientHello, AlertRecordIsTlsButNotAHandshake) {
  const Outcome out = feed_in_chunks(test::alert_record(), 1);
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.kind, HelloKind::kNotHandshake);
  EXPECT_EQ(out.info.content_type, 21);
  EXPECT_EQ(out.info.record_version, 0x0303);
  EXPECT_TRUE(out.info.sni_absent);
  EXPECT_EQ(out.fed, 5u);
  EXPECT_EQ(to_string(out.info.kind), "not_handshake");
}

TEST(TlsClientHello, FirstByteDecidesWhatIsNotTls) {
  for (int b = 0; b < 256; ++b) {
    const Bytes one = hex({b});
    ClientHelloReader reader;
    const ParseState state = reader.feed(one);
    const bool tls_start = (b >= 20 && b <= 24) || b >= 0x80;
    EXPECT_EQ(state, tls_start ? ParseState::kNeedMore : ParseState::kInvalid) << b;
    EXPECT_EQ(sniff_tls(one), tls_start ? TlsSniff::kNeedMore : TlsSniff::kNotTls) << b;
    EXPECT_EQ(reader.reason(), tls_start ? "" : "not_tls") << b;
  }
}

TEST(TlsClientHello, SniffJudgesAtMostTheRecordHeader) {
  const Bytes h = hello(ClientHelloSpec{});
  EXPECT_EQ(sniff_tls(ByteSpan(h).first(4)), TlsSniff::kNeedMore);
  EXPECT_EQ(sniff_tls(ByteSpan(h).first(5)), TlsSniff::kTls);
  EXPECT_EQ(sniff_tls(h), TlsSniff::kTls);
  EXPECT_EQ(sniff_tls(hex({0x16, 0x03, 0x01, 0x00, 0x00})), TlsSniff::kNotTls);
  EXPECT_EQ(sniff_tls(hex({0x16, 0x01})), TlsSniff::kNotTls);
  EXPECT_EQ(sniff_tls(text("PRI * HTTP/2.0")), TlsSniff::kNotTls);
  EXPECT_EQ(sniff_tls(test::alert_record()), TlsSniff::kTls);
}

// --- Extensions ----------------------------------------------------------------------------------

TEST(TlsClientHello, EncryptedClientHelloIsDetected) {
  ClientHelloSpec spec;
  spec.sni = "cloudflare-ech.com";  // the outer public_name, never the real destination
  spec.ech_payload_size = 239;
  const Outcome out = feed_whole(hello(spec));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_TRUE(out.info.ech_present);
  EXPECT_EQ(out.info.sni, "cloudflare-ech.com");
  EXPECT_FALSE(feed_whole(hello(ClientHelloSpec{})).info.ech_present);
}

TEST(TlsClientHello, AlpnListIsReturnedInOrder) {
  ClientHelloSpec spec;
  spec.alpn = {"h2", "http/1.1", "acme-tls/1"};
  const Outcome out = feed_whole(hello(spec));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.alpn, spec.alpn);
}

TEST(TlsClientHello, MalformedAlpnIsInvalid) {
  ClientHelloSpec spec;
  spec.extra_extensions = {test::alpn_extension({"h2", ""})};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "alpn_empty_protocol");
  spec.extra_extensions = {{kExtAlpn, hex({0x00, 0x00})}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "alpn_bad_length");
  spec.extra_extensions = {{kExtAlpn, hex({0x00, 0x04, 0x02, 'h', '2'})}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "alpn_bad_length");
  spec.extra_extensions = {{kExtAlpn, hex({0x00, 0x03, 0x03, 'h', '2'})}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "alpn_bad_length");
}

TEST(TlsClientHello, SupportedVersionsOrLegacyVersion) {
  ClientHelloSpec spec;
  spec.supported_versions = {0x7a7a, 0x0304, 0x0303};  // GREASE first, as Chrome does
  EXPECT_EQ(feed_whole(hello(spec)).info.versions, spec.supported_versions);
  spec.supported_versions = {};
  spec.legacy_version = 0x0301;
  const Outcome out = feed_whole(hello(spec));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.versions, std::vector<uint16_t>{0x0301});
  EXPECT_EQ(out.info.legacy_version, 0x0301);

  spec.extra_extensions = {{kExtSupportedVersions, hex({0x03, 0x03, 0x04, 0x03})}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "versions_bad_length");
  spec.extra_extensions = {{kExtSupportedVersions, hex({0x02, 0x03, 0x04, 0x03})}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "versions_bad_length");
}

TEST(TlsClientHello, DuplicateExtensionsAreInvalid) {
  ClientHelloSpec spec;
  spec.alpn = {"h2"};
  spec.extra_extensions = {test::alpn_extension({"http/1.1"})};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "duplicate_extension");
  spec = ClientHelloSpec{};
  spec.extra_extensions = {test::server_name_extension({{0, "evil.example"}})};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "duplicate_extension");
  spec = ClientHelloSpec{};
  spec.extra_extensions = {{0x1234, {}}, {0x4321, {}}, {0x1234, hex({1})}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "duplicate_extension");
}

TEST(TlsClientHello, ExtensionCountIsBounded) {
  ClientHelloSpec spec;
  spec.sni = std::nullopt;
  spec.supported_versions = {};
  // 4 standard extensions without SNI and TLS 1.3: 124 extra ones reach the limit exactly.
  for (uint16_t t = 0; t < 124; ++t) spec.extra_extensions.push_back({uint16_t(0x2000 + t), {}});
  Outcome out = feed_whole(hello(spec));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.extension_count, kMaxExtensions);
  spec.extra_extensions.push_back({0x3000, {}});
  out = feed_whole(hello(spec));
  EXPECT_EQ(out.reason, "too_many_extensions");
}

TEST(TlsClientHello, PreSharedKeyMustBeLast) {
  ClientHelloSpec spec;
  spec.extra_extensions = {{kExtPreSharedKey, hex({0, 0})}, {0x1234, {}}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "psk_not_last");
  spec.extra_extensions = {{0x1234, {}}, {kExtPreSharedKey, hex({0, 0})}};
  EXPECT_EQ(feed_whole(hello(spec)).state, ParseState::kDone);
}

TEST(TlsClientHello, ExtensionLengthsMustAddUp) {
  Bytes message = test::build_client_hello_message(ClientHelloSpec{});
  // The last extension (key_share, at the end of the message) claims one more byte.
  Bytes longer = message;
  const size_t ks = longer.size() - 32 - 2 - 2 - 2 - 2 - 2;  // type(2) len(2) list(2) group len
  ASSERT_EQ(u16_at(longer, ks), 51);
  longer[ks + 3] = static_cast<std::byte>(u8_at(longer, ks + 3) + 1);
  EXPECT_EQ(feed_whole(test::split_into_records(longer, 1)).reason, "bad_extension_length");
  // A truncated body: the handshake length is cut to end inside the cipher suites.
  Bytes shorter(message.begin(), message.begin() + 4 + 2 + 32 + 1 + 32 + 3);
  shorter[1] = std::byte{0};
  shorter[2] = std::byte{0};
  shorter[3] = static_cast<std::byte>(shorter.size() - 4);
  EXPECT_EQ(feed_whole(test::split_into_records(shorter, 1)).reason, "truncated_body");
}

TEST(TlsClientHello, BodyFieldChecks) {
  ClientHelloSpec spec;
  spec.session_id_length = 33;
  EXPECT_EQ(feed_whole(hello(spec)).reason, "bad_session_id");
  spec = ClientHelloSpec{};
  spec.cipher_suites = {};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "bad_cipher_suites");
  spec = ClientHelloSpec{};
  spec.legacy_version = 0x0200;
  EXPECT_EQ(feed_whole(hello(spec)).reason, "bad_client_version");
}

TEST(TlsClientHello, HelloWithoutExtensionBlockIsAccepted) {
  // legacy_version, random, empty session id, one suite, null compression: no extensions at all.
  Bytes body = hex({0x03, 0x01});
  body.resize(2 + 32);
  const Bytes tail = hex({0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00});
  body.insert(body.end(), tail.begin(), tail.end());
  const Bytes message = test::concat({hex({1, 0, 0, static_cast<int>(body.size())}), body});
  const Outcome out = feed_whole(test::split_into_records(message, 1));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_TRUE(out.info.sni_absent);
  EXPECT_EQ(out.info.extension_count, 0u);
  EXPECT_EQ(out.info.versions, std::vector<uint16_t>{0x0301});
}

// --- SNI
// -------------------------------------------------------------------------------------------

TEST(TlsClientHello, UppercaseSniIsLowercased) {
  const Outcome out = feed_whole(hello_with_sni("API.Example.COM"));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_EQ(out.info.sni, "api.example.com");
}

TEST(TlsClientHello, OneTrailingDotIsStripped) {
  EXPECT_EQ(feed_whole(hello_with_sni("example.com.")).info.sni, "example.com");
  EXPECT_EQ(feed_whole(hello_with_sni("example.com..")).reason, "sni_bad_name");
  EXPECT_EQ(feed_whole(hello_with_sni(".")).reason, "sni_bad_name");
}

TEST(TlsClientHello, ZeroLengthSniIsInvalid) {
  const Outcome out = feed_whole(hello_with_sni(""));
  EXPECT_EQ(out.state, ParseState::kInvalid);
  EXPECT_EQ(out.reason, "sni_empty");
}

TEST(TlsClientHello, AbsentSniIsReported) {
  ClientHelloSpec spec;
  spec.sni = std::nullopt;
  const Outcome out = feed_whole(hello(spec));
  ASSERT_EQ(out.state, ParseState::kDone) << out.reason;
  EXPECT_TRUE(out.info.sni_absent);
  EXPECT_EQ(out.info.sni, "");
}

TEST(TlsClientHello, NonHostNameSniTypesAreInvalid) {
  ClientHelloSpec spec;
  spec.sni = std::nullopt;
  spec.extra_extensions = {test::server_name_extension({{1, "example.com"}})};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "sni_not_hostname");
  spec.extra_extensions = {test::server_name_extension({{0, "example.com"}, {7, "x"}})};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "sni_not_hostname");
}

TEST(TlsClientHello, SeveralHostNamesAreInvalid) {
  ClientHelloSpec spec;
  spec.sni = std::nullopt;
  spec.extra_extensions = {
      test::server_name_extension({{0, "allowed.example.com"}, {0, "evil.example"}})};
  const Outcome out = feed_whole(hello(spec));
  EXPECT_EQ(out.state, ParseState::kInvalid);
  EXPECT_EQ(out.reason, "sni_multiple_names");
}

TEST(TlsClientHello, MalformedSniListsAreInvalid) {
  ClientHelloSpec spec;
  spec.sni = std::nullopt;
  for (const Bytes& data : {Bytes{}, hex({0x00}), hex({0x00, 0x00}), hex({0x00, 0x05, 0x00})}) {
    spec.extra_extensions = {{kExtServerName, data}};
    EXPECT_EQ(feed_whole(hello(spec)).reason, "sni_bad_length");
  }
  // host_name length runs past the list
  spec.extra_extensions = {{kExtServerName, hex({0x00, 0x05, 0x00, 0x00, 0x09, 'a', 'b'})}};
  EXPECT_EQ(feed_whole(hello(spec)).reason, "sni_bad_length");
}

TEST(TlsClientHello, SniMustBeAPlausibleHostName) {
  for (const char* bad : {"exa mple.com", "example..com", "ex/ample.com", "caf\xc3\xa9.com",
                          "1.2.3", "999.1.1.1", "[::1]", "example.123"}) {
    EXPECT_EQ(feed_whole(hello_with_sni(bad)).reason, "sni_bad_name") << bad;
  }
  EXPECT_EQ(feed_whole(hello_with_sni(std::string("a\0b.com", 7))).reason, "sni_bad_name");
  const std::string label63(63, 'a');
  EXPECT_EQ(feed_whole(hello_with_sni(label63 + ".com")).info.sni, label63 + ".com");
  EXPECT_EQ(feed_whole(hello_with_sni(label63 + "a.com")).reason, "sni_bad_name");
  std::string name253;
  while (name253.size() < 253) name253 += name253.empty() ? "a" : ".a";
  ASSERT_EQ(name253.size(), 253u);
  EXPECT_EQ(feed_whole(hello_with_sni(name253)).info.sni, name253);
  EXPECT_EQ(feed_whole(hello_with_sni(name253 + ".")).info.sni, name253);
  EXPECT_EQ(feed_whole(hello_with_sni("b" + name253)).reason, "sni_bad_name");
  EXPECT_EQ(feed_whole(hello_with_sni(std::string(3000, 'a'))).reason, "sni_bad_name");
  EXPECT_EQ(feed_whole(hello_with_sni("xn--caf-dma.example")).info.sni, "xn--caf-dma.example");
  EXPECT_EQ(feed_whole(hello_with_sni("_acme.example")).info.sni, "_acme.example");
}

TEST(TlsClientHello, IpLiteralSniMeansNoName) {
  for (const char* ip : {"192.0.2.1", "2001:db8::1", "::FFFF:127.0.0.1"}) {
    const Outcome out = feed_whole(hello_with_sni(ip));
    ASSERT_EQ(out.state, ParseState::kDone) << ip << ": " << out.reason;
    EXPECT_EQ(out.info.sni, "") << ip;
    EXPECT_TRUE(out.info.sni_ip_literal) << ip;
    EXPECT_FALSE(out.info.sni_absent) << ip;
  }
}

TEST(TlsClientHello, HostNameValidator) {
  EXPECT_TRUE(is_plausible_host_name("localhost"));
  EXPECT_TRUE(is_plausible_host_name("a.b-c.d1"));
  EXPECT_FALSE(is_plausible_host_name(""));
  EXPECT_FALSE(is_plausible_host_name("Example.com"));  // callers lowercase first
  EXPECT_FALSE(is_plausible_host_name("example.com."));
  EXPECT_FALSE(is_plausible_host_name(".example.com"));
  EXPECT_FALSE(is_plausible_host_name("10.0.0.1"));
}

// --- Reader contract ---------------------------------------------------------------------------

TEST(TlsClientHello, FinalStatesAreSticky) {
  const Bytes h = hello(ClientHelloSpec{});
  ClientHelloReader reader;
  ASSERT_EQ(reader.feed(h), ParseState::kDone);
  EXPECT_EQ(reader.feed(text("garbage")), ParseState::kDone);
  EXPECT_EQ(reader.info().sni, "example.com");

  ClientHelloReader bad;
  ASSERT_EQ(bad.feed(text("G")), ParseState::kInvalid);
  EXPECT_EQ(bad.feed(h), ParseState::kInvalid);
  EXPECT_EQ(bad.reason(), "not_tls");
  EXPECT_EQ(bad.info(), ClientHelloInfo{});
}

TEST(TlsClientHello, ShrinkingInputBreaksTheContract) {
  const Bytes h = hello(ClientHelloSpec{});
  ClientHelloReader reader;
  ASSERT_EQ(reader.feed(ByteSpan(h).first(20)), ParseState::kNeedMore);
  EXPECT_EQ(reader.feed(ByteSpan(h).first(10)), ParseState::kInvalid);
  EXPECT_EQ(reader.reason(), "input_shrank");
}

TEST(TlsClientHello, BufferMayMoveBetweenCalls) {
  // The gateway's buffer can reallocate: the reader must keep offsets, not pointers.
  const Bytes h = hello(ClientHelloSpec{}, 3);
  ClientHelloReader reader;
  std::vector<Bytes> copies;
  ParseState state = ParseState::kNeedMore;
  for (size_t n = 1; n <= h.size() && state == ParseState::kNeedMore; n += 13) {
    copies.emplace_back(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(n));
    state = reader.feed(copies.back());
    copies.back().assign(copies.back().size(), std::byte{0xdd});  // scribble over the old copy
  }
  if (state == ParseState::kNeedMore) state = reader.feed(h);
  ASSERT_EQ(state, ParseState::kDone) << reader.reason();
  EXPECT_EQ(reader.info().sni, "example.com");
}

TEST(TlsClientHello, KindNames) {
  EXPECT_EQ(to_string(HelloKind::kUnknown), "unknown");
  EXPECT_EQ(to_string(HelloKind::kClientHello), "client_hello");
  EXPECT_EQ(to_string(HelloKind::kSslv2Hello), "sslv2_hello");
}

// Regenerates the built seeds of fuzz/corpus/tls_client_hello/ (the real_* ones come from
// scripts/capture-client-hellos.sh). Run with --gtest_also_run_disabled_tests
// --gtest_filter='*WriteBuiltSeedCorpus'.
TEST(TlsClientHello, DISABLED_WriteBuiltSeedCorpus) {
  const auto write = [](const std::string& name, const Bytes& bytes) {
    std::ofstream out(kCorpusDir + "/" + name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  };
  ClientHelloSpec pq;
  pq.sni = "api.example.com";
  pq.alpn = {"h2", "http/1.1"};
  pq.post_quantum_key_share = true;
  pq.pad_to = 1800;
  write("built_pq_x25519mlkem768_3_records", hello(pq, 3));
  write("built_pq_x25519mlkem768_1_record", hello(pq, 1));
  ClientHelloSpec small;
  small.sni = "one.example";
  write("built_one_byte_records",
        test::records_of_size(test::build_client_hello_message(small), 1));
  ClientHelloSpec ech;
  ech.sni = "cloudflare-ech.com";
  ech.alpn = {"h2"};
  ech.ech_payload_size = 239;
  write("built_ech_outer", hello(ech));
  ClientHelloSpec padded;
  padded.alpn = {"http/1.1"};
  padded.pad_to = 2048;
  write("built_padded_2048_2_records", hello(padded, 2));
  write("built_uppercase_trailing_dot", hello_with_sni("WWW.Example.ORG."));
  write("built_ip_literal_sni", hello_with_sni("192.0.2.1"));
  write("built_zero_length_sni", hello_with_sni(""));
  write("built_sni_bad_name", hello_with_sni("exa mple.com"));
  ClientHelloSpec tls12;
  tls12.supported_versions = {};
  tls12.sni = "legacy.example.net";
  write("built_tls12_no_supported_versions", hello(tls12));
  ClientHelloSpec grease;
  grease.supported_versions = {0x0a0a, 0x0304, 0x0303};
  grease.extra_extensions = {{0x1a1a, {}}};
  write("built_grease", hello(grease));
  ClientHelloSpec two;
  two.sni = std::nullopt;
  two.extra_extensions = {test::server_name_extension({{0, "a.example"}, {0, "b.example"}})};
  write("built_sni_two_host_names", hello(two));
  ClientHelloSpec type1;
  type1.sni = std::nullopt;
  type1.extra_extensions = {test::server_name_extension({{1, "example.com"}})};
  write("built_sni_non_host_name_type", hello(type1));
  ClientHelloSpec dup;
  dup.alpn = {"h2"};
  dup.extra_extensions = {test::alpn_extension({"h2"})};
  write("built_duplicate_extension", hello(dup));
  ClientHelloSpec big;
  big.pad_to = 17000;
  write("built_over_cap", hello(big, 2));
  const Bytes h = hello(ClientHelloSpec{});
  write("built_truncated_half",
        Bytes(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(h.size() / 2)));
  const Bytes message = test::build_client_hello_message(ClientHelloSpec{});
  write(
      "built_alert_between_fragments",
      test::concat({test::tls_record(22, 0x0301, ByteSpan(message).first(60)), test::alert_record(),
                    test::tls_record(22, 0x0301, ByteSpan(message).subspan(60))}));
  write("built_followed_by_ccs_and_early_data",
        test::concat({h, test::tls_record(20, 0x0303, hex({1})),
                      test::tls_record(23, 0x0303, Bytes(64, std::byte{0xee}))}));
  write("built_sslv2_compatible_hello", test::sslv2_client_hello(0x0301));
  write("built_alert_record", test::alert_record());
  write("garbage_http_get", text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"));
  write("garbage_boxlite_not_http",
        hex({0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03}));
  write("garbage_record_too_long", hex({0x16, 0x03, 0x01, 0x40, 0x01, 0x01}));
}

}  // namespace
}  // namespace netfence::wire
