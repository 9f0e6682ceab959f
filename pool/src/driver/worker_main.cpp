#include "driver/worker_main.hpp"

#include <stdio_ext.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <new>
#include <string>
#include <typeinfo>
#include <vector>

#include "driver/probes.hpp"
#include "os/io.hpp"
#include "os/limits.hpp"
#include "os/memory.hpp"
#include "os/signals.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/errors.hpp"
#include "pipepool/remote_exceptions.hpp"
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

// The worker's loop; every way out of it returns here, so that worker_main flushes stdio once.
int run_worker(const WorkerContext& config, int task_fd, int result_fd);

}  // namespace

int worker_main(void* context, int task_fd, int result_fd) {
  // Bytes a stdio buffer held when the fork server was forked are the parent's to print: the
  // parent flushes before it forks the server (ForkServer::start), and whatever is left is dropped
  // here, so that no worker prints a line of the parent's a second time.
  __fpurge(stdout);
  __fpurge(stderr);
  const int code = run_worker(*static_cast<const WorkerContext*>(context), task_fd, result_fd);
  // A worker leaves through _exit (no atexit, no static destructors): flush what its tasks printed
  // now, or a stdout that is a pipe or a file (fully buffered) loses it. This covers a normal
  // shutdown, maxtasksperchild and a failed initializer; a worker killed by a signal (terminate(),
  // a task timeout) or over its memory limit loses what it had not flushed.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  return code;
}

namespace {

int run_worker(const WorkerContext& config, int task_fd, int result_fd) {
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
    } catch (const std::exception& e) {
      // As Python prints an initializer's traceback: the parent's WorkerLost says "its initializer
      // threw", and this line says what it threw.
      std::fprintf(stderr, "pipepool: worker (pid %d): its initializer threw %s: %s\n",
                   static_cast<int>(::getpid()), detail::demangle(typeid(e).name()).c_str(),
                   e.what());
      return kExitInitializerFailed;
    } catch (...) {
      std::fprintf(stderr,
                   "pipepool: worker (pid %d): its initializer threw a non-std::exception\n",
                   static_cast<int>(::getpid()));
      return kExitInitializerFailed;
    }
  }

  protocol::ChildEngine engine(config.config);
  std::vector<iovec> pieces;
  const pid_t worker_pid = ::getpid();  // once: getpid(2) is a system call, the probes are not
  for (;;) {
    protocol::ChildEngine::Action action = engine.next();
    switch (action.op) {
      case protocol::ChildEngine::Op::Read: {
        // Ignored where it fails: the memory is usable without huge pages.
        if (!action.huge_page_advice.empty()) (void)os::advise_huge_pages(action.huge_page_advice);
        // A socket's ECONNRESET (the parent closed with results of ours unread) is an end too.
        os::IoResult r = config.socket ? os::recv_some(task_fd, action.read_into, false)
                                       : os::read_some(task_fd, action.read_into);
        engine.bytes_read(r.status == os::IoResult::Ok ? r.bytes : 0);
        break;
      }
      case protocol::ChildEngine::Op::Run: {
        // The result in gather layout: its bulk segments point into the result values, which the
        // payload keeps until the engine has written its frame.
        detail::Payload out;
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
        // One write unit (a frame; with Python framing, a message or its length or its body),
        // written whole: Python's _send loop.
        // A spliced result stays in the engine (unmodified) until the parent acknowledges it.
        os::Result<void> r = config.socket   ? os::sendv_all(result_fd, pieces)
                             : action.splice ? os::vmsplice_all(result_fd, pieces)
                                             : os::writev_all(result_fd, pieces);
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

}  // namespace

}  // namespace pipepool::driver
