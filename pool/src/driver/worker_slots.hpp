// The real driver's worker slots: for each slot of the pool, the descriptors of its current
// process (task pipe, result pipe, pidfd) and which of them the I/O thread's epoll set watches.
// Owned by the I/O thread (and the pool's constructor before it starts); Core::terminate() reads
// the pidfds under Core's spawn mutex.
//
//   WorkerSlots slots(epoll, 4);
//   slots.install(w, std::move(handle));           // a new process for slot w
//   slots.watch(w, WorkerSlots::Which::Read, true); // epoll its result pipe (token(w, Read))
//   slots.release(w);                               // unwatch and close everything of slot w
#pragma once

#include <cstdint>
#include <vector>

#include "driver/fork_server.hpp"
#include "os/epoll.hpp"

namespace pipepool::driver {

class WorkerSlots {
 public:
  enum class Which : uint64_t { Read = 0, Write = 1, Pidfd = 2 };

  // epoll tokens of a slot's descriptors: slot << 2 | which. Tokens of the pool's own
  // descriptors (its eventfd, the fork server's events socket) must not collide: the driver
  // uses the largest uint64_t values, which no slot index reaches.
  static uint64_t token(uint32_t w, Which which) {
    return (uint64_t{w} << 2) | static_cast<uint64_t>(which);
  }
  static uint32_t slot_of(uint64_t token) { return static_cast<uint32_t>(token >> 2); }
  static Which which_of(uint64_t token) { return static_cast<Which>(token & 3); }

  // `epoll` must outlive the slots.
  WorkerSlots(os::Epoll& epoll, size_t slots) : epoll_(epoll), slots_(slots) {}

  size_t size() const { return slots_.size(); }
  WorkerHandle& handle(uint32_t w) { return slots_[w].handle; }
  const WorkerHandle& handle(uint32_t w) const { return slots_[w].handle; }
  bool watched(uint32_t w, Which which) const { return flag(w, which); }

  // Slot w's descriptors become those of `handle`'s process; call release(w) first.
  void install(uint32_t w, WorkerHandle handle) { slots_[w].handle = std::move(handle); }

  // Adds or removes one of slot w's descriptors in the epoll set (EPOLLOUT for the task pipe,
  // EPOLLIN for the others). Returns whether it is watched now: false if the slot has no such
  // descriptor or epoll_ctl failed.
  bool watch(uint32_t w, Which which, bool want);

  // Stops watching and closes slot w's descriptors (its process, if any, is the fork server's to
  // reap).
  void release(uint32_t w);

 private:
  struct Slot {
    WorkerHandle handle;
    bool watched[3] = {false, false, false};
  };
  bool flag(uint32_t w, Which which) const { return slots_[w].watched[static_cast<int>(which)]; }

  os::Epoll& epoll_;
  std::vector<Slot> slots_;
};

}  // namespace pipepool::driver
