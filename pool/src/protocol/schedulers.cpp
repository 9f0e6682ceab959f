// The built-in schedulers. Pure functions of the loads they are shown and the seeded generator.
#include <algorithm>

#include "pipepool/scheduler.hpp"

namespace pipepool {
namespace {

// Fewest outstanding tasks; a uniformly random one among ties (lambda_multiprocessing).
class ShortestBacklog final : public Scheduler {
 public:
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random& random) override {
    uint32_t best = workers[0].outstanding;
    for (const WorkerLoad& w : workers) best = std::min(best, w.outstanding);
    uint64_t ties = std::count_if(workers.begin(), workers.end(),
                                  [&](const WorkerLoad& w) { return w.outstanding == best; });
    uint64_t chosen = ties == 1 ? 0 : random.below(ties);
    for (const WorkerLoad& w : workers) {
      if (w.outstanding == best && chosen-- == 0) return w.worker;
    }
    return workers[0].worker;  // unreachable
  }
  std::string_view name() const override { return "shortest-backlog"; }
  std::unique_ptr<Scheduler> clone() const override { return std::make_unique<ShortestBacklog>(); }
  std::unique_ptr<Scheduler> snapshot() const override { return clone(); }  // stateless
  std::optional<uint64_t> state_fingerprint() const override { return 0; }
};

// Next slot in turn among those accepting, whatever their load.
class RoundRobin final : public Scheduler {
 public:
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random&) override {
    for (const WorkerLoad& w : workers) {
      if (w.worker >= next_) {
        next_ = w.worker + 1;
        return w.worker;
      }
    }
    next_ = workers[0].worker + 1;
    return workers[0].worker;
  }
  std::string_view name() const override { return "round-robin"; }
  std::unique_ptr<Scheduler> clone() const override { return std::make_unique<RoundRobin>(); }
  std::unique_ptr<Scheduler> snapshot() const override {
    return std::make_unique<RoundRobin>(*this);
  }
  std::optional<uint64_t> state_fingerprint() const override { return next_; }

 private:
  uint32_t next_ = 0;
};

// Least loaded worker among those whose queue is empty or short: fewer than max_in_flight tasks and
// under the time budget by its recent mean task time. Otherwise hold the task.
class Demand final : public Scheduler {
 public:
  Demand(uint32_t max_in_flight, uint64_t queue_budget_ns)
      : max_in_flight_(std::max<uint32_t>(1, max_in_flight)), queue_budget_ns_(queue_budget_ns) {}
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random&) override {
    const WorkerLoad* best = nullptr;
    for (const WorkerLoad& w : workers) {
      if (!may_take(w)) continue;
      if (!best || w.outstanding < best->outstanding) best = &w;
    }
    if (!best) return std::nullopt;
    return best->worker;
  }
  std::string_view name() const override { return "demand"; }
  std::unique_ptr<Scheduler> clone() const override {
    return std::make_unique<Demand>(max_in_flight_, queue_budget_ns_);
  }
  std::unique_ptr<Scheduler> snapshot() const override { return clone(); }  // no state kept
  std::optional<uint64_t> state_fingerprint() const override { return 0; }

 private:
  bool may_take(const WorkerLoad& w) const {
    if (w.outstanding == 0) return true;
    if (w.outstanding >= max_in_flight_ || w.mean_task_ns == 0) return false;
    return w.outstanding * w.mean_task_ns < queue_budget_ns_;
  }

  uint32_t max_in_flight_;
  uint64_t queue_budget_ns_;
};

}  // namespace

std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, uint32_t demand_max_in_flight,
                                          uint64_t demand_queue_budget_ns) {
  switch (kind) {
    case SchedulerKind::ShortestBacklog:
      return std::make_unique<ShortestBacklog>();
    case SchedulerKind::RoundRobin:
      return std::make_unique<RoundRobin>();
    case SchedulerKind::Demand:
      break;
  }
  return std::make_unique<Demand>(demand_max_in_flight, demand_queue_budget_ns);
}

std::string_view to_string(SchedulerKind kind) {
  switch (kind) {
    case SchedulerKind::ShortestBacklog:
      return "shortest-backlog";
    case SchedulerKind::RoundRobin:
      return "round-robin";
    case SchedulerKind::Demand:
      break;
  }
  return "demand";
}

}  // namespace pipepool
