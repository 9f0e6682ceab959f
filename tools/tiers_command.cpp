// `pipepool tiers`: a workload under emulated AWS Lambda memory tiers. Lambda gives a function CPU
// in proportion to its memory (1769 MB is one vCPU), enforced as a CFS quota on a 20 ms period,
// and shows 2 CPUs up to 3008 MB, 3 up to 5307, 4 up to 7076, 5 up to 8845 and 6 up to 10240.
// Each tier here is a cgroup of its own (os/cgroup.hpp) with
//   cpu quota   20000 us * MB / 1769 per 20000 us period, across all of the tier's processes
//   memory      the tier's size
//   cpuset      as many CPUs as Lambda shows at that size, capped at this machine's (marked)
// and each run is a child process moved into the tier's cgroup before it starts work. The child
// reads the cgroup's own cpu.stat around its measured interval, so the throttled fraction is the
// kernel's count (throttled_time / wall time), not an estimate.
//
// Workloads: echo (payloads through the pool, per strategy and size), rate (trivial tasks per
// second), spin (a CPU-bound loop in one thread: checks the emulation against the published
// figures), or `-- COMMAND ARGS` (a program of the user's; it sees PIPEPOOL_TIER_MB).
//
// Exit status: 0 done, 2 bad usage, 3 cgroups cannot be created or limited (not root, no
// controller), 128 + the signal when interrupted. Every cgroup is removed in every case but
// SIGKILL (the handlers for SIGINT, SIGTERM and SIGHUP are installed here, not in the library).
#include <poll.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "command.hpp"
#include "os/cgroup.hpp"
#include "os/command_support.hpp"
#include "os/cpu.hpp"
#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os/process.hpp"
#include "pipepool/pipepool.hpp"
#include "report_parts.hpp"

namespace pipepool::tools {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr uint64_t kPeriodUs = 20000;
constexpr uint64_t kOneVcpuMb = 1769;
constexpr uint32_t kTierCpuWeight = 10000;  // the v2 maximum; v1 cpu.shares 102400

// The published spin-loop measurements on real Lambda (pwrdrvr/lambda-throttling, 2025).
const std::map<uint64_t, double> kPublishedThrottled = {
    {128, 0.928}, {256, 0.869}, {512, 0.711}, {1024, 0.421}, {1769, 0.032}};

volatile sig_atomic_t g_interrupted = 0;

// CPUs a Lambda function sees at `mb`.
int lambda_cpus(uint64_t mb) {
  if (mb <= 3008) return 2;
  if (mb <= 5307) return 3;
  if (mb <= 7076) return 4;
  if (mb <= 8845) return 5;
  return 6;
}

uint64_t quota_us(uint64_t mb) {
  return kPeriodUs * mb / kOneVcpuMb;
}

struct TiersArgs {
  std::vector<uint64_t> tiers_mb = {128, 256, 512, 1024, 1769, 3008, 5307, 10240};
  std::string workload = "echo";
  std::vector<std::string> strategies = {"epoll", "batched", "unbatched"};
  std::vector<uint64_t> sizes_bytes = {4096, uint64_t{1} << 20};
  double seconds = 0;  // 0: the workload's default
  bool json = false;
  std::string plot;
  bool quiet = false;
  std::vector<std::string> command;
  const CLI::App* app = nullptr;
  const CLI::Option* workload_option = nullptr;
  std::string failure;  // why collect_tiers stopped (printed by run_tiers, reported by report)
};

// One run: a tier, a strategy (or "none"), a payload size (echo).
struct RunSpec {
  uint64_t tier_mb = 0;
  std::string strategy = "none";
  uint64_t payload_bytes = 0;
};

Strategy strategy_named(const std::string& name) {
  if (name == "batched") return Strategy::Batched;
  if (name == "unbatched") return Strategy::Unbatched;
  return Strategy::Epoll;
}

double percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t at = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size()))) - 1;
  return values[std::min(at, values.size() - 1)];
}

