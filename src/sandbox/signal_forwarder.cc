#include "sandbox/signal_forwarder.h"

#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace netfence::sandbox {
namespace {

sigset_t forwarded_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&set, signal);
  return set;
}

}  // namespace

Result<SignalForwarder> SignalForwarder::create() {
  sigset_t set = forwarded_signals();
  sigset_t previous;
  if (int error = pthread_sigmask(SIG_BLOCK, &set, &previous); error != 0) {
    return fail(std::string("cannot block signals: ") + std::strerror(error));
  }
  UniqueFd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) {
    int error = errno;
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return fail(std::string("cannot create a signalfd: ") + std::strerror(error));
  }
  return SignalForwarder(std::move(fd), previous);
}

SignalForwarder::SignalForwarder(SignalForwarder&& other) noexcept
    : fd_(std::move(other.fd_)), previous_(other.previous_), active_(other.active_) {
  other.active_ = false;
}

SignalForwarder::~SignalForwarder() {
  if (!active_) return;
  signalfd_siginfo info;
  while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
  }
  fd_.reset();
  pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

Result<int> SignalForwarder::forward_pending(Sandbox& sandbox) {
  int forwarded = 0;
  for (;;) {
    signalfd_siginfo info;
    ssize_t n = ::read(fd_.get(), &info, sizeof info);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return forwarded;
      return fail(std::string("cannot read the signalfd: ") + std::strerror(errno));
    }
    if (n != static_cast<ssize_t>(sizeof info)) return fail("short read from the signalfd");
    if (info.ssi_signo == SIGCHLD) {
      // An orphan of the command (reparented to us, the subreaper) exited: reap it now so that
      // daemonising workloads do not pile up zombies. The command is left to wait().
      sandbox.reap_orphans();
      continue;
    }
    if (info.ssi_code == SI_KERNEL) continue;
    if (sandbox.send_signal(static_cast<int>(info.ssi_signo))) ++forwarded;
  }
}

Result<int> wait_forwarding_signals(Sandbox& sandbox, SignalForwarder& forwarder) {
  for (;;) {
    auto exited = sandbox.try_wait();
    if (!exited) return exited.error();
    if (exited->has_value()) return **exited;
    pollfd fds[2] = {{forwarder.fd(), POLLIN, 0}, {sandbox.pidfd(), POLLIN, 0}};
    // Without a pidfd (old kernel), poll the child's status a few times a second.
    int count = sandbox.pidfd() >= 0 ? 2 : 1;
    int timeout_ms = sandbox.pidfd() >= 0 ? -1 : 100;
    if (::poll(fds, static_cast<nfds_t>(count), timeout_ms) < 0 && errno != EINTR) {
      return fail(std::string("cannot poll: ") + std::strerror(errno));
    }
    if (fds[0].revents & POLLIN) {
      auto forwarded = forwarder.forward_pending(sandbox);
      if (!forwarded) return forwarded.error();
    }
  }
}

}  // namespace netfence::sandbox
