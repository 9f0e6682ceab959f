#include "watch.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "proc_reader.hpp"

namespace pipepool::doctor {
namespace {

volatile sig_atomic_t g_command_group = 0;

void forward_signal(int signal) {
  if (g_command_group > 0) ::kill(-static_cast<pid_t>(g_command_group), signal);
}

struct Progress {
  bool runnable = false;
  uint64_t cpu_ticks = 0;
  std::vector<pid_t> members;
};

Progress sample(pid_t root) {
  Progress progress;
  progress.members = proc::process_tree(root);
  for (pid_t pid : progress.members) {
    if (auto stat = proc::read_process_stat(pid)) progress.cpu_ticks += stat->cpu_ticks();
    for (pid_t tid : proc::list_threads(pid)) {
      auto thread = proc::read_thread_stat(pid, tid);
      if (thread && thread->state == 'R') progress.runnable = true;
    }
  }
  return progress;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

WatchResult watch_command(const WatchOptions& options) {
  WatchResult result;
  // Orphans of the command's tree (a pool's workers once their parent is killed) become this
  // process's children, so that they are reaped here rather than left to init.
  (void)::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::vector<char*> argv;
  for (const std::string& word : options.command) argv.push_back(const_cast<char*>(word.c_str()));
  argv.push_back(nullptr);
  const pid_t child = ::fork();
  if (child < 0) return result;
  if (child == 0) {
    ::setpgid(0, 0);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "pipepool doctor: cannot run %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(child, child);  // also here: whichever of the two runs first
  result.started = true;
  result.pid = child;
  g_command_group = child;
  struct sigaction forward {};
  forward.sa_handler = forward_signal;
  ::sigemptyset(&forward.sa_mask);
  struct sigaction old_int {
  }, old_term{}, old_hup{};
  ::sigaction(SIGINT, &forward, &old_int);
  ::sigaction(SIGTERM, &forward, &old_term);
  ::sigaction(SIGHUP, &forward, &old_hup);

  using Clock = std::chrono::steady_clock;
  Progress last;
  auto still_since = Clock::now();
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(child, &status, WNOHANG);
    if (done == child) {
      result.exit_status = decode_status(status);
      break;
    }
    if (done < 0 && errno != EINTR) {
      result.exit_status = 1;
      break;
    }
    std::this_thread::sleep_for(options.sample_interval);
    Progress now = sample(child);
    const auto at = Clock::now();
    if (now.runnable || now.cpu_ticks != last.cpu_ticks || now.members != last.members) {
      still_since = at;
    } else if (at - still_since >= options.stall) {
      result.stalled = true;
      Options doctor_options;
      doctor_options.pids = {child};
      result.diagnosis = diagnose(doctor_options);
      // End the tree: the group, and any member that left it (setsid, setpgid).
      const std::vector<pid_t> members = proc::process_tree(child);
      ::kill(-child, SIGKILL);
      for (pid_t pid : members) ::kill(pid, SIGKILL);
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      result.exit_status = decode_status(status);
      // Reap the rest of the tree (reparented here), up to a second.
      const auto reap_until = Clock::now() + std::chrono::seconds(1);
      while (Clock::now() < reap_until) {
        int other = 0;
        const pid_t reaped = ::waitpid(-1, &other, WNOHANG);
        if (reaped < 0 && errno == ECHILD) break;
        if (reaped <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      break;
    }
    last = std::move(now);
  }
  g_command_group = 0;
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGHUP, &old_hup, nullptr);
  return result;
}

int exit_status(const WatchResult& result) {
  if (!result.started) return 3;
  if (!result.stalled) return result.exit_status;
  if (result.diagnosis && result.diagnosis->verdict == Verdict::Unknown) return 3;
  return 1;
}

}  // namespace pipepool::doctor
