// `pipepool sim run` and `pipepool sim threshold`: the simulator (sim/) from the command line.
//
//   pipepool sim run [scenario options] [explorer options] [--json]
//     scenario: --scenario FILE (sim/README.md, "Scenarios"), or
//               --strategy epoll|batched|unbatched --scheduler demand|shortest-backlog|round-robin
//               --workers N --pipe-pages P [--page-size B] [--demand-in-flight N]
//               [--task-timeout-ms X] [--max-tasks-per-child N] [--max-retries N]
//               --task IN:OUT:DURATION_MS ... (one apply_async each) and/or
//               --call 'apply_async IN OUT DUR' | 'map N IN OUT DUR [CHUNK]' | 'wait' | ... ...
//     explorer: --explore random|pct|exhaustive (default exhaustive) --seed X --schedules N
//               --depth D (pct) --preemptions B|none (exhaustive) --max-steps N --keep-going
//               --no-state-cache --no-coalesce --no-por (exhaustive without a reduction)
//               --replay 'U P*2 W0 ...' (one schedule, traced) --trace-tail N (0: whole trace)
//   pipepool sim threshold --strategy S --pipe-pages P [--page-size B] [--scheduler K]
//               [--preemptions B] [--grid BYTES] [--min-bytes B] [--max-bytes B] [--large BYTES]
//               [--join-at-once] [--json]
//
// Exit status: 0 nothing found, 1 a deadlock, livelock or failure found, 2 bad usage, 3 the
// simulator itself misbehaved (a replay that differs). A progress line goes to stderr when stderr
// is a terminal. The command measures wall time for its speed line; the simulator never does.
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "explore.hpp"
#include "report.hpp"
#include "scenario.hpp"
#include "threshold.hpp"

