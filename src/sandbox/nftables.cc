#include "sandbox/nftables.h"

#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/fd.h"

namespace netfence::sandbox {
namespace {

std::string errno_text(int error) {
  return std::strerror(error);
}

// Drops the trailing newline nft puts on its messages so they fit in one-line errors.
std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

std::string nft_ruleset(uint16_t tcp_port, uint16_t dns_port, uint16_t udp_port,
                        const std::vector<std::string>& udp_allow_v4,
                        const std::vector<std::string>& udp_allow_v6) {
  const std::string tcp = std::to_string(tcp_port);
  const std::string dns = std::to_string(dns_port);
  // Why each line is there (docs/sandbox.md has the measurements):
  // - port 53 comes before the loopback exemption: "all port-53 traffic to any address" includes
  //   127.0.0.53 and friends, so a resolv.conf we could not replace still reaches the gateway;
  // - `oif "lo"` in nat_output: connections to the sandbox's own addresses (127/8, ::1, its veth
  //   addresses) stay inside the sandbox; everything else would leave through netfence0 and is
  //   redirected instead (redirect in output rewrites the destination to 127.0.0.1 / ::1);
  // - nat_prerouting serves traffic routed in from a TAP/veth inside the sandbox (a VM): redirect
  //   there rewrites to the incoming interface's primary address, which the wildcard TCP
  //   listeners accept (UDP DNS needs a listener bound to that address); locally generated
  //   packets looping back through lo were already decided in output;
  // - filter_output has policy drop: loopback, redirected flows and ICMP errors about them pass,
  //   other UDP is rejected so clients fail at once (QUIC falls back to TCP), other TCP is reset,
  //   ICMP and everything else is dropped. Neighbour discovery is let through (hop limit 255:
  //   link-local only) because a VM on a TAP must resolve the sandbox's address; ARP is not in
  //   the inet family and needs nothing;
  // - filter_forward: nothing is ever forwarded between links inside the sandbox. With a VM
  //   attached and forwarding enabled in the namespace, its non-redirected UDP/TCP is rejected
  //   here (a reject in prerouting would need Linux >= 5.9; this keeps the floor at 5.2, the
  //   first kernel with inet-family NAT), and `ct state related` lets the ICMP error out.
  const std::string reject_rest =
      "\t\tmeta l4proto udp reject with icmpx type port-unreachable\n"
      "\t\tmeta l4proto tcp reject with tcp reset\n";
  // UDP the policy may allow (IP/CIDR rules, or everything in full access) goes to the UDP
  // relay listener; sets keep the ruleset one rule long whatever the number of rules.
  std::string sets;
  std::string udp_redirect;
  auto add_set = [&](const char* name, const char* type, const char* match,
                     const std::vector<std::string>& elements) {
    if (elements.empty() || udp_port == 0) return;
    sets += std::string("\tset ") + name + " {\n\t\ttype " + type +
            " . inet_service; flags interval;\n\t\telements = { ";
    for (size_t i = 0; i < elements.size(); ++i) sets += (i ? ", " : "") + elements[i];
    sets += " }\n\t}\n";
    udp_redirect += std::string("\t\t") + match + " . udp dport @" + name + " redirect to :" +
                    std::to_string(udp_port) + "\n";
  };
  add_set("udp_allow_v4", "ipv4_addr", "ip daddr", udp_allow_v4);
  add_set("udp_allow_v6", "ipv6_addr", "ip6 daddr", udp_allow_v6);
  return "table inet netfence {\n" + sets +
         "\tchain nat_output {\n"
         "\t\ttype nat hook output priority -100; policy accept;\n"
         "\t\tmeta l4proto { tcp, udp } th dport 53 redirect to :" +
         dns +
         "\n"
         "\t\toif \"lo\" accept\n"
         "\t\tmeta l4proto tcp redirect to :" +
         tcp + "\n" + udp_redirect +
         "\t}\n"
         "\tchain nat_prerouting {\n"
         "\t\ttype nat hook prerouting priority -100; policy accept;\n"
         "\t\tiif \"lo\" accept\n"
         "\t\tmeta l4proto { tcp, udp } th dport 53 redirect to :" +
         dns +
         "\n"
         "\t\tmeta l4proto tcp redirect to :" +
         tcp + "\n" + udp_redirect +
         "\t}\n"
         "\tchain filter_output {\n"
         "\t\ttype filter hook output priority 0; policy drop;\n"
         "\t\toif \"lo\" accept\n"
         "\t\tct status dnat accept\n"
         "\t\tct state related accept\n"
         "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept\n" +
         reject_rest +
         "\t}\n"
         "\tchain filter_prerouting {\n"
         "\t\ttype filter hook prerouting priority 0; policy drop;\n"
         "\t\tiif \"lo\" accept\n"
         "\t\tct status dnat accept\n"
         "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } "
         "ip6 hoplimit 255 accept\n" +
         reject_rest +
         "\t}\n"
         "\tchain filter_forward {\n"
         "\t\ttype filter hook forward priority 0; policy drop;\n" +
         reject_rest +
         "\t}\n"
         "}\n";
}

Result<void> load_ruleset_with_library(std::string_view ruleset) {
  std::unique_ptr<nft_ctx, decltype(&nft_ctx_free)> context(nft_ctx_new(NFT_CTX_DEFAULT),
                                                            &nft_ctx_free);
  if (!context) return fail("cannot create a libnftables context");
  if (nft_ctx_buffer_output(context.get()) != 0 || nft_ctx_buffer_error(context.get()) != 0) {
    return fail("cannot set up libnftables output buffers");
  }
  // libnftables wants a NUL-terminated buffer.
  std::string text(ruleset);
  if (nft_run_cmd_from_buffer(context.get(), text.c_str()) != 0) {
    const char* error = nft_ctx_get_error_buffer(context.get());
    return fail("cannot load the nftables ruleset: " +
                trim(error != nullptr ? error : "unknown libnftables error"));
  }
  return {};
}

namespace {

const char* find_nft_binary() {
  for (const char* path : {"/usr/sbin/nft", "/sbin/nft", "/usr/local/sbin/nft"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return nullptr;
}

// In the forked nft process: make CAP_NET_ADMIN survive execve when we are not uid 0 in our user
// namespace (a non-root execve clears the permitted set unless the capability is ambient).
void raise_ambient_net_admin() {
  if (::geteuid() == 0) return;
  cap_t caps = cap_get_proc();
  if (caps == nullptr) return;
  cap_value_t net_admin = CAP_NET_ADMIN;
  cap_set_flag(caps, CAP_INHERITABLE, 1, &net_admin, CAP_SET);
  cap_set_proc(caps);
  cap_free(caps);
  cap_set_ambient(CAP_NET_ADMIN, CAP_SET);
}

}  // namespace

Result<void> load_ruleset_with_binary(std::string_view ruleset) {
  const char* nft = find_nft_binary();
  if (nft == nullptr) return fail("cannot load the nftables ruleset: the nft binary was not found");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return fail("cannot create a pipe: " + errno_text(errno));
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) return fail("cannot fork nft: " + errno_text(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::dup2(read_end.get(), STDIN_FILENO) < 0) ::_exit(127);
    raise_ambient_net_admin();
    char arg0[] = "nft";
    char arg1[] = "-f";
    char arg2[] = "-";
    char* argv[] = {arg0, arg1, arg2, nullptr};
    ::execv(nft, argv);
    ::_exit(127);
  }
  read_end.reset();
  const char* data = ruleset.data();
  size_t left = ruleset.size();
  while (left > 0) {
    ssize_t n = ::write(write_end.get(), data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // nft died early; its exit status tells the story
    data += n;
    left -= static_cast<size_t>(n);
  }
  write_end.reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail("cannot wait for nft: " + errno_text(errno));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return fail("cannot load the nftables ruleset: nft failed (status " + std::to_string(status) +
                ")");
  }
  return {};
}

}  // namespace netfence::sandbox
