// Fuzz target for DNS messages. The input is parsed as one message and also read as a DNS-over-TCP
// stream of length-prefixed frames. For every message that parses: it re-encodes to something that
// parses back to the same value; every local answer kind builds (or fails for a documented reason)
// and its output parses back with the query's ID, question and EDNS echoed; CNAME extraction,
// address filtering, truncation and FORMERR run and their outputs parse. Any disagreement aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "wire/dns_message.h"

namespace {

using namespace netfence::wire;
using netfence::ByteSpan;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "dns_message_fuzz: %s\n", what);
    std::abort();
  }
}

DnsMessage reparse(const std::vector<std::byte>& bytes, const char* what) {
  auto parsed = parse_dns_message(bytes);
  if (!parsed) std::fprintf(stderr, "%s\n", parsed.error().message.c_str());
  check(parsed.ok(), what);
  return std::move(parsed).value();
}

void check_names(const DnsMessage& m) {
  auto one = [](const DnsName& name) {
    const auto text = dns_name_text(name.wire);
    check(text && *text == name.text, "name text does not match its wire form");
    // The text form maps back to the (lowercased) wire form.
    const auto wire = dns_name_wire(name.text);
    check(wire && wire->size() == name.wire.size(), "text does not map back to wire");
    for (size_t i = 0; i < wire->size(); ++i) {
      auto lower = [](std::byte b) {
        const auto c = static_cast<uint8_t>(b);
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
      };
      check(lower((*wire)[i]) == lower(name.wire[i]), "text does not map back to wire");
    }
  };
  for (const auto& q : m.questions) one(q.name);
  for (const auto* s : {&m.answers, &m.authorities, &m.additionals}) {
    for (const auto& rr : *s) one(rr.name);
  }
}

void check_answers(const DnsMessage& query) {
  for (auto kind : {DnsAnswerKind::kUnspecifiedAddress, DnsAnswerKind::kNoData,
                    DnsAnswerKind::kNxDomain, DnsAnswerKind::kRefused, DnsAnswerKind::kServFail,
                    DnsAnswerKind::kNotImp, DnsAnswerKind::kBadVers}) {
    const auto built = build_dns_answer(query, kind, {.ttl = 7, .negative_soa = true});
    const bool answerable = !query.header.qr && query.questions.size() == 1;
    if (!built) {
      const bool address_ok =
          query.questions.size() == 1 && query.questions[0].klass == kDnsClassIn &&
          (query.questions[0].type == dns_type::kA || query.questions[0].type == dns_type::kAaaa);
      check(!answerable || (kind == DnsAnswerKind::kUnspecifiedAddress && !address_ok) ||
                (kind == DnsAnswerKind::kBadVers && !query.edns),
            "a builder failed for an answerable query");
      continue;
    }
    check(answerable, "a builder answered an unanswerable message");
    const DnsMessage r = reparse(*built, "a built answer does not parse");
    check(r.header.id == query.header.id && r.header.qr && r.header.rd == query.header.rd,
          "answer header does not echo the query");
    check(r.questions.size() == 1 && r.questions[0] == query.questions[0],
          "answer does not echo the question");
    check(r.edns.has_value() == query.edns.has_value(), "EDNS not echoed");
    if (r.edns) {
      check(r.edns->udp_payload_size == kDnsEdnsPayloadSize, "OPT does not advertise 1232");
    }
    check(!dns_tc(*built), "TC set on a local answer");
    auto copy = *built;
    check(set_dns_tc(copy, true) && dns_tc(copy), "set_dns_tc failed");
    if (kind == DnsAnswerKind::kUnspecifiedAddress) {
      check(r.answers.size() == 1 && dns_record_address(r.answers[0]).has_value(),
            "no address in a sinkhole answer");
      check(extract_dns_answer(r, query.questions[0].name.text, query.questions[0].type)
                    ->addresses.size() == 1,
            "extraction misses the sinkhole address");
    }
  }
}

void exercise(ByteSpan bytes) {
  auto parsed = parse_dns_message(bytes);
  const auto header = parse_dns_header(bytes);
  check(header.has_value() == (bytes.size() >= kDnsHeaderSize), "header parse");
  if (!parsed) {
    check(!parsed.error().message.empty(), "empty error message");
    return;
  }
  const DnsMessage& m = *parsed;
  check(m.header == *header, "header differs");
  check(m.questions.size() == m.header.qdcount && m.answers.size() == m.header.ancount &&
            m.authorities.size() == m.header.nscount &&
            m.additionals.size() + (m.edns ? 1 : 0) == m.header.arcount,
        "counts differ from the header");
  check_names(m);

  if (const auto encoded = encode_dns_message(m); encoded) {
    check(reparse(*encoded, "re-encoded message does not parse") == m, "round trip differs");
  }
  check_answers(m);

  for (const auto& q : m.questions) {
    if (const auto chain = extract_dns_answer(m, q.name.text, q.type); chain) {
      check(!chain->names.empty() && chain->names.front() == q.name.text, "chain start");
      check(chain->names.size() <= kDnsMaxCnameChain + 1, "chain too long");
      for (const auto& a : chain->addresses) check(a.type == q.type, "address of another type");
    }
  }

  DnsMessage filtered = m;
  const size_t removed = remove_dns_addresses(
      filtered, [](const DnsAddress& a) { return (a.bytes[0] & 1) != 0 || a.ttl == 0; });
  check(removed == (m.answers.size() + m.additionals.size()) -
                       (filtered.answers.size() + filtered.additionals.size()),
        "removed count");
  if (const auto encoded = encode_dns_message(filtered); encoded) {
    const DnsMessage again = reparse(*encoded, "filtered message does not parse");
    check(again == filtered, "filtered round trip differs");
    for (const auto* s : {&again.answers, &again.additionals}) {
      for (const auto& rr : *s) {
        const auto a = dns_record_address(rr);
        check(!a || ((a->bytes[0] & 1) == 0 && a->ttl != 0), "filter left a dropped address");
      }
    }
  }

  if (const auto truncated = build_dns_truncated(m); truncated) {
    const DnsMessage t = reparse(*truncated, "truncated message does not parse");
    check(t.header.tc && t.answers.empty() && t.authorities.empty() && t.additionals.empty(),
          "truncated message keeps records");
  }
  const size_t limit = dns_udp_response_limit(m);
  check(limit >= kDnsClassicUdpSize && limit <= kDnsEdnsPayloadSize, "UDP limit out of range");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan input(reinterpret_cast<const std::byte*>(data), size);
  exercise(input);

  ByteSpan rest = input;
  for (int frames = 0; frames < 16; ++frames) {
    const DnsTcpFrame frame = read_dns_tcp_frame(rest);
    if (frame.state != ParseState::kDone) {
      check((frame.state == ParseState::kInvalid) == !frame.reason.empty(), "frame reason");
      break;
    }
    check(frame.frame_length == 2 + frame.message.size() && frame.frame_length <= rest.size(),
          "frame length");
    const auto framed = frame_dns_tcp(frame.message);
    check(framed.ok() && framed->size() == frame.frame_length, "reframing differs");
    exercise(frame.message);
    rest = rest.subspan(frame.frame_length);
  }

  if (const auto formerr = build_dns_formerr(input); formerr) {
    const DnsMessage f = reparse(*formerr, "FORMERR does not parse");
    check(f.header.id == static_cast<uint16_t>(data[0] << 8 | data[1]) && f.header.qr &&
              f.header.rcode == dns_rcode::kFormErr,
          "FORMERR header");
  }
  return 0;
}
