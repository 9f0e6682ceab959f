// testing/os_test_util.hpp: helpers for tests that fork (os_test.cpp, driver/fork_server_test.cpp).
// Header-only, test code only: it uses gtest-free plain C++ so it can also run in children.
//
//   ReapGuard child(pid);             // if the test fails early, the child is killed and reaped
//   auto status = child.wait();       // reaps it (the guard is then disarmed)
//
//   ScopedSubreaper subreaper;        // orphans of our children are reparented to us
//   auto st = wait_with_deadline(grandchild_pid, 2000);   // reap something that became ours
//   auto gone = wait_until_gone(pid, 2000);                // ... or that its parent reaped
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include <cerrno>
#include <optional>

#include "os/process.hpp"

namespace pipepool::os::test {

// Owns an unreaped child: kills and reaps it on destruction unless wait() reaped it already.
class ReapGuard {
 public:
  explicit ReapGuard(pid_t pid) : pid_(pid) {}
  ReapGuard(const ReapGuard&) = delete;
  ReapGuard& operator=(const ReapGuard&) = delete;
  ~ReapGuard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // Blocks until the child exits and reaps it.
  Result<ExitStatus> wait() {
    Result<ExitStatus> status = wait_pid(pid_);
    pid_ = -1;
    return status;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

// Makes this process a child subreaper for its lifetime (prctl PR_SET_CHILD_SUBREAPER), so that
// processes orphaned below our children are reparented to us and can be reaped by the test.
class ScopedSubreaper {
 public:
  ScopedSubreaper() {
    int previous = 0;
    ::prctl(PR_GET_CHILD_SUBREAPER, &previous);
    previous_ = previous;
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
  ~ScopedSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, previous_); }
  ScopedSubreaper(const ScopedSubreaper&) = delete;
  ScopedSubreaper& operator=(const ScopedSubreaper&) = delete;

 private:
  int previous_ = 0;
};

inline long long monotonic_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<long long>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

// Reaps `pid` once it has exited, polling every millisecond for at most `timeout_ms`. The pid may
// not be our child yet when this starts (an orphan on its way to a subreaper): ECHILD is retried.
// nullopt on timeout.
inline std::optional<ExitStatus> wait_with_deadline(pid_t pid, int timeout_ms) {
  const long long deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return ExitStatus::from_wait_status(status);
    if (r < 0 && errno != ECHILD && errno != EINTR) return std::nullopt;
    if (monotonic_ms() >= deadline) return std::nullopt;
    const timespec one_ms{0, 1'000'000};
    ::nanosleep(&one_ms, nullptr);
  }
}

// How a process disappeared, for wait_until_gone.
struct Disappearance {
  bool gone = false;                 // false: still there at the deadline
  std::optional<ExitStatus> status;  // set if we reaped it; nullopt if someone else did
};

// Waits up to `timeout_ms` until `pid` no longer exists: reaped here (the pid may become our child
// only later, as an orphan on its way to a subreaper) or by its own parent.
inline Disappearance wait_until_gone(pid_t pid, int timeout_ms) {
  const long long deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return Disappearance{true, ExitStatus::from_wait_status(status)};
    if (r < 0 && errno == ECHILD && ::kill(pid, 0) != 0 && errno == ESRCH) {
      return Disappearance{true, std::nullopt};
    }
    if (monotonic_ms() >= deadline) return Disappearance{};
    const timespec one_ms{0, 1'000'000};
    ::nanosleep(&one_ms, nullptr);
  }
}

// True if no process has this pid (kill(pid, 0) fails with ESRCH).
inline bool process_gone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace pipepool::os::test
