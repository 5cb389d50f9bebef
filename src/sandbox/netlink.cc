#include "sandbox/netlink.h"

#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

namespace netfence::sandbox {
namespace {

constexpr size_t kAlign = 4;  // NLMSG_ALIGNTO == RTA_ALIGNTO
constexpr size_t align(size_t n) {
  return (n + kAlign - 1) & ~(kAlign - 1);
}

// Builds one netlink message in a fixed buffer. Every append checks the remaining space; an
// overflow is a programming error (our messages are tiny and fixed) and turns into a failure.
class MessageBuilder {
 public:
  MessageBuilder(uint16_t type, uint16_t flags) {
    nlmsghdr header{};
    header.nlmsg_type = type;
    header.nlmsg_flags = flags;
    append_raw(&header, sizeof header);
  }

  template <class T>
  void append_struct(const T& value) {
    append_raw(&value, sizeof value);
  }

  void append_attribute(uint16_t type, const void* data, size_t length) {
    rtattr attribute{};
    attribute.rta_len = static_cast<unsigned short>(sizeof(rtattr) + length);
    attribute.rta_type = type;
    append_raw(&attribute, sizeof attribute);
    append_raw(data, length);
  }

  void append_string(uint16_t type, std::string_view value) {
    std::array<char, IFNAMSIZ> buffer{};
    if (value.size() >= buffer.size()) {
      overflow_ = true;
      return;
    }
    std::memcpy(buffer.data(), value.data(), value.size());
    append_attribute(type, buffer.data(), value.size() + 1);
  }

  // Opens a nested attribute; returns its offset for end_nest().
  size_t begin_nest(uint16_t type) {
    size_t offset = length_;
    append_attribute(type, nullptr, 0);
    return offset;
  }

  void end_nest(size_t offset) {
    rtattr attribute;
    std::memcpy(&attribute, buffer_.data() + offset, sizeof attribute);
    attribute.rta_len = static_cast<unsigned short>(length_ - offset);
    std::memcpy(buffer_.data() + offset, &attribute, sizeof attribute);
  }

  // Finalises the header (length, sequence number) and returns the bytes; empty on overflow.
  std::span<const std::byte> finish(uint32_t sequence) {
    if (overflow_) return {};
    nlmsghdr header;
    std::memcpy(&header, buffer_.data(), sizeof header);
    header.nlmsg_len = static_cast<uint32_t>(length_);
    header.nlmsg_seq = sequence;
    std::memcpy(buffer_.data(), &header, sizeof header);
    return {buffer_.data(), length_};
  }

 private:
  void append_raw(const void* data, size_t length) {
    size_t padded = align(length);
    if (length_ + padded > buffer_.size()) {
      overflow_ = true;
      return;
    }
    if (length > 0) std::memcpy(buffer_.data() + length_, data, length);
    std::memset(buffer_.data() + length_ + length, 0, padded - length);
    length_ += padded;
  }

  alignas(nlmsghdr) std::array<std::byte, 512> buffer_{};
  size_t length_ = 0;
  bool overflow_ = false;
};

std::string errno_text(int error) {
  return std::strerror(error);
}

}  // namespace

Result<Rtnetlink> Rtnetlink::open() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return fail("cannot open a rtnetlink socket: " + errno_text(errno));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    return fail("cannot bind the rtnetlink socket: " + errno_text(errno));
  }
  return Rtnetlink(std::move(fd));
}

