// os/signals.cpp: ScopedSigpipeBlock.
#include "os/signals.hpp"

#include <pthread.h>
#include <time.h>

#include <cerrno>

#include "os/eintr.hpp"

namespace pipepool::os {

ScopedSigpipeBlock::ScopedSigpipeBlock() noexcept {
  sigset_t pending;
  sigemptyset(&pending);
  ::sigpending(&pending);
  if (sigismember(&pending, SIGPIPE) == 1) return;  // someone else's SIGPIPE: leave it alone

  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  if (::pthread_sigmask(SIG_BLOCK, &sigpipe, &previous_mask_) != 0) return;
  if (sigismember(&previous_mask_, SIGPIPE) == 1) return;  // already blocked: nothing to undo
  active_ = true;
}

ScopedSigpipeBlock::~ScopedSigpipeBlock() {
  if (!active_) return;
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  // Consume the SIGPIPE our writes raised, if any, so unblocking does not deliver it.
  const timespec zero{0, 0};
  (void)retry_on_eintr([&] { return ::sigtimedwait(&sigpipe, nullptr, &zero); });
  ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

}  // namespace pipepool::os
