#include "wire/dns_message.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/dns_builder.h"

namespace netfence::wire {
namespace {

using test::bytes_of;
using test::DnsBuilder;
using test::wire_name;
using ::testing::StartsWith;
using Section = DnsBuilder::Section;

std::vector<std::byte> read_corpus(const std::string& file) {
  const auto path =
      std::filesystem::path(NETFENCE_SOURCE_DIR) / "fuzz" / "corpus" / "dns_message" / file;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const ByteSpan bytes = as_bytes(text);
  return {bytes.begin(), bytes.end()};
}

DnsMessage parse_ok(ByteSpan bytes) {
  auto parsed = parse_dns_message(bytes);
  EXPECT_TRUE(parsed.ok()) << parsed.error().message;
  return parsed.ok() ? std::move(parsed).value() : DnsMessage{};
}

std::string parse_error(ByteSpan bytes) {
  auto parsed = parse_dns_message(bytes);
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? std::string("(parsed)") : parsed.error().message;
}

std::vector<std::byte> query(std::string_view name, uint16_t type, bool edns = true) {
  DnsBuilder b;
  b.id(0xabcd).question(name, type);
  if (edns) b.opt(4096);
  return b.build();
}

std::vector<std::byte> concat(std::vector<std::byte> a, const std::vector<std::byte>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---- queries as dig sends them ----

TEST(DnsParse, DigQueries) {
  const DnsMessage a = parse_ok(read_corpus("dig_query_a"));
  EXPECT_FALSE(a.header.qr);
  EXPECT_TRUE(a.header.rd);
  EXPECT_TRUE(a.header.ad);  // dig sets AD in queries (RFC 6840 5.7)
  ASSERT_EQ(a.questions.size(), 1u);
  EXPECT_EQ(a.questions[0].name.text, "example.com");
  EXPECT_EQ(a.questions[0].type, dns_type::kA);
  EXPECT_EQ(a.questions[0].klass, kDnsClassIn);
  ASSERT_TRUE(a.edns);
  EXPECT_EQ(a.edns->udp_payload_size, 1232);
  EXPECT_FALSE(a.edns->dnssec_ok);
  ASSERT_EQ(a.edns->options.size(), 1u);
  EXPECT_EQ(a.edns->options[0].code, 10);  // COOKIE
  EXPECT_EQ(a.edns->options[0].data.size(), 8u);
  EXPECT_TRUE(a.additionals.empty());
  EXPECT_EQ(a.header.arcount, 1);

  EXPECT_FALSE(parse_ok(read_corpus("dig_query_a_noedns")).edns);
  EXPECT_TRUE(parse_ok(read_corpus("dig_query_a_dnssec")).edns->dnssec_ok);
  EXPECT_EQ(parse_ok(read_corpus("dig_query_edns_version1")).edns->version, 1);
  EXPECT_EQ(parse_ok(read_corpus("dig_query_aaaa_bufsize4096")).edns->udp_payload_size, 4096);
  EXPECT_EQ(parse_ok(read_corpus("dig_query_a_ecs")).edns->options[0].code, 8);  // client subnet
  EXPECT_EQ(parse_ok(read_corpus("dig_query_https")).questions[0].type, dns_type::kHttps);
  EXPECT_EQ(parse_ok(read_corpus("dig_query_svcb")).questions[0].type, dns_type::kSvcb);
  EXPECT_EQ(parse_ok(read_corpus("dig_query_root_ns")).questions[0].name.text, "");
  EXPECT_EQ(parse_ok(read_corpus("dig_query_ch_txt_version_bind")).questions[0].klass, 3);
  EXPECT_EQ(parse_ok(read_corpus("dig_query_ptr")).questions[0].name.text,
            "1.2.0.192.in-addr.arpa");
  EXPECT_EQ(parse_ok(read_corpus("dig_query_srv")).questions[0].name.text,
            "_http._tcp.example.com");
  const DnsMessage cd = parse_ok(read_corpus("dig_query_cd_ad_nord"));
  EXPECT_TRUE(cd.header.cd);
  EXPECT_FALSE(cd.header.rd);
}

TEST(DnsParse, NamesAreNormalisedButTheWireFormKeepsCase) {
  const DnsMessage m = parse_ok(read_corpus("dig_query_mixed_case"));
  EXPECT_EQ(m.questions[0].name.text, "example.com");
  EXPECT_EQ(m.questions[0].name.wire, wire_name("ExAmPlE.CoM"));
}

TEST(DnsParse, OddLabelBytesAreEscaped) {
  EXPECT_EQ(parse_ok(read_corpus("dig_query_escaped_dot_label")).questions[0].name.text,
            "a\\.b.example.com");
  EXPECT_EQ(parse_ok(read_corpus("dig_query_binary_label")).questions[0].name.text,
            "\\000\\255.example");
  // Space, backslash, DEL, uppercase.
  const auto bytes = DnsBuilder().question("A b\\\x7f.Example", dns_type::kA).build();
  EXPECT_EQ(parse_ok(bytes).questions[0].name.text, "a\\032b\\\\\\127.example");
}

TEST(DnsParse, TcpFramedQuery) {
  const auto stream = read_corpus("dig_tcp_query_a");
  const DnsTcpFrame frame = read_dns_tcp_frame(stream);
  ASSERT_EQ(frame.state, ParseState::kDone);
  EXPECT_EQ(frame.frame_length, stream.size());
  EXPECT_EQ(parse_ok(frame.message).questions[0].name.text, "example.com");
}

TEST(DnsParse, HeaderFlags) {
  const auto bytes = DnsBuilder().id(0x0102).flags(0xfff3).build();  // every flag, rcode 3
  const auto h = parse_dns_header(bytes);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->id, 0x0102);
  EXPECT_TRUE(h->qr && h->aa && h->tc && h->rd && h->ra && h->z && h->ad && h->cd);
  EXPECT_EQ(h->opcode, 15);
  EXPECT_EQ(h->rcode, 3);
  EXPECT_FALSE(parse_dns_header(bytes_of({1, 2, 3})));
}

// ---- compression and names ----

TEST(DnsParse, CompressedResponse) {
  const auto bytes =
      DnsBuilder()
          .qr()
          .question("www.example.com", dns_type::kA)
          .cname("www.example.com", "cdn.example.com", 300)
          .a(Section::kAnswer, "cdn.example.com", {203, 0, 113, 7}, 60)
          .name_record(Section::kAuthority, "example.com", dns_type::kNs, "ns1.example.com")
          .a(Section::kAdditional, "ns1.example.com", {198, 51, 100, 1})
          .build();
  // The builder really compressed (the CNAME target shares "example.com").
  EXPECT_LT(bytes.size(),
            DnsBuilder()
                .compress(false)
                .qr()
                .question("www.example.com", 1)
                .cname("www.example.com", "cdn.example.com", 300)
                .a(Section::kAnswer, "cdn.example.com", {203, 0, 113, 7}, 60)
                .name_record(Section::kAuthority, "example.com", dns_type::kNs, "ns1.example.com")
                .a(Section::kAdditional, "ns1.example.com", {198, 51, 100, 1})
                .build()
                .size());
  const DnsMessage m = parse_ok(bytes);
  ASSERT_EQ(m.answers.size(), 2u);
  EXPECT_EQ(m.answers[0].name.text, "www.example.com");
  EXPECT_EQ(m.answers[0].rdata, wire_name("cdn.example.com"));  // decompressed
  EXPECT_EQ(dns_rdata_name(m.answers[0]), "cdn.example.com");
  EXPECT_EQ(m.answers[1].name.text, "cdn.example.com");
  EXPECT_EQ(m.answers[1].ttl, 60u);
  EXPECT_EQ(dns_rdata_name(m.authorities[0]), "ns1.example.com");
  EXPECT_EQ(m.additionals[0].name.text, "ns1.example.com");
}

TEST(DnsParse, RdataNamesAreDecompressed) {
  const DnsMessage m = parse_ok(read_corpus("resp_mx_ns_glue_private"));
  ASSERT_EQ(m.answers.size(), 2u);
  EXPECT_EQ(m.answers[0].rdata, concat(bytes_of({0, 10}), wire_name("mail.example.org")));
  EXPECT_EQ(m.authorities[1].rdata, wire_name("ns2.example.org"));
  ASSERT_TRUE(m.edns);
  EXPECT_EQ(m.edns->udp_payload_size, 4096);
  ASSERT_EQ(m.edns->options.size(), 2u);
  EXPECT_EQ(m.edns->options[1].code, 3);
  const DnsMessage chain = parse_ok(read_corpus("resp_cname_chain"));
  EXPECT_EQ(chain.answers[1].rdata, wire_name("edge.cdn.example.net"));
}

TEST(DnsParse, PointerLoopsAndBadTargets) {
  EXPECT_THAT(parse_error(read_corpus("bad_pointer_self")), StartsWith("bad_pointer at byte 12"));
  EXPECT_THAT(parse_error(read_corpus("bad_pointer_forward")), StartsWith("bad_pointer"));
  EXPECT_THAT(parse_error(read_corpus("bad_pointer_into_header")), StartsWith("bad_pointer"));
  EXPECT_THAT(parse_error(read_corpus("bad_pointer_out_of_bounds")), StartsWith("bad_pointer"));
  EXPECT_THAT(parse_error(read_corpus("bad_pointer_loop_two")), StartsWith("bad_pointer"));
  // A pointer back into the same name ("a" then a pointer to "a"): a loop, refused.
  const auto self =
      concat(DnsBuilder().counts(1, 0, 0, 0).build(), bytes_of({1, 'a', 0xc0, 12, 0, 1, 0, 1}));
  EXPECT_THAT(parse_error(self), StartsWith("bad_pointer at byte 14"));
  // A pointer whose target run reads on past the start of the run that pointed at it: the
  // first question is the root with type 0x0178 and class 0x0241, whose bytes read as labels
  // from offset 13 run into the second question's pointer at 17.
  const auto overlap = concat(DnsBuilder().counts(2, 0, 0, 0).build(),
                              bytes_of({0, 0x01, 'x', 0x02, 'A', 0xc0, 13, 0, 1, 0, 1}));
  EXPECT_THAT(parse_error(overlap), StartsWith("bad_pointer"));
  // A pointer cut off by the end of the message.
  const auto cut =
      concat(DnsBuilder().counts(1, 0, 0, 0).build(), bytes_of({3, 'a', 'b', 'c', 1, 'd', 0xc0}));
  EXPECT_THAT(parse_error(cut), StartsWith("truncated at byte 18"));
}

TEST(DnsParse, PointerHopCap) {
  // Record k's owner is a pointer to record k-1's owner, so its name takes k hops.
  auto build = [](int records) {
    auto bytes = DnsBuilder()
                     .qr()
                     .counts(1, static_cast<uint16_t>(records), 0, 0)
                     .question("a.example", dns_type::kA)
                     .build();
    size_t previous = 12;
    for (int k = 0; k < records; ++k) {
      const size_t here = bytes.size();
      const auto rr =
          bytes_of({0xc0 | static_cast<int>(previous >> 8), static_cast<int>(previous & 0xff), 0, 1,
                    0, 1, 0, 0, 0, 1, 0, 4, 192, 0, 2, 1});
      bytes.insert(bytes.end(), rr.begin(), rr.end());
      previous = here;
    }
    return bytes;
  };
  const DnsMessage ok = parse_ok(build(kDnsMaxPointerHops));
  EXPECT_EQ(ok.answers.back().name.text, "a.example");
  EXPECT_THAT(parse_error(build(kDnsMaxPointerHops + 1)), StartsWith("too_many_pointers"));
}

TEST(DnsParse, NameLengthLimits) {
  const std::string l63(63, 'a');
  const std::string longest = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');  // 255
  const DnsMessage m = parse_ok(DnsBuilder().question(longest, dns_type::kA).build());
  EXPECT_EQ(m.questions[0].name.wire.size(), 255u);
  EXPECT_EQ(m.questions[0].name.text, longest);
  EXPECT_THAT(parse_error(DnsBuilder().question(longest + "b", dns_type::kA).build()),
              StartsWith("name_too_long"));
  EXPECT_THAT(parse_error(read_corpus("bad_name_too_long")), StartsWith("name_too_long"));
  // Too long only once a compression pointer adds the suffix.
  const std::string prefix = l63 + "." + l63 + "." + l63;  // 192 wire bytes without the root
  const auto via_pointer =
      DnsBuilder()
          .qr()
          .question(std::string(61, 'c') + ".x", dns_type::kA)
          .a(Section::kAnswer, prefix + "." + std::string(61, 'c') + ".x", {1, 2, 3, 4})
          .build();
  EXPECT_THAT(parse_error(via_pointer), StartsWith("name_too_long"));
}

TEST(DnsParse, LabelTypes) {
  EXPECT_THAT(parse_error(read_corpus("bad_label_type_0x40")), StartsWith("bad_label_type"));
  const auto x80 =
      concat(DnsBuilder().counts(1, 0, 0, 0).build(), bytes_of({0x81, 'a', 0, 0, 1, 0, 1}));
  EXPECT_THAT(parse_error(x80), StartsWith("bad_label_type"));
}

TEST(DnsParse, TruncatedMessages) {
  const auto full = read_corpus("resp_cname_chain");
  ASSERT_TRUE(parse_dns_message(full).ok());
  for (size_t n = 0; n < full.size(); ++n) {
    const auto parsed = parse_dns_message(ByteSpan(full).first(n));
    ASSERT_FALSE(parsed.ok()) << n;
    const std::string& e = parsed.error().message;
    EXPECT_TRUE(e.starts_with("truncated") || e.starts_with("counts_exceed_message") ||
                e.starts_with("bad_pointer"))
        << n << ": " << e;
  }
  EXPECT_THAT(parse_error(read_corpus("bad_truncated_record")), StartsWith("truncated"));
  EXPECT_THAT(parse_error(read_corpus("bad_short_header")), StartsWith("truncated"));
}

TEST(DnsParse, CountsTheSizeCannotHold) {
  EXPECT_THAT(parse_error(read_corpus("bad_huge_counts")), StartsWith("counts_exceed_message"));
  // One question plus 3 claimed answers needs 12 + 17 + 33 bytes at the very least.
  const auto lying = DnsBuilder().counts(1, 3, 0, 0).question("example.com", 1).build();
  EXPECT_THAT(parse_error(lying), StartsWith("counts_exceed_message"));
  const auto padded = DnsBuilder()
                          .counts(1, 3, 0, 0)
                          .question("example.com", 1)
                          .tail(std::vector<std::byte>(33, std::byte{0}))
                          .build();
  // Plausible by size, then each "record" is a root name with type 0 and rdlength 0.
  EXPECT_EQ(parse_ok(padded).answers.size(), 3u);
}

// The most expensive message the parser can be handed: 64 KiB of records whose owners are
// pointers to a 255-byte name. It parses (bounded work and memory), and round-trips.
TEST(DnsParse, WorstCaseMessageIsBounded) {
  const std::string l63(63, 'a');
  const std::string longest = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  auto bytes = DnsBuilder().qr().question(longest, dns_type::kA).build();
  const size_t records = (kDnsMaxMessageSize - bytes.size()) / 12;
  for (size_t i = 0; i < records; ++i) {
    const auto rr = bytes_of({0xc0, 12, 0, 99, 0, 1, 0, 0, 0, 1, 0, 0});  // empty RDATA, type 99
    bytes.insert(bytes.end(), rr.begin(), rr.end());
  }
  bytes[6] = static_cast<std::byte>(records >> 8);
  bytes[7] = static_cast<std::byte>(records & 0xff);
  ASSERT_LE(bytes.size(), kDnsMaxMessageSize);
  const DnsMessage m = parse_ok(bytes);
  ASSERT_EQ(m.answers.size(), records);
  EXPECT_EQ(m.answers.back().name.text, longest);
  const auto encoded = encode_dns_message(m);
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(encoded->size(), bytes.size());
}

TEST(DnsParse, TrailingBytesAndSize) {
  EXPECT_THAT(parse_error(read_corpus("bad_trailing_bytes")), StartsWith("trailing_bytes"));
  std::vector<std::byte> huge(kDnsMaxMessageSize + 1, std::byte{0});
  EXPECT_THAT(parse_error(huge), StartsWith("message_too_large"));
}

TEST(DnsParse, Rdata) {
  EXPECT_THAT(parse_error(read_corpus("bad_a_rdlength")), StartsWith("bad_rdata"));
  const auto aaaa15 = DnsBuilder()
                          .qr()
                          .question("x", 28)
                          .record(Section::kAnswer, "x", 28, 1, std::vector<std::byte>(15))
                          .build();
  EXPECT_THAT(parse_error(aaaa15), StartsWith("bad_rdata"));
  // A CHAOS-class "A" record is not an IPv4 address and is kept raw.
  const auto chaos = DnsBuilder()
                         .qr()
                         .question("x", 1, 3)
                         .record(Section::kAnswer, "x", 1, 1, bytes_of({1, 2, 3}), 3)
                         .build();
  EXPECT_EQ(parse_ok(chaos).answers[0].rdata, bytes_of({1, 2, 3}));
  // CNAME rdata with junk after the name, and a name running past the rdata.
  const auto junk = DnsBuilder()
                        .qr()
                        .question("x", 1)
                        .record(Section::kAnswer, "x", 5, 1, concat(wire_name("y"), bytes_of({1})))
                        .build();
  EXPECT_THAT(parse_error(junk), StartsWith("bad_rdata"));
  const auto overrun = DnsBuilder()
                           .qr()
                           .question("x", 1)
                           .record(Section::kAnswer, "x", 5, 1, bytes_of({3, 'a', 'b'}))
                           .tail(bytes_of({'c', 0}))
                           .build();
  EXPECT_THAT(parse_error(overrun), StartsWith("bad_rdata"));
  // SOA missing its last field.
  auto soa = concat(wire_name("ns"), wire_name("host"));
  soa.resize(soa.size() + 16);
  const auto short_soa =
      DnsBuilder().qr().question("x", 6).record(Section::kAuthority, "x", 6, 1, soa).build();
  EXPECT_THAT(parse_error(short_soa), StartsWith("bad_rdata"));
}

TEST(DnsParse, Edns) {
  const auto bytes =
      DnsBuilder()
          .question("example.com", dns_type::kA)
          .opt(1400, true, 0, {{10, bytes_of({1, 2, 3, 4, 5, 6, 7, 8})}, {12, {}}}, 1)
          .build();
  const DnsMessage m = parse_ok(bytes);
  ASSERT_TRUE(m.edns);
  EXPECT_EQ(m.edns->udp_payload_size, 1400);
  EXPECT_TRUE(m.edns->dnssec_ok);
  EXPECT_EQ(m.edns->extended_rcode, 1);
  EXPECT_EQ(dns_full_rcode(m), 16);
  ASSERT_EQ(m.edns->options.size(), 2u);
  EXPECT_EQ(m.edns->options[0].data, bytes_of({1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(m.edns->options[1].code, 12);
  EXPECT_TRUE(m.edns->options[1].data.empty());

  EXPECT_THAT(parse_error(read_corpus("bad_two_opt")), StartsWith("multiple_opt"));
  EXPECT_THAT(parse_error(read_corpus("bad_opt_in_answer")), StartsWith("misplaced_opt"));
  const auto named_opt =
      DnsBuilder().question("x", 1).record(Section::kAdditional, "x", 41, 0, {}, 1232).build();
  EXPECT_THAT(parse_error(named_opt), StartsWith("bad_opt"));
  const auto bad_option =
      DnsBuilder()
          .question("x", 1)
          .record(Section::kAdditional, "", 41, 0, bytes_of({0, 10, 0, 9, 1}), 1232)
          .build();
  EXPECT_THAT(parse_error(bad_option), StartsWith("bad_opt"));
}

TEST(DnsNames, TextAndWire) {
  EXPECT_EQ(dns_name_wire(""), wire_name(""));
  EXPECT_EQ(dns_name_wire("."), wire_name(""));
  EXPECT_EQ(dns_name_wire("Example.COM."), wire_name("Example.COM"));
  EXPECT_EQ(dns_name_wire("a\\.b.c"), concat(bytes_of({3, 'a', '.', 'b'}), wire_name("c")));
  EXPECT_EQ(dns_name_wire("\\000\\255.x"), concat(bytes_of({2, 0, 255}), wire_name("x")));
  for (const char* bad : {"..", "a..b", ".a", "a\\", "a\\25", "a\\256", "a\\2x5"}) {
    EXPECT_FALSE(dns_name_wire(bad)) << bad;
  }
  EXPECT_FALSE(dns_name_wire(std::string(64, 'a')));
  EXPECT_EQ(dns_name_text(wire_name("A.Example")), "a.example");
  EXPECT_EQ(dns_name_text(wire_name("")), "");
  EXPECT_FALSE(dns_name_text(bytes_of({1, 'a'})));                      // no root label
  EXPECT_FALSE(dns_name_text(bytes_of({0xc0, 12})));                    // compressed
  EXPECT_FALSE(dns_name_text(concat(wire_name("a"), {std::byte{0}})));  // two names
}

// ---- encoding round trips ----

TEST(DnsEncode, EveryParsableCorpusEntryRoundTrips) {
  const auto dir = std::filesystem::path(NETFENCE_SOURCE_DIR) / "fuzz" / "corpus" / "dns_message";
  int parsed_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto bytes = read_corpus(entry.path().filename().string());
    const auto m = parse_dns_message(bytes);
    if (!m) continue;
    const auto encoded = encode_dns_message(*m);
    ASSERT_TRUE(encoded.ok()) << entry.path() << encoded.error().message;
    EXPECT_EQ(parse_ok(*encoded), *m) << entry.path();
    ++parsed_files;
  }
  EXPECT_GT(parsed_files, 30);
}

TEST(DnsEncode, CompressesOwnerNamesAndKeepsCase) {
  const auto bytes = DnsBuilder()
                         .compress(false)
                         .qr()
                         .question("WWW.Example.com", dns_type::kA)
                         .a(Section::kAnswer, "WWW.Example.com", {1, 2, 3, 4})
                         .a(Section::kAnswer, "www.example.com", {1, 2, 3, 5})
                         .build();
  const DnsMessage m = parse_ok(bytes);
  const auto encoded = encode_dns_message(m);
  ASSERT_TRUE(encoded.ok());
  EXPECT_LT(encoded->size(), bytes.size());
  const DnsMessage again = parse_ok(*encoded);
  EXPECT_EQ(again, m);
  EXPECT_EQ(again.answers[0].name.wire, wire_name("WWW.Example.com"));
  EXPECT_EQ(again.answers[1].name.wire, wire_name("www.example.com"));
}

TEST(DnsEncode, RejectsBadParts) {
  DnsMessage m;
  m.questions.push_back({{bytes_of({1, 'a'}), "a"}, 1, 1});
  EXPECT_THAT(encode_dns_message(m).error().message, StartsWith("bad_name"));
  m.questions[0].name.wire = wire_name("a");
  DnsRecord big;
  big.name.wire = wire_name("a");
  big.rdata.resize(70000);
  m.answers.push_back(big);
  EXPECT_THAT(encode_dns_message(m).error().message, StartsWith("rdata_too_large"));
  m.answers[0].rdata.resize(40000);
  m.answers.push_back(m.answers[0]);
  EXPECT_THAT(encode_dns_message(m).error().message, StartsWith("message_too_large"));
}

// ---- local answers ----

struct Built {
  std::vector<std::byte> bytes;
  DnsMessage message;
};

Built answer(const std::vector<std::byte>& q, DnsAnswerKind kind, DnsAnswerOptions options = {}) {
  const DnsMessage parsed = parse_ok(q);
  auto built = build_dns_answer(parsed, kind, options);
  EXPECT_TRUE(built.ok()) << built.error().message;
  if (!built) return {};
  return {*built, parse_ok(*built)};
}

TEST(DnsAnswer, SinkholeAddressA) {
  const auto q =
      DnsBuilder().id(0x7777).rd().cd().question("Blocked.Example", 1).opt(4096, true).build();
  const Built r = answer(q, DnsAnswerKind::kUnspecifiedAddress);
  EXPECT_EQ(r.message.header.id, 0x7777);
  EXPECT_TRUE(r.message.header.qr);
  EXPECT_TRUE(r.message.header.rd);
  EXPECT_TRUE(r.message.header.cd);
  EXPECT_TRUE(r.message.header.ra);
  EXPECT_FALSE(r.message.header.aa);
  EXPECT_EQ(r.message.header.rcode, dns_rcode::kNoError);
  ASSERT_EQ(r.message.questions.size(), 1u);
  EXPECT_EQ(r.message.questions[0].name.wire, wire_name("Blocked.Example"));  // case echoed
  ASSERT_EQ(r.message.answers.size(), 1u);
  EXPECT_EQ(r.message.answers[0].type, dns_type::kA);
  EXPECT_EQ(r.message.answers[0].ttl, kDnsDefaultSinkholeTtl);
  EXPECT_EQ(r.message.answers[0].rdata, bytes_of({0, 0, 0, 0}));
  EXPECT_TRUE(r.message.authorities.empty());
  ASSERT_TRUE(r.message.edns);
  EXPECT_EQ(r.message.edns->udp_payload_size, kDnsEdnsPayloadSize);
  EXPECT_TRUE(r.message.edns->dnssec_ok);
  EXPECT_TRUE(r.message.edns->options.empty());
  // The answer's owner is a pointer to the question: 12 + question + 16-byte record + 11-byte OPT.
  EXPECT_EQ(r.bytes.size(), 12 + (wire_name("Blocked.Example").size() + 4) + 16 + 11);
}

TEST(DnsAnswer, SinkholeAddressAaaaWithTtlAndNoEdns) {
  const Built r = answer(query("v6.example", dns_type::kAaaa, false),
                         DnsAnswerKind::kUnspecifiedAddress, {.ttl = 30, .negative_soa = true});
  ASSERT_EQ(r.message.answers.size(), 1u);
  EXPECT_EQ(r.message.answers[0].type, dns_type::kAaaa);
  EXPECT_EQ(r.message.answers[0].ttl, 30u);
  EXPECT_EQ(r.message.answers[0].rdata, std::vector<std::byte>(16));
  EXPECT_FALSE(r.message.edns);
}

TEST(DnsAnswer, NegativeAnswersCarryTheSyntheticSoa) {
  for (auto [kind, rcode] : {std::pair{DnsAnswerKind::kNoData, dns_rcode::kNoError},
                             std::pair{DnsAnswerKind::kNxDomain, dns_rcode::kNxDomain}}) {
    const Built r =
        answer(query("x.example", dns_type::kHttps), kind, {.ttl = 9, .negative_soa = true});
    EXPECT_EQ(r.message.header.rcode, rcode);
    EXPECT_TRUE(r.message.answers.empty());
    ASSERT_EQ(r.message.authorities.size(), 1u);
    const DnsRecord& soa = r.message.authorities[0];
    EXPECT_EQ(soa.type, dns_type::kSoa);
    EXPECT_EQ(soa.name.text, "");
    EXPECT_EQ(soa.ttl, 9u);
    auto expected = concat(wire_name("netfence.invalid"), wire_name("hostmaster.netfence.invalid"));
    expected = concat(expected, bytes_of({0,    0,    0, 1, 0,    0,    0x0e, 0x10, 0, 0,
                                          0x02, 0x58, 0, 1, 0x51, 0x80, 0,    0,    0, 9}));
    EXPECT_EQ(soa.rdata, expected);
  }
  const Built bare =
      answer(query("x.example", 1), DnsAnswerKind::kNxDomain, {.ttl = 5, .negative_soa = false});
  EXPECT_TRUE(bare.message.authorities.empty());
}

TEST(DnsAnswer, ErrorRcodes) {
  for (auto [kind, rcode] : {std::pair{DnsAnswerKind::kRefused, dns_rcode::kRefused},
                             std::pair{DnsAnswerKind::kServFail, dns_rcode::kServFail},
                             std::pair{DnsAnswerKind::kNotImp, dns_rcode::kNotImp}}) {
    const Built r = answer(query("x.example", 1), kind);
    EXPECT_EQ(dns_full_rcode(r.message), rcode);
    EXPECT_TRUE(r.message.answers.empty() && r.message.authorities.empty());
    EXPECT_EQ(r.message.questions[0].name.text, "x.example");
    EXPECT_TRUE(r.message.edns);
  }
  const Built badvers =
      answer(DnsBuilder().question("x", 1).opt(1232, false, 1).build(), DnsAnswerKind::kBadVers);
  EXPECT_EQ(dns_full_rcode(badvers.message), dns_rcode::kBadVers);
  EXPECT_EQ(badvers.message.edns->version, 0);
}

TEST(DnsAnswer, RefusesWhatItCannotAnswer) {
  const DnsMessage mx = parse_ok(query("x", dns_type::kMx));
  EXPECT_THAT(build_dns_answer(mx, DnsAnswerKind::kUnspecifiedAddress).error().message,
              StartsWith("not_an_address_question"));
  const DnsMessage chaos = parse_ok(DnsBuilder().question("x", 1, 3).build());
  EXPECT_FALSE(build_dns_answer(chaos, DnsAnswerKind::kUnspecifiedAddress).ok());
  EXPECT_TRUE(build_dns_answer(chaos, DnsAnswerKind::kRefused).ok());
  const DnsMessage no_edns = parse_ok(query("x", 1, false));
  EXPECT_THAT(build_dns_answer(no_edns, DnsAnswerKind::kBadVers).error().message,
              StartsWith("bad_vers_without_opt"));
  const DnsMessage response = parse_ok(DnsBuilder().qr().question("x", 1).build());
  EXPECT_THAT(build_dns_answer(response, DnsAnswerKind::kRefused).error().message,
              StartsWith("not_a_query"));
  const DnsMessage two = parse_ok(DnsBuilder().question("x", 1).question("y", 1).build());
  EXPECT_THAT(build_dns_answer(two, DnsAnswerKind::kRefused).error().message,
              StartsWith("question_count"));
  const DnsMessage none = parse_ok(DnsBuilder().build());
  EXPECT_FALSE(build_dns_answer(none, DnsAnswerKind::kNxDomain).ok());
}

TEST(DnsAnswer, EveryDigQueryGetsEveryAnswer) {
  const auto dir = std::filesystem::path(NETFENCE_SOURCE_DIR) / "fuzz" / "corpus" / "dns_message";
  int queries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (!file.starts_with("dig_query_")) continue;
    const DnsMessage q = parse_ok(read_corpus(file));
    for (auto kind : {DnsAnswerKind::kNoData, DnsAnswerKind::kNxDomain, DnsAnswerKind::kRefused,
                      DnsAnswerKind::kServFail}) {
      const auto built = build_dns_answer(q, kind);
      ASSERT_TRUE(built.ok()) << file;
      const DnsMessage r = parse_ok(*built);
      EXPECT_EQ(r.header.id, q.header.id) << file;
      EXPECT_EQ(r.questions, q.questions) << file;
      EXPECT_EQ(r.edns.has_value(), q.edns.has_value()) << file;
    }
    ++queries;
  }
  EXPECT_GT(queries, 20);
}

TEST(DnsAnswer, Formerr) {
  const auto f = build_dns_formerr(bytes_of({0x12, 0x34, 0x01, 0x00, 0xff}));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, bytes_of({0x12, 0x34, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}));
  const DnsMessage m = parse_ok(*f);
  EXPECT_EQ(m.header.id, 0x1234);
  EXPECT_EQ(m.header.rcode, dns_rcode::kFormErr);
  EXPECT_TRUE(build_dns_formerr(bytes_of({0xab, 0xcd})).ok());
  EXPECT_THAT(build_dns_formerr(bytes_of({0xab})).error().message, StartsWith("truncated"));
  EXPECT_THAT(build_dns_formerr(bytes_of({0xab, 0xcd, 0x80})).error().message,
              StartsWith("not_a_query"));
}

// ---- extraction from upstream answers ----

TEST(DnsExtract, CnameChainWithTtls) {
  const DnsMessage m = parse_ok(read_corpus("resp_cname_chain"));
  const auto chain = extract_dns_answer(m, "www.example.com", dns_type::kA);
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  EXPECT_EQ(chain->names, (std::vector<std::string>{"www.example.com", "cdn.example.net",
                                                    "edge.cdn.example.net"}));
  ASSERT_EQ(chain->addresses.size(), 3u);
  EXPECT_EQ(chain->addresses[0].type, dns_type::kA);
  EXPECT_EQ(chain->addresses[0].bytes, (std::array<uint8_t, 16>{203, 0, 113, 10}));
  EXPECT_EQ(chain->addresses[2].bytes[3], 12);
  EXPECT_EQ(chain->addresses[0].ttl, 20u);  // min(300, 60, 20)
  // Asking for AAAA follows the same chain and finds nothing.
  const auto v6 = extract_dns_answer(m, "www.example.com", dns_type::kAaaa);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->names.size(), 3u);
  EXPECT_TRUE(v6->addresses.empty());
}

TEST(DnsExtract, TtlIsTheMinimumAlongTheChain) {
  const DnsMessage m = parse_ok(DnsBuilder()
                                    .qr()
                                    .question("a.example", 1)
                                    .cname("A.Example", "b.example", 10)
                                    .a(Section::kAnswer, "b.example", {192, 0, 2, 1}, 3600)
                                    .a(Section::kAnswer, "b.example", {192, 0, 2, 2}, 0x80000000)
                                    .build());
  const auto chain = extract_dns_answer(m, "a.example", 1);
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->addresses.size(), 2u);
  EXPECT_EQ(chain->addresses[0].ttl, 10u);
  EXPECT_EQ(chain->addresses[1].ttl, 0u);  // top bit set counts as 0
}

