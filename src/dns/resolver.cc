#include "dns/resolver.h"

#include <sys/stat.h>

#include <algorithm>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <charconv>
#include <fstream>
#include <memory>
#include <sstream>

#include "fmt/format.h"

namespace netfence::dns {

using asio::redirect_error;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string cache_key(std::string_view name, uint16_t type, uint16_t klass, bool dnssec, bool cd) {
  return fmt::format("{}/{}/{}/{}{}", name, type, klass, dnssec ? "do" : "", cd ? "cd" : "");
}

std::string cache_key(const wire::DnsMessage& query) {
  const wire::DnsQuestion& q = query.questions.front();
  return cache_key(q.name.text, q.type, q.klass, query.edns && query.edns->dnssec_ok,
                   query.header.cd);
}

void add_addresses(const wire::DnsMessage& answer, const std::string& name, uint16_t type,
                   std::vector<policy::IpAddress>& addresses) {
  auto chain = wire::extract_dns_answer(answer, name, type);
  if (!chain) return;
  for (const wire::DnsAddress& d : chain->addresses) {
    addresses.push_back(type == wire::dns_type::kA ? policy::IpAddress::v4({d.bytes[0], d.bytes[1],
                                                                            d.bytes[2], d.bytes[3]})
                                                   : policy::IpAddress::v6(d.bytes));
  }
}

void age_records(std::vector<wire::DnsRecord>& records, uint32_t elapsed) {
  for (wire::DnsRecord& r : records) r.ttl = r.ttl > elapsed ? r.ttl - elapsed : 0;
}

std::optional<uint32_t> cache_ttl(const wire::DnsMessage& answer) {
  uint8_t rcode = answer.header.rcode;
  if (answer.header.tc ||
      (rcode != wire::dns_rcode::kNoError && rcode != wire::dns_rcode::kNxDomain)) {
    return std::nullopt;
  }
  std::optional<uint32_t> ttl;
  if (answer.answers.empty()) {
    // Negative (NXDOMAIN or NODATA): as long as the SOA says (RFC 2308 5), else not at all.
    for (const wire::DnsRecord& r : answer.authorities) {
      if (r.type != wire::dns_type::kSoa || r.rdata.size() < 4) continue;
      ByteSpan rdata(r.rdata);
      ttl = std::min(r.ttl, u32_at(rdata, rdata.size() - 4));
    }
  } else {
    for (const auto* section : {&answer.answers, &answer.authorities}) {
      for (const wire::DnsRecord& r : *section) ttl = std::min(ttl.value_or(r.ttl), r.ttl);
    }
  }
  if (!ttl || *ttl == 0 || *ttl > 0x7fffffff) return std::nullopt;
  return std::min(*ttl, Resolver::kMaxCacheTtl);
}

}  // namespace

bool answers_question(const wire::DnsMessage& answer, const wire::DnsQuestion& question) {
  return answer.header.qr && answer.questions.size() == 1 &&
         answer.questions[0].name.text == question.name.text &&
         answer.questions[0].type == question.type && answer.questions[0].klass == question.klass;
}

Result<asio::ip::udp::endpoint> parse_server(std::string_view text) {
  std::string_view host = text;
  std::optional<std::string_view> port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return fail(fmt::format("'{}': missing ']'", text));
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return fail(fmt::format("'{}': expected ':PORT'", text));
      port_text = rest.substr(1);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    host = text.substr(0, text.find(':'));
    port_text = text.substr(text.find(':') + 1);
  }
  uint16_t port = 53;
  if (port_text) {
    unsigned value = 0;
    auto [end, ec] =
        std::from_chars(port_text->data(), port_text->data() + port_text->size(), value);
    if (ec != std::errc() || end != port_text->data() + port_text->size() || value == 0 ||
        value > 65535) {
      return fail(fmt::format("'{}': bad port '{}'", text, *port_text));
    }
    port = static_cast<uint16_t>(value);
  }
  asio::error_code ec;
  asio::ip::address address = asio::ip::make_address(std::string(host), ec);
  if (ec) return fail(fmt::format("'{}' is not an IP address (with an optional port)", text));
  return asio::ip::udp::endpoint(address, port);
}

