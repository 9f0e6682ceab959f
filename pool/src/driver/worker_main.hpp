// The worker process's loop: the child engine driven over two blocking pipe descriptors, or one
// blocking socket (WorkerContext::socket).
#pragma once

#include <cstdint>
#include <functional>

#include "protocol/child_engine.hpp"

namespace pipepool::driver {

inline constexpr int kExitInitializerFailed = 5;
// With a memory limit, an allocation that fails (operator new finds no memory under RLIMIT_AS)
// ends the worker with this code at once, and the parent reports "exceeded its memory limit".
// Equal to WorkerLost::kMemoryLimitExitCode (errors.hpp).
inline constexpr int kExitMemoryLimit = 12;  // ENOMEM's number, as a mnemonic

// Everything a worker needs, built in the parent before the fork server is forked (so that the
// server's copy, and every worker's, holds it).
struct WorkerContext {
  protocol::ChildConfig config;  // from protocol::engine_setup(), as the simulator's workers
  uint64_t memory_limit_bytes = 0;
  std::function<void()> initializer;
  // Transport::SocketPair: the two descriptors are one socket, read with recv and written with
  // sendmsg(MSG_NOSIGNAL); pipes are read and written with read/writev.
  bool socket = false;
};

// Matches driver::WorkerMain. Returns the worker's exit code.
int worker_main(void* context, int task_read_fd, int result_write_fd);

}  // namespace pipepool::driver
