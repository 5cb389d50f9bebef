// The outcome of feeding bytes to an incremental parser of untrusted input.
#pragma once

namespace netfence::wire {

enum class ParseState {
  kNeedMore,  // a prefix of something valid; feed more bytes (the caller enforces caps/timeouts)
  kDone,      // a complete message was parsed; results are available
  kInvalid,   // not (or no longer) parseable as this protocol; the caller decides what that means
};

}  // namespace netfence::wire
