// netfence::sandbox runs an untrusted command in its own network namespace, whose only way out is
// a set of listening sockets it hands to the parent (the gateway). The theory of operation is at
// the top of sandbox.cc; docs/sandbox.md has the picture, the ruleset and the measurements.
//
// Typical use (the gateway serves the listeners between start() and wait()):
//   auto forwarder = SignalForwarder::create();        // before any thread exists
//   auto sandbox = Sandbox::start(options);             // child is set up, command not yet run
//   serve(sandbox->listeners());                        // gateway starts accepting
//   if (auto ok = sandbox->release(); !ok) print(ok.error().message);  // 126/127 cases
//   int code = wait_forwarding_signals(*sandbox, *forwarder).value();  // exit with this code
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace netfence::sandbox {

enum class NetworkMode {
  kEnabled,   // addresses, default routes, nftables redirect to the listeners
  kDisabled,  // only `lo`; no listeners; DNS fails at once
};

// How the child loads its nftables ruleset: as one netlink transaction built with libnftnl (the
// default; see docs/sandbox.md for the measured start times), in-process with libnftables
// (dlopen'ed), or by running the `nft` binary. All three load the same ruleset.
enum class NftLoader { kNetlink, kLibrary, kBinary };

// The sandbox's own network layout (docs/sandbox.md, "Addresses", says why these).
inline constexpr char kLinkName[] = "netfence0";           // carries the default routes
inline constexpr char kPeerLinkName[] = "netfence0p";      // its veth peer, also inside, unused
inline constexpr char kAddressV4[] = "192.0.0.2";          // RFC 7335 range, /32
inline constexpr char kAddressV6[] = "fd6e:6574:6665::2";  // ULA, /128
inline constexpr char kNameserverV4[] = "192.0.0.1";  // in resolv.conf; redirected like all :53
// Listener ports; below 1024, so the command (without CAP_NET_BIND_SERVICE) cannot bind them.
inline constexpr uint16_t kTcpPort = 1000;
inline constexpr uint16_t kDnsPort = 53;
inline constexpr uint16_t kUdpPort = 1000;  // UDP relay listeners (UDP has its own port space)

// Exit codes for netfence's own failures, as a shell uses them.
inline constexpr int kExitSetupFailed = 125;
inline constexpr int kExitNotExecutable = 126;
inline constexpr int kExitNotFound = 127;

struct Options {
  NetworkMode mode = NetworkMode::kEnabled;
  // The command; argv[0] without a '/' is searched in PATH (of `env` when given) as a shell does
  // (unsearchable directories are skipped; a match that cannot be executed is used only if no
  // later one can), files without a #! line run under /bin/sh. Must not be empty.
  std::vector<std::string> argv;
  // The command's environment as "NAME=value" strings; nullopt inherits the caller's.
  std::optional<std::vector<std::string>> env;
  // Borrowed fds that become the command's stdin/stdout/stderr; -1 inherits the caller's.
  std::array<int, 3> stdio = {-1, -1, -1};
  // How long start() waits for the child to finish setting up before killing it.
  std::chrono::milliseconds setup_timeout{10'000};
  NftLoader nft_loader = NftLoader::kNetlink;
  // UDP (other than DNS) that may leave, as nftables set elements: "ADDR[/LEN] . PORT[-PORT]",
  // IPv4 and IPv6 apart. Matching datagrams are redirected to the UDP relay listeners; all other
  // UDP is rejected inside the sandbox (ICMP port unreachable). The gateway still judges each
  // flow; these sets only decide which datagrams reach it (fast failure for the rest).
  std::vector<std::string> udp_allow_v4;
  std::vector<std::string> udp_allow_v6;
};

// Sockets created inside the sandbox's network namespace; all CLOEXEC, blocking, owned by whoever
// holds this struct. Invalid (-1) in disabled mode.
struct Listeners {
  UniqueFd tcp_v4;      // 0.0.0.0:kTcpPort, listening: every redirected IPv4 TCP connection
  UniqueFd tcp_v6;      // [::]:kTcpPort, IPV6_V6ONLY, listening: redirected IPv6 TCP
  UniqueFd dns_udp_v4;  // 127.0.0.1:53, bound to the exact redirect target so replies un-NAT
  UniqueFd dns_udp_v6;  // [::1]:53, likewise
  UniqueFd dns_tcp_v4;  // 0.0.0.0:53, listening
  UniqueFd dns_tcp_v6;  // [::]:53, IPV6_V6ONLY, listening
  UniqueFd udp_v4;      // 127.0.0.1:kUdpPort, bound exactly: redirected UDP flows (IPv4)
  UniqueFd udp_v6;      // [::1]:kUdpPort, likewise (IPv6)
  // NETLINK_NETFILTER socket opened in the sandbox's namespace: the gateway asks conntrack there
  // where a redirected UDP flow was going (SO_ORIGINAL_DST is TCP-only).
  UniqueFd conntrack;
};

// One sandboxed command: a child process in fresh network and mount namespaces (plus a user
// namespace when netfence is not root), set up and parked until release().
//
// Threading: call start() from the thread that will outlive the sandbox (the child has
// PR_SET_PDEATHSIG, which fires when the *thread* that forked it exits) and while no other thread
// holds locks the child might need (glibc's malloc is fork-safe; call it before starting threads
// to be sure). Do not set SIGCHLD to SIG_IGN: the command's status would be lost.
class Sandbox {
 public:
  // Forks the child, waits until it has built its namespace (links, addresses, routes, nftables,
  // listeners, resolv.conf) and received its listeners. The command has not run yet. Fails, with
  // the child already killed and reaped, if setup fails (the message says which step and why;
  // callers exit 125), times out, or the options are invalid.
  static Result<Sandbox> start(const Options& options);
  // start() in two steps, so that the caller can do its own set-up while the child builds its
  // namespace (several milliseconds of kernel work): spawn() forks and returns at once (it fails
  // only if the options are invalid or the fork fails); await_ready() then waits as start()
  // does, and fails, with the child killed and reaped by the destructor, as start() would.
  // release() before a successful await_ready() fails.
  static Result<Sandbox> spawn(const Options& options);
  Result<void> await_ready();

  Sandbox(Sandbox&& other) noexcept;
  Sandbox& operator=(Sandbox&& other) noexcept;
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;
  // Kills the command (SIGKILL) if it has not been reaped, reaps it, and kills whatever else is
  // still running in the sandbox's network namespace.
  ~Sandbox();

  // The listeners received from the child. Move them out to keep them beyond the Sandbox.
  Listeners& listeners() { return listeners_; }

  // Lets the child drop its privileges and exec the command; call once the gateway is serving.
  // Returns once exec has happened. Fails if exec failed (message such as "foo: command not
  // found", one line, no trailing newline, no "netfence:" prefix); wait() then returns 127
  // (not found), 126 (not executable) or 125 (privilege drop failed). Also fails if called twice.
  Result<void> release();

  // The child's pid (valid until reaped by wait()/try_wait()/destructor; -1 afterwards).
  pid_t pid() const { return pid_; }
  // A pidfd for the child (readable once it exits; for event loops), or -1 if the kernel has
  // none. Owned by the Sandbox.
  int pidfd() const { return pidfd_.get(); }

  // Sends `signal` to the command (via its pidfd, so never to a recycled pid). Fails if it has
  // already been reaped or the signal cannot be sent.
  Result<void> send_signal(int signal);

  // Blocks until the command exits, reaps it, kills what it left running in the sandbox, and
  // returns its exit code: the exit status, or 128+signal if a signal killed it (like a shell).
  // Calling it again returns the same code. Fails only if waitpid fails (e.g. SIGCHLD ignored).
  Result<int> wait();
  // Like wait() but does not block: nullopt while the command runs.
  Result<std::optional<int>> try_wait();

  // SIGKILLs every process (other than the caller) whose network namespace is the sandbox's, as
  // long as any are found; returns how many were signalled. Processes in the sandbox that made
  // themselves undumpable are invisible to an unprivileged caller (docs/sandbox.md).
  int kill_remaining();

  // netfence is the subreaper of the sandbox (PR_SET_CHILD_SUBREAPER, set by start()): processes
  // the command leaves behind become its children when their parent exits. Reaps those that have
  // exited (never the command itself) and says whether any children remain: kNone means no
  // process of the sandbox can still be running. Call it when SIGCHLD arrives.
  enum class OrphanState { kNone, kSome };
  OrphanState reap_orphans();

 private:
  Sandbox(pid_t pid, UniqueFd pidfd, UniqueFd control);
  void reap_after(int status);
  void kill_and_reap();
  void kill_and_reap_remaining();

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd control_;  // SOCK_SEQPACKET to the child until release()
  Listeners listeners_;
  bool released_ = false;
  bool ready_ = false;
  std::chrono::milliseconds setup_timeout_{0};
  bool expect_listeners_ = false;
  std::optional<int> exit_code_;
  // Identity (st_dev, st_ino) of the sandbox's network namespace, for kill_remaining().
  dev_t netns_device_ = 0;
  ino_t netns_inode_ = 0;
};

// Converts a waitpid() status to a shell-style exit code (128+signal for signals).
int exit_code_from_status(int status);

}  // namespace netfence::sandbox
