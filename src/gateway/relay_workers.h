// Relay workers: threads that carry relays in descriptor tables of their own.
//
// A relayed connection holds two descriptors, and RLIMIT_NOFILE bounds each descriptor table,
// not the process: with a hard limit of 20,000 one table carries fewer than 10,000 connections.
// A worker is a thread that unshares its descriptor table as it starts (unshare(CLONE_FILES))
// and closes the copies it got, so its table holds only its own relays. The gateway relays on
// its own thread while its table has room and moves the rest here; workers start when first
// needed, so a sandbox that never holds thousands of connections never starts one.
//
// The gateway and a worker share memory but not descriptors, so neither touches the other's
// asio objects (whose wake-ups go through descriptors). They talk only over a SOCK_SEQPACKET
// socketpair, one end in each table: a job is {id, idle timeout} with the connection's two
// sockets attached (SCM_RIGHTS puts them in the worker's table; the gateway then closes its
// own), and the answer is {id, RelayResult}. The gateway logs the close as for any relay.
// Shutting the gateway's end down (stop(), or a worker that fails) stops the worker: its
// relays end, and the gateway sees each as a reset.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "gateway/relay.h"

namespace netfence::gateway {

class RelayWorkers {
 public:
  // At most `max_workers` workers at a time (one that failed may be replaced, up to twice that
  // in all), each carrying at most `relays_per_worker` relays. Nothing starts until relay()
  // needs it.
  RelayWorkers(asio::any_io_executor executor, size_t max_workers, size_t relays_per_worker);
  RelayWorkers(const RelayWorkers&) = delete;
  RelayWorkers& operator=(const RelayWorkers&) = delete;
  ~RelayWorkers();  // stops the workers and waits for their threads

  // Moves `client` and `server` into a worker with room (starting one if needed) and waits
  // until the relay there ends; both sockets are closed here once the worker has them.
  // nullopt: no worker could take it (all full, or none can start); the sockets are untouched
  // and the caller relays them itself.
  asio::awaitable<std::optional<RelayResult>> relay(asio::ip::tcp::socket& client,
                                                    asio::ip::tcp::socket& server,
                                                    std::chrono::milliseconds idle_timeout);

  // Stops every worker: their relays end (seen here as resets); relay() takes no more jobs.
  void stop();

 private:
  struct Pending;
  struct Worker {
    std::thread thread;
    std::unique_ptr<asio::posix::stream_descriptor> channel;  // the gateway's end
    size_t active = 0;
    bool failed = false;  // its channel broke: it takes no more jobs
    std::map<uint64_t, std::shared_ptr<Pending>> pending;
  };

  std::shared_ptr<Worker> pick();
  std::shared_ptr<Worker> start_worker();
  asio::awaitable<void> read_results(std::shared_ptr<Worker> worker);

  asio::any_io_executor executor_;
  size_t max_workers_;
  size_t relays_per_worker_;
  bool stopped_ = false;
  bool cannot_start_ = false;  // unshare(CLONE_FILES) was refused once: never again
  uint64_t next_id_ = 0;
  // Shared with the coroutines that use them, which may outlive this object (destroyed unrun
  // with the event loop). A failed worker stays here until destruction (its thread is joined).
  std::vector<std::shared_ptr<Worker>> workers_;
};

}  // namespace netfence::gateway
