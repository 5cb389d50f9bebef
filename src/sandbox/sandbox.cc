// Theory of operation
// ===================
// The sandbox is a child process in its own network namespace that has no link to anywhere: the
// only sockets that lead out of it are listening sockets the child creates inside it and hands to
// the parent, which stays in the host's namespace and serves them (the gateway). The network
// fails closed by construction; the nftables ruleset only decides *which* listener a packet
// reaches, never whether it escapes.
//
//   parent (host netns)                         child (new user?/net/mount namespaces)
//   -------------------                         ---------------------------------------
//   socketpair(SEQPACKET), block signals, fork ->
//                                               reset handlers, PDEATHSIG=SIGKILL
//                                               unshare(CLONE_NEWNET|CLONE_NEWNS
//                                                       [|CLONE_NEWUSER + uid/gid maps])
//                                               mount / rprivate; lo up
//                                               [enabled] veth netfence0/netfence0p, addresses,
//                                                 default routes, listeners, nftables ruleset
//                                               bind a private resolv.conf over /etc/resolv.conf
//   await_ready: READY + listener fds      <-   sendmsg(SCM_RIGHTS)
//   ... gateway starts serving ...              (parked in recv)
//   release(): GO                          ->   stdio, drop every capability, NO_NEW_PRIVS,
//                                               mark fds >= 3 CLOEXEC, default signals, empty mask
//              EOF (exec happened)         <-   execve(command, PATH searched as a shell does)
//           or EXEC_FAILED code + text     <-   (exec failed) _exit(125/126/127)
//   wait(): waitpid -> code, kill stragglers
//
// Why this shape:
// - The command cannot run before the gateway serves (it is parked until GO), and connections it
//   makes are redirected from its first packet (NAT is decided per flow, so rules go in first).
// - Listeners are created inside the namespace, so redirect targets are local sockets; the
//   original destination survives in conntrack (SO_ORIGINAL_DST, original_destination.h).
// - Every failure before exec is reported as text over the socketpair rather than guessed from
//   an exit code; the child then exits 125, 126 or 127 like a shell would.
// - The child only lives in namespaces it created: they disappear with the last process in them
//   and the last socket created in them (the listeners the parent holds); nothing is
//   bind-mounted in the host (no /run/netns files), nothing is written to host files.
// - Signals are blocked from before fork until just before exec so that no handler of the
//   parent (e.g. an event loop's self-pipe) ever runs in the child; signals sent meanwhile stay
//   pending and take effect, with default dispositions, right before exec.
// - Unprivileged, the user namespace maps only the caller's uid/gid (identity; setgroups
//   denied); the child is "root" only in the sense of holding capabilities in that namespace, and
//   it gives them all up before exec, so the command cannot touch links, routes or nftables.
#include "sandbox/sandbox.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/netlink.h>
#include <linux/securebits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <thread>
#include <utility>

#include "common/fd_passing.h"
#include "sandbox/netlink.h"
#include "sandbox/nftables.h"

