#include "explore.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>

#include "pipepool/random.hpp"

namespace pipepool::sim {
namespace {

constexpr uint8_t kNone = 0xff;
constexpr size_t kMaxSnapshots = 512;  // saved worlds along one schedule, each up to ~1 MiB

uint64_t bit(uint32_t p) {
  return uint64_t{1} << p;
}

uint32_t lowest(uint64_t mask) {
  return static_cast<uint32_t>(std::countr_zero(mask));
}

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

bool is_failure(RunStatus status) {
  return status != RunStatus::Finished;
}

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
  // Holds at most `capacity` states; starts small and doubles as it fills.
  explicit StateCache(size_t capacity) : max_entries_(capacity) {
    if (capacity != 0) rehash(4096);
  }

  // Whether every schedule from this state within `budget` was explored before: the entry's
  // budget covers it, after one preemption of difference when the entry's free first step was
  // another process's.
  //
  // The step bound: the fingerprint says nothing of how many steps led to a state, so an entry
  // keeps the most steps any schedule of its subtree took from it (`height`), and covers a visit
  // only if all of those fit in what is left of the bound (`steps_left`). A subtree that reached
  // the step bound is never inserted (its schedules were cut, not explored to their end).
  // Returns the entry's height when it covers, else -1.
  int64_t covers(uint64_t fp, uint8_t last, int32_t budget, bool unbounded,
                 uint64_t steps_left) const {
    if (table_.empty()) return -1;
    for (size_t i = fp & mask_;; i = (i + 1) & mask_) {
      const Entry& e = table_[i];
      if (!e.used) return -1;
      if (e.fp != fp) continue;
      if (e.height >= steps_left) return -1;
      if (unbounded) return static_cast<int64_t>(e.height);
      const int32_t penalty = (e.last == kNone || e.last == last) ? 0 : 1;
      return e.budget >= budget + penalty ? static_cast<int64_t>(e.height) : -1;
    }
  }

  void insert(uint64_t fp, uint8_t last, int32_t budget, uint64_t height) {
    if (table_.empty()) return;
    if (2 * (size_ + 1) > table_.size()) {
      if (size_ >= max_entries_) return;  // full: stop remembering (less pruning, still sound)
      rehash(2 * table_.size());
    }
    for (size_t i = fp & mask_;; i = (i + 1) & mask_) {
      Entry& e = table_[i];
      if (e.used && e.fp != fp) continue;
      if (!e.used) {
        ++size_;
        e = {fp, height, budget, last, true};
      } else if (budget > e.budget || (budget == e.budget && last == kNone)) {
        e.budget = budget;
        e.last = last;
        e.height = height;
      } else if (budget == e.budget && last == e.last) {
        e.height = std::max(e.height, height);
      }
      return;
    }
  }

  size_t size() const { return size_; }

 private:
  struct Entry {
    uint64_t fp = 0;
    uint64_t height = 0;  // the most steps a schedule of its subtree took from it
    int32_t budget = -1;
    uint8_t last = kNone;
    bool used = false;
  };

  void rehash(size_t entries) {
    std::vector<Entry> old = std::exchange(table_, std::vector<Entry>(entries));
    mask_ = entries - 1;
    for (const Entry& e : old) {
      if (!e.used) continue;
      size_t i = e.fp & mask_;
      while (table_[i].used) i = (i + 1) & mask_;
      table_[i] = e;
    }
  }

