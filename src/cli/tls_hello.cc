#include "cli/tls_hello.h"

#include <sys/random.h>

#include <algorithm>
#include <cstdint>

namespace netfence::cli {
namespace {

using Bytes = std::vector<std::byte>;

void put8(Bytes& out, unsigned v) {
  out.push_back(static_cast<std::byte>(v & 0xff));
}
void put16(Bytes& out, unsigned v) {
  put8(out, v >> 8);
  put8(out, v);
}
void put24(Bytes& out, size_t v) {
  put8(out, static_cast<unsigned>(v >> 16));
  put16(out, static_cast<unsigned>(v & 0xffff));
}
void put_random(Bytes& out, size_t n) {
  size_t start = out.size();
  out.resize(start + n);
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::getrandom(out.data() + start + done, n - done, 0);
    if (got <= 0) break;  // never on Linux >= 3.17 once the pool is up; zeros are fine then
    done += static_cast<size_t>(got);
  }
}
void put_extension(Bytes& out, unsigned type, const Bytes& data) {
  put16(out, type);
  put16(out, static_cast<unsigned>(data.size()));
  out.insert(out.end(), data.begin(), data.end());
}

}  // namespace

std::vector<std::byte> client_hello_message(const HelloSpec& spec) {
  Bytes ext;
  if (!spec.sni.empty()) {
    Bytes sn;
    put16(sn, static_cast<unsigned>(spec.sni.size() + 3));
    put8(sn, 0);  // host_name
    put16(sn, static_cast<unsigned>(spec.sni.size()));
    for (char ch : spec.sni) put8(sn, static_cast<unsigned char>(ch));
    put_extension(ext, 0x0000, sn);
  }
  put_extension(ext, 0x000a, Bytes{std::byte{0}, std::byte{2}, std::byte{0}, std::byte{0x1d}});
  put_extension(ext, 0x000b, Bytes{std::byte{1}, std::byte{0}});  // ec_point_formats
  Bytes sig;
  const unsigned algorithms[] = {0x0804, 0x0403, 0x0401, 0x0805, 0x0501, 0x0806, 0x0601};
  put16(sig, sizeof algorithms / sizeof algorithms[0] * 2);
  for (unsigned a : algorithms) put16(sig, a);
  put_extension(ext, 0x000d, sig);
  put_extension(ext, 0x002b,  // supported_versions: TLS 1.3, 1.2
                Bytes{std::byte{4}, std::byte{3}, std::byte{4}, std::byte{3}, std::byte{3}});
  put_extension(ext, 0x002d, Bytes{std::byte{1}, std::byte{1}});  // psk_ke_modes: psk_dhe_ke
  Bytes share;
  put16(share, 36);
  put16(share, 0x001d);
  put16(share, 32);
  put_random(share, 32);
  put_extension(ext, 0x0033, share);
  if (spec.ech) {
    // ECHClientHello, outer: type 0, cipher suite HKDF-SHA256 / AES-128-GCM, config id, enc (an
    // X25519 public key) and an encrypted payload: the shape browsers send.
    Bytes ech;
    put8(ech, 0);
    put16(ech, 0x0001);
    put16(ech, 0x0001);
    put_random(ech, 1);
    put16(ech, 32);
    put_random(ech, 32);
    put16(ech, 208);
    put_random(ech, 208);
    put_extension(ext, 0xfe0d, ech);
  }

  Bytes body;
  put16(body, 0x0303);
  put_random(body, 32);  // random
  put8(body, 32);
  put_random(body, 32);  // legacy_session_id
  const unsigned suites[] = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030};
  put16(body, sizeof suites / sizeof suites[0] * 2);
  for (unsigned s : suites) put16(body, s);
  put8(body, 1);
  put8(body, 0);  // compression: null
  put16(body, static_cast<unsigned>(ext.size()));
  body.insert(body.end(), ext.begin(), ext.end());

  Bytes message;
  put8(message, 1);  // client_hello
  put24(message, body.size());
  message.insert(message.end(), body.begin(), body.end());
  return message;
}

std::vector<std::vector<std::byte>> client_hello_records(const std::vector<std::byte>& message,
                                                         size_t records) {
  records = std::clamp<size_t>(records, 1, std::max<size_t>(message.size(), 1));
  std::vector<Bytes> out;
  size_t offset = 0;
  for (size_t i = 0; i < records; ++i) {
    size_t size = message.size() / records + (i < message.size() % records ? 1 : 0);
    Bytes record;
    put8(record, 0x16);
    put16(record, 0x0301);
    put16(record, static_cast<unsigned>(size));
    record.insert(record.end(), message.begin() + static_cast<std::ptrdiff_t>(offset),
                  message.begin() + static_cast<std::ptrdiff_t>(offset + size));
    offset += size;
    out.push_back(std::move(record));
  }
  return out;
}

}  // namespace netfence::cli
