// bench/simulator_benchmark.cpp: speed of the whole simulator (sim/explore.hpp): random schedules
// of two small scenarios, as `pipepool sim explore` runs them, in schedules, steps and pipe
// operations per second of CPU time.
//
//   epoll_map          Epoll, 2 workers, a map of 8 tasks of 64 KiB in and out (finishes).
//   unbatched_deadlock Unbatched, 1 worker, two apply_async of 70000 bytes in and out on 64 KiB
//                      pipes (the scenario of strategy.hpp: most schedules deadlock).
// The counter deadlocked_fraction says how many of the runs deadlocked.
//
// exhaustive/...: one exhaustive exploration within preemption bound 2 per iteration, as
// `pipepool sim run --preemptions 2` certifies (sim/README.md, "The reductions"), for each of
// Batched and Epoll with RoundRobin and ShortestBacklog, 2 workers, map_async N 70000 70000 0 1 on
// 64 KiB pipes, with the explorer's defaults (state fingerprint, a snapshot every 4 steps). N = 2
// and the first target (2 workers, N = 8, under 10 s) are certified completely, and so is
// 4 workers with N = 2 (not in smoke mode); the second target (4 workers with N = 16 under 60 s)
// is not reached (sim/README.md, "Copies, the state fingerprint, and the targets": it
// needs far more states than any rate reaches) and runs in full mode with a limit of 100,000 runs
// (schedules + runs cut by the cache), so the family measures its rates in a minute: counter
// complete = 1 means certified, 0 means the limit came first.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_mode.hpp"
#include "explore.hpp"
#include "scenario.hpp"

namespace pipepool::bench {
namespace {

constexpr uint64_t kSchedulesPerIteration = 16;

void run_simulator(benchmark::State& state, std::string text) {
  sim::Scenario scenario;
  std::string error;
  if (!sim::parse_scenario(text, scenario, error)) {
    state.SkipWithError(("scenario: " + error).c_str());
    return;
  }
  uint64_t schedules = 0, deadlocks = 0, steps = 0, pipe_ops = 0, seed = 1;
  for (auto _ : state) {
    sim::ExploreOptions options;
    options.mode = sim::ExploreMode::Random;
    options.seed = seed++;
    options.schedules = kSchedulesPerIteration;
    options.stop_at_first_failure = false;
    options.trace_counterexample = false;
    const sim::ExploreResult result = sim::explore(scenario, options);
    if (!result.error.empty()) {
      state.SkipWithError(("explore: " + result.error).c_str());
      return;
    }
    deadlocks += result.outcomes[static_cast<int>(sim::RunStatus::Deadlock)];
    schedules += result.schedules;
    steps += result.steps;
    pipe_ops += result.pipe_ops;
  }
  using benchmark::Counter;
  state.counters["schedules_per_second"] =
      Counter(static_cast<double>(schedules), Counter::kIsRate);
  state.counters["steps_per_second"] = Counter(static_cast<double>(steps), Counter::kIsRate);
  state.counters["pipe_ops_per_second"] = Counter(static_cast<double>(pipe_ops), Counter::kIsRate);
  state.counters["deadlocked_fraction"] =
      schedules == 0 ? 0.0 : static_cast<double>(deadlocks) / static_cast<double>(schedules);
  state.SetItemsProcessed(static_cast<int64_t>(steps));
}

void run_exhaustive(benchmark::State& state, std::string text, uint64_t run_limit) {
  sim::Scenario scenario;
  std::string error;
  if (!sim::parse_scenario(text, scenario, error)) {
    state.SkipWithError(("scenario: " + error).c_str());
    return;
  }
  uint64_t schedules = 0, pruned = 0, states = 0, steps = 0, restores = 0, complete = 1;
  for (auto _ : state) {
    sim::ExploreOptions options;
    options.mode = sim::ExploreMode::Exhaustive;
    options.preemption_bound = 2;
    options.schedules = run_limit;
    options.trace_counterexample = false;
    const sim::ExploreResult result = sim::explore(scenario, options);
    if (!result.error.empty() || result.failures != 0) {
      state.SkipWithError(("explore: " + result.error + " (or a failure found)").c_str());
      return;
    }
    schedules += result.schedules;
    pruned += result.pruned;
    states += result.cache_entries;
    steps += result.steps;
    restores += result.restores;
    if (!result.complete) complete = 0;
  }
  using benchmark::Counter;
  state.counters["complete"] = static_cast<double>(complete);
  state.counters["schedules"] = Counter(static_cast<double>(schedules), Counter::kAvgIterations);
  state.counters["cut_by_cache"] = Counter(static_cast<double>(pruned), Counter::kAvgIterations);
  state.counters["distinct_states"] = Counter(static_cast<double>(states), Counter::kAvgIterations);
  state.counters["schedules_per_second"] =
      Counter(static_cast<double>(schedules), Counter::kIsRate);
  state.counters["distinct_states_per_second"] =
      Counter(static_cast<double>(states), Counter::kIsRate);
  state.counters["steps_per_second"] = Counter(static_cast<double>(steps), Counter::kIsRate);
  state.counters["runs_from_snapshot"] =
      Counter(static_cast<double>(restores), Counter::kAvgIterations);
}

void register_exhaustive(const BenchMode& mode) {
  struct Target {
    uint32_t workers;
    uint32_t tasks;
    uint64_t run_limit;  // 0: none (certified completely)
  };
  std::vector<Target> targets = {{2, 2, 0}};
  if (mode.name != "smoke") {
    targets.push_back({2, 8, 0});
    // 4 workers, certified completely: the smallest step toward the second target, to follow how
    // the states grow with the workers (sim/README.md has the curve).
    targets.push_back({4, 2, 0});
  }
  if (mode.name == "full") targets.push_back({4, 16, 100'000});
  for (const char* strategy : {"batched", "epoll"}) {
    for (const char* scheduler : {"round-robin", "shortest-backlog"}) {
      for (const Target& t : targets) {
        const std::string name = std::string("simulator/exhaustive:") + strategy + "/" + scheduler +
                                 "/workers:" + std::to_string(t.workers) +
                                 "/map_async:" + std::to_string(t.tasks);
        const std::string text = std::string("strategy ") + strategy + "\nscheduler " + scheduler +
                                 "\nworkers " + std::to_string(t.workers) +
                                 "\npipe-pages 16\nmap_async " + std::to_string(t.tasks) +
                                 " 70000 70000 0 1\n";
        benchmark::RegisterBenchmark(name.c_str(), run_exhaustive, text,
                                     t.run_limit == 0 ? uint64_t{100'000'000} : t.run_limit)
            ->Iterations(1)
            ->UseRealTime()
            ->Unit(benchmark::kSecond);
      }
    }
  }
}

}  // namespace

void register_simulator_benchmarks(const BenchMode& mode) {
  register_exhaustive(mode);
  with_run_settings(
      benchmark::RegisterBenchmark("simulator/scenario:epoll_map", run_simulator,
                                   std::string("strategy epoll\nscheduler demand\nworkers 2\n"
                                               "pipe-pages 16\nmap 8 64K 64K 0\n")),
      mode);
  with_run_settings(
      benchmark::RegisterBenchmark("simulator/scenario:unbatched_deadlock", run_simulator,
                                   std::string("strategy unbatched\nscheduler shortest-backlog\n"
                                               "workers 1\npipe-pages 16\n"
                                               "apply_async 70000 70000 0\n"
                                               "apply_async 70000 70000 0\n")),
      mode);
}

}  // namespace pipepool::bench
