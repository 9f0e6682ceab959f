// Helpers for the fault tests (faults_test.cpp, leaks_test.cpp, soak_test.cpp): memory shared
// with workers, a worker's own pipe ends, processes by parent, no core files, sanitizer checks.
//
//   struct Board { std::atomic<pid_t> victim; std::atomic<int64_t> crashed_at_ns; };
//   Board* g_board = nullptr;   // a global: tasks are plain functions and cannot capture it
//
//   SharedMemory<Board> board;  // before the Pool: its fork server and workers share the mapping
//   g_board = board.get();
//   pipepool::Pool pool(2);     // a task does g_board->victim = getpid(); the test reads it
//
// Header-only, test code only. /proc is read through tools/proc (pipepool_proc), the project's
// one reader.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "proc_reader.hpp"

namespace pipepool::faults {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kUnderSanitizer = true;
#else
inline constexpr bool kUnderSanitizer = false;
#endif
#else
inline constexpr bool kUnderSanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kUnderThreadSanitizer = true;
#else
inline constexpr bool kUnderThreadSanitizer = false;
#endif
#else
inline constexpr bool kUnderThreadSanitizer = false;
#endif

// Threads of a process that runs one thread of its own: ThreadSanitizer adds its background
// thread to every process, forked children included.
inline constexpr int kOneThread = kUnderThreadSanitizer ? 2 : 1;

// A T in an anonymous shared mapping (zero-filled, then value-initialised), unmapped on
// destruction. Processes forked after construction share it.
template <class T>
class SharedMemory {
 public:
  SharedMemory() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    value_ = new (p) T();
  }
  ~SharedMemory() {
    value_->~T();
    ::munmap(value_, sizeof(T));
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  T* get() const { return value_; }
  T* operator->() const { return value_; }

 private:
  T* value_;
};

// For one test: a fresh shared T, with `global` pointing at it (tasks are plain functions and
// reach the test's board through a global); the pointer is cleared when the test ends.
template <class T>
class ScopedSharedMemory {
 public:
  explicit ScopedSharedMemory(T*& global) : global_(global) { global_ = memory_.get(); }
  ~ScopedSharedMemory() { global_ = nullptr; }
  ScopedSharedMemory(const ScopedSharedMemory&) = delete;
  ScopedSharedMemory& operator=(const ScopedSharedMemory&) = delete;

 private:
  SharedMemory<T> memory_;
  T*& global_;
};

inline int64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

// In a worker: its own pipe end opened with `access` (O_WRONLY: the result pipe; O_RDONLY: the
// task pipe). A worker has only stdin, stdout, stderr and its two pipe ends open. -1 if none.
inline int own_pipe_end(int access) {
  for (int fd = 3; fd < 64; ++fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) != access) continue;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) return fd;
  }
  return -1;
}
inline int own_result_pipe() {
  return own_pipe_end(O_WRONLY);
}
inline int own_task_pipe() {
  return own_pipe_end(O_RDONLY);
}

// In a task about to crash on purpose: no core file, whatever the machine's settings.
inline void no_core_dumps() {
  rlimit zero{0, 0};
  ::setrlimit(RLIMIT_CORE, &zero);
}

struct ProcessInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
};

inline bool read_process(pid_t pid, ProcessInfo& out) {
  const std::optional<proc::TaskStat> stat = proc::read_process_stat(pid);
  if (!stat) return false;
  out.pid = pid;
  out.state = stat->state;
  out.ppid = stat->ppid;
  return true;
}

// Live (not zombie) processes whose parent is `parent`.
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (pid_t pid : proc::list_processes()) {
    ProcessInfo info;
    if (read_process(pid, info) && info.ppid == parent && info.state != 'Z') {
      out.push_back(info.pid);
    }
  }
  return out;
}

// Threads of this process (tids), for signalling each one.
inline std::vector<pid_t> own_threads() {
  return proc::list_threads(::getpid());
}

inline int signal_thread(pid_t tid, int signal) {
  return static_cast<int>(::syscall(SYS_tgkill, ::getpid(), tid, signal));
}

// Number of threads of process `pid` (/proc/pid/task), 0 if unknown.
inline int threads_of(pid_t pid) {
  return static_cast<int>(proc::list_threads(pid).size());
}

// Installs a no-op handler for `signal` without SA_RESTART (so blocking calls fail with EINTR)
// for the object's lifetime, in this process.
class ScopedNoopHandler {
 public:
  explicit ScopedNoopHandler(int signal) : signal_(signal) {
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: interrupted system calls return EINTR
    ::sigaction(signal_, &action, &previous_);
  }
  ~ScopedNoopHandler() { ::sigaction(signal_, &previous_, nullptr); }
  ScopedNoopHandler(const ScopedNoopHandler&) = delete;
  ScopedNoopHandler& operator=(const ScopedNoopHandler&) = delete;

 private:
  int signal_;
  struct sigaction previous_ {};
};

// Percentile of a sample (sorted copy), p in [0, 100].
inline double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p / 100.0 * values.size()));
  return values[index];
}

}  // namespace pipepool::faults
