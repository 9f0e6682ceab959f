// bench/simulator_benchmark.cpp: speed of the whole simulator (sim/explore.hpp): random schedules
// of two small scenarios, as `pipepool sim explore` runs them, in schedules, steps and pipe
// operations per second of CPU time.
//
//   epoll_map          Epoll, 2 workers, a map of 8 tasks of 64 KiB in and out (finishes).
//   unbatched_deadlock Unbatched, 1 worker, two apply_async of 70000 bytes in and out on 64 KiB
//                      pipes (the scenario of strategy.hpp: most schedules deadlock).
// The counter deadlocked_fraction says how many of the runs deadlocked.
#include <benchmark/benchmark.h>

#include <string>

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

}  // namespace

void register_simulator_benchmarks(const BenchMode& mode) {
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
