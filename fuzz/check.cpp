// check(): generate workloads, explore them on the simulator, shrink the first failure.
#include "check.hpp"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "protocol/frame.hpp"

namespace pipepool::fuzz {
namespace {

using sim::Call;
using sim::RunStatus;
using sim::Scenario;

constexpr uint64_t kHeaderBytes = 32;  // one frame header (protocol/frame.hpp)

bool is_task_call(const Call& call) {
  return call.kind == Call::Kind::ApplyAsync || call.kind == Call::Kind::Apply ||
         call.kind == Call::Kind::MapAsync || call.kind == Call::Kind::Map;
}

bool is_map(const Call& call) {
  return call.kind == Call::Kind::MapAsync || call.kind == Call::Kind::Map;
}

uint64_t capacity_bytes(const Scenario& s) {
  return uint64_t{s.pipe_pages} * s.page_size;
}

uint64_t pages_for(uint64_t bytes) {
  const uint64_t pages = std::max<uint64_t>(1, (bytes + 4095) / 4096);
  return std::bit_ceil(pages);
}

uint64_t draw_size(Random& random, uint64_t capacity, uint64_t page) {
  switch (random.below(10)) {
    case 0:
    case 1:
    case 2:
    case 3:
      return random.below(capacity / 4 + 1);
    case 4:
    case 5:
    case 6:
      return capacity - page + random.below(2 * page);
    default:
      return random.below(2 * capacity + 1);
  }
}

uint64_t draw_duration_us(Random& random) {
  return random.below(2) == 0 ? 0 : 1000 * random.below(5);
}

// A map's items fused into one task of the same bytes (a chunk of k items is one task of k times
// the item), as apply / apply_async.
uint64_t tasks_of(const Call& call);

// The frame headers of the tasks it merges are added to the payloads, so that the merged task
// puts as many bytes into each pipe as the tasks it replaces.
Call as_single_task(const Call& call) {
  Call out = call;
  const uint64_t k = call.items;
  const uint64_t headers = (tasks_of(call) - 1) * kHeaderBytes;
  out.kind = call.kind == Call::Kind::Map ? Call::Kind::Apply : Call::Kind::ApplyAsync;
  out.items = 1;
  out.chunksize = 1;
  out.item.input_bytes = call.item.input_bytes * k + headers;
  out.item.output_bytes = call.item.output_bytes * k + headers;
  out.item.duration_us = call.item.duration_us * k;
  return out;
}

// A map's tasks as one task whose frame takes as many page slots as all of theirs together.
Call as_single_task_by_slots(const Call& call, uint64_t page) {
  Call out = as_single_task(call);
  const auto slots = [&](uint64_t payload) { return (payload + kHeaderBytes + page - 1) / page; };
  const uint64_t k = call.items, full = k / call.chunksize, rest = k % call.chunksize;
  const auto total = [&](uint64_t item) {
    uint64_t pages = full * slots(item * call.chunksize) + (rest ? slots(item * rest) : 0);
    return pages * page - kHeaderBytes;
  };
  out.item.input_bytes = total(call.item.input_bytes);
  out.item.output_bytes = total(call.item.output_bytes);
  return out;
}

uint64_t tasks_of(const Call& call) {
  if (!is_task_call(call)) return 0;
  if (!is_map(call)) return 1;
  return (call.items + call.chunksize - 1) / call.chunksize;
}

// Sizes below `v` worth trying first: nothing, half, and the frame boundaries of pages and of the
// capacity (a frame of exactly k pages, and of k pages and one byte).
std::vector<uint64_t> size_snaps(uint64_t v, uint64_t capacity, uint64_t page) {
  std::set<uint64_t> snaps{0, v / 2};
  const auto add = [&](uint64_t frame_bytes) {
    if (frame_bytes >= kHeaderBytes) snaps.insert(frame_bytes - kHeaderBytes);
  };
  add(capacity + 1);
  add(capacity - page + 1);
  const uint64_t page_below = (v + kHeaderBytes) / page * page;
  add(page_below);
  add(page_below + 1);
  std::vector<uint64_t> out;
  for (uint64_t s : snaps) {
    if (s < v) out.push_back(s);
  }
  return out;
}

uint64_t& size_field(Call& call, int field) {
  return field == 0 ? call.item.input_bytes : call.item.output_bytes;
}

uint64_t mix(uint64_t a, uint64_t b) {
  Random r(a ^ (b * 0x9E3779B97F4A7C15ULL));
  return r.next();
}

}  // namespace

uint64_t scaled(uint64_t count) {
  uint64_t divisor = 1;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  divisor = 4;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  divisor = 4;
#endif
#endif
  if (const char* env = std::getenv("PIPEPOOL_FUZZ_SCALE")) {
    const uint64_t v = std::strtoull(env, nullptr, 10);
    if (v > 0) divisor = v;
  }
  return std::max<uint64_t>(1, count / divisor);
}

Scenario base_scenario(const Options& options, const Settings& settings) {
  Scenario s;
  s.strategy = options.strategy;
  s.scheduler = options.scheduler;
  s.demand_max_in_flight = options.demand_max_in_flight;
  s.custom_scheduler = options.custom_scheduler;
  s.custom_strategy = options.custom_strategy;
  s.engine_seed = options.seed;
  s.max_tasks_per_child = options.maxtasksperchild;
  s.max_retries = options.max_retries;
  s.task_timeout_us = static_cast<uint64_t>(options.task_timeout.count()) * 1000;
  s.workers = options.processes > 0 ? static_cast<uint32_t>(options.processes) : 1;
  if (settings.pipe_pages != 0) {
    s.pipe_pages = settings.pipe_pages;
  } else if (options.pipe_capacity_bytes != 0) {
    s.pipe_pages = static_cast<uint32_t>(pages_for(options.pipe_capacity_bytes));
  } else {
    s.pipe_pages = options.enlarge_pipes ? 256 : 16;
  }
  return s;
}

Scenario generate(const Scenario& base, Random& random, const Settings& settings,
                  bool vary_workers) {
  Scenario s = base;
  s.calls.clear();
  if (vary_workers) {
    s.workers =
        1 + static_cast<uint32_t>(random.below(std::max<uint32_t>(1, settings.max_workers)));
  }
  const uint64_t capacity = capacity_bytes(s);
  const uint64_t calls = 1 + random.below(std::max<uint32_t>(1, settings.max_calls));
  for (uint64_t i = 0; i < calls; ++i) {
    Call call;
    const uint64_t pick = random.below(20);
    if (pick < 7) {
      call.kind = Call::Kind::ApplyAsync;
    } else if (pick < 10) {
      call.kind = Call::Kind::Apply;
    } else if (pick < 13) {
      call.kind = Call::Kind::MapAsync;
    } else if (pick < 16) {
      call.kind = Call::Kind::Map;
    } else {
      call.kind = Call::Kind::Wait;
    }
    if (is_map(call)) {
      call.items = 1 + random.below(std::max<uint32_t>(1, settings.max_items));
      call.chunksize = 1 + random.below(2);
    }
    if (is_task_call(call)) {
      const uint64_t divisor = is_map(call) ? call.items : 1;
      call.item.input_bytes = draw_size(random, capacity, s.page_size) / divisor;
      call.item.output_bytes = draw_size(random, capacity, s.page_size) / divisor;
      call.item.duration_us = draw_duration_us(random);
    }
    s.calls.push_back(call);
  }
  return s;
}

Verdict judge(const Scenario& scenario, const Settings& settings, bool trace) {
  Verdict verdict;
  sim::ExploreOptions options;
  options.mode = sim::ExploreMode::Exhaustive;
  options.preemption_bound = settings.preemption_bound;
  options.schedules = std::max<uint64_t>(1, settings.exhaustive_schedules);
  options.trace_counterexample = trace;
  options.state_cache_entries = size_t{1} << 16;
  sim::ExploreResult result;
  try {
    result = sim::explore(scenario, options);
    verdict.schedules += result.schedules + result.pruned;
    verdict.complete = result.complete;
    if (!result.counterexample && result.error.empty() && !result.complete &&
        settings.pct_schedules != 0) {
      options.mode = sim::ExploreMode::Pct;
      options.schedules = settings.pct_schedules;
      options.seed = scenario.engine_seed + 1;
      result = sim::explore(scenario, options);
      verdict.schedules += result.schedules;
    }
  } catch (const std::invalid_argument& e) {
    verdict.error = e.what();
    return verdict;
  }
  verdict.error = result.error;
  if (!result.error.empty()) {
    verdict.fails = true;
    verdict.status = RunStatus::Failed;
  } else if (result.counterexample) {
    verdict.fails = true;
    verdict.status = result.counterexample->status;
    verdict.run = std::move(result.counterexample);
  }
  return verdict;
}

std::vector<Scenario> shrink_candidates(const Scenario& scenario, bool vary_workers) {
  std::vector<Scenario> out;
  const auto& calls = scenario.calls;
  if (vary_workers && scenario.workers > 1) {
    Scenario s = scenario;
    s.workers = 1;
    out.push_back(s);
    if (scenario.workers > 2) {
      s.workers = scenario.workers - 1;
      out.push_back(s);
    }
  }
  // Drop a call, its bytes moved onto a neighbouring single-task call (a merge of two adjacent
  // tasks), then drop it outright.
  for (size_t i = 0; i < calls.size(); ++i) {
    if (!is_task_call(calls[i])) continue;
    for (size_t j : {i - 1, i + 1}) {
      if (j >= calls.size() || !is_task_call(calls[j]) || is_map(calls[j])) continue;
      const Call moved = as_single_task(calls[i]);
      Scenario s = scenario;
      s.calls[j].item.input_bytes += moved.item.input_bytes + kHeaderBytes;
      s.calls[j].item.output_bytes += moved.item.output_bytes + kHeaderBytes;
      s.calls[j].item.duration_us += moved.item.duration_us;
      s.calls.erase(s.calls.begin() + static_cast<std::ptrdiff_t>(i));
      out.push_back(std::move(s));
    }
  }
  for (size_t i = 0; i < calls.size(); ++i) {
    if (calls.size() == 1) break;
    Scenario s = scenario;
    s.calls.erase(s.calls.begin() + static_cast<std::ptrdiff_t>(i));
    out.push_back(std::move(s));
  }
  // A map's tasks merged into a single apply; or one item fewer.
  for (size_t i = 0; i < calls.size(); ++i) {
    if (!is_map(calls[i])) continue;
    {
      Scenario s = scenario;
      s.calls[i] = as_single_task(calls[i]);
      out.push_back(s);
      // Fewer tasks matter more than fewer bytes: one task whose frames fill as many page slots
      // as the map's frames did (several frames take more slots than their bytes need).
      s.calls[i] = as_single_task_by_slots(calls[i], scenario.page_size);
      out.push_back(std::move(s));
    }
    if (calls[i].items > 1) {
      Scenario s = scenario;
      s.calls[i].items -= 1;
      s.calls[i].chunksize = std::min(s.calls[i].chunksize, s.calls[i].items);
      out.push_back(std::move(s));
    }
  }
  // Durations to zero.
  for (size_t i = 0; i < calls.size(); ++i) {
    if (calls[i].item.duration_us == 0) continue;
    Scenario s = scenario;
    s.calls[i].item.duration_us = 0;
    out.push_back(std::move(s));
  }
  // Sizes snapped down.
  const uint64_t capacity = capacity_bytes(scenario);
  for (size_t i = 0; i < calls.size(); ++i) {
    if (!is_task_call(calls[i])) continue;
    for (int field = 0; field < 2; ++field) {
      Call call = calls[i];
      for (uint64_t v : size_snaps(size_field(call, field), capacity, scenario.page_size)) {
        Scenario s = scenario;
        size_field(s.calls[i], field) = v;
        out.push_back(std::move(s));
      }
    }
  }
  return out;
}

namespace {

struct Shrinker {
  RunStatus status;
  const Settings& settings;
  uint64_t& tries;
  uint64_t& accepted;