namespace netfence::sandbox {
namespace {

// ---- Control channel ------------------------------------------------------------------------

enum class MessageKind : uint32_t {
  kReady = 1,        // child -> parent, with listener fds
  kSetupFailed = 2,  // child -> parent, text; child exits 125
  kGo = 3,           // parent -> child
  kExecFailed = 4,   // child -> parent, exit code + text; child exits with that code
};

struct MessageHeader {
  MessageKind kind;
  int32_t exit_code;
};

constexpr size_t kMaxText = 1024;
constexpr size_t kListenerCount = 9;

struct Message {
  bool eof = false;
  MessageKind kind{};
  int exit_code = 0;
  std::string text;
  std::vector<UniqueFd> fds;
};

std::string errno_text(int error) {
  return std::strerror(error);
}

// Sends one message (header, text, optional fds). Returns false if it could not be sent; the
// child ignores that (the parent is gone or gave up), the parent turns it into an Error.
bool send_message(int fd, MessageKind kind, int exit_code, std::string_view text,
                  std::span<const int> fds = {}) {
  static_assert(kListenerCount <= kMaxPassedFds);
  struct {
    MessageHeader header;
    char text[kMaxText];
  } message{{kind, exit_code}, {}};
  if (text.size() > kMaxText) text = text.substr(0, kMaxText);
  if (!text.empty()) std::memcpy(message.text, text.data(), text.size());
  auto bytes = std::as_bytes(std::span(&message, 1)).first(sizeof(MessageHeader) + text.size());
  return fds.size() <= kListenerCount && send_with_fds(fd, bytes, fds) == 0;
}

Result<Message> receive_message(int fd) {
  struct {
    MessageHeader header;
    char text[kMaxText];
  } message{};
  ReceivedMessage received = receive_with_fds(fd, std::as_writable_bytes(std::span(&message, 1)));
  // ECONNRESET: the child died with unread data from us; same meaning as EOF.
  if (received.size == 0 || (received.size < 0 && received.error == ECONNRESET)) {
    Message eof;
    eof.eof = true;
    return eof;
  }
  if (received.size < 0) {
    return fail("cannot read from the sandbox control channel: " + errno_text(received.error));
  }
  if (received.truncated) return fail("truncated message on the sandbox control channel");
  auto size = static_cast<size_t>(received.size);
  if (size < sizeof(MessageHeader)) return fail("short message on the sandbox control channel");
  Message result;
  result.kind = message.header.kind;
  result.exit_code = message.header.exit_code;
  result.text.assign(message.text, size - sizeof(MessageHeader));
  result.fds = std::move(received.fds);
  return result;
}

// ---- Child side -----------------------------------------------------------------------------

// Everything the child needs, prepared by the parent before fork so that the child mostly issues
// system calls. Pointers refer to strings owned by the caller's Options (the child has a copy of
// the whole address space).
struct ChildPlan {
  NetworkMode mode = NetworkMode::kEnabled;
  NftLoader nft_loader = NftLoader::kNetlink;
  pid_t parent = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  int control = -1;
  int parent_control = -1;  // the parent's end, closed first thing in the child
  std::array<int, 3> stdio = {-1, -1, -1};
  std::vector<char*> argv;
  std::optional<std::vector<char*>> envp;
  std::string ruleset;     // kLibrary, kBinary
  NftBatch ruleset_batch;  // kNetlink
  std::string resolv_conf;
};

Result<void> write_file(const char* path, std::string_view content) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd) return fail(std::string("cannot open ") + path + ": " + errno_text(errno));
  ssize_t n = ::write(fd.get(), content.data(), content.size());
  if (n != static_cast<ssize_t>(content.size())) {
    return fail(std::string("cannot write ") + path + ": " + errno_text(n < 0 ? errno : EIO));
  }
  return {};
}

Result<void> map_identity(uid_t uid, gid_t gid) {
  // setgroups must be denied before an unprivileged process may write gid_map. Kernels before
  // 3.19 have no such file; nothing to deny there.
  if (::access("/proc/self/setgroups", F_OK) == 0) {
    if (auto denied = write_file("/proc/self/setgroups", "deny"); !denied) return denied;
  }
  if (auto mapped = write_file("/proc/self/uid_map",
                               std::to_string(uid) + " " + std::to_string(uid) + " 1\n");
      !mapped) {
    return mapped;
  }
  return write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1\n");
}

Result<void> enter_namespaces(const ChildPlan& plan) {
  // As root, plain network and mount namespaces suffice. Root without CAP_SYS_ADMIN (an
  // unprivileged container) and everyone else go through a user namespace.
  if (plan.uid == 0 && ::unshare(CLONE_NEWNET | CLONE_NEWNS) == 0) return {};
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) != 0) {
    return fail("cannot create user, network and mount namespaces: " + errno_text(errno) +
                (errno == EPERM || errno == ENOSPC || errno == EINVAL
                     ? " (are unprivileged user namespaces disabled? see "
                       "/proc/sys/user/max_user_namespaces)"
                     : ""));
  }
  return map_identity(plan.uid, plan.gid);
}

Result<UniqueFd> make_socket(int family, int type, const char* address, uint16_t port) {
  UniqueFd fd(::socket(family, type | SOCK_CLOEXEC, 0));
  std::string where = std::string(type == SOCK_STREAM ? "tcp " : "udp ") +
                      (family == AF_INET6 ? "[" + std::string(address) + "]" : address) + ":" +
                      std::to_string(port);
  if (!fd) return fail("cannot create the listener " + where + ": " + errno_text(errno));
  sockaddr_storage storage{};
  socklen_t length;
  if (family == AF_INET) {
    auto& v4 = reinterpret_cast<sockaddr_in&>(storage);
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    ::inet_pton(AF_INET, address, &v4.sin_addr);
    length = sizeof v4;
  } else {
    int one = 1;
    if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
      return fail("cannot set IPV6_V6ONLY on " + where + ": " + errno_text(errno));
    }
    auto& v6 = reinterpret_cast<sockaddr_in6&>(storage);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    ::inet_pton(AF_INET6, address, &v6.sin6_addr);
    length = sizeof v6;
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&storage), length) != 0) {
    return fail("cannot bind the listener " + where + ": " + errno_text(errno));
  }
  // Accepted sockets inherit TCP_NODELAY: the gateway relays what the client already chose to
  // send as one write, and its own Nagle would hold a small reply behind a delayed ACK.
  int one = 1;
  if (type == SOCK_STREAM &&
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    return fail("cannot set TCP_NODELAY on " + where + ": " + errno_text(errno));
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), SOMAXCONN) != 0) {
    return fail("cannot listen on " + where + ": " + errno_text(errno));
  }
  return fd;
}