Result<ResolverConfig> config_from_resolv_conf(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(fmt::format("cannot read '{}'", path));
  ResolverConfig config;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string keyword;
    if (!(words >> keyword) || keyword[0] == '#' || keyword[0] == ';') continue;
    if (keyword == "nameserver") {
      std::string address;
      words >> address;
      if (address.find('%') != std::string::npos) continue;  // scoped link-local: skip
      asio::error_code ec;
      auto a = asio::ip::make_address(address, ec);
      if (!ec) config.servers.emplace_back(a, 53);
    } else if (keyword == "options") {
      std::string option;
      while (words >> option) {
        int value = 0;
        auto number = [&](std::string_view prefix) {
          if (option.rfind(prefix, 0) != 0) return false;
          auto [p, ec] =
              std::from_chars(option.data() + prefix.size(), option.data() + option.size(), value);
          return ec == std::errc() && value > 0;
        };
        if (number("timeout:")) config.timeout = std::chrono::seconds(std::min(value, 30));
        if (number("attempts:")) config.attempts = std::min(value, 5);
      }
    }
  }
  if (config.servers.empty()) return fail(fmt::format("'{}' names no usable nameserver", path));
  return config;
}

void HostsFile::refresh() {
  if (recheck_.count() > 0) {
    auto now = clock_();
    if (checked_ && now - *checked_ < recheck_) return;
    checked_ = now;
  }
  struct stat st;
  if (path_.empty() || ::stat(path_.c_str(), &st) != 0) {
    entries_.clear();
    loaded_ = false;
    return;
  }
  if (loaded_ && st.st_dev == dev_ && st.st_ino == ino_ && st.st_size == size_ &&
      st.st_mtim.tv_sec == mtime_.tv_sec && st.st_mtim.tv_nsec == mtime_.tv_nsec) {
    return;
  }
  entries_.clear();
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string address;
    if (!(words >> address)) continue;
    auto parsed = policy::IpAddress::parse(address);
    if (!parsed) continue;
    std::string alias;
    while (words >> alias) {
      std::string l = lower(alias);
      if (!l.empty() && l.back() == '.') l.pop_back();
      if (l.empty()) continue;
      std::vector<policy::IpAddress>& addresses = entries_[l];
      if (std::find(addresses.begin(), addresses.end(), *parsed) == addresses.end()) {
        addresses.push_back(*parsed);
      }
    }
  }
  loaded_ = true;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  size_ = st.st_size;
  mtime_ = st.st_mtim;
}

std::vector<policy::IpAddress> HostsFile::lookup(std::string_view name) {
  refresh();
  auto it = entries_.find(lower(name));
  if (it == entries_.end()) return {};
  return it->second;
}

std::vector<policy::IpAddress> lookup_hosts_file(const std::string& path, std::string_view name) {
  return HostsFile(path).lookup(name);
}

Resolver::Resolver(asio::any_io_executor executor, ResolverConfig config)
    : executor_(std::move(executor)),
      config_(std::move(config)),
      hosts_(config_.hosts_file, kHostsRecheck, config_.clock),
      random_(std::random_device{}()) {}

bool Resolver::cached(const std::string& key, uint16_t id, wire::DnsMessage& out) {
  auto it = cache_.find(key);
  if (it == cache_.end()) return false;
  auto now = config_.clock();
  if (it->second.expires <= now) {
    lru_.erase(it->second.lru);
    cache_.erase(it);
    return false;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  out = it->second.answer;
  auto elapsed = static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(now - it->second.stored).count());
  age_records(out.answers, elapsed);
  age_records(out.authorities, elapsed);
  age_records(out.additionals, elapsed);
  out.header.id = id;
  ++cache_hits_;
  return true;
}