  bool budget() const { return tries < settings.max_shrink_tries; }
  // Whether `s` still fails as the original did.
  bool still_fails(const Scenario& s) {
    ++tries;
    const Verdict v = judge(s, settings);
    return v.fails && v.status == status && v.error.empty();
  }

  bool greedy_pass(Scenario& current, bool vary_workers) {
    bool any = false;
    for (bool progress = true; progress && budget();) {
      progress = false;
      for (Scenario& candidate : shrink_candidates(current, vary_workers)) {
        if (!budget()) break;
        if (still_fails(candidate)) {
          current = std::move(candidate);
          ++accepted;
          progress = any = true;
          break;
        }
      }
    }
    return any;
  }

  // Smallest failing value of one size, between a passing `lo` (or none) and failing `hi`.
  uint64_t bisect(Scenario& s, size_t call, int field, uint64_t hi) {
    Scenario probe = s;
    size_field(probe.calls[call], field) = 0;
    if (budget() && still_fails(probe)) return 0;
    uint64_t lo = 0;  // passes
    while (hi - lo > 1 && budget()) {
      const uint64_t mid = lo + (hi - lo) / 2;
      size_field(probe.calls[call], field) = mid;
      if (still_fails(probe)) {
        hi = mid;
      } else {
        lo = mid;
      }
    }
    return hi;
  }

