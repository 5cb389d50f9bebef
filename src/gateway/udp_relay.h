// UdpRelay: carries the UDP flows that the policy allows by address (SPEC 1.6: UDP other than
// DNS only under an IP/CIDR rule, or in full access). The sandbox's nftables redirects such
// datagrams to a relay listener (bound exactly, so replies sent from it are un-NATed back to the
// address the client used); every other datagram was already rejected inside the sandbox.
//
// A flow is one client address:port. Its first datagram asks where it was going (conntrack,
// through the injected lookup), judges that with Policy::judge_address, and logs one event; an
// allowed flow gets its own connected socket in the host namespace, and datagrams then pass both
// ways until the flow is idle for `idle_timeout` (one "close" event with counts). The default,
// 25 s, is below conntrack's 30 s for an unanswered UDP flow: a client port reused for another
// destination after that is a new flow, looked up and judged again. A denied
// flow's datagrams are dropped (counted) until it too goes idle. Flows are capped.
#pragma once

#include <sys/socket.h>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/udp.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>

#include "common/event_log.h"
#include "common/fd.h"
#include "common/result.h"
#include "gateway/gateway.h"
#include "policy/policy.h"

namespace netfence::gateway {

// Where a datagram from `client` that arrived at `local` (a relay listener) was going.
using UdpDestinationLookup = std::function<Result<Destination>(const sockaddr_storage& client,
                                                               const sockaddr_storage& local)>;

struct UdpStats {
  uint64_t flows_allowed = 0;
  uint64_t flows_denied = 0;
  uint64_t datagrams_up = 0;
  uint64_t datagrams_down = 0;
  uint64_t dropped = 0;
};

class UdpRelay {
 public:
  static constexpr size_t kMaxFlows = 4096;

  UdpRelay(asio::any_io_executor executor, const policy::Policy& policy, EventLog& log,
           UdpDestinationLookup lookup,
           std::chrono::milliseconds idle_timeout = std::chrono::seconds(25));
  UdpRelay(const UdpRelay&) = delete;
  UdpRelay& operator=(const UdpRelay&) = delete;

  // Serves a bound UDP relay listener. Takes ownership. Errors: not a datagram socket.
  Result<void> serve(UniqueFd listener);
  void stop();
  const UdpStats& stats() const { return stats_; }

 private:
  struct Flow;
  asio::awaitable<void> listen_loop(std::shared_ptr<asio::ip::udp::socket> listener);
  asio::awaitable<void> flow_loop(std::shared_ptr<asio::ip::udp::socket> listener,
                                  asio::ip::udp::endpoint client, std::shared_ptr<Flow> flow);
  std::shared_ptr<Flow> open_flow(const asio::ip::udp::socket& listener,
                                  const asio::ip::udp::endpoint& client);
  void log_flow(const Flow& flow, std::string_view event, const policy::Decision& d);

  asio::any_io_executor executor_;
  const policy::Policy& policy_;
  EventLog& log_;
  UdpDestinationLookup lookup_;
  std::chrono::milliseconds idle_timeout_;
  std::map<asio::ip::udp::endpoint, std::shared_ptr<Flow>> flows_;
  std::vector<std::shared_ptr<asio::ip::udp::socket>> listeners_;
  UdpStats stats_;
  uint64_t next_id_ = 0;
  bool stopped_ = false;
};

}  // namespace netfence::gateway
