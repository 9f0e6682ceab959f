#include "explore.hpp"

#include <bit>
#include <charconv>
#include <cmath>
#include <limits>

#include "pipepool/random.hpp"

namespace pipepool::sim {
namespace {

constexpr uint8_t kNone = 0xff;

uint64_t bit(uint32_t p) { return uint64_t{1} << p; }

uint32_t lowest(uint64_t mask) { return static_cast<uint32_t>(std::countr_zero(mask)); }

// The i-th (from 0) set bit of mask.
uint32_t nth_set_bit(uint64_t mask, uint64_t i) {
  while (i-- > 0) mask &= mask - 1;
  return lowest(mask);
}

uint64_t schedule_seed(uint64_t seed, uint64_t index) {
  Random random(seed ^ (index * 0xD1B54A32D192ED03ULL));
  return random.next();
}

RunSummary summarize(const World& world) {
  RunSummary s;
  s.status = world.status();
  s.schedule = world.schedule();
  s.steps = world.steps();
  s.trace_hash = world.trace_hash();
  s.pipe_ops = world.pipe_ops();
  s.virtual_time_us = world.now_us();
  s.tasks_completed = world.tasks_completed();
  s.failure = world.failure();
  if (s.status == RunStatus::Deadlock) s.deadlock = world.deadlock();
  s.trace = world.trace();
  return s;
}

bool is_failure(RunStatus status) { return status != RunStatus::Finished; }

std::string runnable_names(uint64_t mask) {
  std::string out;
  while (mask != 0) {
    if (!out.empty()) out += " ";
    out += process_name(lowest(mask));
    mask &= mask - 1;
  }
  return out.empty() ? "none" : out;
}

// Runs `world` to its end; choose(mask) returns the process of the next step, or kNone to stop.
template <class Choose>
void run_world(World& world, Choose&& choose) {
  for (;;) {
    const uint64_t mask = world.poll();
    if (mask == 0) return;
    const uint32_t p = choose(mask);
    if (p == kNone) return;
    world.step(p);
  }
}

// Exhaustive: which states were explored, with how much preemption budget left, and which process
// had run last (its next step is free, any other costs a preemption).
class StateCache {
 public:
  explicit StateCache(size_t capacity) {
    if (capacity == 0) return;
    table_.resize(std::bit_ceil(capacity));
    mask_ = table_.size() - 1;
  }

  // Whether every schedule from this state within `budget` was explored before: the entry's
  // budget covers it, after one preemption of difference when the entry's free first step was
  // another process's.
  bool covers(uint64_t fp, uint8_t last, int32_t budget, bool unbounded) const {
    if (table_.empty()) return false;
    for (size_t i = fp & mask_;; i = (i + 1) & mask_) {
      const Entry& e = table_[i];
      if (!e.used) return false;
      if (e.fp != fp) continue;
      if (unbounded) return true;
      const int32_t penalty = (e.last == kNone || e.last == last) ? 0 : 1;
      return e.budget >= budget + penalty;
    }
  }

  void insert(uint64_t fp, uint8_t last, int32_t budget) {
    if (table_.empty()) return;
    for (size_t i = fp & mask_;; i = (i + 1) & mask_) {
      Entry& e = table_[i];
      if (e.used && e.fp != fp) continue;
      if (!e.used) {
        if (size_ * 4 >= table_.size() * 3) return;  // full enough: stop remembering
        ++size_;
        e = {fp, budget, last, true};
      } else if (budget > e.budget || (budget == e.budget && last == kNone)) {
        e.budget = budget;
        e.last = last;
      }
      return;
    }
  }

  size_t size() const { return size_; }

 private:
  struct Entry {
    uint64_t fp = 0;
    int32_t budget = -1;
    uint8_t last = kNone;
    bool used = false;
  };
  std::vector<Entry> table_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

class Explorer {
 public:
  Explorer(const Scenario& scenario, const ExploreOptions& options)
      : options_(options), script_(make_script(scenario)) {
    world_options_.max_steps =
        options.max_steps != 0 ? options.max_steps : default_max_steps(*script_);
    result_.mode = options.mode;
    result_.max_steps = world_options_.max_steps;
    result_.processes = kFirstWorkerProcess + scenario.workers;
  }

  ExploreResult run() {
    switch (options_.mode) {
      case ExploreMode::Random: run_random(); break;
      case ExploreMode::Pct: run_pct(); break;
      case ExploreMode::Exhaustive: run_exhaustive(); break;
      case ExploreMode::Replay: run_replay(); break;
    }
    check_determinism();
    return std::move(result_);
  }

