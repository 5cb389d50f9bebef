#include "policy/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include "fmt/format.h"

namespace netfence::policy {

IpAddress IpAddress::v4(std::array<uint8_t, 4> bytes) {
  IpAddress a;
  std::memcpy(a.bytes_.data(), bytes.data(), 4);
  a.family_ = Family::kV4;
  return a;
}

IpAddress IpAddress::v6(std::array<uint8_t, 16> bytes) {
  IpAddress a;
  a.bytes_ = bytes;
  a.family_ = Family::kV6;
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; the longest valid IPv6 text is 45 characters.
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN + 1];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  std::array<uint8_t, 16> bytes{};
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, bytes.data()) != 1) return std::nullopt;
    return v4({bytes[0], bytes[1], bytes[2], bytes[3]});
  }
  if (inet_pton(AF_INET6, buf, bytes.data()) != 1) return std::nullopt;
  return v6(bytes);
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, sa, sizeof sin);
    std::array<uint8_t, 4> b;
    std::memcpy(b.data(), &sin.sin_addr, 4);
    return v4(b);
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, sa, sizeof sin6);
    std::array<uint8_t, 16> b;
    std::memcpy(b.data(), &sin6.sin6_addr, 16);
    return v6(b);
  }
  return std::nullopt;
}

namespace {

bool has_prefix(const uint8_t* bytes, std::initializer_list<uint8_t> prefix) {
  size_t i = 0;
  for (uint8_t b : prefix) {
    if (bytes[i++] != b) return false;
  }
  return true;
}

IpAddress v4_at(const uint8_t* p) {
  return IpAddress::v4({p[0], p[1], p[2], p[3]});
}

}  // namespace

IpAddress IpAddress::canonical() const {
  if (family_ == Family::kV6 &&
      has_prefix(bytes_.data(), {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})) {
    return v4_at(bytes_.data() + 12);
  }
  return *this;
}

std::optional<IpAddress> IpAddress::embedded_v4() const {
  if (family_ != Family::kV6) return std::nullopt;
  const uint8_t* b = bytes_.data();
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible form, excluding :: and ::1).
  if (has_prefix(b, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})) return v4_at(b + 12);
  if (has_prefix(b, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) && (b[12] | b[13] | b[14]) != 0) {
    return v4_at(b + 12);
  }
  // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48 (RFC 6052, RFC 8215).
  if (has_prefix(b, {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0})) return v4_at(b + 12);
  if (has_prefix(b, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01})) return v4_at(b + 12);
  // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d in bytes 2..5 (RFC 3056).
  if (has_prefix(b, {0x20, 0x02})) return v4_at(b + 2);
  // Teredo 2001:0000::/32: the client's IPv4 is the last 32 bits, inverted (RFC 4380).
  if (has_prefix(b, {0x20, 0x01, 0x00, 0x00})) {
    return v4({static_cast<uint8_t>(~b[12]), static_cast<uint8_t>(~b[13]),
               static_cast<uint8_t>(~b[14]), static_cast<uint8_t>(~b[15])});
  }
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family_ == Family::kV4 ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof buf);
  return buf;
}

IpPrefix::IpPrefix(IpAddress address, int length) : length_(length) {
  std::array<uint8_t, 16> bytes{};
  std::memcpy(bytes.data(), address.data(), 16);
  for (int i = length; i < 128; ++i) bytes[i / 8] &= static_cast<uint8_t>(~(0x80 >> (i % 8)));
  address_ = address.family() == Family::kV4
                 ? IpAddress::v4({bytes[0], bytes[1], bytes[2], bytes[3]})
                 : IpAddress::v6(bytes);
}

Result<IpPrefix> IpPrefix::parse(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return fail(fmt::format("'{}' is not a CIDR: expected ADDRESS/PREFIX", text));
  }
  std::string_view addr_text = text.substr(0, slash);
  std::string_view len_text = text.substr(slash + 1);
  auto addr = IpAddress::parse(addr_text);
  if (!addr) {
    return fail(fmt::format("'{}' is not a CIDR: '{}' is not an IP address", text, addr_text));
  }
  int length = -1;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), length);
  if (len_text.empty() || ec != std::errc() || end != len_text.data() + len_text.size() ||
      length < 0 || length > addr->bit_length() || (len_text.size() > 1 && len_text[0] == '0')) {
    return fail(fmt::format("'{}': prefix length '{}' must be a number from 0 to {}", text,
                            len_text, addr->bit_length()));
  }
  IpPrefix prefix(*addr, length);
  if (!(prefix.address() == *addr)) {
    return fail(fmt::format("'{}' has host bits set; did you mean {}?", text, prefix.to_string()));
  }
  return prefix;
}

bool IpPrefix::contains(const IpAddress& a) const {
  if (a.family() != address_.family()) return false;
  for (int i = 0; i < length_; ++i) {
    if (a.bit(i) != address_.bit(i)) return false;
  }
  return true;
}

std::string IpPrefix::to_string() const {
  return fmt::format("{}/{}", address_.to_string(), length_);
}

}  // namespace netfence::policy
