// Forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT from netfence to the sandboxed command, so that
// `kill <netfence>` or a supervisor's SIGTERM reaches the command and netfence exits with the
// command's code instead of dying first. SIGCHLD is read through the same signalfd: it reaps
// the command's orphans (netfence is the sandbox's subreaper).
#pragma once

#include <signal.h>

#include "common/fd.h"
#include "common/result.h"
#include "sandbox/sandbox.h"

namespace netfence::sandbox {

class SignalForwarder {
 public:
  // Blocks the four signals and SIGCHLD in the calling thread and opens a non-blocking signalfd for
  // them. Threads created afterwards inherit the mask, so create the forwarder before any thread (a
  // thread without the mask would take the default action: netfence dies, and the command with
  // it through PR_SET_PDEATHSIG). Fails if the signalfd cannot be created (mask left unchanged).
  static Result<SignalForwarder> create();

  SignalForwarder(SignalForwarder&& other) noexcept;
  SignalForwarder& operator=(SignalForwarder&&) = delete;
  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;
  // Discards signals still pending, closes the signalfd and restores the thread's previous mask.
  ~SignalForwarder();

  // Readable when one of the signals is pending (for an event loop). Owned by the forwarder.
  int fd() const { return fd_.get(); }

  // Reads every pending signal and sends it to the command (SIGCHLD: reaps exited orphans). A
  // signal the kernel raised for the terminal (Ctrl-C, Ctrl-\, hangup: si_code SI_KERNEL) is not
  // sent again: the command is in our process group and received it from the terminal already.
  // Returns the number of signals forwarded; fails if reading the signalfd fails (sending to an
  // exited command is ignored).
  Result<int> forward_pending(Sandbox& sandbox);

 private:
  SignalForwarder(UniqueFd fd, sigset_t previous_mask)
      : fd_(std::move(fd)), previous_(previous_mask) {}

  UniqueFd fd_;
  sigset_t previous_{};
  bool active_ = true;
};

// Waits for the command to exit while forwarding signals; returns its exit code (as
// Sandbox::wait()). Fails if waiting or reading signals fails.
Result<int> wait_forwarding_signals(Sandbox& sandbox, SignalForwarder& forwarder);

}  // namespace netfence::sandbox
