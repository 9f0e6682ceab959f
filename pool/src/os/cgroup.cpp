// os/cgroup.cpp: cgroup creation and limits (see cgroup.hpp).
#include "os/cgroup.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>

#include "os/cpu.hpp"
#include "os/io.hpp"
#include "os/process.hpp"

namespace pipepool::os {
namespace {

std::optional<std::string> read_file(const std::string& path) {
  Result<std::string> content = read_whole_file(path.c_str(), 1 << 20);
  if (!content.ok()) return std::nullopt;
  return std::move(content).value();
}

std::string errno_text(int code) {
  return std::strerror(code);
}

bool write_file(const std::string& path, const std::string& text, std::string& error) {
  Result<Fd> file = open_file(path.c_str(), O_WRONLY);
  if (!file.ok()) {
    error = "open " + path + ": " + errno_text(file.error());
    return false;
  }
  Result<void> written = write_all(file.value().get(), std::as_bytes(std::span(text)));
  if (!written.ok()) {
    error = "write '" + text + "' to " + path + ": " + errno_text(written.error());
    return false;
  }
  return true;
}

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// This process's directory in the v1 hierarchy of `controller`, or in v2 for "".
std::optional<std::string> own_directory(const std::string& self, const std::string& mountinfo,
                                         const char* controller) {
  std::optional<std::string> path = parse_proc_self_cgroup(self, controller);
  if (!path) return std::nullopt;
  std::optional<CgroupMount> mount = parse_mountinfo_cgroup(mountinfo, controller, *path);
  if (!mount) return std::nullopt;
  return cgroup_directory(*mount, *path);
}

bool make_directory(const std::string& path, std::string& error) {
  if (::mkdir(path.c_str(), 0755) == 0) return true;
  error = "mkdir " + path + ": " + errno_text(errno);
  return false;
}

bool has_word(const std::string& list, std::string_view word) {
  size_t at = 0;
  while (at < list.size()) {
    size_t end = list.find_first_of(" \n", at);
    if (end == std::string::npos) end = list.size();
    if (std::string_view(list).substr(at, end - at) == word) return true;
    at = end + 1;
  }
  return false;
}

}  // namespace

std::optional<CgroupCpuStat> parse_cgroup_cpu_stat(std::string_view text) {
  CgroupCpuStat stat;
  bool periods = false, throttled = false, time = false;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    size_t space = line.find(' ');
    if (space == std::string_view::npos) continue;
    std::string_view key = line.substr(0, space);
    std::string_view number = line.substr(space + 1);
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc()) continue;
    if (key == "nr_periods") {
      stat.nr_periods = value;
      periods = true;
    } else if (key == "nr_throttled") {
      stat.nr_throttled = value;
      throttled = true;
    } else if (key == "throttled_time") {  // v1, nanoseconds
      stat.throttled_us = value / 1000;
      time = true;
    } else if (key == "throttled_usec") {  // v2
      stat.throttled_us = value;
      time = true;
    }
  }
  if (!periods || !throttled || !time) return std::nullopt;
  return stat;
}

std::optional<std::vector<int>> parse_cpu_list(std::string_view text) {
  std::vector<int> cpus;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view range = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    size_t dash = range.find('-');
    int first = 0, last = 0;
    std::string_view a = range.substr(0, dash);
    auto r1 = std::from_chars(a.data(), a.data() + a.size(), first);
    if (r1.ec != std::errc() || r1.ptr != a.data() + a.size() || a.empty()) return std::nullopt;
    last = first;
    if (dash != std::string_view::npos) {
      std::string_view b = range.substr(dash + 1);
      auto r2 = std::from_chars(b.data(), b.data() + b.size(), last);
      if (r2.ec != std::errc() || r2.ptr != b.data() + b.size() || b.empty() || last < first) {
        return std::nullopt;
      }
    }
    if (last - first > 65536) return std::nullopt;
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
  }
  return cpus;
}

