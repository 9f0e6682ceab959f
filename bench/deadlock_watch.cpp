#include "deadlock_watch.hpp"

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

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

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// /proc/.../stat: "pid (comm) S ppid ... utime stime ...", comm may hold spaces and parentheses.
std::optional<Sample> read_sample(const std::string& dir, long id, int depth) {
  const std::string stat = read_first_line(dir + "/stat");
  const size_t open = stat.find('(');
  const size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  Sample sample;
  sample.id = id;
  sample.depth = depth;
  sample.comm = stat.substr(open + 1, close - open - 1);
  std::istringstream rest(stat.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string field; rest >> field;) fields.push_back(field);
  if (fields.size() < 13) return std::nullopt;
  sample.state = fields[0].empty() ? '?' : fields[0][0];
  sample.cpu_ticks = std::stoull(fields[11]) + std::stoull(fields[12]);  // utime + stime
  sample.wchan = read_first_line(dir + "/wchan");
  if (sample.wchan.empty() || sample.wchan == "0") sample.wchan = "-";
  return sample;
}

std::vector<long> children_of(const std::string& process_dir) {
  std::vector<long> children;
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator(process_dir + "/task", error)) {
    std::istringstream in(read_first_line(task.path().string() + "/children"));
    for (long child; in >> child;) children.push_back(child);
  }
  return children;
}

// Every thread of this process but the caller, then every descendant process (breadth first).
std::vector<Sample> sample_pool(const std::vector<long>& ignored) {
  std::vector<Sample> samples;
  const long self_thread = static_cast<long>(gettid());
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", error)) {
    const long tid = std::atol(task.path().filename().c_str());
    if (tid == self_thread) continue;
    if (auto sample = read_sample(task.path().string(), tid, 0)) samples.push_back(*sample);
  }
  std::vector<std::pair<long, int>> pending;  // pid, depth
  for (long child : children_of("/proc/self")) {
    if (std::find(ignored.begin(), ignored.end(), child) == ignored.end()) {
      pending.emplace_back(child, 1);
    }
  }
  for (size_t i = 0; i < pending.size() && i < 256; ++i) {
    const auto [pid, depth] = pending[i];
    const std::string dir = "/proc/" + std::to_string(pid);
    if (auto sample = read_sample(dir, pid, depth)) samples.push_back(*sample);
    for (long child : children_of(dir)) pending.emplace_back(child, depth + 1);
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