TEST(DnsExtract, IgnoresRecordsOutsideTheChain) {
  const DnsMessage m = parse_ok(
      DnsBuilder()
          .qr()
          .question("a.example", 1)
          .a(Section::kAnswer, "evil.example", {10, 0, 0, 1})
          .a(Section::kAnswer, "a.example", {192, 0, 2, 1})
          .record(Section::kAnswer, "a.example", 1, 60, bytes_of({9, 9, 9, 9}), 3)  // class CH
          .a(Section::kAdditional, "a.example", {192, 0, 2, 9})
          .build());
  const auto chain = extract_dns_answer(m, "a.example", 1);
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->addresses.size(), 1u);
  EXPECT_EQ(chain->addresses[0].bytes[3], 1);
  const auto none = extract_dns_answer(m, "b.example", 1);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->names, std::vector<std::string>{"b.example"});
  EXPECT_TRUE(none->addresses.empty());
}

TEST(DnsExtract, CnameLoops) {
  const DnsMessage m = parse_ok(read_corpus("resp_cname_loop"));
  EXPECT_THAT(extract_dns_answer(m, "a.example", 1).error().message, StartsWith("cname_loop"));
  const DnsMessage self =
      parse_ok(DnsBuilder().qr().question("a.x", 1).cname("a.x", "a.x").build());
  EXPECT_THAT(extract_dns_answer(self, "a.x", 1).error().message, StartsWith("cname_loop"));
  const DnsMessage conflict = parse_ok(
      DnsBuilder().qr().question("a.x", 1).cname("a.x", "b.x").cname("a.x", "c.x").build());
  EXPECT_THAT(extract_dns_answer(conflict, "a.x", 1).error().message,
              StartsWith("conflicting_cname"));
  const DnsMessage duplicate = parse_ok(
      DnsBuilder().qr().question("a.x", 1).cname("a.x", "b.x").cname("a.x", "B.x").build());
  EXPECT_TRUE(extract_dns_answer(duplicate, "a.x", 1).ok());  // the same target, case aside
}

