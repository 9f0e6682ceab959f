// Test support for sim/pipe_model_test.cpp: a real pipe2() pair driven with the same calls as a
// PipeModel, and the /proc and signal helpers the differential test needs. Tests only: this file
// makes system calls, which sim/ code proper never does. Every call returns -errno on failure,
// as the model does.
#pragma once

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "proc_reader.hpp"  // tools/proc: the project's one /proc reader (libc only)

namespace pipepool::sim::testing {

inline int64_t result_or_errno(int64_t r) {
  return r < 0 ? -errno : r;
}

// One pipe2(O_CLOEXEC | O_NONBLOCK) pair. Either end can be closed early; the destructor closes
// what is left.
class RealPipe {
 public:
  RealPipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2 failed");
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~RealPipe() {
    close_read_end();
    close_write_end();
  }
  RealPipe(const RealPipe&) = delete;
  RealPipe& operator=(const RealPipe&) = delete;

  int read_fd() const { return read_fd_; }
  int write_fd() const { return write_fd_; }
  bool read_open() const { return read_fd_ >= 0; }
  bool write_open() const { return write_fd_ >= 0; }

  int64_t write(std::span<const std::byte> data) {
    return result_or_errno(::write(write_fd_, data.data(), data.size()));
  }
  int64_t writev(std::span<const std::span<const std::byte>> parts) {
    std::vector<iovec> iov;
    iov.reserve(parts.size());
    for (const auto& p : parts) iov.push_back({const_cast<std::byte*>(p.data()), p.size()});
    return result_or_errno(::writev(write_fd_, iov.data(), static_cast<int>(iov.size())));
  }
  // pwritev2(RWF_NOWAIT): non-blocking for this call only (IOCB_NOWAIT in anon_pipe_write), while
  // another thread blocks in write(2) on the same, blocking, file.
  int64_t writev_nowait(std::span<const std::span<const std::byte>> parts) {
    std::vector<iovec> iov;
    iov.reserve(parts.size());
    for (const auto& p : parts) iov.push_back({const_cast<std::byte*>(p.data()), p.size()});
    return result_or_errno(
        ::pwritev2(write_fd_, iov.data(), static_cast<int>(iov.size()), -1, RWF_NOWAIT));
  }
  int64_t read(std::span<std::byte> out) {
    return result_or_errno(::read(read_fd_, out.data(), out.size()));
  }
  // fcntl(F_SETPIPE_SZ) on whichever end is open; `arg` is fcntl's int.
  int64_t set_size(int arg) { return result_or_errno(fcntl(any_fd(), F_SETPIPE_SZ, arg)); }
  int64_t size() const { return result_or_errno(fcntl(any_fd(), F_GETPIPE_SZ)); }
  int64_t fionread() const {
    int n = 0;
    if (ioctl(any_fd(), FIONREAD, &n) != 0) return -errno;
    return n;
  }
  // poll() revents of one end (asked for POLLIN | POLLOUT and their RDNORM/WRNORM twins).
  short poll_read_end() const { return poll_one(read_fd_); }
  short poll_write_end() const { return poll_one(write_fd_); }

  void set_write_nonblocking(bool nonblocking) {
    const int flags = fcntl(write_fd_, F_GETFL);
    fcntl(write_fd_, F_SETFL, nonblocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
  }
  void close_read_end() {
    if (read_fd_ >= 0) ::close(read_fd_);
    read_fd_ = -1;
  }
  void close_write_end() {
    if (write_fd_ >= 0) ::close(write_fd_);
    write_fd_ = -1;
  }

 private:
  int any_fd() const { return read_fd_ >= 0 ? read_fd_ : write_fd_; }
  static short poll_one(int fd) {
    pollfd p{fd, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM, 0};
    if (::poll(&p, 1, 0) < 0) return -1;
    return p.revents;
  }

  int read_fd_ = -1;
  int write_fd_ = -1;
};

// Blocks SIGPIPE in the calling thread for its lifetime (threads it starts inherit the mask), so a
// write to a pipe without reader comes back as EPIPE and leaves a pending signal to check.
class ScopedBlockSigpipe {
 public:
  ScopedBlockSigpipe() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~ScopedBlockSigpipe() {
    while (take_pending_sigpipe()) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedBlockSigpipe(const ScopedBlockSigpipe&) = delete;
  ScopedBlockSigpipe& operator=(const ScopedBlockSigpipe&) = delete;

  // Consumes one pending SIGPIPE of this thread (or the process); true if there was one.
  static bool take_pending_sigpipe() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    const timespec zero{0, 0};
    return sigtimedwait(&set, nullptr, &zero) == SIGPIPE;
  }

