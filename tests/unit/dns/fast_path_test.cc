// The fast path must be indistinguishable from the general path: for every query it accepts,
// the same name and the same response bytes as wire::parse_dns_message + build_dns_answer.
#include "dns/fast_path.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "support/dns_builder.h"
#include "wire/dns_message.h"

namespace netfence::dns {
namespace {

using test::bytes_of;
using test::DnsBuilder;
using wire::DnsAnswerKind;

constexpr DnsAnswerKind kKinds[] = {DnsAnswerKind::kUnspecifiedAddress,
                                    DnsAnswerKind::kNoData,
                                    DnsAnswerKind::kNxDomain,
                                    DnsAnswerKind::kRefused,
                                    DnsAnswerKind::kServFail,
                                    DnsAnswerKind::kNotImp,
                                    DnsAnswerKind::kBadVers};

// Checks one accepted query against the general path, for every answer kind and two TTLs.
void expect_same_as_general(const std::vector<std::byte>& bytes) {
  SimpleQuery fast;
  ASSERT_TRUE(read_simple_query(bytes, fast));
  auto general = wire::parse_dns_message(bytes);
  ASSERT_TRUE(general.ok()) << "fast path accepted what the parser rejects: "
                            << general.error().message;
  ASSERT_EQ(general->questions.size(), 1u);
  EXPECT_EQ(fast.name(), general->questions[0].name.text);
  EXPECT_EQ(fast.type, general->questions[0].type);
  EXPECT_EQ(fast.klass, general->questions[0].klass);
  EXPECT_EQ(fast.id, general->header.id);
  EXPECT_EQ(fast.has_opt, general->edns.has_value());
  for (DnsAnswerKind kind : kKinds) {
    for (uint32_t ttl : {5u, 86400u}) {
      wire::DnsAnswerOptions options;
      options.ttl = ttl;
      auto expected = wire::build_dns_answer(*general, kind, options);
      std::vector<std::byte> out(kMaxLocalAnswerSize);
      size_t size = write_local_answer(bytes, fast, kind, ttl, out);
      if (size == 0) {
        // Only the kinds that do not fit (or BADVERS, which the fast path leaves alone).
        EXPECT_TRUE(!expected || kind == DnsAnswerKind::kBadVers) << static_cast<int>(kind);
        continue;
      }
      ASSERT_TRUE(expected.ok()) << expected.error().message;
      out.resize(size);
      EXPECT_EQ(out, *expected) << "kind " << static_cast<int>(kind);
    }
  }
}

TEST(FastPath, MatchesTheGeneralPathOnTypicalQueries) {
  for (const char* name :
       {"example.com", "WWW.Example.COM", "a", "x-1.b_2.c", "", "use-application-dns.net"}) {
    for (uint16_t type : {1, 28, 16, 15, 255, 65, 64, 12, 33}) {
      for (uint16_t klass : {1, 3, 255}) {
        for (int variant = 0; variant < 5; ++variant) {
          DnsBuilder b;
          b.id(static_cast<uint16_t>(variant * 7919 + type)).question(name, type, klass);
          if (variant & 1) b.rd(false);
          if (variant == 2) b.cd();
          if (variant == 2) b.opt(4096, true);
          if (variant == 3) b.opt(512, false, 0, {{10, bytes_of({1, 2, 3, 4, 5, 6, 7, 8})}});
          if (variant == 4) b.opt(1232, true, 0, {{10, {}}, {12, bytes_of({0, 0, 0})}});
          SCOPED_TRACE(std::string(name) + " type " + std::to_string(type) + " class " +
                       std::to_string(klass) + " variant " + std::to_string(variant));
          expect_same_as_general(b.build());
        }
      }
    }
  }
}

TEST(FastPath, LongestNameIsAcceptedAndOneMoreLabelIsNot) {
  // 4 labels of 63 = 256 bytes of labels + root = 257 > 255: too long; 3 x 63 + 61 fits (255).
  std::string l63(63, 'a');
  std::string longest = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'B');
  expect_same_as_general(DnsBuilder().question(longest, 1).opt().build());
  SimpleQuery q;
  std::string too_long = l63 + "." + l63 + "." + l63 + "." + std::string(62, 'b');
  EXPECT_FALSE(read_simple_query(DnsBuilder().question(too_long, 1).build(), q));
}

TEST(FastPath, LeavesEverythingUnusualToTheGeneralPath) {
  SimpleQuery q;
  auto rejects = [&](const std::vector<std::byte>& bytes) { return !read_simple_query(bytes, q); };
  EXPECT_TRUE(rejects(DnsBuilder().qr().question("a.example", 1).build()));           // a response
  EXPECT_TRUE(rejects(DnsBuilder().flags(0x1100).question("a.example", 1).build()));  // opcode 2
  EXPECT_TRUE(rejects(DnsBuilder().question("a.example", 1).question("b.example", 1).build()));
  EXPECT_TRUE(rejects(DnsBuilder().counts(0, 0, 0, 0).build()));  // no question
  EXPECT_TRUE(rejects(DnsBuilder().question("a.example", 1).opt(1232, false, 1).build()));  // v1
  EXPECT_TRUE(rejects(DnsBuilder().question("a.example", 1).tail(bytes_of({0})).build()));
  EXPECT_TRUE(rejects(DnsBuilder()
                          .question("a.example", 1)
                          .a(DnsBuilder::Section::kAdditional, "x", {1, 2, 3, 4})
                          .build()));  // an additional record that is not OPT
  EXPECT_TRUE(rejects(DnsBuilder()
                          .question("a.example", 1)
                          .a(DnsBuilder::Section::kAnswer, "x", {1, 2, 3, 4})
                          .build()));
  // Label bytes that the general path would escape: space, '.', '\', 0x7f, 0xc3.
  for (int c : {int{' '}, int{'.'}, int{'\\'}, 0x7f, 0xc3, 0x00}) {
    std::vector<std::byte> bytes = DnsBuilder().question("abc.example", 1).build();
    bytes[12 + 2] = static_cast<std::byte>(c);  // inside the first label
    EXPECT_TRUE(rejects(bytes)) << c;
  }
  // A compressed question name (pointer to offset 12 from offset 12: invalid anyway).
  auto pointer = bytes_of({0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1});
  EXPECT_TRUE(rejects(pointer));
  // Truncated OPT options.
  auto bad_opt =
      DnsBuilder().question("a.example", 1).opt(1232, false, 0, {{10, bytes_of({1})}}).build();
  bad_opt.back() = std::byte{0};
  bad_opt[bad_opt.size() - 2] = std::byte{9};  // option length 9 > the 1 byte present
  EXPECT_TRUE(rejects(bad_opt));
  EXPECT_FALSE(wire::parse_dns_message(bad_opt).ok());
}

// Random mutations of valid queries: whenever the fast path accepts the bytes, the general path
// must accept them too and give the same name and answers.
TEST(FastPath, RandomMutationsAgreeWithTheGeneralPath) {
  std::mt19937 random(20261129);
  std::vector<std::vector<std::byte>> seeds = {
      DnsBuilder().question("api.example.com", 1).opt(1232, true).build(),
      DnsBuilder().question("x.y", 28).build(),
      DnsBuilder()
          .question("Mixed.Case.Example", 16, 3)
          .opt(512, false, 0, {{10, bytes_of({1, 2})}})
          .build(),
  };
  size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::byte> bytes = seeds[i % seeds.size()];
    int edits = 1 + static_cast<int>(random() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t at = random() % bytes.size();
      switch (random() % 4) {
        case 0:
          bytes[at] = static_cast<std::byte>(random());
          break;
        case 1:
          bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        case 2:
          bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                       static_cast<std::byte>(random()));
          break;
        case 3:
          bytes[at] ^= std::byte{0x20};
          break;
      }
      if (bytes.empty()) break;
    }
    SimpleQuery q;
    if (!read_simple_query(bytes, q)) continue;
    ++accepted;
    SCOPED_TRACE(i);
    expect_same_as_general(bytes);
    if (testing::Test::HasFailure()) break;
  }
  EXPECT_GT(accepted, 1000u);  // the mutations exercise the accepting side too
}

}  // namespace
}  // namespace netfence::dns
