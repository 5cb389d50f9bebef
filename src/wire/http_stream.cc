#include "wire/http_stream.h"

namespace netfence::wire {

namespace {

constexpr size_t kMaxFramingLine = 4096;  // chunk-size line with extensions, or a trailer line
constexpr int kMaxSizeDigits = 15;        // < 2^60 bytes per chunk

int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

HttpRequestStream::Step HttpRequestStream::invalid(std::string_view reason) {
  mode_ = Mode::kInvalid;
  reason_ = reason;
  return Step{Kind::kInvalid, 0};
}

HttpRequestStream::Step HttpRequestStream::scan(ByteSpan pending) {
  switch (mode_) {
    case Mode::kInvalid:
      return Step{Kind::kInvalid, 0};
    case Mode::kOpaque:
      return Step{Kind::kOpaque, pending.size()};
    case Mode::kAfterUpgrade: {
      if (pending.empty()) return Step{};
      ParseState start = check_http1_start(pending);
      if (start == ParseState::kNeedMore) return Step{};
      if (start == ParseState::kInvalid) {
        mode_ = Mode::kOpaque;
        return Step{Kind::kOpaque, pending.size()};
      }
      mode_ = Mode::kHead;  // the server did not switch: another request follows
      return scan(pending);
    }
    case Mode::kHead: {
      if (pending.empty()) return Step{};
      // The previous request's head stays readable until the next one starts.
      if (reader_.state() == ParseState::kDone) reader_.reset();
      ParseState s = reader_.feed(pending);
      if (s == ParseState::kNeedMore) return Step{};
      if (s == ParseState::kInvalid) return invalid(reader_.reason());
      const HttpRequestHead& h = reader_.head();
      ++requests_;
      // CONNECT or the h2c preface: the caller judges (and refuses) it from head(). An Upgrade
      // request: decided by what the client sends next (kAfterUpgrade).
      opaque_after_ = h.kind != HttpRequestKind::kHttp1 || h.upgrade;
      if (h.chunked) {
        mode_ = Mode::kChunkSize;
        remaining_ = 0;
        size_digits_ = 0;
        line_length_ = 0;
        saw_cr_ = false;
        last_chunk_ = false;
      } else if (h.content_length && *h.content_length > 0) {
        mode_ = Mode::kLength;
        remaining_ = *h.content_length;
      } else {
        mode_ = opaque_after_ ? Mode::kAfterUpgrade : Mode::kHead;
      }
      return Step{Kind::kHead, h.head_length};
    }
    case Mode::kLength: {
      size_t n = pending.size() < remaining_ ? pending.size() : static_cast<size_t>(remaining_);
      remaining_ -= n;
      if (remaining_ == 0) mode_ = opaque_after_ ? Mode::kAfterUpgrade : Mode::kHead;
      return Step{n == 0 ? Kind::kNeedMore : Kind::kBody, n};
    }
    default:
      return scan_chunked(pending);
  }
}

HttpRequestStream::Step HttpRequestStream::scan_chunked(ByteSpan pending) {
  size_t i = 0;
  while (i < pending.size()) {
    uint8_t c = u8_at(pending, i);
    switch (mode_) {
      case Mode::kChunkSize: {
        int v = hex_value(c);
        if (v >= 0) {
          if (++size_digits_ > kMaxSizeDigits) return invalid("chunk_size_too_large");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
          ++i;
          break;
        }
        if (size_digits_ == 0) return invalid("bad_chunk_size");
        mode_ = Mode::kChunkExt;
        break;  // re-examine c as part of the extension / line end
      }
      case Mode::kChunkExt: {
        if (++line_length_ > kMaxFramingLine) return invalid("chunk_line_too_long");
        ++i;
        if (c == '\r') {
          saw_cr_ = true;
        } else if (c == '\n') {
          if (!saw_cr_) return invalid("bad_chunk_line");
          saw_cr_ = false;
          line_length_ = 0;
          size_digits_ = 0;
          if (remaining_ == 0) {
            mode_ = Mode::kTrailer;
          } else {
            mode_ = Mode::kChunkData;
          }
        } else if (saw_cr_ || c == 0) {
          return invalid("bad_chunk_line");
        }
        break;
      }
      case Mode::kChunkData: {
        size_t available = pending.size() - i;
        size_t n = available < remaining_ ? available : static_cast<size_t>(remaining_);
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) mode_ = Mode::kChunkDataEnd;
        break;
      }
      case Mode::kChunkDataEnd: {
        ++i;
        if (!saw_cr_) {
          if (c != '\r') return invalid("bad_chunk_end");
          saw_cr_ = true;
        } else {
          if (c != '\n') return invalid("bad_chunk_end");
          saw_cr_ = false;
          remaining_ = 0;
          mode_ = Mode::kChunkSize;
        }
        break;
      }
      case Mode::kTrailer: {
        ++i;
        if (++line_length_ > kMaxFramingLine) return invalid("trailer_too_long");
        if (c == '\r') {
          saw_cr_ = true;
        } else if (c == '\n') {
          if (!saw_cr_) return invalid("bad_trailer");
          saw_cr_ = false;
          bool empty_line = line_length_ == 2;
          line_length_ = 0;
          if (empty_line) {
            mode_ = opaque_after_ ? Mode::kAfterUpgrade : Mode::kHead;
            return Step{Kind::kBody, i};
          }
        } else if (saw_cr_) {
          return invalid("bad_trailer");
        }
        break;
      }
      default:
        return invalid("internal_state");
    }
  }
  return Step{i == 0 ? Kind::kNeedMore : Kind::kBody, i};
}

}  // namespace netfence::wire
