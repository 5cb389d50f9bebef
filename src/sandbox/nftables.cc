#include "sandbox/nftables.h"

// netinet/in.h before the linux/ headers: it makes linux/libc-compat.h skip their duplicates.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <poll.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

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
    udp_redirect += std::string("\t\t") + match + " . udp dport @" + name +
                    " redirect to :" + std::to_string(udp_port) + "\n";
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

namespace {

// libnftables, opened on first use: the netfence binary does not link it, so that exec does not
// load it and its dependencies (libxtables, libjansson, libgmp) when the netlink loader is used.
struct NftablesApi {
  decltype(&nft_ctx_new) ctx_new = nullptr;
  decltype(&nft_ctx_free) ctx_free = nullptr;
  decltype(&nft_ctx_buffer_output) buffer_output = nullptr;
  decltype(&nft_ctx_buffer_error) buffer_error = nullptr;
  decltype(&nft_ctx_get_error_buffer) get_error_buffer = nullptr;
  decltype(&nft_run_cmd_from_buffer) run_cmd_from_buffer = nullptr;
  std::string error;  // why it could not be loaded; empty when loaded
};

template <class F>
bool resolve(void* library, const char* name, F& function) {
  function = reinterpret_cast<F>(::dlsym(library, name));
  return function != nullptr;
}

const NftablesApi& nftables_api() {
  static const NftablesApi api = [] {
    NftablesApi a;
    void* library = ::dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      const char* why = ::dlerror();
      a.error = std::string("cannot load libnftables: ") + (why != nullptr ? why : "dlopen failed");
      return a;
    }
    if (!resolve(library, "nft_ctx_new", a.ctx_new) ||
        !resolve(library, "nft_ctx_free", a.ctx_free) ||
        !resolve(library, "nft_ctx_buffer_output", a.buffer_output) ||
        !resolve(library, "nft_ctx_buffer_error", a.buffer_error) ||
        !resolve(library, "nft_ctx_get_error_buffer", a.get_error_buffer) ||
        !resolve(library, "nft_run_cmd_from_buffer", a.run_cmd_from_buffer)) {
      a.error = "cannot load libnftables: a function is missing from libnftables.so.1";
    }
    return a;  // the library stays loaded for the life of the process
  }();
  return api;
}

}  // namespace