 private:
  // Books one run; returns true when the exploration should stop (a failure, and stop asked).
  bool account(const World& world, uint64_t index, uint64_t seed, bool counted = true) {
    result_.steps += world.steps();
    result_.pipe_ops += world.pipe_ops();
    if (!counted) return false;
    ++result_.schedules;
    result_.longest_schedule = std::max(result_.longest_schedule, world.steps());
    ++result_.outcomes[static_cast<int>(world.status())];
    const bool failed = is_failure(world.status());
    if (failed) ++result_.failures;
    if (failed && !result_.counterexample) {
      result_.counterexample = summarize(world);
      result_.counterexample->index = index;
      result_.counterexample->schedule_seed = seed;
    } else if (!result_.counterexample) {
      last_schedule_ = world.schedule();
      last_index_ = index;
      last_seed_ = seed;
    }
    report_progress(false);
    return failed && options_.stop_at_first_failure;
  }

  void report_progress(bool force) {
    if (!options_.progress) return;
    const uint64_t runs = result_.schedules + result_.pruned;
    if (!force && (options_.progress_every == 0 || runs % options_.progress_every != 0)) return;
    options_.progress({result_.schedules, result_.pruned, result_.steps, result_.pipe_ops,
                       result_.failures});
  }

  void run_random() {
    for (uint64_t i = 0; i < options_.schedules; ++i) {
      const uint64_t seed = schedule_seed(options_.seed, i);
      Random random(seed);
      World world(script_, world_options_);
      run_world(world, [&](uint64_t mask) {
        return nth_set_bit(mask, random.below(static_cast<uint64_t>(std::popcount(mask))));
      });
      if (account(world, i, seed)) return;
    }
  }

  void run_pct() {
    const uint32_t n = result_.processes;
    const uint32_t d = std::max<uint32_t>(1, options_.depth);
    // k: the length of a schedule, measured on the non-preemptive one; grows if longer ones come.
    uint64_t k = 1;
    {
      World world(script_, world_options_);
      uint32_t last = kNone;
      run_world(world, [&](uint64_t mask) {
        last = (last != kNone && (mask & bit(last))) ? last : lowest(mask);
        return last;
      });
      k = std::max<uint64_t>(1, world.steps());
      account(world, 0, 0, /*counted=*/false);
    }
    std::vector<uint64_t> priority(n);
    std::vector<uint32_t> order(n);
    std::vector<uint64_t> change_points(d - 1);
    for (uint64_t i = 0; i < options_.schedules; ++i) {
      const uint64_t seed = schedule_seed(options_.seed, i);
      Random random(seed);
      for (uint32_t p = 0; p < n; ++p) order[p] = p;
      for (uint32_t p = n; p > 1; --p) std::swap(order[p - 1], order[random.below(p)]);
      for (uint32_t p = 0; p < n; ++p) priority[p] = d + order[p];  // d .. d+n-1, distinct
      for (uint64_t& c : change_points) c = 1 + random.below(k);
      uint64_t steps = 0;
      World world(script_, world_options_);
      run_world(world, [&](uint64_t mask) {
        uint32_t best = lowest(mask);
        for (uint64_t m = mask; m != 0; m &= m - 1) {
          const uint32_t p = lowest(m);
          if (priority[p] > priority[best]) best = p;
        }
        ++steps;
        for (uint32_t j = 0; j < change_points.size(); ++j) {
          if (change_points[j] == steps) priority[best] = d - 1 - j;  // below every initial one
        }
        return best;
      });
      k = std::max(k, world.steps());
      if (account(world, i, seed)) break;
    }
    result_.pct_k = std::max(k, result_.longest_schedule);
    result_.pct_bound = 1.0 / (static_cast<double>(n) *
                               std::pow(static_cast<double>(result_.pct_k), d - 1.0));
  }

  void run_replay() {
    RunSummary s = replay_schedule(options_.replay, options_.trace_counterexample);
    result_.steps += s.steps;
    result_.pipe_ops += s.pipe_ops;
    ++result_.schedules;
    result_.longest_schedule = s.steps;
    ++result_.outcomes[static_cast<int>(s.status)];
    if (is_failure(s.status)) {
      ++result_.failures;
      result_.counterexample = std::move(s);
    } else {
      last_schedule_ = s.schedule;
      result_.sample = std::move(s);
    }
  }

