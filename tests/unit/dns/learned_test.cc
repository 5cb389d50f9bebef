#include "dns/learned.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace netfence::dns {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Clock = LearnedAddresses::Clock;
using std::chrono::seconds;

policy::IpAddress ip(const std::string& text) {
  return policy::IpAddress::parse(text).value();
}

const Clock::time_point t0 = Clock::time_point() + std::chrono::hours(1000);

TEST(LearnedAddresses, AnAddressBelongsToItsNameForTtlPlusGrace) {
  LearnedAddresses table(100, seconds(60));
  table.learn("db.example.com", ip("203.0.113.5"), 30, t0);
  EXPECT_THAT(table.owners(ip("203.0.113.5"), t0), ElementsAre("db.example.com"));
  EXPECT_THAT(table.owners(ip("203.0.113.5"), t0 + seconds(89)), ElementsAre("db.example.com"));
  EXPECT_THAT(table.owners(ip("203.0.113.5"), t0 + seconds(90)), IsEmpty());
  EXPECT_THAT(table.owners(ip("203.0.113.6"), t0), IsEmpty());
}

TEST(LearnedAddresses, SeveralNamesShareAnAddressAndRelearningExtends) {
  LearnedAddresses table(100, seconds(0));
  table.learn("a.example.com", ip("2001:db8::1"), 10, t0);
  table.learn("b.example.com", ip("2001:db8::1"), 100, t0);
  table.learn("a.example.com", ip("2001:db8::1"), 50, t0 + seconds(5));  // extends a to 55
  table.learn("a.example.com", ip("2001:db8::1"), 1, t0 + seconds(6));   // never shortens
  EXPECT_EQ(table.size(), 2u);
  EXPECT_THAT(table.owners(ip("2001:db8::1"), t0 + seconds(20)),
              UnorderedElementsAre("a.example.com", "b.example.com"));
  EXPECT_THAT(table.owners(ip("2001:db8::1"), t0 + seconds(60)), ElementsAre("b.example.com"));
  EXPECT_THAT(table.owners(ip("2001:db8::1"), t0 + seconds(100)), IsEmpty());
}

TEST(LearnedAddresses, HeldAddressesOutliveTheirTtlUntilReleased) {
  LearnedAddresses table(100, seconds(0));
  table.learn("db.example.com", ip("198.51.100.7"), 10, t0);
  table.hold(ip("198.51.100.7"));
  table.hold(ip("198.51.100.7"));  // two connections
  EXPECT_THAT(table.owners(ip("198.51.100.7"), t0 + seconds(3600)), ElementsAre("db.example.com"));
  table.release(ip("198.51.100.7"));
  EXPECT_THAT(table.owners(ip("198.51.100.7"), t0 + seconds(3600)), ElementsAre("db.example.com"));
  table.release(ip("198.51.100.7"));
  EXPECT_THAT(table.owners(ip("198.51.100.7"), t0 + seconds(3600)), IsEmpty());
  table.release(ip("198.51.100.7"));  // an extra release is harmless
  table.hold(ip("192.0.2.99"));       // holding an unknown address does nothing
  table.release(ip("192.0.2.99"));
  EXPECT_THAT(table.owners(ip("192.0.2.99"), t0), IsEmpty());
}

TEST(LearnedAddresses, BoundedCapacityEvictsExpiredFirstThenClosestToExpiry) {
  LearnedAddresses table(8, seconds(0));
  // 4 entries already expired at t0+100, 4 live ones with increasing TTLs.
  for (int i = 0; i < 4; ++i) {
    table.learn("old" + std::to_string(i) + ".example", ip("192.0.2." + std::to_string(i)), 10, t0);
  }
  for (int i = 0; i < 4; ++i) {
    table.learn("live" + std::to_string(i) + ".example", ip("198.51.100." + std::to_string(i)),
                static_cast<uint32_t>(1000 + i * 100), t0);
  }
  EXPECT_EQ(table.size(), 8u);
  Clock::time_point later = t0 + seconds(100);
  table.learn("new.example", ip("203.0.113.1"), 5000, later);
  EXPECT_LE(table.size(), 8u);
  EXPECT_THAT(table.owners(ip("203.0.113.1"), later), ElementsAre("new.example"));
  for (int i = 0; i < 4; ++i) {  // the expired ones went; the live ones stayed
    EXPECT_THAT(table.owners(ip("198.51.100." + std::to_string(i)), later), testing::SizeIs(1));
  }
  // Fill up with live entries, then one more: the one closest to expiry (live0) goes first.
  for (int i = 0; i < 3; ++i) {
    table.learn("fill" + std::to_string(i) + ".example", ip("203.0.113." + std::to_string(10 + i)),
                9000, later);
  }
  EXPECT_EQ(table.size(), 8u);
  table.learn("last.example", ip("203.0.113.50"), 9000, later);
  EXPECT_LE(table.size(), 8u);
  EXPECT_THAT(table.owners(ip("203.0.113.50"), later), ElementsAre("last.example"));
  EXPECT_THAT(table.owners(ip("198.51.100.0"), later), IsEmpty());
  EXPECT_THAT(table.owners(ip("198.51.100.3"), later), ElementsAre("live3.example"));
}

TEST(LearnedAddresses, HeldEntriesAreNeverEvicted) {
  LearnedAddresses table(2, seconds(0));
  table.learn("a.example", ip("192.0.2.1"), 1, t0);
  table.learn("b.example", ip("192.0.2.2"), 1, t0);
  table.hold(ip("192.0.2.1"));
  table.hold(ip("192.0.2.2"));
  Clock::time_point later = t0 + seconds(50);  // both expired, both held
  table.learn("c.example", ip("192.0.2.3"), 100, later);
  EXPECT_THAT(table.owners(ip("192.0.2.3"), later), IsEmpty());  // no room: not learned
  EXPECT_THAT(table.owners(ip("192.0.2.1"), later), ElementsAre("a.example"));
  table.release(ip("192.0.2.2"));
  table.learn("c.example", ip("192.0.2.3"), 100, later);
  EXPECT_THAT(table.owners(ip("192.0.2.3"), later), ElementsAre("c.example"));
  EXPECT_THAT(table.owners(ip("192.0.2.2"), later), IsEmpty());
  EXPECT_EQ(table.size(), 2u);
}

TEST(LearnedAddresses, ZeroCapacityLearnsNothing) {
  LearnedAddresses table(0);
  table.learn("a.example", ip("192.0.2.1"), 100, t0);
  EXPECT_THAT(table.owners(ip("192.0.2.1"), t0), IsEmpty());
  EXPECT_EQ(table.size(), 0u);
}

}  // namespace
}  // namespace netfence::dns