TEST(DnsExtract, ChainLengthCap) {
  auto chain_of = [](size_t cnames) {
    DnsBuilder b;
    b.qr().question("n0.x", 1);
    for (size_t i = 0; i < cnames; ++i) {
      b.cname("n" + std::to_string(i) + ".x", "n" + std::to_string(i + 1) + ".x");
    }
    b.a(Section::kAnswer, "n" + std::to_string(cnames) + ".x", {192, 0, 2, 1});
    return parse_ok(b.build());
  };
  const auto ok = extract_dns_answer(chain_of(kDnsMaxCnameChain), "n0.x", 1);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->names.size(), kDnsMaxCnameChain + 1);
  EXPECT_EQ(ok->addresses.size(), 1u);
  EXPECT_THAT(extract_dns_answer(chain_of(kDnsMaxCnameChain + 1), "n0.x", 1).error().message,
              StartsWith("cname_chain_too_long"));
}

TEST(DnsExtract, RecordAddress) {
  DnsRecord rr;
  rr.type = dns_type::kAaaa;
  rr.rdata = std::vector<std::byte>(16, std::byte{0xfe});
  rr.ttl = 4;
  const auto a = dns_record_address(rr);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->bytes[15], 0xfe);
  EXPECT_EQ(a->ttl, 4u);
  rr.rdata.resize(4);
  EXPECT_FALSE(dns_record_address(rr));
  rr.type = dns_type::kTxt;
  EXPECT_FALSE(dns_record_address(rr));
}

