// DNS message parsing and building; see dns_message.h for the theory of operation.
#include "wire/dns_message.h"

#include <algorithm>
#include <limits>

namespace netfence::wire {
namespace {

constexpr size_t kMinQuestionSize = 5;  // root name + type + class
constexpr size_t kMinRecordSize = 11;   // root name + type + class + ttl + rdlength
// The encoder remembers at most this many name suffixes for compression; more only costs bytes.
constexpr size_t kMaxCompressionEntries = 128;

Error fail_at(std::string_view reason, size_t at) {
  return fail(std::string(reason) + " at byte " + std::to_string(at));
}

// Appends the presentation form of one label (see dns_message.h) to `text`.
void append_label_text(std::string& text, ByteSpan label) {
  if (!text.empty()) text.push_back('.');
  for (std::byte b : label) {
    const auto c = static_cast<uint8_t>(b);
    if (c >= 'A' && c <= 'Z') {
      text.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (c == '.' || c == '\\') {
      text.push_back('\\');
      text.push_back(static_cast<char>(c));
    } else if (c > 0x20 && c < 0x7f) {
      text.push_back(static_cast<char>(c));
    } else {
      text.push_back('\\');
      text.push_back(static_cast<char>('0' + c / 100));
      text.push_back(static_cast<char>('0' + c / 10 % 10));
      text.push_back(static_cast<char>('0' + c % 10));
    }
  }
}

// Which RDATA fields hold names that must be decompressed (RFC 3597 4): 'n' a name, '2'/'4'
// fixed-size fields, 'c' a <character-string>. nullptr: kept raw.
const char* rdata_layout(uint16_t type) {
  switch (type) {
    case 2:   // NS
    case 3:   // MD
    case 4:   // MF
    case 5:   // CNAME
    case 7:   // MB
    case 8:   // MG
    case 9:   // MR
    case 12:  // PTR
    case 39:  // DNAME
      return "n";
    case 6:  // SOA
      return "nn44444";
    case 14:  // MINFO
    case 17:  // RP
      return "nn";
    case 15:  // MX
    case 18:  // AFSDB
    case 21:  // RT
    case 36:  // KX
      return "2n";
    case 26:  // PX
      return "2nn";
    case 33:  // SRV
      return "222n";
    case 35:  // NAPTR
      return "22cccn";
    default:
      return nullptr;
  }
}

enum class Section : uint8_t { kAnswer, kAuthority, kAdditional };

class Parser {
 public:
  explicit Parser(ByteSpan message) : msg_(message) {}

  Result<DnsMessage> run();

 private:
  bool fail(std::string_view reason, size_t at) {
    reason_ = reason;
    at_ = at;
    return false;
  }
  bool need(size_t pos, size_t count, size_t limit, std::string_view reason) {
    return pos + count <= limit || fail(reason, pos);
  }
  bool name(size_t& pos, size_t limit, DnsName& out);
  bool question(size_t& pos, DnsQuestion& out);
  bool record(size_t& pos, Section section, DnsMessage& message);
  bool rdata(size_t pos, size_t end, const char* layout, std::vector<std::byte>& out);
  bool opt(const DnsRecord& record, size_t at, DnsMessage& message);

  ByteSpan msg_;
  std::string_view reason_;
  size_t at_ = 0;
};

// Reads a possibly compressed name at `pos`, whose in-place bytes must end before `limit` (the
// message or the RDATA end). Each pointer must target a label run that starts before the run
// holding the pointer, and the run reached must end before that run starts: hops go strictly
// backwards, so loops are impossible; kDnsMaxPointerHops bounds the work anyway.
bool Parser::name(size_t& pos, size_t limit, DnsName& out) {
  out.wire.clear();
  out.text.clear();
  const std::string_view overrun = limit == msg_.size() ? "truncated" : "bad_rdata";
  size_t p = pos;
  size_t run_start = pos;
  size_t bound = limit;
  size_t resume = 0;
  int hops = 0;
  while (true) {
    if (p >= bound) return fail(hops > 0 ? "bad_pointer" : overrun, p);
    const uint8_t len = u8_at(msg_, p);
    if ((len & 0xC0) == 0xC0) {
      if (p + 2 > bound) return fail(hops > 0 ? "bad_pointer" : overrun, p);
      const size_t target = static_cast<size_t>(len & 0x3F) << 8 | u8_at(msg_, p + 1);
      if (target < kDnsHeaderSize || target >= run_start) return fail("bad_pointer", p);
      if (++hops > kDnsMaxPointerHops) return fail("too_many_pointers", p);
      if (hops == 1) resume = p + 2;
      bound = run_start;
      run_start = target;
      p = target;
      continue;
    }
    if ((len & 0xC0) != 0) return fail("bad_label_type", p);
    if (len == 0) {
      out.wire.push_back(std::byte{0});
      pos = hops > 0 ? resume : p + 1;
      return true;
    }
    if (p + 1 + len > bound) return fail(hops > 0 ? "bad_pointer" : overrun, p);
    if (out.wire.size() + 1 + len + 1 > kDnsMaxNameWireLength) return fail("name_too_long", p);
    const ByteSpan label = msg_.subspan(p, 1 + len);
    out.wire.insert(out.wire.end(), label.begin(), label.end());
    append_label_text(out.text, label.subspan(1));
    p += 1 + len;
  }
}

bool Parser::question(size_t& pos, DnsQuestion& out) {
  if (!name(pos, msg_.size(), out.name)) return false;
  if (!need(pos, 4, msg_.size(), "truncated")) return false;
  out.type = u16_at(msg_, pos);
  out.klass = u16_at(msg_, pos + 2);
  pos += 4;
  return true;
}

bool Parser::rdata(size_t pos, size_t end, const char* layout, std::vector<std::byte>& out) {
  DnsName field;
  for (const char* f = layout; *f != 0; ++f) {
    size_t size = 0;
    switch (*f) {
      case 'n':
        if (!name(pos, end, field)) return false;
        out.insert(out.end(), field.wire.begin(), field.wire.end());
        continue;
      case '2':
        size = 2;
        break;
      case '4':
        size = 4;
        break;
      case 'c':
        if (!need(pos, 1, end, "bad_rdata")) return false;
        size = 1 + size_t{u8_at(msg_, pos)};
        break;
    }
    if (!need(pos, size, end, "bad_rdata")) return false;
    const ByteSpan bytes = msg_.subspan(pos, size);
    out.insert(out.end(), bytes.begin(), bytes.end());
    pos += size;
  }
  return pos == end || fail("bad_rdata", pos);
}

bool Parser::opt(const DnsRecord& record, size_t at, DnsMessage& message) {
  if (message.edns) return fail("multiple_opt", at);
  if (record.name.wire.size() != 1) return fail("bad_opt", at);
  DnsEdns edns;
  edns.udp_payload_size = record.klass;
  edns.extended_rcode = static_cast<uint8_t>(record.ttl >> 24);
  edns.version = static_cast<uint8_t>(record.ttl >> 16);
  edns.dnssec_ok = (record.ttl & 0x8000) != 0;
  edns.flags = static_cast<uint16_t>(record.ttl & 0x7fff);
  const ByteSpan data(record.rdata);
  size_t p = 0;
  while (p < data.size()) {
    if (p + 4 > data.size()) return fail("bad_opt", at);
    const uint16_t length = u16_at(data, p + 2);
    if (p + 4 + length > data.size()) return fail("bad_opt", at);
    const ByteSpan value = data.subspan(p + 4, length);
    edns.options.push_back({u16_at(data, p), {value.begin(), value.end()}});
    p += 4 + size_t{length};
  }
  message.edns = std::move(edns);
  return true;
}

bool Parser::record(size_t& pos, Section section, DnsMessage& message) {
  const size_t start = pos;
  DnsRecord rr;
  if (!name(pos, msg_.size(), rr.name)) return false;
  if (!need(pos, 10, msg_.size(), "truncated")) return false;
  rr.type = u16_at(msg_, pos);
  rr.klass = u16_at(msg_, pos + 2);
  rr.ttl = u32_at(msg_, pos + 4);
  const size_t length = u16_at(msg_, pos + 8);
  pos += 10;
  if (!need(pos, length, msg_.size(), "truncated")) return false;
  const size_t end = pos + length;

  if (rr.klass == kDnsClassIn &&
      ((rr.type == dns_type::kA && length != 4) || (rr.type == dns_type::kAaaa && length != 16))) {
    return fail("bad_rdata", pos);
  }
  if (const char* layout = rdata_layout(rr.type)) {
    if (!rdata(pos, end, layout, rr.rdata)) return false;
  } else {
    const ByteSpan bytes = msg_.subspan(pos, length);
    rr.rdata.assign(bytes.begin(), bytes.end());
  }
  pos = end;

  if (rr.type == dns_type::kOpt) {
    if (section != Section::kAdditional) return fail("misplaced_opt", start);
    return opt(rr, start, message);
  }
  switch (section) {
    case Section::kAnswer:
      message.answers.push_back(std::move(rr));
      break;
    case Section::kAuthority:
      message.authorities.push_back(std::move(rr));
      break;
    case Section::kAdditional:
      message.additionals.push_back(std::move(rr));
      break;
  }
  return true;
}

Result<DnsMessage> Parser::run() {
  if (msg_.size() > kDnsMaxMessageSize) return fail_at("message_too_large", kDnsMaxMessageSize);
  auto header = parse_dns_header(msg_);
  if (!header) return fail_at("truncated", msg_.size());
  DnsMessage message;
  message.header = *header;
  const DnsHeader& h = message.header;
  const size_t records = size_t{h.ancount} + h.nscount + h.arcount;
  if (kDnsHeaderSize + h.qdcount * kMinQuestionSize + records * kMinRecordSize > msg_.size()) {
    return fail_at("counts_exceed_message", 4);
  }
  message.questions.resize(h.qdcount);
  message.answers.reserve(h.ancount);
  message.authorities.reserve(h.nscount);
  message.additionals.reserve(h.arcount);

  size_t pos = kDnsHeaderSize;
  bool ok = true;
  for (DnsQuestion& q : message.questions) {
    if (!(ok = question(pos, q))) break;
  }
  for (uint16_t i = 0; ok && i < h.ancount; ++i) ok = record(pos, Section::kAnswer, message);
  for (uint16_t i = 0; ok && i < h.nscount; ++i) ok = record(pos, Section::kAuthority, message);
  for (uint16_t i = 0; ok && i < h.arcount; ++i) ok = record(pos, Section::kAdditional, message);
  if (!ok) return fail_at(reason_, at_);
  if (pos != msg_.size()) return fail_at("trailing_bytes", pos);
  return message;
}

// Checks that `wire` is exactly one uncompressed name of at most kDnsMaxNameWireLength bytes.
bool valid_wire_name(ByteSpan wire) {
  if (wire.empty() || wire.size() > kDnsMaxNameWireLength) return false;
  size_t p = 0;
  while (p < wire.size()) {
    const uint8_t len = u8_at(wire, p);
    if (len > kDnsMaxLabelLength) return false;
    if (len == 0) return p + 1 == wire.size();
    p += 1 + size_t{len};
  }
  return false;
}

class Writer {
 public:
  std::vector<std::byte>& bytes() { return out_; }

  void u8(uint8_t v) { out_.push_back(std::byte{v}); }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
  void raw(ByteSpan b) { out_.insert(out_.end(), b.begin(), b.end()); }

  // Writes a validated name, pointing at an earlier copy of its longest already-written suffix.
  // Suffixes match byte for byte (case included), so decompression gives back `wire` exactly.
  void name(ByteSpan wire) {
    size_t p = 0;
    while (true) {
      const uint8_t len = u8_at(wire, p);
      if (len == 0) {
        u8(0);
        return;
      }
      const ByteSpan suffix = wire.subspan(p);
      for (const auto& [seen, offset] : suffixes_) {
        if (std::ranges::equal(seen, suffix)) {
          u16(static_cast<uint16_t>(0xC000 | offset));
          return;
        }
      }
      if (out_.size() < 0x4000 && suffixes_.size() < kMaxCompressionEntries) {
        suffixes_.emplace_back(suffix, static_cast<uint16_t>(out_.size()));
      }
      raw(wire.subspan(p, 1 + size_t{len}));
      p += 1 + size_t{len};
    }
  }

 private:
  std::vector<std::byte> out_;
  // Views into the names of the message being encoded, which outlives the Writer.
  std::vector<std::pair<ByteSpan, uint16_t>> suffixes_;
};

Result<void> write_record(Writer& w, const DnsRecord& rr) {
  if (!valid_wire_name(rr.name.wire)) return fail("bad_name: record owner is not a wire name");
  if (rr.rdata.size() > 0xffff) return fail("rdata_too_large");
  w.name(rr.name.wire);
  w.u16(rr.type);
  w.u16(rr.klass);
  w.u32(rr.ttl);
  w.u16(static_cast<uint16_t>(rr.rdata.size()));
  w.raw(rr.rdata);
  return {};
}

uint32_t clamp_ttl(uint32_t ttl) {
  return ttl > 0x7fffffff ? 0 : ttl;
}

DnsName root_name() {
  return DnsName{{std::byte{0}}, ""};
}

// The synthetic SOA of negative answers: zone ".", MNAME netfence.invalid., RNAME
// hostmaster.netfence.invalid., MINIMUM = ttl (RFC 2308: negative TTL = min(SOA TTL, MINIMUM)).
DnsRecord negative_soa(uint16_t klass, uint32_t ttl) {
  static const std::vector<std::byte> kFixed = [] {
    std::vector<std::byte> rdata;
    for (std::string_view n : {"netfence.invalid", "hostmaster.netfence.invalid"}) {
      const auto wire = dns_name_wire(n);
      rdata.insert(rdata.end(), wire->begin(), wire->end());
    }
    for (uint32_t v : {uint32_t{1}, uint32_t{3600}, uint32_t{600}, uint32_t{86400}}) {
      for (int shift = 24; shift >= 0; shift -= 8)
        rdata.push_back(static_cast<std::byte>(v >> shift));
    }
    return rdata;
  }();
  DnsRecord soa;
  soa.name = root_name();
  soa.type = dns_type::kSoa;
  soa.klass = klass;
  soa.ttl = ttl;
  soa.rdata.reserve(kFixed.size() + 4);
  soa.rdata = kFixed;
  for (int shift = 24; shift >= 0; shift -= 8)
    soa.rdata.push_back(static_cast<std::byte>(ttl >> shift));
  return soa;
}

}  // namespace

Result<DnsMessage> parse_dns_message(ByteSpan message) {
  return Parser(message).run();
}

std::optional<DnsHeader> parse_dns_header(ByteSpan message) {
  if (message.size() < kDnsHeaderSize) return std::nullopt;
  DnsHeader h;
  h.id = u16_at(message, 0);
  const uint16_t flags = u16_at(message, 2);
  h.qr = (flags & 0x8000) != 0;
  h.opcode = static_cast<uint8_t>(flags >> 11 & 0xf);
  h.aa = (flags & 0x0400) != 0;
  h.tc = (flags & 0x0200) != 0;
  h.rd = (flags & 0x0100) != 0;
  h.ra = (flags & 0x0080) != 0;
  h.z = (flags & 0x0040) != 0;
  h.ad = (flags & 0x0020) != 0;
  h.cd = (flags & 0x0010) != 0;
  h.rcode = static_cast<uint8_t>(flags & 0xf);
  h.qdcount = u16_at(message, 4);
  h.ancount = u16_at(message, 6);
  h.nscount = u16_at(message, 8);
  h.arcount = u16_at(message, 10);
  return h;
}

uint16_t dns_full_rcode(const DnsMessage& message) {
  const uint16_t high = message.edns ? message.edns->extended_rcode : 0;
  return static_cast<uint16_t>(high << 4 | message.header.rcode);
}

std::optional<std::string> dns_name_text(ByteSpan wire) {
  if (!valid_wire_name(wire)) return std::nullopt;
  std::string text;
  size_t p = 0;
  while (const uint8_t len = u8_at(wire, p)) {
    append_label_text(text, wire.subspan(p + 1, len));
    p += 1 + size_t{len};
  }
  return text;
}

std::optional<std::vector<std::byte>> dns_name_wire(std::string_view text) {
  std::vector<std::byte> wire;
  if (text == ".") text = "";
  size_t label_start = 0;  // index in `wire` of the current label's length byte
  wire.push_back(std::byte{0});
  auto close_label = [&]() {
    const size_t length = wire.size() - label_start - 1;
    if (length == 0 || length > kDnsMaxLabelLength) return false;
    wire[label_start] = static_cast<std::byte>(length);
    label_start = wire.size();
    wire.push_back(std::byte{0});
    return true;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (!close_label()) return std::nullopt;
      if (i + 1 == text.size()) break;  // one trailing dot
      continue;
    }
    uint8_t byte = static_cast<uint8_t>(c);
    if (c == '\\') {
      if (i + 1 >= text.size()) return std::nullopt;
      const char next = text[++i];
      if (next >= '0' && next <= '9') {
        if (i + 2 >= text.size()) return std::nullopt;
        unsigned value = 0;
        for (size_t k = i; k < i + 3; ++k) {
          if (text[k] < '0' || text[k] > '9') return std::nullopt;
          value = value * 10 + static_cast<unsigned>(text[k] - '0');
        }
        if (value > 255) return std::nullopt;
        byte = static_cast<uint8_t>(value);
        i += 2;
      } else {
        byte = static_cast<uint8_t>(next);
      }
    }
    wire.push_back(std::byte{byte});
  }
  // An unterminated last label (no trailing dot) still has to be closed.
  if (wire.size() - label_start > 1 && !close_label()) return std::nullopt;
  if (wire.size() > kDnsMaxNameWireLength) return std::nullopt;
  return wire;
}

std::optional<std::string> dns_rdata_name(const DnsRecord& record) {
  switch (record.type) {
    case dns_type::kCname:
    case dns_type::kDname:
    case dns_type::kNs:
    case dns_type::kPtr:
      return dns_name_text(record.rdata);
    default:
      return std::nullopt;
  }
}

std::optional<DnsAddress> dns_record_address(const DnsRecord& record) {
  if (record.klass != kDnsClassIn) return std::nullopt;
  DnsAddress address;
  address.type = record.type;
  address.ttl = record.ttl;
  if (record.type == dns_type::kA && record.rdata.size() == 4) {
    std::ranges::transform(record.rdata, address.bytes.begin(),
                           [](std::byte b) { return static_cast<uint8_t>(b); });
    return address;
  }
  if (record.type == dns_type::kAaaa && record.rdata.size() == 16) {
    std::ranges::transform(record.rdata, address.bytes.begin(),
                           [](std::byte b) { return static_cast<uint8_t>(b); });
    return address;
  }
  return std::nullopt;
}

Result<std::vector<std::byte>> encode_dns_message(const DnsMessage& message) {
  const DnsHeader& h = message.header;
  const size_t arcount = message.additionals.size() + (message.edns ? 1 : 0);
  if (message.questions.size() > 0xffff || message.answers.size() > 0xffff ||
      message.authorities.size() > 0xffff || arcount > 0xffff) {
    return fail("message_too_large: a section has more than 65535 entries");
  }
  Writer w;
  w.bytes().reserve(512);
  w.u16(h.id);
  w.u16(static_cast<uint16_t>((h.qr ? 0x8000 : 0) | (h.opcode & 0xf) << 11 | (h.aa ? 0x0400 : 0) |
                              (h.tc ? 0x0200 : 0) | (h.rd ? 0x0100 : 0) | (h.ra ? 0x0080 : 0) |
                              (h.z ? 0x0040 : 0) | (h.ad ? 0x0020 : 0) | (h.cd ? 0x0010 : 0) |
                              (h.rcode & 0xf)));
  w.u16(static_cast<uint16_t>(message.questions.size()));
  w.u16(static_cast<uint16_t>(message.answers.size()));
  w.u16(static_cast<uint16_t>(message.authorities.size()));
  w.u16(static_cast<uint16_t>(arcount));
  for (const DnsQuestion& q : message.questions) {
    if (!valid_wire_name(q.name.wire)) return fail("bad_name: question is not a wire name");
    w.name(q.name.wire);
    w.u16(q.type);
    w.u16(q.klass);
  }
  for (const auto* section : {&message.answers, &message.authorities, &message.additionals}) {
    for (const DnsRecord& rr : *section) {
      if (auto written = write_record(w, rr); !written) return written.error();
    }
    if (w.bytes().size() > kDnsMaxMessageSize) break;
  }
  if (message.edns) {
    const DnsEdns& e = *message.edns;
    size_t length = 0;
    for (const DnsEdnsOption& o : e.options) {
      if (o.data.size() > 0xffff) return fail("rdata_too_large: EDNS option");
      length += 4 + o.data.size();
    }
    if (length > 0xffff) return fail("rdata_too_large: OPT");
    w.u8(0);
    w.u16(dns_type::kOpt);
    w.u16(e.udp_payload_size);
    w.u32(static_cast<uint32_t>(e.extended_rcode) << 24 | static_cast<uint32_t>(e.version) << 16 |
          (e.dnssec_ok ? 0x8000u : 0u) | (e.flags & 0x7fffu));
    w.u16(static_cast<uint16_t>(length));
    for (const DnsEdnsOption& o : e.options) {
      w.u16(o.code);
      w.u16(static_cast<uint16_t>(o.data.size()));
      w.raw(o.data);
    }
  }
  if (w.bytes().size() > kDnsMaxMessageSize) {
    return fail("message_too_large: the encoded message exceeds 65535 bytes");
  }
  return std::move(w.bytes());
}

Result<std::vector<std::byte>> build_dns_answer(const DnsMessage& query, DnsAnswerKind kind,
                                                const DnsAnswerOptions& options) {
  if (query.header.qr) return fail("not_a_query: QR is set");
  if (query.questions.size() != 1) {
    return fail("question_count: " + std::to_string(query.questions.size()) + " questions");
  }
  const DnsQuestion& q = query.questions.front();
  DnsMessage r;
  r.header.id = query.header.id;
  r.header.qr = true;
  r.header.opcode = query.header.opcode;
  r.header.rd = query.header.rd;
  r.header.cd = query.header.cd;
  r.header.ra = true;
  r.questions.push_back(q);
  if (query.edns) {
    r.edns.emplace();
    r.edns->dnssec_ok = query.edns->dnssec_ok;
  }
  switch (kind) {
    case DnsAnswerKind::kUnspecifiedAddress: {
      if (q.klass != kDnsClassIn || (q.type != dns_type::kA && q.type != dns_type::kAaaa)) {
        return fail("not_an_address_question: type " + std::to_string(q.type) + " class " +
                    std::to_string(q.klass));
      }
      DnsRecord rr;
      rr.name = q.name;
      rr.type = q.type;
      rr.klass = kDnsClassIn;
      rr.ttl = options.ttl;
      rr.rdata.assign(q.type == dns_type::kA ? 4 : 16, std::byte{0});
      r.answers.push_back(std::move(rr));
      break;
    }
    case DnsAnswerKind::kNoData:
    case DnsAnswerKind::kNxDomain:
      r.header.rcode = kind == DnsAnswerKind::kNoData ? dns_rcode::kNoError : dns_rcode::kNxDomain;
      if (options.negative_soa) r.authorities.push_back(negative_soa(q.klass, options.ttl));
      break;
    case DnsAnswerKind::kRefused:
      r.header.rcode = dns_rcode::kRefused;
      break;
    case DnsAnswerKind::kServFail:
      r.header.rcode = dns_rcode::kServFail;
      break;
    case DnsAnswerKind::kNotImp:
      r.header.rcode = dns_rcode::kNotImp;
      break;
    case DnsAnswerKind::kBadVers:
      if (!r.edns) return fail("bad_vers_without_opt: BADVERS needs an OPT record in the query");
      r.edns->extended_rcode = static_cast<uint8_t>(dns_rcode::kBadVers >> 4);
      r.header.rcode = dns_rcode::kBadVers & 0xf;
      break;
  }
  return encode_dns_message(r);
}

Result<std::vector<std::byte>> build_dns_formerr(ByteSpan raw_query) {
  if (raw_query.size() < 2) return fail("truncated: no message ID to echo");
  if (raw_query.size() >= 3 && (u8_at(raw_query, 2) & 0x80) != 0) {
    return fail("not_a_query: QR is set");
  }
  std::vector<std::byte> out(kDnsHeaderSize, std::byte{0});
  out[0] = raw_query[0];
  out[1] = raw_query[1];
  out[2] = std::byte{0x80};                 // QR
  out[3] = std::byte{dns_rcode::kFormErr};  // RA clear, RCODE FORMERR
  return out;
}

Result<DnsAnswerChain> extract_dns_answer(const DnsMessage& response, std::string_view name,
                                          uint16_t type) {
  DnsAnswerChain chain;
  chain.names.emplace_back(name);
  const bool want_address = type == dns_type::kA || type == dns_type::kAaaa;
  uint32_t chain_ttl = std::numeric_limits<uint32_t>::max();
  while (true) {
    const std::string& current = chain.names.back();
    const DnsRecord* cname = nullptr;
    for (const DnsRecord& rr : response.answers) {
      if (rr.klass != kDnsClassIn || rr.name.text != current) continue;
      if (want_address && rr.type == type) {
        if (auto address = dns_record_address(rr)) {
          address->ttl = std::min(clamp_ttl(rr.ttl), chain_ttl);
          chain.addresses.push_back(*address);
        }
      } else if (rr.type == dns_type::kCname && type != dns_type::kCname) {
        if (cname && dns_name_text(cname->rdata) != dns_name_text(rr.rdata)) {
          return fail("conflicting_cname: two different CNAMEs for " + current);
        }
        cname = &rr;
      }
    }
    if (!chain.addresses.empty() || !cname) return chain;
    auto target = dns_name_text(cname->rdata);
    if (!target) return fail("bad_rdata: CNAME of " + current);
    if (std::ranges::find(chain.names, *target) != chain.names.end()) {
      return fail("cname_loop: " + current + " -> " + *target);
    }
    if (chain.names.size() > kDnsMaxCnameChain) {
      return fail("cname_chain_too_long: more than " + std::to_string(kDnsMaxCnameChain) +
                  " CNAMEs from " + chain.names.front());
    }
    chain_ttl = std::min(chain_ttl, clamp_ttl(cname->ttl));
    chain.names.push_back(std::move(*target));
  }
}

size_t remove_dns_addresses(DnsMessage& message,
                            const std::function<bool(const DnsAddress&)>& drop) {
  auto matches = [&](const DnsRecord& rr) {
    const auto address = dns_record_address(rr);
    return address && drop(*address);
  };
  const size_t removed =
      std::erase_if(message.answers, matches) + std::erase_if(message.additionals, matches);
  message.header.ancount = static_cast<uint16_t>(message.answers.size());
  message.header.arcount =
      static_cast<uint16_t>(message.additionals.size() + (message.edns ? 1 : 0));
  return removed;
}

bool dns_tc(ByteSpan message) {
  return message.size() >= kDnsHeaderSize && (u8_at(message, 2) & 0x02) != 0;
}

bool set_dns_tc(std::span<std::byte> message, bool tc) {
  if (message.size() < kDnsHeaderSize) return false;
  message[2] = tc ? (message[2] | std::byte{0x02}) : (message[2] & ~std::byte{0x02});
  return true;
}

size_t dns_udp_response_limit(const DnsMessage& query) {
  if (!query.edns) return kDnsClassicUdpSize;
  return std::clamp<size_t>(query.edns->udp_payload_size, kDnsClassicUdpSize, kDnsEdnsPayloadSize);
}

Result<std::vector<std::byte>> build_dns_truncated(const DnsMessage& response) {
  DnsMessage truncated;
  truncated.header = response.header;
  truncated.header.tc = true;
  truncated.questions = response.questions;
  truncated.edns = response.edns;
  return encode_dns_message(truncated);
}

DnsTcpFrame read_dns_tcp_frame(ByteSpan buffer) {
  DnsTcpFrame frame;
  if (buffer.size() < 2) return frame;
  const size_t length = u16_at(buffer, 0);
  if (length < kDnsHeaderSize) {
    frame.state = ParseState::kInvalid;
    frame.reason = "frame_too_short";
    return frame;
  }
  if (buffer.size() < 2 + length) return frame;
  frame.state = ParseState::kDone;
  frame.message = buffer.subspan(2, length);
  frame.frame_length = 2 + length;
  return frame;
}

Result<std::vector<std::byte>> frame_dns_tcp(ByteSpan message) {
  if (message.size() > kDnsMaxMessageSize) return fail("message_too_large: over 65535 bytes");
  std::vector<std::byte> out;
  out.reserve(2 + message.size());
  out.push_back(static_cast<std::byte>(message.size() >> 8));
  out.push_back(static_cast<std::byte>(message.size()));
  out.insert(out.end(), message.begin(), message.end());
  return out;
}

}  // namespace netfence::wire
