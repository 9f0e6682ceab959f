// Explorers: which runnable process takes each step of a World, over many runs. Deterministic
// from the seed (pipepool::Random, no other source of randomness, no clock).
//
//   Random      each step, a uniformly random runnable process.
//   Pct         probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010) with depth d:
//               random distinct priorities, d - 1 random priority change points; each schedule
//               finds any bug of depth d with probability at least 1 / (n * k^(d-1)) for n
//               processes and k steps.
//   Exhaustive  depth-first search of every schedule with at most `preemption_bound` preemptions
//               (a step by another process while the previous step's process could go on), with
//               a state cache so that interleavings that reach a state already explored (steps
//               that commute, in the other order) are not explored again. sim/README.md explains
//               why this reduction, rather than sleep sets, keeps the preemption bound exact.
//               States are keyed by World::fingerprint() (the state itself), and each branch
//               begins from a saved copy of the world (ExploreOptions::snapshot_every) rather
//               than replaying its prefix from the start.
//   Replay      one given schedule, step for step.
//
// Every exploration checks its own determinism: it replays one schedule (the first failure, or the
// last schedule run) and compares trace hashes.
//
// Example:
//
//   ExploreOptions options;
//   options.mode = ExploreMode::Exhaustive;
//   options.preemption_bound = 2;
//   ExploreResult result = explore(scenario, options);
//   if (result.counterexample) std::puts(format_schedule(result.counterexample->schedule).c_str());
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "scenario.hpp"
#include "world.hpp"

