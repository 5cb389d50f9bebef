// HttpRequestStream: follows a client's HTTP/1 byte stream across keep-alive and pipelined
// requests, so that every request head is judged, not just the first (peers.md 5.22: a later
// request on the same connection could name another virtual host).
//
// Theory of operation: the caller keeps the client's bytes that it has not forwarded yet in its
// own buffer and calls scan() on them. scan() says how many leading bytes may be forwarded now
// and why: body bytes (Content-Length countdown or chunked framing) are forwardable as soon as
// they arrive; a request head is held back until it is complete (kHead), so the caller can judge
// its host before a single byte of it reaches the server. After a request that asks to upgrade
// the connection (Upgrade field), the stream becomes opaque only if what follows cannot start an
// HTTP/1 request (WebSocket frames begin with 0x0_/0x8_ bytes): a server that ignored the
// Upgrade keeps getting judged requests. Framing the stream
// cannot follow (bad chunk sizes, conflicting lengths, an over-long head) is kInvalid: the
// caller cuts the connection. Pure code, no I/O, bounded state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/bytes.h"
#include "wire/http_request.h"

namespace netfence::wire {

class HttpRequestStream {
 public:
  enum class Kind {
    kNeedMore,  // nothing forwardable yet: a head is incomplete (or `pending` is empty)
    kBody,      // `forwardable` leading bytes are body or framing: forward them
    kHead,      // `forwardable` leading bytes are one complete head: judge head(), then forward
    kOpaque,    // the stream is no longer HTTP requests (upgrade): forward everything from now on
    kInvalid,   // cannot follow the framing: cut the connection (reason())
  };
  struct Step {
    Kind kind = Kind::kNeedMore;
    size_t forwardable = 0;
  };

  // Examines `pending` (the unforwarded bytes, oldest first). The caller forwards (or drops) the
  // first `forwardable` bytes and calls scan() again with what remains (and later bytes).
  Step scan(ByteSpan pending);
  // The head found by the last kHead step.
  const HttpRequestHead& head() const { return reader_.head(); }
  std::string_view reason() const { return reason_; }
  uint64_t requests() const { return requests_; }

 private:
  enum class Mode {
    kHead,
    kLength,
    kChunkSize,
    kChunkExt,
    kChunkData,
    kChunkDataEnd,
    kTrailer,
    kAfterUpgrade,
    kOpaque,
    kInvalid
  };

  Step invalid(std::string_view reason);
  Step scan_chunked(ByteSpan pending);

  Mode mode_ = Mode::kHead;
  HttpRequestReader reader_;
  uint64_t remaining_ = 0;     // kLength / kChunkData: body bytes still expected
  size_t line_length_ = 0;     // chunk-size / trailer line length so far (bounded)
  int size_digits_ = 0;        // hex digits read in the current chunk-size
  bool saw_cr_ = false;        // the previous byte was CR (framing lines end in CRLF)
  bool last_chunk_ = false;    // the chunk-size line was 0: trailers follow
  bool opaque_after_ = false;  // the current request upgrades the connection
  uint64_t requests_ = 0;
  std::string_view reason_;
};

}  // namespace netfence::wire
