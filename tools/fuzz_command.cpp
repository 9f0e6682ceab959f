// `pipepool fuzz`: the deadlock property of fuzz/check.hpp for a built-in design.
//
//   pipepool fuzz --strategy epoll|batched|unbatched [--scheduler K] [--workers N]
//                 [--pipe-pages P] [--seed X] [--runs N] [--json]
//
// Generates --runs workloads, explores each on the simulator, and prints "holds over N scenarios"
// or the shrunk counterexample, its deadlocking schedule and the `pipepool sim run` command line
// that replays it. Exit status: 0 holds, 1 fails, 2 usage.
//
// The logic is run_fuzz(FuzzCommandOptions) -> CheckResult; parsing and rendering are separate,
// so that another front end (CLI11) can call the same function.
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "check.hpp"
#include "command.hpp"
#include "report_parts.hpp"

namespace pipepool::tools {

struct FuzzCommandOptions {
  Strategy strategy = Strategy::Epoll;
  SchedulerKind scheduler = SchedulerKind::ShortestBacklog;
  uint32_t workers = 0;  // 0: each workload draws 1..3
  uint32_t pipe_pages = 16;
  uint64_t seed = 1;
  uint32_t runs = 100;
  bool json = false;
};

fuzz::CheckResult run_fuzz(const FuzzCommandOptions& o) {
  Options options;
  options.processes = o.workers == 0 ? -1 : static_cast<int>(o.workers);
  options.strategy = o.strategy;
  options.scheduler = o.scheduler;
  options.enlarge_pipes = false;
  options.pipe_capacity_bytes = uint64_t{o.pipe_pages} * 4096;
  fuzz::Settings settings;
  settings.seed = o.seed;
  settings.runs = o.runs;
  settings.pipe_pages = o.pipe_pages;
  return fuzz::check(options, settings);
}

namespace {

// The command line that repeats this search.
std::string fuzz_command_line(const FuzzCommandOptions& o) {
  std::string out = "pipepool fuzz --strategy " + std::string(to_string(o.strategy)) +
                    " --scheduler " + std::string(to_string(o.scheduler));
  if (o.workers != 0) out += " --workers " + std::to_string(o.workers);
  out += " --pipe-pages " + std::to_string(o.pipe_pages) + " --seed " + std::to_string(o.seed) +
         " --runs " + std::to_string(o.runs);
  return out;
}

std::string render_json(const FuzzCommandOptions& o, const fuzz::CheckResult& r) {
  nlohmann::ordered_json j;
  j["verdict"] = r.holds ? "holds" : "fails";
  j["design"] = r.design;
  j["seed"] = r.seed;
  j["runs"] = o.runs;
  j["scenarios_tried"] = r.scenarios_tried;
  j["schedules"] = r.schedules;
  if (!r.holds) {
    j["status"] = sim::to_string(r.status);
    if (!r.error.empty()) j["error"] = r.error;
    nlohmann::ordered_json c;
    c["workers"] = r.counterexample.workers;
    c["pipe_pages"] = r.counterexample.pipe_pages;
    c["calls"] = nlohmann::json::array();
    for (const auto& call : r.counterexample.calls) c["calls"].push_back(sim::describe_call(call));
    c["tasks"] = nlohmann::json::array();
    for (const auto& t : r.tasks) {
      c["tasks"].push_back(
          nlohmann::ordered_json{{"task", t.id},
                                 {"input_bytes", t.input_bytes},
                                 {"output_bytes", t.output_bytes},
                                 {"duration_ms", static_cast<double>(t.duration_us) / 1000.0},
                                 {"call", t.call + 1},
                                 {"call_text", t.call_text}});
    }
    c["replay"] = r.replay;
    c["scenario"] = r.scenario_text;
    if (r.run && r.run->deadlock) c["deadlock"] = r.run->deadlock->summary;
    j["counterexample"] = c;
    j["original_scenario"] = r.original_text;
    j["shrink_explorations"] = r.shrink_tries;
    j["reproduce"] = fuzz::sim_run_command(r.counterexample, r.replay);
  }
  j["reproduce_search"] = fuzz_command_line(o);
  return j.dump(2) + "\n";
}

std::string render_text(const FuzzCommandOptions& o, const fuzz::CheckResult& r) {
  return fuzz::format_text(r) + "search: " + fuzz_command_line(o) + "\n";
}

}  // namespace

// For `pipepool demo` and `pipepool report`: the property on each built-in strategy (Epoll,
// Batched, Unbatched), one worker, 64 KiB pipes, `runs` workloads each, and the minimal
// counterexamples it shrinks to.
std::vector<FuzzDemoRow> fuzz_demo_rows(uint32_t runs) {
  std::vector<FuzzDemoRow> rows;
  for (Strategy strategy : {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched}) {
    FuzzCommandOptions o;
    o.strategy = strategy;
    o.workers = 1;
    o.runs = runs;
    rows.push_back(FuzzDemoRow{strategy, run_fuzz(o)});
  }
  return rows;
}

std::string format_fuzz_demo_rows(const std::vector<FuzzDemoRow>& rows) {
  std::string out;
  for (const FuzzDemoRow& row : rows) {
    const fuzz::CheckResult& r = row.result;
    char line[160];
    std::snprintf(line, sizeof line, "  %-10s ", std::string(to_string(row.strategy)).c_str());
    out += line;
    if (r.holds) {
      out += "holds over " + std::to_string(r.scenarios_tried) + " scenarios\n";
      continue;
    }
    out += "DEADLOCK on scenario " + std::to_string(r.scenarios_tried) + ", shrunk to:";
    for (const auto& call : r.counterexample.calls) out += " " + sim::describe_call(call) + ";";
    out +=
        " (then join)\n             replay: " + fuzz::sim_run_command(r.counterexample, r.replay) +
        "\n";
  }
  return out;
}

std::string fuzz_demo_section() {
  return "\n`pipepool fuzz`: 100 random workloads per strategy on the simulator (1 worker, 64 KiB "
         "pipes,\nShortestBacklog), the first deadlock shrunk to its minimal form:\n" +
         format_fuzz_demo_rows(fuzz_demo_rows(100));
}

namespace {

Run setup_fuzz(CLI::App& command) {
  auto o = std::make_shared<FuzzCommandOptions>();
  auto strategy = std::make_shared<std::string>("epoll");
  auto scheduler = std::make_shared<std::string>("shortest-backlog");
  command.add_option("--strategy", *strategy, "the design: epoll, batched or unbatched")
      ->capture_default_str()
      ->check(CLI::IsMember({"epoll", "batched", "unbatched"}));
  command
      .add_option("--scheduler", *scheduler,
                  "demand, shortest-backlog (lambda_multiprocessing's) or round-robin")
      ->capture_default_str()
      ->check(CLI::IsMember({"demand", "shortest-backlog", "round-robin"}));
  add_number<uint32_t>(command, "--workers", o->workers,
                       "worker processes (default: each workload draws 1..3)", 1, 62);
  add_number<uint32_t>(command, "--pipe-pages", o->pipe_pages,
                       "pipe capacity in page slots, a power of two", 1, 4096)
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            const uint64_t n = std::stoull(input);  // unsigned_in has made it decimal
            return (n & (n - 1)) == 0 ? std::string() : "takes a power of two in 1..4096";
          },
          "POWER OF TWO"));
  add_number<uint64_t>(command, "--seed", o->seed, "seed of the workload generator", 0);
  add_number<uint32_t>(command, "--runs", o->runs, "workloads to try", 1, 1'000'000);
  command.add_flag("--json", o->json, "JSON instead of text");
  command.footer(
      "exit status: 0 the property holds, 1 it fails (the shrunk counterexample and how to "
      "replay it are printed), 2 usage");
  return [o, strategy, scheduler] {
    FuzzCommandOptions options = *o;
    (void)sim::parse_strategy(*strategy, options.strategy);
    (void)sim::parse_scheduler(*scheduler, options.scheduler);
    const fuzz::CheckResult result = run_fuzz(options);
    const std::string out =
        options.json ? render_json(options, result) : render_text(options, result);
    std::fputs(out.c_str(), stdout);
    return result.holds ? 0 : 1;
  };
}

[[maybe_unused]] const bool registered = register_command(
    "fuzz", "property-based search for the smallest workload that deadlocks a design", setup_fuzz);

}  // namespace

}  // namespace pipepool::tools
