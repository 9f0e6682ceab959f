// pipepool/fuzz: does any workload deadlock this pool design, and what is the smallest one?
//
// `check(options, settings)` takes the Options a user would give the real pool (strategy,
// scheduler, workers, pipe capacity, and a user-written `custom_scheduler` or `custom_strategy`),
// generates `settings.runs` random workloads (calls of map, map_async, apply_async, apply and
// wait, with task and result payload sizes around the pipe capacity and short durations), and
// explores each on the simulator (sim/), which runs the pool's own protocol engine over byte-exact
// models of Linux pipes. A workload fails when any explored schedule deadlocks, livelocks or
// completes a task wrongly. The first failing workload is then shrunk: fewer workers, calls
// dropped (alone, or with their bytes moved onto a neighbour), adjacent tasks merged, durations
// zeroed, sizes snapped to page, header and capacity boundaries and halved, and at last every size
// minimised exactly by bisection against the simulator (one byte less, and it completes).
//
// Example:
//
//   pipepool::Options options{.processes = 1, .strategy = pipepool::Strategy::Unbatched,
//                             .enlarge_pipes = false};
//   pipepool::fuzz::CheckResult result = pipepool::fuzz::check(options, {.seed = 7});
//   if (!result.holds) {
//     std::puts(result.scenario_text.c_str());   // the shrunk workload, in sim's scenario format
//     std::puts(result.replay.c_str());          // its deadlocking schedule (--replay string)
//   }
//   std::puts(pipepool::fuzz::format_text(result).c_str());
//
// Reproducing. Everything is deterministic from `settings.seed`; a failure's report gives the
// scenario text and the schedule: `pipepool sim run --scenario FILE --replay 'SCHEDULE'` replays
// a built-in design; a user-written scheduler or strategy is replayed in C++ with
// `sim::replay(result.counterexample, schedule, 0, true)`.
//
// A user-written Scheduler keeps its state between picks in the simulator only if it overrides
// clone() (each simulated pool needs a fresh one); a stateful scheduler without clone() makes runs
// depend on each other, which the explorer's determinism check reports as `error`.
//
// Thread safety: check() shares nothing between calls but the user's scheduler instance (when it
// has no clone()).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "explore.hpp"
#include "pipepool/options.hpp"
#include "pipepool/random.hpp"
#include "scenario.hpp"

namespace pipepool::fuzz {

struct Settings {
  uint64_t seed = 1;
  uint32_t runs = 100;  // workloads generated (the check stops at the first failing one)
  // Simulated pipe capacity in pages (a power of two); 0: from Options (pipe_capacity_bytes, else
  // 16 pages when enlarge_pipes is false, 256 pages = 1 MiB when it is true).
  uint32_t pipe_pages = 0;
  uint32_t max_workers = 3;  // when Options::processes is not > 0: 1 .. max_workers
  uint32_t max_calls = 6;    // calls per workload: 1 .. max_calls
  uint32_t max_items = 4;    // items of one map / map_async
  // How each workload is explored: every schedule with at most `preemption_bound` preemptions (at
  // most `exhaustive_schedules` of them), then, if that did not cover the bound, `pct_schedules`
  // PCT schedules.
  int32_t preemption_bound = 1;
  uint64_t exhaustive_schedules = 300;
  uint64_t pct_schedules = 30;
  bool shrink = true;
  uint64_t max_shrink_tries = 3000;  // explorations spent shrinking, at most
};

// One task of the counterexample.
struct TaskInfo {
  uint64_t id = 0;  // task number, from 1 in submission order
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
  uint64_t duration_us = 0;
  size_t call = 0;        // index of the call that made it
  std::string call_text;  // that call in the scenario format ("apply_async 65505 0 0")
};

struct CheckResult {
  bool holds = true;
  uint64_t seed = 0;
  uint64_t scenarios_tried = 0;  // generated and explored
  uint64_t schedules = 0;        // over every exploration, shrinking included
  std::string design;            // "strategy unbatched, scheduler shortest-backlog, 1 worker, ..."
  // The failure (when !holds).
  sim::RunStatus status = sim::RunStatus::Finished;
  sim::Scenario original;        // the first failing workload, as generated
  sim::Scenario counterexample;  // shrunk
  std::string original_text;     // both in sim's scenario format
  std::string scenario_text;
  std::vector<TaskInfo> tasks;
  std::string replay;  // the failing schedule of the shrunk workload (format_schedule)
  std::optional<sim::RunSummary> run;  // that run, traced (deadlock report and all)
  uint64_t shrink_tries = 0;           // candidates explored while shrinking
  uint64_t shrink_accepted = 0;        // of which still failed (and were kept)
  std::string error;                   // the simulator could not judge (a nondeterministic design)
};

CheckResult check(const Options& options, const Settings& settings = {});

// The report, as `pipepool fuzz` prints it.
std::string format_text(const CheckResult& result);
// `pipepool sim run ... --replay 'SCHEDULE'`: the command line that replays `schedule` on
// `scenario` (a built-in design; a user-written one is replayed in C++).
std::string sim_run_command(const sim::Scenario& scenario, const std::string& schedule);
// The design and its simulated pipe capacity, one line.
std::string describe_design(const sim::Scenario& scenario);

// ---- the building blocks (the properties in fuzz/*_test.cpp use them) ---------------------

// The pool configuration part of a scenario (no calls) from a user's Options.
sim::Scenario base_scenario(const Options& options, const Settings& settings);
// A random workload on `base`; `vary_workers`: draw 1..max_workers instead of base.workers.
sim::Scenario generate(const sim::Scenario& base, Random& random, const Settings& settings,
                       bool vary_workers);

// What exploring a scenario found.
struct Verdict {
  bool fails = false;
  sim::RunStatus status = sim::RunStatus::Finished;
  std::optional<sim::RunSummary> run;  // the failing run
  uint64_t schedules = 0;
  bool complete = false;  // the exhaustive part covered its bound
  std::string error;
};
Verdict judge(const sim::Scenario& scenario, const Settings& settings, bool trace = false);

// Smaller variants of a failing scenario, most aggressive first. `vary_workers`: fewer workers
// are allowed.
std::vector<sim::Scenario> shrink_candidates(const sim::Scenario& scenario, bool vary_workers);

// Greedy shrinking: takes the first candidate that still fails with `status`, until none does or
// `settings.max_shrink_tries` explorations are spent; then minimise_sizes. `tries`/`accepted`
// count explorations and kept candidates.
sim::Scenario shrink(sim::Scenario failing, sim::RunStatus status, const Settings& settings,
                     bool vary_workers, uint64_t& tries, uint64_t& accepted);

// Each payload size of each task call, made as small as it can be while the scenario still fails
// with `status`: bisection between 0 (or the last passing size) and the size, then a retry below
// from each page / header / capacity boundary under the answer, so that a non-monotone size range
// does not hide a smaller failure. On return one byte less in any size completes (or fails
// otherwise than with `status`).
sim::Scenario minimise_sizes(sim::Scenario failing, sim::RunStatus status, const Settings& settings,
                             uint64_t& tries, uint64_t& accepted);

// The tasks of a scenario, as make_script numbers them.
std::vector<TaskInfo> list_tasks(const sim::Scenario& scenario);

// Scales a run count for slow builds: PIPEPOOL_FUZZ_SCALE (a divisor, default 1; 4 under
// AddressSanitizer or ThreadSanitizer unless set). Never below 1.
uint64_t scaled(uint64_t count);

}  // namespace pipepool::fuzz
