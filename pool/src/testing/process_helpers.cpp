#include "process_helpers.hpp"

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include "proc_reader.hpp"

namespace pipepool::testing {
namespace {

struct ProcInfo {
  pid_t ppid;
  char state;
};

// Every process's parent and state, through tools/proc (the project's one /proc reader).
std::map<pid_t, ProcInfo> all_processes() {
  std::map<pid_t, ProcInfo> out;
  for (pid_t pid : proc::list_processes()) {
    if (const auto stat = proc::read_process_stat(pid)) out[pid] = {stat->ppid, stat->state};
  }
  return out;
}

}  // namespace

std::vector<pid_t> descendants(bool include_zombies) {
  auto processes = all_processes();
  std::vector<pid_t> out;
  std::vector<pid_t> frontier{getpid()};
  while (!frontier.empty()) {
    pid_t parent = frontier.back();
    frontier.pop_back();
    for (const auto& [pid, info] : processes) {
      if (info.ppid != parent) continue;
      frontier.push_back(pid);
      if (include_zombies || info.state != 'Z') out.push_back(pid);
    }
  }
  return out;
}

size_t thread_count() {
  return proc::list_threads(getpid()).size();
}

std::set<int> open_fds() {
  std::set<int> out;
  DIR* dir = opendir("/proc/self/fd");
  const int own = dirfd(dir);
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    int fd = std::atoi(entry->d_name);
    if (fd != own) out.insert(fd);
  }
  closedir(dir);
  return out;
}

std::vector<pid_t> wait_for_no_descendants(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = descendants();
    if (left.empty() || std::chrono::steady_clock::now() > deadline) return left;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace pipepool::testing