  std::vector<Entry> table_;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t max_entries_;
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
      case ExploreMode::Random:
        run_random();
        break;
      case ExploreMode::Pct:
        run_pct();
        break;
      case ExploreMode::Exhaustive:
        run_exhaustive();
        break;
      case ExploreMode::Replay:
        run_replay();
        break;
    }
    check_determinism();
    return std::move(result_);
  }

 private:
  // Books one run; returns true when the exploration should stop (a failure, and stop asked).
  // `taken`: the steps this run took itself (a run begun from a saved world took fewer than
  // world.steps()); UINT64_MAX: all of them.
  bool account(const World& world, uint64_t index, uint64_t seed, bool counted = true,
               uint64_t taken = UINT64_MAX, uint64_t ops_before = 0) {
    result_.steps += std::min(taken, world.steps());
    result_.pipe_ops += world.pipe_ops() - ops_before;
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
    options_.progress(
        {result_.schedules, result_.pruned, result_.steps, result_.pipe_ops, result_.failures});
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
    result_.pct_bound =
        1.0 / (static_cast<double>(n) * std::pow(static_cast<double>(result_.pct_k), d - 1.0));
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
    bool step_bound = false;  // a schedule of its subtree reached the step bound
    uint64_t deepest = 0;     // the most steps of a schedule of its subtree (from the start)
  };
  // A saved world: the state after `depth` steps of the current schedule (after its poll()).
  struct Snapshot {
    size_t depth;
    std::unique_ptr<World> world;
  };

  // Coalescing and the partial-order reduction: whether `last`, which took the previous step and
  // can go on, must take its next step t now, without trying any other process first. Sound for
  // the preemption bound because t is invisible (World::invisible_step: same effect whenever
  // taken, runnable until taken, changes nobody else's runnability or steps). Take any schedule
  // s = a t b from here that runs other processes a before t (a non-empty, t not in a; if t is
  // never taken, a ends at the step bound, and t a' with a' = a minus its last step ends there
  // too). Then s' = t a b is explored instead and
  //  - reaches the same state: t commutes with every step of a, each of which is runnable after
  //    t as before it and does the same (so no time passes differently either);
  //  - costs no more preemptions: in s the first step of a preempted `last` (cost 1); in s', t
  //    is free and a's first step costs at most 1; inside a nothing changed (its processes'
  //    runnability is the same and `last` does not run there); and where t stood, between the
  //    end r of a and the first step q of b, s paid [r runnable] for r -> t and s' pays the same
  //    for r -> q (nothing if q = r).
  // Every schedule within the bound is thus covered by one that reaches the same end (the same
  // deadlock, failure or step bound), which is what "complete within the bound" promises; the
  // state cache's claim for a subtree is read the same way, so the two compose.
  bool forced_step(const World& world, uint32_t last) {
    const World::Invisible kind = world.invisible_step(last);
    if (kind == World::Invisible::Run && options_.coalesce) {
      ++result_.coalesced;
      return true;
    }
    if (kind == World::Invisible::InnerRead && options_.por) {
      ++result_.por_forced;
      return true;
    }
    return false;
  }

  static int32_t cost(const Node& node, uint32_t p) {
    return node.last != kNone && p != node.last ? 1 : 0;
  }

  // Whether backtracking will try another process at `node` (the test of run_exhaustive's
  // backtracking loop, without marking anything tried).
  static bool has_alternative(const Node& node, bool unbounded) {
    for (uint64_t candidates = node.enabled & ~node.tried; candidates != 0;
         candidates &= candidates - 1) {
      if (unbounded || node.budget - cost(node, lowest(candidates)) >= 0) return true;
    }
    return false;
  }

  // The world after stack.size() steps of the current schedule (every node's `chosen`): from the
  // deepest snapshot at or before the last node, or from the start, replaying the rest. False
  // (with result_.error) if the world did not behave as the first time.
  //
  // The last branch that will begin from a snapshot takes the saved world itself instead of a
  // copy (`moved_snapshots`; ExploreOptions::move_snapshots). A snapshot at depth d serves every
  // node from d until the next snapshot's depth, the nodes on the stack and those the run about
  // to begin will push. So it is taken when no node from d to the last one has an alternative
  // left within its budget, and the run begins at a depth where it saves a new snapshot at once
  // (stack.size() a multiple of `snapshot_every`), so that no node it pushes needs this one.
  // Backtracking only moves up the stack: every later branch begins above d, where this
  // snapshot would have been dropped anyway.
  bool rebuild(std::unique_ptr<World>& world, const std::vector<Node>& stack,
               std::vector<Snapshot>& snapshots, bool unbounded, uint32_t snapshot_every) {
    while (!snapshots.empty() && snapshots.back().depth >= stack.size()) snapshots.pop_back();
    size_t from = 0;
    if (!snapshots.empty()) {
      from = snapshots.back().depth;
      bool needed_again =
          !options_.move_snapshots || snapshot_every == 0 || stack.size() % snapshot_every != 0;
      for (size_t i = from; i < stack.size() && !needed_again; ++i) {
        needed_again = has_alternative(stack[i], unbounded);
      }
      if (needed_again) {
        world = std::make_unique<World>(*snapshots.back().world);
      } else {
        world = std::move(snapshots.back().world);
        snapshots.pop_back();
        ++result_.moved_snapshots;
      }
      ++result_.restores;
    } else {
      world = std::make_unique<World>(script_, world_options_);
    }
    base_steps_ = from;
    base_pipe_ops_ = world->pipe_ops();
    for (size_t i = from; i < stack.size(); ++i) {
      const uint64_t mask = world->poll();
      if (mask != stack[i].enabled) {
        result_.error = "the world is not deterministic: replaying a prefix, step " +
                        std::to_string(i) + " found runnable " + runnable_names(mask) +
                        " instead of " + runnable_names(stack[i].enabled);
        result_.cut_reason = "nondeterminism";
        return false;
      }
      world->step(stack[i].chosen);
    }
    result_.replayed_steps += stack.size() - from;
    return true;
  }

  // The state key of the cache (0 without a cache).
  uint64_t state_key(const World& world) const {
    if (options_.state_cache_entries == 0) return 0;
    return options_.history_fingerprint ? world.history_fingerprint() : world.fingerprint();
  }

  void run_exhaustive() {
    const bool unbounded = options_.preemption_bound < 0;
    const int32_t bound = unbounded ? 0 : options_.preemption_bound;
    StateCache cache(options_.state_cache_entries);
    std::vector<Node> stack;
    stack.reserve(1024);
    std::vector<Snapshot> snapshots;
    std::unique_ptr<World> world;
    uint32_t snapshot_every = options_.snapshot_every;
    uint64_t index = 0;
    for (;;) {
      if (!rebuild(world, stack, snapshots, unbounded, snapshot_every)) return;
      if (index == 0 && result_.pruned == 0 && snapshot_every != 0 && !world->copyable()) {
        snapshot_every = 0;  // a user's scheduler that cannot copy its state: replay instead
      }
      // Steps counted by world->steps() include those the snapshot's copy had already taken.
      const uint64_t steps_before = base_steps_;
      const uint64_t ops_before = base_pipe_ops_;
      bool pruned = false;
      for (;;) {
        const uint64_t mask = world->poll();
        if (mask == 0) break;
        uint8_t last = kNone;
        int32_t budget = bound;
        if (!stack.empty()) {
          const Node& parent = stack.back();
          if (mask & bit(parent.chosen)) last = parent.chosen;
          budget = unbounded ? 0 : parent.budget - cost(parent, parent.chosen);
        }
        const uint64_t fp = state_key(*world);
        const uint64_t steps_left = world_options_.max_steps - world->steps();
        if (const int64_t height = cache.covers(fp, last, budget, unbounded, steps_left);
            height >= 0) {
          pruned = true;
          if (!stack.empty()) {
            stack.back().deepest =
                std::max(stack.back().deepest, world->steps() + static_cast<uint64_t>(height));
          }
          break;
        }
        // At most kMaxSnapshots along one schedule (a livelock runs to the step bound): deeper
        // branches replay from the last one.
        if (snapshot_every != 0 && stack.size() % snapshot_every == 0 &&
            snapshots.size() < kMaxSnapshots &&
            (snapshots.empty() || snapshots.back().depth < stack.size())) {
          snapshots.push_back({stack.size(), std::make_unique<World>(*world)});
          ++result_.snapshots;
        }
        const auto choice = static_cast<uint8_t>(last != kNone ? last : lowest(mask));
        // An invisible step of the process that ran last is the only branch tried here: every
        // other branch is a schedule that takes that step later, which reaches the states a
        // schedule taking it now reaches, with no more preemptions (see forced_step()).
        const bool forced = last != kNone && forced_step(*world, last);
        stack.push_back({mask, forced ? mask : bit(choice), fp, budget, last, choice});
        world->step(choice);
      }
      if (!stack.empty()) {
        Node& leaf = stack.back();
        leaf.deepest = std::max(leaf.deepest, world->steps());
        if (world->status() == RunStatus::StepLimit) leaf.step_bound = true;
      }
      // The steps of this schedule taken here, replayed ones included (not those of the world it
      // was copied from).
      const uint64_t taken = world->steps() - steps_before;
      if (pruned) {
        ++result_.pruned;
        account(*world, index, 0, /*counted=*/false, taken, ops_before);
        report_progress(false);
      } else if (account(*world, index++, 0, /*counted=*/true, taken, ops_before)) {
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
        const uint64_t depth = stack.size() - 1;  // steps before this node's state
        if (!node.step_bound) {
          cache.insert(node.fingerprint, node.last, unbounded ? 0 : node.budget,
                       node.deepest - depth);
        }
        const Node done = node;
        stack.pop_back();
        if (!stack.empty()) {
          stack.back().deepest = std::max(stack.back().deepest, done.deepest);
          stack.back().step_bound = stack.back().step_bound || done.step_bound;
        }
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
                     process_name(p) + ", but the runnable processes are " + runnable_names(mask));
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
    // A replay is checked against the schedule it was given (it may have diverged from it).
    RunSummary again = replay_schedule(options_.mode == ExploreMode::Replay
                                           ? std::span<const uint8_t>(options_.replay)
                                           : std::span<const uint8_t>(original->schedule),
                                       trace);
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
  uint64_t base_steps_ = 0;     // Exhaustive: steps of the saved world the current run began from
  uint64_t base_pipe_ops_ = 0;  // and its pipe operations
  uint64_t last_index_ = 0;
  uint64_t last_seed_ = 0;
};

}  // namespace

