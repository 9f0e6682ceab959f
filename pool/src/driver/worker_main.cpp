#include "driver/worker_main.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <new>
#include <string>
#include <vector>

#include "driver/probes.hpp"
#include "os/io.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/errors.hpp"
#include "protocol/child_engine.hpp"

namespace pipepool::driver {
namespace {

static_assert(kExitMemoryLimit == WorkerLost::kMemoryLimitExitCode);

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
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipe_only, nullptr);

  if (config.memory_limit_bytes != 0) {
    // RLIMIT_AS counts the whole address space, which starts as the parent's as of the pool's
    // construction (copied by the fork server's forks): see Options::memory_limit_bytes.
    rlimit limit{config.memory_limit_bytes, config.memory_limit_bytes};
    if (setrlimit(RLIMIT_AS, &limit) != 0) return kExitMemoryLimit;
    std::set_new_handler(&exit_on_allocation_failure);
  }
  if (config.initializer) {
    try {
      config.initializer();
    } catch (...) {
      return kExitInitializerFailed;
    }
  }

  protocol::ChildEngine engine({.mode = config.mode,
                                .max_task_payload_bytes = config.max_frame_bytes,
                                .max_tasks = config.max_tasks,
                                .send_started = config.send_started,
                                .read_ahead_bytes = config.read_ahead_bytes});
  std::vector<iovec> pieces;
  const pid_t worker_pid = ::getpid();  // once: getpid(2) is a system call, the probes are not
  for (;;) {
    protocol::ChildEngine::Action action = engine.next();
    switch (action.op) {
      case protocol::ChildEngine::Op::Read: {
        os::IoResult r = os::read_some(task_fd, action.read_into);
        engine.bytes_read(r.status == os::IoResult::Ok ? r.bytes : 0);
        break;
      }
      case protocol::ChildEngine::Op::Run: {
        std::string out;
        bool ok;
        PIPEPOOL_PROBE3(task_started, action.task, worker_pid, action.task_payload->size());
        try {
          ok = detail::execute_task(*action.task_payload, out);
        } catch (const ProtocolError&) {
          return protocol::kExitProtocolError;
        }
        PIPEPOOL_PROBE3(task_finished, action.task, worker_pid, out.size());
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
