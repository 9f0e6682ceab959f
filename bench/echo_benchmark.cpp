// bench/echo_benchmark.cpp: bytes per second through the pool, for every strategy, pipe capacity,
// worker count and load shape (echo_load.hpp), with deadlocks reported as such.
//
// One iteration sends 2 x workers tasks (one item each) and waits for every result, as
//   calls:1  one map_async of all of them, or
//   calls:2  two map_async of `workers` tasks each, back to back (symmetric loads only): the
//            pattern strategy.hpp names for Batched's deadlock (map_async followed by map).
//
// Tasks in flight. The default scheduler (Demand, demand_max_in_flight = 1) gives a worker its next
// task only once its previous result is back, so a worker never has two tasks at once: no
// pipelining, and no deadlock whatever the strategy. The main matrix ("in_flight:2") therefore
// sets demand_max_in_flight = 2, which places the tasks as ShortestBacklog or RoundRobin would (two
// per worker, written at once), like the raw-pipe baseline. "in_flight:1" runs Epoll with the
// default options: what a user gets without tuning (and what is compared with Python).
//
// Unbatched and Batched deadlock beyond their threshold: such a case is ended by the watchdog
// (deadlock_watch.hpp), the pool terminated, and the case reported with
// SkipWithError("deadlock: ...") (Google Benchmark 1.7 drops the counters of a run with an error,
// so bench/report.py keys on that message; counter deadlock = 0 marks the runs that finished).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "bench_mode.hpp"
#include "case_alarm.hpp"
#include "deadlock_watch.hpp"
#include "echo_load.hpp"
#include "pipepool/pool.hpp"

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

// One map_async over items [first, first + count) of the iteration.
AsyncResult<Results> submit(Pool& pool, Shape shape, const std::vector<std::string>& payloads,
                            const std::vector<uint64_t>& result_sizes, size_t first, size_t count) {
  switch (shape) {
    case Shape::Symmetric:
      return pool.map_async(echo, std::span(payloads).subspan(first, count), 1);
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

void run_echo(benchmark::State& state, const std::string& name, Strategy strategy,
              uint32_t in_flight, int calls, EchoLoad load, WatchLimits limits) {
  CaseAlarm alarm(name, std::chrono::seconds(120));
  Pool pool(Options{.processes = load.workers,
                    .strategy = strategy,
                    .demand_max_in_flight = in_flight,
                    .enlarge_pipes = load.enlarged_pipes});

  std::vector<std::string> payloads;
  std::vector<uint64_t> result_sizes;
  for (int i = 0; i < load.messages(); ++i) {
    payloads.push_back(make_payload(load.in_bytes(), i));
    result_sizes.push_back(load.out_bytes());
  }
  const size_t per_call = payloads.size() / static_cast<size_t>(calls);

  Results results;
  bool deadlocked = false;
  for (auto _ : state) {
    std::vector<AsyncResult<Results>> pending;
    for (int call = 0; call < calls; ++call) {
      pending.push_back(
          submit(pool, load.shape, payloads, result_sizes, call * per_call, per_call));
    }
    auto stuck = wait_or_diagnose(
        [&](std::chrono::milliseconds slice) {
          for (auto& call : pending) {
            if (!call.wait(slice)) return false;
          }
          return true;
        },
        limits);
    if (stuck) {
      pool.terminate();
      deadlocked = true;
      state.SkipWithError(stuck->c_str());
      break;
    }
    results.clear();
    for (auto& call : pending) {
      for (auto& result : call.get()) results.push_back(std::move(result));
    }
  }

  state.counters["deadlock"] = deadlocked ? 1 : 0;
  state.counters["pipe_capacity_bytes"] = static_cast<double>(pool.pipe_capacity_bytes());
  state.counters["workers"] = load.workers;
  if (deadlocked) return;
  if (const std::string wrong = check_results(load, payloads, results); !wrong.empty()) {
    state.SkipWithError(("wrong result: " + wrong).c_str());
    return;
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(load.bytes_per_iteration()));
  state.SetItemsProcessed(state.iterations() * load.messages());
}

}  // namespace

void register_echo_benchmarks(const BenchMode& mode) {
  const WatchLimits limits{.timeout = mode.deadlock_timeout, .stall_window = mode.stall_window};
  const auto add = [&](Strategy strategy, uint32_t in_flight, int calls, const EchoLoad& load) {
    const std::string name = "echo/impl:pool/strategy:" + std::string(to_string(strategy)) +
                             "/in_flight:" + std::to_string(in_flight) +
                             "/calls:" + std::to_string(calls) + "/" + load.name_suffix();
    benchmark::RegisterBenchmark(name.c_str(), run_echo, name, strategy, in_flight, calls, load,
                                 limits)
        ->UseRealTime()
        ->MinTime(mode.min_time_seconds)
        ->Repetitions(mode.repetitions)
        ->Unit(benchmark::kMillisecond);
  };
  for (const EchoLoad& load : echo_loads(mode)) {
    for (Strategy strategy : {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched}) {
      add(strategy, kMessagesPerWorker, 1, load);
      if (load.shape == Shape::Symmetric) add(strategy, kMessagesPerWorker, 2, load);
    }
    add(Strategy::Epoll, 1, 1, load);
  }
}

}  // namespace pipepool::bench
