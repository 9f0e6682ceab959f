// tools/doctor/watch.hpp: `pipepool doctor -- COMMAND ARGS...`: run a command, and if its tree
// stops making progress (no thread runnable and no CPU used for `stall`), diagnose it and end it.
//
//   pipepool::doctor::WatchOptions options{.command = {"python3", "hang.py"}};
//   pipepool::doctor::WatchResult result = pipepool::doctor::watch_command(options);
//   if (result.stalled) std::fputs(render_text(*result.diagnosis).c_str(), stderr);
//
// The command runs in a process group of its own, which is what gets killed (SIGKILL), with any
// process of its tree that left the group; the caller becomes a child subreaper
// (PR_SET_CHILD_SUBREAPER) so that orphans of the tree are reaped by it, not left to init. While it
// runs, SIGINT, SIGTERM and SIGHUP sent to the caller are passed on to that group (so Ctrl-C still
// reaches it). Call from one thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "doctor.hpp"

namespace pipepool::doctor {

struct WatchOptions {
  std::vector<std::string> command;  // argv; command[0] is looked up in PATH
  std::chrono::milliseconds stall{2000};
  std::chrono::milliseconds sample_interval{100};
};

struct WatchResult {
  bool started = false;  // false: fork failed (exec failures exit 127, as a shell's do)
  bool stalled = false;  // the tree stopped making progress and was ended
  int exit_status = 0;   // the command's: its exit code, or 128 + the signal that ended it
  pid_t pid = 0;
  std::optional<Diagnosis> diagnosis;  // when stalled
};

WatchResult watch_command(const WatchOptions& options);

// The status `pipepool doctor --` exits with: the command's own when it ended by itself; after a
// stall 1 (a cycle, or no cycle but no progress either: the text says which) or 3 (unknown).
int exit_status(const WatchResult& result);

}  // namespace pipepool::doctor
