// pipepool/detail/core.hpp: the non-template part of Pool (internal; the templates in pool.hpp
// encode calls and hand them here).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pipepool/detail/call_state.hpp"
#include "pipepool/detail/payload.hpp"
#include "pipepool/options.hpp"

namespace pipepool {

struct PoolStats {
  uint64_t tasks_submitted = 0;
  uint64_t tasks_completed = 0;
  uint64_t workers_started = 0;
  uint64_t workers_lost = 0;
  uint64_t tasks_retried = 0;
};

namespace detail {

class Core;

std::shared_ptr<Core> make_core(Options options);

// Submits tasks [first_index, first_index + payloads.size()) of `call`. Throws PoolClosed after
// close() or terminate() unless `continuation` (a lazy imap feeding itself after close(), which
// Python would have submitted eagerly). `items`: how many input items each task holds (empty: one
// each); a task's timeout is Options::task_timeout times that. No tasks: only the checks (a
// closed pool's map of an empty range is still PoolClosed).
// The payloads' segments may point into objects of the caller: see payload.hpp's invariant.
void submit(Core& core, std::vector<Payload> payloads, std::shared_ptr<CallState> call,
            size_t first_index, bool continuation = false, std::vector<uint64_t> items = {});

// Withdraws the tasks of `call` that no worker has been given yet (a lazy imap left early): they
// never run and never complete. Tasks already given to a worker run to the end. Returns at once;
// does nothing on Pool(0) or a pool that has stopped.
void cancel(Core& core, std::shared_ptr<CallState> call);

void close(Core& core);
void join(Core& core);
void terminate(Core& core);
int processes(const Core& core);
uint64_t pipe_capacity_bytes(const Core& core);
uint64_t socket_sndbuf_bytes(const Core& core);
std::string_view strategy_name(const Core& core);
std::string_view scheduler_name(const Core& core);
PoolStats stats(const Core& core);

}  // namespace detail
}  // namespace pipepool
