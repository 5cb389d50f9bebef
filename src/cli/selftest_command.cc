#include "cli/selftest_command.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>

#include "cli/probes.h"
#include "common/fd.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "sandbox/sandbox.h"

namespace netfence::cli {
namespace {

constexpr int kExitGotThrough = 1;
constexpr int kExitUsage = 2;
// The most the probe process may report; its real output is a few KiB.
constexpr size_t kMaxProbeOutput = 1 << 20;

// A host address for the host-address probe: IPv4 first, never loopback or link-local (which
// the sandbox has its own of, or which need a scope).
std::string pick_host_address(const std::vector<policy::IpAddress>& addresses) {
  for (policy::Family family : {policy::Family::kV4, policy::Family::kV6}) {
    for (const policy::IpAddress& a : addresses) {
      if (a.family() != family) continue;
      const uint8_t* b = a.data();
      bool skip = family == policy::Family::kV4
                      ? b[0] == 127 || (b[0] == 169 && b[1] == 254) || b[0] == 0
                      : (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || a.embedded_v4() ||
                            std::all_of(b, b + 15, [](uint8_t x) { return x == 0; });
      if (!skip) return a.to_string();
    }
  }
  return "";
}

std::string policy_summary(const policy::Policy& p) {
  if (p.disabled()) return "network disabled";
  std::string deny =
      p.deny().empty() ? "" : fmt::format(", {} deny rules", p.deny().rules().size());
  if (p.full_access()) return "full access" + deny;
  return fmt::format("allowlist, {} allow rules{}", p.allow().rules().size(), deny);
}

// Reads what the probe process wrote to `fd` (from the start), at most kMaxProbeOutput bytes.
std::string read_all(int fd) {
  std::string out;
  if (::lseek(fd, 0, SEEK_SET) < 0) return out;
  char buffer[8192];
  while (out.size() < kMaxProbeOutput) {
    ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, kMaxProbeOutput - out.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

struct Reported {
  std::string observed;
  ProbeStatus status = ProbeStatus::kInconclusive;
};

// Parses the probe process's JSON lines; lines that do not parse are ignored.
std::map<std::string, Reported> parse_reports(const std::string& text) {
  std::map<std::string, Reported> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    auto line = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(start),
                                      text.begin() + static_cast<std::ptrdiff_t>(end), nullptr,
                                      /*allow_exceptions=*/false);
    start = end + 1;
    if (!line.is_object()) continue;
    auto probe = line.find("probe");
    auto observed = line.find("observed");
    auto status = line.find("status");
    if (probe == line.end() || observed == line.end() || status == line.end() ||
        !probe->is_string() || !observed->is_string() || !status->is_string()) {
      continue;
    }
    auto s = parse_probe_status(status->get<std::string>());
    if (!s) continue;
    out[probe->get<std::string>()] = Reported{observed->get<std::string>(), *s};
  }
  return out;
}

enum class RowResult { kOk, kGotThrough, kSkipped, kInconclusive, kNoResult };

struct Row {
  PlannedProbe plan;
  std::string observed;
  RowResult result = RowResult::kNoResult;
};

std::string_view result_code(RowResult r) {
  switch (r) {
    case RowResult::kOk:
      return "ok";
    case RowResult::kGotThrough:
      return "got_through";
    case RowResult::kSkipped:
      return "skipped";
    case RowResult::kInconclusive:
      return "inconclusive";
    case RowResult::kNoResult:
      return "no_result";
  }
  return "no_result";
}

std::string result_text(const Row& row) {
  switch (row.result) {
    case RowResult::kOk:
      return "ok";
    case RowResult::kGotThrough:
      return "GOT THROUGH";
    case RowResult::kSkipped:
      return fmt::format("skipped ({})", row.plan.skip);
    case RowResult::kInconclusive:
      return "inconclusive";
    case RowResult::kNoResult:
      return "NO RESULT";
  }
  return "";
}

void print_table(const std::vector<Row>& rows) {
  size_t w_probe = 5;
  size_t w_target = 6;
  size_t w_expected = 8;
  size_t w_observed = 8;
  for (const Row& r : rows) {
    w_probe = std::max(w_probe, r.plan.id.size());
    w_target = std::max(w_target, r.plan.target.size());
    w_expected = std::max(w_expected, r.plan.expected.size());
    w_observed = std::max(w_observed, r.observed.size());
  }
  auto line = [&](std::string_view a, std::string_view b, std::string_view c, std::string_view d,
                  std::string_view e) {
    std::cout << fmt::format("{:<{}}  {:<{}}  {:<{}}  {:<{}}  {}\n", a, w_probe, b, w_target, c,
                             w_expected, d, w_observed, e);
  };
  line("PROBE", "TARGET", "EXPECTED", "OBSERVED", "RESULT");
  for (const Row& r : rows) {
    line(r.plan.id, r.plan.target, r.plan.expected.empty() ? "-" : r.plan.expected,
         r.observed.empty() ? "-" : r.observed, result_text(r));
  }
}

void print_json(const std::vector<Row>& rows) {
  for (const Row& r : rows) {
    auto optional = [](const std::string& s) {
      return s.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(s);
    };
    nlohmann::ordered_json line = {{"probe", r.plan.id},
                                   {"target", r.plan.target},
                                   {"expected", optional(r.plan.expected)},
                                   {"observed", optional(r.observed)},
                                   {"result", result_code(r.result)},
                                   {"skip_reason", optional(r.plan.skip)}};
    std::cout << line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
              << '\n';
  }
}

}  // namespace

void SelftestCommand::add_to(CLI::App& app) {
  run.add_to(app);
  app.add_option("--allowed-host", allowed_host,
                 "A host the policy allows that the probes may reach: the keep-alive Host "
                 "switching probe sends its first request there (skipped without it), the ECH "
                 "probe uses it as the outer SNI")
      ->type_name("NAME");
  app.add_option("--probe-timeout-ms", probe_timeout_ms, "How long each probe waits for an answer")
      ->check(CLI::Range(100u, 30000u));
  app.add_flag("--json", json, "One JSON object per probe instead of the table");
}

int SelftestCommand::execute() const {
  auto compiled = run.policy.compile();
  if (!compiled) {
    std::fprintf(stderr, "netfence: %s\n", compiled.error().message.c_str());
    return kExitUsage;
  }
  policy::Policy& pol = compiled.value();
  if (!allowed_host.empty() && policy::IpAddress::parse(allowed_host)) {
    std::fprintf(stderr, "netfence: --allowed-host takes a host name, not an address\n");
    return kExitUsage;
  }
  std::vector<policy::IpAddress> hosts = host_addresses();
  pol.set_host_addresses(hosts);

  ProbeContext context;
  context.dns_answer = pol.blocked_answer();
  context.host_address = pick_host_address(hosts);
  context.allowed_host = allowed_host;
  context.timeout = std::chrono::milliseconds(probe_timeout_ms);
  std::vector<PlannedProbe> plan = plan_probes(pol, context);

  std::vector<std::string> argv = {
      "/proc/self/exe", "selftest-probe",
      "--dns-answer",   std::string(policy::to_string(context.dns_answer)),
      "--timeout-ms",   std::to_string(probe_timeout_ms)};
  if (!context.host_address.empty()) {
    argv.insert(argv.end(), {"--host-address", context.host_address});
  }
  if (!allowed_host.empty()) argv.insert(argv.end(), {"--allowed-host", allowed_host});
  size_t to_run = 0;
  for (const PlannedProbe& p : plan) {
    if (p.skip.empty()) {
      argv.push_back(p.id);
      ++to_run;
    }
  }

  auto start = std::chrono::steady_clock::now();
  std::map<std::string, Reported> reports;
  if (to_run > 0) {
    UniqueFd output(::memfd_create("netfence-selftest", MFD_CLOEXEC));
    if (!output) {
      std::fprintf(stderr, "netfence: selftest: memfd_create: %s\n", std::strerror(errno));
      return sandbox::kExitSetupFailed;
    }
    RunCommand r = run;
    r.stdio = {-1, output.get(), -1};
    // The table is the output: decision events only when asked for (--log, --log-format, -v).
    if (r.log.file.empty() && r.log.format.empty() && !r.log.verbose) r.log.quiet = true;
    int code = r.run(std::move(argv));
    reports = parse_reports(read_all(output.get()));
    if (reports.empty() && code >= sandbox::kExitSetupFailed && code <= sandbox::kExitNotFound) {
      return code;  // the sandbox never ran the probes; run printed why
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<Row> rows;
  int counts[5] = {0, 0, 0, 0, 0};
  for (PlannedProbe& p : plan) {
    Row row{std::move(p), "", RowResult::kNoResult};
    if (!row.plan.skip.empty()) {
      row.result = RowResult::kSkipped;
    } else if (auto it = reports.find(row.plan.id); it != reports.end()) {
      row.observed = it->second.observed;
      row.result = it->second.status == ProbeStatus::kOk           ? RowResult::kOk
                   : it->second.status == ProbeStatus::kGotThrough ? RowResult::kGotThrough
                                                                   : RowResult::kInconclusive;
    }
    ++counts[static_cast<int>(row.result)];
    rows.push_back(std::move(row));
  }
  if (json) {
    print_json(rows);
  } else {
    std::cout << fmt::format("netfence selftest: {}\n", policy_summary(pol));
    print_table(rows);
    std::cout << fmt::format(
        "{} probes: {} ok, {} skipped, {} inconclusive, {} got through{} ({:.1f} s)\n", rows.size(),
        counts[static_cast<int>(RowResult::kOk)], counts[static_cast<int>(RowResult::kSkipped)],
        counts[static_cast<int>(RowResult::kInconclusive)],
        counts[static_cast<int>(RowResult::kGotThrough)],
        counts[static_cast<int>(RowResult::kNoResult)] > 0
            ? fmt::format(", {} without a result", counts[static_cast<int>(RowResult::kNoResult)])
            : "",
        seconds);
  }
  std::cout.flush();
  bool failed = counts[static_cast<int>(RowResult::kGotThrough)] > 0 ||
                counts[static_cast<int>(RowResult::kNoResult)] > 0;
  return failed ? kExitGotThrough : 0;
}

void ProbeCommand::add_to(CLI::App& app) {
  app.add_option("--dns-answer", dns_answer, "The sinkhole's answer: null, nxdomain, refused");
  app.add_option("--host-address", host_address, "This host's address (host-address probe)");
  app.add_option("--allowed-host", allowed_host, "A host the probes may reach");
  app.add_option("--timeout-ms", timeout_ms, "Per-probe timeout")->check(CLI::Range(100u, 30000u));
  app.add_option("probes", probes, "Probe ids")->required();
}

int ProbeCommand::execute() const {
  auto answer = policy::parse_blocked_answer(dns_answer);
  if (!answer) {
    std::fprintf(stderr, "netfence: %s\n", answer.error().message.c_str());
    return kExitUsage;
  }
  std::vector<std::string_view> known = probe_ids();
  for (const std::string& id : probes) {
    if (std::find(known.begin(), known.end(), id) == known.end()) {
      std::string list;
      for (std::string_view k : known) list += fmt::format("{}{}", list.empty() ? "" : ", ", k);
      std::fprintf(stderr, "netfence: unknown probe '%s' (known: %s)\n", id.c_str(), list.c_str());
      return kExitUsage;
    }
  }
  ProbeContext context;
  context.dns_answer = *answer;
  context.host_address = host_address;
  context.allowed_host = allowed_host;
  context.timeout = std::chrono::milliseconds(timeout_ms);
  bool through = false;
  for (const std::string& id : probes) {
    ProbeOutcome outcome = run_probe(id, context).value_or(ProbeOutcome{});
    through = through || outcome.status == ProbeStatus::kGotThrough;
    nlohmann::ordered_json line = {
        {"probe", id}, {"observed", outcome.observed}, {"status", to_string(outcome.status)}};
    // Flushed per line: what was observed survives if a later probe crashes the process.
    std::cout << line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
              << std::endl;
  }
  return through ? kExitGotThrough : 0;
}

}  // namespace netfence::cli