Result<void> Rtnetlink::transact(std::span<const std::byte> message, std::string_view what) {
  if (message.empty()) return fail(std::string(what) + ": netlink message too large");
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_.get(), message.data(), message.size(), 0,
               reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) < 0) {
    return fail(std::string(what) + ": " + errno_text(errno));
  }
  nlmsghdr sent;
  std::memcpy(&sent, message.data(), sizeof sent);

  alignas(nlmsghdr) std::array<std::byte, 8192> reply;
  for (;;) {
    ssize_t n = ::recv(fd_.get(), reply.data(), reply.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::string(what) + ": " + errno_text(errno));
    }
    size_t offset = 0;
    while (offset + sizeof(nlmsghdr) <= static_cast<size_t>(n)) {
      nlmsghdr header;
      std::memcpy(&header, reply.data() + offset, sizeof header);
      if (header.nlmsg_len < sizeof header || offset + header.nlmsg_len > static_cast<size_t>(n)) {
        return fail(std::string(what) + ": malformed netlink reply");
      }
      if (header.nlmsg_seq == sent.nlmsg_seq && header.nlmsg_type == NLMSG_ERROR) {
        nlmsgerr error;
        if (header.nlmsg_len < align(sizeof header) + sizeof error) {
          return fail(std::string(what) + ": short netlink error message");
        }
        std::memcpy(&error, reply.data() + offset + align(sizeof header), sizeof error);
        if (error.error == 0) return {};
        return fail(std::string(what) + ": " + errno_text(-error.error));
      }
      offset += align(header.nlmsg_len);
    }
  }
}

Result<int> Rtnetlink::link_index(std::string_view name) {
  ifreq request{};
  if (name.size() >= sizeof request.ifr_name)
    return fail("link name too long: " + std::string(name));
  std::memcpy(request.ifr_name, name.data(), name.size());
  if (::ioctl(fd_.get(), SIOCGIFINDEX, &request) != 0) {
    return fail("cannot find link " + std::string(name) + ": " + errno_text(errno));
  }
  return request.ifr_ifindex;
}

namespace {
// IFLA_GSO_IPV4_MAX_SIZE (Linux 6.3) is newer than Debian 12's headers; older kernels ignore it.
constexpr uint16_t kIflaGsoIpv4MaxSize = 63;

void append_gso_max_size(MessageBuilder& message, uint32_t size) {
  if (size == 0) return;
  message.append_attribute(IFLA_GSO_MAX_SIZE, &size, sizeof size);
  message.append_attribute(kIflaGsoIpv4MaxSize, &size, sizeof size);
}
}  // namespace

Result<void> Rtnetlink::set_link_up(int ifindex, uint32_t gso_max_size) {
  MessageBuilder message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
  ifinfomsg info{};
  info.ifi_family = AF_UNSPEC;
  info.ifi_index = ifindex;
  info.ifi_flags = IFF_UP;
  info.ifi_change = IFF_UP;
  message.append_struct(info);
  append_gso_max_size(message, gso_max_size);
  return transact(message.finish(++sequence_),
                  "cannot bring link " + std::to_string(ifindex) + " up");
}

Result<void> Rtnetlink::add_veth(std::string_view name, std::string_view peer, uint32_t mtu,
                                 uint32_t gso_max_size) {
  MessageBuilder message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg info{};
  info.ifi_family = AF_UNSPEC;
  info.ifi_flags = IFF_UP;
  info.ifi_change = IFF_UP;
  message.append_struct(info);
  message.append_string(IFLA_IFNAME, name);
  // One queue each way, asked for up front: a veth otherwise gets one per CPU and is then cut
  // down to one, which waits for an RCU grace period (about a millisecond of start time).
  const uint32_t one_queue = 1;
  message.append_attribute(IFLA_NUM_TX_QUEUES, &one_queue, sizeof one_queue);
  message.append_attribute(IFLA_NUM_RX_QUEUES, &one_queue, sizeof one_queue);
  if (mtu != 0) message.append_attribute(IFLA_MTU, &mtu, sizeof mtu);
  append_gso_max_size(message, gso_max_size);
  size_t link_info = message.begin_nest(IFLA_LINKINFO);
  message.append_string(IFLA_INFO_KIND, "veth");
  size_t info_data = message.begin_nest(IFLA_INFO_DATA);
  size_t peer_info = message.begin_nest(VETH_INFO_PEER);
  // The peer cannot be created up: veth_open() fails with ENOTCONN until both ends are linked,
  // which happens only after the peer is configured. Callers bring it up afterwards.
  ifinfomsg peer_info_header{};
  peer_info_header.ifi_family = AF_UNSPEC;
  message.append_struct(peer_info_header);
  message.append_string(IFLA_IFNAME, peer);
  message.append_attribute(IFLA_NUM_TX_QUEUES, &one_queue, sizeof one_queue);
  message.append_attribute(IFLA_NUM_RX_QUEUES, &one_queue, sizeof one_queue);
  message.end_nest(peer_info);
  message.end_nest(info_data);
  message.end_nest(link_info);
  return transact(message.finish(++sequence_), "cannot create veth pair " + std::string(name));
}