Result<void> load_ruleset_with_library(std::string_view ruleset) {
  const NftablesApi& api = nftables_api();
  if (!api.error.empty()) return fail(api.error);
  std::unique_ptr<nft_ctx, decltype(api.ctx_free)> context(api.ctx_new(NFT_CTX_DEFAULT),
                                                           api.ctx_free);
  if (!context) return fail("cannot create a libnftables context");
  if (api.buffer_output(context.get()) != 0 || api.buffer_error(context.get()) != 0) {
    return fail("cannot set up libnftables output buffers");
  }
  // libnftables wants a NUL-terminated buffer.
  std::string text(ruleset);
  if (api.run_cmd_from_buffer(context.get(), text.c_str()) != 0) {
    const char* error = api.get_error_buffer(context.get());
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

// ---- The netlink loader -------------------------------------------------------------------
//
// Every message below mirrors what nft 1.0.6 sends for the corresponding line of nft_ruleset()
// (`nft --debug=netlink,mnl -f`, see docs/sandbox.md); comments show that line. The oracle test
// (tests/unit/sandbox/nftables_test.cc) loads both in fresh network namespaces and compares
// `nft list ruleset` and the kernel's bytecode as `nft --debug=netlink list ruleset` shows it.

namespace {

constexpr char kTable[] = "netfence";
// `oif "lo"` / `iif "lo"`: nft resolves the name when it parses the ruleset, in the namespace it
// loads it into. The loopback device is ifindex 1 in every network namespace (the kernel's
// LOOPBACK_IFINDEX), so the batch can be built before the namespace exists.
constexpr uint32_t kLoopbackIfindex = 1;
// Large element lists are split over several NEWSETELEM messages of at most this many elements
// (an IPv6 element takes 60 bytes, so a message stays well below the 64 KiB an attribute holds).
constexpr size_t kElementsPerMessage = 512;
// Room reserved for one message before libnftnl writes it (it does not check for space).
constexpr size_t kMessageRoom = 4096;
constexpr size_t kElementMessageRoom = kElementsPerMessage * 96 + kMessageRoom;

// nft's data types (nftables' include/datatype.h), for set keys and the user data nft attaches to
// sets so that `nft list` prints them as it declared them.
constexpr uint32_t kTypeIpv4Addr = 7;
constexpr uint32_t kTypeIpv6Addr = 8;
constexpr uint32_t kTypeInetProtocol = 12;
constexpr uint32_t kTypeInetService = 13;
constexpr uint32_t kTypeIcmp6Type = 29;
constexpr uint32_t kTypeBits = 6;  // a concatenation's type: the members' types, 6 bits each
// nft's expression kinds (enum expr_types), byte orders (enum byteorder) and the protocol
// descriptor numbers it records in a set's "typeof" user data.
constexpr uint32_t kExprPayload = 7;
constexpr uint32_t kExprMeta = 9;
constexpr uint32_t kExprConcat = 13;
constexpr uint32_t kByteorderInvalid = 0;
constexpr uint32_t kByteorderHost = 1;
constexpr uint32_t kByteorderBig = 2;
constexpr uint32_t kProtoDescIcmp6 = 14;  // PROTO_DESC_ICMPV6
constexpr uint32_t kIcmp6HdrType = 1;     // ICMP6HDR_TYPE
// Inside NFTNL_UDATA_SET_TYPEOF_DATA: meta's key, payload's protocol and field.
constexpr uint8_t kUdataMetaKey = 0;
constexpr uint8_t kUdataPayloadDesc = 0;
constexpr uint8_t kUdataPayloadType = 1;

constexpr uint8_t kIcmp6NeighborSolicit = 135;
constexpr uint8_t kIcmp6NeighborAdvert = 136;
constexpr uint8_t kIcmp6RouterSolicit = 133;

// libnftnl's allocators return nullptr only when out of memory, which is fatal here as anywhere.
template <class T>
T* must(T* allocated) {
  if (allocated == nullptr) std::abort();
  return allocated;
}

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using RulePtr = std::unique_ptr<nftnl_rule, Deleter<nftnl_rule_free>>;
using SetPtr = std::unique_ptr<nftnl_set, Deleter<nftnl_set_free>>;
using ChainPtr = std::unique_ptr<nftnl_chain, Deleter<nftnl_chain_free>>;
using TablePtr = std::unique_ptr<nftnl_table, Deleter<nftnl_table_free>>;
using UdataPtr = std::unique_ptr<nftnl_udata_buf, Deleter<nftnl_udata_buf_free>>;

// One concatenation key (address . port) and the end of its interval, as nft lays them out: each
// member padded to 4 bytes, network byte order.
struct Element {
  std::string text;
  std::array<uint8_t, 20> key{};
  std::array<uint8_t, 20> key_end{};
};

bool parse_number(std::string_view text, uint32_t max, uint32_t& value) {
  if (text.empty() || text.size() > 5) return false;
  value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  return value <= max;
}

// "ADDR[/LEN] . PORT[-PORT]" as nft reads it for `ipv4_addr . inet_service` (or ipv6_addr), with
// the address's host bits cleared as nft does; only numeric forms.
Result<Element> parse_element(const std::string& text, int family) {
  const size_t address_len = family == AF_INET ? 4 : 16;
  auto bad = [&](const char* why) {
    return fail("invalid UDP allow element \"" + text + "\" (expected " +
                (family == AF_INET ? "IPV4" : "IPV6") + "[/LEN] . PORT[-PORT]): " + why);
  };
  const size_t dot = text.find(" . ");
  if (dot == std::string::npos) return bad("no \" . \" between address and port");
  std::string address(text.substr(0, dot));
  std::string_view ports = std::string_view(text).substr(dot + 3);
  uint32_t prefix = static_cast<uint32_t>(address_len * 8);
  if (size_t slash = address.find('/'); slash != std::string::npos) {
    if (!parse_number(std::string_view(address).substr(slash + 1), prefix, prefix)) {
      return bad("bad prefix length");
    }
    address.resize(slash);
  }
  Element element;
  element.text = text;
  if (::inet_pton(family, address.c_str(), element.key.data()) != 1) return bad("bad address");
  for (size_t i = 0; i < address_len; ++i) {
    const uint32_t bits = std::min<uint32_t>(8, prefix > i * 8 ? prefix - i * 8 : 0);
    const auto mask = static_cast<uint8_t>(0xff00 >> bits);
    element.key[i] &= mask;
    element.key_end[i] = element.key[i] | static_cast<uint8_t>(~mask);
  }
  uint32_t first = 0;
  uint32_t last = 0;
  const size_t dash = ports.find('-');
  if (!parse_number(ports.substr(0, dash), 65535, first) ||
      !parse_number(dash == std::string_view::npos ? ports.substr(0, dash) : ports.substr(dash + 1),
                    65535, last)) {
    return bad("bad port");
  }
  if (first > last) return bad("the port range is empty");
  element.key[address_len] = static_cast<uint8_t>(first >> 8);
  element.key[address_len + 1] = static_cast<uint8_t>(first);
  element.key_end[address_len] = static_cast<uint8_t>(last >> 8);
  element.key_end[address_len + 1] = static_cast<uint8_t>(last);
  return element;
}

// Writes the batch: each message is built by libnftnl into a reserved region of `bytes`.
class BatchWriter {
 public:
  explicit BatchWriter(uint32_t first_seq) {
    batch_.first_seq = first_seq;
    reserve(kMessageRoom);
    used_ += nftnl_batch_begin(batch_.bytes.data() + used_, first_seq)->nlmsg_len;
  }

  // Appends one nf_tables message of `type` for the inet family; `build` fills its payload.
  template <class Build>
  void add(uint16_t type, uint16_t flags, std::string what, Build&& build,
           std::vector<std::string> elements = {}, size_t room = kMessageRoom) {
    reserve(room);
    const uint32_t seq = batch_.first_seq + 1 + static_cast<uint32_t>(batch_.messages.size());
    nlmsghdr* header = nftnl_nlmsg_build_hdr(batch_.bytes.data() + used_, type, NFPROTO_INET,
                                             flags | NLM_F_ACK, seq);
    build(header);
    batch_.messages.push_back({used_, std::move(what), std::move(elements)});
    used_ += NLMSG_ALIGN(header->nlmsg_len);
  }

  NftBatch finish() && {
    reserve(kMessageRoom);
    const uint32_t seq = batch_.first_seq + 1 + static_cast<uint32_t>(batch_.messages.size());
    used_ += nftnl_batch_end(batch_.bytes.data() + used_, seq)->nlmsg_len;
    batch_.bytes.resize(used_);
    return std::move(batch_);
  }

 private:
  void reserve(size_t room) {
    if (batch_.bytes.size() < used_ + room) {
      batch_.bytes.resize(std::max(batch_.bytes.size() * 2, used_ + room));
    }
  }

  NftBatch batch_;
  size_t used_ = 0;
};

// A rule's expressions, in the vocabulary `nft --debug=netlink` prints.
class RuleBuilder {
 public:
  RuleBuilder(const char* chain, std::string text)
      : rule_(must(nftnl_rule_alloc())), text_(std::move(text)) {
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_TABLE, kTable);
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(rule_.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
  }

  // [ meta load KEY => reg DREG ]
  RuleBuilder& meta(uint32_t key, uint32_t dreg = NFT_REG_1) {
    nftnl_expr* e = expr("meta");
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
    return *this;
  }
  // [ cmp OP reg 1 DATA ]
  RuleBuilder& cmp(uint32_t op, const void* data, uint32_t len) {
    nftnl_expr* e = expr("cmp");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    return *this;
  }
  RuleBuilder& cmp_eq_u8(uint8_t value) { return cmp(NFT_CMP_EQ, &value, 1); }
  RuleBuilder& cmp_eq_be16(uint16_t value) {
    const uint16_t be = htons(value);
    return cmp(NFT_CMP_EQ, &be, 2);
  }
  // [ payload load LENb @ BASE header + OFFSET => reg DREG ]
  RuleBuilder& payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg = NFT_REG_1) {
    nftnl_expr* e = expr("payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    return *this;
  }
  // `ct KEY BIT`: [ ct load KEY => reg 1 ] [ bitwise reg 1 = ( reg 1 & BIT ) ^ 0 ]
  // [ cmp neq reg 1 0 ] (ct state and ct status are host-endian 32-bit values)
  RuleBuilder& ct_has(uint32_t key, uint32_t bit) {
    nftnl_expr* e = expr("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    const uint32_t zero = 0;
    e = expr("bitwise");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof bit);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &bit, sizeof bit);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof zero);
    return cmp(NFT_CMP_NEQ, &zero, sizeof zero);
  }
  // [ lookup reg 1 set NAME ] (the set is referred to by name and by its id in this batch)
  RuleBuilder& lookup(const char* set, uint32_t set_id) {
    nftnl_expr* e = expr("lookup");
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    return *this;
  }
  // [ immediate reg 0 accept ]
  RuleBuilder& accept() {
    nftnl_expr* e = expr("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_ACCEPT);
    return *this;
  }
  // `redirect to :PORT`: [ immediate reg 1 PORT ] [ redir proto_min reg 1 flags 0x2 ]
  RuleBuilder& redirect(uint16_t port) {
    const uint16_t be = htons(port);
    nftnl_expr* e = expr("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
    nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &be, sizeof be);
    e = expr("redir");
    nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
    return *this;
  }
  // [ reject type TYPE code CODE ]
  RuleBuilder& reject(uint32_t type, uint8_t code) {
    nftnl_expr* e = expr("reject");
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, type);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, code);
    return *this;
  }

  // `meta l4proto P`: [ meta load l4proto => reg 1 ] [ cmp eq reg 1 P ]
  RuleBuilder& l4proto(uint8_t protocol) { return meta(NFT_META_L4PROTO).cmp_eq_u8(protocol); }
  // The dependency nft adds in an inet table before matching an IPv4/IPv6 header field:
  // [ meta load nfproto => reg 1 ] [ cmp eq reg 1 FAMILY ]
  RuleBuilder& nfproto(uint8_t family) { return meta(NFT_META_NFPROTO).cmp_eq_u8(family); }
  // `oif "lo"` / `iif "lo"`: [ meta load oif => reg 1 ] [ cmp eq reg 1 0x00000001 ]
  RuleBuilder& interface_is_lo(uint32_t key) {
    return meta(key).cmp(NFT_CMP_EQ, &kLoopbackIfindex, sizeof kLoopbackIfindex);
  }

  void add_to(BatchWriter& writer) {
    writer.add(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
               "add rule inet " + std::string(kTable) + " " +
                   nftnl_rule_get_str(rule_.get(), NFTNL_RULE_CHAIN) + " " + text_,
               [&](nlmsghdr* header) { nftnl_rule_nlmsg_build_payload(header, rule_.get()); });
  }

 private:
  nftnl_expr* expr(const char* name) {
    nftnl_expr* e = must(nftnl_expr_alloc(name));  // (nullptr also for an unknown name)
    nftnl_rule_add_expr(rule_.get(), e);
    return e;
  }

  RulePtr rule_;
  std::string text_;
};