Result<Listeners> create_listeners() {
  Listeners listeners;
  struct Spec {
    UniqueFd* out;
    int family;
    int type;
    const char* address;
    uint16_t port;
  };
  const Spec specs[] = {
      {&listeners.tcp_v4, AF_INET, SOCK_STREAM, "0.0.0.0", kTcpPort},
      {&listeners.tcp_v6, AF_INET6, SOCK_STREAM, "::", kTcpPort},
      {&listeners.dns_udp_v4, AF_INET, SOCK_DGRAM, "127.0.0.1", kDnsPort},
      {&listeners.dns_udp_v6, AF_INET6, SOCK_DGRAM, "::1", kDnsPort},
      {&listeners.dns_tcp_v4, AF_INET, SOCK_STREAM, "0.0.0.0", kDnsPort},
      {&listeners.dns_tcp_v6, AF_INET6, SOCK_STREAM, "::", kDnsPort},
      {&listeners.udp_v4, AF_INET, SOCK_DGRAM, "127.0.0.1", kUdpPort},
      {&listeners.udp_v6, AF_INET6, SOCK_DGRAM, "::1", kUdpPort},
  };
  for (const Spec& spec : specs) {
    auto fd = make_socket(spec.family, spec.type, spec.address, spec.port);
    if (!fd) return fd.error();
    *spec.out = std::move(*fd);
  }
  int conntrack = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (conntrack < 0) return fail("cannot open a conntrack netlink socket: " + errno_text(errno));
  listeners.conntrack.reset(conntrack);
  return listeners;
}

// The veth's MTU: the largest a veth takes; the route to every destination uses it.
constexpr uint32_t kLinkMtu = 65535;

// The link that carries the default routes (enabled mode only), its addresses and routes.
Result<void> configure_veth(Rtnetlink& netlink) {
  // A veth pair with both ends inside: the kernel may lack the `dummy` link type, routes via `lo`
  // are turned into reject routes for IPv6, and a tun device needs /dev/net/tun. Nothing is ever
  // transmitted on it: the ruleset redirects, rejects or drops every packet before it leaves.
  if (!netlink.add_veth(kLinkName, kPeerLinkName, kLinkMtu, kSandboxGsoMaxSize)) {
    if (auto veth = netlink.add_veth(kLinkName, kPeerLinkName, kLinkMtu, 0); !veth) return veth;
  }
  auto link = netlink.link_index(kLinkName);
  if (!link) return link.error();
  auto peer = netlink.link_index(kPeerLinkName);
  if (!peer) return peer.error();
  // With its peer down the link would have no carrier; keep both up so routes stay usable
  // regardless of ignore_routes_with_linkdown.
  if (auto up = netlink.set_link_up(*peer); !up) return up;
  in_addr v4;
  in6_addr v6;
  ::inet_pton(AF_INET, kAddressV4, &v4);
  ::inet_pton(AF_INET6, kAddressV6, &v6);
  if (auto added = netlink.add_address(*link, v4, 32); !added) return added;
  if (auto added = netlink.add_address(*link, v6, 128); !added) return added;
  if (auto route = netlink.add_default_route_v4(*link, &v4); !route) return route;
  return netlink.add_default_route_v6(*link);
}

// A fresh sysfs shows this namespace's links (/sys/class/net: lo, netfence0), not the host's.
// Best effort: it only changes what the command sees, not where its packets can go.
void mount_fresh_sysfs() {
  ::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, nullptr);
}

