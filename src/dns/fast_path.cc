#include "dns/fast_path.h"

#include <cstring>

namespace netfence::dns {

namespace {

constexpr size_t kOptRecordSize = 11;  // root owner, type, class, ttl, rdlength

void put16(std::span<std::byte> out, size_t at, uint16_t v) {
  out[at] = static_cast<std::byte>(v >> 8);
  out[at + 1] = static_cast<std::byte>(v);
}

void put32(std::span<std::byte> out, size_t at, uint32_t v) {
  put16(out, at, static_cast<uint16_t>(v >> 16));
  put16(out, at + 2, static_cast<uint16_t>(v));
}

// The negative SOA's RDATA up to MINIMUM (see wire::build_dns_answer): MNAME netfence.invalid.,
// RNAME hostmaster.netfence.invalid., SERIAL 1, REFRESH 3600, RETRY 600, EXPIRE 86400.
constexpr char kSoaRdataHead[] =
    "\x08netfence\x07invalid\x00"
    "\x0ahostmaster\x08netfence\x07invalid\x00"
    "\x00\x00\x00\x01"                                          // SERIAL 1
    "\x00\x00\x0e\x10"                                          // REFRESH 3600
    "\x00\x00\x02\x58"                                          // RETRY 600
    "\x00\x01\x51\x80";                                         // EXPIRE 86400
constexpr size_t kSoaRdataHeadSize = sizeof kSoaRdataHead - 1;  // without the literal's NUL

}  // namespace

bool read_simple_query(ByteSpan m, SimpleQuery& q) {
  if (m.size() < wire::kDnsHeaderSize + 5) return false;
  uint16_t flags = u16_at(m, 2);
  if ((flags & 0x8000) != 0 || (flags >> 11 & 0xf) != 0) return false;  // a response; not QUERY
  uint16_t arcount = u16_at(m, 10);
  if (u16_at(m, 4) != 1 || u16_at(m, 6) != 0 || u16_at(m, 8) != 0 || arcount > 1) return false;
  q.id = u16_at(m, 0);
  q.rd = (flags & 0x0100) != 0;
  q.cd = (flags & 0x0010) != 0;

  size_t pos = wire::kDnsHeaderSize;
  size_t text = 0;
  while (true) {
    if (pos >= m.size()) return false;
    size_t length = u8_at(m, pos);
    if (length == 0) break;
    if (length > wire::kDnsMaxLabelLength) return false;  // a pointer or a reserved label type
    if (pos + 1 + length > m.size()) return false;
    // Label bytes plus length byte so far, plus the root label: at most 255 in wire form.
    if (pos + 1 + length + 1 - wire::kDnsHeaderSize > wire::kDnsMaxNameWireLength) return false;
    if (text != 0) q.name_[text++] = '.';
    for (size_t i = pos + 1; i <= pos + length; ++i) {
      auto c = static_cast<char>(u8_at(m, i));
      if (c <= 0x20 || c >= 0x7f || c == '.' || c == '\\') return false;  // would be escaped
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      q.name_[text++] = c;
    }
    pos += 1 + length;
  }
  q.name_length_ = text;
  pos += 1;
  if (pos + 4 > m.size()) return false;
  q.type = u16_at(m, pos);
  q.klass = u16_at(m, pos + 2);
  pos += 4;
  q.question_end = pos;

  q.has_opt = false;
  q.dnssec_ok = false;
  q.udp_payload_size = 0;
  if (arcount == 0) return pos == m.size();
  if (pos + kOptRecordSize > m.size() || u8_at(m, pos) != 0 ||
      u16_at(m, pos + 1) != wire::dns_type::kOpt) {
    return false;
  }
  uint32_t ttl = u32_at(m, pos + 5);
  if ((ttl >> 16 & 0xff) != 0) return false;  // EDNS version other than 0: BADVERS, general path
  size_t rdlength = u16_at(m, pos + 9);
  size_t options = pos + kOptRecordSize;
  if (options + rdlength != m.size()) return false;
  for (size_t p = options; p < m.size();) {
    if (p + 4 > m.size()) return false;
    p += 4 + size_t{u16_at(m, p + 2)};
    if (p > m.size()) return false;
  }
  q.has_opt = true;
  q.udp_payload_size = u16_at(m, pos + 3);
  q.dnssec_ok = (ttl & 0x8000) != 0;
  return true;
}

size_t write_local_answer(ByteSpan message, const SimpleQuery& q, wire::DnsAnswerKind kind,
                          uint32_t ttl, std::span<std::byte> out) {
  if (out.size() < kMaxLocalAnswerSize || q.question_end > message.size()) return 0;
  uint16_t rcode = wire::dns_rcode::kNoError;
  bool address = false;
  bool soa = false;
  switch (kind) {
    case wire::DnsAnswerKind::kUnspecifiedAddress:
      if (q.klass != wire::kDnsClassIn ||
          (q.type != wire::dns_type::kA && q.type != wire::dns_type::kAaaa)) {
        return 0;
      }
      address = true;
      break;
    case wire::DnsAnswerKind::kNoData:
      soa = true;
      break;
    case wire::DnsAnswerKind::kNxDomain:
      rcode = wire::dns_rcode::kNxDomain;
      soa = true;
      break;
    case wire::DnsAnswerKind::kRefused:
      rcode = wire::dns_rcode::kRefused;
      break;
    case wire::DnsAnswerKind::kServFail:
      rcode = wire::dns_rcode::kServFail;
      break;
    case wire::DnsAnswerKind::kNotImp:
      rcode = wire::dns_rcode::kNotImp;
      break;
    case wire::DnsAnswerKind::kBadVers:
      return 0;
  }
  std::memcpy(out.data(), message.data(), q.question_end);
  put16(out, 2,
        static_cast<uint16_t>(0x8000 | (q.rd ? 0x0100 : 0) | 0x0080 | (q.cd ? 0x0010 : 0) | rcode));
  put16(out, 4, 1);
  put16(out, 6, address ? 1 : 0);
  put16(out, 8, soa ? 1 : 0);
  put16(out, 10, q.has_opt ? 1 : 0);
  size_t pos = q.question_end;
  if (address) {
    if (q.question_end - 4 == wire::kDnsHeaderSize + 1) {
      out[pos++] = std::byte{0};  // the root name is never compressed
    } else {
      put16(out, pos, 0xC000 | wire::kDnsHeaderSize);  // the question's name
      pos += 2;
    }
    size_t size = q.type == wire::dns_type::kA ? 4 : 16;
    put16(out, pos, q.type);
    put16(out, pos + 2, wire::kDnsClassIn);
    put32(out, pos + 4, ttl);
    put16(out, pos + 8, static_cast<uint16_t>(size));
    pos += 10;
    std::memset(out.data() + pos, 0, size);
    pos += size;
  }
  if (soa) {
    out[pos] = std::byte{0};
    put16(out, pos + 1, wire::dns_type::kSoa);
    put16(out, pos + 3, q.klass);
    put32(out, pos + 5, ttl);
    put16(out, pos + 9, kSoaRdataHeadSize + 4);
    pos += 11;
    std::memcpy(out.data() + pos, kSoaRdataHead, kSoaRdataHeadSize);
    pos += kSoaRdataHeadSize;
    put32(out, pos, ttl);
    pos += 4;
  }
  if (q.has_opt) {
    out[pos] = std::byte{0};
    put16(out, pos + 1, wire::dns_type::kOpt);
    put16(out, pos + 3, wire::kDnsEdnsPayloadSize);
    put32(out, pos + 5, q.dnssec_ok ? 0x8000u : 0u);
    put16(out, pos + 9, 0);
    pos += kOptRecordSize;
  }
  return pos;
}

}  // namespace netfence::dns
