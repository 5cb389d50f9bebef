#include "policy/hostname.h"

#include <idn2.h>

#include <algorithm>
#include <memory>

#include "fmt/format.h"

namespace netfence::policy {

namespace {

constexpr size_t kMaxNameLength = 253;  // without the trailing dot (RFC 1035 2.3.4: 255 octets)
constexpr size_t kMaxLabelLength = 63;

bool is_ldh(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

Result<std::string> to_a_labels(std::string_view name) {
  std::string input(name);
  char* out = nullptr;
  int rc = idn2_to_ascii_8z(input.c_str(), &out, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
  std::unique_ptr<char, decltype(&idn2_free)> owned(out, &idn2_free);
  if (rc != IDN2_OK) {
    return fail(
        fmt::format("'{}' is not a valid internationalised name: {}", name, idn2_strerror(rc)));
  }
  return std::string(out);
}

}  // namespace

bool looks_numeric(std::string_view name) {
  size_t dot = name.rfind('.');
  std::string_view last = dot == std::string_view::npos ? name : name.substr(dot + 1);
  return !last.empty() &&
         std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Result<std::string> normalize_hostname(std::string_view name) {
  std::string_view original = name;
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) return fail(fmt::format("'{}' is not a host name: it is empty", original));

  std::string out;
  bool ascii = std::all_of(name.begin(), name.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) {
    out.assign(name);
    std::transform(out.begin(), out.end(), out.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
  } else {
    auto converted = to_a_labels(name);
    if (!converted) return converted.error();
    out = std::move(converted.value());
  }

  if (out.size() > kMaxNameLength) {
    return fail(fmt::format("'{}' is not a host name: longer than {} characters", original,
                            kMaxNameLength));
  }
  size_t start = 0;
  while (start <= out.size()) {
    size_t end = out.find('.', start);
    if (end == std::string::npos) end = out.size();
    std::string_view label(out.data() + start, end - start);
    if (label.empty()) {
      return fail(fmt::format("'{}' is not a host name: it has an empty label", original));
    }
    if (label.size() > kMaxLabelLength) {
      return fail(fmt::format("'{}' is not a host name: label '{}' is longer than {} characters",
                              original, label, kMaxLabelLength));
    }
    auto bad = std::find_if_not(label.begin(), label.end(), is_ldh);
    if (bad != label.end()) {
      return fail(
          fmt::format("'{}' is not a host name: character '{}' is not allowed", original, *bad));
    }
    if (label.front() == '-' || label.back() == '-') {
      return fail(fmt::format("'{}' is not a host name: label '{}' starts or ends with '-'",
                              original, label));
    }
    start = end + 1;
  }
  if (looks_numeric(out)) {
    return fail(fmt::format("'{}' is not a host name or a valid IP address", original));
  }
  return out;
}

}  // namespace netfence::policy