std::string echo(std::string s) {
  return s;
}
int increment(int x) {
  return x + 1;
}

// ---- in the child ------------------------------------------------------------------------------

// One thread spinning until the deadline; a gap of more than 2 ms between two looks at the clock
// is a pause (the pwrdrvr measurement's method), reported beside the cgroup's own counters.
Json spin(double seconds) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  Clock::time_point last = start;
  double paused_s = 0, longest_s = 0;
  uint64_t pauses = 0, loops = 0;
  for (Clock::time_point now = start; now < end; now = Clock::now()) {
    const double gap = std::chrono::duration<double>(now - last).count();
    if (gap > 0.002) {
      paused_s += gap;
      longest_s = std::max(longest_s, gap);
      ++pauses;
    }
    last = now;
    ++loops;
  }
  return Json{{"loops", loops},
              {"pauses", pauses},
              {"paused_fraction", paused_s / seconds},
              {"longest_pause_ms", longest_s * 1e3}};
}

// Calls through the pool for `seconds`, `window` in flight; latency from submit to result.
template <class Submit>
Json through_pool(Pool& pool, double seconds, size_t window, uint64_t payload_bytes,
                  Submit submit) {
  using Result = decltype(submit());
  std::deque<std::pair<Result, Clock::time_point>> in_flight;
  std::vector<double> latencies_us;
  const Clock::time_point start = Clock::now();
  const Clock::time_point end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t tasks = 0;
  auto finish_one = [&] {
    (void)in_flight.front().first.get();
    latencies_us.push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - in_flight.front().second).count());
    in_flight.pop_front();
    ++tasks;
  };
  while (Clock::now() < end) {
    while (in_flight.size() < window) in_flight.emplace_back(submit(), Clock::now());
    finish_one();
  }
  while (!in_flight.empty()) finish_one();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  return Json{{"workers", pool.processes()},
              {"tasks", tasks},
              {"tasks_per_s", static_cast<double>(tasks) / wall},
              {"bytes_per_s", static_cast<double>(tasks * payload_bytes) / wall},
              {"p50_us", percentile(latencies_us, 0.50)},
              {"p99_us", percentile(latencies_us, 0.99)}};
}

Json run_workload(const TiersArgs& args, const RunSpec& run, double seconds) {
  if (args.workload == "spin") return spin(seconds);
  Pool pool(Options{.strategy = strategy_named(run.strategy)});  // workers: what Pool() chooses
  const size_t workers = static_cast<size_t>(std::max(pool.processes(), 1));
  if (args.workload == "echo") {
    const std::string payload(run.payload_bytes, 'x');
    return through_pool(pool, seconds, workers, run.payload_bytes,
                        [&] { return pool.apply_async(echo, payload); });
  }
  return through_pool(pool, seconds, 2 * workers, 0,
                      [&] { return pool.apply_async(increment, 1); });
}

// The child's whole life: wait for "go" (it is in the cgroup by then), measure, report one JSON.
int child_main(const TiersArgs& args, const RunSpec& run, double seconds, const os::Cgroup& group,
               int go_fd, int result_fd) {
  std::byte go{};
  os::Result<size_t> got = os::read_exact(go_fd, std::span(&go, 1));
  if (!got.ok() || got.value() != 1) return 1;  // the parent gave up
  Json out;
  try {
    const std::optional<os::CgroupCpuStat> before = group.cpu_stat();
    const Clock::time_point start = Clock::now();
    Json figures;
    if (args.workload == "command") {
      setenv("PIPEPOOL_TIER_MB", std::to_string(run.tier_mb).c_str(), 1);
      os::Error error = os::exec_command(args.command);
      const std::string text =
          Json{{"error", "cannot run " + args.command.front() + ": " + error.message()}}.dump() +
          "\n";
      (void)os::write_all(result_fd, std::as_bytes(std::span(text)));
      return 127;
    } else {
      figures = run_workload(args, run, seconds);
    }
    const double wall = std::chrono::duration<double>(Clock::now() - start).count();
    const std::optional<os::CgroupCpuStat> after = group.cpu_stat();
    out = Json{{"wall_s", wall}, {"figures", figures}};
    if (before && after) {
      out["nr_periods"] = after->nr_periods - before->nr_periods;
      out["nr_throttled"] = after->nr_throttled - before->nr_throttled;
      out["throttled_time_us"] = after->throttled_us - before->throttled_us;
    }
  } catch (const std::exception& e) {
    out = Json{{"error", e.what()}};
  }
  const std::string text = out.dump() + "\n";
  (void)os::write_all(result_fd, std::as_bytes(std::span(text)));
  return 0;
}

