#include "protocol/config.hpp"

#include <stdexcept>
#include <string>

namespace pipepool::protocol {

void validate_framing(const Options& options) {
  const bool python = options.framing == Framing::Python;
  if (!python && options.framing != Framing::Pipepool) {
    throw std::invalid_argument("pipepool: unknown Options::framing");
  }
  if (!python &&
      (options.python_task_overhead_bytes != 0 || options.python_result_overhead_bytes != 0)) {
    throw std::invalid_argument(
        "pipepool: python_task_overhead_bytes and python_result_overhead_bytes need "
        "Framing::Python (they are 0 with Framing::Pipepool)");
  }
  validate_wire_format(
      {python, options.python_task_overhead_bytes, options.python_result_overhead_bytes});
  const IoStrategy& strategy = strategy_of(options);
  if (strategy.splice_min_payload_bytes() != 0) {
    if (python) {
      throw std::invalid_argument(
          "pipepool: the " + std::string(strategy.name()) +
          " strategy splices payloads with vmsplice, which Framing::Python cannot carry (a "
          "message's padding and length are not the caller's memory); use Framing::Pipepool");
    }
    if (strategy.parent_blocking_writes()) {
      throw std::invalid_argument(
          "pipepool: strategy " + std::string(strategy.name()) +
          " splices payloads (splice_min_payload_bytes() > 0) but its parent blocks on writes; "
          "the acknowledgements of spliced results need a parent that never blocks");
    }
  }
}

void validate_channel(const Options& options) {
  validate_framing(options);
  if (options.transport == Transport::Pipes && options.socket_sndbuf_bytes != 0) {
    throw std::invalid_argument(
        "pipepool: socket_sndbuf_bytes needs Transport::SocketPair (with pipes, set "
        "pipe_capacity_bytes)");
  }
  if (options.transport == Transport::SocketPair && options.pipe_capacity_bytes != 0) {
    throw std::invalid_argument(
        "pipepool: pipe_capacity_bytes applies to Transport::Pipes; with Transport::SocketPair, "
        "set socket_sndbuf_bytes");
  }
  if (options.socket_sndbuf_bytes > kMaxSocketSndbufBytes) {
    throw std::invalid_argument("pipepool: socket_sndbuf_bytes must be at most " +
                                std::to_string(kMaxSocketSndbufBytes) + "; got " +
                                std::to_string(options.socket_sndbuf_bytes));
  }
  if (options.transport == Transport::SocketPair &&
      strategy_of(options).splice_min_payload_bytes() != 0) {
    throw std::invalid_argument("pipepool: the " + std::string(strategy_of(options).name()) +
                                " strategy splices payloads with vmsplice, which needs a pipe: "
                                "Transport::SocketPair cannot carry it; use Transport::Pipes");
  }
  if (options.transport != Transport::Pipes && options.transport != Transport::SocketPair) {
    throw std::invalid_argument("pipepool: unknown Options::transport");
  }
}

WireFormat wire_format(const Options& options) {
  if (options.framing != Framing::Python) return {};
  return {true, options.python_task_overhead_bytes, options.python_result_overhead_bytes};
}

EngineSetup engine_setup(const Options& options, uint32_t workers) {
  validate_framing(options);
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
  setup.child.splice_min_payload_bytes = strategy.splice_min_payload_bytes();
  setup.parent.wire = wire_format(options);
  setup.child.wire = setup.parent.wire;
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