  struct Node {
    uint64_t enabled;
    uint64_t tried;
    uint64_t fingerprint;
    int32_t budget;  // preemptions left before this step
    uint8_t last;    // the previous step's process if it can go on here, else kNone
    uint8_t chosen;
  };

  static int32_t cost(const Node& node, uint32_t p) {
    return node.last != kNone && p != node.last ? 1 : 0;
  }

  void run_exhaustive() {
    const bool unbounded = options_.preemption_bound < 0;
    const int32_t bound = unbounded ? 0 : options_.preemption_bound;
    StateCache cache(options_.state_cache_entries);
    std::vector<Node> stack;
    stack.reserve(1024);
    uint64_t index = 0;
    for (;;) {
      World world(script_, world_options_);
      for (size_t i = 0; i < stack.size(); ++i) {
        const uint64_t mask = world.poll();
        if (mask != stack[i].enabled) {
          result_.error = "the world is not deterministic: replaying a prefix, step " +
                          std::to_string(i) + " found runnable " + runnable_names(mask) +
                          " instead of " + runnable_names(stack[i].enabled);
          result_.cut_reason = "nondeterminism";
          return;
        }
        world.step(stack[i].chosen);
      }
      bool pruned = false;
      for (;;) {
        const uint64_t mask = world.poll();
        if (mask == 0) break;
        uint8_t last = kNone;
        int32_t budget = bound;
        if (!stack.empty()) {
          const Node& parent = stack.back();
          if (mask & bit(parent.chosen)) last = parent.chosen;
          budget = unbounded ? 0 : parent.budget - cost(parent, parent.chosen);
        }
        const uint64_t fp = options_.state_cache_entries != 0 ? world.fingerprint() : 0;
        if (cache.covers(fp, last, budget, unbounded)) {
          pruned = true;
          break;
        }
        const auto choice = static_cast<uint8_t>(last != kNone ? last : lowest(mask));
        stack.push_back({mask, bit(choice), fp, budget, last, choice});
        world.step(choice);
      }
      if (pruned) {
        ++result_.pruned;
        account(world, index, 0, /*counted=*/false);
        report_progress(false);
      } else if (account(world, index++, 0)) {
        result_.cut_reason = "stopped at the first failing schedule";
        break;
      }
      // Backtrack to the deepest step with an alternative left within the budget.
      while (!stack.empty()) {
        Node& node = stack.back();
        uint64_t candidates = node.enabled & ~node.tried;
        bool found = false;
        while (candidates != 0) {
          const uint32_t p = lowest(candidates);
          candidates &= candidates - 1;
          node.tried |= bit(p);
          if (unbounded || node.budget - cost(node, p) >= 0) {
            node.chosen = static_cast<uint8_t>(p);
            found = true;
            break;
          }
        }
        if (found) break;
        cache.insert(node.fingerprint, node.last, unbounded ? 0 : node.budget);
        stack.pop_back();
      }
      if (stack.empty()) {
        result_.complete = true;
        break;
      }
      if (result_.schedules + result_.pruned >= options_.schedules) {
        result_.cut_reason = "schedule limit " + std::to_string(options_.schedules) + " reached";
        break;
      }
    }
    result_.cache_entries = cache.size();
    report_progress(true);
  }

  RunSummary replay_schedule(std::span<const uint8_t> schedule, bool trace) {
    WorldOptions options = world_options_;
    options.trace = trace;
    World world(script_, options);
    uint64_t i = 0;
    uint32_t last = kNone;
    bool diverged = false;
    run_world(world, [&](uint64_t mask) -> uint32_t {
      if (i < schedule.size()) {
        const uint32_t p = schedule[i];
        if (p >= 64 || !(mask & bit(p))) {
          world.fail("replay diverged at step " + std::to_string(i) + ": the schedule names " +
                     process_name(p) + ", but the runnable processes are " +
                     runnable_names(mask));
          diverged = true;
          return kNone;
        }
        ++i;
        return last = p;
      }
      last = (last != kNone && (mask & bit(last))) ? last : lowest(mask);
      return last;
    });
    RunSummary s = summarize(world);
    s.replayed_steps = i;
    s.diverged = diverged;
    return s;
  }

