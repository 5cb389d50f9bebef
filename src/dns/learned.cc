#include "dns/learned.h"

#include <algorithm>

namespace netfence::dns {

void LearnedAddresses::learn(const std::string& name, const policy::IpAddress& address,
                             uint32_t ttl, Clock::time_point now) {
  Clock::time_point expires = now + std::chrono::seconds(ttl) + grace_;
  if (auto it = table_.find(address); it != table_.end()) {
    if (auto owner = it->second.owners.find(name); owner != it->second.owners.end()) {
      owner->second = std::max(owner->second, expires);
      return;
    }
  }
  if (entries_ >= capacity_) {
    make_room(now);
    if (entries_ >= capacity_) return;  // every entry is held by a live connection
  }
  table_[address].owners.emplace(name, expires);
  ++entries_;
}

std::vector<std::string> LearnedAddresses::owners(const policy::IpAddress& address,
                                                  Clock::time_point now) const {
  std::vector<std::string> names;
  auto it = table_.find(address);
  if (it == table_.end()) return names;
  for (const auto& [name, expires] : it->second.owners) {
    if (expires > now || it->second.holds > 0) names.push_back(name);
  }
  std::sort(names.begin(), names.end());  // a stable order for callers and logs
  return names;
}

void LearnedAddresses::hold(const policy::IpAddress& address) {
  auto it = table_.find(address);
  if (it != table_.end()) ++it->second.holds;
}

void LearnedAddresses::release(const policy::IpAddress& address) {
  auto it = table_.find(address);
  if (it != table_.end() && it->second.holds > 0) --it->second.holds;
}

void LearnedAddresses::make_room(Clock::time_point now) {
  // First pass: drop everything expired and unheld.
  for (auto it = table_.begin(); it != table_.end();) {
    Slot& slot = it->second;
    if (slot.holds == 0) {
      size_t before = slot.owners.size();
      std::erase_if(slot.owners, [&](const auto& owner) { return owner.second <= now; });
      entries_ -= before - slot.owners.size();
    }
    it = slot.owners.empty() && slot.holds == 0 ? table_.erase(it) : std::next(it);
  }
  if (entries_ < capacity_) return;
  // Still full of live entries: evict the eighth closest to expiry, so the next learn()s do not
  // each pay for a full sweep.
  std::vector<Clock::time_point> expiries;
  expiries.reserve(entries_);
  for (const auto& [address, slot] : table_) {
    if (slot.holds > 0) continue;
    for (const auto& [name, expires] : slot.owners) expiries.push_back(expires);
  }
  if (expiries.empty()) return;
  size_t k = std::min(expiries.size() - 1, std::max<size_t>(1, capacity_ / 8) - 1);
  std::nth_element(expiries.begin(), expiries.begin() + k, expiries.end());
  Clock::time_point cutoff = expiries[k];
  for (auto it = table_.begin(); it != table_.end();) {
    Slot& slot = it->second;
    if (slot.holds == 0) {
      size_t before = slot.owners.size();
      std::erase_if(slot.owners, [&](const auto& owner) { return owner.second <= cutoff; });
      entries_ -= before - slot.owners.size();
    }
    it = slot.owners.empty() && slot.holds == 0 ? table_.erase(it) : std::next(it);
  }
}

}  // namespace netfence::dns
