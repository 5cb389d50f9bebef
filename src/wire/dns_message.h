// DNS messages: parsing (RFC 1035, 3596, 6891), local answers for the sinkhole, CNAME-chain
// extraction and address filtering for relayed answers, TC handling and TCP framing (RFC 7766).
//
// Theory of operation
// -------------------
// parse_dns_message() turns untrusted bytes (a query from the sandbox, or an answer from an
// upstream resolver) into a DnsMessage value in one pass. Every read is bounds-checked; the
// section counts are checked against the message size before anything is reserved (a question
// takes at least 5 bytes, a record at least 11); names are decompressed with these rules: a
// compression pointer must point strictly before the start of the label run that contains it (so
// every hop goes backwards and loops are impossible), never into the header, at most
// kDnsMaxPointerHops hops, at most kDnsMaxNameWireLength bytes in wire form, labels of at most 63
// bytes (the 0x40/0x80 label types are rejected). Names inside RDATA of the types RFC 3597 4 lists
// as compressible (NS, CNAME, SOA, PTR, MX, SRV, ...) are decompressed too, so every DnsRecord's
// rdata stands on its own and a message can be re-encoded from its parts. The EDNS OPT record
// is lifted out of the additional section into DnsMessage::edns. Trailing bytes after the last
// record are an error.
//
// Each name is kept twice: `wire`, the uncompressed wire form exactly as sent (original case, for
// echoing the question back), and `text`, a normalised presentation form for policy decisions:
// ASCII lowercase, labels joined by '.', no trailing dot, "" for the root. Label bytes outside
// 0x21..0x7e are written as \DDD (decimal) and '.' and '\' inside a label as \. and \\, so a label
// containing a dot can never pass for two labels; the policy layer accepts only LDH names, so any
// escaped name simply matches no rule.
//
// The builders (build_dns_answer and friends) make complete responses from a parsed query: they
// echo the ID, the opcode, RD and CD, and the question as the client wrote it (0x20-randomised
// case intact); they answer with OPT advertising kDnsEdnsPayloadSize if and only if the query had
// OPT (copying its DO bit). Negative answers (NODATA, NXDOMAIN) carry a synthetic SOA for the root
// zone in the authority section whose TTL and MINIMUM are the answer TTL, so negative caching
// (RFC 2308) lasts exactly as long as a sinkhole address would (DnsAnswerOptions::negative_soa
// turns it off). encode_dns_message() compresses owner names (by exact byte match, so case is
// preserved); names inside RDATA are written uncompressed.
//
// Errors: functions returning Result<T> fail with a message that starts with a stable snake_case
// reason (the list is in docs/wire-http-dns.md), followed by " at byte N" or details.
// No exceptions, no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "wire/parse_state.h"

