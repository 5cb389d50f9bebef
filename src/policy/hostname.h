// Host names as the policy compares them: ASCII, lower case, no trailing dot, IDNA A-labels
// (libidn2, IDNA2008 non-transitional), RFC 1035 lengths and RFC 1123 letter-digit-hyphen labels.
// Rules and every name seen at run time (SNI, Host, DNS question) go through the same function,
// so matching is a plain string comparison.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace netfence::policy {

// Returns the normalised form of `name`, or an error that quotes it and says why it is not a
// host name (empty, too long, bad label, bad character, looks like an IP address, bad IDN).
Result<std::string> normalize_hostname(std::string_view name);

// True when `name` (already normalised) ends with a label of digits only: such a "name" is an
// IPv4 literal or a typo of one, never a host name (RFC 1123 section 2.1, RFC 3696 section 2).
bool looks_numeric(std::string_view name);

}  // namespace netfence::policy