 private:
  sigset_t old_;
};

inline pid_t current_tid() {
  return static_cast<pid_t>(syscall(SYS_gettid));
}

// Scheduler state letter of a thread of this process ('R', 'S', 'D', ...), or '?' if it is gone.
inline char thread_state(pid_t tid) {
  const std::optional<proc::TaskStat> stat = proc::read_thread_stat(::getpid(), tid);
  return stat ? stat->state : '?';
}

// Kernel function a sleeping thread waits in ("anon_pipe_write"), or "" where the kernel hides it.
inline std::string thread_wchan(pid_t tid) {
  return proc::read_wchan(::getpid(), tid).symbol;
}

// Whether the calling thread has CAP_SYS_RESOURCE in its effective set (F_SETPIPE_SZ above
// /proc/sys/fs/pipe-max-size needs it).
inline bool has_cap_sys_resource() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_SYS_RESOURCE / 32].effective & (1u << (CAP_SYS_RESOURCE % 32))) != 0;
}

// Drops CAP_SYS_RESOURCE from the calling thread's effective set only (credentials are per
// thread in the kernel). Returns false if that failed.
inline bool drop_cap_sys_resource_in_this_thread() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  data[CAP_SYS_RESOURCE / 32].effective &= ~(1u << (CAP_SYS_RESOURCE % 32));
  return syscall(SYS_capset, &header, data) == 0 && !has_cap_sys_resource();
}

// /proc/sys/fs/pipe-max-size, or 1 MiB (the kernel's default) if it cannot be read.
inline uint64_t pipe_max_size() {
  std::ifstream in("/proc/sys/fs/pipe-max-size");
  uint64_t value = 0;
  if (!(in >> value) || value == 0) value = 1 << 20;
  return value;
}

// Pins the calling thread to the CPU it is on, at SCHED_FIFO priority 1, until destroyed. A thread
// pinned to the same CPU at SCHED_OTHER (see run_on_cpu_below) then runs only while this one
// sleeps: a writer woken by a read cannot run before the test has made its next calls.
class ExclusiveCpu {
 public:
  ExclusiveCpu() {
    if (sched_getaffinity(0, sizeof old_mask_, &old_mask_) != 0) return;
    old_policy_ = sched_getscheduler(0);
    sched_getparam(0, &old_param_);
    const int cpu = sched_getcpu();
    if (cpu < 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return;
    pinned_ = true;
    sched_param fifo{};
    fifo.sched_priority = 1;
    if (sched_setscheduler(0, SCHED_FIFO, &fifo) != 0) return;
    cpu_ = cpu;
  }
  ~ExclusiveCpu() {
    if (cpu_ >= 0) sched_setscheduler(0, old_policy_, &old_param_);
    if (pinned_) sched_setaffinity(0, sizeof old_mask_, &old_mask_);
  }
  ExclusiveCpu(const ExclusiveCpu&) = delete;
  ExclusiveCpu& operator=(const ExclusiveCpu&) = delete;

  // The CPU, or -1 if the thread could not be pinned at real-time priority.
  int cpu() const { return cpu_; }

 private:
  cpu_set_t old_mask_{};
  int old_policy_ = SCHED_OTHER;
  sched_param old_param_{};
  bool pinned_ = false;
  int cpu_ = -1;
};

// Called first in a thread started by an ExclusiveCpu thread: the same CPU, ordinary priority.
inline void run_on_cpu_below(int cpu) {
  if (cpu < 0) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  sched_setaffinity(0, sizeof one, &one);
  sched_param normal{};
  sched_setscheduler(0, SCHED_OTHER, &normal);
}

inline void sleep_us(long us) {
  timespec ts{us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, nullptr);
}

}  // namespace pipepool::sim::testing
