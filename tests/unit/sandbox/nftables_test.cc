// The netlink loader against its oracle: for several inputs, the ruleset it loads into a fresh
// network namespace must list exactly as the one libnftables loads from nft_ruleset()'s text,
// both as `nft list ruleset` and as the kernel's bytecode (`nft --debug=netlink list ruleset`).
// Loading needs root, or an unprivileged user with user namespaces (the child then maps itself to
// uid 0 in a user namespace of its own); nothing is loaded into the caller's namespace.
#include "sandbox/nftables.h"
#include "support/namespaces.h"

#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/capability.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace netfence::sandbox {
namespace {

constexpr uint16_t kTcp = 1000;
constexpr uint16_t kDns = 53;
constexpr uint16_t kUdp = 1000;

const char* nft_binary() {
  for (const char* path : {"/usr/sbin/nft", "/sbin/nft"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return nullptr;
}

bool namespaces_available() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(test::enter_fresh_network_namespace() ? 0 : 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

struct Outcome {
  bool loaded = false;
  std::string text;  // the listings, or why loading failed
};

// Forks a child that enters a fresh network namespace, runs `load` there and, if it succeeded,
// `nft list ruleset` and `nft --debug=netlink list ruleset`. Returns their output.
Outcome load_and_list(const std::function<Result<void>()>& load) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {false, "pipe failed"};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    auto say = [&](const std::string& text) {
      if (::write(fds[1], text.data(), text.size()) < 0) ::_exit(3);
    };
    if (!test::enter_fresh_network_namespace()) {
      say("cannot enter a fresh network namespace");
      ::_exit(2);
    }
    if (auto loaded = load(); !loaded) {
      say(loaded.error().message);
      ::_exit(1);
    }
    // Two listings in a row: a shell keeps the child simple.
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    const std::string nft = nft_binary();
    const std::string script = nft + " list ruleset && echo '---- bytecode ----' && " + nft +
                               " --debug=netlink list ruleset";
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  Outcome outcome;
  char buffer[4096];
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 20000) <= 0) break;  // bounded: a hung child fails the comparison
    ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    outcome.text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  outcome.loaded = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return outcome;
}

class NftablesNetlinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (nft_binary() == nullptr) GTEST_SKIP() << "the nft binary is not installed";
    if (!namespaces_available()) {
      GTEST_SKIP() << "needs root, or user namespaces for this user, to load rulesets";
    }
  }
};

struct Input {
  const char* name;
  uint16_t udp_port;
  std::vector<std::string> v4;
  std::vector<std::string> v6;
};

std::vector<std::string> many_v4_elements(int count) {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    out.push_back("192.0.2." + std::to_string(i % 256) + " . " + std::to_string(1 + i / 256 * 100) +
                  "-" + std::to_string(99 + i / 256 * 100));
  }
  return out;
}

TEST_F(NftablesNetlinkTest, ListsExactlyAsTheLibnftablesRuleset) {
  const std::vector<Input> inputs = {
      {"no sets", kUdp, {}, {}},
      {"no UDP relay port: sets left out", 0, {"192.0.2.0/24 . 53"}, {"2001:db8::/32 . 53"}},
      {"full access", kUdp, {"0.0.0.0/0 . 1-65535"}, {"::/0 . 1-65535"}},
      {"allowlist",
       kUdp,
       {"192.0.2.0/24 . 53-60", "203.0.113.5 . 443", "198.51.100.7/32 . 1-65535",
        "198.51.100.200/25 . 9", "198.51.100.1 . 0-0", "198.51.100.1 . 0-0"},
       {"2001:db8::/32 . 1000-2000", "2001:db8:1::5 . 443", "2001:db8:2::5/128 . 1-65535",
        "2001:db8:3:4:5:6:7:8/77 . 65535", "::ffff:192.0.2.9 . 7"}},
      {"IPv4 only", kUdp, {"203.0.113.0/24 . 443"}, {}},
      {"IPv6 only", kUdp, {}, {"2001:db8::1 . 443"}},
      {"other ports", 4242, {"192.0.2.1 . 1"}, {}},
      {"more elements than one message holds", kUdp, many_v4_elements(1100), {}},
  };
  for (const Input& input : inputs) {
    SCOPED_TRACE(input.name);
    const uint16_t tcp = input.udp_port == 4242 ? 4243 : kTcp;
    const uint16_t dns = input.udp_port == 4242 ? 5353 : kDns;
    auto batch = nft_ruleset_batch(tcp, dns, input.udp_port, input.v4, input.v6);
    ASSERT_TRUE(batch) << batch.error().message;
    const std::string text = nft_ruleset(tcp, dns, input.udp_port, input.v4, input.v6);
    const Outcome netlink = load_and_list([&] { return load_ruleset_batch(*batch); });
    const Outcome library = load_and_list([&] { return load_ruleset_with_library(text); });
    ASSERT_TRUE(library.loaded) << library.text;
    ASSERT_TRUE(netlink.loaded) << netlink.text;
    EXPECT_NE(library.text.find("table inet netfence {"), std::string::npos) << library.text;
    EXPECT_NE(library.text.find("---- bytecode ----"), std::string::npos) << library.text;
    EXPECT_EQ(netlink.text, library.text);
  }
}