void add_chain(BatchWriter& writer, const char* name, const char* type, uint32_t hook,
               int32_t priority, uint32_t policy, const char* hook_text) {
  ChainPtr chain(must(nftnl_chain_alloc()));
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, kTable);
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, name);
  writer.add(NFT_MSG_NEWCHAIN, NLM_F_CREATE,
             std::string("add chain inet ") + kTable + " " + name + " { type " + type + " hook " +
                 hook_text + " priority " + std::to_string(priority) + "; policy " +
                 (policy == NF_ACCEPT ? "accept" : "drop") + "; }",
             [&](nlmsghdr* header) {
               nftnl_chain_nlmsg_build_payload(header, chain.get());
               // The base chain's attributes in the order nft puts them (libnftnl's differs).
               mnl_attr_put_strz(header, NFTA_CHAIN_TYPE, type);
               mnl_attr_put_u32(header, NFTA_CHAIN_POLICY, htonl(policy));
               nlattr* nest = mnl_attr_nest_start(header, NFTA_CHAIN_HOOK);
               mnl_attr_put_u32(header, NFTA_HOOK_HOOKNUM, htonl(hook));
               mnl_attr_put_u32(header, NFTA_HOOK_PRIORITY, htonl(static_cast<uint32_t>(priority)));
               mnl_attr_nest_end(header, nest);
             });
}

