// The simulator's exact threshold against the real pool: the smallest task and result payloads
// that deadlock Unbatched on one worker with 64 KiB pipes, found by search over the pipe model,
// must be exactly where real processes over real pipes start to hang.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "driver/test_hooks.hpp"
#include "explore.hpp"
#include "pipepool/pipepool.hpp"
#include "process_helpers.hpp"
#include "scenario.hpp"
#include "threshold.hpp"
#include "watchdog.hpp"
#include "world.hpp"

namespace pipepool::sim {
namespace {

using namespace std::chrono_literals;

std::string echo_resized(std::string in, size_t out_bytes) {
  in.resize(out_bytes, 'r');
  return in;
}

// Payload bytes of a real task `echo_resized(std::string(n), m)` (gather layout, task.hpp): head
// length (8) + trampoline (8) + function pointer (8) + item count (8) + string length (8) + n +
// size_t (8). Of its result: head length (8) + item count (8) + string length (8) + m.
constexpr size_t kTaskOverhead = 48;
constexpr size_t kResultOverhead = 24;

// Two back-to-back apply_async on a pool of `options` (one worker): true if they deadlock (no
// results within a 2 s budget; the pool is then terminated).
bool real_pool_deadlocks(const Options& options, uint64_t task_payload, uint64_t result_payload) {
  Pool pool(options);
  const std::string in(task_payload - kTaskOverhead, 'x');
  const size_t out = result_payload - kResultOverhead;
  auto a = pool.apply_async(echo_resized, in, out);
  auto b = pool.apply_async(echo_resized, in, out);
  const bool done = a.wait(2s) && b.wait(2s);
  if (!done) pool.terminate();
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(2000).empty() || done);
  return !done;
}

TEST(RealPoolAgreement, UnbatchedThresholdIsWhereRealProcessesHang) {
  ThresholdOptions options;
  options.strategy = Strategy::Unbatched;
  options.pipe_pages = 16;
  ThresholdResult found = find_threshold(options);
  ASSERT_TRUE(found.task.smallest && found.result.smallest) << found.error;
  const uint64_t task = *found.task.smallest, result = *found.result.smallest;
  std::printf("simulator: smallest deadlocking task payload %llu, result payload %llu\n",
              static_cast<unsigned long long>(task), static_cast<unsigned long long>(result));
  // Unbatched, 64 KiB pipes.
  const Options unbatched{.processes = 1,
                          .strategy = Strategy::Unbatched,
                          .scheduler = SchedulerKind::ShortestBacklog,
                          .enlarge_pipes = false};
  EXPECT_TRUE(real_pool_deadlocks(unbatched, task, result))
      << "the real pool did not hang at the threshold";
  EXPECT_FALSE(real_pool_deadlocks(unbatched, task - 1, result))
      << "the real pool hung one byte below";
  EXPECT_FALSE(real_pool_deadlocks(unbatched, task, result - 1))
      << "the real pool hung one byte below";
}

// ---- the same to the byte over a socketpair, with both framings --------------------------------

struct SocketCase {
  Strategy strategy;
  Framing framing;
};

std::string describe(const SocketCase& c) {
  return std::string(to_string(c.strategy)) + ", " + to_string(c.framing) + " framing";
}

Options socket_options(const SocketCase& c) {
  Options o{.processes = 1,
            .strategy = c.strategy,
            .scheduler = SchedulerKind::ShortestBacklog,
            .transport = Transport::SocketPair,
            .framing = c.framing};
  if (c.framing == Framing::Python) {
    o.python_task_overhead_bytes = 100;  // what lambda_multiprocessing-sized pickles add
    o.python_result_overhead_bytes = 60;
  }
  return o;
}

// For Unbatched and Batched, one worker, the kernel's default socketpair, pipepool's and Python's
// framing: the simulator's smallest deadlocking task and result payloads hang real processes, and
// one byte less in either dimension completes.
TEST(RealPoolAgreement, SocketpairThresholdsAreWhereRealProcessesHangToTheByte) {
  pipepool::testing::extend_watchdog(240);
  // The send buffer the real pool's sockets get here (wmem_default), for the simulator.
  const uint64_t sndbuf =
      Pool(socket_options({Strategy::Epoll, Framing::Pipepool})).socket_sndbuf_bytes();
  ASSERT_GE(sndbuf, 4608u);
  for (Strategy strategy : {Strategy::Unbatched, Strategy::Batched}) {
    for (Framing framing : {Framing::Pipepool, Framing::Python}) {
      const SocketCase c{strategy, framing};
      ThresholdOptions options;
      options.strategy = strategy;
      options.transport = Transport::SocketPair;
      options.sndbuf_bytes = static_cast<uint32_t>(sndbuf);
      options.framing = framing;
      const Options real = socket_options(c);
      options.python_task_overhead_bytes = real.python_task_overhead_bytes;
      options.python_result_overhead_bytes = real.python_result_overhead_bytes;
      // Around what one writer queues, to keep the search short (sim/README.md: Unbatched's
      // thresholds lie a few bytes around it, Batched's task threshold up to 11,300 below). A range
      // that missed the threshold cannot pass: its lowest size would deadlock one byte below too.
      const uint64_t fill = threshold_capacity_bytes(options);
      const bool batched = strategy == Strategy::Batched;
      options.min_bytes = fill - (batched ? 12'000 : 2'000);
      options.max_bytes = fill + 64;
      options.grid_bytes = batched ? 128 : 64;
      const ThresholdResult found = find_threshold(options);
      ASSERT_TRUE(found.error.empty()) << describe(c) << ": " << found.error;
      ASSERT_TRUE(found.task.smallest && found.result.smallest) << describe(c);
      const uint64_t task = *found.task.smallest, result = *found.result.smallest;
      std::printf(
          "socket agreement: %-32s sndbuf %llu, simulator's smallest deadlocking task "
          "payload %llu, result payload %llu\n",
          describe(c).c_str(), static_cast<unsigned long long>(sndbuf),
          static_cast<unsigned long long>(task), static_cast<unsigned long long>(result));
      EXPECT_TRUE(real_pool_deadlocks(socket_options(c), task, result))
          << describe(c) << ": the real pool did not hang at the threshold";
      EXPECT_FALSE(real_pool_deadlocks(socket_options(c), task - 1, found.task.other_bytes))
          << describe(c) << ": the real pool hung one task byte below";
      EXPECT_FALSE(real_pool_deadlocks(socket_options(c), found.result.other_bytes, result - 1))
          << describe(c) << ": the real pool hung one result byte below";
    }
  }
}

// ---- every strategy and scheduler, with 1, 2 and 4 workers -------------------------------------

struct AgreementCase {
  Strategy strategy;
  SchedulerKind scheduler;
  uint32_t workers;
  size_t string_bytes;  // each task echoes a string of this size, resized to the same size
};

std::string describe(const AgreementCase& c) {
  return std::string(to_string(c.strategy)) + "/" + std::string(to_string(c.scheduler)) + ", " +
         std::to_string(c.workers) + " worker(s), " + std::to_string(2 * c.workers) +
         " apply_async of " + std::to_string(c.string_bytes) + " bytes";
}

Options options_of(const AgreementCase& c) {
  return Options{.processes = static_cast<int>(c.workers),
                 .strategy = c.strategy,
                 .scheduler = c.scheduler,
                 .enlarge_pipes = false};
}

// What the simulator says of the case: a deadlock found, certified free within the bound, or
// neither (an exploration cut short without a failure).
struct SimVerdict {
  bool deadlock = false;
  bool certified = false;
};

SimVerdict simulate(const AgreementCase& c) {
  Scenario scenario = scenario_from_options(options_of(c));
  Call call;
  call.kind = Call::Kind::ApplyAsync;
  call.item = {c.string_bytes + kTaskOverhead, c.string_bytes + kResultOverhead, 0};
  scenario.calls.assign(2 * c.workers, call);
  ExploreOptions exhaustive;
  exhaustive.mode = ExploreMode::Exhaustive;
  exhaustive.preemption_bound = 1;
  exhaustive.schedules = 3000;
  exhaustive.trace_counterexample = false;
  ExploreResult r = explore(scenario, exhaustive);
  EXPECT_TRUE(r.error.empty()) << describe(c) << ": " << r.error;
  SimVerdict verdict;
  verdict.deadlock = r.outcomes[static_cast<int>(RunStatus::Deadlock)] > 0;
  verdict.certified = r.complete && r.failures == 0;
  EXPECT_EQ(r.failures, r.outcomes[static_cast<int>(RunStatus::Deadlock)]) << describe(c);
  if (!verdict.deadlock && !verdict.certified) {
    ExploreOptions random;
    random.mode = ExploreMode::Random;
    random.schedules = 200;
    random.seed = 7;
    random.trace_counterexample = false;
    verdict.deadlock = explore(scenario, random).failures > 0;
  }
  return verdict;
}

// Runs the case on real processes: true if they hang (no result within the watchdog's time).
bool real_hangs(const AgreementCase& c) {
  Pool pool(options_of(c));
  const std::string in(c.string_bytes, 'x');
  std::vector<AsyncResult<std::string>> results;
  for (uint32_t i = 0; i < 2 * c.workers; ++i) {
    results.push_back(pool.apply_async(echo_resized, in, c.string_bytes));
  }
  const auto deadline = std::chrono::steady_clock::now() + 1500ms;
  bool done = true;
  for (auto& r : results) {
    done = done && r.wait(std::max(std::chrono::steady_clock::duration(0),
                                   deadline - std::chrono::steady_clock::now()));
  }
  if (!done) pool.terminate();
  return !done;
}

// A deadlock of real processes is one the simulator finds; a simulator certificate is never broken
// by a real run. Payloads below the pipe (30,000 bytes) and above it (70,000), on 64 KiB pipes.
TEST(RealPoolAgreement, EveryStrategyAndSchedulerWithOneTwoAndFourWorkers) {
  pipepool::testing::extend_watchdog(240);
  int cases = 0, hangs = 0, deadlocks = 0, certificates = 0;
  for (Strategy strategy :
       {Strategy::Unbatched, Strategy::Batched, Strategy::Epoll, Strategy::ZeroCopy}) {
    for (SchedulerKind scheduler :
         {SchedulerKind::RoundRobin, SchedulerKind::ShortestBacklog, SchedulerKind::Demand}) {
      for (uint32_t workers : {1u, 2u, 4u}) {
        for (size_t bytes : {size_t{30'000}, size_t{70'000}}) {
          const AgreementCase c{strategy, scheduler, workers, bytes};
          const SimVerdict sim = simulate(c);
          const bool hung = real_hangs(c);
          std::printf("agreement: %-62s simulator %-12s real %s\n", describe(c).c_str(),
                      sim.deadlock    ? "deadlock"
                      : sim.certified ? "certified"
                                      : "no failure",
                      hung ? "HUNG" : "completed");
          ++cases;
          hangs += hung;
          deadlocks += sim.deadlock;
          certificates += sim.certified;
          if (hung) {
            EXPECT_TRUE(sim.deadlock) << describe(c) << ": real processes hung";
          }
          if (sim.certified) {
            EXPECT_FALSE(hung) << describe(c) << ": a certificate was broken";
          }
          if (strategy == Strategy::Epoll || strategy == Strategy::ZeroCopy) {
            EXPECT_FALSE(sim.deadlock || hung) << describe(c);
          }
          EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(2000).empty());
        }
      }
    }
  }
  std::printf("agreement: %d cases, %d real hangs, %d simulator deadlocks, %d certificates\n",
              cases, hangs, deadlocks, certificates);
  EXPECT_GT(hangs, 0);  // the cases include real deadlocks, or they test nothing
}