TEST_F(NftablesNetlinkTest, KernelRejectionNamesTheElement) {
  // Overlapping intervals in a concatenation set: nft fails the same way (File exists).
  const std::vector<std::string> v4 = {"192.0.2.0/24 . 53", "192.0.2.128/25 . 53"};
  auto batch = nft_ruleset_batch(kTcp, kDns, kUdp, v4, {});
  ASSERT_TRUE(batch) << batch.error().message;
  const Outcome netlink = load_and_list([&] { return load_ruleset_batch(*batch); });
  EXPECT_FALSE(netlink.loaded);
  EXPECT_EQ(netlink.text,
            "cannot load the nftables ruleset: element \"192.0.2.128/25 . 53\" of \"add element "
            "inet netfence udp_allow_v4\" failed: " +
                std::string(std::strerror(EEXIST)));
  const Outcome library =
      load_and_list([&] { return load_ruleset_with_library(nft_ruleset(kTcp, kDns, kUdp, v4)); });
  EXPECT_FALSE(library.loaded);
  EXPECT_NE(library.text.find(std::strerror(EEXIST)), std::string::npos) << library.text;
}

TEST_F(NftablesNetlinkTest, MissingPrivilegeFailsTheTransaction) {
  auto batch = nft_ruleset_batch(kTcp, kDns);
  ASSERT_TRUE(batch) << batch.error().message;
  const Outcome outcome = load_and_list([&]() -> Result<void> {
    cap_t none = cap_init();  // empty sets: CAP_NET_ADMIN gone in our namespaces
    if (none == nullptr || cap_set_proc(none) != 0) return fail("cannot drop capabilities");
    cap_free(none);
    return load_ruleset_batch(*batch);
  });
  EXPECT_FALSE(outcome.loaded);
  EXPECT_EQ(outcome.text, "cannot load the nftables ruleset: the transaction failed: " +
                              std::string(std::strerror(EPERM)));
}

// ---- Building the batch needs no privilege --------------------------------------------------

TEST(NftablesBatch, HasOneAcknowledgedMessagePerObjectBetweenBeginAndEnd) {
  auto batch = nft_ruleset_batch(kTcp, kDns, kUdp, {"192.0.2.0/24 . 53"}, {"2001:db8::/32 . 53"});
  ASSERT_TRUE(batch) << batch.error().message;
  std::vector<uint16_t> types;
  size_t offset = 0;
  while (offset < batch->bytes.size()) {
    ASSERT_LE(offset + sizeof(nlmsghdr), batch->bytes.size());
    nlmsghdr header;
    std::memcpy(&header, batch->bytes.data() + offset, sizeof header);
    ASSERT_GE(header.nlmsg_len, sizeof header);
    types.push_back(header.nlmsg_type);
    if (header.nlmsg_type != NFNL_MSG_BATCH_BEGIN && header.nlmsg_type != NFNL_MSG_BATCH_END) {
      const size_t index = types.size() - 2;
      ASSERT_LT(index, batch->messages.size());
      EXPECT_EQ(batch->messages[index].offset, offset);
      EXPECT_EQ(header.nlmsg_seq, batch->first_seq + 1 + index);
      EXPECT_TRUE(header.nlmsg_flags & NLM_F_ACK);
      EXPECT_EQ(header.nlmsg_type >> 8, NFNL_SUBSYS_NFTABLES);
    }
    offset += NLMSG_ALIGN(header.nlmsg_len);
  }
  EXPECT_EQ(offset, batch->bytes.size());
  ASSERT_EQ(types.size(), batch->messages.size() + 2);
  EXPECT_EQ(types.front(), NFNL_MSG_BATCH_BEGIN);
  EXPECT_EQ(types.back(), NFNL_MSG_BATCH_END);
  auto count = [&](int type) {
    return std::count(types.begin(), types.end(), NFNL_SUBSYS_NFTABLES << 8 | type);
  };
  EXPECT_EQ(count(NFT_MSG_NEWTABLE), 1);
  EXPECT_EQ(count(NFT_MSG_NEWCHAIN), 5);
  EXPECT_EQ(count(NFT_MSG_NEWSET), 2 + 4);  // the two named ones, four anonymous ones
  EXPECT_EQ(count(NFT_MSG_NEWSETELEM), 2 + 4);
  EXPECT_EQ(count(NFT_MSG_NEWRULE), 5 + 5 + 6 + 5 + 2);
  EXPECT_EQ(batch->messages[0].what, "add table inet netfence");
}