SetPtr new_set(const char* name, uint32_t id, bool with_table = true) {
  SetPtr set(must(nftnl_set_alloc()));
  if (with_table) nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTable);
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, name);
  nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
  nftnl_set_set_u32(set.get(), NFTNL_SET_ID, id);
  return set;
}

void add_set(BatchWriter& writer, nftnl_set* set, std::string what) {
  writer.add(NFT_MSG_NEWSET, NLM_F_CREATE, std::move(what),
             [&](nlmsghdr* header) { nftnl_set_nlmsg_build_payload(header, set); });
}

// NEWSETELEM messages for `elements` (key bytes of `key_len`, and key_end unless 0), at most
// kElementsPerMessage each.
void add_elements(BatchWriter& writer, const char* set_name, uint32_t set_id,
                  const std::vector<Element>& elements, uint32_t key_len, bool intervals,
                  const std::string& what) {
  for (size_t start = 0; start < elements.size(); start += kElementsPerMessage) {
    const size_t end = std::min(elements.size(), start + kElementsPerMessage);
    SetPtr chunk = new_set(set_name, set_id, /*with_table=*/false);
    std::vector<std::string> texts;
    for (size_t i = start; i < end; ++i) {
      nftnl_set_elem* e = must(nftnl_set_elem_alloc());
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, elements[i].key.data(), key_len);
      if (intervals)
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY_END, elements[i].key_end.data(), key_len);
      nftnl_set_elem_add(chunk.get(), e);
      texts.push_back(elements[i].text);
    }
    writer.add(
        NFT_MSG_NEWSETELEM, NLM_F_CREATE, what,
        [&](nlmsghdr* header) {
          mnl_attr_put_strz(header, NFTA_SET_ELEM_LIST_TABLE, kTable);  // first, as nft does
          nftnl_set_elems_nlmsg_build_payload(header, chunk.get());
        },
        std::move(texts), kElementMessageRoom);
  }
}

