// check() on users' designs: a user-written scheduler that piles tasks on one worker is caught on
// Batched (the walk-through in fuzz/README.md), a fixed one passes; a user-written strategy is
// simulated as written; a stateful scheduler without clone() is reported, not trusted.
#include "check.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "explore.hpp"
#include "testing_scenarios.hpp"

namespace pipepool::fuzz {
namespace {

// The user's first try: scheduler.hpp's example (fills the lowest-numbered worker up to 4 queued
// tasks).
using sim::testing::LowestIndexFirst;

// The fix: a task only to a worker that holds none, taking idle workers in turn. It keeps a
// cursor, so it overrides clone() (every simulated pool starts from a fresh one).
class IdleInTurn : public Scheduler {
 public:
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random&) override {
    for (size_t i = 0; i < workers.size(); ++i) {
      const auto& w = workers[(next_ + i) % workers.size()];
      if (w.outstanding == 0) {
        next_ = (next_ + i + 1) % workers.size();
        return w.worker;
      }
    }
    return std::nullopt;  // everyone is busy: wait for a result
  }
  std::string_view name() const override { return "idle-in-turn"; }
  std::unique_ptr<Scheduler> clone() const override { return std::make_unique<IdleInTurn>(); }

 private:
  size_t next_ = 0;
};

// A user's strategy: blocking writes of each task, one task at a time in the worker (Unbatched
// under another name).
class BlockingOneAtATime : public IoStrategy {
 public:
  std::string_view name() const override { return "blocking-one-at-a-time"; }
  bool parent_blocking_writes() const override { return true; }
  bool parent_sends_run_batch() const override { return false; }
  ChildMode child_mode() const override { return ChildMode::OneAtATime; }
};

Settings quick(uint64_t seed) {
  Settings s;
  s.seed = seed;
  s.runs = static_cast<uint32_t>(scaled(40));
  s.pipe_pages = 16;
  return s;
}

TEST(Check, CatchesAUserSchedulerThatPilesTasksOnOneWorker) {
  Options options{.processes = 2,
                  .strategy = Strategy::Batched,
                  .enlarge_pipes = false,
                  .custom_scheduler = std::make_shared<LowestIndexFirst>()};
  const CheckResult r = check(options, quick(1));
  std::fputs(format_text(r).c_str(), stdout);
  ASSERT_FALSE(r.holds) << "seed 1";
  EXPECT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.status, sim::RunStatus::Deadlock);
  EXPECT_EQ(r.counterexample.workers, 2u);  // the user's worker count is kept
  EXPECT_LE(r.tasks.size(), 2u) << r.scenario_text;
  EXPECT_NE(r.design.find("lowest-index-first (user-written)"), std::string::npos);
  // The replay string replays the deadlock on the same design.
  std::vector<uint8_t> schedule;
  std::string error;
  ASSERT_TRUE(sim::parse_schedule(r.replay, schedule, error)) << error;
  const sim::RunSummary again = sim::replay(r.counterexample, schedule, 0, false);
  EXPECT_EQ(again.status, sim::RunStatus::Deadlock) << r.replay;
}

TEST(Check, PassesTheFixedScheduler) {
  Options options{.processes = 2,
                  .strategy = Strategy::Batched,
                  .enlarge_pipes = false,
                  .custom_scheduler = std::make_shared<IdleInTurn>()};
  const CheckResult r = check(options, quick(1));
  std::fputs(format_text(r).c_str(), stdout);
  EXPECT_TRUE(r.holds) << format_text(r);
  EXPECT_EQ(r.scenarios_tried, quick(1).runs);
}

TEST(Check, SimulatesAUserStrategyAsWritten) {
  // ShortestBacklog, as lambda_multiprocessing. (With the default Demand scheduler the minimal
  // counterexample has a third, tiny task first: until one task has run Demand has no estimate
  // of task time and sends one task at a time, which cannot deadlock.)
  Options options{.processes = 1,
                  .scheduler = SchedulerKind::ShortestBacklog,
                  .enlarge_pipes = false,
                  .custom_strategy = std::make_shared<BlockingOneAtATime>()};
  const CheckResult r = check(options, quick(2));
  ASSERT_FALSE(r.holds);
  EXPECT_EQ(r.status, sim::RunStatus::Deadlock);
  ASSERT_EQ(r.tasks.size(), 2u) << r.scenario_text;
  // Unbatched's minimal counterexample: a result and a task of one frame over the pipe (65505
  // bytes of payload), or with join at once a task of 15 pages and one byte (61409).
  uint64_t in = 0, out = 0;
  for (const auto& t : r.tasks) {
    in = std::max(in, t.input_bytes);
    out = std::max(out, t.output_bytes);
  }
  EXPECT_TRUE(in == 65505 || in == 61409) << r.scenario_text;
  EXPECT_EQ(out, 65505u) << r.scenario_text;
}

// Picks change from one run to the next: a scheduler with state and no clone().
class ForgetfulAlternator : public Scheduler {
 public:
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random&) override {
    return workers[calls_++ % workers.size()].worker;
  }
  std::string_view name() const override { return "forgetful-alternator"; }

 private:
  size_t calls_ = 0;
};

TEST(Check, ReportsAStatefulSchedulerWithoutClone) {
  Options options{.processes = 2,
                  .strategy = Strategy::Epoll,
                  .enlarge_pipes = false,
                  .custom_scheduler = std::make_shared<ForgetfulAlternator>()};
  const CheckResult r = check(options, quick(3));
  std::fputs(format_text(r).c_str(), stdout);
  EXPECT_FALSE(r.holds);
  EXPECT_NE(r.error.find("not deterministic"), std::string::npos) << format_text(r);
}

}  // namespace
}  // namespace pipepool::fuzz
