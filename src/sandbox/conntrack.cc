#include "sandbox/conntrack.h"

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace netfence::sandbox {

namespace {

// A netlink message under construction: attributes appended, nests closed by patching lengths.
class Message {
 public:
  size_t begin_nest(uint16_t type) {
    size_t at = bytes_.size();
    put_attr_header(type | NLA_F_NESTED, 0);
    return at;
  }
  void end_nest(size_t at) {
    uint16_t length = static_cast<uint16_t>(bytes_.size() - at);
    std::memcpy(bytes_.data() + at, &length, sizeof length);
  }
  void put(uint16_t type, const void* data, size_t size) {
    put_attr_header(type, size);
    const auto* p = static_cast<const unsigned char*>(data);
    bytes_.insert(bytes_.end(), p, p + size);
    bytes_.resize(NLA_ALIGN(bytes_.size()), 0);
  }
  void raw(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    bytes_.insert(bytes_.end(), p, p + size);
  }
  std::vector<unsigned char>& bytes() { return bytes_; }

 private:
  void put_attr_header(uint16_t type, size_t payload) {
    nlattr attr{};
    attr.nla_len = static_cast<uint16_t>(NLA_HDRLEN + payload);
    attr.nla_type = type;
    raw(&attr, sizeof attr);
  }
  std::vector<unsigned char> bytes_;
};

void put_tuple(Message& m, uint16_t which, const sockaddr_storage& src,
               const sockaddr_storage& dst) {
  size_t tuple = m.begin_nest(which);
  size_t ip = m.begin_nest(CTA_TUPLE_IP);
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  if (src.ss_family == AF_INET) {
    const auto& s4 = reinterpret_cast<const sockaddr_in&>(src);
    const auto& d4 = reinterpret_cast<const sockaddr_in&>(dst);
    m.put(CTA_IP_V4_SRC, &s4.sin_addr, 4);
    m.put(CTA_IP_V4_DST, &d4.sin_addr, 4);
    src_port = s4.sin_port;
    dst_port = d4.sin_port;
  } else {
    const auto& s6 = reinterpret_cast<const sockaddr_in6&>(src);
    const auto& d6 = reinterpret_cast<const sockaddr_in6&>(dst);
    m.put(CTA_IP_V6_SRC, &s6.sin6_addr, 16);
    m.put(CTA_IP_V6_DST, &d6.sin6_addr, 16);
    src_port = s6.sin6_port;
    dst_port = d6.sin6_port;
  }
  m.end_nest(ip);
  size_t proto = m.begin_nest(CTA_TUPLE_PROTO);
  uint8_t udp = IPPROTO_UDP;
  m.put(CTA_PROTO_NUM, &udp, 1);
  m.put(CTA_PROTO_SRC_PORT, &src_port, 2);  // already network order
  m.put(CTA_PROTO_DST_PORT, &dst_port, 2);
  m.end_nest(proto);
  m.end_nest(tuple);
}

// Calls `visit(type, payload, size)` for each attribute in [data, data + size); stops at the
// first malformed one.
template <class Visit>
void for_each_attr(const unsigned char* data, size_t size, Visit&& visit) {
  size_t at = 0;
  while (at + NLA_HDRLEN <= size) {
    nlattr attr;
    std::memcpy(&attr, data + at, sizeof attr);
    if (attr.nla_len < NLA_HDRLEN || at + attr.nla_len > size) return;
    visit(static_cast<uint16_t>(attr.nla_type & NLA_TYPE_MASK), data + at + NLA_HDRLEN,
          static_cast<size_t>(attr.nla_len - NLA_HDRLEN));
    at += NLA_ALIGN(attr.nla_len);
  }
}

std::string errno_text(int e) {
  return std::strerror(e);
}

}  // namespace

Result<sockaddr_storage> udp_original_destination(int netlink_fd, const sockaddr_storage& client,
                                                  const sockaddr_storage& local) {
  if (client.ss_family != local.ss_family ||
      (client.ss_family != AF_INET && client.ss_family != AF_INET6)) {
    return fail("conntrack: address families do not match");
  }
  static uint32_t sequence = 0;
  uint32_t seq = ++sequence;
  Message m;
  nlmsghdr header{};
  header.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  header.nlmsg_flags = NLM_F_REQUEST;
  header.nlmsg_seq = seq;
  m.raw(&header, sizeof header);
  nfgenmsg gen{};
  gen.nfgen_family = static_cast<uint8_t>(client.ss_family);
  gen.version = NFNETLINK_V0;
  m.raw(&gen, sizeof gen);
  put_tuple(m, CTA_TUPLE_REPLY, local, client);
  auto& bytes = m.bytes();
  uint32_t total = static_cast<uint32_t>(bytes.size());
  std::memcpy(bytes.data(), &total, sizeof total);

  // A kernel request-response: answered at once, but never wait forever on the event loop.
  timeval timeout{1, 0};
  ::setsockopt(netlink_fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(netlink_fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    return fail("conntrack: cannot send the query: " + errno_text(errno));
  }
  alignas(nlmsghdr) unsigned char reply[8192];
  while (true) {
    ssize_t n = ::recv(netlink_fd, reply, sizeof reply, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("conntrack: no answer: " + errno_text(errno));
    }
    size_t size = static_cast<size_t>(n);
    for (size_t at = 0; at + sizeof(nlmsghdr) <= size;) {
      nlmsghdr h;
      std::memcpy(&h, reply + at, sizeof h);
      if (h.nlmsg_len < sizeof h || at + h.nlmsg_len > size) break;
      const unsigned char* payload = reply + at + NLMSG_HDRLEN;
      size_t payload_size = h.nlmsg_len - NLMSG_HDRLEN;
      at += NLMSG_ALIGN(h.nlmsg_len);
      if (h.nlmsg_seq != seq) continue;  // a stale answer to an earlier, timed-out query
      if (h.nlmsg_type == NLMSG_ERROR) {
        nlmsgerr err{};
        if (payload_size >= sizeof err) std::memcpy(&err, payload, sizeof err);
        return fail("conntrack: " + errno_text(err.error < 0 ? -err.error : EPROTO));
      }
      if (payload_size < sizeof(nfgenmsg)) return fail("conntrack: short answer");
      sockaddr_storage out{};
      bool have_address = false;
      bool have_port = false;
      uint16_t port = 0;
      for_each_attr(
          payload + sizeof(nfgenmsg), payload_size - sizeof(nfgenmsg),
          [&](uint16_t type, const unsigned char* p, size_t len) {
            if (type != CTA_TUPLE_ORIG) return;
            for_each_attr(p, len, [&](uint16_t t, const unsigned char* q, size_t l) {
              if (t == CTA_TUPLE_IP) {
                for_each_attr(q, l, [&](uint16_t a, const unsigned char* r, size_t rl) {
                  if (a == CTA_IP_V4_DST && rl == 4 && client.ss_family == AF_INET) {
                    auto& v4 = reinterpret_cast<sockaddr_in&>(out);
                    v4.sin_family = AF_INET;
                    std::memcpy(&v4.sin_addr, r, 4);
                    have_address = true;
                  } else if (a == CTA_IP_V6_DST && rl == 16 && client.ss_family == AF_INET6) {
                    auto& v6 = reinterpret_cast<sockaddr_in6&>(out);
                    v6.sin6_family = AF_INET6;
                    std::memcpy(&v6.sin6_addr, r, 16);
                    have_address = true;
                  }
                });
              } else if (t == CTA_TUPLE_PROTO) {
                for_each_attr(q, l, [&](uint16_t a, const unsigned char* r, size_t rl) {
                  if (a == CTA_PROTO_DST_PORT && rl == 2) {
                    std::memcpy(&port, r, 2);
                    have_port = true;
                  }
                });
              }
            });
          });
      if (!have_address || !have_port) return fail("conntrack: the answer has no original tuple");
      if (out.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in&>(out).sin_port = port;
      } else {
        reinterpret_cast<sockaddr_in6&>(out).sin6_port = port;
      }
      return out;
    }
  }
}

}  // namespace netfence::sandbox