// The user data nft attaches to a set: the key's byte order and its "typeof" description.
void set_userdata(nftnl_set* set, uint32_t byteorder, uint32_t expr_type,
                  const std::vector<std::pair<uint8_t, uint32_t>>& typeof_data) {
  UdataPtr buf(must(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN)));
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_KEYBYTEORDER, byteorder);
  nftnl_udata* key_typeof = nftnl_udata_nest_start(buf.get(), NFTNL_UDATA_SET_KEY_TYPEOF);
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_TYPEOF_EXPR, expr_type);
  nftnl_udata* data = nftnl_udata_nest_start(buf.get(), NFTNL_UDATA_SET_TYPEOF_DATA);
  for (const auto& [type, value] : typeof_data) nftnl_udata_put_u32(buf.get(), type, value);
  nftnl_udata_nest_end(buf.get(), data);
  nftnl_udata_nest_end(buf.get(), key_typeof);
  nftnl_set_set_data(set, NFTNL_SET_USERDATA, nftnl_udata_buf_data(buf.get()),
                     nftnl_udata_buf_len(buf.get()));
}

// An anonymous constant set of one-byte keys, as nft creates for `{ a, b }` in a rule; the
// kernel names it (__set0, ...) and frees it with the rule.
void add_anonymous_set(BatchWriter& writer, uint32_t id, uint32_t key_type, uint32_t byteorder,
                       uint32_t expr_type,
                       const std::vector<std::pair<uint8_t, uint32_t>>& typeof_data,
                       const std::vector<uint8_t>& keys, const std::string& text) {
  constexpr char kName[] = "__set%d";
  SetPtr set = new_set(kName, id);
  nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, key_type);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, 1);
  nftnl_set_set_u32(set.get(), NFTNL_SET_DESC_SIZE, static_cast<uint32_t>(keys.size()));
  set_userdata(set.get(), byteorder, expr_type, typeof_data);
  add_set(writer, set.get(), "add the anonymous set " + text);
  std::vector<Element> elements;
  for (uint8_t key : keys) {
    Element element;
    element.text = std::to_string(key);
    element.key[0] = key;
    elements.push_back(element);
  }
  add_elements(writer, kName, id, elements, 1, /*intervals=*/false,
               "add elements to the anonymous set " + text);
}

}  // namespace

