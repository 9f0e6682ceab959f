// bench/raw_pipe_benchmark.cpp: the raw-pipe echo (raw_echo.hpp) of every echo load, as its own
// benchmark: the "raw pipe" line of the plots and column of the tables. (The ratios themselves come
// from the pool cases, which time a raw iteration next to each pool iteration.)
#include <benchmark/benchmark.h>

#include <string>

#include "bench_mode.hpp"
#include "case_alarm.hpp"
#include "echo_load.hpp"
#include "raw_echo.hpp"

namespace pipepool::bench {
namespace {

void run_raw_echo(benchmark::State& state, const std::string& name, EchoLoad load, bool splice) {
  CaseAlarm alarm(name, std::chrono::seconds(120));
  try {
    RawEcho raw(load, splice);
    raw.iterate();  // untimed warm-up: the child faults its buffer in
    for (auto _ : state) raw.iterate();
    state.counters["pipe_capacity_bytes"] = static_cast<double>(raw.capacity_bytes());
    state.counters["workers"] = load.workers;
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(load.bytes_per_iteration()));
    state.SetItemsProcessed(state.iterations() * load.messages());
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

}  // namespace

void register_raw_pipe_benchmark(const BenchMode& mode, const EchoLoad& load) {
  const std::string name = "echo/impl:raw_pipe/" + load.name_suffix();
  with_run_settings(benchmark::RegisterBenchmark(name.c_str(), run_raw_echo, name, load, false),
                    mode)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

void register_raw_vmsplice_benchmark(const BenchMode& mode, const EchoLoad& load) {
  const std::string name = "echo/impl:raw_vmsplice/" + load.name_suffix();
  with_run_settings(benchmark::RegisterBenchmark(name.c_str(), run_raw_echo, name, load, true),
                    mode)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace pipepool::bench
