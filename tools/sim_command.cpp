// `pipepool sim run` and `pipepool sim threshold`: the simulator (sim/) from the command line.
//
// Every option of `sim run` is declared, and mapped to its field of sim::Scenario or
// sim::ExploreOptions, in declare_run_options(); what needs all options at once (calls in
// command-line order, defaults that depend on the mode) is in finish_run_options(). New explorer
// switches go there, next to --no-state-cache.
//
// Exit status: 0 nothing found, 1 a deadlock, livelock or failure found, 2 bad usage, 3 the
// simulator itself misbehaved (a replay that differs). Progress goes to stderr (command.hpp),
// off with --quiet. The command measures wall time for its speed line; the simulator never does.
#include <malloc.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.hpp"
#include "explore.hpp"
#include "report.hpp"
#include "scenario.hpp"
#include "threshold.hpp"

namespace pipepool::tools {
namespace {

// The simulator allocates and frees payload strings of up to megabytes at every task; keep them
// in the heap instead of a fresh mmap each (page faults were half of the time at 200 KiB).
void tune_malloc_for_the_simulator() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

// A string option checked by `parse` (a sim:: parser) and stored by it.
template <class T, class Parse>
CLI::Option* add_parsed(CLI::App& app, const std::string& name, T& target, const std::string& help,
                        const std::string& accepted, Parse parse) {
  return app
      .add_option_function<std::string>(
          name,
          [&target, parse, name, accepted](const std::string& text) {
            if (!parse(text, target)) {
              throw CLI::ValidationError(name, "'" + text + "' is not " + accepted);
            }
          },
          help + " (" + accepted + ")")
      ->type_name("TEXT");
}

// "none" or a preemption bound in 0..1000. -1 is an error, not a spelling of "none".
CLI::Option* add_preemptions(CLI::App& app, int32_t& bound, const std::string& help) {
  return app
      .add_option_function<std::string>(
          "--preemptions",
          [&bound](const std::string& text) {
            if (text == "none") {
              bound = -1;
              return;
            }
            std::string canonical = text;
            if (!unsigned_in(0, 1000)(canonical).empty()) {
              throw CLI::ValidationError("--preemptions", "'" + text +
                                                              "' is not in 0..1000 or 'none' "
                                                              "(no bound)");
            }
            bound = static_cast<int32_t>(std::stoi(canonical));
          },
          help + " (0..1000, or 'none': no bound; default " +
              (bound < 0 ? std::string("none") : std::to_string(bound)) + ")")
      ->type_name("N|none");
}

// The channel's options, shared by `sim run` and `sim threshold` (sim::Scenario's and
// sim::ThresholdOptions' fields of the same names).
// Returns the --sndbuf option (given with pipes it is a usage error: sndbuf_with_pipes()).
CLI::Option* add_channel_options(CLI::App& command, Transport& transport, uint32_t& sndbuf,
                                 Framing& framing, uint32_t& task_overhead,
                                 uint32_t& result_overhead, const char* group) {
  add_parsed(command, "--transport", transport,
             "the channel to each worker (default pipes; socketpair: one AF_UNIX socketpair)",
             "pipes or socketpair", sim::parse_transport)
      ->group(group);
  CLI::Option* sndbuf_option =
      add_number<uint32_t>(
          command, "--sndbuf", sndbuf,
          "socketpair: sk_sndbuf of each end in bytes, as getsockopt(SO_SNDBUF) reads "
          "it (default 212992)",
          4608, INT32_MAX)
          ->group(group);
  add_parsed(command, "--framing", framing,
             "how frames go on the channel (default pipepool; python: a 4-byte length, then the "
             "message, as multiprocessing.connection)",
             "pipepool or python", sim::parse_framing)
      ->group(group);
  add_number<uint32_t>(command, "--task-overhead", task_overhead,
                       "python framing: bytes of the library's pickle around a task payload", 0,
                       1 << 30)
      ->group(group);
  add_number<uint32_t>(command, "--result-overhead", result_overhead,
                       "python framing: bytes of the library's pickle around a result payload", 0,
                       1 << 30)
      ->group(group);
  return sndbuf_option;
}

// A usage error's text if --sndbuf was given for pipes (the real pool rejects socket_sndbuf_bytes
// with Transport::Pipes too), else empty.
std::string sndbuf_with_pipes(const CLI::Option* sndbuf, Transport transport) {
  if (sndbuf != nullptr && sndbuf->count() > 0 && transport == Transport::Pipes) {
    return "--sndbuf needs --transport socketpair (pipes: --pipe-pages)";
  }
  return "";
}

// ---- sim run ------------------------------------------------------------------------------------

struct RunArgs {
  sim::Scenario scenario;
  sim::ExploreOptions options;
  std::string mode_text = "exhaustive";
  std::vector<std::string> tasks;  // --task IN:OUT:DURATION_MS
  std::vector<std::string> calls;  // --call 'apply_async IN OUT DUR' ...
  std::string replay;
  uint64_t trace_tail = 40;
  bool json = false;
  bool quiet = false;
  const CLI::App* command = nullptr;
  CLI::Option* schedules = nullptr;
  CLI::Option* sndbuf = nullptr;
  CLI::Option* trace_tail_option = nullptr;
  CLI::Option* task_option = nullptr;
  CLI::Option* call_option = nullptr;
};

void declare_run_options(CLI::App& command, RunArgs& a) {
  sim::Scenario& s = a.scenario;
  sim::ExploreOptions& o = a.options;
  o.mode = sim::ExploreMode::Exhaustive;
  o.schedules = 1'000'000;
  // --scenario first: CLI11 applies options in declaration order, so the options below override
  // the file's settings and the file's calls come before --task and --call.
  command.add_option_function<std::string>(
      "--scenario",
      [&s](const std::string& path) {
        std::ifstream in(path);
        if (!in) throw CLI::ValidationError("--scenario", "cannot read " + path);
        std::stringstream text;
        text << in.rdbuf();
        std::string error;
        if (!sim::parse_scenario(text.str(), s, error)) {
          throw CLI::ValidationError("--scenario", path + ": " + error);
        }
      },
      "a scenario in the text format of sim/README.md (\"Scenarios\")");
  auto* g = "scenario";
  add_parsed(command, "--strategy", s.strategy, "the pool's strategy (default epoll, the pool's)",
             "epoll, batched, unbatched or zerocopy", sim::parse_strategy)
      ->group(g);
  add_parsed(command, "--scheduler", s.scheduler,
             "the parent's scheduler (default demand, the pool's; lambda_multiprocessing's is "
             "shortest-backlog)",
             "demand, shortest-backlog or round-robin", sim::parse_scheduler)
      ->group(g);
  add_number<uint32_t>(command, "--demand-in-flight", s.demand_max_in_flight,
                       "Demand's tasks in flight per worker", 1, 1024)
      ->group(g);
  add_number<uint32_t>(command, "--workers", s.workers, "worker processes", 1, 62)->group(g);
  add_number<uint32_t>(command, "--pipe-pages", s.pipe_pages,
                       "pipe capacity in page slots, a power of two", 1, 1 << 16)
      ->group(g);
  add_number<uint32_t>(command, "--page-size", s.page_size, "bytes per page, a power of two", 16,
                       1 << 20)
      ->group(g);
  a.sndbuf = add_channel_options(command, s.transport, s.sndbuf_bytes, s.framing,
                                 s.python_task_overhead_bytes, s.python_result_overhead_bytes, g);
  a.task_option =
      command
          .add_option("--task", a.tasks, "IN:OUT:DURATION_MS, one apply_async (repeat for more)")
          ->group(g)
          ->take_all();
  a.call_option =
      command
          .add_option("--call", a.calls,
                      "apply_async IN OUT DUR | apply IN OUT DUR | map_async N IN OUT DUR [CHUNK] "
                      "| map N IN OUT DUR [CHUNK] | wait | terminate | join (a final join is "
                      "implied; repeat for more)")
          ->group(g)
          ->take_all();
  add_parsed(command, "--task-timeout-ms", s.task_timeout_us, "task timeout (default 0: none)",
             "milliseconds with up to three decimals", sim::parse_duration_ms)
      ->group(g);
  add_number<uint32_t>(command, "--max-tasks-per-child", s.max_tasks_per_child,
                       "replace a worker after this many tasks (0: never)", 0)
      ->group(g);
  add_number<uint32_t>(command, "--max-retries", s.max_retries,
                       "retries of a task whose worker died", 0, 1000)
      ->group(g);
  add_number<uint64_t>(command, "--engine-seed", s.engine_seed,
                       "the parent engine's seed (scheduler tie-breaks)", 0)
      ->group(g);

  g = "explorer";
  command.add_option("--explore", a.mode_text, "how schedules are chosen")
      ->capture_default_str()
      ->check(CLI::IsMember({"random", "pct", "exhaustive"}))
      ->group(g);
  add_number<uint64_t>(command, "--seed", o.seed, "seed of random and pct", 0)->group(g);
  a.schedules = add_number<uint64_t>(command, "--schedules", o.schedules,
                                     "random/pct: schedules to run (default 1000); exhaustive: "
                                     "the most to run",
                                     1)
                    ->group(g);
  add_number<uint32_t>(command, "--depth", o.depth, "pct bug depth", 1, 64)->group(g);
  add_preemptions(command, o.preemption_bound, "exhaustive: preemption bound")->group(g);
  add_number<uint64_t>(command, "--max-steps", o.max_steps,
                       "step bound per schedule, for livelock detection (0: a bound no correct "
                       "run comes near)",
                       0)
      ->group(g);
  command
      .add_flag_callback(
          "--keep-going", [&o] { o.stop_at_first_failure = false; },
          "do not stop at the first failing schedule")
      ->group(g);
  command
      .add_flag_callback(
          "--no-state-cache", [&o] { o.state_cache_entries = 0; },
          "exhaustive without its state cache (to compare what it saves)")
      ->group(g);
  command
      .add_flag_callback(
          "--no-coalesce", [&o] { o.coalesce = false; },
          "exhaustive without coalescing (a worker's due Run taken with its last step)")
      ->group(g);
  command
      .add_flag_callback(
          "--no-por", [&o] { o.por = false; },
          "exhaustive without the partial-order reduction (invisible reads taken at once)")
      ->group(g);
  add_number<size_t>(command, "--state-cache-entries", o.state_cache_entries,
                     "exhaustive: the most states the cache remembers (48 bytes each); once full "
                     "it stops remembering, which only costs time",
                     1, size_t{1} << 32)
      ->group(g);
  add_number<uint32_t>(command, "--snapshot-every", o.snapshot_every,
                       "exhaustive: save a copy of the world every N steps and branch from it "
                       "(0: replay each schedule's prefix from the start)",
                       0, 1'000'000)
      ->group(g);
  command
      .add_flag_callback(
          "--no-move-snapshots", [&o] { o.move_snapshots = false; },
          "exhaustive: copy a saved world for its last branch too, instead of taking it (the "
          "same search, to compare the time)")
      ->group(g);
  command
      .add_flag_callback(
          "--history-fingerprint", [&o] { o.history_fingerprint = true; },
          "exhaustive: key the state cache by each process's history, not the state (the old, "
          "coarser key, to compare)")
      ->group(g);
  command.add_option("--replay", a.replay, "run one schedule ('U P*2 W0 ...' or numbers), traced")
      ->group(g);
  a.trace_tail_option = add_number<uint64_t>(command, "--trace-tail", a.trace_tail,
                                             "trace lines shown of a counterexample (0: all; a "
                                             "replay shows all by default)",
                                             0)
                            ->group(g);
  command.add_flag("--json", a.json, "JSON instead of text");
  command.add_flag("--quiet,-q", a.quiet, "no progress on stderr");
}

// What needs all options at once. Returns 0, or a usage error's exit status.
int finish_run_options(RunArgs& a) {
  std::string error;
  sim::parse_explore_mode(a.mode_text, a.options.mode);  // IsMember has checked it
  if (a.options.mode == sim::ExploreMode::Exhaustive) {
    if (a.schedules->count() == 0) a.options.schedules = 1'000'000;
  } else if (a.schedules->count() == 0) {
    a.options.schedules = 1000;
  }
  if (!a.replay.empty()) {
    if (!sim::parse_schedule(a.replay, a.options.replay, error)) {
      return usage_error(*a.command, "--replay: " + error);
    }
    a.options.mode = sim::ExploreMode::Replay;
    if (a.trace_tail_option->count() == 0) a.trace_tail = 0;
  }
  // --task and --call in the order they were given.
  size_t next_task = 0, next_call = 0;
  for (const CLI::Option* option : a.command->parse_order()) {
    sim::Call call;
    if (option == a.task_option) {
      const std::string& text = a.tasks.at(next_task++);
      if (!sim::parse_task_option(text, call, error)) {
        return usage_error(*a.command, "--task '" + text + "': " + error);
      }
    } else if (option == a.call_option) {
      const std::string& text = a.calls.at(next_call++);
      if (!sim::parse_call(text, call, error)) {
        return usage_error(*a.command, "--call '" + text + "': " + error);
      }
    } else {
      continue;
    }
    a.scenario.calls.push_back(call);
  }
  if (a.scenario.calls.empty()) {
    return usage_error(*a.command, "no calls: give --task, --call or --scenario");
  }
  if (const std::string why = sndbuf_with_pipes(a.sndbuf, a.scenario.transport); !why.empty()) {
    return usage_error(*a.command, why);
  }
  try {
    (void)sim::make_script(a.scenario);
  } catch (const std::invalid_argument& e) {
    return usage_error(*a.command, e.what());
  }
  return 0;
}

int run_explore(RunArgs& a) {
  if (int status = finish_run_options(a); status != 0) return status;
  tune_malloc_for_the_simulator();
  sim::ExploreOptions& options = a.options;
  Progress progress(a.quiet);
  if (!a.quiet && options.mode != sim::ExploreMode::Replay) {
    options.progress_every = 64;
    options.progress = [&](const sim::ExploreProgress& p) {
      const double s = std::max(progress.seconds(), 1e-9);
      // Random and pct run exactly --schedules; exhaustive at most that many (an upper bound).
      const double fraction =
          static_cast<double>(p.schedules) / static_cast<double>(options.schedules);
      progress.show(fraction,
                    std::string(to_string(options.mode)) + ": " + si(p.schedules) +
                        (options.mode == sim::ExploreMode::Exhaustive ? " of at most " : " of ") +
                        si(options.schedules) + " schedules, " + si(p.pruned) +
                        " cut by the cache, " + si(p.steps) + " steps, " + si(p.pipe_ops / s) +
                        " pipe ops/s, " + std::to_string(p.failures) + " failing");
    };
  }
  const sim::ExploreResult result = sim::explore(a.scenario, options);
  progress.clear();
  const double seconds = progress.seconds();
  if (a.json) {
    std::fputs(sim::format_explore_json(a.scenario, options, result, a.trace_tail, seconds).c_str(),
               stdout);
  } else {
    std::fputs(sim::format_explore_text(a.scenario, options, result, a.trace_tail).c_str(), stdout);
    const double s = std::max(seconds, 1e-9);
    std::printf(
        "  speed              %.3f s, %s schedules/s, %s distinct states/s, %s steps/s, %s pipe "
        "ops/s\n",
        seconds, si(result.schedules / s).c_str(), si(result.cache_entries / s).c_str(),
        si(result.steps / s).c_str(), si(result.pipe_ops / s).c_str());
  }
  const std::string verdict = sim::verdict(result);
  if (verdict == "error") return kExitEnvironment;
  return verdict == "no-failure" ? 0 : kExitFound;
}

Run setup_sim_run(CLI::App& command) {
  auto args = std::make_shared<RunArgs>();
  args->command = &command;
  declare_run_options(command, *args);
  command.footer(
      "Exit status: 0 nothing found, 1 a deadlock, livelock or failure, 2 bad usage, 3 the "
      "simulator misbehaved.\nExample: pipepool sim run --strategy unbatched --task 70000:70000:0 "
      "--task 70000:70000:0");
  return [args] { return run_explore(*args); };
}

// ---- sim threshold ------------------------------------------------------------------------------

struct ThresholdArgs {
  sim::ThresholdOptions options;
  bool json = false;
  bool quiet = false;
  const CLI::App* command = nullptr;
  CLI::Option* sndbuf = nullptr;
};

int run_threshold(ThresholdArgs& a) {
  sim::ThresholdOptions& options = a.options;
  if (const std::string why = sndbuf_with_pipes(a.sndbuf, options.transport); !why.empty()) {
    return usage_error(*a.command, why);
  }
  try {
    (void)sim::make_script(sim::threshold_scenario(options, 0, 0));
  } catch (const std::invalid_argument& e) {
    return usage_error(*a.command, e.what());
  }
  tune_malloc_for_the_simulator();
  // An estimate of the sizes to explore: each dimension's grid, the cell scanned byte by byte.
  const uint64_t capacity = sim::threshold_capacity_bytes(options);
  const uint64_t max_bytes = options.max_bytes ? options.max_bytes : 2 * capacity;
  const uint64_t grid = options.grid_bytes ? options.grid_bytes : options.page_size / 8;
  const double expected =
      2.0 * (static_cast<double>(max_bytes - std::min(max_bytes, options.min_bytes)) /
                 static_cast<double>(std::max<uint64_t>(grid, 1)) +
             static_cast<double>(grid) + 1);
  Progress progress(a.quiet);
  if (!a.quiet) {
    options.progress = [&](const sim::ThresholdProgress& p) {
      progress.show(std::min(0.99, static_cast<double>(p.explorations) / expected),
                    "threshold: " + std::string(p.dimension) + " payload " +
                        std::to_string(p.size) +
                        (p.deadlock ? " deadlocks" : " does not deadlock") + ", " +
                        std::to_string(p.explorations) + " sizes explored");
    };
  }
  const sim::ThresholdResult result = sim::find_threshold(options);
  progress.clear();
  if (a.json) {
    std::fputs(sim::format_threshold_json(options, result).c_str(), stdout);
  } else {
    std::fputs(sim::format_threshold_text(options, result).c_str(), stdout);
    std::printf("\n%.2f s\n", progress.seconds());
  }
  return result.error.empty() ? 0 : kExitEnvironment;
}

Run setup_sim_threshold(CLI::App& command) {
  auto args = std::make_shared<ThresholdArgs>();
  args->command = &command;
  sim::ThresholdOptions& o = args->options;
  add_parsed(command, "--strategy", o.strategy, "the strategy searched",
             "epoll, batched, unbatched or zerocopy", sim::parse_strategy)
      ->required();
  add_parsed(command, "--scheduler", o.scheduler, "the scheduler (default shortest-backlog)",
             "demand, shortest-backlog or round-robin", sim::parse_scheduler);
  add_number<uint32_t>(command, "--pipe-pages", o.pipe_pages,
                       "pipe capacity in page slots, a power of two", 1, 1 << 16);
  add_number<uint32_t>(command, "--page-size", o.page_size, "bytes per page, a power of two", 16,
                       1 << 20);
  args->sndbuf =
      add_channel_options(command, o.transport, o.sndbuf_bytes, o.framing,
                          o.python_task_overhead_bytes, o.python_result_overhead_bytes, "channel");
  add_preemptions(command, o.preemption_bound, "bound of each exploration");
  command.add_option("--grid", o.grid_bytes, "grid step (default page-size / 8)")
      ->transform(size_in(1, uint64_t{1} << 32));
  command.add_option("--min-bytes", o.min_bytes, "smallest size searched (default 0)")
      ->transform(size_in(0, uint64_t{1} << 32));
  command
      .add_option("--max-bytes", o.max_bytes,
                  "largest size searched (default twice the "
                  "capacity)")
      ->transform(size_in(1, uint64_t{1} << 32));
  command
      .add_option("--large", o.large_bytes,
                  "the other payload's fixed size (default capacity + a page)")
      ->transform(size_in(1, uint64_t{1} << 32));
  command.add_flag("--join-at-once", o.join_at_once,
                   "join right after the two calls (the Shutdown frame counts)");
  command.add_flag("--json", args->json, "JSON instead of text");
  command.add_flag("--quiet,-q", args->quiet, "no progress on stderr");
  command.description(
      "Finds the smallest task payload and the smallest result payload with which two tasks on "
      "one worker deadlock a strategy, by exhaustive exploration at every size of a grid and size "
      "by size near the boundary (sim/README.md, \"Threshold search\").");
  return [args] { return run_threshold(*args); };
}

[[maybe_unused]] const bool registered_run = register_command(
    "sim run", "explore a scenario's schedules on the pool's own protocol", setup_sim_run);
[[maybe_unused]] const bool registered_threshold = register_command(
    "sim threshold", "the smallest payloads that deadlock a strategy", setup_sim_threshold);

}  // namespace
}  // namespace pipepool::tools