// ---- the same loop, two executors: the bytes each puts into each pipe --------------------------

// The frames written into each task pipe: (kind, task id, payload bytes), in order.
using Frames = std::vector<std::tuple<int, uint64_t, uint64_t>>;

class PipeRecorder {
 public:
  protocol::ParentLoop::WriteObserver observer() {
    return [this](protocol::WorkerId w, std::span<const std::byte> bytes) {
      std::lock_guard lock(mutex_);
      if (w >= streams_.size()) streams_.resize(w + 1);
      streams_[w].insert(streams_[w].end(), bytes.begin(), bytes.end());
    };
  }
  // Per worker slot, the frames of its task pipe (headers parsed, payloads skipped).
  std::vector<Frames> frames() {
    std::lock_guard lock(mutex_);
    std::vector<Frames> out(streams_.size());
    for (size_t w = 0; w < streams_.size(); ++w) {
      const std::vector<std::byte>& b = streams_[w];
      size_t at = 0;
      while (at + protocol::kHeaderBytes <= b.size()) {
        uint64_t task = 0, payload = 0;
        std::memcpy(&task, b.data() + at + 8, 8);
        std::memcpy(&payload, b.data() + at + 16, 8);
        out[w].emplace_back(static_cast<int>(b[at + 4]), task, payload);
        at += protocol::kHeaderBytes + payload;
      }
      EXPECT_EQ(at, b.size()) << "task pipe " << w << " ends inside a frame";
    }
    return out;
  }

