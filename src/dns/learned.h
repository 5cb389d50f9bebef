// LearnedAddresses: which allowed names own an address, as learned from the DNS answers that
// netfence itself relayed (SPEC 1.3 step 4). The gateway asks it about a connection to an IP
// that no IP/CIDR rule allows: if the sandbox got that IP from netfence's own DNS answer for an
// allowed name, the connection may go ahead on that name's ports (db.example.com:5432,
// github.com:22: protocols with no SNI or Host to read).
//
// An entry lives for the answer's TTL plus a grace period (clients cache past the TTL), and for
// as long as a connection that relied on it is open (hold/release). The table is bounded: when
// full, expired entries go first, then those closest to expiry. Single-threaded: it belongs to
// the event loop that runs the DNS server and the gateway.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/address.h"

namespace netfence::dns {

class LearnedAddresses {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LearnedAddresses(size_t capacity = 65536,
                            std::chrono::seconds grace = std::chrono::seconds(60))
      : capacity_(capacity), grace_(grace) {}

  // Remembers that `name` (normalised) resolved to `address` with `ttl` seconds to live; learning
  // it again extends the entry. When the table is full, room is made (see above); if every entry
  // is held by a connection, nothing is learned (connections to the address then need an SNI
  // or Host, as if it had never been learned).
  void learn(const std::string& name, const policy::IpAddress& address, uint32_t ttl,
             Clock::time_point now = Clock::now());
  // The names (normalised) that own `address` now, sorted; empty if none. Copies, so the caller
  // may judge each without holding a reference into the table.
  std::vector<std::string> owners(const policy::IpAddress& address,
                                  Clock::time_point now = Clock::now()) const;
  // Keeps `address`'s entries alive past expiry while a connection uses them; every hold()
  // needs one release().
  void hold(const policy::IpAddress& address);
  void release(const policy::IpAddress& address);

  size_t size() const { return entries_; }
  size_t capacity() const { return capacity_; }

 private:
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Name -> expiry. A map, not a list: one CDN address can be the answer for thousands of names,
  // and learn() runs for every relayed answer.
  using Owners = std::unordered_map<std::string, Clock::time_point, NameHash, std::equal_to<>>;
  struct Slot {
    Owners owners;
    unsigned holds = 0;
  };

  void make_room(Clock::time_point now);

  size_t capacity_;
  std::chrono::seconds grace_;
  size_t entries_ = 0;
  std::unordered_map<policy::IpAddress, Slot, policy::IpAddressHash> table_;
};

}  // namespace netfence::dns
