// Differential test: our ClientHello reader against OpenSSL's server-side ClientHello processing,
// over every file of the seed corpus (fuzz/corpus/tls_client_hello/).
//
// Each corpus entry is written into a memory BIO read by a fresh server SSL object (self-signed
// EC and RSA certificates, every protocol version OpenSSL allows at security level 0). Three
// callbacks record what OpenSSL saw:
//   - the ClientHello callback (runs before extension parsing): that a hello arrived, whether it
//     was SSLv2-format, its legacy_version, the types of the extensions present;
//   - the servername callback (runs after every extension parsed without error): OpenSSL's SNI;
//     reaching it is what "OpenSSL accepts this hello" means here;
//   - the ALPN select callback: the client's protocol list as OpenSSL validated it.
// For every hello OpenSSL accepts, our reader must agree on the kind, SNI (after our documented
// normalisation: ASCII lowercase, one trailing dot removed), ALPN, ECH presence, legacy_version
// and (at least) OpenSSL's extension count; or reject it for one of the reasons where we are
// deliberately stricter (kStricterByDesign, each explained and printed). The test fails if it
// compared nothing.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/client_hello_builder.h"
#include "wire/tls_client_hello.h"

namespace netfence::wire {
namespace {

const std::string kCorpusDir = NETFENCE_SOURCE_DIR "/fuzz/corpus/tls_client_hello";

// Reasons for which we reject hellos OpenSSL takes, on purpose.
const std::map<std::string, std::string> kStricterByDesign = {
    {"sni_empty", "RFC 6066 HostName<1..2^16-1>; OpenSSL takes \"\" as the name"},
    {"sni_bad_name", "OpenSSL checks only for NUL bytes and a 255-byte limit, not DNS syntax"},
    {"over_cap", "our 16 KiB cap; OpenSSL allows ClientHellos up to 128 KiB"},
};

struct OpenSslView {
  bool saw_hello = false;  // ClientHello callback ran
  bool accepted = false;   // servername callback ran: all extensions parsed
  bool isv2 = false;
  unsigned legacy_version = 0;
  std::vector<int> extension_types;
  std::optional<std::string> sni;
  std::optional<std::vector<std::string>> alpn;
};

OpenSslView* view_of(SSL* ssl) {
  return static_cast<OpenSslView*>(SSL_get_ex_data(ssl, 0));
}

int on_client_hello(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  OpenSslView* v = view_of(ssl);
  v->saw_hello = true;
  v->isv2 = SSL_client_hello_isv2(ssl) == 1;
  v->legacy_version = SSL_client_hello_get0_legacy_version(ssl);
  int* types = nullptr;
  size_t count = 0;
  if (SSL_client_hello_get1_extensions_present(ssl, &types, &count) == 1) {
    v->extension_types.assign(types, types + count);
    OPENSSL_free(types);
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

int on_servername(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  OpenSslView* v = view_of(ssl);
  v->accepted = true;
  if (const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) v->sni = name;
  return SSL_TLSEXT_ERR_OK;
}

int on_alpn(SSL* ssl, const unsigned char** /*out*/, unsigned char* /*outlen*/,
            const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  std::vector<std::string> list;
  for (unsigned i = 0; i < inlen;) {
    const unsigned n = in[i];
    list.emplace_back(reinterpret_cast<const char*>(in + i + 1), std::min(n, inlen - i - 1));
    i += 1 + n;
  }
  view_of(ssl)->alpn = std::move(list);
  return SSL_TLSEXT_ERR_NOACK;
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};

bool add_self_signed(SSL_CTX* ctx, EVP_PKEY* key) {
  std::unique_ptr<X509, X509Deleter> cert(X509_new());
  if (!cert || key == nullptr) return false;
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  const auto* cn = reinterpret_cast<const unsigned char*>("netfence-test");
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, cn, -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  return X509_sign(cert.get(), key, EVP_sha256()) > 0 &&
         SSL_CTX_use_certificate(ctx, cert.get()) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1;
}

SSL_CTX* server_ctx() {
  static std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx = [] {
    std::unique_ptr<SSL_CTX, SslCtxDeleter> c(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_set_security_level(c.get(), 0);
    SSL_CTX_set_min_proto_version(c.get(), 0);
    std::unique_ptr<EVP_PKEY, PkeyDeleter> ec(EVP_EC_gen("P-256"));
    std::unique_ptr<EVP_PKEY, PkeyDeleter> rsa(EVP_RSA_gen(2048));
    if (!add_self_signed(c.get(), ec.get()) || !add_self_signed(c.get(), rsa.get())) {
      ADD_FAILURE() << "cannot make the test certificates";
    }
    SSL_CTX_set_client_hello_cb(c.get(), on_client_hello, nullptr);
    // SSL_CTX_set_tlsext_servername_callback is a macro with a C-style cast; spell it out.
    SSL_CTX_callback_ctrl(c.get(), SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
                          reinterpret_cast<void (*)()>(on_servername));
    SSL_CTX_set_alpn_select_cb(c.get(), on_alpn, nullptr);
    return c;
  }();
  return ctx.get();
}

OpenSslView openssl_view(ByteSpan bytes) {
  OpenSslView view;
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(server_ctx()));
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  BIO_write(in, bytes.data(), static_cast<int>(bytes.size()));
  BIO_ctrl(in, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nullptr);  // empty means "retry", not EOF
  SSL_set_bio(ssl.get(), in, out);                          // ssl owns both BIOs now
  SSL_set_ex_data(ssl.get(), 0, &view);
  SSL_set_accept_state(ssl.get());
  SSL_do_handshake(ssl.get());
  ERR_clear_error();
  return view;
}

std::string normalise(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
  if (!name.empty() && name.back() == '.') name.pop_back();
  return name;
}

ClientHelloReader ours(ByteSpan bytes) {
  ClientHelloReader reader;
  reader.feed(bytes);
  return reader;
}

TEST(TlsOpenSslDiff, CorpusAgreesWithOpenSsl) {
  const std::vector<test::CorpusEntry> corpus = test::read_corpus(kCorpusDir);
  ASSERT_FALSE(corpus.empty()) << "empty corpus at " << kCorpusDir;
  size_t compared = 0;
  size_t with_sni = 0;
  size_t with_alpn = 0;
  size_t rejected_by_openssl = 0;
  size_t stricter = 0;
  for (const auto& entry : corpus) {
    SCOPED_TRACE(entry.name);
    const OpenSslView v = openssl_view(entry.bytes);
    const ClientHelloReader reader = ours(entry.bytes);
    const ClientHelloInfo& info = reader.info();
    if (!v.accepted) {
      ++rejected_by_openssl;
      const std::string_view verdict = reader.state() == ParseState::kInvalid ? reader.reason()
                                       : reader.state() == ParseState::kDone  ? to_string(info.kind)
                                                                              : "need_more";
      std::printf("  OpenSSL rejects %s (%s); we say %s\n", entry.name.c_str(),
                  v.saw_hello ? "in extensions or version" : "before the hello callback",
                  std::string(verdict).c_str());
      continue;
    }
    if (reader.state() == ParseState::kInvalid) {
      const auto why = kStricterByDesign.find(std::string(reader.reason()));
      EXPECT_NE(why, kStricterByDesign.end())
          << "OpenSSL accepts, we reject with " << reader.reason();
      if (why != kStricterByDesign.end()) {
        ++stricter;
        std::printf("  stricter by design: %s: %s (%s)\n", entry.name.c_str(), why->first.c_str(),
                    why->second.c_str());
      }
      continue;
    }
    ASSERT_EQ(reader.state(), ParseState::kDone) << entry.name;
    ++compared;
    if (v.isv2) {
      EXPECT_EQ(info.kind, HelloKind::kSslv2Hello);
      EXPECT_FALSE(v.sni.has_value());
      EXPECT_TRUE(info.sni_absent);
      EXPECT_EQ(info.legacy_version, v.legacy_version);
      continue;
    }
    EXPECT_EQ(info.kind, HelloKind::kClientHello);
    EXPECT_EQ(info.legacy_version, v.legacy_version);
    // OpenSSL lists only the extension types it knows (it drops e.g. status_request_v2 and
    // record_size_limit), so it may count fewer.
    EXPECT_GE(info.extension_count, v.extension_types.size());
    // OpenSSL 3.0 does not know encrypted_client_hello and leaves unknown types out of its
    // list, so this only bites with an OpenSSL that implements ECH.
    const bool openssl_ech = std::find(v.extension_types.begin(), v.extension_types.end(),
                                       kExtEncryptedClientHello) != v.extension_types.end();
    if (openssl_ech) {
      EXPECT_TRUE(info.ech_present);
    }
    if (v.sni) {
      ++with_sni;
      EXPECT_FALSE(info.sni_absent);
      if (info.sni_ip_literal) {
        EXPECT_TRUE(info.sni.empty());
      } else {
        EXPECT_EQ(info.sni, normalise(*v.sni));
      }
    } else {
      EXPECT_TRUE(info.sni_absent);
    }
    if (v.alpn) {
      ++with_alpn;
      EXPECT_EQ(info.alpn, *v.alpn);
    } else {
      const bool openssl_alpn = std::find(v.extension_types.begin(), v.extension_types.end(),
                                          kExtAlpn) != v.extension_types.end();
      EXPECT_FALSE(openssl_alpn) << "OpenSSL saw ALPN but did not call the select callback";
      EXPECT_TRUE(info.alpn.empty());
    }
  }
  std::printf(
      "compared %zu hellos with OpenSSL (%zu with SNI, %zu with ALPN); %zu stricter by design; "
      "%zu corpus entries OpenSSL rejects or never sees as a hello\n",
      compared, with_sni, with_alpn, stricter, rejected_by_openssl);
  EXPECT_GT(compared, 0u);
  EXPECT_GT(with_sni, 10u);
  EXPECT_GT(with_alpn, 3u);
}

// The builder's hellos must be ones OpenSSL accepts, or the comparison above would silently
// shrink to the captured ones.
TEST(TlsOpenSslDiff, BuiltHellosAreAcceptedByOpenSsl) {
  test::ClientHelloSpec spec;
  spec.alpn = {"h2", "http/1.1"};
  for (const bool pq : {false, true}) {
    spec.post_quantum_key_share = pq;
    const OpenSslView v = openssl_view(test::build_client_hello(spec, 3));
    EXPECT_TRUE(v.accepted) << "pq=" << pq;
    EXPECT_EQ(v.sni, "example.com");
    EXPECT_EQ(v.alpn, spec.alpn);
  }
}

}  // namespace
}  // namespace netfence::wire
