// os/cgroup.hpp: creating, limiting, filling and removing a cgroup, v1 or v2, for the commands
// that emulate a smaller machine (`pipepool tiers`). The library itself only reads cgroups
// (cpu.hpp); nothing here is called by the pool.
//
//   std::string error;
//   std::optional<os::Cgroup> group = os::Cgroup::create("pipepool-tiers-123-128MB", error);
//   if (!group) die(error);            // "mkdir /sys/fs/cgroup/cpu/pipepool-...: Permission
//   denied" group->limit_cpu(20000, 1447, error);    // 1447 us of CPU per 20 ms period, all
//   processes group->limit_memory(128 << 20, error); group->limit_cpus("0-1", error);          //
//   cpuset group->add_process(pid, error);           // before the process starts its work
//   os::CgroupCpuStat stat = group->cpu_stat().value();
//   group->remove(error);                     // SIGKILLs what is left in it, then rmdir
//
// Where: a new cgroup is created under this process's own cgroup in each hierarchy, so a
// container that delegates its subtree works as well as a host. Version: where the cpu controller
// is a v1 hierarchy (a v1 or hybrid machine) every controller used is v1 (cpu, cpuset, memory in
// their own mounts); otherwise the v2 hierarchy, with +cpu +cpuset +memory enabled in the parent's
// cgroup.subtree_control (which fails with EBUSY where the parent itself holds processes: the v2
// "no internal processes" rule; the error says so). cpuset and memory are optional on v1: a
// missing controller is reported by has_cpuset()/has_memory() and its limit then fails.
//
// The destructor removes the cgroup as remove() does, ignoring errors. Moves only.
// Thread safety: an object is for one thread. Allocates; not for a forked child.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipepool::os {

// cpu.stat's bandwidth counters (v1: throttled_time in ns; v2: throttled_usec), in microseconds.
struct CgroupCpuStat {
  uint64_t nr_periods = 0;
  uint64_t nr_throttled = 0;
  uint64_t throttled_us = 0;
};

// Parses cpu.stat of either version; nullopt if it has no bandwidth counters.
std::optional<CgroupCpuStat> parse_cgroup_cpu_stat(std::string_view text);

// "0-3,6" -> {0, 1, 2, 3, 6}; nullopt for anything malformed.
std::optional<std::vector<int>> parse_cpu_list(std::string_view text);
// {0, 1, 2, 6} -> "0-2,6".
std::string format_cpu_list(const std::vector<int>& cpus);

class Cgroup {
 public:
  enum class Version { V1, V2 };

  // Creates cgroup `name` (one path component) under this process's cgroup. On failure returns
  // nullopt with `error` set to one line naming the file and the errno text; nothing is left.
  static std::optional<Cgroup> create(const std::string& name, std::string& error);

  ~Cgroup();
  Cgroup(Cgroup&& other) noexcept;
  Cgroup& operator=(Cgroup&&) = delete;
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;

  Version version() const { return version_; }
  bool has_cpuset() const { return !cpuset_dir_.empty(); }
  bool has_memory() const { return !memory_dir_.empty(); }
  // Every directory this cgroup occupies (one on v2, up to three on v1).
  std::vector<std::string> directories() const;

  // The CPUs this cgroup may be given: its parent's cpuset (effective), or the affinity of this
  // process when there is no cpuset controller.
  std::vector<int> available_cpus() const;

  // Each returns false with `error` (one line) when the kernel refuses.
  bool limit_cpu(uint64_t period_us, uint64_t quota_us, std::string& error);
  // The cgroup's share of contended CPU time, in cgroup v2 cpu.weight units (1..10000, 100 the
  // default; v1 cpu.shares = weight * 1024 / 100).
  bool set_cpu_weight(uint32_t weight, std::string& error);
  bool limit_memory(uint64_t bytes, std::string& error);
  bool limit_cpus(const std::vector<int>& cpus, std::string& error);
  bool add_process(pid_t pid, std::string& error);

  std::optional<CgroupCpuStat> cpu_stat() const;
  // The processes in the cgroup now (cgroup.procs of its cpu directory).
  std::vector<pid_t> processes() const;

  // SIGKILLs every process still in the cgroup, waits up to `wait_ms` for it to empty, then
  // removes its directories. False with `error` if a directory is left. Idempotent.
  bool remove(std::string& error, int wait_ms = 2000);

 private:
  Cgroup() = default;
  Version version_ = Version::V1;
  std::string cpu_dir_;     // v2: the one directory
  std::string cpuset_dir_;  // v1 only; empty when that controller is not mounted
  std::string memory_dir_;  // v1 only
  std::string parent_cpuset_dir_;
};

}  // namespace pipepool::os
