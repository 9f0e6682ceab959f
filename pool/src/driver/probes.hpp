// pool/src/driver/probes.hpp: the pool's static tracing points (USDT, provider "pipepool"), the
// one place they are defined. With <sys/sdt.h> (Debian's systemtap-sdt-dev) each probe is a
// single `nop` plus a note in the ELF file that tracers (bpftrace, perf, systemtap) read; no
// semaphore, so nothing is computed or branched on when no tracer is attached. Without the
// header, or with PIPEPOOL_NO_PROBES defined, the macros compile to nothing (their arguments are
// not evaluated). tools/bpf/task_latency.bt reads them.
//
// probe (arguments, in order)                        where
//   task_submitted (task, worker=-1, bytes, strategy) parent: a task got its id (I/O thread)
//   task_started   (task, worker pid, bytes)          worker: before the user's function
//   task_finished  (task, worker pid, bytes)          worker: after it, bytes of the result
//   result_received(task, worker, bytes, kind)        parent: before the caller is completed
//   worker_spawned (worker, pid)                      parent: a worker process started
//   worker_lost    (worker, pid, signal, exit code)   parent: a worker process ended (any cause;
//                                                     exit code 0 and signal 0 is a retirement)
// `worker` is the parent's slot index; `strategy` is pipepool::Strategy as an int (Epoll 0,
// Batched 1, Unbatched 2, -1 for a custom strategy); `kind` is protocol Completion::Kind
// (Result 0, RemoteError 1, WorkerLost 2, ProtocolError 3, Timeout 4, Terminated 5).
#pragma once

#if !defined(PIPEPOOL_NO_PROBES) && defined(__has_include)
#if __has_include(<sys/sdt.h>)
#include <sys/sdt.h>
#define PIPEPOOL_HAVE_PROBES 1
#endif
#endif

#ifdef PIPEPOOL_HAVE_PROBES
#define PIPEPOOL_PROBE2(name, a, b) DTRACE_PROBE2(pipepool, name, a, b)
#define PIPEPOOL_PROBE3(name, a, b, c) DTRACE_PROBE3(pipepool, name, a, b, c)
#define PIPEPOOL_PROBE4(name, a, b, c, d) DTRACE_PROBE4(pipepool, name, a, b, c, d)
#else
#define PIPEPOOL_PROBE2(name, a, b) ((void)sizeof(a), (void)sizeof(b))
#define PIPEPOOL_PROBE3(name, a, b, c) ((void)sizeof(a), (void)sizeof(b), (void)sizeof(c))
#define PIPEPOOL_PROBE4(name, a, b, c, d) \
  ((void)sizeof(a), (void)sizeof(b), (void)sizeof(c), (void)sizeof(d))
#endif
