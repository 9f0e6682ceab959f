// bench/echo_benchmark.cpp: bytes per second through the pool, for every strategy, pipe capacity,
// worker count and load shape (echo_load.hpp), with deadlocks reported as such.
//
// One iteration sends 2 x workers tasks (one item each) and waits for every result, as
//   calls:1  one map_async of all of them, or
//   calls:2  two map_async of `workers` tasks each, back to back (symmetric loads only): the
//            pattern strategy.hpp names for Batched's deadlock (map_async followed by map).
//
// Options. The main matrix ("options:round_robin") uses the RoundRobin scheduler, which hands task
// i to worker i mod workers at once: two tasks per worker in flight, written back to back, exactly
// as the raw-pipe baseline does, and what lambda_multiprocessing did. "options:default" runs Epoll
// with the default Options (only processes and enlarge_pipes set): the Demand scheduler decides how
// many tasks a worker holds (with demand_max_in_flight = 1, one at a time: no pipelining and, for
// any strategy, no deadlock). It is what a user gets without tuning, and what is compared with
// Python.
//
// Inputs. An async call owns its arguments (pool.hpp: moved in from an rvalue, copied from an
// lvalue, as Python pickles at submit time). The symmetric echo gives the pool what a user moving
// data through it would, and what the raw pipe gets (it reuses its buffers): each iteration's
// inputs are moved into its map_async, and its results (the echoed strings) moved back as the next
// iteration's inputs, so no iteration copies a payload in the caller. The asymmetric loads pass a
// std::span of their inputs, which the call copies once (a large_in result cannot become the
// next input).
//
// Timing: every timed iteration is preceded by one iteration of the raw pipe (raw_echo.hpp) of the
// same load, timed apart (manual time: Google Benchmark's time is the pool's alone). Counters
// raw_bytes_per_second and fraction_of_raw (pool rate / raw rate, from these paired iterations)
// are what the targets are checked against: noise that lasts longer than an iteration hits both.
//
// Unbatched and Batched deadlock beyond their threshold: such a case is ended by the watchdog
// (deadlock_watch.hpp), the pool terminated, and the case reported with
// SkipWithError("deadlock: ...") (Google Benchmark 1.7 drops the counters of a run with an error,
// so bench/report.py keys on that message; counter deadlock = 0 marks the runs that finished).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench_mode.hpp"
#include "case_alarm.hpp"
#include "deadlock_watch.hpp"
#include "echo_load.hpp"
#include "pipepool/pool.hpp"
#include "raw_echo.hpp"

namespace pipepool::bench {
namespace {

std::string echo(std::string payload) {
  return payload;
}

std::string keep_first_bytes(std::string payload) {
  payload.resize(kSmallSideBytes);
  return payload;
}

std::string make_bytes(uint64_t size_bytes) {
  return std::string(size_bytes, 'r');
}

using Results = std::vector<std::string>;

// One map_async over items [first, first + count) of the iteration. Symmetric: the items are
// moved out of `payloads` into the call (see "Inputs" above).
AsyncResult<Results> submit(Pool& pool, Shape shape, std::vector<std::string>& payloads,
                            const std::vector<uint64_t>& result_sizes, size_t first, size_t count) {
  switch (shape) {
    case Shape::Symmetric: {
      std::vector<std::string> items;
      items.reserve(count);
      for (size_t i = first; i < first + count; ++i) items.push_back(std::move(payloads[i]));
      return pool.map_async(echo, std::move(items), 1);
    }
    case Shape::LargeIn:
      return pool.map_async(keep_first_bytes, std::span(payloads).subspan(first, count), 1);
    case Shape::LargeOut:
      return pool.map_async(make_bytes, std::span(result_sizes).subspan(first, count), 1);
  }
  throw std::logic_error("unknown shape");
}

// Distinct, cheap-to-make payloads: a 26-letter pattern shifted by the message index.
std::string make_payload(uint64_t size_bytes, int index) {
  constexpr std::string_view kLetters = "abcdefghijklmnopqrstuvwxyz";
  std::string payload(size_bytes, '\0');
  for (size_t done = 0; done < payload.size();) {
    const size_t start = (done + static_cast<size_t>(index)) % kLetters.size();
    const size_t n = std::min(kLetters.size() - start, payload.size() - done);
    std::memcpy(payload.data() + done, kLetters.data() + start, n);
    done += n;
  }
  return payload;
}

// The whole reply, checked once after timing: size, and content where it is an echo.
std::string check_results(const EchoLoad& load, const std::vector<std::string>& payloads,
                          const Results& results) {
  if (results.size() != static_cast<size_t>(load.messages())) return "wrong number of results";
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].size() != load.out_bytes()) return "result of wrong size";
    if (load.shape == Shape::Symmetric && results[i] != payloads[i]) return "echo differs";
  }
  return "";
}

// Cases that deadlocked, with their diagnosis: later repetitions of the same case report the same
// deadlock at once instead of waiting for the watchdog again (these deadlocks are deterministic).
std::map<std::string, std::string>& deadlocked_cases() {
  static std::map<std::string, std::string> cases;
  return cases;
}

// How the pool is configured besides strategy, workers and pipes.
enum class Config { RoundRobin, Default };

Options options_for(Config config, Strategy strategy, const EchoLoad& load) {
  Options options{.processes = load.workers, .enlarge_pipes = load.enlarged_pipes};
  if (config == Config::RoundRobin) {
    options.strategy = strategy;
    options.scheduler = SchedulerKind::RoundRobin;
  }
  return options;
}

