// IP addresses and prefixes for rules and decisions: one 16-byte representation for both
// families (IPv4 kept as 4 bytes with family kV4), strict text parsing (inet_pton: no decimal,
// octal or shortened IPv4 forms, no zone ids), and the unwrapping of IPv4 addresses embedded in
// IPv6 ones (mapped, NAT64, 6to4, Teredo) so that checks cannot be side-stepped by re-encoding.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace netfence::policy {

enum class Family : uint8_t { kV4, kV6 };

class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress v4(std::array<uint8_t, 4> bytes);
  static IpAddress v6(std::array<uint8_t, 16> bytes);

  // Strict parse of a dotted-quad IPv4 or an RFC 4291 IPv6 text; nullopt when it is neither.
  static std::optional<IpAddress> parse(std::string_view text);
  // From a socket address (AF_INET or AF_INET6); nullopt for other families.
  static std::optional<IpAddress> from_sockaddr(const sockaddr* sa);

  Family family() const { return family_; }
  int bit_length() const { return family_ == Family::kV4 ? 32 : 128; }
  // Address bytes in network order; 4 valid bytes for IPv4, 16 for IPv6.
  const uint8_t* data() const { return bytes_.data(); }
  bool bit(int index) const { return (bytes_[index / 8] >> (7 - index % 8)) & 1; }

  // IPv4-mapped (::ffff:a.b.c.d) converted to plain IPv4; every other address unchanged.
  // This is the same endpoint, so rules match on this form.
  IpAddress canonical() const;
  // The IPv4 address embedded by IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96 and
  // 64:ff9b:1::/48), 6to4 (2002::/16) or Teredo (2001::/32, client address) forms; nullopt if
  // none. Deny-side checks apply to both the address and this.
  std::optional<IpAddress> embedded_v4() const;

  std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  std::array<uint8_t, 16> bytes_{};
  Family family_ = Family::kV4;
};

struct IpAddressHash {
  size_t operator()(const IpAddress& a) const {
    uint64_t h = static_cast<uint64_t>(a.family()) + 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 16; ++i) h = (h ^ a.data()[i]) * 0x100000001b3ULL;
    return static_cast<size_t>(h);
  }
};

class IpPrefix {
 public:
  IpPrefix() = default;
  IpPrefix(IpAddress address, int length);  // host bits are cleared

  // Parses "a.b.c.d/n" or "v6/n". On failure the error quotes the text and says why.
  static Result<IpPrefix> parse(std::string_view text);

  const IpAddress& address() const { return address_; }
  int length() const { return length_; }
  bool contains(const IpAddress& a) const;
  std::string to_string() const;
  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;

 private:
  IpAddress address_;
  int length_ = 0;
};

}  // namespace netfence::policy