// ---- filtering ----

bool is_private(const DnsAddress& a) {
  if (a.type == dns_type::kA) return a.bytes[0] == 10 || (a.bytes[0] == 192 && a.bytes[1] == 168);
  return (a.bytes[0] & 0xfe) == 0xfc;
}

TEST(DnsFilter, RemovesPrivateAddresses) {
  DnsMessage m = parse_ok(DnsBuilder()
                              .qr()
                              .question("a.example", 1)
                              .cname("a.example", "b.example")
                              .a(Section::kAnswer, "b.example", {10, 1, 2, 3})
                              .a(Section::kAnswer, "b.example", {203, 0, 113, 5})
                              .a(Section::kAnswer, "b.example", {192, 168, 0, 1})
                              .name_record(Section::kAuthority, "example", 2, "ns.example")
                              .a(Section::kAdditional, "ns.example", {192, 168, 9, 9})
                              .opt()
                              .build());
  EXPECT_EQ(remove_dns_addresses(m, is_private), 3u);
  EXPECT_EQ(m.header.ancount, 2);
  EXPECT_EQ(m.header.arcount, 1);
  const auto encoded = encode_dns_message(m);
  ASSERT_TRUE(encoded.ok());
  const DnsMessage again = parse_ok(*encoded);
  EXPECT_EQ(again, m);
  const auto chain = extract_dns_answer(again, "a.example", 1);
  ASSERT_EQ(chain->addresses.size(), 1u);
  EXPECT_EQ(chain->addresses[0].bytes[0], 203);
  EXPECT_EQ(again.authorities.size(), 1u);
  EXPECT_TRUE(again.additionals.empty());
  EXPECT_TRUE(again.edns);
}

