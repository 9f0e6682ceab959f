// Test support: what processes and descriptors a test leaves behind.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

namespace pipepool::testing {

// Every live (non-zombie unless include_zombies) descendant of this process, from /proc.
std::vector<pid_t> descendants(bool include_zombies = true);

// The names of this process's threads (/proc/self/task), one entry per thread.
size_t thread_count();

// /proc/self/fd, minus the directory's own descriptor.
std::set<int> open_fds();

// Polls until no descendant is left (reaped), up to `timeout_ms`; returns what is left.
std::vector<pid_t> wait_for_no_descendants(int timeout_ms);

}  // namespace pipepool::testing
