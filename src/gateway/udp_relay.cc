#include "gateway/udp_relay.h"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "common/socket.h"
#include "fmt/format.h"
#include "gateway/endpoint.h"

namespace netfence::gateway {

using asio::redirect_error;
using asio::use_awaitable;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

struct UdpRelay::Flow {
  uint64_t id = 0;
  std::string src;
  Destination dst;
  std::shared_ptr<udp::socket> upstream;  // null for a denied flow
  Clock::time_point start = Clock::now();
  Clock::time_point last = Clock::now();
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  std::string reason;
};

namespace {

std::string endpoint_text(const udp::endpoint& e) {
  return e.address().is_v6() ? fmt::format("[{}]:{}", e.address().to_string(), e.port())
                             : fmt::format("{}:{}", e.address().to_string(), e.port());
}

sockaddr_storage to_storage(const udp::endpoint& e) {
  sockaddr_storage ss{};
  std::memcpy(&ss, e.data(), std::min<size_t>(e.size(), sizeof ss));
  return ss;
}

}  // namespace

UdpRelay::UdpRelay(asio::any_io_executor executor, const policy::Policy& policy, EventLog& log,
                   UdpDestinationLookup lookup, std::chrono::milliseconds idle_timeout)
    : executor_(std::move(executor)),
      policy_(policy),
      log_(log),
      lookup_(std::move(lookup)),
      idle_timeout_(idle_timeout) {}

Result<void> UdpRelay::serve(UniqueFd fd) {
  auto family = socket_family(fd.get(), SOCK_DGRAM);
  if (!family) return fail("udp relay: the listener is not a bound datagram socket");
  auto listener = std::make_shared<udp::socket>(executor_);
  asio::error_code ec;
  listener->assign(*family == AF_INET6 ? udp::v6() : udp::v4(), fd.get(), ec);
  if (ec) return fail("udp relay: cannot adopt the listener: " + ec.message());
  fd.release();
  listener->non_blocking(true, ec);
  listeners_.push_back(listener);
  asio::co_spawn(executor_, listen_loop(listener), asio::detached);
  return {};
}

void UdpRelay::stop() {
  stopped_ = true;
  asio::error_code ec;
  for (auto& l : listeners_) l->close(ec);
  for (auto& [client, flow] : flows_) {
    if (flow->upstream) flow->upstream->close(ec);
  }
}

void UdpRelay::log_flow(const Flow& flow, std::string_view event, const policy::Decision& d) {
  if (!log_.wants(d.allowed())) return;
  Event e;
  e.event = std::string(event);
  e.id = flow.id;
  e.proto = "udp";
  e.src = flow.src;
  e.dst = flow.dst.address.to_string();
  e.port = flow.dst.port;
  e.name_source = "none";
  e.verdict = std::string(policy::to_string(d.verdict));
  e.rule = d.rule;
  e.reason = flow.reason.empty() ? std::string(policy::to_string(d.reason)) : flow.reason;
  e.detail = d.detail;
  if (event == "close") {
    e.bytes_up = flow.bytes_up;
    e.bytes_down = flow.bytes_down;
    e.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - flow.start).count();
  }
  log_.write(e);
}