  void check_determinism() {
    RunSummary* original = nullptr;
    if (result_.counterexample) {
      original = &*result_.counterexample;
    } else if (options_.mode != ExploreMode::Replay && !last_schedule_.empty()) {
      // Re-run the last schedule once to have its hash, then replay it.
      WorldOptions options = world_options_;
      World world(script_, options);
      uint64_t i = 0;
      run_world(world, [&](uint64_t mask) -> uint32_t {
        if (i >= last_schedule_.size() || !(mask & bit(last_schedule_[i]))) return kNone;
        return last_schedule_[i++];
      });
      result_.sample = summarize(world);
      result_.sample.index = last_index_;
      result_.sample.schedule_seed = last_seed_;
      original = &result_.sample;
    } else if (options_.mode == ExploreMode::Replay && !last_schedule_.empty()) {
      original = &result_.sample;
    }
    if (original == nullptr) return;
    const bool trace = result_.counterexample.has_value() && options_.trace_counterexample &&
                       original->trace.empty();
    RunSummary again = replay_schedule(original->schedule, trace);
    DeterminismCheck& check = result_.determinism;
    check.checked = true;
    check.expected_hash = original->trace_hash;
    check.expected_steps = original->steps;
    check.replay_hash = again.trace_hash;
    check.replay_steps = again.steps;
    check.ok = again.trace_hash == original->trace_hash && again.steps == original->steps &&
               again.status == original->status;
    if (trace) original->trace = std::move(again.trace);
  }

  const ExploreOptions& options_;
  std::shared_ptr<const Script> script_;
  WorldOptions world_options_;
  ExploreResult result_;
  std::vector<uint8_t> last_schedule_;
  uint64_t last_index_ = 0;
  uint64_t last_seed_ = 0;
};

}  // namespace

const char* to_string(ExploreMode mode) {
  switch (mode) {
    case ExploreMode::Random: return "random";
    case ExploreMode::Pct: return "pct";
    case ExploreMode::Exhaustive: return "exhaustive";
    case ExploreMode::Replay: return "replay";
  }
  return "?";
}

bool parse_explore_mode(std::string_view text, ExploreMode& out) {
  for (ExploreMode m :
       {ExploreMode::Random, ExploreMode::Pct, ExploreMode::Exhaustive, ExploreMode::Replay}) {
    if (text == to_string(m)) {
      out = m;
      return true;
    }
  }
  return false;
}

ExploreResult explore(const Scenario& scenario, const ExploreOptions& options) {
  return Explorer(scenario, options).run();
}

RunSummary replay(const Scenario& scenario, std::span<const uint8_t> schedule, uint64_t max_steps,
                  bool trace) {
  ExploreOptions options;
  options.mode = ExploreMode::Replay;
  options.replay.assign(schedule.begin(), schedule.end());
  options.max_steps = max_steps;
  options.trace_counterexample = trace;
  ExploreResult result = explore(scenario, options);
  return result.counterexample ? std::move(*result.counterexample) : std::move(result.sample);
}

std::string format_schedule(std::span<const uint8_t> schedule) {
  std::string out;
  size_t i = 0;
  while (i < schedule.size()) {
    size_t j = i;
    while (j < schedule.size() && schedule[j] == schedule[i]) ++j;
    if (!out.empty()) out += ' ';
    out += process_name(schedule[i]);
    if (j - i > 1) out += "*" + std::to_string(j - i);
    i = j;
  }
  return out;
}

bool parse_schedule(std::string_view text, std::vector<uint8_t>& out, std::string& error) {
  std::vector<uint8_t> schedule;
  size_t i = 0;
  auto number = [](std::string_view s, uint64_t& v) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size();
  };
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',' || text[i] == '\t' ||
                               text[i] == '\n')) {
      ++i;
    }
    const size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != ',' && text[i] != '\t' &&
           text[i] != '\n') {
      ++i;
    }
    if (i == start) break;
    std::string_view token = text.substr(start, i - start);
    uint64_t count = 1;
    if (const size_t star = token.find('*'); star != std::string_view::npos) {
      if (!number(token.substr(star + 1), count) || count == 0 || count > 100'000'000) {
        error = "bad repeat count in '" + std::string(token) + "'";
        return false;
      }
      token = token.substr(0, star);
    }
    uint64_t process = 0;
    if (token == "U") {
      process = kUserProcess;
    } else if (token == "P") {
      process = kParentProcess;
    } else if (token.size() > 1 && token[0] == 'W' && number(token.substr(1), process) &&
               process < kMaxProcesses - kFirstWorkerProcess) {
      process += kFirstWorkerProcess;
    } else if (!number(token, process) || process >= kMaxProcesses) {
      error = "bad process '" + std::string(token) + "' (U, P, W0, W1, ... or a number)";
      return false;
    }
    schedule.insert(schedule.end(), count, static_cast<uint8_t>(process));
  }
  out = std::move(schedule);
  return true;
}

}  // namespace pipepool::sim
