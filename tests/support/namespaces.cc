#include "support/namespaces.h"

#include <sched.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace netfence::test {
namespace {

bool write_file(const char* path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace

bool enter_fresh_network_namespace() {
  if (::geteuid() == 0) return ::unshare(CLONE_NEWNET) == 0;
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) return false;
  return write_file("/proc/self/setgroups", "deny") &&
         write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") &&
         write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
}

}  // namespace netfence::test
