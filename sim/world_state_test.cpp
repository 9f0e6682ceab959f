// Tests of World's copies and fingerprints (world_state.cpp): a copy runs on exactly as the
// original, and two worlds with equal fingerprints, reached by different schedules, behave alike
// when given the same choices.
#include <gtest/gtest.h>

#include <bit>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pipepool/random.hpp"
#include "scenario.hpp"
#include "world.hpp"

namespace pipepool::sim {
namespace {

Scenario scenario_of(Strategy strategy, SchedulerKind scheduler, uint32_t workers,
                     const char* calls) {
  Scenario s;
  s.strategy = strategy;
  s.scheduler = scheduler;
  s.workers = workers;
  s.pipe_pages = 16;
  std::string error;
  EXPECT_TRUE(parse_scenario(calls, s, error)) << error;
  return s;
}

std::vector<Scenario> scenarios() {
  return {
      scenario_of(Strategy::Batched, SchedulerKind::RoundRobin, 2, "map_async 4 70000 70000 0 1\n"),
      scenario_of(Strategy::Epoll, SchedulerKind::ShortestBacklog, 2,
                  "map_async 4 70000 70000 0 1\n"),
      scenario_of(Strategy::Unbatched, SchedulerKind::RoundRobin, 2,
                  "apply_async 30000 30000 0\napply_async 100 100 0\napply_async 30000 30000 0\n"
                  "wait\n"),
      scenario_of(Strategy::Epoll, SchedulerKind::Demand, 2,
                  "map_async 3 5000 70000 2 1\napply 100 100 1\n"),
      // Socketpairs, and Python's framing (the reader's length state must copy too).
      scenario_of(Strategy::Batched, SchedulerKind::RoundRobin, 2,
                  "transport socketpair\nmap_async 4 70000 120000 0 1\n"),
      scenario_of(Strategy::Unbatched, SchedulerKind::ShortestBacklog, 1,
                  "transport socketpair\nframing python\ntask-overhead 100\n"
                  "result-overhead 60\napply_async 215000 300000 0\n"
                  "apply_async 215000 300000 0\nwait\n"),
      scenario_of(Strategy::Epoll, SchedulerKind::RoundRobin, 2,
                  "framing python\ntask-overhead 64\nresult-overhead 64\n"
                  "map_async 4 20000 70000 0 1\n"),
  };
}

uint32_t pick(uint64_t mask, Random& random) {
  uint64_t i = random.below(static_cast<uint64_t>(std::popcount(mask)));
  while (i-- > 0) mask &= mask - 1;
  return static_cast<uint32_t>(std::countr_zero(mask));
}

// A trace line without its step number ("#12 t=0ms P ..." -> "t=0ms P ..."): equal behaviour from
// two states at different depths gives equal lines.
std::string without_step(const std::string& line) {
  return line.substr(line.find(' ') + 1);
}

TEST(WorldState, ACopyRunsOnExactlyAsTheOriginal) {
  for (const Scenario& scenario : scenarios()) {
    const auto script = make_script(scenario);
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      WorldOptions options;
      options.max_steps = default_max_steps(*script);
      World world(script, options);
      Random random(seed);
      std::unique_ptr<World> copy;
      Random copy_random(0);
      const uint64_t copy_at = seed * 3;
      while (uint64_t mask = world.poll()) {
        if (world.steps() == copy_at) {
          ASSERT_TRUE(world.copyable());
          copy = std::make_unique<World>(world);
          copy_random = random;
          EXPECT_EQ(copy->fingerprint(), world.fingerprint());
        }
        world.step(pick(mask, random));
      }
      ASSERT_EQ(world.status(), RunStatus::Finished) << world.failure();
      if (!copy) continue;
      while (uint64_t mask = copy->poll()) copy->step(pick(mask, copy_random));
      EXPECT_EQ(copy->status(), world.status());
      EXPECT_EQ(copy->schedule(), world.schedule());
      EXPECT_EQ(copy->trace_hash(), world.trace_hash()) << to_text(scenario) << " seed " << seed;
      EXPECT_EQ(copy->tasks_completed(), world.tasks_completed());
    }
  }
}

// Random schedules; every state is remembered by fingerprint with a copy of its world. When a
// later schedule, by another path, reaches a fingerprint seen before, both worlds are run on with
// the same choices: each step must find the same processes runnable and write the same trace
// line (time, process, call, outcome, pipe), and both runs must end alike.
TEST(WorldState, EqualFingerprintsFromDifferentSchedulesBehaveAlike) {
  uint64_t compared = 0;
  for (const Scenario& scenario : scenarios()) {
    const auto script = make_script(scenario);
    WorldOptions options;
    options.max_steps = default_max_steps(*script);
    options.trace = true;
    std::map<uint64_t, std::unique_ptr<World>> seen;
    uint64_t compared_here = 0;
    for (uint64_t seed = 1; seed <= 40 && compared_here < 30; ++seed) {
      World world(script, options);
      Random random(seed);
      while (uint64_t mask = world.poll()) {
        const uint64_t fp = world.fingerprint();
        auto [it, fresh] = seen.try_emplace(fp);
        if (fresh) {
          if (seen.size() < 4000) {
            it->second = std::make_unique<World>(world);
          } else {
            seen.erase(it);
          }
        } else if (it->second && it->second->schedule() != world.schedule() && compared_here < 30) {
          World a(*it->second);
          World b(world);
          const size_t a0 = a.trace().size(), b0 = b.trace().size();
          Random choices(seed * 7919);
          for (;;) {
            const uint64_t ma = a.poll(), mb = b.poll();
            ASSERT_EQ(ma, mb) << to_text(scenario) << " after " << a.steps() << "/" << b.steps();
            if (ma == 0) break;
            const uint32_t p = pick(ma, choices);
            a.step(p);
            b.step(p);
          }
          EXPECT_EQ(a.status(), b.status());
          EXPECT_EQ(a.tasks_completed(), b.tasks_completed());
          EXPECT_EQ(a.now_us(), b.now_us());
          ASSERT_EQ(a.trace().size() - a0, b.trace().size() - b0);
          for (size_t i = 0; a0 + i < a.trace().size(); ++i) {
            ASSERT_EQ(without_step(a.trace()[a0 + i]), without_step(b.trace()[b0 + i]))
                << to_text(scenario);
          }
          ++compared_here;
        }
        world.step(pick(mask, random));
      }
      ASSERT_EQ(world.status(), RunStatus::Finished) << world.failure();
    }
    compared += compared_here;
  }
  // The test means something only if different schedules did meet in one state.
  EXPECT_GT(compared, 50u);
}

TEST(WorldState, TheFingerprintTellsApartWorldsThatDiffer) {
  // The first steps of a run: each changes something the future depends on, so no fingerprint
  // repeats along one schedule (a repeat would mean a step the fingerprint cannot see).
  for (const Scenario& scenario : scenarios()) {
    const auto script = make_script(scenario);
    WorldOptions options;
    options.max_steps = default_max_steps(*script);
    World world(script, options);
    std::map<uint64_t, uint64_t> at;
    Random random(5);
    while (uint64_t mask = world.poll()) {
      auto [it, fresh] = at.try_emplace(world.fingerprint(), world.steps());
      EXPECT_TRUE(fresh) << to_text(scenario) << ": step " << world.steps()
                         << " has the fingerprint of step " << it->second;
      world.step(pick(mask, random));
    }
  }
}

}  // namespace
}  // namespace pipepool::sim
