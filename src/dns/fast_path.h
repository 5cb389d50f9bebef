// The sinkhole's fast path: an allocation-free reader for the one query shape that nearly every
// stub resolver sends, and a writer for the local answers to it.
//
// Theory of operation
// -------------------
// wire::parse_dns_message() builds a DnsMessage (vectors, strings) for any message; for a query
// answered locally that is most of the cost of answering it. read_simple_query() accepts only:
// QR clear, opcode QUERY, exactly one question, no answer or authority records, and either no
// additional record or one OPT record (root owner, EDNS version 0, well-formed options) ending
// exactly at the end of the message; a question name that is uncompressed, at most 255 bytes in
// wire form, whose label bytes are all printable ASCII other than '.' and '\' (so its normalised
// text, lower-cased into SimpleQuery's own buffer, equals DnsName::text without escapes). Anything
// else returns false and the caller takes the general path, which answers it (or FORMERR) exactly
// as before: the fast path is an optimisation, never a second opinion. write_local_answer()
// produces the same bytes as wire::build_dns_answer() on the parsed query (the unit tests and the
// fuzz target check this byte for byte): the header and question copied from the query, the
// answer owner as a pointer to the question, the synthetic negative SOA, and OPT iff the query
// had OPT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/bytes.h"
#include "wire/dns_message.h"

namespace netfence::dns {

struct SimpleQuery {
  uint16_t id = 0;
  bool rd = false;
  bool cd = false;
  uint16_t type = 0;
  uint16_t klass = 0;
  size_t question_end = 0;  // offset just past QCLASS: header and question are bytes [0, this)
  bool has_opt = false;
  bool dnssec_ok = false;
  uint16_t udp_payload_size = 0;

  // The question name, normalised like wire::DnsName::text ("" for the root).
  std::string_view name() const { return std::string_view(name_, name_length_); }

  char name_[256];  // public only so that the reader can fill it; use name()
  size_t name_length_ = 0;
};

// Fills `out` and returns true when `message` has the simple shape above; false otherwise
// (nothing is wrong with the message necessarily: the general path decides).
bool read_simple_query(ByteSpan message, SimpleQuery& out);

// The most bytes write_local_answer() writes (a 255-byte name, an AAAA answer or the negative
// SOA, and OPT).
inline constexpr size_t kMaxLocalAnswerSize = 512;

// Writes the response of `kind` to the query `message` (already read into `query`) into `out`,
// which must hold kMaxLocalAnswerSize bytes. Returns the size written, or 0 when the kind does
// not fit the query (kUnspecifiedAddress for other than A/AAAA in class IN; kBadVers, which the
// fast path never needs since it only reads EDNS version 0).
size_t write_local_answer(ByteSpan message, const SimpleQuery& query, wire::DnsAnswerKind kind,
                          uint32_t ttl, std::span<std::byte> out);

}  // namespace netfence::dns