std::string format_cpu_list(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(cpus[i]);
    if (j > i) out += "-" + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

std::optional<Cgroup> Cgroup::create(const std::string& name, std::string& error) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    error = "cgroup name '" + name + "' is not one path component";
    return std::nullopt;
  }
  std::optional<std::string> self = read_file("/proc/self/cgroup");
  std::optional<std::string> mountinfo = read_file("/proc/self/mountinfo");
  if (!self || !mountinfo) {
    error = "cannot read /proc/self/cgroup or /proc/self/mountinfo";
    return std::nullopt;
  }
  Cgroup group;
  if (std::optional<std::string> cpu = own_directory(*self, *mountinfo, "cpu")) {
    group.version_ = Version::V1;
    if (!make_directory(*cpu + "/" + name, error)) return std::nullopt;
    group.cpu_dir_ = *cpu + "/" + name;
    if (std::optional<std::string> cpuset = own_directory(*self, *mountinfo, "cpuset")) {
      if (!make_directory(*cpuset + "/" + name, error)) return std::nullopt;  // ~Cgroup cleans
      group.cpuset_dir_ = *cpuset + "/" + name;
      group.parent_cpuset_dir_ = *cpuset;
    }
    if (std::optional<std::string> memory = own_directory(*self, *mountinfo, "memory")) {
      if (!make_directory(*memory + "/" + name, error)) return std::nullopt;
      group.memory_dir_ = *memory + "/" + name;
    }
    return group;
  }
  std::optional<std::string> base = own_directory(*self, *mountinfo, "");
  if (!base) {
    error = "no cgroup hierarchy with the cpu controller is mounted (neither v1 cpu nor cgroup2)";
    return std::nullopt;
  }
  std::string controllers = read_file(*base + "/cgroup.controllers").value_or("");
  if (!has_word(controllers, "cpu")) {
    error = "the cgroup2 hierarchy at " + *base + " does not offer the cpu controller";
    return std::nullopt;
  }
  std::string enable = "+cpu";
  if (has_word(controllers, "cpuset")) enable += " +cpuset";
  if (has_word(controllers, "memory")) enable += " +memory";
  if (!write_file(*base + "/cgroup.subtree_control", enable, error)) {
    if (errno == EBUSY || error.find("busy") != std::string::npos) {
      error +=
          " (cgroup v2 enables controllers for children only of a cgroup without processes "
          "of its own: run from a leaf's parent)";
    }
    return std::nullopt;
  }
  group.version_ = Version::V2;
  if (!make_directory(*base + "/" + name, error)) return std::nullopt;
  group.cpu_dir_ = *base + "/" + name;
  if (has_word(controllers, "cpuset")) {
    group.cpuset_dir_ = group.cpu_dir_;
    group.parent_cpuset_dir_ = *base;
  }
  if (has_word(controllers, "memory")) group.memory_dir_ = group.cpu_dir_;
  return group;
}

Cgroup::Cgroup(Cgroup&& other) noexcept
    : version_(other.version_),
      cpu_dir_(std::move(other.cpu_dir_)),
      cpuset_dir_(std::move(other.cpuset_dir_)),
      memory_dir_(std::move(other.memory_dir_)),
      parent_cpuset_dir_(std::move(other.parent_cpuset_dir_)) {
  other.cpu_dir_.clear();
  other.cpuset_dir_.clear();
  other.memory_dir_.clear();
}

Cgroup::~Cgroup() {
  std::string ignored;
  (void)remove(ignored);
}

std::vector<std::string> Cgroup::directories() const {
  std::vector<std::string> out;
  for (const std::string* dir : {&cpu_dir_, &cpuset_dir_, &memory_dir_}) {
    if (!dir->empty() && std::find(out.begin(), out.end(), *dir) == out.end()) {
      out.push_back(*dir);
    }
  }
  return out;
}

std::vector<int> Cgroup::available_cpus() const {
  if (!parent_cpuset_dir_.empty()) {
    for (const char* file : {"/cpuset.cpus.effective", "/cpuset.effective_cpus", "/cpuset.cpus"}) {
      if (std::optional<std::string> text = read_file(parent_cpuset_dir_ + file)) {
        if (auto cpus = parse_cpu_list(*text); cpus && !cpus->empty()) return *cpus;
      }
    }
  }
  std::vector<int> cpus;
  for (int i = 0; i < affinity_cpus(); ++i) cpus.push_back(i);
  return cpus;
}