Result<NftBatch> nft_ruleset_batch(uint16_t tcp_port, uint16_t dns_port, uint16_t udp_port,
                                   const std::vector<std::string>& udp_allow_v4,
                                   const std::vector<std::string>& udp_allow_v6) {
  std::vector<Element> v4;
  std::vector<Element> v6;
  if (udp_port != 0) {
    for (const std::string& text : udp_allow_v4) {
      auto element = parse_element(text, AF_INET);
      if (!element) return element.error();
      v4.push_back(std::move(*element));
    }
    for (const std::string& text : udp_allow_v6) {
      auto element = parse_element(text, AF_INET6);
      if (!element) return element.error();
      v6.push_back(std::move(*element));
    }
  }

  BatchWriter writer(1);
  TablePtr table(must(nftnl_table_alloc()));
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, kTable);
  nftnl_table_set_u32(table.get(), NFTNL_TABLE_FLAGS, 0);
  writer.add(NFT_MSG_NEWTABLE, NLM_F_CREATE, std::string("add table inet ") + kTable,
             [&](nlmsghdr* header) { nftnl_table_nlmsg_build_payload(header, table.get()); });

  add_chain(writer, "nat_output", "nat", NF_INET_LOCAL_OUT, -100, NF_ACCEPT, "output");
  add_chain(writer, "nat_prerouting", "nat", NF_INET_PRE_ROUTING, -100, NF_ACCEPT, "prerouting");
  add_chain(writer, "filter_output", "filter", NF_INET_LOCAL_OUT, 0, NF_DROP, "output");
  add_chain(writer, "filter_prerouting", "filter", NF_INET_PRE_ROUTING, 0, NF_DROP, "prerouting");
  add_chain(writer, "filter_forward", "filter", NF_INET_FORWARD, 0, NF_DROP, "forward");

  uint32_t next_set_id = 1;
  // set udp_allow_v4 { type ipv4_addr . inet_service; flags interval; elements = { ... } }
  struct NamedSet {
    const char* name;
    const std::vector<Element>& elements;
    uint32_t address_type;
    uint32_t address_len;
    uint32_t id = 0;
  };
  NamedSet named[] = {{"udp_allow_v4", v4, kTypeIpv4Addr, 4},
                      {"udp_allow_v6", v6, kTypeIpv6Addr, 16}};
  for (NamedSet& s : named) {
    if (s.elements.empty()) continue;
    s.id = next_set_id++;
    SetPtr set = new_set(s.name, s.id);
    nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, NFT_SET_INTERVAL | NFT_SET_CONCAT);
    nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE,
                      s.address_type << kTypeBits | kTypeInetService);
    const uint32_t key_len = s.address_len + 4;  // the port is padded to 4 bytes
    nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, key_len);
    const uint8_t field_len[] = {static_cast<uint8_t>(s.address_len), 2};
    nftnl_set_set_data(set.get(), NFTNL_SET_DESC_CONCAT, field_len, sizeof field_len);
    set_userdata(set.get(), kByteorderInvalid, kExprConcat, {});
    const std::string type = s.address_len == 4 ? "ipv4_addr" : "ipv6_addr";
    add_set(writer, set.get(),
            std::string("add set inet ") + kTable + " " + s.name + " { type " + type +
                " . inet_service; flags interval; }");
    add_elements(writer, s.name, s.id, s.elements, key_len, /*intervals=*/true,
                 std::string("add element inet ") + kTable + " " + s.name);
  }

  const std::string dns = std::to_string(dns_port);
  const std::string tcp = std::to_string(tcp_port);
  const std::string udp = std::to_string(udp_port);
  // meta l4proto { tcp, udp } th dport 53 redirect to :DNS
  auto dns_redirect = [&](const char* chain) {
    const uint32_t id = next_set_id++;
    add_anonymous_set(writer, id, kTypeInetProtocol, kByteorderHost, kExprMeta,
                      {{kUdataMetaKey, NFT_META_L4PROTO}}, {IPPROTO_TCP, IPPROTO_UDP},
                      "{ tcp, udp }");
    RuleBuilder(chain, "meta l4proto { tcp, udp } th dport 53 redirect to :" + dns)
        .meta(NFT_META_L4PROTO)
        .lookup("__set%d", id)
        .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
        .cmp_eq_be16(53)
        .redirect(dns_port)
        .add_to(writer);
  };
  // meta l4proto tcp redirect to :TCP
  auto tcp_redirect = [&](const char* chain) {
    RuleBuilder(chain, "meta l4proto tcp redirect to :" + tcp)
        .l4proto(IPPROTO_TCP)
        .redirect(tcp_port)
        .add_to(writer);
  };
  // ip daddr . udp dport @udp_allow_v4 redirect to :UDP (ip6 daddr for udp_allow_v6). The
  // address goes into register 1 and the port right after it: reg32 1 for IPv4, reg 2 for IPv6.
  auto udp_redirects = [&](const char* chain) {
    for (const NamedSet& s : named) {
      if (s.id == 0) continue;
      const bool is_v4 = s.address_len == 4;
      RuleBuilder(chain, std::string(is_v4 ? "ip" : "ip6") + " daddr . udp dport @" + s.name +
                             " redirect to :" + udp)
          .nfproto(is_v4 ? NFPROTO_IPV4 : NFPROTO_IPV6)
          .l4proto(IPPROTO_UDP)
          .payload(NFT_PAYLOAD_NETWORK_HEADER, is_v4 ? 16 : 24, s.address_len)
          .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, is_v4 ? NFT_REG32_01 : NFT_REG_2)
          .lookup(s.name, s.id)
          .redirect(udp_port)
          .add_to(writer);
    }
  };
  // ct status dnat accept / ct state related accept
  auto ct_status_dnat = [&](const char* chain) {
    RuleBuilder(chain, "ct status dnat accept")
        .ct_has(NFT_CT_STATUS, IPS_DST_NAT)
        .accept()
        .add_to(writer);
  };
  // icmpv6 type { ... } ip6 hoplimit 255 accept
  auto neighbour_discovery = [&](const char* chain, const std::vector<uint8_t>& types,
                                 const std::string& names) {
    const uint32_t id = next_set_id++;
    add_anonymous_set(writer, id, kTypeIcmp6Type, kByteorderBig, kExprPayload,
                      {{kUdataPayloadDesc, kProtoDescIcmp6}, {kUdataPayloadType, kIcmp6HdrType}},
                      types, names);
    RuleBuilder(chain, "icmpv6 type " + names + " ip6 hoplimit 255 accept")
        .nfproto(NFPROTO_IPV6)
        .l4proto(IPPROTO_ICMPV6)
        .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1)
        .lookup("__set%d", id)
        .payload(NFT_PAYLOAD_NETWORK_HEADER, 7, 1)
        .cmp_eq_u8(255)
        .accept()
        .add_to(writer);
  };
  // meta l4proto udp reject with icmpx type port-unreachable
  // meta l4proto tcp reject with tcp reset
  auto reject_rest = [&](const char* chain) {
    RuleBuilder(chain, "meta l4proto udp reject with icmpx type port-unreachable")
        .l4proto(IPPROTO_UDP)
        .reject(NFT_REJECT_ICMPX_UNREACH, NFT_REJECT_ICMPX_PORT_UNREACH)
        .add_to(writer);
    RuleBuilder(chain, "meta l4proto tcp reject with tcp reset")
        .l4proto(IPPROTO_TCP)
        .reject(NFT_REJECT_TCP_RST, 0)
        .add_to(writer);
  };
  auto lo_accept = [&](const char* chain, uint32_t key) {
    RuleBuilder(chain, std::string(key == NFT_META_OIF ? "oif" : "iif") + " \"lo\" accept")
        .interface_is_lo(key)
        .accept()
        .add_to(writer);
  };

  dns_redirect("nat_output");
  lo_accept("nat_output", NFT_META_OIF);
  tcp_redirect("nat_output");
  udp_redirects("nat_output");

  lo_accept("nat_prerouting", NFT_META_IIF);
  dns_redirect("nat_prerouting");
  tcp_redirect("nat_prerouting");
  udp_redirects("nat_prerouting");

  lo_accept("filter_output", NFT_META_OIF);
  ct_status_dnat("filter_output");
  RuleBuilder("filter_output", "ct state related accept")
      .ct_has(NFT_CT_STATE, NF_CT_STATE_BIT(IP_CT_RELATED))
      .accept()
      .add_to(writer);
  neighbour_discovery("filter_output", {kIcmp6NeighborSolicit, kIcmp6NeighborAdvert},
                      "{ nd-neighbor-solicit, nd-neighbor-advert }");
  reject_rest("filter_output");

  lo_accept("filter_prerouting", NFT_META_IIF);
  ct_status_dnat("filter_prerouting");
  neighbour_discovery("filter_prerouting",
                      {kIcmp6NeighborSolicit, kIcmp6NeighborAdvert, kIcmp6RouterSolicit},
                      "{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }");
  reject_rest("filter_prerouting");

  reject_rest("filter_forward");
  return std::move(writer).finish();
}

