// pipepool/options.hpp: how a Pool is built.
//
//   pipepool::Pool pool(
//       pipepool::Options{.processes = 2, .strategy = pipepool::Strategy::Batched});
//
// Every field has a default that is safe for production: the Epoll strategy (deadlock-free), the
// Demand scheduler, pipes enlarged to /proc/sys/fs/pipe-max-size.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "pipepool/scheduler.hpp"
#include "pipepool/strategy.hpp"

namespace pipepool {

// How the parent and a worker are connected.
enum class Transport {
  Pipes,  // two pipes per worker: one for tasks, one for results (the default)
  // One AF_UNIX SOCK_STREAM socketpair per worker, duplex, as Python's multiprocessing.Pipe()
  // gives on Linux. What one side can have in flight is bounded by its end's SO_SNDBUF
  // (socket_sndbuf_bytes; Pool::socket_sndbuf_bytes() reports it), counted in the kernel's
  // per-skb memory, so the deadlock thresholds differ from a pipe's. A worker's death is noticed
  // as with pipes (end of file, ECONNRESET or EPIPE on its socket, its exit status); no SIGPIPE
  // is raised (MSG_NOSIGNAL).
  SocketPair,
};

// How each frame is put on the channel. Either framing works over either transport.
enum class Framing {
  Pipepool,  // pipepool's 32-byte header, then the payload (protocol/frame.hpp)
  // Each message as Python's multiprocessing.connection writes it on Linux: a 4-byte big-endian
  // length, then the message; one write of both when the message is at most 16,384 bytes, two
  // writes otherwise. A task message holds its payload plus python_task_overhead_bytes, a result
  // message its payload plus python_result_overhead_bytes (the pickled size of the library's own
  // objects around the payload), so that the channel fills as the Python library's does. The
  // overheads hold pipepool's 32-byte header (and zero padding): each must be at least 32 and at
  // most 65,536, or the pool's constructor throws std::invalid_argument. RunBatch, Shutdown and
  // Started are messages of 32 bytes (36 on the wire). Every write the pool makes is one of
  // Python's write calls, whatever the strategy: no two messages share a writev (so Epoll and
  // Batched send each message with its own write or two, as the Python library does), and each
  // side reads exactly the 4-byte length, then exactly the message (protocol/frame.hpp).
  Python,
};

struct Options {
  // Worker processes. -1: as many as CPUs this process may use (affinity mask and cgroup CPU quota,
  // not the machine's core count). 0: inline, every task runs in the submitting call, still encoded
  // and decoded. Other negative values are rejected with std::invalid_argument.
  int processes = -1;

  // The I/O discipline (see strategy.hpp). Unbatched and Batched reproduce designs that deadlock.
  Strategy strategy = Strategy::Epoll;

  // Which worker gets each task (see scheduler.hpp).
  SchedulerKind scheduler = SchedulerKind::Demand;
  // Demand only: a worker holding tasks gets another only while it holds fewer than
  // `demand_max_in_flight` and their estimated run time (count x its recent mean task time) is
  // under `demand_queue_budget`. 1 = strictly one task at a time per worker.
  uint32_t demand_max_in_flight = 64;
  std::chrono::microseconds demand_queue_budget{1000};

  // Run once in each worker process when it starts (Python's initializer + initargs: capture what
  // you need; it is copied into the workers by fork, so captures of any kind are fine here). If it
  // throws, the worker prints what it threw to stderr ("pipepool: worker (pid N): its initializer
  // threw std::runtime_error: ..."), exits with code 5, and tasks sent to it fail with WorkerLost
  // ("exited with code 5 (its initializer threw)"). Pool(0) runs
  // it once, in the constructor (before any
  // task, in this process), and lets its exception out of the constructor.
  std::function<void()> initializer{};

  // A worker exits after this many tasks and is replaced (Python's maxtasksperchild); 0: never.
  uint32_t maxtasksperchild = 0;

