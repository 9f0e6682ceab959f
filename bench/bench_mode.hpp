// bench/bench_mode.hpp: the three sizes of the benchmark suite, and how each file registers its
// benchmarks for one of them.
//
//   pipepool_bench --pipepool_mode=quick   (default) about a minute, every family, fewer points
//   pipepool_bench --pipepool_mode=full    every size, every shape, repetitions
//   pipepool_bench --pipepool_mode=smoke   a few seconds: every family and strategy runs once
//
// Benchmarks are registered at run time (not with BENCHMARK()) so that the mode decides which
// sizes exist; --benchmark_filter still works on top of that.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace pipepool::bench {

struct BenchMode {
  std::string name;

  // Echo throughput: payload sizes of the symmetric echo, and of the two asymmetric loads.
  std::vector<uint64_t> echo_sizes_bytes;
  std::vector<uint64_t> asymmetric_sizes_bytes;
  std::vector<int> echo_workers;
  // A case with no result after `deadlock_timeout` is reported as a deadlock; one whose processes
  // all sleep without using CPU for `stall_window` is reported sooner (see deadlock_watch.hpp).
  std::chrono::milliseconds deadlock_timeout{5000};
  std::chrono::milliseconds stall_window{1000};

  // Task rate: items per iteration, workers.
  uint64_t task_items = 10000;
  int task_workers = 2;

  // Head of line: one long task then seven short ones, in milliseconds.
  int head_of_line_long_ms = 400;
  int head_of_line_short_ms = 20;
  int head_of_line_repetitions = 1;

  // Google Benchmark knobs for the throughput and rate families.
  double min_time_seconds = 0.1;
  int repetitions = 1;
  // --pipepool_iterations=N: exactly N timed iterations, one repetition, instead of min_time (for
  // profiles: `perf stat` of N iterations minus 1 iteration gives the cost per iteration).
  int64_t fixed_iterations = 0;
};

// Runs `body`; an exception escaping it (a pool error, a bad option) becomes SkipWithError with its
// message, so that one failing case is reported instead of aborting the whole run.
template <class Body>
void run_guarded(benchmark::State& state, Body&& body) {
  try {
    body();
  } catch (const std::exception& error) {
    state.SkipWithError((std::string("exception: ") + error.what()).c_str());
  } catch (...) {
    state.SkipWithError("exception: (not a std::exception)");
  }
}

// Sets the mode's min_time and repetitions on `benchmark`, or its fixed iteration count; returns
// `benchmark` for chaining.
benchmark::internal::Benchmark* with_run_settings(benchmark::internal::Benchmark* benchmark,
                                                  const BenchMode& mode);

// Parses "quick", "full" or "smoke"; throws std::invalid_argument otherwise.
BenchMode mode_named(const std::string& name);

// Each benchmark file registers its family for the mode. Echo registers, for each load, the raw
// pipe (raw_pipe_benchmark.cpp) then every pool variant of that load.
struct EchoLoad;
void register_raw_pipe_benchmark(const BenchMode& mode, const EchoLoad& load);
// The same raw echo with vmsplice for every message and reply (raw_echo.hpp, splice): what
// Strategy::ZeroCopy could reach at most.
void register_raw_vmsplice_benchmark(const BenchMode& mode, const EchoLoad& load);
void register_echo_benchmarks(const BenchMode& mode);
void register_task_rate_benchmarks(const BenchMode& mode);
void register_head_of_line_benchmarks(const BenchMode& mode);
void register_pipe_model_benchmarks(const BenchMode& mode);  // only with pipepool_sim
void register_simulator_benchmarks(const BenchMode& mode);   // only with pipepool_sim

}  // namespace pipepool::bench
