// os/process.cpp: the fork protocol, kill/pidfd signalling and reaping.
#include "os/process.hpp"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os/eintr.hpp"

namespace pipepool::os {
namespace {

std::string signal_name(int signal) {
  if (const char* abbreviation = ::sigabbrev_np(signal)) return std::string("SIG") + abbreviation;
  if (signal >= SIGRTMIN && signal <= SIGRTMAX) {
    return "SIGRTMIN+" + std::to_string(signal - SIGRTMIN);
  }
  return "unknown signal";
}

// The child's half of the protocol. Async-signal-safe calls only; never returns.
[[noreturn]] void run_child(const ChildSetup& setup, pid_t parent,
                            const sigset_t& original_mask) noexcept {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    ::sigaction(signal, &default_action, nullptr);  // EINVAL for libc-reserved signals: fine
  }
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ::_exit(kParentGoneExitCode);
  if (::getppid() != parent) ::_exit(kParentGoneExitCode);
  ::pthread_sigmask(SIG_SETMASK, &original_mask, nullptr);
  ::_exit(setup.main != nullptr ? setup.main(setup.context) : 0);
}

}  // namespace

std::string ExitStatus::describe() const {
  if (signal != 0) {
    std::string text =
        "killed by signal " + std::to_string(signal) + " (" + signal_name(signal) + ")";
    if (core_dumped) text += ", core dumped";
    return text;
  }
  return "exited with code " + std::to_string(code);
}

ExitStatus ExitStatus::from_wait_status(int status) noexcept {
  ExitStatus result;
  if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
    result.core_dumped = WCOREDUMP(status);
  } else if (WIFEXITED(status)) {
    result.code = WEXITSTATUS(status);
  }
  return result;
}

Result<pid_t> fork_child(const ChildSetup& setup) {
  sigset_t all;
  sigset_t original;
  sigfillset(&all);
  if (int e = ::pthread_sigmask(SIG_SETMASK, &all, &original); e != 0) {
    return Error{e, "pthread_sigmask"};
  }
  const pid_t parent = ::getpid();
  pid_t pid = retry_on_eintr([] { return ::fork(); });
  if (pid == 0) run_child(setup, parent, original);
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &original, nullptr);
  if (pid < 0) return Error{fork_errno, "fork"};
  return pid;
}

Result<void> send_signal(pid_t pid, int signal) {
  if (retry_on_eintr([&] { return ::kill(pid, signal); }) != 0) return last_error("kill");
  return {};
}

Result<ExitStatus> wait_pid(pid_t pid) {
  int status = 0;
  pid_t r = retry_on_eintr([&] { return ::waitpid(pid, &status, 0); });
  if (r < 0) return last_error("waitpid");
  return ExitStatus::from_wait_status(status);
}

Result<std::optional<ExitStatus>> try_wait_pid(pid_t pid) {
  int status = 0;
  pid_t r = retry_on_eintr([&] { return ::waitpid(pid, &status, WNOHANG); });
  if (r < 0) return last_error("waitpid");
  if (r == 0) return std::optional<ExitStatus>();
  return std::optional<ExitStatus>(ExitStatus::from_wait_status(status));
}

Result<Fd> pidfd_open(pid_t pid) {
  long fd = retry_on_eintr([&] { return ::syscall(SYS_pidfd_open, pid, 0); });
  if (fd < 0) return last_error("pidfd_open");
  return Fd(static_cast<int>(fd));
}

Result<void> pidfd_send_signal(int pidfd, int signal) {
  long r =
      retry_on_eintr([&] { return ::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0u); });
  if (r != 0) return last_error("pidfd_send_signal");
  return {};
}

Result<std::optional<ExitStatus>> wait_pidfd(int pidfd, bool nohang) {
  siginfo_t info{};
  const int options = WEXITED | (nohang ? WNOHANG : 0);
  int r = retry_on_eintr([&] {
    return ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, options);
  });
  if (r != 0) return last_error("waitid");
  if (info.si_pid == 0) return std::optional<ExitStatus>();  // WNOHANG, still running
  ExitStatus status;
  switch (info.si_code) {
    case CLD_EXITED:
      status.code = info.si_status;
      break;
    case CLD_DUMPED:
      status.core_dumped = true;
      [[fallthrough]];
    default:  // CLD_KILLED
      status.signal = info.si_status;
      break;
  }
  return std::optional<ExitStatus>(status);
}

}  // namespace pipepool::os
