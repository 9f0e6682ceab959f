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

void write_run_json(JsonWriter& json, const RunSummary& run, size_t trace_tail) {
  json.begin_object();
  json.key("status").value(to_string(run.status));
  json.key("schedule").value(format_schedule(run.schedule));
  json.key("schedule_index").value(run.index);
  json.key("schedule_seed").value(run.schedule_seed);
  json.key("steps").value(run.steps);
  json.key("trace_hash").value(hex(run.trace_hash));
  json.key("virtual_time_us").value(run.virtual_time_us);
  json.key("tasks_completed").value(run.tasks_completed);
  if (!run.failure.empty()) json.key("failure").value(run.failure);
  if (run.diverged) json.key("diverged").value(true);
  if (run.deadlock) {
    json.key("deadlock");
    write_deadlock_json(json, *run.deadlock);
  }
  if (!run.trace.empty()) {
    const size_t from =
        trace_tail == 0 || run.trace.size() <= trace_tail ? 0 : run.trace.size() - trace_tail;
    json.key("trace_first_line").value(uint64_t{from});
    json.key("trace").begin_array();
    for (size_t i = from; i < run.trace.size(); ++i) json.value(run.trace[i]);
    json.end_array();
  }
  json.end_object();
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

// ---- JSON --------------------------------------------------------------------------------------

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char u[8];
          std::snprintf(u, sizeof u, "\\u%04x", static_cast<unsigned>(c));
          out += u;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void JsonWriter::newline() {
  out_ += '\n';
  out_.append(2 * empty_.size(), ' ');
}

void JsonWriter::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!empty_.empty()) {
    if (!empty_.back()) out_ += ',';
    empty_.back() = false;
    newline();
  }
}

