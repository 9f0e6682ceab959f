// Tests of the simulated processes, the explorers, deadlock reports and replay (sim/world.hpp,
// sim/explore.hpp, sim/report.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "explore.hpp"
#include "report.hpp"
#include "scenario.hpp"
#include "testing_scenarios.hpp"
#include "world.hpp"

namespace pipepool::sim {
namespace {

using testing::exhaustive;
using testing::two_tasks;

const ProcessWait& wait_of(const DeadlockReport& report, uint32_t process) {
  return report.processes.at(process);
}

// ---- deadlocks -----------------------------------------------------------------------------

TEST(Explore, UnbatchedTwoLargeTasksOnOneWorkerDeadlockAndTheReportNamesTheCycle) {
  const ExploreResult r = explore(two_tasks(Strategy::Unbatched, 70000, 70000), exhaustive(2));
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_TRUE(r.counterexample.has_value());
  EXPECT_EQ(verdict(r), "deadlock");
  const RunSummary& run = *r.counterexample;
  ASSERT_EQ(run.status, RunStatus::Deadlock);
  ASSERT_TRUE(run.deadlock.has_value());
  const DeadlockReport& d = *run.deadlock;
  EXPECT_EQ(d.cycle, (std::vector<uint32_t>{kParentProcess, kFirstWorkerProcess, kParentProcess}));

  // The parent: blocked writing task 2 into worker 0's full task pipe.
  const ProcessWait& parent = wait_of(d, kParentProcess);
  EXPECT_EQ(parent.call, "write");
  ASSERT_TRUE(parent.pipe.has_value());
  EXPECT_EQ(parent.pipe->name, "task pipe of worker 0");
  EXPECT_EQ(parent.pipe->slots_used, 16u);
  EXPECT_EQ(parent.pipe->slots, 16u);
  EXPECT_EQ(parent.call_bytes, 32u + 70000u);
  EXPECT_GT(parent.wanted_bytes, 0u);
  EXPECT_EQ(parent.done_bytes + parent.wanted_bytes, parent.call_bytes);
  EXPECT_NE(parent.frame.find("Task frame of task 2"), std::string::npos) << parent.frame;
  EXPECT_EQ(parent.waits_for, (std::vector<uint32_t>{kFirstWorkerProcess}));

  // Worker 0: blocked writing the result of task 1 into its full result pipe.
  const ProcessWait& worker = wait_of(d, kFirstWorkerProcess);
  EXPECT_EQ(worker.call, "write");
  ASSERT_TRUE(worker.pipe.has_value());
  EXPECT_EQ(worker.pipe->name, "result pipe of worker 0");
  EXPECT_EQ(worker.pipe->slots_used, 16u);
  EXPECT_EQ(worker.pipe->bytes, 65536u);
  EXPECT_EQ(worker.done_bytes, 65536u);
  EXPECT_EQ(worker.wanted_bytes, 32u + 70000u - 65536u);
  EXPECT_NE(worker.frame.find("Result frame of task 1"), std::string::npos) << worker.frame;
  EXPECT_EQ(worker.pipe->describe, "16/16 slots, 65536 bytes");

  const std::string text = format_deadlock(d, "");
  EXPECT_NE(text.find("wait-for cycle: P -> W0 -> P"), std::string::npos) << text;
  EXPECT_NE(text.find("blocked in write(2) to the task pipe of worker 0"), std::string::npos)
      << text;
  EXPECT_NE(text.find("blocked in writev(2) to its result pipe"), std::string::npos) << text;
  const std::string j = deadlock_json(d).dump(2);
  EXPECT_NE(j.find("\"cycle\": [\n    \"P\",\n    \"W0\",\n    \"P\"\n  ]"), std::string::npos)
      << j;
  EXPECT_NE(j.find("\"wanted_bytes\": 4496"), std::string::npos) << j;

  // The exploration checked its own determinism on the counterexample, and traced it.
  EXPECT_TRUE(r.determinism.checked);
  EXPECT_TRUE(r.determinism.ok);
  EXPECT_FALSE(run.trace.empty());
}

TEST(Explore, UnbatchedTwoSmallTasksNeverDeadlockExploredCompletely) {
  for (int32_t bound : {2, -1}) {
    const ExploreResult r =
        explore(two_tasks(Strategy::Unbatched, 30000, 30000), exhaustive(bound));
    EXPECT_TRUE(r.error.empty()) << r.error;
    EXPECT_FALSE(r.counterexample.has_value())
        << "bound " << bound << ": " << r.counterexample->failure;
    EXPECT_TRUE(r.complete) << "bound " << bound << ": " << r.cut_reason;
    EXPECT_EQ(verdict(r), "no-failure");
    EXPECT_GT(r.schedules, 1u);
    EXPECT_EQ(r.outcomes[static_cast<int>(RunStatus::Finished)], r.schedules);
    EXPECT_TRUE(r.determinism.ok);
  }
}

TEST(Explore, BatchedTwoBackToBackApplyAsyncLargerThanThePipeDeadlock) {
  const ExploreResult r = explore(two_tasks(Strategy::Batched, 70000, 70000), exhaustive(2));
  ASSERT_TRUE(r.counterexample.has_value());
  ASSERT_EQ(r.counterexample->status, RunStatus::Deadlock);
  const DeadlockReport& d = *r.counterexample->deadlock;
  EXPECT_EQ(d.cycle, (std::vector<uint32_t>{kParentProcess, kFirstWorkerProcess, kParentProcess}));
  EXPECT_EQ(wait_of(d, kParentProcess).pipe->name, "task pipe of worker 0");
  EXPECT_EQ(wait_of(d, kFirstWorkerProcess).pipe->name, "result pipe of worker 0");
}

TEST(Explore, RandomAndPctFindTheUnbatchedDeadlockToo) {
  for (ExploreMode mode : {ExploreMode::Random, ExploreMode::Pct}) {
    ExploreOptions o;
    o.mode = mode;
    o.seed = 7;
    o.schedules = 200;
    const ExploreResult r = explore(two_tasks(Strategy::Unbatched, 70000, 70000), o);
    ASSERT_TRUE(r.counterexample.has_value()) << to_string(mode);
    EXPECT_EQ(r.counterexample->status, RunStatus::Deadlock);
    EXPECT_TRUE(r.determinism.ok);
  }
}

TEST(Explore, EpollNeverDeadlocksOnTheSameScenariosExploredCompletelyWithBound2) {
  for (Strategy strategy : {Strategy::Epoll}) {
    for (uint64_t bytes : {uint64_t{30000}, uint64_t{70000}, uint64_t{200000}}) {
      const ExploreResult r = explore(two_tasks(strategy, bytes, bytes), exhaustive(2));
      EXPECT_TRUE(r.error.empty()) << r.error;
      EXPECT_FALSE(r.counterexample.has_value())
          << bytes << ": " << r.counterexample->failure << " "
          << format_schedule(r.counterexample->schedule);
      EXPECT_TRUE(r.complete) << bytes << ": " << r.cut_reason;
      // Most schedules end at a state already explored (the state cache) rather than run out.
      EXPECT_GT(r.schedules + r.pruned, 10u);
      EXPECT_TRUE(r.determinism.ok);
    }
  }
}

// ---- the state cache is a sound reduction ------------------------------------------------

TEST(Explore, TheStateCacheChangesNoVerdictOnlyTheWork) {
  struct Case {
    Scenario scenario;
    int32_t bound;
  };
  Scenario rr = two_tasks(Strategy::Unbatched, 50000, 50000);
  rr.workers = 2;
  rr.scheduler = SchedulerKind::RoundRobin;
  rr.calls.clear();
  std::string error;
  ASSERT_TRUE(parse_scenario("map_async 3 50000 50000 0\nmap 2 50000 50000 0\n", rr, error));
  for (const Case& c : {Case{two_tasks(Strategy::Batched, 63441, 70000), 1},
                        Case{two_tasks(Strategy::Unbatched, 65504, 69632), 2},
                        Case{two_tasks(Strategy::Epoll, 70000, 70000), 2}, Case{rr, 1}}) {
    ExploreOptions with = exhaustive(c.bound);
    with.stop_at_first_failure = false;
    ExploreOptions without = with;
    without.state_cache_entries = 0;
    const ExploreResult a = explore(c.scenario, with);
    const ExploreResult b = explore(c.scenario, without);
    EXPECT_TRUE(a.complete && b.complete);
    EXPECT_EQ(a.failures > 0, b.failures > 0) << to_text(c.scenario);
    EXPECT_EQ(a.schedules + a.pruned > 0, true);
    EXPECT_LE(a.schedules, b.schedules);
    EXPECT_EQ(b.pruned, 0u);
  }
}

// ---- coalescing and the partial-order reduction are sound reductions ------------------------

// Three apply_async on two round-robin workers: tasks 1 and 3 go to worker 0, task 2 (small) to
// worker 1, so a deadlock, if any, is reachable only through worker 0.
Scenario through_one_worker(Strategy strategy, uint64_t task_bytes, uint64_t result_bytes) {
  Scenario s = two_tasks(strategy, task_bytes, result_bytes);
  s.workers = 2;
  s.scheduler = SchedulerKind::RoundRobin;
  Call small = s.calls[0];
  small.item = {100, 100, 0};
  s.calls = {s.calls[0], small, s.calls[0]};
  return s;
}

// The threshold scenario: the calls, then wait for every result, then join.
Scenario then_wait(Scenario s) {
  Call wait;
  wait.kind = Call::Kind::Wait;
  s.calls.push_back(wait);
  return s;
}

struct ReductionCase {
  const char* name;
  Scenario scenario;
  int32_t bound;
  bool deadlocks;  // what the search without reductions finds (checked too)
};

std::vector<ReductionCase> reduction_cases() {
  // Unbatched deadlocks from 65505 task bytes at 16 pages, Batched from 61409 (threshold_test).
  return {
      {"unbatched 1 worker above", then_wait(two_tasks(Strategy::Unbatched, 65505, 69632)), 2,
       true},
      {"unbatched 1 worker below", then_wait(two_tasks(Strategy::Unbatched, 65504, 69632)), 2,
       false},
      {"batched 1 worker above", then_wait(two_tasks(Strategy::Batched, 61409, 69632)), 2, true},
      {"batched 1 worker below", then_wait(two_tasks(Strategy::Batched, 61408, 69632)), 2, false},
      {"epoll 1 worker", then_wait(two_tasks(Strategy::Epoll, 70000, 70000)), 2, false},
      {"unbatched 2 workers above",
       then_wait(through_one_worker(Strategy::Unbatched, 65505, 69632)), 1, true},
      {"unbatched 2 workers below",
       then_wait(through_one_worker(Strategy::Unbatched, 30000, 30000)), 1, false},
      {"batched 2 workers above", then_wait(through_one_worker(Strategy::Batched, 61409, 69632)), 1,
       true},
      {"batched 2 workers below", then_wait(through_one_worker(Strategy::Batched, 30000, 30000)), 1,
       false},
  };
}

TEST(Explore, CoalescingAndPorFindTheSameDeadlocksAndCertificatesAsNoReduction) {
  for (const ReductionCase& c : reduction_cases()) {
    ExploreOptions none = exhaustive(c.bound);
    none.stop_at_first_failure = false;
    none.trace_counterexample = false;
    none.coalesce = false;
    none.por = false;
    const ExploreResult base = explore(c.scenario, none);
    ASSERT_TRUE(base.error.empty()) << c.name << ": " << base.error;
    ASSERT_TRUE(base.complete) << c.name << ": " << base.cut_reason;
    EXPECT_EQ(base.failures > 0, c.deadlocks) << c.name;
    for (const auto& [coalesce, por] : {std::pair{true, false}, {false, true}, {true, true}}) {
      ExploreOptions with = none;
      with.coalesce = coalesce;
      with.por = por;
      const ExploreResult r = explore(c.scenario, with);
      const std::string what =
          std::string(c.name) + (coalesce ? " +coalesce" : "") + (por ? " +por" : "");
      ASSERT_TRUE(r.error.empty()) << what << ": " << r.error;
      EXPECT_TRUE(r.complete) << what << ": " << r.cut_reason;
      EXPECT_EQ(r.failures > 0, base.failures > 0) << what;
      EXPECT_EQ(r.outcomes[static_cast<int>(RunStatus::Deadlock)] > 0,
                base.outcomes[static_cast<int>(RunStatus::Deadlock)] > 0)
          << what;
      EXPECT_EQ(r.failures, r.outcomes[static_cast<int>(RunStatus::Deadlock)]) << what;
      EXPECT_LE(r.schedules + r.pruned, base.schedules + base.pruned) << what;
      EXPECT_TRUE(r.determinism.ok) << what;
      if (c.deadlocks && r.counterexample) {
        // The deadlock a reduced search reports is the same cycle, through worker 0.
        ASSERT_TRUE(base.counterexample && base.counterexample->deadlock);
        ASSERT_TRUE(r.counterexample->deadlock.has_value()) << what;
        EXPECT_EQ(r.counterexample->deadlock->cycle, base.counterexample->deadlock->cycle) << what;
        EXPECT_EQ(r.counterexample->deadlock->cycle,
                  (std::vector<uint32_t>{kParentProcess, kFirstWorkerProcess, kParentProcess}))
            << what;
        // And its schedule replays to the same deadlock through its text form.
        std::vector<uint8_t> parsed;
        std::string error;
        ASSERT_TRUE(parse_schedule(format_schedule(r.counterexample->schedule), parsed, error));
        const RunSummary again = replay(c.scenario, parsed, 0, false);
        EXPECT_EQ(again.status, RunStatus::Deadlock) << what;
        EXPECT_EQ(again.trace_hash, r.counterexample->trace_hash) << what;
      }
    }
  }
}

// The state fingerprint (instead of each process's history) and branching from saved worlds
// (instead of replaying prefixes) find the same deadlocks and the same certificates as the search
// that has neither, on scenarios below and above the thresholds with one and two workers, on
// every strategy; and a counterexample found from a saved world replays from scratch.
TEST(Explore, TheStateFingerprintAndSnapshotsFindTheSameDeadlocksAndCertificates) {
  std::vector<ReductionCase> cases = reduction_cases();
  Scenario rr = then_wait(through_one_worker(Strategy::Epoll, 70000, 70000));
  cases.push_back({"epoll 2 workers", rr, 1, false});
  Scenario sb = rr;
  sb.scheduler = SchedulerKind::ShortestBacklog;
  sb.strategy = Strategy::Batched;
  cases.push_back({"batched 2 workers shortest-backlog", sb, 1, false});
  for (const ReductionCase& c : cases) {
    ExploreOptions old_way = exhaustive(c.bound);
    old_way.stop_at_first_failure = false;
    old_way.trace_counterexample = false;
    old_way.history_fingerprint = true;
    old_way.snapshot_every = 0;
    const ExploreResult base = explore(c.scenario, old_way);
    ASSERT_TRUE(base.error.empty()) << c.name << ": " << base.error;
    ASSERT_TRUE(base.complete) << c.name << ": " << base.cut_reason;
    struct Variant {
      const char* name;
      bool history;
      uint32_t snapshot_every;
      bool cache;
    };
    for (const Variant& v : {Variant{"state key", false, 0, true},
                             Variant{"state key, snapshots every step", false, 1, true},
                             Variant{"state key, snapshots every 4", false, 4, true},
                             Variant{"history key, snapshots every 3", true, 3, true},
                             Variant{"no cache, snapshots every 2", false, 2, false}}) {
      if (!v.cache && c.bound > 1) continue;  // too slow without the cache
      ExploreOptions o = old_way;
      o.history_fingerprint = v.history;
      o.snapshot_every = v.snapshot_every;
      if (!v.cache) o.state_cache_entries = 0;
      const ExploreResult r = explore(c.scenario, o);
      const std::string what = std::string(c.name) + ", " + v.name;
      ASSERT_TRUE(r.error.empty()) << what << ": " << r.error;
      EXPECT_TRUE(r.complete) << what << ": " << r.cut_reason;
      EXPECT_EQ(r.failures > 0, base.failures > 0) << what;
      EXPECT_EQ(r.outcomes[static_cast<int>(RunStatus::Deadlock)] > 0,
                base.outcomes[static_cast<int>(RunStatus::Deadlock)] > 0)
          << what;
      EXPECT_TRUE(r.determinism.ok) << what;
      if (v.snapshot_every != 0) {
        EXPECT_GT(r.restores, 0u) << what;
      }
      if (r.counterexample) {
        ASSERT_TRUE(r.counterexample->deadlock.has_value()) << what;
        ASSERT_TRUE(base.counterexample && base.counterexample->deadlock) << what;
        EXPECT_EQ(r.counterexample->deadlock->cycle, base.counterexample->deadlock->cycle) << what;
        const RunSummary again = replay(c.scenario, r.counterexample->schedule, 0, false);
        EXPECT_EQ(again.status, RunStatus::Deadlock) << what;
        EXPECT_EQ(again.trace_hash, r.counterexample->trace_hash) << what;
      }
    }
    EXPECT_EQ(base.failures > 0, c.deadlocks) << c.name;
  }
}

// Snapshots only change where a branch's world comes from (a copy, the saved world itself on its
// last use, or a replay from the start), never which states are visited: with the state key the
// search does exactly the same work with and without them.
TEST(Explore, SnapshotsTakenOnTheirLastUseChangeNotOneCount) {
  uint64_t moved = 0;
  for (const ReductionCase& c : reduction_cases()) {
    ExploreOptions replaying = exhaustive(c.bound);
    replaying.stop_at_first_failure = false;
    replaying.trace_counterexample = false;
    replaying.snapshot_every = 0;
    const ExploreResult base = explore(c.scenario, replaying);
    ASSERT_TRUE(base.error.empty()) << c.name << ": " << base.error;
    for (uint32_t every : {1u, 4u}) {
      ExploreOptions o = replaying;
      o.snapshot_every = every;
      const ExploreResult r = explore(c.scenario, o);
      const std::string what = std::string(c.name) + ", snapshots every " + std::to_string(every);
      ASSERT_TRUE(r.error.empty()) << what << ": " << r.error;
      EXPECT_EQ(r.complete, base.complete) << what;
      EXPECT_EQ(r.schedules, base.schedules) << what;
      EXPECT_EQ(r.pruned, base.pruned) << what;
      EXPECT_EQ(r.cache_entries, base.cache_entries) << what;
      EXPECT_EQ(r.failures, base.failures) << what;
      EXPECT_EQ(r.steps - r.replayed_steps, base.steps - base.replayed_steps) << what;
      EXPECT_LE(r.moved_snapshots, r.restores) << what;
      EXPECT_LE(r.moved_snapshots, r.snapshots) << what;
      // Taking a snapshot on its last use replays no step more than copying it every time.
      ExploreOptions copying = o;
      copying.move_snapshots = false;
      const ExploreResult c2 = explore(c.scenario, copying);
      EXPECT_EQ(c2.moved_snapshots, 0u) << what;
      EXPECT_EQ(r.steps, c2.steps) << what;
      EXPECT_EQ(r.replayed_steps, c2.replayed_steps) << what;
      EXPECT_EQ(r.restores, c2.restores) << what;
      EXPECT_EQ(r.snapshots, c2.snapshots) << what;
      // With a copy at every depth each branch replays only its own first step from the copy of
      // its branching point, unless a copy was taken before its last use (a later branch would
      // then replay more, from an earlier one).
      if (every == 1) {
        EXPECT_EQ(r.replayed_steps, r.restores) << what;
      }
      moved += r.moved_snapshots;
    }
  }
  EXPECT_GT(moved, 0u);  // the path was taken
}

TEST(Explore, TheReductionsAgreeWithTheSearchWithoutAnyReductionNotEvenTheCache) {
  // Small enough to explore with no reduction at all.
  for (const ReductionCase& c :
       {ReductionCase{"unbatched above", then_wait(two_tasks(Strategy::Unbatched, 65505, 69632)), 1,
                      true},
        ReductionCase{"batched below", then_wait(two_tasks(Strategy::Batched, 61408, 69632)), 1,
                      false},
        ReductionCase{"epoll", two_tasks(Strategy::Epoll, 70000, 70000), 1, false}}) {
    ExploreOptions bare = exhaustive(c.bound);
    bare.stop_at_first_failure = false;
    bare.trace_counterexample = false;
    bare.state_cache_entries = 0;
    bare.coalesce = false;
    bare.por = false;
    ExploreOptions all = bare;
    all.state_cache_entries = ExploreOptions{}.state_cache_entries;
    all.coalesce = true;
    all.por = true;
    const ExploreResult a = explore(c.scenario, bare);
    const ExploreResult b = explore(c.scenario, all);
    ASSERT_TRUE(a.complete && b.complete) << c.name;
    EXPECT_EQ(a.failures > 0, c.deadlocks) << c.name;
    EXPECT_EQ(b.failures > 0, c.deadlocks) << c.name;
    EXPECT_LE(b.schedules, a.schedules) << c.name;
    EXPECT_GT(b.coalesced, 0u) << c.name;
  }
}

TEST(Explore, ReductionsAreOffWhenTheParentMayKillAWorker) {
  // A kill is the one step that disables an invisible step: with terminate() nothing is forced.
  Scenario s = two_tasks(Strategy::Epoll, 70000, 70000);
  Call terminate;
  terminate.kind = Call::Kind::Terminate;
  s.calls.push_back(terminate);
  const ExploreResult r = explore(s, exhaustive(1));
  EXPECT_TRUE(r.complete) << r.cut_reason;
  EXPECT_EQ(r.coalesced + r.por_forced, 0u);
}

// ---- replay and determinism ----------------------------------------------------------------

TEST(Replay, ReproducesTheTraceHashOfAnExploredSchedule) {
  const Scenario scenario = two_tasks(Strategy::Unbatched, 70000, 70000);
  ExploreOptions o;
  o.mode = ExploreMode::Random;
  o.seed = 3;
  o.schedules = 50;
  const ExploreResult r = explore(scenario, o);
  ASSERT_TRUE(r.counterexample.has_value());
  const RunSummary& original = *r.counterexample;

  // Through the text form of the schedule, as a person would paste it.
  const std::string text = format_schedule(original.schedule);
  std::vector<uint8_t> parsed;
  std::string error;
  ASSERT_TRUE(parse_schedule(text, parsed, error)) << error;
  ASSERT_EQ(parsed, original.schedule);
  const RunSummary again = replay(scenario, parsed, 0, /*trace=*/false);
  EXPECT_EQ(again.status, RunStatus::Deadlock);
  EXPECT_EQ(again.trace_hash, original.trace_hash);
  EXPECT_EQ(again.steps, original.steps);
  EXPECT_EQ(again.schedule, original.schedule);
  EXPECT_FALSE(again.diverged);

  // And the same seed explores the same schedules.
  const ExploreResult r2 = explore(scenario, o);
  ASSERT_TRUE(r2.counterexample.has_value());
  EXPECT_EQ(r2.counterexample->index, original.index);
  EXPECT_EQ(r2.counterexample->trace_hash, original.trace_hash);
}

TEST(Replay, AScheduleThatNamesABlockedProcessDiverges) {
  const Scenario scenario = two_tasks(Strategy::Unbatched, 70000, 70000);
  // Worker 0 has nothing to read before the user submitted anything.
  const std::vector<uint8_t> schedule = {kFirstWorkerProcess};
  const RunSummary run = replay(scenario, schedule, 0, false);
  EXPECT_EQ(run.status, RunStatus::Failed);
  EXPECT_TRUE(run.diverged);
  EXPECT_NE(run.failure.find("replay diverged at step 0"), std::string::npos) << run.failure;
}

TEST(Replay, ScheduleTextRoundTripsWithRunsAndGroups) {
  std::vector<uint8_t> schedule = {0, 0, 0, 1, 1, 2};
  for (int i = 0; i < 50; ++i) schedule.insert(schedule.end(), {1, 1, 1, 2, 2});
  schedule.push_back(3);
  const std::string text = format_schedule(schedule);
  EXPECT_EQ(text, "U*3 P*2 W0 (P*3 W0*2)*50 W1");
  std::vector<uint8_t> back;
  std::string error;
  ASSERT_TRUE(parse_schedule(text, back, error)) << error;
  EXPECT_EQ(back, schedule);
  ASSERT_TRUE(parse_schedule("0, 0 1 2*2", back, error)) << error;
  EXPECT_EQ(back, (std::vector<uint8_t>{0, 0, 1, 2, 2}));
  EXPECT_FALSE(parse_schedule("U X", back, error));
  EXPECT_FALSE(parse_schedule("(P W0", back, error));
  EXPECT_FALSE(parse_schedule("P*0", back, error));
}

// ---- time, livelock, pct -------------------------------------------------------------------

TEST(World, TasksTakeTheirDurationInVirtualTime) {
  Scenario s;
  s.strategy = Strategy::Epoll;
  s.workers = 2;
  std::string error;
  ASSERT_TRUE(parse_scenario("map 4 1000 1000 1.5\n", s, error)) << error;
  ExploreOptions o;
  o.mode = ExploreMode::Random;
  o.schedules = 20;
  const ExploreResult r = explore(s, o);
  EXPECT_EQ(verdict(r), "no-failure");
  // Four tasks of 1.5 ms on two workers: at least 3 ms, whatever the schedule.
  EXPECT_GE(r.sample.virtual_time_us, 3000u);
  EXPECT_EQ(r.sample.tasks_completed, 4u);
}

TEST(World, TheStepBoundEndsARunAsALivelock) {
  ExploreOptions o;
  o.mode = ExploreMode::Random;
  o.schedules = 1;
  o.max_steps = 5;
  const ExploreResult r = explore(two_tasks(Strategy::Epoll, 1000, 1000), o);
  ASSERT_TRUE(r.counterexample.has_value());
  EXPECT_EQ(r.counterexample->status, RunStatus::StepLimit);
  EXPECT_EQ(verdict(r), "livelock");
  EXPECT_EQ(r.counterexample->steps, 5u);
}

TEST(World, EveryTaskCompletesWithItsResultSizeOnEveryStrategy) {
  for (Strategy strategy : {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched}) {
    Scenario s;
    s.strategy = strategy;
    s.workers = 3;
    std::string error;
    ASSERT_TRUE(
        parse_scenario("map_async 7 100 3000 0 2\napply 10 9000 0.25\nmap 5 1K 2K 0\n", s, error));
    ExploreOptions o;
    o.mode = ExploreMode::Random;
    o.schedules = 100;
    const ExploreResult r = explore(s, o);
    EXPECT_EQ(verdict(r), "no-failure")
        << to_string(strategy) << ": "
        << (r.counterexample ? r.counterexample->failure : std::string());
    EXPECT_EQ(r.sample.tasks_completed, 4u + 1u + 5u);
  }
}

TEST(Pct, ReportsItsProbabilityBound) {
  ExploreOptions o;
  o.mode = ExploreMode::Pct;
  o.depth = 2;
  o.schedules = 30;
  const ExploreResult r = explore(two_tasks(Strategy::Epoll, 1000, 1000), o);
  ASSERT_EQ(r.processes, 3u);
  ASSERT_GT(r.pct_k, 0u);
  EXPECT_DOUBLE_EQ(r.pct_bound, 1.0 / (3.0 * static_cast<double>(r.pct_k)));
  const std::string text = format_explore_text(two_tasks(Strategy::Epoll, 1000, 1000), o, r, 10);
  EXPECT_NE(text.find("1/(n*k^(d-1))"), std::string::npos) << text;
}

// ---- the scenario format -------------------------------------------------------------------

TEST(Scenario, TextRoundTripsAndPayloadsCarryDurationAndResultSize) {
  Scenario s;
  std::string error;
  ASSERT_TRUE(parse_scenario(
      "strategy batched\nscheduler round-robin\nworkers 3\npipe-pages 4\n"
      "task-timeout-ms 2.5\napply_async 64K 1M 0.125 # comment\nmap 10 100 200 3 4\nwait\n"
      "task 10:20:1\n",
      s, error))
      << error;
  EXPECT_EQ(s.strategy, Strategy::Batched);
  EXPECT_EQ(s.workers, 3u);
  EXPECT_EQ(s.task_timeout_us, 2500u);
  ASSERT_EQ(s.calls.size(), 4u);
  EXPECT_EQ(s.calls[0].item.input_bytes, 65536u);
  EXPECT_EQ(s.calls[0].item.output_bytes, 1048576u);
  EXPECT_EQ(s.calls[0].item.duration_us, 125u);
  Scenario back;
  ASSERT_TRUE(parse_scenario(to_text(s), back, error)) << error;
  EXPECT_EQ(to_text(back), to_text(s));

  auto script = make_script(s);
  // map 10 with chunksize 4: chunks of 4, 4 and 2 items.
  ASSERT_EQ(script->task_count(), 1u + 3u + 1u);
  EXPECT_EQ(script->task(4).input_bytes, 200u);
  EXPECT_EQ(script->task(4).duration_us, 6000u);
  for (size_t id = 1; id <= script->task_count(); ++id) {
    TaskSpec decoded;
    ASSERT_TRUE(decode_task_payload(script->payloads[id - 1], decoded));
    EXPECT_EQ(decoded.duration_us, script->task(id).duration_us);
    EXPECT_EQ(decoded.output_bytes, script->task(id).output_bytes);
    EXPECT_EQ(decoded.input_bytes, script->task(id).input_bytes);
  }
  EXPECT_EQ(script->ops.back().kind, Script::Op::Kind::Join);

  EXPECT_FALSE(parse_scenario("workers x\n", s, error));
  EXPECT_NE(error.find("line 1"), std::string::npos);
  EXPECT_FALSE(parse_scenario("apply_async 1 2\n", s, error));
  s.pipe_pages = 3;
  EXPECT_THROW(make_script(s), std::invalid_argument);
}

// ---- a user's own scheduler, as it would be given to the real pool -----------------------------

// Fills the lowest-numbered worker first: the example of scheduler.hpp, with room for 4 tasks.
using testing::LowestIndexFirst;

// The fix: never more than one task outstanding per worker.
class OneAtATimeLowestIndex : public Scheduler {
 public:
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random&) override {
    for (const auto& w : workers) {
      if (w.outstanding == 0) return w.worker;
    }
    return std::nullopt;
  }
  std::string_view name() const override { return "one-at-a-time"; }
};

Scenario user_scenario(std::shared_ptr<Scheduler> scheduler) {
  Scenario s = scenario_from_options(Options{.processes = 2,
                                             .strategy = Strategy::Batched,
                                             .enlarge_pipes = false,
                                             .custom_scheduler = std::move(scheduler)});
  Call call;
  call.kind = Call::Kind::ApplyAsync;
  call.item = {70000, 70000, 0};
  s.calls = {call, call};  // two apply_async back to back: more than one call in flight
  return s;
}

TEST(Explore, AUserSchedulerIsFoundToDeadlockAndItsFixIsCertified) {
  ExploreOptions options = exhaustive(2);
  const ExploreResult bad = explore(user_scenario(std::make_shared<LowestIndexFirst>()), options);
  ASSERT_TRUE(bad.error.empty()) << bad.error;
  ASSERT_TRUE(bad.counterexample.has_value());
  EXPECT_EQ(bad.counterexample->status, RunStatus::Deadlock);
  // The replay string reproduces it.
  std::vector<uint8_t> schedule;
  std::string error;
  ASSERT_TRUE(parse_schedule(format_schedule(bad.counterexample->schedule), schedule, error));
  const RunSummary again =
      replay(user_scenario(std::make_shared<LowestIndexFirst>()), schedule, 0, false);
  EXPECT_EQ(again.status, RunStatus::Deadlock);
  EXPECT_EQ(again.trace_hash, bad.counterexample->trace_hash);

  const ExploreResult good =
      explore(user_scenario(std::make_shared<OneAtATimeLowestIndex>()), options);
  ASSERT_TRUE(good.error.empty()) << good.error;
  EXPECT_FALSE(good.counterexample.has_value());
  EXPECT_TRUE(good.complete) << good.cut_reason;
  EXPECT_EQ(good.failures, 0u);
  std::printf(
      "user scheduler: lowest-index-first deadlocks (%s), one-at-a-time certified over %llu "
      "schedules\n",
      bad.counterexample->deadlock ? bad.counterexample->deadlock->summary.c_str() : "",
      static_cast<unsigned long long>(good.schedules));
}

}  // namespace
}  // namespace pipepool::sim
