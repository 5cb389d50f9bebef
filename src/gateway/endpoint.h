// Conversions between the policy's IpAddress and asio endpoints, and the text form the gateway
// logs ("203.0.113.7:443", "[2001:db8::7]:443").
#pragma once

#include <algorithm>
#include <asio/ip/address.hpp>
#include <cstdint>
#include <string>

#include "fmt/format.h"
#include "policy/address.h"

namespace netfence::gateway {

inline std::string endpoint_text(const policy::IpAddress& address, uint16_t port) {
  return address.family() == policy::Family::kV6 ? fmt::format("[{}]:{}", address.to_string(), port)
                                                 : fmt::format("{}:{}", address.to_string(), port);
}

// An asio endpoint (tcp or udp) for `address`:`port`.
template <class Endpoint>
Endpoint to_endpoint(const policy::IpAddress& address, uint16_t port) {
  if (address.family() == policy::Family::kV4) {
    asio::ip::address_v4::bytes_type b;
    std::copy_n(address.data(), 4, b.begin());
    return {asio::ip::address_v4(b), port};
  }
  asio::ip::address_v6::bytes_type b;
  std::copy_n(address.data(), 16, b.begin());
  return {asio::ip::address_v6(b), port};
}

}  // namespace netfence::gateway
