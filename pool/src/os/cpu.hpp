// os/cpu.hpp: how many CPUs this process may actually use.
//
//   int workers = os::available_cpus();   // the default pool size
//
// The answer is the number of CPUs in the affinity mask (sched_getaffinity; this also reflects a
// cpuset cgroup or `taskset`), further limited by the CPU bandwidth quota of the process's cgroup
// and of every ancestor up to the hierarchy's mount point: cgroup v2 `cpu.max`, cgroup v1
// `cpu.cfs_quota_us` / `cpu.cfs_period_us`. Both hierarchies are consulted (a hybrid system can
// have the cpu controller on either); the smallest limit wins. A fractional quota is rounded up
// (1.5 CPUs of bandwidth keeps 2 workers busy enough); the result is at least 1.
//
// The parsing is split into pure functions over strings, so it can be tested without a cgroup;
// cgroup_cpu_quota takes the file reader as a parameter for the same reason.
//
// Thread safety: all functions are safe from any thread. They allocate (not for a forked child).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace pipepool::os {

// Content of cgroup v2 `cpu.max` ("$MAX $PERIOD"): CPUs of bandwidth, e.g. "50000 100000" -> 0.5.
// nullopt for "max ..." (no limit) or anything malformed.
std::optional<double> parse_cgroup_v2_cpu_max(std::string_view text);

// Contents of cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`: quota / period, e.g.
// ("150000", "100000") -> 1.5. nullopt for a quota of -1 (no limit) or anything malformed.
std::optional<double> parse_cgroup_v1_cpu_quota(std::string_view quota_us,
                                                std::string_view period_us);

// From /proc/self/cgroup: the path of this process's cgroup in the v1 hierarchy that has
// `controller` ("cpu"), or in the v2 hierarchy ("0::/path") when controller is empty.
std::optional<std::string> parse_proc_self_cgroup(std::string_view content,
                                                  std::string_view controller);

// A cgroup hierarchy mounted in this mount namespace (a /proc/self/mountinfo line).
struct CgroupMount {
  std::string root;         // the part of the hierarchy that is mounted ("/" on a host)
  std::string mount_point;  // where it is mounted ("/sys/fs/cgroup/cpu")
};

// From /proc/self/mountinfo: the mount of the v1 hierarchy with `controller`, or of the cgroup2
// hierarchy when controller is empty. When the hierarchy is mounted several times, prefers the
// mount whose root is the longest prefix of `cgroup_path`.
std::optional<CgroupMount> parse_mountinfo_cgroup(std::string_view content,
                                                  std::string_view controller,
                                                  std::string_view cgroup_path);

// The directory of cgroup `cgroup_path` under `mount`: mount_point + (cgroup_path - root). Falls
// back to the mount point when the path is not under the mounted root (a container that sees
// only its own cgroup).
std::string cgroup_directory(const CgroupMount& mount, std::string_view cgroup_path);

// max(1, min(affinity_cpus, ceil(quota_cpus))).
int combine_cpu_limits(int affinity_cpus, std::optional<double> quota_cpus);

// Reads a whole file, nullopt if it cannot.
using FileReader = std::function<std::optional<std::string>(const std::string& path)>;

// The smallest CPU quota (in CPUs) on this process's cgroup and its ancestors, v2 and v1, found
// through /proc/self/cgroup and /proc/self/mountinfo as read by `read`; nullopt if unlimited.
std::optional<double> cgroup_cpu_quota(const FileReader& read);

// CPUs in this process's affinity mask (sched_getaffinity), at least 1.
int affinity_cpus();

// combine_cpu_limits(affinity_cpus(), cgroup_cpu_quota(real files)).
int available_cpus();

}  // namespace pipepool::os
