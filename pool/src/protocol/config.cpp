#include "protocol/config.hpp"

namespace pipepool::protocol {

EngineSetup engine_setup(const Options& options, uint32_t workers) {
  const IoStrategy& strategy = strategy_of(options);
  const bool timeouts = options.task_timeout.count() > 0;
  EngineSetup setup;
  setup.parent.workers = workers;
  setup.parent.max_result_payload_bytes = options.max_frame_bytes;
  setup.parent.max_tasks_per_child = options.maxtasksperchild;
  setup.parent.task_timeouts = timeouts;
  setup.parent.max_retries = options.max_retries;
  setup.parent.seed = options.seed;
  setup.child.mode = strategy.child_mode();
  setup.child.max_task_payload_bytes = options.max_frame_bytes;
  setup.child.max_tasks = options.maxtasksperchild;
  setup.child.send_started = timeouts;
  setup.child.read_ahead_bytes = strategy.child_read_ahead_bytes();
  setup.parent.huge_page_advice_bytes = kHugePageAdviceBytes;
  setup.child.huge_page_advice_bytes = kHugePageAdviceBytes;
  setup.loop.task_timeout_ns =
      static_cast<uint64_t>(std::chrono::nanoseconds(options.task_timeout).count());
  return setup;
}

const IoStrategy& strategy_of(const Options& options) {
  return options.custom_strategy ? *options.custom_strategy : builtin_strategy(options.strategy);
}

std::shared_ptr<Scheduler> scheduler_of(const Options& options) {
  if (options.custom_scheduler) return options.custom_scheduler;
  return std::shared_ptr<Scheduler>(make_scheduler(
      options.scheduler, options.demand_max_in_flight,
      static_cast<uint64_t>(std::chrono::nanoseconds(options.demand_queue_budget).count())));
}

}  // namespace pipepool::protocol
