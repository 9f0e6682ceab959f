// os/epoll.hpp: the event loop's readiness multiplexer.
//
//   os::Epoll epoll = os::Epoll::create().value();
//   epoll.add(result_fd, EPOLLIN, /*data=*/worker_index).value();
//   std::array<epoll_event, 64> events;
//   os::Result<int> n = epoll.wait(events, timeout_ms);        // 0: timed out
//   for (int i = 0; i < n.value(); ++i) handle(events[i].data.u64, events[i].events);
//
// EINTR: wait() retries an interrupted epoll_wait with what is left of the timeout, so it returns
// 0 events only when the timeout has really expired, never early because of a signal.
//
// Thread safety: add/modify/remove/wait may be called concurrently (the kernel serialises them),
// but the usual design is one loop thread owning the Epoll. Move-only.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <span>

#include "os/fd.hpp"
#include "os/result.hpp"

namespace pipepool::os {

class Epoll {
 public:
  // epoll_create1(EPOLL_CLOEXEC).
  static Result<Epoll> create();

  // epoll_ctl ADD / MOD: watch `fd` for `events` (EPOLLIN, EPOLLOUT, ...); `data` comes back in
  // epoll_event::data.u64.
  Result<void> add(int fd, uint32_t events, uint64_t data);
  Result<void> modify(int fd, uint32_t events, uint64_t data);
  // epoll_ctl DEL. Call it before closing fd if fd has duplicates (epoll tracks the open file).
  Result<void> remove(int fd);

  // epoll_wait into `events` (at most INT_MAX of them); timeout_ms -1 = forever, 0 = poll.
  // Returns how many entries were filled, 0 when the timeout expired.
  Result<int> wait(std::span<epoll_event> events, int timeout_ms);

  int fd() const noexcept { return fd_.get(); }

 private:
  explicit Epoll(Fd fd) noexcept : fd_(std::move(fd)) {}
  Fd fd_;
};

}  // namespace pipepool::os