  // Enlarge every pipe to /proc/sys/fs/pipe-max-size (F_SETPIPE_SZ). false keeps the kernel's
  // default (64 KiB, 16 pages). Transport::Pipes only (socketpairs: socket_sndbuf_bytes). The
  // deadlock threshold of Unbatched and Batched and the throughput of all strategies depend on it;
  // Pool::pipe_capacity_bytes() reports the size in use.
  bool enlarge_pipes = true;
  // Explicit pipe capacity in bytes (rounded up by the kernel to a power-of-two number of pages);
  // overrides enlarge_pipes when non-zero.
  uint64_t pipe_capacity_bytes = 0;

  // Largest frame payload either side accepts (a task's encoded arguments, a result); a larger
  // length in a header is a ProtocolError before anything is allocated.
  uint64_t max_frame_bytes = uint64_t{16} << 30;

  // Per-task timeout, measured from the moment the worker starts the task; 0: none. On expiry the
  // worker is killed and replaced and the task fails with TimeoutError. It bounds each item: a
  // chunk of a map (or imap) of n items gets n times this budget, for the whole chunk (so one slow
  // item may use what its quicker neighbours left). Pool(0) rejects it with
  // UsageError at construction: a process cannot safely stop its own call halfway.
  std::chrono::milliseconds task_timeout{0};

  // Times a task whose worker died while running it is submitted again before it fails with
  // WorkerLost. 0 (default): never run a task twice. Only deaths are retried: a task that timed
  // out or whose worker sent a malformed frame fails at once. (Tasks queued on a dead worker that
  // had certainly not started are always sent elsewhere; that is not a retry.)
  uint32_t max_retries = 0;

  // Per-worker address-space limit in bytes (setrlimit RLIMIT_AS in each worker); 0: none.
  // An allocation that fails under it ends the worker at once (a new-handler exits with
  // WorkerLost::kMemoryLimitExitCode), and the task fails with WorkerLost "exceeded its memory
  // limit of N bytes"; the worker is replaced. So a task cannot catch std::bad_alloc from operator
  // new in a limited pool. Memory that is not allocated through operator new (malloc returning
  // null, a stack that cannot grow: SIGSEGV) fails as the task's code or the kernel decides.
  // RLIMIT_AS counts address space, not resident memory, and a worker starts with a copy of this
  // process's address space as of the pool's construction: the constructor throws
  // std::invalid_argument if the limit is not above that. Sanitizers (ASan, TSan) reserve
  // terabytes of address space, so a limited pool cannot run under them. For a limit on resident
  // memory, run the whole process in a memory cgroup: the OOM killer's SIGKILL is then a
  // WorkerLost naming SIGKILL.
  uint64_t memory_limit_bytes = 0;

  // Seed of the scheduler's generator (ShortestBacklog's tie-breaks). Same seed, same choices.
  uint64_t seed = 0x5eed;

  // The channel between the parent and each worker, and what goes on it (see Transport, Framing).
  // Settings that do not go together throw std::invalid_argument from the constructor: non-zero
  // overheads with Framing::Pipepool, socket_sndbuf_bytes with Transport::Pipes,
  // pipe_capacity_bytes with Transport::SocketPair (enlarge_pipes is ignored there).
  Transport transport = Transport::Pipes;
  Framing framing = Framing::Pipepool;
  uint32_t python_task_overhead_bytes = 0;    // Framing::Python only: 32 ..= 65,536
  uint32_t python_result_overhead_bytes = 0;  // Framing::Python only: 32 ..= 65,536
  // Transport::SocketPair: SO_SNDBUF of both ends of every socketpair (the kernel doubles it and
  // bounds it by /proc/sys/net/core/wmem_max); 0 keeps the kernel's default (wmem_default). At
  // most 2^30.
  uint64_t socket_sndbuf_bytes = 0;

  // A user-written scheduler or strategy replaces the built-in one selected above.
  std::shared_ptr<Scheduler> custom_scheduler{};
  std::shared_ptr<const IoStrategy> custom_strategy{};
};

}  // namespace pipepool
