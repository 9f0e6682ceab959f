#include "scenario.hpp"

#include "protocol/config.hpp"
#include "socket_model.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <stdexcept>

namespace pipepool::sim {
namespace {

constexpr uint64_t kMaxTasks = 1'000'000;
constexpr uint32_t kMaxWorkers = 62;

void put_leb128(std::string& out, uint64_t value) {
  do {
    uint8_t byte = value & 0x7f;
    value >>= 7;
    if (value != 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (value != 0);
}

bool get_leb128(std::string_view& in, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    value |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
    if (i > start) words.push_back(s.substr(start, i - start));
  }
  return words;
}

bool parse_u64(std::string_view text, uint64_t& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_u32(std::string_view text, uint32_t& out) {
  uint64_t v;
  if (!parse_u64(text, v) || v > UINT32_MAX) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

std::string size_text(uint64_t bytes) {
  return std::to_string(bytes);
}

}  // namespace

// ---- task payloads -----------------------------------------------------------------------------

std::string encode_task_payload(const TaskSpec& spec) {
  std::string payload;
  payload.reserve(spec.input_bytes > 20 ? spec.input_bytes : 20);
  put_leb128(payload, spec.duration_us);
  put_leb128(payload, spec.output_bytes);
  if (payload.size() < spec.input_bytes) payload.append(spec.input_bytes - payload.size(), 'p');
  return payload;
}

bool decode_task_payload(std::string_view payload, TaskSpec& out) {
  out.input_bytes = payload.size();
  return get_leb128(payload, out.duration_us) && get_leb128(payload, out.output_bytes);
}

// ---- options -----------------------------------------------------------------------------------

Options to_options(const Scenario& s) {
  Options options;
  options.processes = static_cast<int>(s.workers);
  options.strategy = s.strategy;
  options.scheduler = s.scheduler;
  options.demand_max_in_flight = s.demand_max_in_flight;
  options.demand_queue_budget = std::chrono::microseconds(s.demand_queue_budget_us);
  options.maxtasksperchild = s.max_tasks_per_child;
  options.max_retries = s.max_retries;
  options.task_timeout = std::chrono::milliseconds((s.task_timeout_us + 999) / 1000);
  // Each channel setting only with its transport (protocol::validate_channel rejects the others).
  if (s.transport == Transport::Pipes) {
    options.pipe_capacity_bytes = uint64_t{s.pipe_pages} * s.page_size;
  }
  options.enlarge_pipes = false;
  options.seed = s.engine_seed;
  options.custom_scheduler = s.custom_scheduler;
  options.custom_strategy = s.custom_strategy;
  options.transport = s.transport;
  options.framing = s.framing;
  options.python_task_overhead_bytes = s.python_task_overhead_bytes;
  options.python_result_overhead_bytes = s.python_result_overhead_bytes;
  // SO_SNDBUF's argument is half the value getsockopt reads back (the kernel doubles it).
  if (s.transport == Transport::SocketPair) options.socket_sndbuf_bytes = s.sndbuf_bytes / 2;
  return options;
}

Scenario scenario_from_options(const Options& options, uint32_t default_workers) {
  if (options.processes == 0) {
    throw std::invalid_argument("Pool(0) runs every task inline: there is nothing to simulate");
  }
  if (options.processes < -1) throw std::invalid_argument("processes must be >= -1");
  Scenario s;
  s.workers = options.processes == -1 ? default_workers : static_cast<uint32_t>(options.processes);
  s.strategy = options.strategy;
  s.scheduler = options.scheduler;
  s.demand_max_in_flight = options.demand_max_in_flight;
  s.demand_queue_budget_us = static_cast<uint64_t>(options.demand_queue_budget.count());
  s.custom_scheduler = options.custom_scheduler;
  s.custom_strategy = options.custom_strategy;
  s.max_tasks_per_child = options.maxtasksperchild;
  s.max_retries = options.max_retries;
  s.task_timeout_us = static_cast<uint64_t>(options.task_timeout.count()) * 1000;
  s.engine_seed = options.seed;
  if (options.transport == Transport::Pipes) {
    uint64_t capacity = options.pipe_capacity_bytes;
    if (capacity == 0) capacity = options.enlarge_pipes ? uint64_t{1} << 20 : uint64_t{64} << 10;
    // The kernel rounds a capacity up to a power-of-two number of pages.
    s.pipe_pages =
        static_cast<uint32_t>(std::bit_ceil((capacity + s.page_size - 1) / s.page_size));
  }
  s.transport = options.transport;
  s.framing = options.framing;
  s.python_task_overhead_bytes = options.python_task_overhead_bytes;
  s.python_result_overhead_bytes = options.python_result_overhead_bytes;
  // The kernel's doubling, without wmem_max's bound (the simulator cannot know the machine's).
  if (options.socket_sndbuf_bytes != 0) {
    s.sndbuf_bytes = static_cast<uint32_t>(std::max<uint64_t>(
        4608, std::min<uint64_t>(options.socket_sndbuf_bytes, INT32_MAX / 2) * 2));
  }
  return s;
}

// ---- the user's script -------------------------------------------------------------------------

std::shared_ptr<const Script> make_script(const Scenario& scenario) {
  if (scenario.workers == 0 || scenario.workers > kMaxWorkers) {
    throw std::invalid_argument("workers must be in 1.." + std::to_string(kMaxWorkers) + ", got " +
                                std::to_string(scenario.workers));
  }
  if (scenario.transport == Transport::SocketPair &&
      (scenario.sndbuf_bytes < SocketConfig{}.min_sndbuf_bytes ||
       scenario.sndbuf_bytes > INT32_MAX)) {
    throw std::invalid_argument(
        "sndbuf must be in " + std::to_string(SocketConfig{}.min_sndbuf_bytes) + ".." +
        std::to_string(INT32_MAX) + " bytes, got " + std::to_string(scenario.sndbuf_bytes));
  }
  // Each channel's size only with its transport, as the pool's Options (a setting the world
  // would ignore is an error, not a silent default).
  if (scenario.transport == Transport::Pipes && scenario.sndbuf_bytes != Scenario{}.sndbuf_bytes) {
    throw std::invalid_argument("sndbuf " + std::to_string(scenario.sndbuf_bytes) +
                                " is a socketpair's setting: with transport pipes, size the pipes "
                                "with pipe-pages");
  }
  if (scenario.transport == Transport::SocketPair &&
      scenario.pipe_pages != Scenario{}.pipe_pages) {
    throw std::invalid_argument("pipe-pages " + std::to_string(scenario.pipe_pages) +
                                " is a pipe's setting: with transport socketpair, size the "
                                "socket with sndbuf");
  }
  // The pool's own check of the channel settings (overheads only with Python's framing, and
  // within its bounds), with the pool's message.
  protocol::validate_channel(to_options(scenario));
  if (!std::has_single_bit(scenario.pipe_pages)) {
    throw std::invalid_argument("pipe-pages must be a power of two, got " +
                                std::to_string(scenario.pipe_pages));
  }
  if (!std::has_single_bit(scenario.page_size) || scenario.page_size < 16) {
    throw std::invalid_argument("page-size must be a power of two of at least 16, got " +
                                std::to_string(scenario.page_size));
  }
  auto script = std::make_shared<Script>();
  script->scenario = scenario;
  protocol::TaskId next = 1;
  auto add_task = [&](const TaskSpec& spec) {
    if (script->tasks.size() >= kMaxTasks) {
      throw std::invalid_argument("more than " + std::to_string(kMaxTasks) + " tasks");
    }
    script->tasks.push_back(spec);
    script->payloads.push_back(encode_task_payload(spec));
    // Python's framing: each message is a 4-byte length, then payload + the direction's overhead
    // (which holds the 32-byte header).
    script->total_bytes +=
        scenario.framing == Framing::Python
            ? 8 + scenario.python_task_overhead_bytes + scenario.python_result_overhead_bytes +
                  script->payloads.back().size() + spec.output_bytes
            : 2 * protocol::kHeaderBytes + script->payloads.back().size() + spec.output_bytes;
    return next++;
  };
  bool joined = false;
  for (size_t i = 0; i < scenario.calls.size(); ++i) {
    const Call& call = scenario.calls[i];
    using K = Call::Kind;
    using Op = Script::Op;
    if (joined) throw std::invalid_argument("no call may follow join");
    switch (call.kind) {
      case K::ApplyAsync:
      case K::Apply: {
        protocol::TaskId first = add_task(call.item);
        script->ops.push_back({Op::Kind::Submit, first, first + 1, i});
        if (call.kind == K::Apply)
          script->ops.push_back({Op::Kind::WaitTasks, first, first + 1, i});
        break;
      }
      case K::MapAsync:
      case K::Map: {
        if (call.chunksize == 0) throw std::invalid_argument("chunksize must be at least 1");
        protocol::TaskId first = next;
        for (uint64_t done = 0; done < call.items; done += call.chunksize) {
          const uint64_t k = std::min(call.chunksize, call.items - done);
          add_task(
              {call.item.input_bytes * k, call.item.output_bytes * k, call.item.duration_us * k});
        }
        script->ops.push_back({Op::Kind::Submit, first, next, i});
        if (call.kind == K::Map) script->ops.push_back({Op::Kind::WaitTasks, first, next, i});
        break;
      }
      case K::Wait:
        script->ops.push_back({Op::Kind::WaitTasks, 1, next, i});
        break;
      case K::Terminate:
        script->ops.push_back({Op::Kind::Terminate, 0, 0, i});
        break;
      case K::Join:
        script->ops.push_back({Op::Kind::Join, 0, 0, i});
        joined = true;
        break;
    }
  }
  if (!joined) script->ops.push_back({Script::Op::Kind::Join, 0, 0, scenario.calls.size()});
  return script;
}

uint64_t default_max_steps(const Script& script) {
  // A correct run moves its bytes in steps of a page or more (headers and frame tails aside), and
  // each task costs each process a bounded number of steps; the bound leaves a wide margin.
  const uint64_t pages = script.total_bytes / script.scenario.page_size;
  return 100'000 + 16 * pages + 64 * script.task_count() * (script.scenario.workers + 2);
}

// ---- text --------------------------------------------------------------------------------------

bool parse_strategy(std::string_view text, Strategy& out) {
  for (Strategy s : {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched, Strategy::ZeroCopy}) {
    if (text == to_string(s)) {
      out = s;
      return true;
    }
  }
  return false;
}

const char* to_string(Transport transport) {
  return transport == Transport::SocketPair ? "socketpair" : "pipes";
}

bool parse_transport(std::string_view text, Transport& out) {
  for (Transport t : {Transport::Pipes, Transport::SocketPair}) {
    if (text == to_string(t)) {
      out = t;
      return true;
    }
  }
  return false;
}

const char* to_string(Framing framing) {
  return framing == Framing::Python ? "python" : "pipepool";
}

bool parse_framing(std::string_view text, Framing& out) {
  for (Framing f : {Framing::Pipepool, Framing::Python}) {
    if (text == to_string(f)) {
      out = f;
      return true;
    }
  }
  return false;
}

bool parse_scheduler(std::string_view text, SchedulerKind& out) {
  for (SchedulerKind k :
       {SchedulerKind::Demand, SchedulerKind::ShortestBacklog, SchedulerKind::RoundRobin}) {
    if (text == to_string(k)) {
      out = k;
      return true;
    }
  }
  return false;
}

bool parse_size(std::string_view text, uint64_t& out) {
  uint64_t unit = 1;
  if (!text.empty() && (text.back() == 'K' || text.back() == 'k')) {
    unit = 1024;
    text.remove_suffix(1);
  } else if (!text.empty() && (text.back() == 'M' || text.back() == 'm')) {
    unit = 1024 * 1024;
    text.remove_suffix(1);
  }
  uint64_t v;
  if (!parse_u64(text, v) || v > (uint64_t{1} << 40) / unit) return false;
  out = v * unit;
  return true;
}

bool parse_duration_ms(std::string_view text, uint64_t& out_us) {
  const size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (frac.size() > 3 || (dot != std::string_view::npos && frac.empty())) return false;
  uint64_t ms = 0, part = 0;
  if (!parse_u64(whole, ms) || ms > (uint64_t{1} << 40)) return false;
  if (!frac.empty() && !parse_u64(frac, part)) return false;
  for (size_t i = frac.size(); i < 3; ++i) part *= 10;
  out_us = ms * 1000 + part;
  return true;
}

std::string format_ms(uint64_t us) {
  std::string out = std::to_string(us / 1000);
  if (uint64_t frac = us % 1000; frac != 0) {
    std::string digits = std::to_string(frac);
    digits.insert(0, 3 - digits.size(), '0');
    while (digits.back() == '0') digits.pop_back();
    out += "." + digits;
  }
  return out;
}

bool parse_call(std::string_view line, Call& out, std::string& error) {
  const std::vector<std::string_view> w = split_words(trim(line));
  if (w.empty()) {
    error = "empty call";
    return false;
  }
  Call call;
  auto sizes = [&](size_t at) {
    if (!parse_size(w[at], call.item.input_bytes)) {
      error = "bad task payload size '" + std::string(w[at]) + "'";
      return false;
    }
    if (!parse_size(w[at + 1], call.item.output_bytes)) {
      error = "bad result payload size '" + std::string(w[at + 1]) + "'";
      return false;
    }
    if (!parse_duration_ms(w[at + 2], call.item.duration_us)) {
      error = "bad duration '" + std::string(w[at + 2]) + "' (milliseconds, up to 3 decimals)";
      return false;
    }
    return true;
  };
  const std::string_view verb = w[0];
  if (verb == "apply_async" || verb == "apply") {
    call.kind = verb == "apply" ? Call::Kind::Apply : Call::Kind::ApplyAsync;
    if (w.size() != 4) {
      error = std::string(verb) + " takes IN OUT DURATION_MS";
      return false;
    }
    if (!sizes(1)) return false;
  } else if (verb == "map_async" || verb == "map") {
    call.kind = verb == "map" ? Call::Kind::Map : Call::Kind::MapAsync;
    if (w.size() != 5 && w.size() != 6) {
      error = std::string(verb) + " takes N IN OUT DURATION_MS [CHUNKSIZE]";
      return false;
    }
    if (!parse_u64(w[1], call.items) || call.items == 0 || call.items > kMaxTasks) {
      error = "bad item count '" + std::string(w[1]) + "'";
      return false;
    }
    if (!sizes(2)) return false;
    if (w.size() == 6 && (!parse_u64(w[5], call.chunksize) || call.chunksize == 0)) {
      error = "bad chunksize '" + std::string(w[5]) + "'";
      return false;
    }
  } else if (verb == "wait" || verb == "terminate" || verb == "join") {
    if (w.size() != 1) {
      error = std::string(verb) + " takes no argument";
      return false;
    }
    call.kind = verb == "wait"        ? Call::Kind::Wait
                : verb == "terminate" ? Call::Kind::Terminate
                                      : Call::Kind::Join;
  } else {
    error = "unknown call '" + std::string(verb) +
            "' (apply_async, apply, map_async, map, wait, terminate, join)";
    return false;
  }
  out = call;
  return true;
}

bool parse_task_option(std::string_view text, Call& out, std::string& error) {
  const size_t a = text.find(':');
  const size_t b = a == std::string_view::npos ? a : text.find(':', a + 1);
  if (b == std::string_view::npos || text.find(':', b + 1) != std::string_view::npos) {
    error = "--task takes IN:OUT:DURATION_MS, got '" + std::string(text) + "'";
    return false;
  }
  std::string line = "apply_async " + std::string(text.substr(0, a)) + " " +
                     std::string(text.substr(a + 1, b - a - 1)) + " " +
                     std::string(text.substr(b + 1));
  return parse_call(line, out, error);
}

bool parse_scenario(std::string_view text, Scenario& out, std::string& error) {
  Scenario scenario = out;
  size_t line_number = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++line_number;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = trim(line);
    if (line.empty()) continue;
    auto fail = [&](const std::string& why) {
      error = "line " + std::to_string(line_number) + ": " + why;
      return false;
    };
    const std::vector<std::string_view> w = split_words(line);
    const std::string_view key = w[0];
    const bool one_value = w.size() == 2;
    if (key == "strategy") {
      if (!one_value || !parse_strategy(w[1], scenario.strategy)) {
        return fail("strategy takes epoll, batched, unbatched or zerocopy");
      }
    } else if (key == "scheduler") {
      if (!one_value || !parse_scheduler(w[1], scenario.scheduler)) {
        return fail("scheduler takes demand, shortest-backlog or round-robin");
      }
    } else if (key == "demand-in-flight") {
      if (!one_value || !parse_u32(w[1], scenario.demand_max_in_flight)) {
        return fail("demand-in-flight takes a number");
      }
    } else if (key == "workers") {
      if (!one_value || !parse_u32(w[1], scenario.workers)) return fail("workers takes a number");
    } else if (key == "pipe-pages") {
      if (!one_value || !parse_u32(w[1], scenario.pipe_pages)) {
        return fail("pipe-pages takes a number");
      }
    } else if (key == "page-size") {
      uint64_t v;
      if (!one_value || !parse_size(w[1], v) || v > UINT32_MAX) {
        return fail("page-size takes a size");
      }
      scenario.page_size = static_cast<uint32_t>(v);
    } else if (key == "transport") {
      if (!one_value || !parse_transport(w[1], scenario.transport)) {
        return fail("transport takes pipes or socketpair");
      }
    } else if (key == "sndbuf") {
      uint64_t v;
      if (!one_value || !parse_size(w[1], v) || v > INT32_MAX) {
        return fail("sndbuf takes a size in bytes (what getsockopt(SO_SNDBUF) reads)");
      }
      scenario.sndbuf_bytes = static_cast<uint32_t>(v);
    } else if (key == "framing") {
      if (!one_value || !parse_framing(w[1], scenario.framing)) {
        return fail("framing takes pipepool or python");
      }
    } else if (key == "task-overhead" || key == "result-overhead") {
      uint32_t& field = key == "task-overhead" ? scenario.python_task_overhead_bytes
                                               : scenario.python_result_overhead_bytes;
      if (!one_value || !parse_u32(w[1], field)) {
        return fail(std::string(key) + " takes a number of bytes");
      }
    } else if (key == "task-timeout-ms") {
      if (!one_value || !parse_duration_ms(w[1], scenario.task_timeout_us)) {
        return fail("task-timeout-ms takes milliseconds");
      }
    } else if (key == "max-tasks-per-child") {
      if (!one_value || !parse_u32(w[1], scenario.max_tasks_per_child)) {
        return fail("max-tasks-per-child takes a number");
      }
    } else if (key == "max-retries") {
      if (!one_value || !parse_u32(w[1], scenario.max_retries)) {
        return fail("max-retries takes a number");
      }
    } else if (key == "engine-seed") {
      if (!one_value || !parse_u64(w[1], scenario.engine_seed)) {
        return fail("engine-seed takes a number");
      }
    } else if (key == "task") {
      Call call;
      std::string why;
      if (!one_value || !parse_task_option(w[1], call, why)) return fail(why);
      scenario.calls.push_back(call);
    } else {
      Call call;
      std::string why;
      if (!parse_call(line, call, why)) return fail(why);
      scenario.calls.push_back(call);
    }
  }
  out = std::move(scenario);
  return true;
}

std::string describe_call(const Call& call) {
  auto item = [&] {
    return size_text(call.item.input_bytes) + " " + size_text(call.item.output_bytes) + " " +
           format_ms(call.item.duration_us);
  };
  switch (call.kind) {
    case Call::Kind::ApplyAsync:
      return "apply_async " + item();
    case Call::Kind::Apply:
      return "apply " + item();
    case Call::Kind::MapAsync:
    case Call::Kind::Map:
      return std::string(call.kind == Call::Kind::Map ? "map " : "map_async ") +
             std::to_string(call.items) + " " + item() + " " + std::to_string(call.chunksize);
    case Call::Kind::Wait:
      return "wait";
    case Call::Kind::Terminate:
      return "terminate";
    case Call::Kind::Join:
      return "join";
  }
  return "?";
}

std::string to_text(const Scenario& s) {
  std::string out;
  out += "strategy " + std::string(to_string(s.strategy)) + "\n";
  out += "scheduler " + std::string(to_string(s.scheduler)) + "\n";
  if (s.scheduler == SchedulerKind::Demand) {
    out += "demand-in-flight " + std::to_string(s.demand_max_in_flight) + "\n";
  }
  out += "workers " + std::to_string(s.workers) + "\n";
  out += "pipe-pages " + std::to_string(s.pipe_pages) + "\n";
  out += "page-size " + std::to_string(s.page_size) + "\n";
  if (s.transport != Transport::Pipes) {
    out += "transport " + std::string(to_string(s.transport)) + "\n";
  }
  if (s.transport != Transport::Pipes || s.sndbuf_bytes != Scenario{}.sndbuf_bytes) {
    out += "sndbuf " + std::to_string(s.sndbuf_bytes) + "\n";
  }
  if (s.framing != Framing::Pipepool) out += "framing " + std::string(to_string(s.framing)) + "\n";
  if (s.framing != Framing::Pipepool || s.python_task_overhead_bytes != 0) {
    out += "task-overhead " + std::to_string(s.python_task_overhead_bytes) + "\n";
  }
  if (s.framing != Framing::Pipepool || s.python_result_overhead_bytes != 0) {
    out += "result-overhead " + std::to_string(s.python_result_overhead_bytes) + "\n";
  }
  if (s.task_timeout_us != 0) out += "task-timeout-ms " + format_ms(s.task_timeout_us) + "\n";
  if (s.max_tasks_per_child != 0) {
    out += "max-tasks-per-child " + std::to_string(s.max_tasks_per_child) + "\n";
  }
  if (s.max_retries != 0) out += "max-retries " + std::to_string(s.max_retries) + "\n";
  if (s.engine_seed != Options{}.seed) {
    out += "engine-seed " + std::to_string(s.engine_seed) + "\n";
  }
  if (s.custom_scheduler) {
    out += "# with a user's scheduler: " + std::string(s.custom_scheduler->name()) + "\n";
  }
  if (s.custom_strategy) {
    out += "# with a user's strategy: " + std::string(s.custom_strategy->name()) + "\n";
  }
  for (const Call& call : s.calls) out += describe_call(call) + "\n";
  return out;
}

}  // namespace pipepool::sim