TEST(DnsFilter, Ipv6AndNothingToRemove) {
  DnsMessage m = parse_ok(read_corpus("resp_aaaa_two"));
  EXPECT_EQ(remove_dns_addresses(m, is_private), 1u);
  ASSERT_EQ(m.answers.size(), 1u);
  EXPECT_EQ(m.answers[0].rdata[0], std::byte{0x20});
  EXPECT_EQ(remove_dns_addresses(m, is_private), 0u);
}

// ---- TC and UDP size ----

TEST(DnsTruncation, TcBit) {
  auto bytes = read_corpus("resp_sinkhole_a");
  EXPECT_FALSE(dns_tc(bytes));
  ASSERT_TRUE(set_dns_tc(bytes, true));
  EXPECT_TRUE(dns_tc(bytes));
  EXPECT_TRUE(parse_ok(bytes).header.tc);
  ASSERT_TRUE(set_dns_tc(bytes, false));
  EXPECT_EQ(bytes, read_corpus("resp_sinkhole_a"));
  std::vector<std::byte> short_message(11);
  EXPECT_FALSE(set_dns_tc(short_message, true));
  EXPECT_FALSE(dns_tc(short_message));
  EXPECT_TRUE(dns_tc(read_corpus("resp_tc_truncated")));
}

TEST(DnsTruncation, UdpLimitAndTruncatedResponse) {
  EXPECT_EQ(dns_udp_response_limit(parse_ok(query("x", 1, false))), 512u);
  EXPECT_EQ(dns_udp_response_limit(parse_ok(query("x", 1, true))), 1232u);  // asked 4096
  EXPECT_EQ(dns_udp_response_limit(parse_ok(DnsBuilder().question("x", 1).opt(100).build())), 512u);
  EXPECT_EQ(dns_udp_response_limit(parse_ok(DnsBuilder().question("x", 1).opt(1000).build())),
            1000u);
  const DnsMessage full = parse_ok(read_corpus("resp_cname_chain"));
  const auto truncated = build_dns_truncated(full);
  ASSERT_TRUE(truncated.ok());
  const DnsMessage t = parse_ok(*truncated);
  EXPECT_TRUE(t.header.tc);
  EXPECT_EQ(t.header.id, full.header.id);
  EXPECT_EQ(t.questions, full.questions);
  EXPECT_TRUE(t.answers.empty() && t.authorities.empty() && t.additionals.empty());
  EXPECT_EQ(t.edns, full.edns);
}