void run_echo_unguarded(benchmark::State& state, const std::string& name, Strategy strategy,
                        Config config, int calls, EchoLoad load, WatchOptions watch) {
  if (auto found = deadlocked_cases().find(name); found != deadlocked_cases().end()) {
    state.SkipWithError((found->second + " (repetition not run: it deadlocked before)").c_str());
    return;
  }
  CaseAlarm alarm(name, std::chrono::seconds(120));
  // The raw pipe of the same load, forked first (while this process has no thread): each timed
  // pool iteration follows a raw iteration, so the ratio's two terms share the machine's mood.
  RawEcho raw(load);
  watch.ignored_processes = raw.pids();
  Pool pool(options_for(config, strategy, load));

  std::vector<std::string> payloads;
  std::vector<uint64_t> result_sizes;
  for (int i = 0; i < load.messages(); ++i) {
    payloads.push_back(make_payload(load.in_bytes(), i));
    result_sizes.push_back(load.out_bytes());
  }
  const size_t per_call = payloads.size() / static_cast<size_t>(calls);
  // The inputs of the next iteration: symmetric, the previous iteration's results (moved back).
  std::vector<std::string> inputs = payloads;

  // One iteration: every call submitted, then every result; the diagnosis if it deadlocked.
  Results results;
  const auto iterate = [&]() -> std::optional<std::string> {
    if (load.shape == Shape::Symmetric && !results.empty()) inputs = std::move(results);
    std::vector<AsyncResult<Results>> pending;
    for (int call = 0; call < calls; ++call) {
      pending.push_back(submit(pool, load.shape, inputs, result_sizes, call * per_call, per_call));
    }
    auto stuck = wait_or_diagnose(
        [&](std::chrono::milliseconds slice) {
          for (auto& call : pending) {
            if (!call.wait(slice)) return false;
          }
          return true;
        },
        watch);
    if (stuck) return stuck;
    results.clear();
    for (auto& call : pending) {
      for (auto& result : call.take()) results.push_back(std::move(result));
    }
    return std::nullopt;
  };

  // One untimed warm-up iteration of each (workers fault their buffers in).
  using Clock = std::chrono::steady_clock;
  raw.iterate();
  std::optional<std::string> stuck = iterate();
  double raw_seconds = 0, pool_seconds = 0;
  for (auto _ : state) {
    if (stuck) break;
    const auto raw_start = Clock::now();
    raw.iterate();
    const auto pool_start = Clock::now();
    stuck = iterate();
    const double seconds = std::chrono::duration<double>(Clock::now() - pool_start).count();
    raw_seconds += std::chrono::duration<double>(pool_start - raw_start).count();
    pool_seconds += seconds;
    state.SetIterationTime(seconds);
  }
  const bool deadlocked = stuck.has_value();
  if (deadlocked) {
    pool.terminate();
    state.SkipWithError(stuck->c_str());
    deadlocked_cases()[name] = *stuck;
  }

  state.counters["deadlock"] = deadlocked ? 1 : 0;
  state.counters["pipe_capacity_bytes"] = static_cast<double>(pool.pipe_capacity_bytes());
  state.counters["workers"] = load.workers;
  if (deadlocked) return;
  if (const std::string wrong = check_results(load, payloads, results); !wrong.empty()) {
    state.SkipWithError(("wrong result: " + wrong).c_str());
    return;
  }
  const double bytes =
      static_cast<double>(state.iterations()) * static_cast<double>(load.bytes_per_iteration());
  state.counters["raw_bytes_per_second"] = raw_seconds > 0 ? bytes / raw_seconds : 0;
  state.counters["fraction_of_raw"] = pool_seconds > 0 ? raw_seconds / pool_seconds : 0;
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(load.bytes_per_iteration()));
  state.SetItemsProcessed(state.iterations() * load.messages());
}

void run_echo(benchmark::State& state, const std::string& name, Strategy strategy, Config config,
              int calls, EchoLoad load, WatchOptions watch) {
  run_guarded(state,
              [&] { run_echo_unguarded(state, name, strategy, config, calls, load, watch); });
}

}  // namespace

void register_echo_benchmarks(const BenchMode& mode) {
  WatchOptions watch;
  watch.timeout = mode.deadlock_timeout;
  watch.stall_window = mode.stall_window;
  const auto add = [&](Strategy strategy, Config config, int calls, const EchoLoad& load) {
    const std::string name =
        "echo/impl:pool/strategy:" + std::string(to_string(strategy)) +
        "/options:" + (config == Config::RoundRobin ? "round_robin" : "default") +
        "/calls:" + std::to_string(calls) + "/" + load.name_suffix();
    with_run_settings(benchmark::RegisterBenchmark(name.c_str(), run_echo, name, strategy, config,
                                                   calls, load, watch),
                      mode)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (const EchoLoad& load : echo_loads(mode)) {
    // The raw pipe right before the pool cases of the same load: side by side in time, so that
    // the machine's noise hits a ratio's two terms alike.
    register_raw_pipe_benchmark(mode, load);
    for (Strategy strategy :
         {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched, Strategy::ZeroCopy}) {
      add(strategy, Config::RoundRobin, 1, load);
      if (load.shape == Shape::Symmetric) add(strategy, Config::RoundRobin, 2, load);
    }
    add(Strategy::Epoll, Config::Default, 1, load);
    add(Strategy::ZeroCopy, Config::Default, 1, load);
    if (load.shape == Shape::Symmetric) register_raw_vmsplice_benchmark(mode, load);
  }
}

}  // namespace pipepool::bench
