#include "driver/worker_main.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <new>
#include <string>
#include <vector>

#include "os/io.hpp"
#include "os/limits.hpp"
#include "os/memory.hpp"
#include "os/signals.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/errors.hpp"
#include "protocol/child_engine.hpp"

namespace pipepool::driver {
namespace {

static_assert(kExitMemoryLimit == WorkerLost::kMemoryLimitExitCode);

// How much freed memory a worker keeps for later tasks (see os::retain_freed_heap_memory).
constexpr size_t kRetainedHeapBytes = size_t{256} << 20;

// operator new calls this when malloc finds no memory: under the worker's RLIMIT_AS that means
// the task went over its limit. Exiting here (instead of throwing std::bad_alloc into the task,
// which would come back as an ordinary RemoteError, or not at all if the task swallows it) makes
// the parent see a death with a code it names. Async-signal-safe, allocates nothing.
void exit_on_allocation_failure() {
  ::_exit(kExitMemoryLimit);
}

}  // namespace

int worker_main(void* context, int task_fd, int result_fd) {
  const auto& config = *static_cast<const WorkerContext*>(context);
  // A write to a parent that is gone must come back as EPIPE, not kill the worker.
  os::ScopedSigpipeBlock no_sigpipe;

  if (config.memory_limit_bytes != 0) {
    // RLIMIT_AS counts the whole address space, which starts as the parent's as of the pool's
    // construction (copied by the fork server's forks): see Options::memory_limit_bytes.
    if (!os::limit_address_space(config.memory_limit_bytes).ok()) return kExitMemoryLimit;
    std::set_new_handler(&exit_on_allocation_failure);
  }
  // Buffers of one task serve the next: freed memory stays mapped (no fault and zeroing per task).
  (void)os::retain_freed_heap_memory(kRetainedHeapBytes);
  if (config.initializer) {
    try {
      config.initializer();
    } catch (...) {
      return kExitInitializerFailed;
    }
  }

  protocol::ChildEngine engine(config.config);
  std::vector<iovec> pieces;
  for (;;) {
    protocol::ChildEngine::Action action = engine.next();
    switch (action.op) {
      case protocol::ChildEngine::Op::Read: {
        // Ignored where it fails: the memory is usable without huge pages.
        if (!action.huge_page_advice.empty()) (void)os::advise_huge_pages(action.huge_page_advice);
        os::IoResult r = os::read_some(task_fd, action.read_into);
        engine.bytes_read(r.status == os::IoResult::Ok ? r.bytes : 0);
        break;
      }
      case protocol::ChildEngine::Op::Run: {
        std::string out = engine.result_buffer();  // an earlier result's memory, if any
        bool ok;
        try {
          ok = detail::execute_task(*action.task_payload, out);
        } catch (const ProtocolError&) {
          return protocol::kExitProtocolError;
        }
        engine.task_finished(ok, std::move(out));
        break;
      }
      case protocol::ChildEngine::Op::Write: {
        pieces.clear();
        size_t total = 0;
        for (auto segment : action.write) {
          pieces.push_back({const_cast<std::byte*>(segment.data()), segment.size()});
          total += segment.size();
        }
        os::Result<void> r = os::writev_all(result_fd, pieces);
        if (r.ok()) {
          engine.bytes_written(total);
        } else {
          engine.write_failed(r.error());
        }
        break;
      }
      case protocol::ChildEngine::Op::Exit:
        return action.exit_code;
    }
  }
}

}  // namespace pipepool::driver