void Resolver::store(const std::string& key, const wire::DnsMessage& answer) {
  if (config_.cache_capacity == 0) return;
  std::optional<uint32_t> ttl = cache_ttl(answer);
  if (!ttl) return;
  auto now = config_.clock();
  if (auto it = cache_.find(key); it != cache_.end()) {
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
  while (cache_.size() >= config_.cache_capacity && !lru_.empty()) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  cache_.emplace(key, CacheEntry{answer, now, now + std::chrono::seconds(*ttl), lru_.begin()});
}

std::optional<std::vector<policy::IpAddress>> Resolver::cached_addresses(const std::string& name) {
  const wire::DnsMessage* answers[2] = {};
  const uint16_t types[2] = {wire::dns_type::kA, wire::dns_type::kAaaa};
  auto now = config_.clock();
  for (int i = 0; i < 2; ++i) {
    auto it = cache_.find(cache_key(name, types[i], wire::kDnsClassIn, false, false));
    if (it == cache_.end() || it->second.expires <= now) return std::nullopt;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    answers[i] = &it->second.answer;
  }
  std::vector<policy::IpAddress> addresses;
  for (int i = 0; i < 2; ++i) add_addresses(*answers[i], name, types[i], addresses);
  cache_hits_ += 2;
  return addresses;
}

std::optional<wire::DnsMessage> Resolver::cached_answer(const wire::DnsMessage& query) {
  if (query.questions.size() != 1 || cache_.empty()) return std::nullopt;
  wire::DnsMessage hit;
  if (!cached(cache_key(query), query.header.id, hit)) return std::nullopt;
  return hit;
}

asio::awaitable<Result<wire::DnsMessage>> Resolver::exchange(const wire::DnsMessage& query) {
  if (query.questions.size() != 1) co_return fail("query_unusable: not exactly one question");
  if (config_.servers.empty()) co_return fail("upstream_timeout: no upstream servers");
  std::string key = cache_key(query);
  wire::DnsMessage hit;
  if (cached(key, query.header.id, hit)) co_return hit;

  // What goes upstream: the client's question and flags with our own random ID and our EDNS
  // (1232 bytes, the client's DO bit, none of its options: no client cookies or subnets leave).
  wire::DnsMessage upstream;
  upstream.header.id = static_cast<uint16_t>(random_());
  upstream.header.rd = true;
  upstream.header.cd = query.header.cd;
  upstream.questions = query.questions;
  upstream.edns = wire::DnsEdns{};
  upstream.edns->dnssec_ok = query.edns && query.edns->dnssec_ok;
  auto bytes = wire::encode_dns_message(upstream);
  if (!bytes) co_return fail("query_unusable: " + bytes.error().message);

  const auto& servers = config_.servers;
  size_t start = next_server_++ % servers.size();
  std::string last_error = "upstream_timeout";
  for (int attempt = 0; attempt < config_.attempts; ++attempt) {
    for (size_t i = 0; i < servers.size(); ++i) {
      const auto& server = servers[(start + i) % servers.size()];
      ++upstream_queries_;
      // Fresh ID per try, so a late answer to an earlier try cannot be mistaken for this one.
      uint16_t id = static_cast<uint16_t>(random_());
      (*bytes)[0] = static_cast<std::byte>(id >> 8);
      (*bytes)[1] = static_cast<std::byte>(id & 0xff);
      auto answer = co_await try_udp(server, *bytes, upstream.questions.front());
      if (!answer) {
        last_error = answer.error().message;
        continue;
      }
      uint8_t rcode = answer->header.rcode;
      if (rcode == wire::dns_rcode::kServFail || rcode == wire::dns_rcode::kNotImp ||
          rcode == wire::dns_rcode::kRefused) {
        last_error = fmt::format("upstream_rcode: {} answered RCODE {}",
                                 server.address().to_string(), rcode);
        continue;
      }
      answer->header.id = query.header.id;
      store(key, *answer);
      co_return std::move(answer.value());
    }
  }
  co_return fail(last_error);
}

asio::awaitable<Result<wire::DnsMessage>> Resolver::try_udp(const asio::ip::udp::endpoint& server,
                                                            const std::vector<std::byte>& query,
                                                            const wire::DnsQuestion& question) {
  asio::error_code ec;
  asio::ip::udp::socket socket(executor_);
  socket.open(server.protocol(), ec);
  if (!ec) socket.connect(server, ec);
  if (ec) co_return fail("upstream_unreachable: " + ec.message());
  co_await socket.async_send(asio::buffer(query), redirect_error(use_awaitable, ec));
  if (ec) co_return fail("upstream_unreachable: " + ec.message());
  uint16_t id =
      static_cast<uint16_t>(static_cast<uint8_t>(query[0]) << 8 | static_cast<uint8_t>(query[1]));
  asio::steady_timer timer(executor_, Clock::now() + config_.timeout);
  // Not zero-filled: 64 KiB of memset per try showed up in the profile.
  auto buffer = std::make_unique_for_overwrite<std::byte[]>(wire::kDnsMaxMessageSize);
  while (true) {
    asio::error_code timer_ec;
    auto result =
        co_await (socket.async_receive(asio::buffer(buffer.get(), wire::kDnsMaxMessageSize),
                                       redirect_error(use_awaitable, ec)) ||
                  timer.async_wait(redirect_error(use_awaitable, timer_ec)));
    if (result.index() == 1) co_return fail("upstream_timeout");
    // ECONNREFUSED (an ICMP port unreachable) fails this server at once.
    if (ec) co_return fail("upstream_unreachable: " + ec.message());
    size_t n = std::get<0>(result);
    auto answer = wire::parse_dns_message(ByteSpan(buffer.get(), n));
    if (!answer || answer->header.id != id || !answers_question(*answer, question)) continue;
    if (answer->header.tc) co_return co_await try_tcp(server, query, question);
    co_return std::move(answer.value());
  }
}

asio::awaitable<Result<wire::DnsMessage>> Resolver::try_tcp(const asio::ip::udp::endpoint& server,
                                                            const std::vector<std::byte>& query,
                                                            const wire::DnsQuestion& question) {
  auto framed = wire::frame_dns_tcp(query);
  if (!framed) co_return framed.error();
  asio::ip::tcp::socket socket(executor_);
  asio::steady_timer timer(executor_, Clock::now() + config_.timeout);
  asio::error_code ec;
  asio::error_code timer_ec;
  asio::ip::tcp::endpoint endpoint(server.address(), server.port());
  auto connected = co_await (socket.async_connect(endpoint, redirect_error(use_awaitable, ec)) ||
                             timer.async_wait(redirect_error(use_awaitable, timer_ec)));
  if (connected.index() == 1) co_return fail("upstream_timeout: tcp connect");
  if (ec) co_return fail("upstream_unreachable: tcp: " + ec.message());
  auto wrote = co_await (
      asio::async_write(socket, asio::buffer(*framed), redirect_error(use_awaitable, ec)) ||
      timer.async_wait(redirect_error(use_awaitable, timer_ec)));
  if (wrote.index() == 1 || ec) co_return fail("upstream_unreachable: tcp write");
  std::array<std::byte, 2> length{};
  auto got =
      co_await (asio::async_read(socket, asio::buffer(length), redirect_error(use_awaitable, ec)) ||
                timer.async_wait(redirect_error(use_awaitable, timer_ec)));
  if (got.index() == 1 || ec) co_return fail("upstream_timeout: tcp read");
  size_t size =
      static_cast<size_t>(static_cast<uint8_t>(length[0]) << 8 | static_cast<uint8_t>(length[1]));
  std::vector<std::byte> buffer(size);
  got =
      co_await (asio::async_read(socket, asio::buffer(buffer), redirect_error(use_awaitable, ec)) ||
                timer.async_wait(redirect_error(use_awaitable, timer_ec)));
  if (got.index() == 1 || ec) co_return fail("upstream_timeout: tcp read");
  auto answer = wire::parse_dns_message(buffer);
  if (!answer) co_return fail("upstream_malformed: " + answer.error().message);
  uint16_t id =
      static_cast<uint16_t>(static_cast<uint8_t>(query[0]) << 8 | static_cast<uint8_t>(query[1]));
  if (answer->header.id != id || !answers_question(*answer, question)) {
    co_return fail("upstream_malformed: answer does not match the question");
  }
  co_return std::move(answer.value());
}

asio::awaitable<Result<std::vector<policy::IpAddress>>> Resolver::resolve(const std::string& name) {
  std::vector<policy::IpAddress> addresses = hosts_.lookup(name);
  if (!addresses.empty()) co_return addresses;
  // Both answers cached (a dial by name asks for every connection): the addresses come
  // straight from the cache, without building queries, copying answers or running two lookups.
  if (auto hit = cached_addresses(name)) co_return std::move(*hit);
  auto wire_name = wire::dns_name_wire(name);
  if (!wire_name) co_return fail(fmt::format("'{}' is not a DNS name", name));
  auto make_query = [&](uint16_t type) {
    wire::DnsMessage q;
    q.header.id = static_cast<uint16_t>(random_());
    q.header.rd = true;
    q.questions.push_back(
        wire::DnsQuestion{wire::DnsName{*wire_name, name}, type, wire::kDnsClassIn});
    return q;
  };
  wire::DnsMessage qa = make_query(wire::dns_type::kA);
  wire::DnsMessage qaaaa = make_query(wire::dns_type::kAaaa);
  auto [a, aaaa] = co_await (exchange(qa) && exchange(qaaaa));
  std::string error;
  for (auto* answer : {&a, &aaaa}) {
    if (!*answer) {
      error = answer->error().message;
      continue;
    }
    add_addresses(answer->value(), name, answer == &a ? wire::dns_type::kA : wire::dns_type::kAaaa,
                  addresses);
  }
  if (addresses.empty() && !a && !aaaa) co_return fail(error);
  co_return addresses;
}

}  // namespace netfence::dns
