#include "driver/worker_slots.hpp"

#include <sys/epoll.h>

namespace pipepool::driver {

bool WorkerSlots::watch(uint32_t w, Which which, bool want) {
  Slot& slot = slots_[w];
  bool& watched = slot.watched[static_cast<int>(which)];
  if (watched == want) return watched;
  const int fd = which == Which::Read    ? slot.handle.result_read.get()
                 : which == Which::Write ? slot.handle.task_write.get()
                                         : slot.handle.pidfd.get();
  if (fd < 0) {
    watched = false;
    return false;
  }
  if (want) {
    watched = epoll_.add(fd, which == Which::Write ? EPOLLOUT : EPOLLIN, token(w, which)).ok();
  } else {
    (void)epoll_.remove(fd);
    watched = false;
  }
  return watched;
}

void WorkerSlots::release(uint32_t w) {
  watch(w, Which::Read, false);
  watch(w, Which::Write, false);
  watch(w, Which::Pidfd, false);
  Slot& slot = slots_[w];
  slot.handle.task_write.reset();
  slot.handle.result_read.reset();
  slot.handle.pidfd.reset();
}

}  // namespace pipepool::driver
