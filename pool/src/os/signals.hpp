// os/signals.hpp: getting EPIPE instead of death, without touching the process's dispositions.
//
// SIGPIPE belongs to the application: the library never calls signal()/sigaction() on it. A thread
// that may write to a pipe whose reader has gone blocks SIGPIPE for the duration of the write:
//
//   {
//     os::ScopedSigpipeBlock no_sigpipe;
//     os::Result<void> r = os::write_all(task_fd, frame);   // r.error() == EPIPE, no signal
//   }
//
// The write raises SIGPIPE, which stays pending because it is blocked; the destructor consumes
// that pending SIGPIPE (sigtimedwait with a zero timeout) before it restores the thread's mask, so
// it is never delivered. If SIGPIPE was already blocked, or already pending, on entry, the guard
// does nothing at all: the pending signal is someone else's. (Sockets do not need this: use
// MSG_NOSIGNAL, as send_with_fds does.)
//
// Thread safety: affects the calling thread only (pthread_sigmask); create and destroy it on the
// same thread. Not copyable or movable.
#pragma once

#include <signal.h>

namespace pipepool::os {

class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() noexcept;
  ~ScopedSigpipeBlock();
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t previous_mask_;
  bool active_ = false;  // false: SIGPIPE was blocked or pending on entry; nothing to undo
};

}  // namespace pipepool::os