TEST(NftablesBatch, LargeElementListsAreSplitAndEveryElementIsNamed) {
  const std::vector<std::string> v4 = many_v4_elements(1100);
  auto batch = nft_ruleset_batch(kTcp, kDns, kUdp, v4, {});
  ASSERT_TRUE(batch) << batch.error().message;
  std::vector<std::string> named;
  size_t messages = 0;
  for (const NftBatch::Message& m : batch->messages) {
    if (m.what != "add element inet netfence udp_allow_v4") continue;
    ++messages;
    EXPECT_LE(m.elements.size(), 512u);
    named.insert(named.end(), m.elements.begin(), m.elements.end());
  }
  EXPECT_EQ(messages, 3u);
  EXPECT_EQ(named, v4);
}

TEST(NftablesBatch, RejectsMalformedElements) {
  const std::vector<std::pair<std::string, std::string>> bad_v4 = {
      {"192.0.2.1", "no \" . \" between address and port"},
      {"192.0.2.1 .53", "no \" . \" between address and port"},
      {"example.com . 53", "bad address"},
      {"2001:db8::1 . 53", "bad address"},
      {"192.0.2.1/33 . 53", "bad prefix length"},
      {"192.0.2.1/ . 53", "bad prefix length"},
      {"192.0.2.1/-1 . 53", "bad prefix length"},
      {"192.0.2.1 . 65536", "bad port"},
      {"192.0.2.1 . domain", "bad port"},
      {"192.0.2.1 . ", "bad port"},
      {"192.0.2.1 . 53-", "bad port"},
      {"192.0.2.1 . -53", "bad port"},
      {"192.0.2.1 . 1-2-3", "bad port"},
      {"192.0.2.1 . 60-50", "the port range is empty"},
      {"192.0.2.1 . 0000053", "bad port"},
  };
  for (const auto& [element, why] : bad_v4) {
    auto batch = nft_ruleset_batch(kTcp, kDns, kUdp, {element}, {});
    ASSERT_FALSE(batch) << element;
    EXPECT_EQ(batch.error().message, "invalid UDP allow element \"" + element +
                                         "\" (expected IPV4[/LEN] . PORT[-PORT]): " + why);
  }
  auto v6 = nft_ruleset_batch(kTcp, kDns, kUdp, {}, {"2001:db8::/129 . 53"});
  ASSERT_FALSE(v6);
  EXPECT_EQ(v6.error().message,
            "invalid UDP allow element \"2001:db8::/129 . 53\" (expected IPV6[/LEN] . "
            "PORT[-PORT]): bad prefix length");
  auto v4_in_v6 = nft_ruleset_batch(kTcp, kDns, kUdp, {}, {"192.0.2.1 . 53"});
  EXPECT_FALSE(v4_in_v6);
  // Without the UDP relay port the sets are left out, as in nft_ruleset().
  EXPECT_TRUE(nft_ruleset_batch(kTcp, kDns, 0, {"garbage"}, {"garbage"}));
}

}  // namespace
}  // namespace netfence::sandbox
