#include "support/dns_builder.h"

#include <map>

namespace netfence::test {
namespace {

class Out {
 public:
  explicit Out(bool compress) : compress_(compress) {}
  void u8(int v) { bytes_.push_back(static_cast<std::byte>(v)); }
  void u16(int v) {
    u8(v >> 8);
    u8(v);
  }
  void u32(uint32_t v) {
    u16(static_cast<int>(v >> 16));
    u16(static_cast<int>(v & 0xffff));
  }
  void raw(const std::vector<std::byte>& b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
  size_t size() const { return bytes_.size(); }
  std::vector<std::byte>& bytes() { return bytes_; }

  // Writes `dotted`, reusing any suffix written before (exact text match) when compressing.
  void name(std::string_view dotted, bool compress) {
    if (dotted == ".") dotted = "";
    if (!dotted.empty() && dotted.back() == '.') dotted.remove_suffix(1);
    while (!dotted.empty()) {
      const std::string suffix(dotted);
      if (compress && compress_) {
        if (auto it = seen_.find(suffix); it != seen_.end()) {
          u16(0xC000 | it->second);
          return;
        }
      }
      if (size() < 0x4000) seen_.emplace(suffix, static_cast<int>(size()));
      const size_t dot = dotted.find('.');
      const std::string_view label = dotted.substr(0, dot);
      u8(static_cast<int>(label.size()));
      for (char c : label) u8(c);
      dotted = dot == std::string_view::npos ? std::string_view() : dotted.substr(dot + 1);
    }
    u8(0);
  }

 private:
  bool compress_;
  std::vector<std::byte> bytes_;
  std::map<std::string, int> seen_;
};

}  // namespace

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

std::vector<std::byte> wire_name(std::string_view dotted) {
  Out out(false);
  out.name(dotted, false);
  return out.bytes();
}

DnsBuilder& DnsBuilder::id(uint16_t id) {
  id_ = id;
  return *this;
}
DnsBuilder& DnsBuilder::flags(uint16_t flags) {
  flags_ = flags;
  return *this;
}
static uint16_t with_bit(uint16_t flags, uint16_t bit, bool on) {
  return static_cast<uint16_t>(on ? (flags | bit) : (flags & ~bit));
}
DnsBuilder& DnsBuilder::qr(bool on) {
  flags_ = with_bit(flags_, 0x8000, on);
  return *this;
}
DnsBuilder& DnsBuilder::rd(bool on) {
  flags_ = with_bit(flags_, 0x0100, on);
  return *this;
}
DnsBuilder& DnsBuilder::cd(bool on) {
  flags_ = with_bit(flags_, 0x0010, on);
  return *this;
}
DnsBuilder& DnsBuilder::tc(bool on) {
  flags_ = with_bit(flags_, 0x0200, on);
  return *this;
}
DnsBuilder& DnsBuilder::rcode(uint8_t rcode) {
  flags_ = static_cast<uint16_t>((flags_ & 0xfff0) | (rcode & 0xf));
  return *this;
}
DnsBuilder& DnsBuilder::compress(bool on) {
  compress_ = on;
  return *this;
}

DnsBuilder& DnsBuilder::question(std::string_view name, uint16_t type, uint16_t klass) {
  questions_.push_back({std::string(name), type, klass, 0, {}, std::nullopt});
  return *this;
}

DnsBuilder& DnsBuilder::record(Section section, std::string_view name, uint16_t type, uint32_t ttl,
                               std::vector<std::byte> rdata, uint16_t klass) {
  sections_[static_cast<int>(section)].push_back(
      {std::string(name), type, klass, ttl, std::move(rdata), std::nullopt});
  return *this;
}

DnsBuilder& DnsBuilder::a(Section section, std::string_view name, std::array<uint8_t, 4> address,
                          uint32_t ttl) {
  std::vector<std::byte> rdata;
  for (uint8_t b : address) rdata.push_back(std::byte{b});
  return record(section, name, 1, ttl, std::move(rdata));
}

DnsBuilder& DnsBuilder::aaaa(Section section, std::string_view name,
                             std::array<uint8_t, 16> address, uint32_t ttl) {
  std::vector<std::byte> rdata;
  for (uint8_t b : address) rdata.push_back(std::byte{b});
  return record(section, name, 28, ttl, std::move(rdata));
}

DnsBuilder& DnsBuilder::name_record(Section section, std::string_view name, uint16_t type,
                                    std::string_view target, uint32_t ttl) {
  sections_[static_cast<int>(section)].push_back(
      {std::string(name), type, 1, ttl, {}, std::string(target)});
  return *this;
}

DnsBuilder& DnsBuilder::cname(std::string_view name, std::string_view target, uint32_t ttl) {
  return name_record(Section::kAnswer, name, 5, target, ttl);
}

DnsBuilder& DnsBuilder::opt(uint16_t udp_payload, bool dnssec_ok, uint8_t version,
                            std::vector<std::pair<uint16_t, std::vector<std::byte>>> options,
                            uint8_t extended_rcode) {
  std::vector<std::byte> rdata;
  for (const auto& [code, data] : options) {
    rdata.push_back(static_cast<std::byte>(code >> 8));
    rdata.push_back(static_cast<std::byte>(code));
    rdata.push_back(static_cast<std::byte>(data.size() >> 8));
    rdata.push_back(static_cast<std::byte>(data.size()));
    rdata.insert(rdata.end(), data.begin(), data.end());
  }
  const uint32_t ttl = static_cast<uint32_t>(extended_rcode) << 24 |
                       static_cast<uint32_t>(version) << 16 | (dnssec_ok ? 0x8000u : 0u);
  return record(Section::kAdditional, "", 41, ttl, std::move(rdata), udp_payload);
}

DnsBuilder& DnsBuilder::counts(uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar) {
  counts_ = std::array<uint16_t, 4>{qd, an, ns, ar};
  return *this;
}

DnsBuilder& DnsBuilder::tail(std::vector<std::byte> bytes) {
  tail_ = std::move(bytes);
  return *this;
}

std::vector<std::byte> DnsBuilder::build() const {
  Out out(compress_);
  out.u16(id_);
  out.u16(flags_);
  const std::array<uint16_t, 4> counts = counts_.value_or(std::array<uint16_t, 4>{
      static_cast<uint16_t>(questions_.size()), static_cast<uint16_t>(sections_[0].size()),
      static_cast<uint16_t>(sections_[1].size()), static_cast<uint16_t>(sections_[2].size())});
  for (uint16_t c : counts) out.u16(c);
  for (const Entry& q : questions_) {
    out.name(q.name, true);
    out.u16(q.type);
    out.u16(q.klass);
  }
  for (const auto& section : sections_) {
    for (const Entry& rr : section) {
      out.name(rr.name, true);
      out.u16(rr.type);
      out.u16(rr.klass);
      out.u32(rr.ttl);
      if (rr.rdata_name) {
        const size_t length_at = out.size();
        out.u16(0);
        out.name(*rr.rdata_name, true);
        const size_t length = out.size() - length_at - 2;
        out.bytes()[length_at] = static_cast<std::byte>(length >> 8);
        out.bytes()[length_at + 1] = static_cast<std::byte>(length);
      } else {
        out.u16(static_cast<int>(rr.rdata.size()));
        out.raw(rr.rdata);
      }
    }
  }
  out.raw(tail_);
  return out.bytes();
}

}  // namespace netfence::test
