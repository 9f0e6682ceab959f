// os/pipe.hpp: pipes and their capacity.
//
//   auto pipe = os::make_pipe();                 // {read_end, write_end}, both close-on-exec
//   auto& [read_end, write_end] = pipe.value();
//   os::Result<size_t> cap = os::set_pipe_capacity(write_end.get(), 1 << 20);
//
// Capacity: Linux rounds a requested capacity up to a power-of-two number of pages (at least one
// page); F_SETPIPE_SZ returns what it set. An unprivileged process cannot go above
// /proc/sys/fs/pipe-max-size (EPERM), nor below what the pipe currently holds (EBUSY). The
// capacity belongs to the pipe, so setting it on either end sets it for both.
//
// Thread safety: free functions, safe from any thread. make_pipe and the capacity calls are
// async-signal-safe; pipe_max_size is not (it reads a file and parses it).
#pragma once

#include <cstddef>
#include <utility>

#include "os/fd.hpp"
#include "os/result.hpp"

namespace pipepool::os {

// pipe2(O_CLOEXEC). Returns {read_end, write_end}.
Result<std::pair<Fd, Fd>> make_pipe();

// fcntl(F_SETPIPE_SZ). Returns the capacity the kernel actually set (>= bytes, rounded).
// EINVAL if bytes does not fit an int.
Result<size_t> set_pipe_capacity(int fd, size_t bytes);

// fcntl(F_GETPIPE_SZ): the pipe's capacity in bytes.
Result<size_t> pipe_capacity(int fd);

// /proc/sys/fs/pipe-max-size, or 1 MiB if it cannot be read.
size_t pipe_max_size();

}  // namespace pipepool::os
