// Fuzz target for wire::ClientHelloReader. Feeds the input whole, then again as growing prefixes
// in chunks whose sizes derive from the first byte (fixed size, or a varying sequence), and
// aborts if the two disagree in state, reason or result; also checks sniff_tls against the reader
// and a few invariants of a Done result. Inputs larger than the cap exercise the cap.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "wire/tls_client_hello.h"

namespace {

using netfence::ByteSpan;
using netfence::wire::ClientHelloInfo;
using netfence::wire::ClientHelloReader;
using netfence::wire::HelloKind;
using netfence::wire::ParseState;
using netfence::wire::TlsSniff;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "tls_client_hello_fuzz: invariant violated: %s\n", what);
  std::abort();
}

void check_info(const ClientHelloInfo& info, size_t input_size) {
  check(info.consumed <= input_size, "consumed within input");
  check(info.consumed <= netfence::wire::kClientHelloCap, "consumed within cap");
  check(info.kind != HelloKind::kUnknown, "done has a kind");
  if (!info.sni.empty()) {
    check(!info.sni_absent && !info.sni_ip_literal, "name flags");
    check(netfence::wire::is_plausible_host_name(info.sni), "name is plausible");
  }
  if (info.kind != HelloKind::kClientHello) {
    check(info.sni_absent && info.alpn.empty(), "no name without a ClientHello");
  }
  check(!info.versions.empty() || info.kind == HelloKind::kNotHandshake, "versions");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan input(reinterpret_cast<const std::byte*>(data), size);

  ClientHelloReader whole;
  const ParseState whole_state = whole.feed(input);
  check((whole_state == ParseState::kInvalid) == !whole.reason().empty(), "reason iff invalid");
  if (whole_state == ParseState::kDone) check_info(whole.info(), size);

  const TlsSniff sniff = netfence::wire::sniff_tls(input);
  if (sniff == TlsSniff::kNotTls) check(whole_state == ParseState::kInvalid, "sniff not-TLS");
  if (whole.reason() == "not_tls") check(sniff == TlsSniff::kNotTls, "not_tls sniffed");

  // Chunk plan from the first byte: low 6 bits + 1 is the base size; bit 6 alternates sizes
  // (base, 1, base*3, ...) so reads of 1 byte land at varying offsets.
  const size_t base = size == 0 ? 1 : (data[0] & 0x3f) + 1;
  const bool vary = size != 0 && (data[0] & 0x40) != 0;
  ClientHelloReader chunked;
  ParseState state = chunked.feed(input.first(0));
  size_t fed = 0;
  for (size_t i = 0; state == ParseState::kNeedMore && fed < size; ++i) {
    size_t step = base;
    if (vary) step = i % 3 == 0 ? base : (i % 3 == 1 ? 1 : base * 3);
    fed = fed + step < size ? fed + step : size;
    state = chunked.feed(input.first(fed));
  }
  check(state == whole_state, "chunked state equals whole state");
  check(chunked.reason() == whole.reason(), "chunked reason equals whole reason");
  check(chunked.info() == whole.info(), "chunked info equals whole info");
  return 0;
}