namespace {

struct Ack {
  int error = 0;
  std::string message;  // NLMSGERR_ATTR_MSG
  uint32_t offset = 0;  // NLMSGERR_ATTR_OFFS: of the offending attribute in the message, or 0
};

Ack parse_ack(const nlmsghdr* header) {
  Ack ack;
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(header));
  if (header->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
    ack.error = -EBADMSG;
    return ack;
  }
  ack.error = err->error;
  if ((header->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return ack;
  // The TLVs follow the echoed request, of which only the header is there when capped.
  size_t tlv_offset = sizeof(nlmsgerr);
  if ((header->nlmsg_flags & NLM_F_CAPPED) == 0)
    tlv_offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
  if (tlv_offset > mnl_nlmsg_get_payload_len(header)) return ack;
  mnl_attr_parse(
      header, static_cast<unsigned>(tlv_offset),
      [](const nlattr* attr, void* data) {
        Ack& a = *static_cast<Ack*>(data);
        if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
            mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
          a.message = mnl_attr_get_str(attr);
        } else if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_OFFS &&
                   mnl_attr_validate(attr, MNL_TYPE_U32) == 0) {
          a.offset = mnl_attr_get_u32(attr);
        }
        return MNL_CB_OK;
      },
      &ack);
  return ack;
}

// The element of a NEWSETELEM message that `offset` (from its nlmsghdr) falls in, if any.
const std::string* element_at(const NftBatch& batch, const NftBatch::Message& message,
                              uint32_t offset) {
  if (message.elements.empty() || offset == 0) return nullptr;
  const auto* header = reinterpret_cast<const nlmsghdr*>(batch.bytes.data() + message.offset);
  const char* end = reinterpret_cast<const char*>(header) + header->nlmsg_len;
  const auto* attr =
      static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(header, sizeof(nfgenmsg)));
  for (; mnl_attr_ok(attr, static_cast<int>(end - reinterpret_cast<const char*>(attr)));
       attr = mnl_attr_next(attr)) {
    if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
    const char* list_end = reinterpret_cast<const char*>(attr) + attr->nla_len;
    const auto* element = static_cast<const nlattr*>(mnl_attr_get_payload(attr));
    for (size_t index = 0;
         mnl_attr_ok(element, static_cast<int>(list_end - reinterpret_cast<const char*>(element)));
         element = mnl_attr_next(element), ++index) {
      const size_t begin =
          reinterpret_cast<const char*>(element) - reinterpret_cast<const char*>(header);
      if (offset >= begin && offset < begin + element->nla_len) {
        return index < message.elements.size() ? &message.elements[index] : nullptr;
      }
    }
  }
  return nullptr;
}