const char* to_string(ExploreMode mode) {
  switch (mode) {
    case ExploreMode::Random:
      return "random";
    case ExploreMode::Pct:
      return "pct";
    case ExploreMode::Exhaustive:
      return "exhaustive";
    case ExploreMode::Replay:
      return "replay";
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
  // Runs of one process first ("W0*3"), then repeated groups of up to 8 runs ("(P*6 W0*2)*500").
  struct Run {
    uint8_t process;
    size_t count;
    bool operator==(const Run&) const = default;
  };
  std::vector<Run> runs;
  for (uint8_t p : schedule) {
    if (!runs.empty() && runs.back().process == p) {
      ++runs.back().count;
    } else {
      runs.push_back({p, 1});
    }
  }
  auto run_text = [](const Run& r) {
    // Appended piece by piece: the one-expression form trips g++ 12's -Wrestrict at -O3.
    std::string text = process_name(r.process);
    if (r.count > 1) {
      text += '*';
      text += std::to_string(r.count);
    }
    return text;
  };
  std::string out;
  auto emit = [&](const std::string& token) {
    if (!out.empty()) out += ' ';
    out += token;
  };
  size_t i = 0;
  while (i < runs.size()) {
    size_t best_period = 0, best_repeats = 0;
    for (size_t period = 2; period <= 8 && i + 2 * period <= runs.size(); ++period) {
      size_t repeats = 1;
      while (i + (repeats + 1) * period <= runs.size() &&
             std::equal(runs.begin() + i, runs.begin() + i + period,
                        runs.begin() + i + repeats * period)) {
        ++repeats;
      }
      if (repeats >= 3 && repeats * period > best_repeats * best_period) {
        best_period = period;
        best_repeats = repeats;
      }
    }
    if (best_period == 0) {
      emit(run_text(runs[i++]));
      continue;
    }
    std::string group = "(";
    for (size_t j = 0; j < best_period; ++j) {
      if (j) group += ' ';
      group += run_text(runs[i + j]);
    }
    group += ")*";
    group += std::to_string(best_repeats);
    emit(group);
    i += best_period * best_repeats;
  }
  return out;
}

namespace {

bool parse_count(std::string_view s, uint64_t& v) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size() && v > 0 && v <= 100'000'000;
}

bool is_separator(char c) {
  return c == ' ' || c == ',' || c == '\t' || c == '\n';
}

bool parse_token(std::string_view token, std::vector<uint8_t>& out, std::string& error) {
  uint64_t count = 1;
  if (const size_t star = token.find('*'); star != std::string_view::npos) {
    if (!parse_count(token.substr(star + 1), count)) {
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
  } else if (token.size() > 1 && token[0] == 'W' && (token.size() == 2 || token[1] != '0') &&
             std::from_chars(token.data() + 1, token.data() + token.size(), process).ptr ==
                 token.data() + token.size() &&
             process < kMaxProcesses - kFirstWorkerProcess) {
    process += kFirstWorkerProcess;
  } else if (token.empty() ||
             std::from_chars(token.data(), token.data() + token.size(), process).ptr !=
                 token.data() + token.size() ||
             process >= kMaxProcesses) {
    error = "bad process '" + std::string(token) + "' (U, P, W0, W1, ... or a number)";
    return false;
  }
  if (out.size() + count > 1'000'000'000) {
    error = "schedule too long";
    return false;
  }
  out.insert(out.end(), count, static_cast<uint8_t>(process));
  return true;
}

}  // namespace

bool parse_schedule(std::string_view text, std::vector<uint8_t>& out, std::string& error) {
  std::vector<uint8_t> schedule;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_separator(text[i])) ++i;
    if (i == text.size()) break;
    if (text[i] == '(') {
      const size_t close = text.find(')', i);
      if (close == std::string_view::npos) {
        error = "unclosed '(' in the schedule";
        return false;
      }
      std::vector<uint8_t> group;
      std::string_view inner = text.substr(i + 1, close - i - 1);
      size_t j = 0;
      while (j < inner.size()) {
        while (j < inner.size() && is_separator(inner[j])) ++j;
        const size_t start = j;
        while (j < inner.size() && !is_separator(inner[j])) ++j;
        if (j > start && !parse_token(inner.substr(start, j - start), group, error)) return false;
      }
      i = close + 1;
      uint64_t repeats = 1;
      if (i < text.size() && text[i] == '*') {
        const size_t start = ++i;
        while (i < text.size() && !is_separator(text[i])) ++i;
        if (!parse_count(text.substr(start, i - start), repeats)) {
          error = "bad repeat count after ')'";
          return false;
        }
      }
      if (schedule.size() + group.size() * repeats > 1'000'000'000) {
        error = "schedule too long";
        return false;
      }
      for (uint64_t r = 0; r < repeats; ++r)
        schedule.insert(schedule.end(), group.begin(), group.end());
      continue;
    }
    const size_t start = i;
    while (i < text.size() && !is_separator(text[i]) && text[i] != '(') ++i;
    if (!parse_token(text.substr(start, i - start), schedule, error)) return false;
  }
  out = std::move(schedule);
  return true;
}

}  // namespace pipepool::sim