 private:
  std::mutex mutex_;
  std::vector<std::vector<std::byte>> streams_;
};

std::string describe(const std::vector<Frames>& pipes) {
  std::string out;
  for (size_t w = 0; w < pipes.size(); ++w) {
    out += "W" + std::to_string(w) + ":";
    for (const auto& [kind, task, payload] : pipes[w]) {
      out += " " + std::string(protocol::to_string(static_cast<protocol::FrameKind>(kind))) +
             (task ? "(" + std::to_string(task) + ")" : "") + "+" + std::to_string(payload);
    }
    out += "\n";
  }
  return out;
}

// Round-robin assigns by turn, whatever the timing, so both executors of the one parent loop must
// put the same frames into the same pipes in the same order: the real driver over real pipes
// (watched through ParentLoop::observe_writes) and the simulator (the lowest runnable process
// first), frame by frame. (With ShortestBacklog or Demand the assignment depends on when results
// come back, which real timing decides.)
TEST(RealPoolAgreement, BothExecutorsWriteTheSameFramesIntoEachPipe) {
  // ZeroCopy at these sizes splices nothing (below kZeroCopyMinPayloadBytes): Epoll's frames.
  for (Strategy strategy :
       {Strategy::Unbatched, Strategy::Batched, Strategy::Epoll, Strategy::ZeroCopy}) {
    for (uint32_t workers : {1u, 2u}) {
      for (size_t bytes : {size_t{1'000}, size_t{20'000}}) {
        const AgreementCase c{strategy, SchedulerKind::RoundRobin, workers, bytes};
        PipeRecorder real;
        pipepool::driver::testing::observe_next_pool_writes(real.observer());
        {
          Pool pool(options_of(c));
          std::vector<AsyncResult<std::string>> results;
          const std::string in(bytes, 'x');
          for (uint32_t i = 0; i < 2 * workers; ++i) {
            results.push_back(pool.apply_async(echo_resized, in, bytes));
          }
          for (auto& r : results) ASSERT_TRUE(r.wait(10s)) << describe(c) << ": real pool hung";
          pool.close();
          pool.join();
        }
        Scenario scenario = scenario_from_options(options_of(c));
        Call call;
        call.kind = Call::Kind::ApplyAsync;
        call.item = {bytes + kTaskOverhead, bytes + kResultOverhead, 0};
        scenario.calls.assign(2 * workers, call);
        Call wait;
        wait.kind = Call::Kind::Wait;
        scenario.calls.push_back(wait);
        PipeRecorder simulated;
        World world(make_script(scenario),
                    {.max_steps = 100'000, .trace = false, .write_observer = simulated.observer()});
        while (uint64_t runnable = world.poll()) world.step(std::countr_zero(runnable));
        ASSERT_EQ(world.status(), RunStatus::Finished) << describe(c) << ": " << world.failure();
        const std::vector<Frames> a = real.frames(), b = simulated.frames();
        EXPECT_EQ(a, b) << describe(c) << "\nreal:\n"
                        << describe(a) << "simulated:\n"
                        << describe(b);
        std::printf("same frames: %-52s %s", describe(c).c_str(), describe(a).c_str());
      }
    }
  }
}

}  // namespace
}  // namespace pipepool::sim
