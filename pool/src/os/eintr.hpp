// os/eintr.hpp: the one EINTR retry of the project.
//
// Every wrapper in pipepool::os calls its system call through retry_on_eintr, except close(2):
// on Linux the descriptor is released even when close reports EINTR, so a retry could close a
// descriptor another thread has just been given (see fd.hpp, close_fd).
//
//   ssize_t n = retry_on_eintr([&] { return ::read(fd, buf, size); });
//
// The callable may recompute its arguments on each attempt (Epoll::wait shortens its timeout).
// Async-signal-safe when the callable is.
#pragma once

#include <cerrno>

namespace pipepool::os {

// Calls `call` until it returns something other than -1 with errno == EINTR; returns that.
template <class Call>
auto retry_on_eintr(Call&& call) -> decltype(call()) {
  for (;;) {
    auto result = call();
    if (!(result == -1 && errno == EINTR)) return result;
  }
}

}  // namespace pipepool::os
