// os/fd.hpp: the owning descriptor type and the descriptor-table helpers.
//
//   os::Fd fd(::eventfd(0, EFD_CLOEXEC));      // owns it from here on; closed by ~Fd
//   int raw = fd.get();                        // borrow
//   int mine = fd.release();                   // give up ownership, nothing is closed
//
// Every descriptor the os layer creates is close-on-exec from the moment it exists (pipe2 with
// O_CLOEXEC, F_DUPFD_CLOEXEC, MSG_CMSG_CLOEXEC, EPOLL_CLOEXEC, SOCK_CLOEXEC, EFD_CLOEXEC), so a
// descriptor reaches a child only when the child is meant to have it. Workers never exec, so a
// forked child must also close what it does not need: close_fds_except.
//
// Thread safety: an Fd is a plain value (one owner); the free functions are safe to call from any
// thread. close_fd, close_fds_except, is_cloexec and set_nonblocking are async-signal-safe.
#pragma once

#include <span>
#include <vector>

#include "os/result.hpp"

namespace pipepool::os {

// Closes fd once; never retried on EINTR (Linux releases the descriptor even then). fd < 0: no-op.
void close_fd(int fd) noexcept;

// Move-only owner of one descriptor (-1 = none). The destructor closes it.
class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { close_fd(fd_); }

  // The descriptor, still owned by this object (-1 if none).
  int get() const noexcept { return fd_; }
  // Gives up ownership and returns the descriptor; this object is empty afterwards.
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the owned descriptor (if any) and owns `fd` instead.
  void reset(int fd = -1) noexcept {
    if (fd_ != fd) close_fd(fd_);
    fd_ = fd;
  }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// open(2) with O_CLOEXEC added to `flags`.
Result<Fd> open_file(const char* path, int flags);

// A new close-on-exec descriptor for the same open file (fcntl F_DUPFD_CLOEXEC), >= min_fd.
Result<Fd> dup_cloexec(int fd, int min_fd = 0);

// Sets or clears O_NONBLOCK on the open file description of fd (shared by all its duplicates).
Result<void> set_nonblocking(int fd, bool on);

// True if fd is open and has FD_CLOEXEC.
bool is_cloexec(int fd);

// The open descriptors of this process, ascending, read from /proc/self/fd (the descriptor used
// to read the directory is left out). Empty if /proc is not mounted. Allocates: not for a child.
std::vector<int> list_open_fds();

// Closes every descriptor of this process except those in `keep` (at most 64 entries, any
// order, negatives ignored), with close_range(2). Meant for a freshly forked child:
// async-signal-safe and allocation-free. EINVAL if `keep` has more than 64 entries.
Result<void> close_fds_except(std::span<const int> keep);

}  // namespace pipepool::os