std::string describe_failure(const NftBatch& batch, uint32_t seq, const Ack& ack) {
  std::string text = "cannot load the nftables ruleset: ";
  if (seq > batch.first_seq && seq - batch.first_seq - 1 < batch.messages.size()) {
    const NftBatch::Message& message = batch.messages[seq - batch.first_seq - 1];
    if (const std::string* element = element_at(batch, message, ack.offset)) {
      text += "element \"" + *element + "\" of \"" + message.what + "\"";
    } else {
      text += "\"" + message.what + "\"";
    }
  } else {
    text += "the transaction";
  }
  text += " failed: " + errno_text(-ack.error);
  if (!ack.message.empty()) text += " (" + ack.message + ")";
  return text;
}

void set_buffer(int fd, int option, int force_option, size_t needed) {
  int current = 0;
  socklen_t len = sizeof current;
  if (::getsockopt(fd, SOL_SOCKET, option, &current, &len) == 0 &&
      static_cast<size_t>(current) >= needed) {
    return;
  }
  const int size = static_cast<int>(std::min<size_t>(needed, INT32_MAX / 2));
  if (::setsockopt(fd, SOL_SOCKET, force_option, &size, sizeof size) != 0) {
    ::setsockopt(fd, SOL_SOCKET, option, &size, sizeof size);  // capped at net.core.*mem_max
  }
}

}  // namespace

Result<void> load_ruleset_batch(const NftBatch& batch) {
  // An empty batch would "succeed" without loading anything.
  if (batch.messages.empty() || batch.bytes.empty()) {
    return fail("cannot load the nftables ruleset: the netlink batch is empty");
  }
  std::unique_ptr<mnl_socket, Deleter<mnl_socket_close>> socket(
      mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
  if (!socket) return fail("cannot open a netfilter netlink socket: " + errno_text(errno));
  const int fd = mnl_socket_get_fd(socket.get());
  // Acks carry only the failing message's header, plus the kernel's explanation if it has one.
  int one = 1;
  ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  ::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  // The defaults (208 KiB) hold a ruleset with a few thousand elements and ~200 acks; past that,
  // grow the buffers as nft does (beyond net.core.wmem_max only with CAP_NET_ADMIN in the initial
  // namespace; sendmsg then fails with EMSGSIZE, reported below).
  constexpr size_t kDefaultBuffer = 200 * 1024;
  if (batch.bytes.size() > kDefaultBuffer) {
    set_buffer(fd, SO_SNDBUF, SO_SNDBUFFORCE, batch.bytes.size() + 4096);
  }
  if (batch.messages.size() > 150) {
    set_buffer(fd, SO_RCVBUF, SO_RCVBUFFORCE, batch.messages.size() * 1024);
  }

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = ::sendto(fd, batch.bytes.data(), batch.bytes.size(), 0,
                    reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    return fail("cannot load the nftables ruleset: sending it (" +
                std::to_string(batch.bytes.size()) + " bytes) failed: " + errno_text(errno));
  }
  if (static_cast<size_t>(sent) != batch.bytes.size()) {
    return fail("cannot load the nftables ruleset: the kernel took only part of it");
  }

  std::vector<bool> acked(batch.messages.size(), false);
  size_t pending = batch.messages.size();
  std::optional<std::string> failure;
  alignas(nlmsghdr) char buffer[8192];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS)
        return fail(
            "cannot load the nftables ruleset: acknowledgements were lost (receive buffer full)");
      if (errno != EAGAIN)
        return fail("cannot read the kernel's acknowledgements: " + errno_text(errno));
      if (failure) return fail(*failure);
      if (pending == 0) return {};
      // Not expected (the kernel answers inside sendmsg), but never wait unboundedly.
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) {
        return fail("cannot load the nftables ruleset: the kernel did not acknowledge " +
                    std::to_string(pending) + " of " + std::to_string(batch.messages.size()) +
                    " messages");
      }
      continue;
    }
    int left = static_cast<int>(n);
    for (const auto* header = reinterpret_cast<const nlmsghdr*>(buffer); mnl_nlmsg_ok(header, left);
         header = mnl_nlmsg_next(header, &left)) {
      if (header->nlmsg_type != NLMSG_ERROR) continue;
      const Ack ack = parse_ack(header);
      const uint32_t seq = header->nlmsg_seq;
      if (ack.error != 0) {
        if (!failure) failure = describe_failure(batch, seq, ack);
      } else if (seq > batch.first_seq && seq - batch.first_seq - 1 < acked.size() &&
                 !acked[seq - batch.first_seq - 1]) {
        acked[seq - batch.first_seq - 1] = true;
        --pending;
      }
    }
  }
}

}  // namespace netfence::sandbox
