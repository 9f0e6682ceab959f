// os/cpu.cpp: affinity and cgroup CPU quota.
#include "os/cpu.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

#include "os/io.hpp"

namespace pipepool::os {
namespace {

std::string_view trim(std::string_view text) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

std::optional<long long> parse_integer(std::string_view text) {
  text = trim(text);
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// Splits on `separator`, keeping empty fields.
std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> fields;
  for (;;) {
    size_t at = text.find(separator);
    fields.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return fields;
    text.remove_prefix(at + 1);
  }
}

// Splits on runs of spaces, dropping empty fields.
std::vector<std::string_view> words(std::string_view text) {
  std::vector<std::string_view> fields;
  for (std::string_view field : split(text, ' ')) {
    if (!field.empty()) fields.push_back(field);
  }
  return fields;
}

bool has_token(std::string_view comma_list, std::string_view token) {
  for (std::string_view t : split(comma_list, ',')) {
    if (t == token) return true;
  }
  return false;
}

// mountinfo escapes space, tab, newline and backslash as \ooo (octal).
std::string unescape_mountinfo(std::string_view field) {
  const auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) &&
        octal(field[i + 3])) {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

// True if `path` is `prefix` or lies under it ("/a" is under "/", "/a/b" under "/a", not "/ab").
bool path_under(std::string_view path, std::string_view prefix) {
  if (prefix == "/" || prefix.empty()) return !path.empty() && path.front() == '/';
  if (path.substr(0, prefix.size()) != prefix) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '/';
}

std::optional<double> min_quota(std::optional<double> a, std::optional<double> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

// Walks from the cgroup's directory up to the mount point, reading the quota at each level.
template <class ReadLevel>
std::optional<double> quota_up_the_tree(const CgroupMount& mount, std::string_view cgroup_path,
                                        ReadLevel read_level) {
  std::string directory = cgroup_directory(mount, cgroup_path);
  std::optional<double> smallest;
  for (;;) {
    smallest = min_quota(smallest, read_level(directory));
    if (directory.size() <= mount.mount_point.size()) return smallest;
    size_t slash = directory.find_last_of('/');
    if (slash == std::string::npos || slash < mount.mount_point.size()) return smallest;
    directory.resize(slash);
  }
}

}  // namespace

std::optional<double> parse_cgroup_v2_cpu_max(std::string_view text) {
  std::vector<std::string_view> fields = words(trim(text));
  if (fields.empty() || fields.size() > 2 || fields[0] == "max") return std::nullopt;
  std::optional<long long> quota = parse_integer(fields[0]);
  std::optional<long long> period = fields.size() == 2 ? parse_integer(fields[1]) : 100000;
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<double> parse_cgroup_v1_cpu_quota(std::string_view quota_us,
                                                std::string_view period_us) {
  std::optional<long long> quota = parse_integer(quota_us);
  std::optional<long long> period = parse_integer(period_us);
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<std::string> parse_proc_self_cgroup(std::string_view content,
                                                  std::string_view controller) {
  for (std::string_view line : split(content, '\n')) {
    // hierarchy-id:controller-list:path (the path itself may contain ':').
    size_t first = line.find(':');
    if (first == std::string_view::npos) continue;
    size_t second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view id = line.substr(0, first);
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string_view path = line.substr(second + 1);
    if (path.empty()) continue;
    if (controller.empty() ? (id == "0" && controllers.empty())
                           : has_token(controllers, controller)) {
      return std::string(path);
    }
  }
  return std::nullopt;
}

std::optional<CgroupMount> parse_mountinfo_cgroup(std::string_view content,
                                                  std::string_view controller,
                                                  std::string_view cgroup_path) {
  std::optional<CgroupMount> best;
  bool best_is_prefix = false;
  for (std::string_view line : split(content, '\n')) {
    std::vector<std::string_view> fields = words(line);
    // id parent major:minor root mount_point options [optional...] - fstype source super_options
    auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
    if (fields.size() < 6 || dash == fields.end() || fields.end() - dash < 4) continue;
    std::string_view fstype = dash[1];
    std::string_view super_options = dash[3];
    bool match = controller.empty() ? fstype == "cgroup2"
                                    : fstype == "cgroup" && has_token(super_options, controller);
    if (!match) continue;
    CgroupMount mount{unescape_mountinfo(fields[3]), unescape_mountinfo(fields[4])};
    bool is_prefix = path_under(cgroup_path, mount.root);
    if (!best || (is_prefix && (!best_is_prefix || mount.root.size() > best->root.size()))) {
      best = std::move(mount);
      best_is_prefix = is_prefix;
    }
  }
  return best;
}

std::string cgroup_directory(const CgroupMount& mount, std::string_view cgroup_path) {
  std::string directory = mount.mount_point;
  if (!path_under(cgroup_path, mount.root)) return directory;
  std::string_view rest = cgroup_path;
  if (mount.root != "/") rest.remove_prefix(mount.root.size());
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find("/..") != std::string_view::npos) return directory;  // outside our view
  while (!directory.empty() && directory.back() == '/') directory.pop_back();
  directory += rest;
  return directory.empty() ? std::string("/") : directory;
}

int combine_cpu_limits(int affinity_cpus, std::optional<double> quota_cpus) {
  int cpus = std::max(affinity_cpus, 1);
  if (quota_cpus && *quota_cpus > 0) {
    // The epsilon keeps 2.0000000001 (a period that does not divide evenly) at 2.
    double rounded = std::ceil(*quota_cpus - 1e-9);
    if (rounded < cpus) cpus = std::max(static_cast<int>(rounded), 1);
  }
  return cpus;
}

std::optional<double> cgroup_cpu_quota(const FileReader& read) {
  std::optional<std::string> self_cgroup = read("/proc/self/cgroup");
  std::optional<std::string> mountinfo = read("/proc/self/mountinfo");
  if (!self_cgroup || !mountinfo) return std::nullopt;
  std::optional<double> smallest;

  if (std::optional<std::string> path = parse_proc_self_cgroup(*self_cgroup, "")) {
    if (auto mount = parse_mountinfo_cgroup(*mountinfo, "", *path)) {
      smallest = min_quota(smallest, quota_up_the_tree(*mount, *path, [&](const std::string& dir) {
                             std::optional<std::string> max = read(dir + "/cpu.max");
                             return max ? parse_cgroup_v2_cpu_max(*max) : std::nullopt;
                           }));
    }
  }
  if (std::optional<std::string> path = parse_proc_self_cgroup(*self_cgroup, "cpu")) {
    if (auto mount = parse_mountinfo_cgroup(*mountinfo, "cpu", *path)) {
      smallest = min_quota(smallest, quota_up_the_tree(*mount, *path, [&](const std::string& dir) {
                             std::optional<std::string> quota = read(dir + "/cpu.cfs_quota_us");
                             std::optional<std::string> period = read(dir + "/cpu.cfs_period_us");
                             return quota && period ? parse_cgroup_v1_cpu_quota(*quota, *period)
                                                    : std::nullopt;
                           }));
    }
  }
  return smallest;
}

int affinity_cpus() {
  for (int cpus = 1024; cpus <= (1 << 20); cpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (set == nullptr) break;
    const size_t size = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(size, set);
    if (::sched_getaffinity(0, size, set) == 0) {
      int count = CPU_COUNT_S(size, set);
      CPU_FREE(set);
      return std::max(count, 1);
    }
    CPU_FREE(set);
    if (errno != EINVAL) break;  // EINVAL: the mask is larger than `cpus`; try bigger
  }
  long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

int available_cpus() {
  FileReader read = [](const std::string& path) -> std::optional<std::string> {
    Result<std::string> content = read_whole_file(path.c_str(), 1 << 20);
    if (!content.ok()) return std::nullopt;
    return std::move(content).value();
  };
  return combine_cpu_limits(affinity_cpus(), cgroup_cpu_quota(read));
}

}  // namespace pipepool::os
