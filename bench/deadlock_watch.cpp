#include "deadlock_watch.hpp"

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "proc_reader.hpp"

namespace pipepool::bench {
namespace {

struct Sample {
  long id = 0;    // thread id (this process) or process id (descendants)
  int depth = 0;  // 0: a thread of this process, 1: a child (the fork server), 2: a grandchild
  std::string comm;
  char state = '?';  // R running, S sleeping, D disk, Z zombie, ...
  uint64_t cpu_ticks = 0;
  std::string wchan;
};

// One thread (pid, tid) or one process (pid, pid), from the project's /proc reader.
std::optional<Sample> read_sample(pid_t pid, pid_t tid, bool whole_process, int depth) {
  const std::optional<proc::TaskStat> stat =
      whole_process ? proc::read_process_stat(pid) : proc::read_thread_stat(pid, tid);
  if (!stat) return std::nullopt;
  Sample sample;
  sample.id = tid;
  sample.depth = depth;
  sample.comm = stat->comm;
  sample.state = stat->state;
  sample.cpu_ticks = stat->cpu_ticks();  // utime + stime (of all threads, for a process)
  sample.wchan = proc::read_wchan(pid, tid).symbol;
  if (sample.wchan.empty()) sample.wchan = "-";
  return sample;
}

// Every thread of this process but the caller, then every descendant process (breadth first).
std::vector<Sample> sample_pool(const std::vector<long>& ignored) {
  std::vector<Sample> samples;
  const pid_t self = ::getpid();
  const pid_t self_thread = ::gettid();
  for (pid_t tid : proc::list_threads(self)) {
    if (tid == self_thread) continue;
    if (auto sample = read_sample(self, tid, false, 0)) samples.push_back(*sample);
  }
  std::vector<std::pair<pid_t, int>> pending;  // pid, depth
  for (pid_t child : proc::children_of(self)) {
    if (std::find(ignored.begin(), ignored.end(), child) == ignored.end()) {
      pending.emplace_back(child, 1);
    }
  }
  for (size_t i = 0; i < pending.size() && i < 256; ++i) {
    const auto [pid, depth] = pending[i];
    if (auto sample = read_sample(pid, pid, true, depth)) samples.push_back(*sample);
    for (pid_t child : proc::children_of(pid)) pending.emplace_back(child, depth + 1);
  }
  return samples;
}

bool anything_runnable(const std::vector<Sample>& samples) {
  for (const auto& sample : samples) {
    if (sample.state == 'R') return true;
  }
  return false;
}

uint64_t total_ticks(const std::vector<Sample>& samples) {
  uint64_t total = 0;
  for (const auto& sample : samples) total += sample.cpu_ticks;
  return total;
}

std::string describe(const std::vector<Sample>& samples) {
  std::string text;
  for (const auto& sample : samples) {
    if (!text.empty()) text += ", ";
    // The pool's process tree: I/O thread here, fork server below, workers below that.
    const char* role = sample.depth == 0   ? "parent thread"
                       : sample.depth == 1 ? "fork server"
                                           : "worker";
    text += std::string(role) + " " + std::to_string(sample.id) + " in " + sample.wchan;
  }
  return text.empty() ? "no pool process found" : text;
}

std::string seconds(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(duration.count()) / 1000.0);
  return text;
}

}  // namespace

std::optional<std::string> wait_or_diagnose(
    const std::function<bool(std::chrono::milliseconds)>& wait_for, const WatchOptions& watch) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::optional<Clock::time_point> still_since;
  uint64_t last_ticks = 0;
  while (true) {
    if (wait_for(watch.sample_interval)) return std::nullopt;
    const auto now = Clock::now();
    const auto samples = sample_pool(watch.ignored_processes);
    const uint64_t ticks = total_ticks(samples);
    if (anything_runnable(samples) || ticks != last_ticks || !still_since) {
      still_since = now;
    } else if (now - *still_since >= watch.stall_window) {
      return "deadlock: no CPU used and nothing runnable for " + seconds(watch.stall_window) +
             ": " + describe(samples);
    }
    last_ticks = ticks;
    if (now - start >= watch.timeout) {
      return "deadlock: no result in " + seconds(watch.timeout) + ": " + describe(samples);
    }
  }
}

}  // namespace pipepool::bench
