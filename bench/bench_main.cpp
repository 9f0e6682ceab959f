// bench/bench_main.cpp: the pipepool_bench binary. Usage:
//
//   pipepool_bench [--pipepool_mode=quick|full|smoke] [any --benchmark_* flag]
//   pipepool_bench --pipepool_mode=quick --pipepool_describe_mode   # the mode as JSON, then exit
//   pipepool_bench --pipepool_iterations=100 --benchmark_filter=...  # exactly 100 iterations
//                                                                     (for perf stat, strace -c)
//
// bench/run.sh runs it with JSON output and turns the results into plots and summary.md; it hands
// the described mode to bench/python_peers.py, so that the peers run exactly the same workloads.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_mode.hpp"
#include "echo_load.hpp"
#include "os/pipe.hpp"

namespace pipepool::bench {

BenchMode mode_named(const std::string& name) {
  constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;
  BenchMode mode;
  mode.name = name;
  if (name == "smoke") {
    mode.echo_sizes_bytes = {1 * KiB, 256 * KiB};
    mode.asymmetric_sizes_bytes = {256 * KiB};
    mode.echo_workers = {1};
    mode.deadlock_timeout = std::chrono::milliseconds(5000);
    mode.stall_window = std::chrono::milliseconds(500);
    mode.task_items = 200;
    mode.head_of_line_long_ms = 100;
    mode.head_of_line_short_ms = 5;
    mode.min_time_seconds = 0.01;
  } else if (name == "quick") {
    mode.echo_sizes_bytes = {64, 4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB};
    mode.asymmetric_sizes_bytes = {1 * MiB};
    mode.echo_workers = {1, 2};
    mode.deadlock_timeout = std::chrono::milliseconds(5000);
    mode.stall_window = std::chrono::milliseconds(500);
    mode.task_items = 2000;
    mode.head_of_line_long_ms = 400;
    mode.head_of_line_short_ms = 20;
    mode.min_time_seconds = 0.05;
  } else if (name == "full") {
    mode.echo_sizes_bytes = {8,        64,        256,     1 * KiB, 4 * KiB, 16 * KiB,
                             64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB};
    mode.asymmetric_sizes_bytes = {4 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB};
    mode.echo_workers = {1, 2};
    mode.deadlock_timeout = std::chrono::milliseconds(5000);
    mode.stall_window = std::chrono::milliseconds(1000);
    mode.task_items = 10000;
    mode.head_of_line_long_ms = 2000;  // Python's [2.0] + [0.1] * 7, unscaled
    mode.head_of_line_short_ms = 100;
    mode.head_of_line_repetitions = 2;
    mode.min_time_seconds = 0.2;
    mode.repetitions = 3;
  } else {
    throw std::invalid_argument("unknown --pipepool_mode '" + name +
                                "' (expected quick, full or smoke)");
  }
  return mode;
}

benchmark::internal::Benchmark* with_run_settings(benchmark::internal::Benchmark* benchmark,
                                                  const BenchMode& mode) {
  if (mode.fixed_iterations > 0) return benchmark->Iterations(mode.fixed_iterations);
  return benchmark->MinTime(mode.min_time_seconds)->Repetitions(mode.repetitions);
}

namespace {

std::string json_list(const std::vector<uint64_t>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(values[i]);
  }
  return text + "]";
}

// The workloads python_peers.py mirrors (see the names in echo_load.hpp and task_rate_benchmark).
std::string describe(const BenchMode& mode) {
  std::vector<uint64_t> workers(mode.echo_workers.begin(), mode.echo_workers.end());
  char min_time[32];
  std::snprintf(min_time, sizeof min_time, "%g", mode.min_time_seconds);
  return "{\"mode\": \"" + mode.name +
         "\", \"echo_sizes_bytes\": " + json_list(mode.echo_sizes_bytes) +
         ", \"asymmetric_sizes_bytes\": " + json_list(mode.asymmetric_sizes_bytes) +
         ", \"echo_workers\": " + json_list(workers) +
         ", \"messages_per_worker\": " + std::to_string(kMessagesPerWorker) +
         ", \"small_side_bytes\": " + std::to_string(kSmallSideBytes) +
         ", \"task_items\": " + std::to_string(mode.task_items) +
         ", \"task_workers\": " + std::to_string(mode.task_workers) +
         ", \"min_time_seconds\": " + min_time +
         ", \"repetitions\": " + std::to_string(mode.repetitions) + "}\n";
}

}  // namespace
}  // namespace pipepool::bench

int main(int argc, char** argv) {
  using namespace pipepool::bench;
  std::string mode_name = "quick";
  bool describe_only = false;
  int64_t fixed_iterations = 0;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    constexpr const char* kFlag = "--pipepool_mode=";
    if (std::strncmp(argv[i], kFlag, std::strlen(kFlag)) == 0) {
      mode_name = argv[i] + std::strlen(kFlag);
    } else if (std::strncmp(argv[i], "--pipepool_iterations=", 22) == 0) {
      fixed_iterations = std::atoll(argv[i] + 22);
    } else if (std::strcmp(argv[i], "--pipepool_describe_mode") == 0) {
      describe_only = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  BenchMode mode;
  try {
    mode = mode_named(mode_name);
    mode.fixed_iterations = fixed_iterations;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "pipepool_bench: %s\n", error.what());
    return 2;
  }
  if (describe_only) {
    std::fputs(describe(mode).c_str(), stdout);
    return 0;
  }

  register_echo_benchmarks(mode);
  register_task_rate_benchmarks(mode);
  register_head_of_line_benchmarks(mode);
#ifdef PIPEPOOL_BENCH_HAS_SIM
  register_pipe_model_benchmarks(mode);
  register_simulator_benchmarks(mode);
#endif

  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  benchmark::AddCustomContext("pipepool_mode", mode.name);
  benchmark::AddCustomContext("pipe_max_size_bytes", std::to_string(pipepool::os::pipe_max_size()));
#ifdef PIPEPOOL_BENCH_HAS_SIM
  benchmark::AddCustomContext("pipepool_sim", "yes");
#else
  benchmark::AddCustomContext("pipepool_sim", "no");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
