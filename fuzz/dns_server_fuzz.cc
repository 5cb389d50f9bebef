// Fuzz target for the DNS server's answer path: Server::answer_locally() on arbitrary bytes, over
// UDP and TCP, for an allowlist policy (logging every event, so the log path runs too) and a
// full-access one. Invariants, any violation aborts:
//  - an answer is a response (QR) with the query's ID, and it parses, unless it is the bare
//    FORMERR header; over UDP it fits the client's limit; a dropped message gets no bytes;
//  - a query is only ever forwarded when its name is allowed (allowlist) or not denied (full
//    access), and never for HTTPS/SVCB or the DoH canary in allowlist mode: blocked names must
//    not leave;
//  - the fast path (read_simple_query + write_local_answer) agrees byte for byte with
//    wire::parse_dns_message + wire::build_dns_answer on every input it accepts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "dns/fast_path.h"
#include "dns/server.h"

namespace {

using namespace netfence;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "dns_server_fuzz: %s\n", what);
    std::abort();
  }
}

policy::Policy compile(std::vector<std::string> allow, std::vector<std::string> deny) {
  policy::NetworkSpec spec;
  spec.allow_net = std::move(allow);
  spec.deny_net = std::move(deny);
  auto compiled = policy::Policy::compile(spec);
  return std::move(compiled).value();
}

struct World {
  asio::io_context io{1};
  policy::Policy allowlist =
      compile({"api.example.com", "*.example.org:443", "10.0.0.0/8"}, {"evil.example.org"});
  policy::Policy full = compile({}, {"evil.example.org"});
  dns::Resolver resolver{io.get_executor(), dns::ResolverConfig{}};  // never used: no forwards
  dns::LearnedAddresses learned;
  FILE* null = std::fopen("/dev/null", "w");
  EventLog log{null, LogFormat::kJson, LogLevel::kAll, "fuzz"};
  EventLog quiet;
  dns::Server allow_server{io.get_executor(), allowlist, resolver, learned, log, {}};
  dns::Server full_server{io.get_executor(), full, resolver, learned, quiet, {}};
};

void check_fast_path(ByteSpan bytes) {
  dns::SimpleQuery fast;
  if (!dns::read_simple_query(bytes, fast)) return;
  auto general = wire::parse_dns_message(bytes);
  check(general.ok() && general->questions.size() == 1, "fast path accepted an unparsable query");
  check(fast.name() == general->questions[0].name.text, "fast path name differs");
  for (auto kind : {wire::DnsAnswerKind::kUnspecifiedAddress, wire::DnsAnswerKind::kNoData,
                    wire::DnsAnswerKind::kNxDomain, wire::DnsAnswerKind::kRefused}) {
    std::vector<std::byte> out(dns::kMaxLocalAnswerSize);
    size_t size = dns::write_local_answer(bytes, fast, kind, 5, out);
    auto expected = wire::build_dns_answer(*general, kind, {});
    check((size != 0) == expected.ok(), "fast path and builder disagree on whether to answer");
    if (size == 0) continue;
    out.resize(size);
    check(out == *expected, "fast path answer differs from the builder's");
  }
}

void check_server(dns::Server& server, const policy::Policy& policy, ByteSpan bytes,
                  dns::Transport transport) {
  dns::Client client;
  client.transport = transport;
  std::vector<std::byte> response;
  std::unique_ptr<dns::Server::Pending> pending;
  auto disposition = server.answer_locally(bytes, client, response, pending);
  switch (disposition) {
    case dns::Server::Disposition::kDropped:
      return;
    case dns::Server::Disposition::kAnswered: {
      check(response.size() >= wire::kDnsHeaderSize, "answer shorter than a header");
      check(bytes.size() >= 2 && response[0] == bytes[0] && response[1] == bytes[1],
            "answer does not echo the ID");
      check((static_cast<uint8_t>(response[2]) & 0x80) != 0, "answer without QR");
      // Local answers never need truncation: at most a 255-byte name, one record and OPT.
      check(response.size() <= dns::kMaxLocalAnswerSize, "local answer over 512 bytes");
      if (response.size() > wire::kDnsHeaderSize) {
        check(wire::parse_dns_message(response).ok(), "answer does not parse");
      }
      return;
    }
    case dns::Server::Disposition::kForward: {
      check(pending != nullptr && pending->query.questions.size() == 1, "forward without query");
      const wire::DnsQuestion& q = pending->query.questions[0];
      policy::NameCheck verdict = policy.check_name(q.name.text, 0);
      if (policy.full_access()) {
        check(verdict.reason != policy::Reason::kDenyRule, "forwarded a deny_net name");
      } else {
        check(verdict.allowed(), "forwarded a name the policy does not allow");
        check(q.type != wire::dns_type::kHttps && q.type != wire::dns_type::kSvcb,
              "forwarded HTTPS/SVCB");
        check(q.klass == wire::kDnsClassIn, "forwarded a non-IN class");
      }
      check(q.name.text != "use-application-dns.net", "forwarded the DoH canary");
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world;  // lives for the process, like a server would
  ByteSpan bytes(reinterpret_cast<const std::byte*>(data), size);
  check_fast_path(bytes);
  for (auto transport : {dns::Transport::kUdp, dns::Transport::kTcp}) {
    check_server(world.allow_server, world.allowlist, bytes, transport);
    check_server(world.full_server, world.full, bytes, transport);
  }
  return 0;
}
