#include "report.hpp"

#include <cinttypes>
#include <cstdio>

namespace pipepool::sim {
namespace {

std::string hex(uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%016" PRIx64, v);
  return text;
}

std::string plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

Json run_json(const RunSummary& run, size_t trace_tail) {
  Json json{{"status", to_string(run.status)},
            {"schedule", format_schedule(run.schedule)},
            {"schedule_index", run.index},
            {"schedule_seed", run.schedule_seed},
            {"steps", run.steps},
            {"trace_hash", hex(run.trace_hash)},
            {"virtual_time_us", run.virtual_time_us},
            {"tasks_completed", run.tasks_completed}};
  if (!run.failure.empty()) json["failure"] = run.failure;
  if (run.diverged) json["diverged"] = true;
  if (run.deadlock) json["deadlock"] = deadlock_json(*run.deadlock);
  if (!run.trace.empty()) {
    const size_t from =
        trace_tail == 0 || run.trace.size() <= trace_tail ? 0 : run.trace.size() - trace_tail;
    json["trace_first_line"] = uint64_t{from};
    json["trace"] =
        std::vector<std::string>(run.trace.begin() + static_cast<ptrdiff_t>(from), run.trace.end());
  }
  return json;
}

std::string explorer_line(const ExploreOptions& options, const ExploreResult& result) {
  std::string out = to_string(options.mode);
  switch (options.mode) {
    case ExploreMode::Random:
      out += ", seed " + std::to_string(options.seed) + ", " +
             plural(options.schedules, "schedule", "schedules");
      break;
    case ExploreMode::Pct:
      out += ", depth " + std::to_string(options.depth) + ", seed " + std::to_string(options.seed) +
             ", " + plural(options.schedules, "schedule", "schedules");
      break;
    case ExploreMode::Exhaustive:
      out += options.preemption_bound < 0
                 ? std::string(", no preemption bound")
                 : ", preemption bound " + std::to_string(options.preemption_bound);
      out += ", at most " + plural(options.schedules, "schedule", "schedules");
      break;
    case ExploreMode::Replay:
      out += " of a schedule of " + plural(options.replay.size(), "step", "steps");
      break;
  }
  out += "; step bound " + std::to_string(result.max_steps) + " per schedule";
  return out;
}

}  // namespace

// ---- pieces ------------------------------------------------------------------------------------

std::string describe_setup(const Scenario& s) {
  std::string out = std::string(to_string(s.strategy)) + ", " + std::string(to_string(s.scheduler));
  if (s.scheduler == SchedulerKind::Demand) {
    out += " (" + std::to_string(s.demand_max_in_flight) + " in flight)";
  }
  out += ", " + plural(s.workers, "worker", "workers");
  if (s.transport == Transport::SocketPair) {
    out += ", socketpairs of sndbuf " + std::to_string(s.sndbuf_bytes) + " bytes";
  } else {
    out += ", pipes of " + std::to_string(s.pipe_pages) + " x " + std::to_string(s.page_size) +
           "-byte pages (" + std::to_string(uint64_t{s.pipe_pages} * s.page_size) + " bytes)";
  }
  if (s.framing == Framing::Python) {
    out += ", Python's framing (task overhead " + std::to_string(s.python_task_overhead_bytes) +
           ", result overhead " + std::to_string(s.python_result_overhead_bytes) + " bytes)";
  }
  if (s.task_timeout_us != 0) out += ", task timeout " + format_ms(s.task_timeout_us) + " ms";
  if (s.max_tasks_per_child != 0) {
    out += ", " + std::to_string(s.max_tasks_per_child) + " tasks per child";
  }
  return out;
}

std::string format_deadlock(const DeadlockReport& report, std::string_view indent) {
  const std::string in(indent);
  std::string out;
  out += in + "deadlock after step " + std::to_string(report.step) + ", virtual time " +
         format_ms(report.virtual_time_us) + " ms: no process can run and no timer is pending\n";
  if (report.cycle.empty()) {
    out += in + "no wait-for cycle found\n";
  } else {
    out += in + "wait-for cycle: " + arrow_names(report.cycle) + "\n";
  }
  std::vector<bool> on_cycle(report.processes.size(), false);
  for (uint32_t p : report.cycle) {
    if (p < on_cycle.size()) on_cycle[p] = true;
  }
  auto show = [&](const ProcessWait& pw) {
    out += in + "  " + pad(process_name(pw.process), 4) + pw.text + "\n";
    if (pw.pipe) {
      out += in + "      " + pw.pipe->name + ": " + pw.pipe->describe + "\n";
    }
  };
  for (const ProcessWait& pw : report.processes) {
    if (on_cycle[pw.process]) show(pw);
  }
  bool header = false;
  for (const ProcessWait& pw : report.processes) {
    if (on_cycle[pw.process]) continue;
    if (!header) out += in + "other processes:\n";
    header = true;
    show(pw);
  }
  const bool sockets = !report.pipes.empty() && report.pipes.front().socket;
  out += in + (sockets ? "sockets:\n" : "pipes:\n");
  for (const PipeState& pipe : report.pipes) {
    out += in + "  " + pad(pipe.name, sockets ? 30 : 26) + pipe.describe + "\n";
  }
  return out;
}

Json pipe_json(const PipeState& pipe) {
  return Json{{"name", pipe.name},
              {"worker", pipe.worker},
              {"kind", pipe.task_pipe ? "task" : "result"},
              {"transport", pipe.socket ? "socketpair" : "pipes"},
              {"slots_used", pipe.slots_used},
              {"slots", pipe.slots},
              {"skbs", pipe.skbs},
              {"bytes", pipe.bytes},
              {"charged_bytes", pipe.charged_bytes},
              {"charge_limit_bytes", pipe.charge_limit_bytes},
              {"has_reader", pipe.has_reader},
              {"has_writer", pipe.has_writer},
              {"describe", pipe.describe}};
}

Json process_names(const std::vector<uint32_t>& processes) {
  Json names = Json::array();
  for (uint32_t p : processes) names.push_back(process_name(p));
  return names;
}

Json deadlock_json(const DeadlockReport& report) {
  Json json{{"step", report.step},
            {"virtual_time_us", report.virtual_time_us},
            {"cycle", process_names(report.cycle)},
            {"summary", report.summary}};
  Json processes = Json::array();
  for (const ProcessWait& pw : report.processes) {
    Json process{{"process", process_name(pw.process)}, {"call", pw.call}, {"text", pw.text}};
    if (pw.pipe) process["pipe"] = pipe_json(*pw.pipe);
    if (!pw.frame.empty()) process["frame"] = pw.frame;
    if (pw.call == "write" || pw.call == "read") {
      process["call_bytes"] = pw.call_bytes;
      process["done_bytes"] = pw.done_bytes;
      process["wanted_bytes"] = pw.wanted_bytes;
    }
    process["waits_for"] = process_names(pw.waits_for);
    processes.push_back(std::move(process));
  }
  json["processes"] = std::move(processes);
  Json pipes = Json::array();
  for (const PipeState& pipe : report.pipes) pipes.push_back(pipe_json(pipe));
  json["pipes"] = std::move(pipes);
  return json;
}

Json scenario_json(const Scenario& s) {
  Json json{{"strategy", to_string(s.strategy)}, {"scheduler", to_string(s.scheduler)}};
  if (s.scheduler == SchedulerKind::Demand) json["demand_max_in_flight"] = s.demand_max_in_flight;
  json["workers"] = s.workers;
  json["pipe_pages"] = s.pipe_pages;
  json["page_size"] = s.page_size;
  json["pipe_capacity_bytes"] = uint64_t{s.pipe_pages} * s.page_size;
  json["transport"] = to_string(s.transport);
  json["framing"] = to_string(s.framing);
  if (s.transport == Transport::SocketPair) json["sndbuf_bytes"] = s.sndbuf_bytes;
  if (s.framing == Framing::Python) {
    json["python_task_overhead_bytes"] = s.python_task_overhead_bytes;
    json["python_result_overhead_bytes"] = s.python_result_overhead_bytes;
  }
  json["task_timeout_us"] = s.task_timeout_us;
  json["max_tasks_per_child"] = s.max_tasks_per_child;
  json["max_retries"] = s.max_retries;
  json["engine_seed"] = s.engine_seed;
  Json calls = Json::array();
  for (const Call& call : s.calls) calls.push_back(describe_call(call));
  json["calls"] = std::move(calls);
  json["text"] = to_text(s);
  return json;
}

std::string verdict(const ExploreResult& result) {
  if (!result.error.empty()) return "error";
  if (result.determinism.checked && !result.determinism.ok) return "error";
  if (!result.counterexample) return "no-failure";
  switch (result.counterexample->status) {
    case RunStatus::Deadlock:
      return "deadlock";
    case RunStatus::StepLimit:
      return "livelock";
    default:
      return "failure";
  }
}

// ---- whole reports -----------------------------------------------------------------------------

std::string format_explore_text(const Scenario& scenario, const ExploreOptions& options,
                                const ExploreResult& result, size_t trace_tail) {
  std::string out;
  out += "scenario:  " + describe_setup(scenario) + "\n";
  std::string calls;
  for (const Call& call : scenario.calls)
    calls += (calls.empty() ? "" : "; ") + describe_call(call);
  if (scenario.calls.empty() || scenario.calls.back().kind != Call::Kind::Join) {
    calls += std::string(calls.empty() ? "" : "; ") + "join";
  }
  out += "calls:     " + calls + "\n";
  out += "explorer:  " + explorer_line(options, result) + "\n\n";

  const std::string v = verdict(result);
  out += "VERDICT: ";
  if (v == "no-failure") {
    out += "no deadlock, livelock or failure found";
    if (options.mode == ExploreMode::Exhaustive) {
      out += result.complete ? " (explored completely within the bound)"
                             : " (NOT explored completely: " + result.cut_reason + ")";
    }
  } else if (v == "deadlock") {
    out += "DEADLOCK";
  } else if (v == "livelock") {
    out += "LIVELOCK (step bound reached)";
  } else if (v == "failure") {
    out += "FAILURE: " + result.counterexample->failure;
  } else {
    out += "ERROR: " +
           (result.error.empty() ? std::string("the replay of a schedule differed") : result.error);
  }
  if (result.counterexample) {
    out += " in schedule #" + std::to_string(result.counterexample->index);
  }
  out += "\n\nstatistics:\n";
  out += "  schedules run      " + std::to_string(result.schedules) + " (finished " +
         std::to_string(result.outcomes[static_cast<int>(RunStatus::Finished)]) + ", deadlock " +
         std::to_string(result.outcomes[static_cast<int>(RunStatus::Deadlock)]) + ", step bound " +
         std::to_string(result.outcomes[static_cast<int>(RunStatus::StepLimit)]) + ", failed " +
         std::to_string(result.outcomes[static_cast<int>(RunStatus::Failed)]) + ")\n";
  if (options.mode == ExploreMode::Exhaustive) {
    out += "  cut by the cache   " + std::to_string(result.pruned) +
           " (reached a state explored before with as much preemption budget; " +
           std::to_string(result.cache_entries) + " states cached, keyed by " +
           (options.history_fingerprint ? "history" : "state") + ")\n";
    out += "  snapshots          " + std::to_string(result.snapshots) + " saved (every " +
           std::to_string(options.snapshot_every) + " steps" +
           (options.snapshot_every == 0 ? ": off" : "") + "), " + std::to_string(result.restores) +
           " schedules begun from one (" + std::to_string(result.moved_snapshots) +
           " of them its last use: taken, not copied)\n";
    out += "  taken at once      " + std::to_string(result.coalesced) + " by coalescing" +
           (options.coalesce ? "" : " (off)") + ", " + std::to_string(result.por_forced) +
           " by the partial-order reduction" + (options.por ? "" : " (off)") +
           " (invisible steps of the process that ran last: no other branch tried)\n";
    out += "  coverage           " +
           (result.complete
                ? std::string("complete: every schedule with at most ") +
                      (options.preemption_bound < 0 ? std::string("any number of")
                                                    : std::to_string(options.preemption_bound)) +
                      " preemptions is covered"
                : "NOT complete: " + result.cut_reason) +
           "\n";
  }
  if (options.mode == ExploreMode::Pct) {
    char bound[160];
    std::snprintf(bound, sizeof bound,
                  "  pct guarantee      each schedule finds a bug of depth <= %u with probability "
                  ">= 1/(n*k^(d-1)) = %.3g (n = %u processes, k = %" PRIu64 " steps)\n",
                  options.depth, result.pct_bound, result.processes, result.pct_k);
    out += bound;
  }
  out += "  steps              " + std::to_string(result.steps) + " (longest schedule " +
         std::to_string(result.longest_schedule) + ")" +
         (options.mode == ExploreMode::Exhaustive
              ? ", " + std::to_string(result.replayed_steps) + " of them replaying prefixes"
              : std::string()) +
         ", pipe operations " + std::to_string(result.pipe_ops) + "\n";
  if (result.determinism.checked) {
    const DeterminismCheck& d = result.determinism;
    out +=
        "  determinism        replayed schedule #" +
        std::to_string(result.counterexample ? result.counterexample->index : result.sample.index) +
        ": trace hash " + hex(d.replay_hash) + (d.ok ? " == " : " != ") + hex(d.expected_hash) +
        ", " + std::to_string(d.replay_steps) + " steps: " + (d.ok ? "same run" : "DIFFERENT RUN") +
        "\n";
  }
  if (result.counterexample) {
    const RunSummary& run = *result.counterexample;
    out += "\ncounterexample: schedule #" + std::to_string(run.index);
    if (options.mode == ExploreMode::Random || options.mode == ExploreMode::Pct) {
      out += " of seed " + std::to_string(options.seed) + " (schedule seed " +
             std::to_string(run.schedule_seed) + ")";
    }
    out += ", " + plural(run.steps, "step", "steps") + "\n";
    out += "  replay with: --replay '" + format_schedule(run.schedule) + "'\n";
    if (run.deadlock) {
      out += format_deadlock(*run.deadlock, "  ");
    } else {
      out += "  " + std::string(to_string(run.status)) + ": " + run.failure + "\n";
    }
    if (!run.trace.empty()) {
      const size_t from =
          trace_tail == 0 || run.trace.size() <= trace_tail ? 0 : run.trace.size() - trace_tail;
      out += "  trace" +
             (from == 0 ? std::string(":") : " (last " + std::to_string(trace_tail) + " lines):") +
             "\n";
      for (size_t i = from; i < run.trace.size(); ++i) out += "    " + run.trace[i] + "\n";
    }
  } else if (options.mode == ExploreMode::Replay) {
    const RunSummary& run = result.sample;
    out += "\nrun: " + std::string(to_string(run.status)) + ", " +
           plural(run.steps, "step", "steps") + " (" + std::to_string(run.replayed_steps) +
           " from the schedule), virtual time " + format_ms(run.virtual_time_us) + " ms, " +
           plural(run.tasks_completed, "task", "tasks") + " completed\n";
    if (!run.trace.empty()) {
      const size_t from =
          trace_tail == 0 || run.trace.size() <= trace_tail ? 0 : run.trace.size() - trace_tail;
      out += "  trace:\n";
      for (size_t i = from; i < run.trace.size(); ++i) out += "    " + run.trace[i] + "\n";
    }
  }
  return out;
}

std::string format_explore_json(const Scenario& scenario, const ExploreOptions& options,
                                const ExploreResult& result, size_t trace_tail,
                                double wall_seconds) {
  Json explorer{
      {"mode", to_string(options.mode)}, {"seed", options.seed}, {"schedules", options.schedules}};
  if (options.mode == ExploreMode::Pct) explorer["depth"] = options.depth;
  if (options.mode == ExploreMode::Exhaustive) {
    explorer["preemption_bound"] = options.preemption_bound;
    explorer["reductions"] = Json{{"state_cache", options.state_cache_entries != 0},
                                  {"coalesce", options.coalesce},
                                  {"por", options.por},
                                  {"snapshot_every", options.snapshot_every},
                                  {"history_fingerprint", options.history_fingerprint}};
  }
  explorer["max_steps"] = result.max_steps;
  Json json{{"scenario", scenario_json(scenario)},
            {"explorer", std::move(explorer)},
            {"verdict", verdict(result)}};
  if (!result.error.empty()) json["error"] = result.error;
  Json statistics{{"schedules", result.schedules},
                  {"finished", result.outcomes[static_cast<int>(RunStatus::Finished)]},
                  {"deadlock", result.outcomes[static_cast<int>(RunStatus::Deadlock)]},
                  {"step_limit", result.outcomes[static_cast<int>(RunStatus::StepLimit)]},
                  {"failed", result.outcomes[static_cast<int>(RunStatus::Failed)]},
                  {"pruned", result.pruned},
                  {"cache_entries", result.cache_entries},
                  {"steps", result.steps},
                  {"replayed_steps", result.replayed_steps},
                  {"snapshots", result.snapshots},
                  {"restores", result.restores},
                  {"moved_snapshots", result.moved_snapshots},
                  {"longest_schedule", result.longest_schedule},
                  {"pipe_ops", result.pipe_ops},
                  {"processes", result.processes}};
  if (options.mode == ExploreMode::Exhaustive) {
    statistics["coalesced"] = result.coalesced;
    statistics["por_forced"] = result.por_forced;
    statistics["complete"] = result.complete;
    statistics["cut_reason"] = result.cut_reason;
  }
  if (options.mode == ExploreMode::Pct) {
    statistics["pct_k"] = result.pct_k;
    statistics["pct_bound"] = result.pct_bound;
  }
  json["statistics"] = std::move(statistics);
  if (wall_seconds >= 0) {
    const double s = wall_seconds > 1e-9 ? wall_seconds : 1e-9;
    json["speed"] =
        Json{{"seconds", wall_seconds},
             {"schedules_per_second", static_cast<double>(result.schedules) / s},
             {"distinct_states_per_second", static_cast<double>(result.cache_entries) / s},
             {"steps_per_second", static_cast<double>(result.steps) / s},
             {"pipe_ops_per_second", static_cast<double>(result.pipe_ops) / s}};
  }
  json["determinism"] = Json{{"checked", result.determinism.checked},
                             {"ok", result.determinism.ok},
                             {"expected_hash", hex(result.determinism.expected_hash)},
                             {"replay_hash", hex(result.determinism.replay_hash)},
                             {"steps", result.determinism.replay_steps}};
  if (result.counterexample) {
    json["counterexample"] = run_json(*result.counterexample, trace_tail);
  } else if (options.mode == ExploreMode::Replay) {
    json["run"] = run_json(result.sample, trace_tail);
  }
  return json.dump(2) + "\n";
}

}  // namespace pipepool::sim
