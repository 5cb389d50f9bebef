#include "dns/udp_io.h"

#include <netinet/in.h>

#include <cerrno>
#include <cstring>

namespace netfence::dns {

namespace {

// Room for one in_pktinfo or in6_pktinfo control message, suitably aligned.
union Control {
  cmsghdr align;
  char bytes[CMSG_SPACE(sizeof(in6_pktinfo))];
};

void read_pktinfo(msghdr& header, UdpRoute& route) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      asio::ip::address_v4::bytes_type bytes;
      std::memcpy(bytes.data(), &info.ipi_addr, 4);
      route.local = asio::ip::address_v4(bytes);
      route.interface = static_cast<unsigned>(info.ipi_ifindex);
      route.pin_source = true;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      asio::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), &info.ipi6_addr, 16);
      route.local = asio::ip::address_v6(bytes);
      route.interface = info.ipi6_ifindex;
      route.pin_source = true;
    }
  }
}

// Fills `header` (name, data, and the source-address control message when the route pins it).
void prepare(msghdr& header, const UdpRoute& route, iovec& data, Control& control) {
  header = msghdr{};
  header.msg_name = const_cast<sockaddr*>(route.peer.data());
  header.msg_namelen = static_cast<socklen_t>(route.peer.size());
  header.msg_iov = &data;
  header.msg_iovlen = 1;
  if (!route.pin_source) return;
  header.msg_control = control.bytes;
  cmsghdr* c = nullptr;
  if (route.peer.protocol() == asio::ip::udp::v4() && route.local.is_v4()) {
    header.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
    c = CMSG_FIRSTHDR(&header);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo info{};
    auto bytes = route.local.to_v4().to_bytes();
    std::memcpy(&info.ipi_spec_dst, bytes.data(), 4);
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  } else if (route.local.is_v6()) {
    header.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
    c = CMSG_FIRSTHDR(&header);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo info{};
    auto bytes = route.local.to_v6().to_bytes();
    std::memcpy(&info.ipi6_addr, bytes.data(), 16);
    info.ipi6_ifindex = route.interface;
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  } else {
    header.msg_control = nullptr;  // a v4 route on a v6 socket without pktinfo: cannot happen
  }
}

}  // namespace

bool enable_pktinfo_if_wildcard(int fd) {
  sockaddr_storage ss{};
  socklen_t length = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &length) != 0) return false;
  int on = 1;
  if (ss.ss_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, &ss, sizeof sin);
    if (sin.sin_addr.s_addr != htonl(INADDR_ANY)) return false;
    return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) == 0;
  }
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, &ss, sizeof sin6);
    if (!IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr)) return false;
    return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) == 0;
  }
  return false;
}

bool send_udp(int fd, const UdpRoute& route, ByteSpan bytes) {
  iovec data{const_cast<std::byte*>(bytes.data()), bytes.size()};
  Control control;
  msghdr header;
  prepare(header, route, data, control);
  while (true) {
    if (sendmsg(fd, &header, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return true;
    if (errno != EINTR) return false;
  }
}

UdpBatch::UdpBatch() : buffers_(kSlots) {
  for (auto& reply : replies_) reply.reserve(512);
}

size_t UdpBatch::receive(int fd, bool pktinfo, const asio::ip::address& local) {
  std::array<mmsghdr, kSlots> messages;
  std::array<iovec, kSlots> data;
  std::array<Control, kSlots> control;
  std::array<sockaddr_storage, kSlots> names;
  for (size_t i = 0; i < kSlots; ++i) {
    data[i] = iovec{buffers_[i].data(), kReceiveSize};
    messages[i].msg_hdr = msghdr{};
    messages[i].msg_hdr.msg_name = &names[i];
    messages[i].msg_hdr.msg_namelen = sizeof names[i];
    messages[i].msg_hdr.msg_iov = &data[i];
    messages[i].msg_hdr.msg_iovlen = 1;
    if (pktinfo) {
      messages[i].msg_hdr.msg_control = control[i].bytes;
      messages[i].msg_hdr.msg_controllen = sizeof control[i].bytes;
    }
  }
  int n;
  do {
    n = recvmmsg(fd, messages.data(), kSlots, MSG_DONTWAIT, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return 0;
  queued_count_ = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    msghdr& header = messages[i].msg_hdr;
    lengths_[i] = std::min<size_t>(messages[i].msg_len, kReceiveSize);
    cut_[i] = (header.msg_flags & MSG_TRUNC) != 0;
    UdpRoute& route = routes_[i];
    route = UdpRoute{};
    route.local = local;
    size_t name_length = std::min<size_t>(header.msg_namelen, route.peer.capacity());
    std::memcpy(route.peer.data(), &names[i], name_length);
    route.peer.resize(name_length);
    if (pktinfo) read_pktinfo(header, route);
  }
  return static_cast<size_t>(n);
}

size_t UdpBatch::flush(int fd) {
  std::array<mmsghdr, kSlots> messages;
  std::array<iovec, kSlots> data;
  std::array<Control, kSlots> control;
  for (size_t i = 0; i < queued_count_; ++i) {
    size_t slot = queued_[i];
    data[i] = iovec{replies_[slot].data(), replies_[slot].size()};
    prepare(messages[i].msg_hdr, routes_[slot], data[i], control[i]);
    messages[i].msg_len = 0;
  }
  size_t sent = 0;
  size_t refused = 0;
  while (sent < queued_count_) {
    int n = sendmmsg(fd, messages.data() + sent, static_cast<unsigned>(queued_count_ - sent),
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      refused += queued_count_ - sent;  // the socket buffer is full: drop the rest
      break;
    } else {
      ++sent;  // this one cannot be sent (e.g. a peer address the kernel rejects): skip it
      ++refused;
    }
  }
  queued_count_ = 0;
  return refused;
}

}  // namespace netfence::dns
