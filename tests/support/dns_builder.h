// Test-only DNS message builder, written independently of src/wire/dns_message.* so tests do not
// check the parser against itself. It builds queries and responses with optional name compression
// (owner names and the names inside CNAME/NS/PTR records), CNAME chains, EDNS OPT records, and
// header counts that lie, for the malformed cases.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace netfence::test {

// {0x01, 0x02} -> bytes; values are truncated to 8 bits.
std::vector<std::byte> bytes_of(std::initializer_list<int> values);

// Uncompressed wire form of a dotted name ("" or "." is the root). Labels are taken verbatim
// (no escapes); no length checks, so tests can build over-long names on purpose.
std::vector<std::byte> wire_name(std::string_view dotted);

class DnsBuilder {
 public:
  enum class Section { kAnswer, kAuthority, kAdditional };

  DnsBuilder& id(uint16_t id);
  DnsBuilder& flags(uint16_t flags);  // the whole 16-bit flags word
  DnsBuilder& qr(bool on = true);
  DnsBuilder& rd(bool on = true);
  DnsBuilder& cd(bool on = true);
  DnsBuilder& tc(bool on = true);
  DnsBuilder& rcode(uint8_t rcode);
  // Name compression for everything written after the question(s). Default on.
  DnsBuilder& compress(bool on);

  DnsBuilder& question(std::string_view name, uint16_t type, uint16_t klass = 1);
  DnsBuilder& record(Section section, std::string_view name, uint16_t type, uint32_t ttl,
                     std::vector<std::byte> rdata, uint16_t klass = 1);
  DnsBuilder& a(Section section, std::string_view name, std::array<uint8_t, 4> address,
                uint32_t ttl = 300);
  DnsBuilder& aaaa(Section section, std::string_view name, std::array<uint8_t, 16> address,
                   uint32_t ttl = 300);
  // A record whose RDATA is a single name (CNAME, NS, PTR, DNAME), compressed if enabled.
  DnsBuilder& name_record(Section section, std::string_view name, uint16_t type,
                          std::string_view target, uint32_t ttl = 300);
  DnsBuilder& cname(std::string_view name, std::string_view target, uint32_t ttl = 300);
  DnsBuilder& opt(uint16_t udp_payload = 1232, bool dnssec_ok = false, uint8_t version = 0,
                  std::vector<std::pair<uint16_t, std::vector<std::byte>>> options = {},
                  uint8_t extended_rcode = 0);
  // Overrides the counts written in the header (the real entries are written regardless).
  DnsBuilder& counts(uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar);
  // Bytes appended after everything else.
  DnsBuilder& tail(std::vector<std::byte> bytes);

  std::vector<std::byte> build() const;

 private:
  struct Entry {
    std::string name;
    uint16_t type = 0;
    uint16_t klass = 1;
    uint32_t ttl = 0;
    std::vector<std::byte> rdata;
    std::optional<std::string> rdata_name;  // RDATA is this name instead of `rdata`
  };
  uint16_t id_ = 0x1234;
  uint16_t flags_ = 0x0100;  // RD
  bool compress_ = true;
  std::vector<Entry> questions_;
  std::vector<Entry> sections_[3];
  std::optional<std::array<uint16_t, 4>> counts_;
  std::vector<std::byte> tail_;
};

}  // namespace netfence::test
