// bench/case_alarm.hpp: the last line of defence against a benchmark that hangs.
//
//   CaseAlarm alarm("echo/...", std::chrono::seconds(120));  // for the scope of one case
//
// If the scope is not left within the limit, SIGALRM prints "pipepool_bench: <name> still running
// after N s: hung, aborting" to stderr and exits the process with code 3, so a pool bug fails the
// run with the benchmark's name instead of hanging it. Expected deadlocks never get here: they are
// caught by wait_or_diagnose (deadlock_watch.hpp). alarm(2) needs no thread, so the pool's fork
// server is still started from a single-threaded process. Not inherited by forked children.
//
// Thread safety: one CaseAlarm at a time per process (there is one alarm clock).
#pragma once

#include <chrono>
#include <string_view>

namespace pipepool::bench {

class CaseAlarm {
 public:
  CaseAlarm(std::string_view name, std::chrono::seconds limit);
  ~CaseAlarm();
  CaseAlarm(const CaseAlarm&) = delete;
  CaseAlarm& operator=(const CaseAlarm&) = delete;
};

}  // namespace pipepool::bench