bool Cgroup::limit_cpu(uint64_t period_us, uint64_t quota_us, std::string& error) {
  if (version_ == Version::V2) {
    return write_file(cpu_dir_ + "/cpu.max",
                      std::to_string(quota_us) + " " + std::to_string(period_us), error);
  }
  return write_file(cpu_dir_ + "/cpu.cfs_period_us", std::to_string(period_us), error) &&
         write_file(cpu_dir_ + "/cpu.cfs_quota_us", std::to_string(quota_us), error);
}

bool Cgroup::set_cpu_weight(uint32_t weight, std::string& error) {
  if (version_ == Version::V2) {
    return write_file(cpu_dir_ + "/cpu.weight", std::to_string(weight), error);
  }
  return write_file(cpu_dir_ + "/cpu.shares", std::to_string(uint64_t{weight} * 1024 / 100), error);
}

bool Cgroup::limit_memory(uint64_t bytes, std::string& error) {
  if (memory_dir_.empty()) {
    error = "no memory controller: cannot limit memory";
    return false;
  }
  return write_file(
      memory_dir_ + (version_ == Version::V2 ? "/memory.max" : "/memory.limit_in_bytes"),
      std::to_string(bytes), error);
}

bool Cgroup::limit_cpus(const std::vector<int>& cpus, std::string& error) {
  if (cpuset_dir_.empty()) {
    error = "no cpuset controller: cannot limit CPUs";
    return false;
  }
  if (version_ == Version::V1) {
    // A v1 cpuset takes no task until it has memory nodes: those of its parent.
    std::string mems = trim(read_file(parent_cpuset_dir_ + "/cpuset.mems").value_or("0"));
    if (!write_file(cpuset_dir_ + "/cpuset.mems", mems.empty() ? "0" : mems, error)) return false;
  }
  return write_file(cpuset_dir_ + "/cpuset.cpus", format_cpu_list(cpus), error);
}

bool Cgroup::add_process(pid_t pid, std::string& error) {
  for (const std::string& dir : directories()) {
    if (!write_file(dir + "/cgroup.procs", std::to_string(pid), error)) return false;
  }
  return true;
}

std::optional<CgroupCpuStat> Cgroup::cpu_stat() const {
  std::optional<std::string> text = read_file(cpu_dir_ + "/cpu.stat");
  if (!text) return std::nullopt;
  return parse_cgroup_cpu_stat(*text);
}

std::vector<pid_t> Cgroup::processes() const {
  std::vector<pid_t> pids;
  for (const std::string& dir : directories()) {
    std::string text = read_file(dir + "/cgroup.procs").value_or("");
    size_t at = 0;
    while (at < text.size()) {
      size_t end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      pid_t pid = 0;
      auto [ptr, ec] = std::from_chars(text.data() + at, text.data() + end, pid);
      if (ec == std::errc() && pid > 0 && std::find(pids.begin(), pids.end(), pid) == pids.end()) {
        pids.push_back(pid);
      }
      at = end + 1;
    }
  }
  return pids;
}

bool Cgroup::remove(std::string& error, int wait_ms) {
  std::vector<std::string> dirs = directories();
  if (dirs.empty()) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    std::vector<pid_t> left = processes();
    if (left.empty() || std::chrono::steady_clock::now() >= deadline) break;
    for (pid_t pid : left) (void)send_signal(pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  bool ok = true;
  for (const std::string& dir : dirs) {
    bool removed = false;
    // rmdir can fail with EBUSY for a moment after the last process is reaped.
    for (int attempt = 0; attempt < 100 && !removed; ++attempt) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) {
        removed = true;
      } else if (errno == EBUSY) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      } else {
        break;
      }
    }
    if (!removed) {
      error = "rmdir " + dir + ": " + errno_text(errno);
      ok = false;
    }
  }
  if (ok) {
    cpu_dir_.clear();
    cpuset_dir_.clear();
    memory_dir_.clear();
  }
  return ok;
}

}  // namespace pipepool::os
