// Test support shared by sim/'s and fuzz/'s tests: the lambda_multiprocessing scenario, the
// exhaustive explorer's options, and the scheduler of scheduler.hpp's example, as a user would
// first write it and hand to the real pool. Tests only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "explore.hpp"
#include "pipepool/scheduler.hpp"
#include "scenario.hpp"

namespace pipepool::sim::testing {

// Two back-to-back apply_async on one worker, lambda_multiprocessing's way (its scheduler hands
// out tasks at submission; the pool's default, Demand, would hold the second one back), over two
// 16-page pipes or one socketpair of the kernel's default buffer.
inline Scenario two_tasks(Strategy strategy, uint64_t task_bytes, uint64_t result_bytes,
                          Transport transport = Transport::Pipes) {
  Scenario s;
  s.strategy = strategy;
  s.scheduler = SchedulerKind::ShortestBacklog;
  s.workers = 1;
  s.pipe_pages = 16;
  s.transport = transport;
  Call call;
  call.kind = Call::Kind::ApplyAsync;
  call.item = {task_bytes, result_bytes, 0};
  s.calls = {call, call};
  return s;
}

// Exhaustive exploration within preemption bound `bound`, up to 2,000,000 schedules.
inline ExploreOptions exhaustive(int32_t bound) {
  ExploreOptions o;
  o.mode = ExploreMode::Exhaustive;
  o.preemption_bound = bound;
  o.schedules = 2'000'000;
  return o;
}

// Fills the lowest-numbered worker first, up to 4 queued tasks. Keeps no state between picks, so
// it needs no clone(). With Batched, two back-to-back large apply_async to one worker deadlock.
class LowestIndexFirst : public Scheduler {
 public:
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random&) override {
    for (const auto& w : workers) {
      if (w.outstanding < 4) return w.worker;
    }
    return std::nullopt;
  }
  std::string_view name() const override { return "lowest-index-first"; }
};

}  // namespace pipepool::sim::testing
