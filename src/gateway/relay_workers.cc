#include "gateway/relay_workers.h"

#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <cerrno>
#include <future>
#include <span>
#include <system_error>
#include <type_traits>

#include "common/fd.h"
#include "common/fd_passing.h"
#include "common/socket.h"

namespace netfence::gateway {
namespace {

using asio::redirect_error;
using asio::use_awaitable;
using asio::ip::tcp;
using asio::posix::stream_descriptor;

// gateway -> worker, with the client's and the server's socket attached.
struct Job {
  uint64_t id;
  int64_t idle_timeout_ms;
};
// worker -> gateway.
struct Done {
  uint64_t id;
  RelayResult result;
};
static_assert(std::is_trivially_copyable_v<Job> && std::is_trivially_copyable_v<Done>);

// Closes every descriptor above stderr but `keep`: the copies a freshly unshared table got of
// the gateway's. (A copy keeps its socket open: a connection the gateway closes would stay.)
void close_other_descriptors(int keep) {
  auto close_span = [](unsigned first, unsigned last) {
    if (first > last) return;
    if (::syscall(SYS_close_range, first, last, 0) == 0) return;
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);  // no close_range (before Linux 5.9): one by one
    for (unsigned fd = first; fd <= last && fd < limit.rlim_cur; ++fd)
      ::close(static_cast<int>(fd));
  };
  auto k = static_cast<unsigned>(keep);
  if (k > 3) close_span(3, k - 1);
  close_span(k + 1, ~0U);
}

std::optional<tcp::socket> adopt(asio::io_context& io, UniqueFd& fd) {
  auto family = socket_family(fd.get(), SOCK_STREAM);
  if (!family) return std::nullopt;
  tcp::socket socket(io);
  asio::error_code ec;
  socket.assign(*family == AF_INET6 ? tcp::v6() : tcp::v4(), fd.get(), ec);
  if (ec) return std::nullopt;
  fd.release();
  return socket;
}

// Worker side: sends an answer, waiting for room in the channel (the gateway waits for every
// answer: one lost would hold its connection forever).
asio::awaitable<void> answer(std::shared_ptr<stream_descriptor> channel, Done done) {
  for (;;) {
    ssize_t n = ::send(channel->native_handle(), &done, sizeof done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof done)) co_return;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      asio::error_code ec;
      co_await channel->async_wait(stream_descriptor::wait_write,
                                   redirect_error(use_awaitable, ec));
      if (!ec) continue;
    }
    co_return;  // the gateway is gone
  }
}

// Worker side: relays one job's sockets, then answers.
asio::awaitable<void> carry(asio::io_context& io, std::shared_ptr<stream_descriptor> channel,
                            Job job, std::vector<UniqueFd> fds, BufferPool& pool) {
  Done done{job.id, {}};
  std::optional<tcp::socket> client = adopt(io, fds[0]);
  std::optional<tcp::socket> server = adopt(io, fds[1]);
  if (client && server) {
    done.result =
        co_await relay(*client, *server, pool, std::chrono::milliseconds(job.idle_timeout_ms));
  } else {
    done.result.reset = true;  // not two TCP sockets: closed unused
  }
  co_await answer(std::move(channel), done);
}

// Worker side: takes jobs until the gateway's end shuts down.
asio::awaitable<void> take_jobs(asio::io_context& io, int channel_fd, BufferPool& pool) {
  auto channel = std::make_shared<stream_descriptor>(io, channel_fd);
  for (;;) {
    asio::error_code ec;
    co_await channel->async_wait(stream_descriptor::wait_read, redirect_error(use_awaitable, ec));
    if (ec) break;
    for (;;) {
      Job job{};
      ReceivedMessage m = receive_with_fds(
          channel->native_handle(), std::as_writable_bytes(std::span(&job, 1)), MSG_DONTWAIT);
      if (m.size < 0 && (m.error == EAGAIN || m.error == EWOULDBLOCK)) break;
      if (m.size <= 0) {
        io.stop();  // the gateway shut its end: every relay here ends with the loop
        co_return;
      }
      if (m.size != static_cast<ssize_t>(sizeof job) || m.truncated || m.fds.size() != 2) {
        // Not a whole job (this table had no room for the sockets, or the message is not one
        // the gateway sends): close whatever came, and say so.
        m.fds.clear();
        Done refused{job.id, {}};
        refused.result.reset = true;
        asio::co_spawn(io, answer(channel, refused), asio::detached);
        continue;
      }
      asio::co_spawn(io, carry(io, channel, job, std::move(m.fds), pool), asio::detached);
    }
  }
  io.stop();
}

void run_worker(int channel_fd, std::promise<int> started) {
  // Signals are the gateway thread's business (netfence forwards them to the command).
  sigset_t all;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  if (::unshare(CLONE_FILES) != 0) {
    started.set_value(errno);
    return;
  }
  close_other_descriptors(channel_fd);
  started.set_value(0);
  try {
    BufferPool pool;
    asio::io_context io(1);
    asio::co_spawn(io, take_jobs(io, channel_fd, pool), asio::detached);
    io.run();
  } catch (const std::exception&) {
    // The channel closes with the loop: the gateway sees the worker gone and its relays reset.
  }
}

}  // namespace

