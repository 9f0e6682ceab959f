// os/command_support.hpp: system calls that only the `pipepool` command makes, never the library
// (which must not change a process-wide signal disposition, ARCHITECTURE.md "Errors").
//
//   static volatile sig_atomic_t interrupted = 0;
//   os::catch_termination_signals(&interrupted);   // SIGINT, SIGTERM, SIGHUP set the flag
//   while (!interrupted) { ... poll with a timeout ... }
//   // clean up, then exit 128 + interrupted
//
// Thread safety: process-wide; call from main's thread before starting others.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

#include "os/result.hpp"

namespace pipepool::os {

// Installs a handler (sigaction, without SA_RESTART, so a blocking call returns EINTR) for SIGINT,
// SIGTERM and SIGHUP that stores the signal's number in *flag. A forked child gets the default
// dispositions back (process.hpp's fork protocol).
Result<void> catch_termination_signals(volatile sig_atomic_t* flag);

// For a forked child: execvp(argv[0], argv). Returns only on failure, with its errno.
Error exec_command(const std::vector<std::string>& argv);

}  // namespace pipepool::os