JsonWriter& JsonWriter::begin_object() {
  before_value();
  out_ += '{';
  empty_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::close(char bracket) {
  const bool was_empty = empty_.back();
  empty_.pop_back();
  if (!was_empty) newline();
  out_ += bracket;
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  return close('}');
}

JsonWriter& JsonWriter::begin_array() {
  before_value();
  out_ += '[';
  empty_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  return close(']');
}

JsonWriter& JsonWriter::key(std::string_view name) {
  before_value();
  out_ += '"' + json_escape(name) + "\": ";
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::value(std::string_view text) {
  before_value();
  out_ += '"' + json_escape(text) + '"';
  return *this;
}

JsonWriter& JsonWriter::value(uint64_t number) {
  before_value();
  out_ += std::to_string(number);
  return *this;
}

JsonWriter& JsonWriter::value(int64_t number) {
  before_value();
  out_ += std::to_string(number);
  return *this;
}

JsonWriter& JsonWriter::value(double number) {
  before_value();
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", number);
  out_ += text;
  return *this;
}

JsonWriter& JsonWriter::value(bool flag) {
  before_value();
  out_ += flag ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::null() {
  before_value();
  out_ += "null";
  return *this;
}

std::string JsonWriter::take() {
  out_ += '\n';
  return std::move(out_);
}

// ---- pieces ------------------------------------------------------------------------------------

std::string describe_setup(const Scenario& s) {
  std::string out = std::string(to_string(s.strategy)) + ", " + std::string(to_string(s.scheduler));
  if (s.scheduler == SchedulerKind::Demand) {
    out += " (" + std::to_string(s.demand_max_in_flight) + " in flight)";
  }
  out += ", " + plural(s.workers, "worker", "workers") + ", pipes of " +
         std::to_string(s.pipe_pages) + " x " + std::to_string(s.page_size) + "-byte pages (" +
         std::to_string(uint64_t{s.pipe_pages} * s.page_size) + " bytes)";
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
  out += in + "pipes:\n";
  for (const PipeState& pipe : report.pipes) {
    out += in + "  " + pad(pipe.name, 26) + pipe.describe + "\n";
  }
  return out;
}

void write_pipe_json(JsonWriter& json, const PipeState& pipe) {
  json.begin_object();
  json.key("name").value(pipe.name);
  json.key("worker").value(pipe.worker);
  json.key("kind").value(pipe.task_pipe ? "task" : "result");
  json.key("slots_used").value(pipe.slots_used);
  json.key("slots").value(pipe.slots);
  json.key("bytes").value(pipe.bytes);
  json.key("has_reader").value(pipe.has_reader);
  json.key("has_writer").value(pipe.has_writer);
  json.key("describe").value(pipe.describe);
  json.end_object();
}

void write_deadlock_json(JsonWriter& json, const DeadlockReport& report) {
  json.begin_object();
  json.key("step").value(report.step);
  json.key("virtual_time_us").value(report.virtual_time_us);
  json.key("cycle").begin_array();
  for (uint32_t p : report.cycle) json.value(process_name(p));
  json.end_array();
  json.key("summary").value(report.summary);
  json.key("processes").begin_array();
  for (const ProcessWait& pw : report.processes) {
    json.begin_object();
    json.key("process").value(process_name(pw.process));
    json.key("call").value(pw.call);
    json.key("text").value(pw.text);
    if (pw.pipe) {
      json.key("pipe");
      write_pipe_json(json, *pw.pipe);
    }
    if (!pw.frame.empty()) json.key("frame").value(pw.frame);
    if (pw.call == "write" || pw.call == "read") {
      json.key("call_bytes").value(pw.call_bytes);
      json.key("done_bytes").value(pw.done_bytes);
      json.key("wanted_bytes").value(pw.wanted_bytes);
    }
    json.key("waits_for").begin_array();
    for (uint32_t p : pw.waits_for) json.value(process_name(p));
    json.end_array();
    json.end_object();
  }
  json.end_array();
  json.key("pipes").begin_array();
  for (const PipeState& pipe : report.pipes) write_pipe_json(json, pipe);
  json.end_array();
  json.end_object();
}

void write_scenario_json(JsonWriter& json, const Scenario& s) {
  json.begin_object();
  json.key("strategy").value(to_string(s.strategy));
  json.key("scheduler").value(to_string(s.scheduler));
  if (s.scheduler == SchedulerKind::Demand) {
    json.key("demand_max_in_flight").value(s.demand_max_in_flight);
  }
  json.key("workers").value(s.workers);
  json.key("pipe_pages").value(s.pipe_pages);
  json.key("page_size").value(s.page_size);
  json.key("pipe_capacity_bytes").value(uint64_t{s.pipe_pages} * s.page_size);
  json.key("task_timeout_us").value(s.task_timeout_us);
  json.key("max_tasks_per_child").value(s.max_tasks_per_child);
  json.key("max_retries").value(s.max_retries);
  json.key("engine_seed").value(s.engine_seed);
  json.key("calls").begin_array();
  for (const Call& call : s.calls) json.value(describe_call(call));
  json.end_array();
  json.key("text").value(to_text(s));
  json.end_object();
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
           std::to_string(result.cache_entries) + " states cached)\n";
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
  JsonWriter json;
  json.begin_object();
  json.key("scenario");
  write_scenario_json(json, scenario);
  json.key("explorer").begin_object();
  json.key("mode").value(to_string(options.mode));
  json.key("seed").value(options.seed);
  json.key("schedules").value(options.schedules);
  if (options.mode == ExploreMode::Pct) json.key("depth").value(options.depth);
  if (options.mode == ExploreMode::Exhaustive) {
    json.key("preemption_bound").value(options.preemption_bound);
    json.key("reductions").begin_object();
    json.key("state_cache").value(options.state_cache_entries != 0);
    json.key("coalesce").value(options.coalesce);
    json.key("por").value(options.por);
    json.end_object();
  }
  json.key("max_steps").value(result.max_steps);
  json.end_object();
  json.key("verdict").value(verdict(result));
  if (!result.error.empty()) json.key("error").value(result.error);
  json.key("statistics").begin_object();
  json.key("schedules").value(result.schedules);
  json.key("finished").value(result.outcomes[static_cast<int>(RunStatus::Finished)]);
  json.key("deadlock").value(result.outcomes[static_cast<int>(RunStatus::Deadlock)]);
  json.key("step_limit").value(result.outcomes[static_cast<int>(RunStatus::StepLimit)]);
  json.key("failed").value(result.outcomes[static_cast<int>(RunStatus::Failed)]);
  json.key("pruned").value(result.pruned);
  json.key("cache_entries").value(result.cache_entries);
  json.key("steps").value(result.steps);
  json.key("replayed_steps").value(result.replayed_steps);
  json.key("longest_schedule").value(result.longest_schedule);
  json.key("pipe_ops").value(result.pipe_ops);
  json.key("processes").value(result.processes);
  if (options.mode == ExploreMode::Exhaustive) {
    json.key("coalesced").value(result.coalesced);
    json.key("por_forced").value(result.por_forced);
    json.key("complete").value(result.complete);
    json.key("cut_reason").value(result.cut_reason);
  }
  if (options.mode == ExploreMode::Pct) {
    json.key("pct_k").value(result.pct_k);
    json.key("pct_bound").value(result.pct_bound);
  }
  json.end_object();
  if (wall_seconds >= 0) {
    const double s = wall_seconds > 1e-9 ? wall_seconds : 1e-9;
    json.key("speed").begin_object();
    json.key("seconds").value(wall_seconds);
    json.key("schedules_per_second").value(static_cast<double>(result.schedules) / s);
    json.key("distinct_states_per_second").value(static_cast<double>(result.cache_entries) / s);
    json.key("steps_per_second").value(static_cast<double>(result.steps) / s);
    json.key("pipe_ops_per_second").value(static_cast<double>(result.pipe_ops) / s);
    json.end_object();
  }
  json.key("determinism").begin_object();
  json.key("checked").value(result.determinism.checked);
  json.key("ok").value(result.determinism.ok);
  json.key("expected_hash").value(hex(result.determinism.expected_hash));
  json.key("replay_hash").value(hex(result.determinism.replay_hash));
  json.key("steps").value(result.determinism.replay_steps);
  json.end_object();
  if (result.counterexample) {
    json.key("counterexample");
    write_run_json(json, *result.counterexample, trace_tail);
  } else if (options.mode == ExploreMode::Replay) {
    json.key("run");
    write_run_json(json, result.sample, trace_tail);
  }
  json.end_object();
  return json.take();
}

}  // namespace pipepool::sim
