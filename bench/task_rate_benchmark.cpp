// bench/task_rate_benchmark.cpp: trivial tasks per second, per call of the API.
//
// Each iteration runs `task_items` calls of square(int) through map, imap, imap_unordered or
// apply_async (all submitted, then every get()), with chunksize 1 and with the default chunking:
// Python's rule, ceil(items / (4 x workers)), which map applies by itself (chunksize 0). imap and
// imap_unordered default to chunksize 1 like Python's; their "default" case passes map's default
// explicitly, so each call is measured with the same chunks. apply_async has no chunking.
//
// in_flight:default is the default Options, only processes set (what is compared with Python).
// For the chunksize-1 cases, in_flight:1 and in_flight:16 set Options::demand_max_in_flight: one
// task per worker at a time (a round trip per task) or up to 16 queued, to show what the round
// trip costs.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "bench_mode.hpp"
#include "case_alarm.hpp"
#include "pipepool/pool.hpp"

namespace pipepool::bench {
namespace {

int square(int x) {
  return x * x;
}

enum class Call { Map, Imap, ImapUnordered, ApplyAsync };

// demand_max_in_flight of the explicit variants; 0 stands for the default Options.
constexpr uint32_t kDefaultOptions = 0;
constexpr uint32_t kDeepInFlight = 16;

const char* call_name(Call call) {
  switch (call) {
    case Call::Map:
      return "map";
    case Call::Imap:
      return "imap";
    case Call::ImapUnordered:
      return "imap_unordered";
    case Call::ApplyAsync:
      return "apply_async";
  }
  return "?";
}

// Returns the sum of the results, to check them.
int64_t run_once(Pool& pool, Call call, const std::vector<int>& items, size_t chunksize) {
  int64_t sum = 0;
  switch (call) {
    case Call::Map:
      for (int y : pool.map(square, items, chunksize)) sum += y;
      break;
    case Call::Imap:
      for (int y : pool.imap(square, items, chunksize)) sum += y;
      break;
    case Call::ImapUnordered:
      for (int y : pool.imap_unordered(square, items, chunksize)) sum += y;
      break;
    case Call::ApplyAsync: {
      std::vector<AsyncResult<int>> results;
      results.reserve(items.size());
      for (int x : items) results.push_back(pool.apply_async(square, x));
      for (auto& result : results) sum += result.get();
      break;
    }
  }
  return sum;
}

void run_task_rate_unguarded(benchmark::State& state, const std::string& name, Call call,
                             bool default_chunking, uint32_t in_flight, int workers,
                             uint64_t task_items) {
  CaseAlarm alarm(name, std::chrono::seconds(120));
  Options options{.processes = workers};
  if (in_flight != kDefaultOptions) options.demand_max_in_flight = in_flight;
  Pool pool(options);
  std::vector<int> items(task_items);
  std::iota(items.begin(), items.end(), 0);
  int64_t expected = 0;
  for (int x : items) expected += square(x);
  const size_t chunksize = default_chunking ? detail::default_chunksize(items.size(), workers) : 1;

  bool wrong = false;
  for (auto _ : state) {
    if (run_once(pool, call, items, chunksize) != expected) wrong = true;
  }
  if (wrong) {
    state.SkipWithError("wrong result: the sum of squares differs");
    return;
  }
  state.counters["chunksize"] = static_cast<double>(chunksize);
  state.counters["workers"] = workers;
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(items.size()));
}

void run_task_rate(benchmark::State& state, const std::string& name, Call call,
                   bool default_chunking, uint32_t in_flight, int workers, uint64_t task_items) {
  run_guarded(state, [&] {
    run_task_rate_unguarded(state, name, call, default_chunking, in_flight, workers, task_items);
  });
}

}  // namespace

void register_task_rate_benchmarks(const BenchMode& mode) {
  const auto add = [&](Call call, bool default_chunking, uint32_t in_flight) {
    const std::string name =
        std::string("task_rate/impl:pool/call:") + call_name(call) +
        "/chunksize:" + (default_chunking ? "default" : "1") +
        "/in_flight:" + (in_flight == kDefaultOptions ? "default" : std::to_string(in_flight)) +
        "/workers:" + std::to_string(mode.task_workers);
    with_run_settings(
        benchmark::RegisterBenchmark(name.c_str(), run_task_rate, name, call, default_chunking,
                                     in_flight, mode.task_workers, mode.task_items),
        mode)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (Call call : {Call::Map, Call::Imap, Call::ImapUnordered, Call::ApplyAsync}) {
    add(call, false, kDefaultOptions);
    if (call != Call::ApplyAsync) add(call, true, kDefaultOptions);
  }
  // Demand with demand_max_in_flight = 1 sends a worker its next task only once its result is
  // back: one round trip per task. With room for kDeepInFlight tasks per worker, they overlap.
  for (uint32_t in_flight : {1u, kDeepInFlight}) {
    for (Call call : {Call::Map, Call::Imap, Call::ImapUnordered, Call::ApplyAsync}) {
      add(call, false, in_flight);
    }
  }
}

}  // namespace pipepool::bench