// Replaces what the command sees at /etc/resolv.conf (in our mount namespace only). The file is
// staged on a private tmpfs mounted on /sys and bind-mounted (read-only) over the real path of
// /etc/resolv.conf (following symlinks, e.g. to systemd-resolved's stub file); the staging tmpfs
// is left there for mount_fresh_sysfs() to cover (the command cannot unmount anything).
// Unmounting it instead would wait for an RCU grace period, about a millisecond of start time.
// Where /sys cannot be used, another directory is staged on and unmounted again before anything
// else runs. If /etc/resolv.conf is missing or a dangling symlink there is nothing to cover:
// resolvers then default to 127.0.0.1:53, which the ruleset redirects to the gateway (enabled)
// or where nothing listens (disabled).
Result<void> install_resolv_conf(std::string_view content) {
  char resolved[PATH_MAX];
  if (::realpath("/etc/resolv.conf", resolved) == nullptr) {
    if (errno == ENOENT) return {};
    return fail("cannot resolve /etc/resolv.conf: " + errno_text(errno));
  }
  // Pin the target before the staging tmpfs goes up: the target may live under the staging
  // directory (e.g. /run/systemd/resolve/stub-resolv.conf with /run as staging), which the tmpfs
  // would hide. Mounting on /proc/self/fd/N mounts on the pinned file itself.
  UniqueFd target(::open(resolved, O_PATH | O_CLOEXEC));
  if (!target) return fail(std::string("cannot open ") + resolved + ": " + errno_text(errno));
  struct stat target_stat;
  if (::fstat(target.get(), &target_stat) != 0 || !S_ISREG(target_stat.st_mode)) {
    return fail(std::string("/etc/resolv.conf (") + resolved + ") is not a regular file");
  }
  const std::string target_path = "/proc/self/fd/" + std::to_string(target.get());
  const char* staging = nullptr;
  for (const char* candidate : {"/sys", "/tmp", "/run", "/mnt", "/var/tmp"}) {
    if (::mount("netfence", candidate, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "size=16k,mode=0755") == 0) {
      staging = candidate;
      break;
    }
  }
  if (staging == nullptr) return fail("cannot mount a staging tmpfs: " + errno_text(errno));
  std::string staged = std::string(staging) + "/resolv.conf";
  Result<void> result = [&]() -> Result<void> {
    UniqueFd fd(::open(staged.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) return fail("cannot create " + staged + ": " + errno_text(errno));
    if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
      return fail("cannot write " + staged + ": " + errno_text(errno));
    }
    fd.reset();
    // Read-only first: a bind mount inherits the per-mount flags of its source mount.
    if (::mount(nullptr, staging, nullptr,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                nullptr) != 0) {
      return fail(std::string("cannot make the staging tmpfs read-only: ") + errno_text(errno));
    }
    if (::mount(staged.c_str(), target_path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return fail(std::string("cannot bind-mount a resolv.conf over ") + resolved + ": " +
                  errno_text(errno));
    }
    return {};
  }();
  // A staging tmpfs on /sys stays: the fresh sysfs mounted next covers it.
  if (std::string_view(staging) != "/sys" && ::umount2(staging, MNT_DETACH) != 0 && result) {
    return fail(std::string("cannot unmount the staging tmpfs on ") + staging + ": " +
                errno_text(errno));
  }
  return result;
}

Result<void> drop_privileges() {
  // Locked securebits: uid 0 (netfence run as root) gets no capabilities back from execve of a
  // root-owned or file-capability binary, and no ambient capability can be raised again.
  const unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                             SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) {
    return fail("cannot set securebits: " + errno_text(errno));
  }
  for (int cap = 0; cap < static_cast<int>(cap_max_bits()); ++cap) {
    if (cap_drop_bound(static_cast<cap_value_t>(cap)) != 0 && errno != EINVAL) {
      return fail("cannot drop capability " + std::to_string(cap) +
                  " from the bounding set: " + errno_text(errno));
    }
  }
  if (cap_reset_ambient() != 0)
    return fail("cannot clear ambient capabilities: " + errno_text(errno));
  cap_t none = cap_init();
  if (none == nullptr) return fail("cannot allocate a capability set: " + errno_text(errno));
  int rc = cap_set_proc(none);
  int error = errno;
  cap_free(none);
  if (rc != 0) return fail("cannot drop capabilities: " + errno_text(error));
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return fail("cannot set no_new_privs: " + errno_text(errno));
  }
  return {};
}

// Everything except 0/1/2 is closed by execve; the control socket stays usable until then so a
// failed exec can still be reported.
Result<void> mark_fds_cloexec() {
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return {};
  DIR* dir = ::opendir("/proc/self/fd");  // kernels before 5.11
  if (dir == nullptr) return fail("cannot list open fds: " + errno_text(errno));
  const int own = ::dirfd(dir);
  while (dirent* entry = ::readdir(dir)) {
    int fd = std::atoi(entry->d_name);
    if (fd > 2 && fd != own) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  ::closedir(dir);
  return {};
}

void reset_signal_dispositions() {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal != SIGKILL && signal != SIGSTOP) ::sigaction(signal, &action, nullptr);
  }
}

// Installs borrowed fds as 0/1/2. Duplicates go above 2 first so that overlapping requests
// (e.g. stdout and stderr the same fd, or stdio[0] == 1) cannot clobber each other.
Result<void> install_stdio(const std::array<int, 3>& stdio) {
  int copies[3] = {-1, -1, -1};
  for (int i = 0; i < 3; ++i) {
    if (stdio[i] < 0) continue;
    copies[i] = ::fcntl(stdio[i], F_DUPFD_CLOEXEC, 3);
    if (copies[i] < 0)
      return fail("cannot duplicate fd " + std::to_string(stdio[i]) + ": " + errno_text(errno));
  }
  for (int i = 0; i < 3; ++i) {
    if (copies[i] >= 0 && ::dup2(copies[i], i) < 0) {
      return fail("cannot install fd " + std::to_string(i) + ": " + errno_text(errno));
    }
  }
  return {};
}