namespace pipepool::sim {

enum class ExploreMode { Random, Pct, Exhaustive, Replay };
const char* to_string(ExploreMode mode);
bool parse_explore_mode(std::string_view text, ExploreMode& out);

struct ExploreProgress {
  uint64_t schedules = 0;  // run to their end
  uint64_t pruned = 0;     // cut short by the state cache
  uint64_t steps = 0;
  uint64_t pipe_ops = 0;
  uint64_t failures = 0;
};

struct ExploreOptions {
  ExploreMode mode = ExploreMode::Random;
  uint64_t seed = 1;
  uint64_t schedules = 1000;     // Random, Pct: how many. Exhaustive: the most to run (a limit).
  uint32_t depth = 3;            // Pct: bug depth d (>= 1)
  int32_t preemption_bound = 2;  // Exhaustive; negative: unbounded
  uint64_t max_steps = 0;        // per schedule; 0: default_max_steps(script)
  bool stop_at_first_failure = true;
  size_t state_cache_entries = size_t{1} << 20;  // Exhaustive; 0: no state cache
  // Exhaustive reductions (sim/README.md, "The reductions"; each keeps "complete within the
  // bound" exact, and each can be turned off to show what it saves):
  //   coalesce  a due Run of the process that took the last step is taken at once, without
  //             trying other processes first (World::Invisible::Run)
  //   por       likewise a read(2) that commutes with every step of every other process
  //             (World::Invisible::InnerRead)
  bool coalesce = true;
  bool por = true;
  // Exhaustive: keep a copy of the world every this many steps along the current schedule, and
  // branch from the nearest one at or before a backtracking point instead of replaying the
  // schedule's prefix from the start (which is what 0 does, and what a scenario whose scheduler
  // cannot copy its state gets: World::copyable()). At most 512 copies are kept along one
  // schedule; a longer one (a livelock running to the step bound) replays deeper branches from
  // the last.
  uint32_t snapshot_every = 4;
  // Exhaustive: the last branch that begins from a snapshot takes the saved world instead of a
  // copy (false: always a copy, to compare; the search is the same either way).
  bool move_snapshots = true;
  // Exhaustive: key the state cache by World::history_fingerprint() (each process's history)
  // instead of World::fingerprint() (the state itself): sound but coarser, for comparison.
  bool history_fingerprint = false;
  std::vector<uint8_t> replay;       // Replay: the schedule (the lowest runnable process after it)
  bool trace_counterexample = true;  // re-run the first failure with a step-by-step trace
  std::function<void(const ExploreProgress&)> progress;  // called every progress_every runs
  uint64_t progress_every = 512;
};

// One run, as reports show it.
struct RunSummary {
  RunStatus status = RunStatus::Running;
  std::vector<uint8_t> schedule;  // the process of each step
  uint64_t steps = 0;
  uint64_t trace_hash = 0;
  uint64_t pipe_ops = 0;
  uint64_t virtual_time_us = 0;
  uint64_t tasks_completed = 0;
  std::string failure;
  std::optional<DeadlockReport> deadlock;
  std::vector<std::string> trace;  // when traced
  uint64_t index = 0;              // its number in the exploration, from 0
  uint64_t schedule_seed = 0;      // Random, Pct: the seed of this schedule
  uint64_t replayed_steps = 0;     // Replay: steps taken from the given schedule
  bool diverged = false;           // Replay: the schedule named a process that could not run
};

struct DeterminismCheck {
  bool checked = false;
  bool ok = false;
  uint64_t expected_hash = 0;
  uint64_t replay_hash = 0;
  uint64_t expected_steps = 0;
  uint64_t replay_steps = 0;
};

struct ExploreResult {
  ExploreMode mode = ExploreMode::Random;
  uint32_t processes = 0;
  uint64_t max_steps = 0;  // the step bound of each schedule
  uint64_t schedules = 0;  // run to their end (finished, deadlocked, failed or at the step bound)
  uint64_t pruned = 0;     // Exhaustive: cut short, their state explored before with as much budget
  uint64_t steps = 0;      // over every run, replayed prefixes included
  uint64_t replayed_steps = 0;   // Exhaustive: of those, steps replaying a prefix explored before
  uint64_t snapshots = 0;        // Exhaustive: world copies saved along the schedules
  uint64_t restores = 0;         // Exhaustive: schedules begun from a saved copy, not the start
  uint64_t moved_snapshots = 0;  // of those, the copy's last use: it was taken, not copied again
  uint64_t pipe_ops = 0;
  uint64_t longest_schedule = 0;
  uint64_t outcomes[5] = {};   // schedules by RunStatus
  uint64_t failures = 0;       // schedules that did not finish correctly
  bool complete = false;       // Exhaustive: every schedule within the bound was covered
  std::string cut_reason;      // why it stopped before that ("" if complete)
  uint64_t cache_entries = 0;  // distinct states whose subtree was explored completely
  uint64_t coalesced = 0;      // Exhaustive: steps taken at once by coalescing (no branch tried)
  uint64_t por_forced = 0;     // Exhaustive: steps taken at once by the partial-order reduction
  uint64_t pct_k = 0;          // Pct: the most steps of a schedule
  double pct_bound = 0;        // Pct: 1 / (n * k^(d-1))
  std::optional<RunSummary> counterexample;  // the first failing run, traced
  RunSummary sample;                         // the run replayed for the determinism check
  DeterminismCheck determinism;
  std::string error;  // the exploration itself went wrong (a nondeterministic world)
};

ExploreResult explore(const Scenario& scenario, const ExploreOptions& options);

// Runs `schedule` step for step (then the lowest runnable process, preferring the one that ran
// last, once it runs out). A process that cannot run where the schedule names it ends the run as
// Failed with diverged = true.
RunSummary replay(const Scenario& scenario, std::span<const uint8_t> schedule, uint64_t max_steps,
                  bool trace);

// "U P*3 W0*12 P": process names, runs of one process as NAME*COUNT.
std::string format_schedule(std::span<const uint8_t> schedule);
// Reads format_schedule's text, or process numbers ("0 1 1 2"), separated by spaces or commas.
bool parse_schedule(std::string_view text, std::vector<uint8_t>& out, std::string& error);

}  // namespace pipepool::sim
