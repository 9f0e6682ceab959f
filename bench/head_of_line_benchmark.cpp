// bench/head_of_line_benchmark.cpp: one long task ahead of seven short ones, on 2 workers, for
// each scheduler: Python's [2.0] + [0.1] * 7 seconds, scaled down in quick and smoke modes (the
// mode's head_of_line_long_ms and head_of_line_short_ms; the name says which).
//
// The optimum makespan is the long task itself (the short ones fit on the other worker), so the
// counter makespan_over_optimum is 1.0 for a scheduler that never queues a short task behind the
// long one, and about 1 + 3 x short/long for one that deals tasks out in turn.
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "bench_mode.hpp"
#include "case_alarm.hpp"
#include "pipepool/pool.hpp"

namespace pipepool::bench {
namespace {

int sleep_ms(int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

void run_head_of_line_unguarded(benchmark::State& state, const std::string& name,
                                SchedulerKind scheduler, int long_ms, int short_ms) {
  CaseAlarm alarm(name, std::chrono::seconds(120));
  constexpr int kWorkers = 2;
  Pool pool(Options{.processes = kWorkers, .scheduler = scheduler});
  std::vector<int> durations_ms{long_ms};
  durations_ms.resize(8, short_ms);
  const double optimum_seconds = long_ms / 1000.0;

  double total_seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto results = pool.map(sleep_ms, durations_ms, 1);
    total_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (results != durations_ms) {
      state.SkipWithError("wrong result");
      return;
    }
  }
  const double makespan_seconds = total_seconds / static_cast<double>(state.iterations());
  state.counters["optimum_s"] = optimum_seconds;
  state.counters["makespan_s"] = makespan_seconds;
  state.counters["makespan_over_optimum"] = makespan_seconds / optimum_seconds;
}

void run_head_of_line(benchmark::State& state, const std::string& name, SchedulerKind scheduler,
                      int long_ms, int short_ms) {
  run_guarded(state,
              [&] { run_head_of_line_unguarded(state, name, scheduler, long_ms, short_ms); });
}

}  // namespace

void register_head_of_line_benchmarks(const BenchMode& mode) {
  for (SchedulerKind scheduler :
       {SchedulerKind::Demand, SchedulerKind::ShortestBacklog, SchedulerKind::RoundRobin}) {
    const std::string name = "head_of_line/scheduler:" + std::string(to_string(scheduler)) +
                             "/workers:2/long_ms:" + std::to_string(mode.head_of_line_long_ms) +
                             "/short_ms:" + std::to_string(mode.head_of_line_short_ms);
    benchmark::RegisterBenchmark(name.c_str(), run_head_of_line, name, scheduler,
                                 mode.head_of_line_long_ms, mode.head_of_line_short_ms)
        ->UseRealTime()
        ->Iterations(1)
        ->Repetitions(mode.head_of_line_repetitions)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace pipepool::bench
