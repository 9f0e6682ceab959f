// bench/bench_main.cpp: the pipepool_bench binary. Usage:
//
//   pipepool_bench [--pipepool_mode=quick|full|smoke] [any --benchmark_* flag]
//   pipepool_bench --pipepool_mode=quick --pipepool_describe_mode   # the mode as JSON, then exit
//   pipepool_bench --pipepool_iterations=100 --benchmark_filter=...  # exactly 100 iterations
//                                                                     (for perf stat, strace -c)
//   pipepool_bench --pipepool_repetitions=1 --benchmark_filter=...   # one repetition (how
//                                     python_peers.py --interleave runs one case beside a peer's)
//
// bench/run.sh runs it with JSON output and turns the results into plots and summary.md; it hands
// the described mode to bench/python_peers.py, so that the peers run exactly the same workloads.
#include <benchmark/benchmark.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
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

// The workloads python_peers.py mirrors (see the names in echo_load.hpp and task_rate_benchmark).
std::string describe(const BenchMode& mode) {
  nlohmann::ordered_json json{
      {"mode", mode.name},
      {"echo_sizes_bytes", mode.echo_sizes_bytes},
      {"asymmetric_sizes_bytes", mode.asymmetric_sizes_bytes},
      {"echo_workers", std::vector<uint64_t>(mode.echo_workers.begin(), mode.echo_workers.end())},
      {"messages_per_worker", kMessagesPerWorker},
      {"small_side_bytes", kSmallSideBytes},
      {"task_items", mode.task_items},
      {"task_workers", mode.task_workers},
      {"min_time_seconds", mode.min_time_seconds},
      {"repetitions", mode.repetitions}};
  return json.dump() + "\n";
}

}  // namespace
}  // namespace pipepool::bench

int main(int argc, char** argv) {
  using namespace pipepool::bench;
  std::string mode_name = "quick";
  bool describe_only = false;
  int64_t fixed_iterations = 0;
  int repetitions = 0;
  CLI::App app(
      "pipepool_bench: the pool's benchmarks (Google Benchmark); every other flag, "
      "--benchmark_filter=... and the like, goes to Google Benchmark",
      "pipepool_bench");
  app.allow_extras();
  app.add_option("--pipepool_mode", mode_name, "workload sizes and run times")
      ->capture_default_str()
      ->check(CLI::IsMember({"quick", "full", "smoke"}));
  app.add_option("--pipepool_iterations", fixed_iterations,
                 "exactly this many iterations per benchmark (for perf stat, strace -c)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--pipepool_repetitions", repetitions,
                 "repetitions of every benchmark instead of the mode's")
      ->check(CLI::Range(1, 100));
  app.add_flag("--pipepool_describe_mode", describe_only, "print the mode as JSON and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "pipepool_bench: %s\n", e.what());
    return 2;
  }
  std::vector<std::string> rest = app.remaining();
  std::vector<char*> args{argv[0]};
  for (std::string& arg : rest) args.push_back(arg.data());
  BenchMode mode;
  try {
    mode = mode_named(mode_name);
    mode.fixed_iterations = fixed_iterations;
    if (repetitions > 0) mode.repetitions = repetitions;
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
