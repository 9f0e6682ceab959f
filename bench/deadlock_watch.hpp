// bench/deadlock_watch.hpp: telling a deadlocked pool from a slow one, in seconds.
//
//   auto call = pool.map_async(echo, inputs, 1);
//   std::optional<std::string> stuck = wait_or_diagnose(
//       [&](std::chrono::milliseconds slice) { return call.wait(slice); }, watch);
//   if (stuck) { pool.terminate(); state.SkipWithError(stuck->c_str()); }
//
// While waiting, it samples every thread of this process but the calling one (the pool's I/O
// thread) and every descendant process (the fork server and the workers) from /proc: scheduler
// state, CPU time and wchan (where in the kernel each one sleeps). A call is declared deadlocked
// when, for `stall_window`, nothing was runnable and no CPU time was used; the diagnosis names
// where each process sleeps ("pipe_write" on both sides is the classic pipe deadlock). A call
// with no result after `timeout` is declared deadlocked whatever the samples say.
//
// Linux only; reads /proc through tools/proc (the project's one /proc reader; wchan may read "0"
// in some containers: the verdict does not need it).
// Thread safety: call from one thread at a time; it is the thread that is left out of the samples.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pipepool::bench {

struct WatchOptions {
  std::chrono::milliseconds timeout{5000};
  std::chrono::milliseconds stall_window{1000};
  std::chrono::milliseconds sample_interval{100};
  // Children of this process that are not the pool's (the raw-pipe children of a paired
  // measurement): left out of the samples, with their descendants.
  std::vector<long> ignored_processes;
};

// `wait_for(slice)` waits up to `slice` and returns true once the call is done. Returns nullopt
// when it finished, otherwise "deadlock: ..." with the diagnosis.
std::optional<std::string> wait_or_diagnose(
    const std::function<bool(std::chrono::milliseconds)>& wait_for, const WatchOptions& watch);

}  // namespace pipepool::bench
