// format_address() and the failure paths of original_destination(). The success path needs a
// redirected connection and is covered by sandbox_test.cc.
#include "sandbox/original_destination.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "common/fd.h"

namespace netfence::sandbox {
namespace {

TEST(FormatAddress, FormatsBothFamilies) {
  sockaddr_storage v4{};
  auto& in4 = reinterpret_cast<sockaddr_in&>(v4);
  in4.sin_family = AF_INET;
  in4.sin_port = htons(8080);
  ASSERT_EQ(inet_pton(AF_INET, "203.0.113.7", &in4.sin_addr), 1);
  EXPECT_EQ(format_address(v4), "203.0.113.7:8080");

  sockaddr_storage v6{};
  auto& in6 = reinterpret_cast<sockaddr_in6&>(v6);
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(443);
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::7", &in6.sin6_addr), 1);
  EXPECT_EQ(format_address(v6), "[2001:db8::7]:443");

  sockaddr_storage other{};
  other.ss_family = AF_UNIX;
  EXPECT_EQ(format_address(other), "<unknown address family 1>");
}

TEST(OriginalDestination, FailsOnSocketsItCannotAnswerFor) {
  UniqueFd unix_socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(unix_socket);
  auto result = original_destination(unix_socket.get());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message,
            "cannot read the original destination of a socket of address family 1");

  UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(udp);
  result = original_destination(udp.get());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message.rfind("cannot read the original destination: ", 0), 0u)
      << result.error().message;

  EXPECT_FALSE(original_destination(-1));
}

}  // namespace
}  // namespace netfence::sandbox