namespace netfence::wire {

inline constexpr size_t kDnsHeaderSize = 12;
inline constexpr size_t kDnsMaxMessageSize = 65535;
inline constexpr size_t kDnsMaxNameWireLength = 255;  // including the root label
inline constexpr size_t kDnsMaxLabelLength = 63;
// A maximal name has 127 labels; one pointer per label is the most a real compressor produces.
inline constexpr int kDnsMaxPointerHops = 127;
// Most CNAMEs extract_dns_answer() follows (resolvers give up around 8-16 too).
inline constexpr size_t kDnsMaxCnameChain = 16;
// The EDNS UDP payload size netfence advertises and the most it sends (DNS flag day 2020).
inline constexpr uint16_t kDnsEdnsPayloadSize = 1232;
// The UDP limit for a client that sent no OPT (RFC 1035 4.2.1).
inline constexpr size_t kDnsClassicUdpSize = 512;
inline constexpr uint32_t kDnsDefaultSinkholeTtl = 5;

namespace dns_type {
inline constexpr uint16_t kA = 1;
inline constexpr uint16_t kNs = 2;
inline constexpr uint16_t kCname = 5;
inline constexpr uint16_t kSoa = 6;
inline constexpr uint16_t kPtr = 12;
inline constexpr uint16_t kMx = 15;
inline constexpr uint16_t kTxt = 16;
inline constexpr uint16_t kAaaa = 28;
inline constexpr uint16_t kSrv = 33;
inline constexpr uint16_t kDname = 39;
inline constexpr uint16_t kOpt = 41;
inline constexpr uint16_t kSvcb = 64;
inline constexpr uint16_t kHttps = 65;
inline constexpr uint16_t kAny = 255;
}  // namespace dns_type

inline constexpr uint16_t kDnsClassIn = 1;

namespace dns_rcode {
inline constexpr uint16_t kNoError = 0;
inline constexpr uint16_t kFormErr = 1;
inline constexpr uint16_t kServFail = 2;
inline constexpr uint16_t kNxDomain = 3;
inline constexpr uint16_t kNotImp = 4;
inline constexpr uint16_t kRefused = 5;
inline constexpr uint16_t kBadVers = 16;  // extended (needs OPT)
}  // namespace dns_rcode

struct DnsHeader {
  uint16_t id = 0;
  bool qr = false;
  uint8_t opcode = 0;  // 4 bits
  bool aa = false;
  bool tc = false;
  bool rd = false;
  bool ra = false;
  bool z = false;
  bool ad = false;
  bool cd = false;
  uint8_t rcode = 0;  // low 4 bits; with EDNS the upper 8 bits are DnsEdns::extended_rcode
  uint16_t qdcount = 0;
  uint16_t ancount = 0;
  uint16_t nscount = 0;
  uint16_t arcount = 0;  // includes the OPT record
  bool operator==(const DnsHeader&) const = default;
};

struct DnsName {
  std::vector<std::byte> wire;  // uncompressed wire form as sent, ending with the root label
  std::string text;             // normalised presentation form (see the theory of operation)
  bool operator==(const DnsName&) const = default;
};

struct DnsQuestion {
  DnsName name;
  uint16_t type = 0;
  uint16_t klass = kDnsClassIn;
  bool operator==(const DnsQuestion&) const = default;
};

struct DnsRecord {
  DnsName name;
  uint16_t type = 0;
  uint16_t klass = kDnsClassIn;
  uint32_t ttl = 0;
  std::vector<std::byte> rdata;  // with any names decompressed (see the theory of operation)
  bool operator==(const DnsRecord&) const = default;
};

struct DnsEdnsOption {
  uint16_t code = 0;
  std::vector<std::byte> data;
  bool operator==(const DnsEdnsOption&) const = default;
};

struct DnsEdns {
  uint16_t udp_payload_size = kDnsEdnsPayloadSize;  // the OPT record's CLASS
  uint8_t extended_rcode = 0;                       // upper 8 bits of the 12-bit RCODE
  uint8_t version = 0;
  bool dnssec_ok = false;              // the DO bit
  uint16_t flags = 0;                  // the other 15 flag bits (Z), as sent
  std::vector<DnsEdnsOption> options;  // kept raw, in order
  bool operator==(const DnsEdns&) const = default;
};

struct DnsMessage {
  DnsHeader header;
  std::vector<DnsQuestion> questions;
  std::vector<DnsRecord> answers;
  std::vector<DnsRecord> authorities;
  std::vector<DnsRecord> additionals;  // without the OPT record
  std::optional<DnsEdns> edns;
  bool operator==(const DnsMessage&) const = default;
};

// An A or AAAA record's address, independent of any socket type.
struct DnsAddress {
  uint16_t type = dns_type::kA;     // dns_type::kA (bytes[0..3] used, rest zero) or kAaaa
  std::array<uint8_t, 16> bytes{};  // network byte order
  uint32_t ttl = 0;
  bool operator==(const DnsAddress&) const = default;
};

// ---- parsing ----

// Parses a whole DNS message (query or response). Fails (see the reason list in the docs) on
// anything malformed: truncated data, counts the size cannot hold, bad names or pointers, RDATA
// whose length does not match its type (A, AAAA, the compressible types), a misplaced or second
// OPT, trailing bytes, or a message over kDnsMaxMessageSize.
Result<DnsMessage> parse_dns_message(ByteSpan message);

// Reads only the 12-byte header (e.g. to answer FORMERR to a message that does not parse).
// Returns nullopt if the message is shorter than a header.
std::optional<DnsHeader> parse_dns_header(ByteSpan message);

// The full 12-bit RCODE (header bits plus the OPT extension).
uint16_t dns_full_rcode(const DnsMessage& message);

// Presentation text of an uncompressed wire-form name; nullopt if `wire` is not exactly one
// well-formed uncompressed name.
std::optional<std::string> dns_name_text(ByteSpan wire);

// Uncompressed wire form of a presentation name ("" or "." is the root; one trailing dot allowed;
// \. \\ and \DDD escapes as produced by DnsName::text). Case is kept. nullopt if the text is not a
// valid name (empty label, label over 63 bytes, name over 255 bytes, bad escape).
std::optional<std::vector<std::byte>> dns_name_wire(std::string_view text);

// The target name (normalised text) of a CNAME, DNAME, NS or PTR record; nullopt for other types
// or malformed rdata.
std::optional<std::string> dns_rdata_name(const DnsRecord& record);

// The address of an A or AAAA record of class IN with a 4- or 16-byte rdata; nullopt otherwise.
std::optional<DnsAddress> dns_record_address(const DnsRecord& record);

// ---- encoding ----

// Encodes `message`. Header counts are taken from the vectors (plus one for the OPT record), not
// from message.header; owner names are compressed, RDATA is written as stored. Fails if a name is
// not a well-formed uncompressed wire name, an RDATA or a section is too large, or the message
// would exceed kDnsMaxMessageSize.
Result<std::vector<std::byte>> encode_dns_message(const DnsMessage& message);

// ---- local answers ----

enum class DnsAnswerKind : uint8_t {
  kUnspecifiedAddress,  // A -> 0.0.0.0, AAAA -> :: (the sinkhole); other types fail
  kNoData,              // NOERROR, no answer records
  kNxDomain,
  kRefused,
  kServFail,
  kNotImp,
  kBadVers,  // extended RCODE 16; only for a query that had OPT
};

struct DnsAnswerOptions {
  uint32_t ttl = kDnsDefaultSinkholeTtl;  // for the address record and the negative SOA
  bool negative_soa = true;               // add the synthetic SOA to NODATA and NXDOMAIN
};

// Builds the response to `query`. Fails if the query is a response (QR set), does not have exactly
// one question, or `kind` does not fit it (kUnspecifiedAddress for a type other than A/AAAA or a
// class other than IN; kBadVers without OPT).
Result<std::vector<std::byte>> build_dns_answer(const DnsMessage& query, DnsAnswerKind kind,
                                                const DnsAnswerOptions& options = {});

// FORMERR for a message that did not parse: a bare 12-byte header echoing only the ID. Fails if
// there is no ID to echo (fewer than 2 bytes) or the bytes claim to be a response (QR set), which
// must never be answered.
Result<std::vector<std::byte>> build_dns_formerr(ByteSpan raw_query);

// ---- relayed answers ----

struct DnsAnswerChain {
  // The name asked for, then each CNAME target followed, normalised.
  std::vector<std::string> names;
  // Records of the asked type (A or AAAA only) owned by the last name, in message order. Each ttl
  // is the smallest of the record's TTL and the TTLs of the CNAMEs leading to it (TTLs with the top
  // bit set count as 0, RFC 2181 8).
  std::vector<DnsAddress> addresses;
};

// Follows the CNAME chain for (`name`, `type`) through the answer section of `response` (class IN
// only; records for other owners are ignored, as a resolver would). Fails on a CNAME loop, two
// different CNAMEs for one name, or more than kDnsMaxCnameChain CNAMEs. An answer with no record
// for the name is not an error (empty addresses).
Result<DnsAnswerChain> extract_dns_answer(const DnsMessage& response, std::string_view name,
                                          uint16_t type);

// Removes from the answer and additional sections every A/AAAA record whose address `drop`
// returns true for (the DnsAddress passed carries the record's own TTL), and updates the header
// counts. Returns how many records were removed. Re-encode with encode_dns_message().
size_t remove_dns_addresses(DnsMessage& message,
                            const std::function<bool(const DnsAddress&)>& drop);

// ---- UDP truncation ----

// The TC bit of a raw message; false if it is shorter than a header.
bool dns_tc(ByteSpan message);
// Sets or clears the TC bit in place. Returns false (and changes nothing) if `message` is shorter
// than a header.
bool set_dns_tc(std::span<std::byte> message, bool tc);
// The most bytes a UDP response to `query` may have: 512 without OPT, else the client's advertised
// size clamped to [512, kDnsEdnsPayloadSize].
size_t dns_udp_response_limit(const DnsMessage& query);
// `response` reduced to header, question and OPT, with TC set: what to send over UDP when the full
// response exceeds dns_udp_response_limit(). Fails like encode_dns_message().
Result<std::vector<std::byte>> build_dns_truncated(const DnsMessage& response);

// ---- TCP framing (RFC 7766 8: a 2-byte length before each message) ----

struct DnsTcpFrame {
  ParseState state = ParseState::kNeedMore;
  ByteSpan message;         // kDone: the framed message, a view into the buffer passed
  size_t frame_length = 0;  // kDone: 2 + message.size(), the bytes to drop before the next frame
  std::string_view reason;  // kInvalid: "frame_too_short" (a length below kDnsHeaderSize)
};

// Reads the first frame of `buffer` (the unconsumed bytes of a DNS-over-TCP stream). kNeedMore
// until the length prefix and that many bytes are present; kInvalid if the length cannot hold a
// DNS header. Call again after dropping frame_length bytes for pipelined queries.
DnsTcpFrame read_dns_tcp_frame(ByteSpan buffer);

// `message` with its 2-byte length prefix. Fails if it is longer than kDnsMaxMessageSize.
Result<std::vector<std::byte>> frame_dns_tcp(ByteSpan message);

}  // namespace netfence::wire