// ---- in the parent -----------------------------------------------------------------------------

struct RunOutcome {
  Json row;
  bool interrupted = false;
  std::string environment_error;  // the cgroup refused the child: exit 3
};

// Runs one RunSpec in `group`: fork, move the child in, go, collect. For a command the wall time
// and cpu.stat are read here (the program cannot report them).
RunOutcome run_one(const TiersArgs& args, const RunSpec& run, double seconds, os::Cgroup& group,
                   Progress& progress, double done_before, double total) {
  RunOutcome outcome;
  auto go_pipe = os::make_pipe();
  auto result_pipe = os::make_pipe();
  if (!go_pipe.ok() || !result_pipe.ok()) {
    outcome.environment_error = "pipe2 failed";
    return outcome;
  }
  auto& [go_read, go_write] = go_pipe.value();
  auto& [result_read, result_write] = result_pipe.value();
  const int go_fd = go_read.get(), result_fd = result_write.get();
  os::Result<pid_t> forked =
      os::fork_child([&] { return child_main(args, run, seconds, group, go_fd, result_fd); });
  if (!forked.ok()) {
    outcome.environment_error = forked.failure().message();
    return outcome;
  }
  const pid_t pid = forked.value();
  go_read.reset();
  result_write.reset();
  (void)os::set_nonblocking(result_read.get(), true);
  std::string error;
  if (!group.add_process(pid, error)) {
    (void)os::send_signal(pid, SIGKILL);
    (void)os::wait_pid(pid);
    outcome.environment_error = error;
    return outcome;
  }
  const std::optional<os::CgroupCpuStat> before = group.cpu_stat();
  const Clock::time_point start = Clock::now();
  const std::byte go{1};
  (void)os::write_all(go_write.get(), std::span(&go, 1));
  // A workload of ours that overruns by 30 s is stuck; a command has no limit unless --seconds.
  const double limit_s = args.workload != "command" ? seconds + 30
                         : args.seconds > 0         ? args.seconds
                                                    : 1e9;
  std::string text;
  std::optional<os::ExitStatus> status;
  bool timed_out = false;
  while (!status) {
    pollfd fd{result_read.get(), POLLIN, 0};
    (void)os::poll_fds(std::span(&fd, 1), 50);
    std::array<std::byte, 4096> chunk;
    for (;;) {
      os::IoResult r = os::read_some(result_read.get(), chunk);
      if (r.status != os::IoResult::Ok || r.bytes == 0) break;
      text.append(reinterpret_cast<const char*>(chunk.data()), r.bytes);
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (g_interrupted || elapsed > limit_s) {
      timed_out = !g_interrupted;
      outcome.interrupted = g_interrupted != 0;
      (void)os::send_signal(pid, SIGKILL);
      status = os::wait_pid(pid).value();
      break;
    }
    auto waited = os::try_wait_pid(pid);
    if (waited.ok() && waited.value()) status = *waited.value();
    progress.show((done_before + std::min(1.0, elapsed / std::max(seconds, 0.1))) / total,
                  std::to_string(run.tier_mb) + " MB " + args.workload +
                      (run.strategy == "none" ? "" : " " + run.strategy) +
                      (run.payload_bytes ? " " + std::to_string(run.payload_bytes) + " B" : ""));
  }
  const double parent_wall = std::chrono::duration<double>(Clock::now() - start).count();
  for (;;) {  // what is left in the pipe
    std::array<std::byte, 4096> chunk;
    os::IoResult r = os::read_some(result_read.get(), chunk);
    if (r.status != os::IoResult::Ok || r.bytes == 0) break;
    text.append(reinterpret_cast<const char*>(chunk.data()), r.bytes);
  }
  Json report = Json::parse(text, nullptr, false);
  if (report.is_discarded() || !report.is_object()) report = Json::object();
  if (args.workload == "command" || !report.contains("wall_s")) {
    const std::optional<os::CgroupCpuStat> after = group.cpu_stat();
    report["wall_s"] = parent_wall;
    if (before && after) {
      report["nr_periods"] = after->nr_periods - before->nr_periods;
      report["nr_throttled"] = after->nr_throttled - before->nr_throttled;
      report["throttled_time_us"] = after->throttled_us - before->throttled_us;
    }
    if (args.workload == "command") report["figures"] = Json{{"exit", status->describe()}};
  }
  for (pid_t left : group.processes()) (void)os::send_signal(left, SIGKILL);  // stray workers
  outcome.row = report;
  if (timed_out) outcome.row["error"] = "no result within " + std::to_string(limit_s) + " s";
  if (status->killed() && !outcome.interrupted && args.workload != "command") {
    outcome.row["error"] = "the run was " + status->describe() +
                           (status->signal == SIGKILL ? " (out of memory at this tier?)" : "");
  }
  return outcome;
}

// The row of the table and of the JSON for one run.
Json make_row(const TiersArgs& args, const RunSpec& run, int cpus, Json report) {
  const uint64_t quota = quota_us(run.tier_mb);
  const int lambda = lambda_cpus(run.tier_mb);
  const double quota_cpus = static_cast<double>(quota) / kPeriodUs;
  Json row{{"tier_mb", run.tier_mb},
           {"strategy", run.strategy},
           {"workload", args.workload},
           {"cpus", cpus},
           {"lambda_cpus", lambda},
           {"emulated_faithfully", cpus >= lambda},
           {"quota_us", quota},
           {"period_us", kPeriodUs},
           {"memory_limit_bytes", run.tier_mb << 20},
           {"expected_workers", os::combine_cpu_limits(cpus, quota_cpus)}};
  if (run.payload_bytes != 0) row["payload_bytes"] = run.payload_bytes;
  const double wall = report.value("wall_s", 0.0);
  row["wall_s"] = wall;
  row["nr_periods"] = report.value("nr_periods", uint64_t{0});
  row["nr_throttled"] = report.value("nr_throttled", uint64_t{0});
  row["throttled_time_us"] = report.value("throttled_time_us", uint64_t{0});
  // throttled_time is summed over the tier's CPUs; clipped so that two CPUs throttled together
  // do not read as more than all of the wall time.
  row["throttled_fraction"] =
      wall > 0 ? std::min(1.0, static_cast<double>(row["throttled_time_us"].get<uint64_t>()) /
                                   (wall * 1e6))
               : 0.0;
  if (args.workload == "spin") {
    auto published = kPublishedThrottled.find(run.tier_mb);
    row["published_throttled_fraction"] =
        published == kPublishedThrottled.end() ? Json(nullptr) : Json(published->second);
  }
  if (report.contains("figures")) {
    for (auto& [key, value] : report["figures"].items()) row[key] = value;
  }
  if (report.contains("error")) row["error"] = report["error"];
  return row;
}

std::string cell(const Json& row, const char* key, double scale, const char* format) {
  if (!row.contains(key) || !row[key].is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, format, row[key].get<double>() * scale);
  return text;
}

void print_table(const TiersArgs& args, const Json& rows, const std::string& cgroup_version,
                 int machine_cpus) {
  std::printf(
      "pipepool tiers: workload %s, cgroup %s, %d CPUs on this machine, quota = 20 ms x "
      "MB / 1769 per 20 ms period\n\n",
      args.workload.c_str(), cgroup_version.c_str(), machine_cpus);
  const bool pool = args.workload == "echo" || args.workload == "rate";
  std::printf("%7s %5s %12s %7s %-10s", "tier MB", "cpus", "quota us", "workers", "strategy");
  if (args.workload == "echo") std::printf(" %9s %9s", "payload", "MB/s");
  if (pool) std::printf(" %9s %9s %9s", "tasks/s", "p50 ms", "p99 ms");
  if (args.workload == "spin") std::printf(" %8s", "paused");
  if (args.workload == "command") std::printf(" %8s %-20s", "wall s", "exit");
  std::printf(" %9s", "throttled");
  if (args.workload == "spin") std::printf(" %9s", "published");
  std::printf("\n");
  bool unfaithful = false;
  for (const Json& row : rows) {
    const bool faithful = row["emulated_faithfully"].get<bool>();
    unfaithful |= !faithful;
    std::string cpus = std::to_string(row["cpus"].get<int>()) + (faithful ? " " : "*");
    std::string workers = row.contains("workers")
                              ? std::to_string(row["workers"].get<int>())
                              : std::to_string(row["expected_workers"].get<int>());
    std::printf("%7llu %5s %12s %7s %-10s",
                static_cast<unsigned long long>(row["tier_mb"].get<uint64_t>()), cpus.c_str(),
                (std::to_string(row["quota_us"].get<uint64_t>()) + "/20000").c_str(),
                workers.c_str(), row["strategy"].get<std::string>().c_str());
    if (args.workload == "echo") {
      std::printf(" %9s %9s", std::to_string(row.value("payload_bytes", uint64_t{0})).c_str(),
                  cell(row, "bytes_per_s", 1e-6, "%.1f").c_str());
    }
    if (pool) {
      std::printf(" %9s %9s %9s", cell(row, "tasks_per_s", 1, "%.0f").c_str(),
                  cell(row, "p50_us", 1e-3, "%.3f").c_str(),
                  cell(row, "p99_us", 1e-3, "%.3f").c_str());
    }
    if (args.workload == "spin")
      std::printf(" %7s%%", cell(row, "paused_fraction", 100, "%.1f").c_str());
    if (args.workload == "command") {
      std::printf(" %8s %-20s", cell(row, "wall_s", 1, "%.2f").c_str(),
                  row.value("exit", std::string("-")).c_str());
    }
    std::printf(" %8s%%", cell(row, "throttled_fraction", 100, "%.1f").c_str());
    if (args.workload == "spin") {
      std::printf(" %8s%s", cell(row, "published_throttled_fraction", 100, "%.1f").c_str(),
                  row["published_throttled_fraction"].is_null() ? " " : "%");
    }
    if (row.contains("error")) std::printf("  %s", row["error"].get<std::string>().c_str());
    std::printf("\n");
  }
  std::printf("\nthrottled: the cgroup's throttled_time over wall time (cpu.stat)");
  if (args.workload == "spin") {
    std::printf(
        "; paused: gaps of over 2 ms seen by the spinning loop;\npublished: a spin loop on "
        "real Lambda (pwrdrvr/lambda-throttling, 2025)");
  }
  std::printf(".\n");
  if (unfaithful) {
    std::printf(
        "* not emulated faithfully: Lambda shows more CPUs at this size than this machine "
        "has; run with what it has.\n");
  }
}

// Runs every tier; on success returns 0 and fills `whole`, else returns the exit status with
// args.failure set to the one-line reason (or 128+N when interrupted).
int collect_tiers(TiersArgs& args, Json& whole) {
  const bool pool = args.workload == "echo" || args.workload == "rate";
  const double seconds = args.seconds > 0 ? args.seconds : (args.workload == "spin" ? 2.0 : 1.0);
  std::vector<RunSpec> runs;
  for (uint64_t mb : args.tiers_mb) {
    if (!pool) {
      runs.push_back(RunSpec{mb, "none", 0});
      continue;
    }
    for (const std::string& strategy : args.strategies) {
      if (args.workload == "echo") {
        for (uint64_t size : args.sizes_bytes) runs.push_back(RunSpec{mb, strategy, size});
      } else {
        runs.push_back(RunSpec{mb, strategy, 0});
      }
    }
  }
  if (os::Result<void> r = os::catch_termination_signals(&g_interrupted); !r.ok()) {
    args.failure = r.failure().message();
    return kExitEnvironment;
  }
  Progress progress(args.quiet);
  Json rows = Json::array();
  std::string cgroup_version = "?";
  int machine_cpus = os::affinity_cpus();
  const std::string prefix = "pipepool-tiers-" + std::to_string(getpid()) + "-";
  size_t done = 0;
  for (uint64_t mb : args.tiers_mb) {
    if (g_interrupted) break;
    std::string error;
    std::optional<os::Cgroup> group = os::Cgroup::create(prefix + std::to_string(mb) + "MB", error);
    std::vector<int> cpus;
    if (group) {
      cgroup_version = group->version() == os::Cgroup::Version::V1 ? "v1" : "v2";
      std::vector<int> available = group->available_cpus();
      machine_cpus = static_cast<int>(available.size());
      cpus.assign(available.begin(),
                  available.begin() + std::min<size_t>(available.size(), lambda_cpus(mb)));
    }
    // The largest weight: on Lambda the function has its vCPUs to itself, so the rest of this
    // machine's load should not take the time its quota allows (it would read as less throttling).
    if (!group || !group->limit_cpu(kPeriodUs, quota_us(mb), error) ||
        !group->set_cpu_weight(kTierCpuWeight, error) || !group->limit_memory(mb << 20, error) ||
        !group->limit_cpus(cpus, error)) {
      progress.clear();
      args.failure = "cannot set up the cgroup of the " + std::to_string(mb) +
                     " MB tier: " + error +
                     " (needs root and the cpu, cpuset and memory controllers)";
      return kExitEnvironment;  // ~Cgroup removes what was created
    }
    for (const RunSpec& run : runs) {
      if (run.tier_mb != mb || g_interrupted) continue;
      RunOutcome outcome = run_one(args, run, seconds, *group, progress, static_cast<double>(done),
                                   static_cast<double>(runs.size()));
      ++done;
      if (!outcome.environment_error.empty()) {
        progress.clear();
        args.failure = "cannot run in the " + std::to_string(mb) +
                       " MB tier's cgroup: " + outcome.environment_error;
        return kExitEnvironment;
      }
      if (outcome.interrupted) break;
      rows.push_back(make_row(args, run, static_cast<int>(cpus.size()), outcome.row));
    }
    if (!group->remove(error)) {
      progress.clear();
      args.failure = error;
      return kExitEnvironment;
    }
  }
  progress.clear();
  if (g_interrupted) {
    args.failure =
        "interrupted by signal " + std::to_string(g_interrupted) + "; every cgroup removed";
    return 128 + g_interrupted;
  }
  whole = Json{{"workload", args.workload},    {"cgroup_version", cgroup_version},
               {"machine_cpus", machine_cpus}, {"period_us", kPeriodUs},
               {"seconds_per_run", seconds},   {"runs", rows}};
  return 0;
}

int run_tiers(TiersArgs& args) {
  if (!args.command.empty()) {
    if (args.workload_option->count() > 0) {
      return usage_error(*args.app, "give either --workload or -- COMMAND, not both");
    }
    args.workload = "command";
  }
  Json whole;
  if (const int status = collect_tiers(args, whole); status != 0) {
    std::fprintf(stderr, "pipepool tiers: %s\n", args.failure.c_str());
    return status;
  }
  const std::string cgroup_version = whole["cgroup_version"].get<std::string>();
  const int machine_cpus = whole["machine_cpus"].get<int>();
  const Json& rows = whole["runs"];
  if (args.json) {
    std::printf("%s\n", whole.dump(2).c_str());
  } else {
    print_table(args, rows, cgroup_version, machine_cpus);
  }
  std::fflush(stdout);
  if (!args.plot.empty()) {
    if (std::string failure = plot_tiers(whole, args.plot); !failure.empty()) {
      std::fprintf(stderr, "pipepool tiers: %s\n", failure.c_str());
      return kExitEnvironment;
    }
    std::fprintf(stderr, "pipepool tiers: plot in %s, its data in %s.json\n", args.plot.c_str(),
                 args.plot.c_str());
  }
  return 0;
}

Run setup_tiers(CLI::App& command) {
  auto args = std::make_shared<TiersArgs>();
  args->app = &command;
  command.add_option("--tiers", args->tiers_mb, "memory tiers in MB, 128..10240")
      ->delimiter(',')
      ->capture_default_str()
      ->transform(unsigned_in(128, 10240));
  args->workload_option =
      command
          .add_option("--workload", args->workload, "what runs in each tier (or -- COMMAND ARGS)")
          ->capture_default_str()
          ->check(CLI::IsMember({"echo", "rate", "spin"}));
  command.add_option("--strategies", args->strategies, "the pool's strategies (echo, rate)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"epoll", "batched", "unbatched"}));
  command.add_option("--sizes", args->sizes_bytes, "echo payload sizes (4K, 1M)")
      ->delimiter(',')
      ->capture_default_str()
      ->transform(size_in(1, uint64_t{64} << 20));
  command
      .add_option("--seconds", args->seconds,
                  "seconds per run (default: spin 2, echo and rate 1); for a COMMAND, its time "
                  "limit (default none)")
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            char* end = nullptr;
            const double v = std::strtod(input.c_str(), &end);
            if (end == input.c_str() || *end != '\0' || !(v >= 0.2 && v <= 600)) {
              return input + " is not in 0.2..600 seconds";
            }
            return {};
          },
          "SECONDS in 0.2..600"));
  command.add_flag("--json", args->json,
                   "JSON instead of the table: one object per tier x strategy (x size) in runs");
  command.add_option("--plot", args->plot,
                     "also draw a PNG plot to this file (tools/tiers_plot.py, python3-matplotlib)");
  command.add_flag("--quiet,-q", args->quiet, "no progress on stderr");
  command.add_option("command", args->command, "a program to run in each tier, after --");
  command.footer(
      "Needs root and cgroups (v1 cpu, cpuset, memory, or v2). Exit status: 0 done, 2 bad usage, "
      "3 cgroups cannot be written, 128+N interrupted by signal N.\nExample: pipepool tiers "
      "--workload spin --tiers 128,1024,1769");
  return [args] { return run_tiers(*args); };
}

}  // namespace

std::string plot_tiers(const Json& whole, const std::string& png) {
  const std::string data = png + ".json";
  std::ofstream(data) << whole.dump(2) << "\n";
  const std::string script = PIPEPOOL_TIERS_PLOT_SCRIPT;
  const std::string shell =
      std::string(PIPEPOOL_PLOT_PYTHON) + " '" + script + "' '" + data + "' '" + png + "'";
  if (std::system(shell.c_str()) != 0) {
    return "the plot failed (" + shell + "; needs python3-matplotlib)";
  }
  return {};
}

int tier_sweep(const std::vector<uint64_t>& tiers_mb, double seconds, bool quiet, Json& whole,
               std::string& failure) {
  TiersArgs args;
  args.tiers_mb = tiers_mb;
  args.workload = "spin";
  args.seconds = seconds;
  args.quiet = quiet;
  const int status = collect_tiers(args, whole);
  failure = args.failure;
  return status;
}

namespace {

[[maybe_unused]] const bool registered = register_command(
    "tiers", "a workload under emulated AWS Lambda memory tiers (cgroup CPU quota, memory, cpuset)",
    setup_tiers);

}  // namespace
}  // namespace pipepool::tools