[[noreturn]] void setup_failed(const ChildPlan& plan, const Error& error) {
  send_message(plan.control, MessageKind::kSetupFailed, kExitSetupFailed, error.message);
  ::_exit(kExitSetupFailed);
}

[[noreturn]] void exec_failed(const ChildPlan& plan, int code, const std::string& text) {
  send_message(plan.control, MessageKind::kExecFailed, code, text);
  ::_exit(code);
}

// execve with a script fallback: a file the kernel will not run (no #! line) runs under /bin/sh,
// as execvp and shells do. Returns only on failure, with errno set.
void execve_or_script(const char* path, char* const* argv, char* const* envp) {
  ::execve(path, argv, envp);
  if (errno != ENOEXEC) return;
  std::vector<char*> shell_argv;
  static char sh[] = "sh";
  shell_argv.push_back(sh);
  shell_argv.push_back(const_cast<char*>(path));
  for (char* const* arg = argv + 1; *arg != nullptr; ++arg) shell_argv.push_back(*arg);
  shell_argv.push_back(nullptr);
  ::execve("/bin/sh", shell_argv.data(), envp);
  errno = ENOEXEC;
}

// Runs the command the way a shell does (not execvp: a PATH entry we may not search must mean
// "not here", not "permission denied"). Returns only on failure: the exit code (127 not found,
// 126 found but not executable) and a one-line message.
std::pair<int, std::string> exec_command(const std::vector<char*>& argv, char* const* envp) {
  const std::string command = argv[0];
  if (command.find('/') != std::string::npos) {
    execve_or_script(argv[0], argv.data(), envp);
    int error = errno;
    return {error == ENOENT || error == ENOTDIR ? kExitNotFound : kExitNotExecutable,
            command + ": cannot execute: " + errno_text(error)};
  }
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (char* const* entry = envp; *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, "PATH=", 5) == 0) path = *entry + 5;
  }
  int not_executable = 0;  // errno of the first match we found but could not run
  size_t begin = 0;
  for (;;) {
    size_t end = path.find(':', begin);
    std::string directory = path.substr(begin, end == std::string::npos ? end : end - begin);
    std::string candidate = (directory.empty() ? "." : directory) + "/" + command;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
      execve_or_script(candidate.c_str(), argv.data(), envp);
      if (not_executable == 0) not_executable = errno;
    }
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  if (not_executable != 0) {
    return {kExitNotExecutable, command + ": cannot execute: " + errno_text(not_executable)};
  }
  return {kExitNotFound, command + ": command not found"};
}

