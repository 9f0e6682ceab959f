// os/process.hpp: forking, signalling and reaping processes.
//
//   // In the child: everything reset, then body() runs and its return value is the exit code.
//   os::Result<pid_t> pid = os::fork_child([&] { return serve(socket_fd); });
//   ...
//   os::Result<os::ExitStatus> status = os::wait_pid(pid.value());
//   log(status.value().describe());                   // "exited with code 3"
//
// The fork protocol (after libuv src/unix/process.c), fixed for every fork of the project:
//   parent: block every signal in the calling thread, fork, restore the thread's mask;
//   child:  reset every signal disposition to SIG_DFL (the parent's handlers must not run in the
//           child), set PR_SET_PDEATHSIG(SIGKILL), then check that getppid() is still the
//           process that forked it, and _exit(kParentGoneExitCode) if not (the parent died
//           before the death signal was armed); restore the original signal mask; run the body;
//           _exit with its return value. The body never returns into the caller's code, and an
//           exception escaping it terminates the child (std::terminate), never the parent.
//
// Rules for the body: workers do not exec, so between fork and _exit a child of a multi-threaded
// process may only make async-signal-safe calls (no malloc, no locks another thread may have held
// at the fork). The os functions documented as async-signal-safe are fine.
//
// PR_SET_PDEATHSIG fires when the *thread* that forked exits, not only the process: fork from a
// thread that lives as long as the child should.
//
// Pidfds: pidfd_open on a child you have not reaped is race-free (the pid cannot be reused). A
// pidfd is readable once its process has exited; only the process's parent can waitid on it.
//
// Thread safety: free functions, safe from any thread (forking from a multi-threaded process is
// subject to the body rules above).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <type_traits>

#include "os/fd.hpp"
#include "os/result.hpp"

namespace pipepool::os {

// How a process ended.
struct ExitStatus {
  int signal = 0;            // > 0: killed by this signal (code is then 0)
  int code = 0;              // the exit code, when signal == 0
  bool core_dumped = false;  // killed by a signal and dumped core

  bool killed() const noexcept { return signal != 0; }
  // "exited with code 3", "killed by signal 9 (SIGKILL)", "... (SIGSEGV), core dumped".
  std::string describe() const;
  // From a waitpid(2) status word (WIFEXITED/WIFSIGNALED).
  static ExitStatus from_wait_status(int status) noexcept;

  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

// Exit code of a child whose parent died before PR_SET_PDEATHSIG was armed (see above).
inline constexpr int kParentGoneExitCode = 1;

// What a forked child runs: main(context); the return value becomes the exit code.
using ChildMain = int (*)(void* context);
struct ChildSetup {
  ChildMain main = nullptr;
  void* context = nullptr;  // must be valid in the child's copy of memory (it is, as of the fork)
};

// Forks with the protocol above. Returns the child's pid in the parent; never returns in the
// child. Errors: fork's (EAGAIN, ENOMEM).
Result<pid_t> fork_child(const ChildSetup& setup);

// Convenience: forks and runs `body()` (returning int) in the child. `body` is used in the
// child's copy of the caller's stack, so a lambda capturing locals by reference is fine.
template <class Body>
requires std::is_invocable_r_v<int, Body&> Result<pid_t> fork_child(Body&& body) {
  using Type = std::remove_reference_t<Body>;
  return fork_child(
      ChildSetup{[](void* context) -> int { return (*static_cast<Type*>(context))(); },
                 const_cast<void*>(static_cast<const void*>(&body))});
}

// kill(2).
Result<void> send_signal(pid_t pid, int signal);

// Blocking waitpid(pid) for a child that terminates (stops are not reported).
Result<ExitStatus> wait_pid(pid_t pid);

// waitpid(pid, WNOHANG): nullopt while the child is still running.
Result<std::optional<ExitStatus>> try_wait_pid(pid_t pid);

// pidfd_open(2). The descriptor is close-on-exec.
Result<Fd> pidfd_open(pid_t pid);

// pidfd_send_signal(2): signal the process the pidfd refers to (ESRCH once it has been reaped).
Result<void> pidfd_send_signal(int pidfd, int signal);

// waitid(P_PIDFD, WEXITED): reaps the child the pidfd refers to (caller must be its parent).
// With nohang, nullopt while it is still running; without, never nullopt.
Result<std::optional<ExitStatus>> wait_pidfd(int pidfd, bool nohang);

}  // namespace pipepool::os
