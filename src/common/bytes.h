// Byte-span helpers for parsers of untrusted input. Parsers take std::span<const std::byte> and
// check bounds before every read; these helpers keep that explicit and cheap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace netfence {

using ByteSpan = std::span<const std::byte>;

inline ByteSpan as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline std::string_view as_chars(ByteSpan b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Callers check `offset + N <= data.size()` first.
inline uint8_t u8_at(ByteSpan data, size_t offset) {
  return static_cast<uint8_t>(data[offset]);
}
inline uint16_t u16_at(ByteSpan data, size_t offset) {
  return static_cast<uint16_t>(u8_at(data, offset) << 8 | u8_at(data, offset + 1));
}
inline uint32_t u24_at(ByteSpan data, size_t offset) {
  return static_cast<uint32_t>(u8_at(data, offset)) << 16 | u16_at(data, offset + 1);
}
inline uint32_t u32_at(ByteSpan data, size_t offset) {
  return static_cast<uint32_t>(u16_at(data, offset)) << 16 | u16_at(data, offset + 2);
}

}  // namespace netfence
