// os/eventfd.hpp: a descriptor another thread can poke to wake an event loop.
//
//   os::Fd wake = os::make_eventfd().value();
//   epoll.add(wake.get(), EPOLLIN, kWakeTag);
//   // any thread:        os::notify_eventfd(wake.get());
//   // the loop, on wake: os::drain_eventfd(wake.get());
//
// Thread safety: notify and drain may be called from any thread; both are async-signal-safe, so
// notify may also be called from a signal handler.
#pragma once

#include <cstdint>

#include "os/fd.hpp"
#include "os/result.hpp"

namespace pipepool::os {

// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
Result<Fd> make_eventfd();

// Adds 1 to the counter, making the descriptor readable. A saturated counter (EAGAIN) is already
// readable, so it counts as success.
Result<void> notify_eventfd(int fd);

// Reads and resets the counter. Returns how many notifications there were; 0 if none.
Result<uint64_t> drain_eventfd(int fd);

}  // namespace pipepool::os