Result<void> Rtnetlink::add_address(int ifindex, const in_addr& address, int prefix_len) {
  MessageBuilder message(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg info{};
  info.ifa_family = AF_INET;
  info.ifa_prefixlen = static_cast<unsigned char>(prefix_len);
  info.ifa_scope = RT_SCOPE_UNIVERSE;
  info.ifa_index = static_cast<unsigned>(ifindex);
  message.append_struct(info);
  message.append_attribute(IFA_LOCAL, &address, sizeof address);
  message.append_attribute(IFA_ADDRESS, &address, sizeof address);
  return transact(message.finish(++sequence_), "cannot add the sandbox IPv4 address");
}

Result<void> Rtnetlink::add_address(int ifindex, const in6_addr& address, int prefix_len) {
  MessageBuilder message(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg info{};
  info.ifa_family = AF_INET6;
  info.ifa_prefixlen = static_cast<unsigned char>(prefix_len);
  info.ifa_flags = IFA_F_NODAD;
  info.ifa_scope = RT_SCOPE_UNIVERSE;
  info.ifa_index = static_cast<unsigned>(ifindex);
  message.append_struct(info);
  message.append_attribute(IFA_LOCAL, &address, sizeof address);
  message.append_attribute(IFA_ADDRESS, &address, sizeof address);
  return transact(message.finish(++sequence_), "cannot add the sandbox IPv6 address");
}

Result<void> Rtnetlink::add_default_route_v4(int ifindex, const in_addr* preferred_source) {
  MessageBuilder message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  rtmsg route{};
  route.rtm_family = AF_INET;
  route.rtm_table = RT_TABLE_MAIN;
  route.rtm_protocol = RTPROT_BOOT;
  route.rtm_scope = RT_SCOPE_LINK;
  route.rtm_type = RTN_UNICAST;
  message.append_struct(route);
  uint32_t oif = static_cast<uint32_t>(ifindex);
  message.append_attribute(RTA_OIF, &oif, sizeof oif);
  if (preferred_source != nullptr) {
    message.append_attribute(RTA_PREFSRC, preferred_source, sizeof *preferred_source);
  }
  return transact(message.finish(++sequence_), "cannot add the IPv4 default route");
}

Result<void> Rtnetlink::add_default_route_v6(int ifindex) {
  MessageBuilder message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  rtmsg route{};
  route.rtm_family = AF_INET6;
  route.rtm_table = RT_TABLE_MAIN;
  route.rtm_protocol = RTPROT_BOOT;
  route.rtm_scope = RT_SCOPE_UNIVERSE;
  route.rtm_type = RTN_UNICAST;
  message.append_struct(route);
  uint32_t oif = static_cast<uint32_t>(ifindex);
  message.append_attribute(RTA_OIF, &oif, sizeof oif);
  return transact(message.finish(++sequence_), "cannot add the IPv6 default route");
}

Result<Rtnetlink> bring_up_loopback(bool large_packets) {
  auto netlink = Rtnetlink::open();
  if (!netlink) return netlink.error();
  auto lo = netlink->link_index("lo");
  if (!lo) return lo.error();
  if (large_packets && netlink->set_link_up(*lo, kSandboxGsoMaxSize)) return netlink;
  if (auto up = netlink->set_link_up(*lo); !up) return up.error();
  return netlink;
}

}  // namespace netfence::sandbox