[[noreturn]] void run_child(const ChildPlan& plan) {
  ::close(plan.parent_control);
  // Signals stay blocked (inherited from start()) until just before exec; make sure none of the
  // parent's handlers can run here once they are unblocked.
  reset_signal_dispositions();
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != plan.parent)
    ::_exit(kExitSetupFailed);

  if (auto entered = enter_namespaces(plan); !entered) setup_failed(plan, entered.error());
  // Keep our mounts (resolv.conf) from propagating to the host, and the host's from reaching us.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    setup_failed(plan, Error{"cannot make mounts private: " + errno_text(errno)});
  }
  // lo first: the listeners on ::1 need it. Then the slow steps overlap: the netlink ruleset
  // (it names no link but lo, by index 1) and the listeners (bound to wildcard and loopback
  // addresses only) on a second thread while this one builds the veth, its addresses and
  // routes, and a third installs resolv.conf and mounts a fresh sysfs. Nothing runs before all
  // are done. The nft binary loader forks, so it waits for the third thread first (see there).
  //
  // Every TCP connection of the command crosses the sandbox twice in the kernel (to the
  // listener, and its replies back), as packets the size of the route's MTU and GSO limit: at the
  // largest sizes each stream needs the fewest packets, and every packet costs a pass through
  // conntrack, NAT and the rules (docs/sandbox.md, "Packet sizes"). Disabled mode has no
  // connections: lo keeps the defaults.
  const bool enabled = plan.mode == NetworkMode::kEnabled;
  auto netlink = bring_up_loopback(/*large_packets=*/enabled);
  if (!netlink) setup_failed(plan, netlink.error());
  Result<void> resolv;
  std::thread resolv_installer([&] {
    resolv = install_resolv_conf(plan.resolv_conf);
    mount_fresh_sysfs();
  });
  Result<void> loaded;
  std::optional<Result<Listeners>> created;
  std::thread loader;
  if (enabled && plan.nft_loader == NftLoader::kNetlink) {
    loader = std::thread([&] {
      loaded = load_ruleset_batch(plan.ruleset_batch);
      if (loaded) created = create_listeners();
    });
  }
  Result<void> links = enabled ? configure_veth(*netlink) : Result<void>{};
  if (loader.joinable()) loader.join();
  if (!links) setup_failed(plan, links.error());
  Listeners listeners;
  if (enabled) {
    switch (plan.nft_loader) {
      case NftLoader::kNetlink:
        break;
      case NftLoader::kLibrary:
        loaded = load_ruleset_with_library(plan.ruleset);
        break;
      case NftLoader::kBinary:
        // nft is forked: a child forked while the staged resolv.conf is open for writing holds
        // it until its exec, and the staging tmpfs cannot be made read-only (EBUSY).
        resolv_installer.join();
        loaded = load_ruleset_with_binary(plan.ruleset);
        break;
    }
    if (!loaded) setup_failed(plan, loaded.error());
    if (!created) created = create_listeners();
    if (!*created) setup_failed(plan, created->error());
    listeners = std::move(**created);
  }
  if (resolv_installer.joinable()) resolv_installer.join();
  if (!resolv) setup_failed(plan, resolv.error());

  std::vector<int> fds;
  for (const UniqueFd* fd : {&listeners.tcp_v4, &listeners.tcp_v6, &listeners.dns_udp_v4,
                             &listeners.dns_udp_v6, &listeners.dns_tcp_v4, &listeners.dns_tcp_v6,
                             &listeners.udp_v4, &listeners.udp_v6, &listeners.conntrack}) {
    if (fd->valid()) fds.push_back(fd->get());
  }
  if (!send_message(plan.control, MessageKind::kReady, 0, {}, fds)) ::_exit(kExitSetupFailed);
  listeners = Listeners{};  // the parent holds them now

  // Parked until the gateway serves. EOF or anything but GO: the parent gave up.
  MessageHeader go{};
  ssize_t n;
  do {
    n = ::recv(plan.control, &go, sizeof go, 0);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof go) || go.kind != MessageKind::kGo)
    ::_exit(kExitSetupFailed);

  if (auto installed = install_stdio(plan.stdio); !installed) {
    exec_failed(plan, kExitSetupFailed, installed.error().message);
  }
  if (auto dropped = drop_privileges(); !dropped) {
    exec_failed(plan, kExitSetupFailed, dropped.error().message);
  }
  if (auto marked = mark_fds_cloexec(); !marked) {
    exec_failed(plan, kExitSetupFailed, marked.error().message);
  }
  // Our parent may have died while we were parked and we could have been reparented.
  if (::getppid() != plan.parent) ::_exit(kExitSetupFailed);
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);  // pending signals act now, with defaults

  auto [code, message] = exec_command(plan.argv, plan.envp ? plan.envp->data() : environ);
  exec_failed(plan, code, message);
}

std::string resolv_conf_for(NetworkMode mode) {
  if (mode == NetworkMode::kDisabled) {
    return "# netfence: network disabled; nothing answers DNS, so lookups fail at once.\n"
           "nameserver 127.0.0.1\n";
  }
  return std::string(
             "# netfence: DNS is answered by the netfence gateway; all port-53 traffic to any\n"
             "# address is redirected to it.\n"
             "nameserver ") +
         kNameserverV4 + "\noptions edns0\n";
}

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

}  // namespace

// ---- Parent side ----------------------------------------------------------------------------

int exit_code_from_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitSetupFailed;
}

Result<Sandbox> Sandbox::start(const Options& options) {
  auto sandbox = spawn(options);
  if (!sandbox) return sandbox.error();
  if (auto ready = sandbox->await_ready(); !ready) return ready.error();
  return sandbox;
}

Result<Sandbox> Sandbox::spawn(const Options& options) {
  if (options.argv.empty() || options.argv[0].empty()) return fail("no command to run");

  ChildPlan plan;
  plan.mode = options.mode;
  plan.nft_loader = options.nft_loader;
  plan.parent = ::getpid();
  plan.uid = ::geteuid();
  plan.gid = ::getegid();
  plan.stdio = options.stdio;
  for (const std::string& arg : options.argv) plan.argv.push_back(const_cast<char*>(arg.c_str()));
  plan.argv.push_back(nullptr);
  if (options.env) {
    plan.envp.emplace();
    for (const std::string& entry : *options.env)
      plan.envp->push_back(const_cast<char*>(entry.c_str()));
    plan.envp->push_back(nullptr);
  }
  if (options.mode == NetworkMode::kEnabled && options.nft_loader == NftLoader::kNetlink) {
    auto batch =
        nft_ruleset_batch(kTcpPort, kDnsPort, kUdpPort, options.udp_allow_v4, options.udp_allow_v6);
    if (!batch) return batch.error();
    plan.ruleset_batch = std::move(*batch);
  } else if (options.mode == NetworkMode::kEnabled) {
    plan.ruleset =
        nft_ruleset(kTcpPort, kDnsPort, kUdpPort, options.udp_allow_v4, options.udp_allow_v6);
  }
  plan.resolv_conf = resolv_conf_for(options.mode);

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return fail("cannot create the sandbox control channel: " + errno_text(errno));
  }
  UniqueFd parent_end(pair[0]);
  UniqueFd child_end(pair[1]);
  plan.control = child_end.get();
  plan.parent_control = parent_end.get();

  // Orphans of the command are reparented to us rather than to init: we reap them (see
  // reap_orphans) and know, when none are left, that nothing of the sandbox still runs.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    return fail("cannot become the sandbox's subreaper: " + errno_text(errno));
  }
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_t pid = ::fork();
  if (pid == 0) run_child(plan);
  int fork_error = errno;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) return fail("cannot fork the sandbox: " + errno_text(fork_error));
  child_end.reset();

  // pidfd_open fails only on kernels before 5.3; pid-based signalling is the fallback.
  Sandbox sandbox(pid, UniqueFd(pidfd_open(pid)), std::move(parent_end));
  sandbox.setup_timeout_ = options.setup_timeout;
  sandbox.expect_listeners_ = options.mode == NetworkMode::kEnabled;
  return sandbox;
}