namespace pipepool::tools {
namespace {

using Clock = std::chrono::steady_clock;

const char kRunUsage[] =
    "usage: pipepool sim run [SCENARIO] [EXPLORER] [--json]\n"
    "scenario:\n"
    "  --scenario FILE             the text format of sim/README.md\n"
    "  --strategy S                epoll | batched | unbatched (default epoll)\n"
    "  --scheduler K               demand | shortest-backlog | round-robin (default "
    "shortest-backlog)\n"
    "  --demand-in-flight N        Demand's tasks in flight per worker (default 1)\n"
    "  --workers N                 1..62 (default 1)\n"
    "  --pipe-pages P              pipe capacity in page slots, a power of two (default 16)\n"
    "  --page-size B               bytes per page (default 4096)\n"
    "  --task IN:OUT:DURATION_MS   one apply_async (repeat for more)\n"
    "  --call 'CALL'               apply_async IN OUT DUR | apply IN OUT DUR |\n"
    "                              map_async N IN OUT DUR [CHUNK] | map N IN OUT DUR [CHUNK] |\n"
    "                              wait | terminate | join   (a final join is implied)\n"
    "  --task-timeout-ms X, --max-tasks-per-child N, --max-retries N, --engine-seed N\n"
    "explorer:\n"
    "  --explore random|pct|exhaustive   (default exhaustive)\n"
    "  --seed X                    seed of random and pct (default 1)\n"
    "  --schedules N               random/pct: schedules to run; exhaustive: the most (default\n"
    "                              1000 / 1000000)\n"
    "  --depth D                   pct bug depth (default 3)\n"
    "  --preemptions B|none        exhaustive preemption bound (default 2)\n"
    "  --max-steps N               step bound per schedule (livelock detection)\n"
    "  --keep-going                do not stop at the first failing schedule\n"
    "  --no-state-cache, --no-coalesce, --no-por\n"
    "                              exhaustive without one of its reductions (to compare)\n"
    "  --replay SCHEDULE           run one schedule ('U P*2 W0 ...' or numbers), traced\n"
    "  --trace-tail N              trace lines shown of a counterexample (default 40, 0: all)\n"
    "  --json                      JSON instead of text\n";

const char kThresholdUsage[] =
    "usage: pipepool sim threshold --strategy S --pipe-pages P [OPTIONS]\n"
    "  finds the smallest task payload and the smallest result payload with which two tasks\n"
    "  on one worker deadlock S, by exhaustive exploration at every size of a grid and size by\n"
    "  size near the boundary (sim/README.md, \"Threshold search\")\n"
    "  --scheduler K, --page-size B\n"
    "  --preemptions B             bound of each exploration (default 1)\n"
    "  --grid BYTES                grid step (default page-size / 8)\n"
    "  --min-bytes BYTES           smallest size searched (default 0)\n"
    "  --max-bytes BYTES           largest size searched (default twice the capacity)\n"
    "  --large BYTES               the other payload's fixed size (default capacity + a page)\n"
    "  --join-at-once              join right after the two calls (the Shutdown frame counts)\n"
    "  --json                      JSON instead of text\n";

bool parse_u64(const char* text, uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') return false;
  out = v;
  return true;
}

bool parse_u32(const char* text, uint32_t& out) {
  uint64_t v;
  if (!parse_u64(text, v) || v > UINT32_MAX) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

bool parse_bound(const char* text, int32_t& out) {
  if (std::strcmp(text, "none") == 0 || std::strcmp(text, "-1") == 0) {
    out = -1;
    return true;
  }
  uint64_t v;
  if (!parse_u64(text, v) || v > 1000) return false;
  out = static_cast<int32_t>(v);
  return true;
}

int bad(const char* usage, const std::string& why) {
  std::fprintf(stderr, "pipepool sim: %s\n%s", why.c_str(), usage);
  return 2;
}

std::string si(double v) {
  char text[32];
  if (v >= 1e9) {
    std::snprintf(text, sizeof text, "%.2fG", v / 1e9);
  } else if (v >= 1e6) {
    std::snprintf(text, sizeof text, "%.2fM", v / 1e6);
  } else if (v >= 1e3) {
    std::snprintf(text, sizeof text, "%.1fk", v / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.0f", v);
  }
  return text;
}

// A progress line on stderr, at most ten times a second, only on a terminal.
class Progress {
 public:
  Progress() : enabled_(isatty(STDERR_FILENO) == 1), start_(Clock::now()), last_(start_) {}
  bool enabled() const { return enabled_; }
  void show(const std::string& line) {
    const Clock::time_point now = Clock::now();
    if (!enabled_ || now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    shown_ = true;
  }
  void clear() {
    if (shown_) std::fprintf(stderr, "\r\033[K");
    shown_ = false;
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  bool enabled_;
  bool shown_ = false;
  Clock::time_point start_;
  Clock::time_point last_;
};

int run_command(int argc, char** argv) {
  sim::Scenario scenario;
  sim::ExploreOptions options;
  options.mode = sim::ExploreMode::Exhaustive;
  bool schedules_given = false;
  bool json = false;
  size_t trace_tail = 40;
  bool trace_tail_given = false;
  std::vector<sim::Call> calls;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto need = [&](const char* v) { return v != nullptr; };
    std::string error;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kRunUsage, stdout);
      return 0;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--keep-going") {
      options.stop_at_first_failure = false;
    } else if (arg == "--no-state-cache") {  // the reductions: one flag each, off
      options.state_cache_entries = 0;
    } else if (arg == "--no-coalesce") {
      options.coalesce = false;
    } else if (arg == "--no-por") {
      options.por = false;
    } else if (arg == "--scenario") {
      const char* v = value();
      if (!need(v)) return bad(kRunUsage, "--scenario needs a file");
      std::ifstream in(v);
      if (!in) return bad(kRunUsage, std::string("cannot read ") + v);
      std::stringstream text;
      text << in.rdbuf();
      if (!sim::parse_scenario(text.str(), scenario, error)) {
        return bad(kRunUsage, std::string(v) + ": " + error);
      }
    } else if (arg == "--strategy") {
      const char* v = value();
      if (!need(v) || !sim::parse_strategy(v, scenario.strategy)) {
        return bad(kRunUsage, "--strategy takes epoll, batched or unbatched");
      }
    } else if (arg == "--scheduler") {
      const char* v = value();
      if (!need(v) || !sim::parse_scheduler(v, scenario.scheduler)) {
        return bad(kRunUsage, "--scheduler takes demand, shortest-backlog or round-robin");
      }
    } else if (arg == "--demand-in-flight") {
      const char* v = value();
      if (!need(v) || !parse_u32(v, scenario.demand_max_in_flight)) {
        return bad(kRunUsage, "--demand-in-flight takes a number");
      }
    } else if (arg == "--workers") {
      const char* v = value();
      if (!need(v) || !parse_u32(v, scenario.workers)) {
        return bad(kRunUsage, "--workers takes a number");
      }
    } else if (arg == "--pipe-pages") {
      const char* v = value();
      if (!need(v) || !parse_u32(v, scenario.pipe_pages)) {
        return bad(kRunUsage, "--pipe-pages takes a number");
      }
    } else if (arg == "--page-size") {
      const char* v = value();
      if (!need(v) || !parse_u32(v, scenario.page_size)) {
        return bad(kRunUsage, "--page-size takes a number");
      }
    } else if (arg == "--task") {
      const char* v = value();
      sim::Call call;
      if (!need(v) || !sim::parse_task_option(v, call, error)) return bad(kRunUsage, error);
      calls.push_back(call);
    } else if (arg == "--call") {
      const char* v = value();
      sim::Call call;
      if (!need(v)) return bad(kRunUsage, "--call needs a call");
      if (!sim::parse_call(v, call, error)) return bad(kRunUsage, "--call: " + error);
      calls.push_back(call);
    } else if (arg == "--task-timeout-ms") {
      const char* v = value();
      if (!need(v) || !sim::parse_duration_ms(v, scenario.task_timeout_us)) {
        return bad(kRunUsage, "--task-timeout-ms takes milliseconds");
      }
    } else if (arg == "--max-tasks-per-child") {
      const char* v = value();
      if (!need(v) || !parse_u32(v, scenario.max_tasks_per_child)) {
        return bad(kRunUsage, "--max-tasks-per-child takes a number");
      }
    } else if (arg == "--max-retries") {
      const char* v = value();
      if (!need(v) || !parse_u32(v, scenario.max_retries)) {
        return bad(kRunUsage, "--max-retries takes a number");
      }
    } else if (arg == "--engine-seed") {
      const char* v = value();
      if (!need(v) || !parse_u64(v, scenario.engine_seed)) {
        return bad(kRunUsage, "--engine-seed takes a number");
      }
    } else if (arg == "--explore") {
      const char* v = value();
      if (!need(v) || !sim::parse_explore_mode(v, options.mode) ||
          options.mode == sim::ExploreMode::Replay) {
        return bad(kRunUsage, "--explore takes random, pct or exhaustive");
      }
    } else if (arg == "--seed") {
      const char* v = value();
      if (!need(v) || !parse_u64(v, options.seed)) return bad(kRunUsage, "--seed takes a number");
    } else if (arg == "--schedules") {
      const char* v = value();
      if (!need(v) || !parse_u64(v, options.schedules) || options.schedules == 0) {
        return bad(kRunUsage, "--schedules takes a positive number");
      }
      schedules_given = true;
    } else if (arg == "--depth") {
      const char* v = value();
      if (!need(v) || !parse_u32(v, options.depth) || options.depth == 0 || options.depth > 64) {
        return bad(kRunUsage, "--depth takes 1..64");
      }
    } else if (arg == "--preemptions") {
      const char* v = value();
      if (!need(v) || !parse_bound(v, options.preemption_bound)) {
        return bad(kRunUsage, "--preemptions takes a number or 'none'");
      }
    } else if (arg == "--max-steps") {
      const char* v = value();
      if (!need(v) || !parse_u64(v, options.max_steps)) {
        return bad(kRunUsage, "--max-steps takes a number");
      }
    } else if (arg == "--replay") {
      const char* v = value();
      if (!need(v) || !sim::parse_schedule(v, options.replay, error)) {
        return bad(kRunUsage, "--replay: " + (v ? error : std::string("needs a schedule")));
      }
      options.mode = sim::ExploreMode::Replay;
    } else if (arg == "--trace-tail") {
      const char* v = value();
      uint64_t n;
      if (!need(v) || !parse_u64(v, n)) return bad(kRunUsage, "--trace-tail takes a number");
      trace_tail = n;
      trace_tail_given = true;
    } else {
      return bad(kRunUsage, "unknown option '" + arg + "'");
    }
  }
  scenario.calls.insert(scenario.calls.end(), calls.begin(), calls.end());
  if (scenario.calls.empty()) {
    return bad(kRunUsage, "no calls: give --task, --call or --scenario");
  }
  try {
    (void)sim::make_script(scenario);
  } catch (const std::invalid_argument& e) {
    return bad(kRunUsage, e.what());
  }
  if (!schedules_given && options.mode == sim::ExploreMode::Exhaustive) {
    options.schedules = 1'000'000;
  }
  if (options.mode == sim::ExploreMode::Replay && !trace_tail_given) trace_tail = 0;

  Progress progress;
  if (progress.enabled()) {
    options.progress_every = 64;
    options.progress = [&](const sim::ExploreProgress& p) {
      const double s = std::max(progress.seconds(), 1e-9);
      progress.show(std::string(to_string(options.mode)) + ": " + si(p.schedules) + " schedules, " +
                    si(p.pruned) + " cut by the cache, " + si(p.steps) + " steps, " +
                    si(p.pipe_ops / s) + " pipe ops/s, " + std::to_string(p.failures) + " failing");
    };
  }
  const sim::ExploreResult result = sim::explore(scenario, options);
  progress.clear();
  const double seconds = progress.seconds();
  if (json) {
    std::fputs(sim::format_explore_json(scenario, options, result, trace_tail, seconds).c_str(),
               stdout);
  } else {
    std::fputs(sim::format_explore_text(scenario, options, result, trace_tail).c_str(), stdout);
    const double s = std::max(seconds, 1e-9);
    std::printf(
        "  speed              %.3f s, %s schedules/s, %s distinct states/s, %s steps/s, %s pipe "
        "ops/s\n",
        seconds, si(result.schedules / s).c_str(), si(result.cache_entries / s).c_str(),
        si(result.steps / s).c_str(), si(result.pipe_ops / s).c_str());
  }
  const std::string verdict = sim::verdict(result);
  if (verdict == "error") return 3;
  return verdict == "no-failure" ? 0 : 1;
}

int threshold_command(int argc, char** argv) {
  sim::ThresholdOptions options;
  bool json = false;
  bool strategy_given = false;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kThresholdUsage, stdout);
      return 0;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--join-at-once") {
      options.join_at_once = true;
    } else if (arg == "--strategy") {
      const char* v = value();
      if (!v || !sim::parse_strategy(v, options.strategy)) {
        return bad(kThresholdUsage, "--strategy takes epoll, batched or unbatched");
      }
      strategy_given = true;
    } else if (arg == "--scheduler") {
      const char* v = value();
      if (!v || !sim::parse_scheduler(v, options.scheduler)) {
        return bad(kThresholdUsage, "--scheduler takes demand, shortest-backlog or round-robin");
      }
    } else if (arg == "--pipe-pages" || arg == "--page-size") {
      const char* v = value();
      uint32_t n;
      if (!v || !parse_u32(v, n)) return bad(kThresholdUsage, arg + " takes a number");
      (arg == "--pipe-pages" ? options.pipe_pages : options.page_size) = n;
    } else if (arg == "--preemptions") {
      const char* v = value();
      if (!v || !parse_bound(v, options.preemption_bound)) {
        return bad(kThresholdUsage, "--preemptions takes a number or 'none'");
      }
    } else if (arg == "--min-bytes") {
      const char* v = value();
      if (!v || !sim::parse_size(v, options.min_bytes)) {
        return bad(kThresholdUsage, "--min-bytes takes a size");
      }
    } else if (arg == "--grid" || arg == "--max-bytes" || arg == "--large") {
      const char* v = value();
      uint64_t n;
      if (!v || !sim::parse_size(v, n) || n == 0) {
        return bad(kThresholdUsage, arg + " takes a positive size");
      }
      (arg == "--grid"        ? options.grid_bytes
       : arg == "--max-bytes" ? options.max_bytes
                              : options.large_bytes) = n;
    } else {
      return bad(kThresholdUsage, "unknown option '" + arg + "'");
    }
  }
  if (!strategy_given) return bad(kThresholdUsage, "--strategy is required");
  try {
    (void)sim::make_script(sim::threshold_scenario(options, 0, 0));
  } catch (const std::invalid_argument& e) {
    return bad(kThresholdUsage, e.what());
  }
  Progress progress;
  if (progress.enabled()) {
    options.progress = [&](const sim::ThresholdProgress& p) {
      progress.show("threshold: " + std::string(p.dimension) + " payload " +
                    std::to_string(p.size) + (p.deadlock ? " deadlocks" : " does not deadlock") +
                    ", " + std::to_string(p.explorations) + " sizes explored");
    };
  }
  const sim::ThresholdResult result = sim::find_threshold(options);
  progress.clear();
  if (json) {
    std::fputs(sim::format_threshold_json(options, result).c_str(), stdout);
  } else {
    std::fputs(sim::format_threshold_text(options, result).c_str(), stdout);
    std::printf("\n%.2f s\n", progress.seconds());
  }
  return result.error.empty() ? 0 : 3;
}

}  // namespace

int run_sim_command(int argc, char** argv) {
  // The simulator allocates and frees payload strings of up to megabytes at every task; keep them
  // in the heap instead of a fresh mmap each (page faults were half of the time at 200 KiB).
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  if (argc < 1 || std::strcmp(argv[0], "--help") == 0 || std::strcmp(argv[0], "-h") == 0) {
    std::fprintf(argc < 1 ? stderr : stdout,
                 "usage: pipepool sim run|threshold|pipe ...\n"
                 "  run        explore a scenario's schedules (pipepool sim run --help)\n"
                 "  threshold  smallest payloads that deadlock a strategy (--help)\n"
                 "  pipe       play calls against the pipe model (pipepool sim pipe)\n");
    return argc < 1 ? 2 : 0;
  }
  const std::string sub = argv[0];
  if (sub == "run") return run_command(argc - 1, argv + 1);
  if (sub == "threshold") return threshold_command(argc - 1, argv + 1);
  std::fprintf(stderr, "pipepool sim: unknown subcommand '%s' (run, threshold, pipe)\n",
               sub.c_str());
  return 2;
}

}  // namespace pipepool::tools
