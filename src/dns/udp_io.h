// Batched UDP I/O for the DNS server.
//
// Theory of operation
// -------------------
// A UdpBatch reads up to kSlots datagrams with one recvmmsg(2) and sends the replies with one
// sendmmsg(2); its buffers are allocated once, so a batch of local answers costs two system calls
// and no allocation. When the socket is bound to a wildcard address (0.0.0.0 or ::), the kernel
// would pick each reply's source address by route, which is not necessarily the address the
// client sent to, and a redirected (nftables) flow's reply would then not be translated back (SPEC
// 2.1): so on such sockets IP_PKTINFO / IPV6_RECVPKTINFO is turned on, each datagram's
// destination is recorded in its UdpRoute, and the reply names it as its source. Nothing here
// blocks: the socket is non-blocking and a reply the kernel cannot take right now (a full socket
// buffer) is dropped and counted, as a router would; the client retries.
#pragma once

#include <sys/socket.h>

#include <array>
#include <asio/ip/address.hpp>
#include <asio/ip/udp.hpp>
#include <cstddef>
#include <vector>

#include "common/bytes.h"

namespace netfence::dns {

// Where a datagram came from and went to: what a reply needs.
struct UdpRoute {
  asio::ip::udp::endpoint peer;
  asio::ip::address local;  // the address the client sent to; unspecified when unknown
  unsigned interface = 0;   // the interface it arrived on (pktinfo only)
  bool pin_source = false;  // reply from `local` (the socket is bound to a wildcard address)
};

// Turns on destination-address reporting when `fd` is bound to a wildcard address. Returns
// whether it did (false also when the socket is bound to one address: nothing is needed then).
bool enable_pktinfo_if_wildcard(int fd);

// Sends one datagram along `route`. Returns false if the kernel refused it (full buffer, ...).
bool send_udp(int fd, const UdpRoute& route, ByteSpan bytes);

class UdpBatch {
 public:
  static constexpr size_t kSlots = 32;
  static constexpr size_t kReceiveSize = 4096;  // larger datagrams are cut, and marked so

  UdpBatch();
  UdpBatch(const UdpBatch&) = delete;
  UdpBatch& operator=(const UdpBatch&) = delete;

  // Reads what is waiting, up to kSlots datagrams, without blocking. Returns how many; 0 when
  // nothing is waiting or on an error. `pktinfo`: the socket reports destination addresses;
  // `local` is recorded in each route otherwise (the socket's bound address).
  size_t receive(int fd, bool pktinfo, const asio::ip::address& local);
  ByteSpan datagram(size_t slot) const { return ByteSpan(buffers_[slot].data(), lengths_[slot]); }
  bool cut(size_t slot) const { return cut_[slot]; }  // longer than kReceiveSize
  const UdpRoute& route(size_t slot) const { return routes_[slot]; }

  // The reply buffer of `slot` (kept between batches, so filling it rarely allocates).
  std::vector<std::byte>& reply(size_t slot) { return replies_[slot]; }
  // Marks slot's reply (its reply() bytes) to be sent by flush().
  void queue(size_t slot) { queued_[queued_count_++] = slot; }
  // Sends every queued reply. Returns how many the kernel refused (they are dropped).
  size_t flush(int fd);

 private:
  std::vector<std::array<std::byte, kReceiveSize>> buffers_;
  std::array<size_t, kSlots> lengths_{};
  std::array<bool, kSlots> cut_{};
  std::array<UdpRoute, kSlots> routes_{};
  std::array<std::vector<std::byte>, kSlots> replies_;
  std::array<size_t, kSlots> queued_{};
  size_t queued_count_ = 0;
};

}  // namespace netfence::dns