struct RelayWorkers::Pending {
  explicit Pending(const asio::any_io_executor& executor)
      : done(executor, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;  // cancelled when the answer comes (or never will)
  std::optional<RelayResult> result;
};

RelayWorkers::RelayWorkers(asio::any_io_executor executor, size_t max_workers,
                           size_t relays_per_worker)
    : executor_(std::move(executor)),
      max_workers_(max_workers),
      relays_per_worker_(relays_per_worker) {}

RelayWorkers::~RelayWorkers() {
  stop();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

void RelayWorkers::stop() {
  stopped_ = true;
  for (auto& w : workers_) ::shutdown(w->channel->native_handle(), SHUT_RDWR);
}

std::shared_ptr<RelayWorkers::Worker> RelayWorkers::pick() {
  if (stopped_ || relays_per_worker_ == 0) return nullptr;
  size_t live = 0;
  for (auto& w : workers_) {
    if (w->failed) continue;
    ++live;
    if (w->active < relays_per_worker_) return w;
  }
  // A worker that failed may be replaced, but not without end.
  if (live >= max_workers_ || workers_.size() >= 2 * max_workers_) return nullptr;
  return start_worker();
}

std::shared_ptr<RelayWorkers::Worker> RelayWorkers::start_worker() {
  if (cannot_start_) return nullptr;
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ends) != 0) {
    return nullptr;  // short of descriptors now; perhaps not later
  }
  UniqueFd here(ends[0]);
  UniqueFd there(ends[1]);
  auto w = std::make_shared<Worker>();
  std::promise<int> started;
  std::future<int> ready = started.get_future();
  try {
    w->thread = std::thread(run_worker, there.get(), std::move(started));
  } catch (const std::system_error&) {
    return nullptr;  // no thread now (EAGAIN); perhaps later
  }
  if (ready.get() != 0) {  // no private descriptor table: a worker would not help
    w->thread.join();
    cannot_start_ = true;
    return nullptr;
  }
  there.reset();  // this table's copy; the worker's own stays open in its table
  w->channel = std::make_unique<stream_descriptor>(executor_, here.release());
  workers_.push_back(w);
  asio::co_spawn(executor_, read_results(w), asio::detached);
  return w;
}

asio::awaitable<void> RelayWorkers::read_results(std::shared_ptr<Worker> worker) {
  Worker& w = *worker;
  int fd = w.channel->native_handle();
  bool open = true;
  while (open) {
    asio::error_code ec;
    co_await w.channel->async_wait(stream_descriptor::wait_read, redirect_error(use_awaitable, ec));
    if (ec) break;
    for (;;) {
      Done done{};
      ssize_t n = ::recv(fd, &done, sizeof done, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n != static_cast<ssize_t>(sizeof done)) {
        open = false;  // end of stream or a broken channel: the worker is gone
        break;
      }
      if (auto it = w.pending.find(done.id); it != w.pending.end()) {
        it->second->result = done.result;
        it->second->done.cancel();
      }
    }
  }
  w.failed = true;
  ::shutdown(fd, SHUT_RDWR);  // a worker still running sees the end and stops
  for (auto& [id, p] : w.pending) p->done.cancel();  // each ends as a reset
}

asio::awaitable<std::optional<RelayResult>> RelayWorkers::relay(
    tcp::socket& client, tcp::socket& server, std::chrono::milliseconds idle_timeout) {
  std::shared_ptr<Worker> w = pick();
  if (!w) co_return std::nullopt;
  ++w->active;  // its room is taken before any wait below lets another relay pick
  Job job{++next_id_, idle_timeout.count()};
  const int fds[2] = {client.native_handle(), server.native_handle()};
  asio::error_code ec;
  for (;;) {
    int error = send_with_fds(w->channel->native_handle(), std::as_bytes(std::span(&job, 1)), fds,
                              MSG_DONTWAIT);
    if (error == 0) break;
    if (error == EAGAIN && !w->failed) {
      co_await w->channel->async_wait(stream_descriptor::wait_write,
                                      redirect_error(use_awaitable, ec));
      if (!ec && !w->failed) continue;
    }
    --w->active;
    co_return std::nullopt;
  }
  // The message holds the sockets until the worker takes them; this table needs them no more.
  // release() first: it takes them out of this thread's epoll set, which close() would not,
  // since the sockets live on (epoll forgets a socket only when its last descriptor closes).
  for (tcp::socket* s : {&client, &server}) {
    UniqueFd released(s->release(ec));
    if (ec) s->close(ec);
  }
  auto pending = std::make_shared<Pending>(executor_);
  w->pending.emplace(job.id, pending);
  if (!w->failed && !pending->result) {
    co_await pending->done.async_wait(redirect_error(use_awaitable, ec));
  }
  w->pending.erase(job.id);
  --w->active;
  if (pending->result) co_return *pending->result;
  RelayResult lost;  // the worker stopped before it answered
  lost.reset = true;
  co_return lost;
}

}  // namespace netfence::gateway
