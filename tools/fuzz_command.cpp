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

constexpr const char* kFuzzUsage =
    "usage: pipepool fuzz --strategy epoll|batched|unbatched [OPTIONS]\n"
    "  --strategy S     the pool's I/O strategy (default epoll)\n"
    "  --scheduler K    demand | shortest-backlog | round-robin (default shortest-backlog)\n"
    "  --workers N      worker processes, 1..62 (default: each workload draws 1..3)\n"
    "  --pipe-pages P   pipe capacity in pages, a power of two 1..4096 (default 16 = 64 KiB)\n"
    "  --seed X         seed of the workload generator (default 1)\n"
    "  --runs N         workloads to generate, 1..1000000 (default 100)\n"
    "  --json           one JSON object instead of text\n"
    "Exit status: 0 the property holds, 1 it fails (counterexample printed), 2 usage.\n";

std::string fuzz_command_line(const FuzzCommandOptions& o) {
  std::string out = "pipepool fuzz --strategy " + std::string(to_string(o.strategy)) +
                    " --scheduler " + std::string(to_string(o.scheduler));
  if (o.workers != 0) out += " --workers " + std::to_string(o.workers);
  out += " --pipe-pages " + std::to_string(o.pipe_pages) + " --seed " + std::to_string(o.seed) +
         " --runs " + std::to_string(o.runs);
  return out;
}

bool parse_number(const char* text, uint64_t low, uint64_t high, uint64_t& out) {
  if (text == nullptr || *text == '\0' || *text == '-') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || v < low || v > high) return false;
  out = v;
  return true;
}

// 0 parsed, 2 usage error (printed), -1 --help (printed).
int parse_fuzz_args(int argc, char** argv, FuzzCommandOptions& o) {
  const auto bad = [](const std::string& why) {
    std::fprintf(stderr, "pipepool fuzz: %s (see pipepool fuzz --help)\n", why.c_str());
    return 2;
  };
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    uint64_t n = 0;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kFuzzUsage, stdout);
      return -1;
    } else if (arg == "--json") {
      o.json = true;
      continue;
    } else if (arg == "--strategy") {
      if (!v || !sim::parse_strategy(v, o.strategy)) {
        return bad("--strategy takes epoll, batched or unbatched");
      }
    } else if (arg == "--scheduler") {
      if (!v || !sim::parse_scheduler(v, o.scheduler)) {
        return bad("--scheduler takes demand, shortest-backlog or round-robin");
      }
    } else if (arg == "--workers") {
      if (!parse_number(v, 1, 62, n)) return bad("--workers takes a number in 1..62");
      o.workers = static_cast<uint32_t>(n);
    } else if (arg == "--pipe-pages") {
      if (!parse_number(v, 1, 4096, n) || (n & (n - 1)) != 0) {
        return bad("--pipe-pages takes a power of two in 1..4096");
      }
      o.pipe_pages = static_cast<uint32_t>(n);
    } else if (arg == "--seed") {
      if (!parse_number(v, 0, UINT64_MAX, n)) return bad("--seed takes a number");
      o.seed = n;
    } else if (arg == "--runs") {
      if (!parse_number(v, 1, 1'000'000, n)) return bad("--runs takes a number in 1..1000000");
      o.runs = static_cast<uint32_t>(n);
    } else {
      return bad("unknown option '" + arg + "'");
    }
    ++i;  // the option's value
  }
  return 0;
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

// For `pipepool demo`: the property on each built-in strategy, one worker, 64 KiB pipes, and the
// minimal counterexamples it shrinks to.
std::string fuzz_demo_section() {
  std::string out =
      "\n`pipepool fuzz`: 100 random workloads per strategy on the simulator (1 worker, 64 KiB "
      "pipes,\nShortestBacklog), the first deadlock shrunk to its minimal form:\n";
  for (Strategy strategy : {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched}) {
    FuzzCommandOptions o;
    o.strategy = strategy;
    o.workers = 1;
    const fuzz::CheckResult r = run_fuzz(o);
    char line[160];
    std::snprintf(line, sizeof line, "  %-10s ", std::string(to_string(strategy)).c_str());
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

int run_fuzz_command(int argc, char** argv) {
  FuzzCommandOptions options;
  const int parsed = parse_fuzz_args(argc, argv, options);
  if (parsed == -1) return 0;
  if (parsed != 0) return parsed;
  const fuzz::CheckResult result = run_fuzz(options);
  const std::string out =
      options.json ? render_json(options, result) : render_text(options, result);
  std::fputs(out.c_str(), stdout);
  return result.holds ? 0 : 1;
}

}  // namespace pipepool::tools