Sandbox::Sandbox(pid_t pid, UniqueFd pidfd, UniqueFd control)
    : pid_(pid), pidfd_(std::move(pidfd)), control_(std::move(control)) {}

Sandbox::Sandbox(Sandbox&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      control_(std::move(other.control_)),
      listeners_(std::move(other.listeners_)),
      released_(other.released_),
      ready_(other.ready_),
      setup_timeout_(other.setup_timeout_),
      expect_listeners_(other.expect_listeners_),
      exit_code_(other.exit_code_),
      netns_device_(std::exchange(other.netns_device_, 0)),
      netns_inode_(std::exchange(other.netns_inode_, 0)) {}

Sandbox& Sandbox::operator=(Sandbox&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    control_ = std::move(other.control_);
    listeners_ = std::move(other.listeners_);
    released_ = other.released_;
    ready_ = other.ready_;
    setup_timeout_ = other.setup_timeout_;
    expect_listeners_ = other.expect_listeners_;
    exit_code_ = other.exit_code_;
    netns_device_ = std::exchange(other.netns_device_, 0);
    netns_inode_ = std::exchange(other.netns_inode_, 0);
  }
  return *this;
}

Sandbox::~Sandbox() {
  kill_and_reap();
}

void Sandbox::kill_and_reap() {
  if (pid_ > 0) {
    (void)send_signal(SIGKILL);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  if (netns_inode_ != 0 && reap_orphans() != OrphanState::kNone) kill_and_reap_remaining();
  netns_device_ = 0;
  netns_inode_ = 0;
}

Result<void> Sandbox::await_ready() {
  if (ready_) return fail("the sandbox is already ready");
  if (!control_ || pid_ < 0) return fail("the sandbox is not running");
  pollfd ready{control_.get(), POLLIN, 0};
  int polled;
  do {
    polled = ::poll(&ready, 1, static_cast<int>(setup_timeout_.count()));
  } while (polled < 0 && errno == EINTR);
  if (polled == 0) {
    return fail("sandbox setup timed out after " + std::to_string(setup_timeout_.count()) + " ms");
  }
  if (polled < 0) return fail("cannot wait for the sandbox: " + errno_text(errno));

  auto message = receive_message(control_.get());
  if (!message) return message.error();
  if (message->eof) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return fail("sandbox setup failed: the sandbox process died before it was ready (exit code " +
                std::to_string(exit_code_from_status(status)) + ")");
  }
  if (message->kind == MessageKind::kSetupFailed)
    return fail("sandbox setup failed: " + message->text);
  if (message->kind != MessageKind::kReady) return fail("unexpected message from the sandbox");
  const size_t expected = expect_listeners_ ? kListenerCount : 0;
  if (message->fds.size() != expected) {
    return fail("sandbox setup failed: expected " + std::to_string(expected) + " listeners, got " +
                std::to_string(message->fds.size()));
  }
  if (expect_listeners_) {
    listeners_.tcp_v4 = std::move(message->fds[0]);
    listeners_.tcp_v6 = std::move(message->fds[1]);
    listeners_.dns_udp_v4 = std::move(message->fds[2]);
    listeners_.dns_udp_v6 = std::move(message->fds[3]);
    listeners_.dns_tcp_v4 = std::move(message->fds[4]);
    listeners_.dns_tcp_v6 = std::move(message->fds[5]);
    listeners_.udp_v4 = std::move(message->fds[6]);
    listeners_.udp_v6 = std::move(message->fds[7]);
    listeners_.conntrack = std::move(message->fds[8]);
  }
  struct stat netns;
  std::string path = "/proc/" + std::to_string(pid_) + "/ns/net";
  if (::stat(path.c_str(), &netns) != 0) {
    return fail("cannot identify the sandbox network namespace: " + errno_text(errno));
  }
  netns_device_ = netns.st_dev;
  netns_inode_ = netns.st_ino;
  ready_ = true;
  return {};
}

