// pipepool/scheduler.hpp: which worker gets the next task.
//
// A Scheduler is pure logic: no I/O, no clock, no global randomness. The pool's protocol engine
// calls it whenever a task is waiting and the workers' loads change (a task was submitted, a result
// came back, a worker started). It sees every worker that may take a task now and answers with one
// of them, or with nothing to hold the task back until the loads change. The engine calls it on the
// pool's I/O thread (or the simulator's single thread), never concurrently for one pool.
//
// Built in:
//   ShortestBacklog  fewest outstanding tasks, random among ties (lambda_multiprocessing >= 0.4).
//   RoundRobin       worker 0, 1, 2, ... regardless of load (its first version).
//   Demand           a worker gets another task only while what it already holds is short: no
//                    task outstanding, or fewer than `max_in_flight` whose estimated total run
//                    time (outstanding x its recent mean task time) is under `queue_budget_ns`.
//                    Slow tasks are therefore handed out one at a time, so one long task never
//                    holds quick ones behind it; tiny tasks are pipelined, so the round trip to
//                    the parent does not bound the task rate.
//
// Writing your own (no library code to touch):
//
//   class LowestIndexFirst : public pipepool::Scheduler {
//    public:
//     std::optional<uint32_t> pick(std::span<const pipepool::WorkerLoad> workers,
//                                  pipepool::Random&) override {
//       for (const auto& w : workers) if (w.outstanding < 4) return w.worker;
//       return std::nullopt;  // everyone has 4 queued: wait for a result
//     }
//     std::string_view name() const override { return "lowest-index-first"; }
//   };
//   pipepool::Pool pool(pipepool::Options{
//       .processes = 2, .custom_scheduler = std::make_shared<LowestIndexFirst>()});
//
// The simulator (sim/) runs the same object over model pipes to find the workloads that
// deadlock it; since it builds many pools, give a scheduler that keeps state between picks a
// clone() that returns a fresh copy (see below).
//
// Contract: pick() returns one of the `worker` values it was given, or nullopt. Returning nullopt
// while no task is outstanding anywhere would stall the pool forever, so the engine treats that as
// a contract violation and assigns to the least-loaded worker instead (and counts it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "pipepool/random.hpp"

namespace pipepool {

// One worker as a scheduler sees it.
struct WorkerLoad {
  uint32_t worker = 0;          // slot index, 0 .. processes-1
  uint32_t outstanding = 0;     // tasks assigned to it whose result has not come back
  uint64_t assigned_total = 0;  // tasks ever assigned to this slot (all its processes)
  uint64_t mean_task_ns = 0;    // recent mean time per task on this worker; 0 = no estimate yet
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // `workers` is never empty and lists only workers that can take a task now, in slot order.
  virtual std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random& random) = 0;
  virtual std::string_view name() const = 0;
  // A fresh copy in its initial state, so that the simulator can run many pools, each with its
  // own. nullptr (the default): the one instance is shared across the simulator's runs, which is
  // right for a scheduler that keeps no state between picks; a stateful one that does not
  // override clone() is caught by the explorer's determinism check (the same schedule, replayed,
  // takes another path).
  virtual std::unique_ptr<Scheduler> clone() const { return nullptr; }
  // A copy in this one's current state (not its initial one), so that the simulator's explorer
  // can branch from a saved world instead of replaying the steps that led to it. nullptr (the
  // default): it cannot, and the explorer replays. A scheduler that keeps no state may return a
  // fresh instance.
  virtual std::unique_ptr<Scheduler> snapshot() const { return nullptr; }
  // A hash of everything in this scheduler that decides its future picks (given the same loads
  // and generator), for the explorer's state cache: two schedulers with equal fingerprints must
  // pick alike from now on. nullopt (the default): unknown, and the explorer identifies states by
  // their history instead, which is sound but merges fewer of them.
  virtual std::optional<uint64_t> state_fingerprint() const { return std::nullopt; }
};

enum class SchedulerKind { Demand, ShortestBacklog, RoundRobin };

// Built-in schedulers, by kind. The demand_* parameters apply to Demand only.
std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, uint32_t demand_max_in_flight = 64,
                                          uint64_t demand_queue_budget_ns = 1'000'000);
std::string_view to_string(SchedulerKind kind);

}  // namespace pipepool