// ---- TCP framing ----

TEST(DnsTcp, Framing) {
  const auto first = read_corpus("resp_sinkhole_a");
  const auto second = read_corpus("resp_refused");
  const auto stream = read_corpus("tcp_two_frames");
  for (size_t n = 0; n < first.size() + 2; ++n) {
    EXPECT_EQ(read_dns_tcp_frame(ByteSpan(stream).first(n)).state, ParseState::kNeedMore) << n;
  }
  const DnsTcpFrame a = read_dns_tcp_frame(stream);
  ASSERT_EQ(a.state, ParseState::kDone);
  EXPECT_TRUE(std::ranges::equal(a.message, first));
  const DnsTcpFrame b = read_dns_tcp_frame(ByteSpan(stream).subspan(a.frame_length));
  ASSERT_EQ(b.state, ParseState::kDone);
  EXPECT_TRUE(std::ranges::equal(b.message, second));
  EXPECT_EQ(a.frame_length + b.frame_length, stream.size());

  const auto framed = frame_dns_tcp(first);
  ASSERT_TRUE(framed.ok());
  EXPECT_EQ(ByteSpan(*framed).subspan(0, a.frame_length).size(), a.frame_length);
  EXPECT_TRUE(std::ranges::equal(*framed, ByteSpan(stream).first(a.frame_length)));

  const DnsTcpFrame tiny = read_dns_tcp_frame(bytes_of({0, 11}));
  EXPECT_EQ(tiny.state, ParseState::kInvalid);
  EXPECT_EQ(tiny.reason, "frame_too_short");
  EXPECT_FALSE(frame_dns_tcp(std::vector<std::byte>(kDnsMaxMessageSize + 1)).ok());
}

}  // namespace
}  // namespace netfence::wire