Result<void> Sandbox::release() {
  if (released_) return fail("the sandbox has already been released");
  if (!control_) return fail("the sandbox is not running");
  if (!ready_) return fail("the sandbox is not ready (await_ready() first)");
  released_ = true;
  MessageHeader go{MessageKind::kGo, 0};
  ssize_t n;
  do {
    n = ::send(control_.get(), &go, sizeof go, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof go)) {
    control_.reset();
    return fail("cannot start the command: the sandbox process is gone");
  }
  auto message = receive_message(control_.get());
  control_.reset();
  if (!message) return message.error();
  if (message->eof) return {};  // the control socket was closed by a successful execve
  if (message->kind == MessageKind::kExecFailed) return fail(message->text);
  return fail("unexpected message from the sandbox");
}

Result<void> Sandbox::send_signal(int signal) {
  if (pid_ <= 0) return fail("the command has already exited");
  int rc =
      pidfd_ ? static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal, nullptr, 0))
             : ::kill(pid_, signal);
  if (rc != 0) return fail("cannot signal the command: " + errno_text(errno));
  return {};
}

void Sandbox::reap_after(int status) {
  exit_code_ = exit_code_from_status(status);
  pid_ = -1;
  pidfd_.reset();
  control_.reset();
  // We are the sandbox's subreaper: every living descendant of the command is our child or a
  // descendant of one. With no children left, nothing of the sandbox can still run and the scan
  // of /proc (a stat and a pidfd per process on the machine) is skipped.
  if (reap_orphans() != OrphanState::kNone) kill_and_reap_remaining();
  // The namespace may be gone once its processes and listener sockets are; its inode number can
  // then be reused by a new namespace, which later scans must not mistake for ours.
  netns_device_ = 0;
  netns_inode_ = 0;
}

Result<int> Sandbox::wait() {
  if (exit_code_) return *exit_code_;
  if (pid_ <= 0) return fail("the sandbox was never started");
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) return fail("cannot wait for the command: " + errno_text(errno));
  }
  reap_after(status);
  return *exit_code_;
}

Result<std::optional<int>> Sandbox::try_wait() {
  if (exit_code_) return std::optional<int>(*exit_code_);
  if (pid_ <= 0) return fail("the sandbox was never started");
  int status = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(pid_, &status, WNOHANG);
  } while (reaped < 0 && errno == EINTR);
  if (reaped < 0) return fail("cannot wait for the command: " + errno_text(errno));
  if (reaped == 0) return std::optional<int>();
  reap_after(status);
  return std::optional<int>(*exit_code_);
}

Sandbox::OrphanState Sandbox::reap_orphans() {
  for (;;) {
    siginfo_t info{};
    // Peek first: the command itself is reaped only by wait()/try_wait(), which report its code.
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      return errno == ECHILD ? OrphanState::kNone : OrphanState::kSome;
    }
    if (info.si_pid == 0) return OrphanState::kSome;  // children, none exited
    if (info.si_pid == pid_) return OrphanState::kSome;
    int status;
    while (::waitpid(info.si_pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void Sandbox::kill_and_reap_remaining() {
  if (kill_remaining() == 0) return;
  // What was killed was (almost always) adopted by us: reap it, briefly, so that no zombie is
  // left for the rest of our life. A process stuck in the kernel is left to init when we exit.
  for (int i = 0; i < 200 && reap_orphans() != OrphanState::kNone; ++i) ::usleep(1000);
}

int Sandbox::kill_remaining() {
  if (netns_inode_ == 0) return 0;
  const pid_t self = ::getpid();
  int signalled = 0;
  // Each pass may find processes forked during the previous one; stop after a pass finds none.
  for (int pass = 0; pass < 16; ++pass) {
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) break;
    int found = 0;
    while (dirent* entry = ::readdir(proc)) {
      char* end = nullptr;
      long pid = std::strtol(entry->d_name, &end, 10);
      if (end == entry->d_name || *end != '\0' || pid <= 0 || pid == self) continue;
      // Pin the process with a pidfd first, then check its namespace, then signal through the
      // pidfd: a pid recycled in between can never be hit.
      UniqueFd pinned(pidfd_open(static_cast<pid_t>(pid)));
      if (!pinned) continue;
      struct stat netns;
      std::string path = "/proc/" + std::string(entry->d_name) + "/ns/net";
      if (::stat(path.c_str(), &netns) != 0) continue;
      if (netns.st_dev != netns_device_ || netns.st_ino != netns_inode_) continue;
      if (::syscall(SYS_pidfd_send_signal, pinned.get(), SIGKILL, nullptr, 0) == 0) ++found;
    }
    ::closedir(proc);
    signalled += found;
    if (found == 0) break;
  }
  return signalled;
}

}  // namespace netfence::sandbox