std::shared_ptr<UdpRelay::Flow> UdpRelay::open_flow(const udp::socket& listener,
                                                    const udp::endpoint& client) {
  auto flow = std::make_shared<Flow>();
  flow->id = ++next_id_;
  flow->src = endpoint_text(client);
  asio::error_code ec;
  udp::endpoint local = listener.local_endpoint(ec);
  auto dst = lookup_ ? lookup_(to_storage(client), to_storage(local))
                     : Result<Destination>(fail("no destination lookup"));
  policy::Decision d;
  if (!dst) {
    flow->reason = "no_original_destination";
    d.detail = dst.error().message;
  } else if (!dst->redirected) {
    flow->dst = *dst;
    flow->reason = "not_redirected";
    d.detail = "a datagram to the relay listener itself is not a destination";
  } else {
    flow->dst = *dst;
    d = policy_.judge_address(dst->address, dst->port);
  }
  if (d.allowed()) {
    auto upstream = std::make_shared<udp::socket>(executor_);
    udp::endpoint target = to_endpoint<udp::endpoint>(flow->dst.address, flow->dst.port);
    upstream->open(target.protocol(), ec);
    if (!ec) upstream->connect(target, ec);
    if (!ec) upstream->non_blocking(true, ec);
    if (ec) {
      flow->reason = "dial_failed";
      d.verdict = policy::Verdict::kDeny;
      d.detail =
          fmt::format("cannot open a UDP socket to {}: {}", endpoint_text(target), ec.message());
    } else {
      flow->upstream = upstream;
    }
  }
  log_flow(*flow, "connect", d);
  if (flow->upstream) {
    ++stats_.flows_allowed;
  } else {
    ++stats_.flows_denied;
  }
  return flow;
}

asio::awaitable<void> UdpRelay::listen_loop(std::shared_ptr<udp::socket> listener) {
  std::vector<std::byte> buffer(65536);
  while (!stopped_) {
    asio::error_code ec;
    udp::endpoint client;
    size_t n = co_await listener->async_receive_from(asio::buffer(buffer), client,
                                                     redirect_error(use_awaitable, ec));
    if (stopped_ || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
      co_return;
    }
    if (ec) continue;
    auto it = flows_.find(client);
    if (it == flows_.end()) {
      if (flows_.size() >= kMaxFlows) {
        ++stats_.dropped;
        continue;
      }
      auto flow = open_flow(*listener, client);
      it = flows_.emplace(client, flow).first;
      asio::co_spawn(executor_, flow_loop(listener, client, flow), asio::detached);
    }
    Flow& flow = *it->second;
    flow.last = Clock::now();
    if (!flow.upstream) {
      ++stats_.dropped;
      continue;
    }
    flow.upstream->send(asio::buffer(buffer.data(), n), 0, ec);
    if (ec) continue;  // e.g. ECONNREFUSED from an earlier ICMP: the datagram is lost, as UDP is
    flow.bytes_up += n;
    ++stats_.datagrams_up;
  }
}

asio::awaitable<void> UdpRelay::flow_loop(std::shared_ptr<udp::socket> listener,
                                          udp::endpoint client, std::shared_ptr<Flow> flow) {
  asio::steady_timer timer(executor_);
  std::vector<std::byte> buffer(flow->upstream ? 65536 : 0);
  while (!stopped_) {
    auto deadline = flow->last + idle_timeout_;
    if (Clock::now() >= deadline) break;
    timer.expires_at(deadline);
    asio::error_code ec;
    asio::error_code timer_ec;
    if (!flow->upstream) {
      co_await timer.async_wait(redirect_error(use_awaitable, timer_ec));
      if (timer_ec) break;
      continue;
    }
    auto got = co_await (
        flow->upstream->async_receive(asio::buffer(buffer), redirect_error(use_awaitable, ec)) ||
        timer.async_wait(redirect_error(use_awaitable, timer_ec)));
    if (got.index() == 1) continue;  // re-check the deadline: traffic may have moved `last`
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;
    if (ec) continue;  // ICMP errors from the far side: UDP carries on
    size_t n = std::get<0>(got);
    listener->send_to(asio::buffer(buffer.data(), n), client, 0, ec);
    flow->last = Clock::now();
    flow->bytes_down += n;
    ++stats_.datagrams_down;
  }
  if (flow->upstream) {
    policy::Decision closed;
    closed.verdict = policy::Verdict::kAllow;
    flow->reason = "idle_timeout";
    log_flow(*flow, "close", closed);
    asio::error_code ec;
    flow->upstream->close(ec);
  }
  auto it = flows_.find(client);
  if (it != flows_.end() && it->second == flow) flows_.erase(it);
}

}  // namespace netfence::gateway