  bool minimise_one(Scenario& s, size_t call, int field) {
    const uint64_t start = size_field(s.calls[call], field);
    if (start == 0) return false;
    uint64_t best = bisect(s, call, field, start);
    // A non-monotone range: a failing size below `best` would lie at a frame boundary of pages.
    const uint64_t page = s.page_size;
    for (uint64_t k = 1; budget(); ++k) {
      const uint64_t frame = k * page + 1;
      if (frame < kHeaderBytes) continue;
      const uint64_t v = frame - kHeaderBytes;
      if (v >= best) break;
      Scenario probe = s;
      size_field(probe.calls[call], field) = v;
      if (still_fails(probe)) {
        best = bisect(s, call, field, v);
        break;
      }
    }
    size_field(s.calls[call], field) = best;
    if (best != start) ++accepted;
    return best != start;
  }
};

}  // namespace

Scenario minimise_sizes(Scenario failing, RunStatus status, const Settings& settings,
                        uint64_t& tries, uint64_t& accepted) {
  Shrinker shrinker{status, settings, tries, accepted};
  for (size_t i = 0; i < failing.calls.size(); ++i) {
    if (!is_task_call(failing.calls[i])) continue;
    for (int field = 0; field < 2; ++field) shrinker.minimise_one(failing, i, field);
  }
  return failing;
}

Scenario shrink(Scenario failing, RunStatus status, const Settings& settings, bool vary_workers,
                uint64_t& tries, uint64_t& accepted) {
  Shrinker shrinker{status, settings, tries, accepted};
  for (int round = 0; round < 4 && shrinker.budget(); ++round) {
    shrinker.greedy_pass(failing, vary_workers);
    const uint64_t before = accepted;
    failing = minimise_sizes(std::move(failing), status, settings, tries, accepted);
    if (accepted == before) break;  // sizes already minimal: nothing new to try
  }
  return failing;
}

std::vector<TaskInfo> list_tasks(const Scenario& scenario) {
  std::vector<TaskInfo> out;
  const auto script = sim::make_script(scenario);
  for (const auto& op : script->ops) {
    if (op.kind != sim::Script::Op::Kind::Submit) continue;
    for (protocol::TaskId id = op.first_task; id < op.end_task; ++id) {
      const sim::TaskSpec& t = script->task(id);
      out.push_back(TaskInfo{.id = id,
                             .input_bytes = t.input_bytes,
                             .output_bytes = t.output_bytes,
                             .duration_us = t.duration_us,
                             .call = op.call,
                             .call_text = sim::describe_call(scenario.calls[op.call])});
    }
  }
  return out;
}

std::string describe_design(const Scenario& s) {
  std::string out = "strategy ";
  out += s.custom_strategy ? std::string(s.custom_strategy->name()) + " (user-written)"
                           : std::string(to_string(s.strategy));
  out += ", scheduler ";
  out += s.custom_scheduler ? std::string(s.custom_scheduler->name()) + " (user-written)"
                            : std::string(to_string(s.scheduler));
  out += ", pipes of " + std::to_string(s.pipe_pages) + " pages (" +
         std::to_string(capacity_bytes(s)) + " bytes)";
  return out;
}

namespace {

std::string scenario_text(const Scenario& s) {
  std::string out;
  if (s.custom_strategy || s.custom_scheduler) {
    out += "# user-written design: " + describe_design(s) +
           "\n# (the built-in names below stand in for it; replay it in C++ with sim::replay)\n";
  }
  return out + sim::to_text(s);
}

}  // namespace

std::string sim_run_command(const Scenario& s, const std::string& schedule) {
  const auto quote = [](const std::string& text) {
    std::string out = "'";
    for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  };
  std::string out = "pipepool sim run --strategy " + std::string(to_string(s.strategy)) +
                    " --scheduler " + std::string(to_string(s.scheduler));
  if (s.scheduler == SchedulerKind::Demand) {
    out += " --demand-in-flight " + std::to_string(s.demand_max_in_flight);
  }
  out +=
      " --workers " + std::to_string(s.workers) + " --pipe-pages " + std::to_string(s.pipe_pages);
  if (s.engine_seed != 0) out += " --engine-seed " + std::to_string(s.engine_seed);
  if (s.task_timeout_us != 0) out += " --task-timeout-ms " + sim::format_ms(s.task_timeout_us);
  if (s.max_tasks_per_child != 0) {
    out += " --max-tasks-per-child " + std::to_string(s.max_tasks_per_child);
  }
  if (s.max_retries != 0) out += " --max-retries " + std::to_string(s.max_retries);
  for (const Call& call : s.calls) out += " --call " + quote(sim::describe_call(call));
  if (!schedule.empty()) out += " --replay " + quote(schedule);
  return out;
}

CheckResult check(const Options& options, const Settings& settings) {
  CheckResult result;
  result.seed = settings.seed;
  const Scenario base = base_scenario(options, settings);
  const bool vary_workers = options.processes <= 0;
  result.design = describe_design(base);
  if (!vary_workers) result.design += ", " + std::to_string(base.workers) + " workers";
  for (uint64_t i = 0; i < settings.runs; ++i) {
    Random random(mix(settings.seed, i));
    Scenario scenario = generate(base, random, settings, vary_workers);
    ++result.scenarios_tried;
    Verdict verdict = judge(scenario, settings);
    result.schedules += verdict.schedules;
    if (!verdict.fails) continue;
    result.holds = false;
    result.status = verdict.status;
    result.original = scenario;
    result.original_text = scenario_text(scenario);
    if (!verdict.error.empty()) {
      result.error = verdict.error;
      result.counterexample = scenario;
      result.scenario_text = result.original_text;
      result.tasks = list_tasks(scenario);
      return result;
    }
    Scenario shrunk = scenario;
    if (settings.shrink) {
      shrunk = shrink(scenario, verdict.status, settings, vary_workers, result.shrink_tries,
                      result.shrink_accepted);
    }
    Verdict final_verdict = judge(shrunk, settings, /*trace=*/true);
    if (!final_verdict.fails || final_verdict.status != verdict.status) {
      shrunk = scenario;  // cannot happen (every kept candidate failed); keep the original
      final_verdict = judge(shrunk, settings, true);
    }
    result.counterexample = shrunk;
    result.scenario_text = scenario_text(shrunk);
    result.tasks = list_tasks(shrunk);
    result.run = std::move(final_verdict.run);
    if (result.run) result.replay = sim::format_schedule(result.run->schedule);
    return result;
  }
  return result;
}

std::string format_text(const CheckResult& r) {
  std::string out = "design: " + r.design + "\n";
  if (r.holds) {
    out += "VERDICT: holds over " + std::to_string(r.scenarios_tried) + " scenarios (seed " +
           std::to_string(r.seed) + ", " + std::to_string(r.schedules) + " schedules explored)\n";
    return out;
  }
  out += "VERDICT: FAILS (" + std::string(sim::to_string(r.status)) + ") on scenario " +
         std::to_string(r.scenarios_tried) + " (seed " + std::to_string(r.seed) + ")\n";
  if (!r.error.empty()) {
    out += "error: " + r.error + "\n";
    return out;
  }
  out += "\nshrunk in " + std::to_string(r.shrink_tries) + " explorations (" +
         std::to_string(r.shrink_accepted) + " steps kept) from " +
         std::to_string(r.original.calls.size()) + " calls, " +
         std::to_string(list_tasks(r.original).size()) + " tasks, " +
         std::to_string(r.original.workers) + " worker(s) to " +
         std::to_string(r.counterexample.calls.size()) + " calls, " +
         std::to_string(r.tasks.size()) + " tasks, " + std::to_string(r.counterexample.workers) +
         " worker(s).\n\ncounterexample (sim scenario format):\n";
  out += r.scenario_text;
  out += "\ntasks:\n";
  for (const TaskInfo& t : r.tasks) {
    out += "  task " + std::to_string(t.id) + ": input " + std::to_string(t.input_bytes) +
           " bytes, output " + std::to_string(t.output_bytes) + " bytes, " +
           sim::format_ms(t.duration_us) + " ms  (call " + std::to_string(t.call + 1) + ": " +
           t.call_text + ")\n";
  }
  out += "\nreplay: '" + r.replay + "'\n";
  if (!r.counterexample.custom_scheduler && !r.counterexample.custom_strategy) {
    out += "reproduce: " + sim_run_command(r.counterexample, r.replay) + "\n";
  }
  if (r.run && r.run->deadlock) out += "\n" + r.run->deadlock->summary + "\n";
  if (r.run && !r.run->failure.empty()) out += "\nfailure: " + r.run->failure + "\n";
  return out;
}

}  // namespace pipepool::fuzz
