// bench/pipe_model_benchmark.cpp: operations per second of the simulator's pipe model
// (sim/pipe_model.hpp), on one core. Target: more than 1 M ops/s.
//
// One iteration is a non-blocking write of `size` bytes and a non-blocking read of as many (two
// operations of PipeModel::ops()): 64 B (merged into one page), 4 KiB (one page slot) and 64 KiB
// (the whole 16-slot ring). The counter ops_per_second is what the target is checked against.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>
#include <vector>

#include "bench_mode.hpp"
#include "pipe_model.hpp"

namespace pipepool::bench {
namespace {

void run_pipe_model(benchmark::State& state, size_t size_bytes) {
  sim::PipeModel pipe;
  std::vector<std::byte> data(size_bytes, std::byte{'m'});
  std::vector<std::byte> out(size_bytes);
  const uint64_t ops_before = pipe.ops();
  for (auto _ : state) {
    auto wrote = pipe.write(data, /*nonblocking=*/true);
    auto got = pipe.read(out, /*nonblocking=*/true);
    benchmark::DoNotOptimize(wrote);
    benchmark::DoNotOptimize(got);
    if (wrote.result != static_cast<int64_t>(size_bytes) ||
        got.result != static_cast<int64_t>(size_bytes)) {
      state.SkipWithError("pipe model: short write or read");
      break;
    }
  }
  const double ops = static_cast<double>(pipe.ops() - ops_before);
  state.counters["ops_per_second"] = benchmark::Counter(ops, benchmark::Counter::kIsRate);
  state.SetItemsProcessed(static_cast<int64_t>(ops));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(2 * size_bytes));
}

}  // namespace

void register_pipe_model_benchmarks(const BenchMode& mode) {
  for (size_t size : {size_t{64}, size_t{4096}, size_t{65536}}) {
    const std::string name = "pipe_model/op:write_read/size:" + std::to_string(size);
    with_run_settings(benchmark::RegisterBenchmark(name.c_str(), run_pipe_model, size), mode);
  }
}

}  // namespace pipepool::bench
