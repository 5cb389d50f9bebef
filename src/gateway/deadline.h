// Timers that cancel a socket's pending operations: the per-connection timeouts (reading the
// first bytes, dialing, the relay's idle timeout) without `operation || timer.async_wait()`.
// Each use of that awaitable operator spawns two coroutines and a cancellation slot; on the
// per-connection path they were a measurable share of the gateway's CPU (docs/benchmarks.md).
//
// Both run on the executor of the coroutine that owns them and act only from their timer's
// handler, which runs on that executor too. A handler that was already queued
// when its owner disarmed, re-armed or destroyed it finds that out (generation, alive flag)
// and does nothing.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

namespace netfence::gateway {

// Cancels the operations bound to slot() once a point in time passes (only those: other
// operations on the same socket go on). Typical use: arm, then await operations bound with
// asio::bind_cancellation_slot(deadline.slot(), token), one at a time, clearing the slot after
// each; one that ends with operation_aborted while fired() is true timed out. Check fired()
// before starting another operation: the deadline may have passed while none was pending. A
// bound operation no longer hears the awaiting coroutine's own cancellation.
class Deadline {
 public:
  explicit Deadline(const asio::any_io_executor& executor);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void arm(std::chrono::steady_clock::time_point at);
  asio::cancellation_slot slot() { return state_->signal.slot(); }
  bool fired() const { return state_->fired; }

 private:
  struct State {
    asio::cancellation_signal signal;
    uint64_t generation = 0;  // a handler queued before the latest arm() does nothing
    bool alive = true;        // false: the owner is gone
    bool fired = false;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// The relay's idle timeout: once nothing has moved for `idle` (touch() marks activity), resets
// both sockets (SO_LINGER 0 and close: pending operations end with operation_aborted, later
// ones fail at once) and fired() turns true. Checks back only at the deadline, not on every
// touch.
class IdleWatch {
 public:
  IdleWatch(const asio::any_io_executor& executor, std::chrono::milliseconds idle,
            asio::ip::tcp::socket& a, asio::ip::tcp::socket& b);
  ~IdleWatch();
  IdleWatch(const IdleWatch&) = delete;
  IdleWatch& operator=(const IdleWatch&) = delete;

  void touch() { last_activity_ = std::chrono::steady_clock::now(); }
  // While held, the watch does not fire (a bulk copy on its own thread keeps its own idle
  // timeout, bulk_copy.h); releasing the hold counts as activity.
  void hold(bool held) {
    held_ = held;
    touch();
  }
  bool fired() const { return fired_; }

 private:
  void arm();

  asio::steady_timer timer_;
  std::chrono::milliseconds idle_;
  asio::ip::tcp::socket& a_;
  asio::ip::tcp::socket& b_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
  bool fired_ = false;
  bool held_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace netfence::gateway
