#include "gateway/deadline.h"

namespace netfence::gateway {

using Clock = std::chrono::steady_clock;

Deadline::Deadline(const asio::any_io_executor& executor)
    : timer_(executor), state_(std::make_shared<State>()) {}

Deadline::~Deadline() {
  state_->alive = false;
  timer_.cancel();
}

void Deadline::arm(Clock::time_point at) {
  state_->fired = false;
  uint64_t generation = ++state_->generation;
  timer_.expires_at(at);
  timer_.async_wait([state = state_, generation](const asio::error_code& ec) {
    if (ec || !state->alive || state->generation != generation) return;
    state->fired = true;
    state->signal.emit(asio::cancellation_type::terminal);
  });
}

IdleWatch::IdleWatch(const asio::any_io_executor& executor, std::chrono::milliseconds idle,
                     asio::ip::tcp::socket& a, asio::ip::tcp::socket& b)
    : timer_(executor), idle_(idle), a_(a), b_(b) {
  if (idle_.count() > 0) arm();
}

IdleWatch::~IdleWatch() {
  *alive_ = false;
  timer_.cancel();
}

void IdleWatch::arm() {
  timer_.expires_at(last_activity_ + idle_);
  timer_.async_wait([this, alive = alive_](const asio::error_code& ec) {
    if (ec || !*alive) return;
    if (held_) touch();
    if (Clock::now() < last_activity_ + idle_) {
      arm();  // something moved since: check back at the new deadline
      return;
    }
    // Reset, not just cancel: an operation started after this (a pump resuming with a
    // completion already queued) fails at once instead of waiting for a peer that is gone.
    fired_ = true;
    for (asio::ip::tcp::socket* socket : {&a_, &b_}) {
      asio::error_code ignored;
      socket->set_option(asio::socket_base::linger(true, 0), ignored);
      socket->close(ignored);
    }
  });
}

}  // namespace netfence::gateway
