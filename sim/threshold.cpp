#include "threshold.hpp"

#include <map>

#include "report.hpp"
#include "socket_model.hpp"

namespace pipepool::sim {
namespace {

class Search {
 public:
  Search(const ThresholdOptions& options, ThresholdResult& result)
      : options_(options), result_(result) {}

  void run(ThresholdDimension& dim) {
    dimension_ = &dim;
    verdicts_.clear();
    const uint64_t max = result_.max_bytes;
    const uint64_t grid = result_.grid_bytes;
    std::vector<uint64_t> points;
    for (uint64_t s = result_.min_bytes; s < max; s += grid) points.push_back(s);
    points.push_back(max);
    std::optional<size_t> first;
    for (size_t i = 0; i < points.size() && result_.error.empty(); ++i) {
      if (deadlocks(points[i]) && !first) first = i;
    }
    if (!result_.error.empty()) return;
    // The cell holding the first deadlocking grid point, size by size.
    if (first && *first > 0) {
      dim.scanned = {points[*first - 1] + 1, points[*first]};
      for (uint64_t s = dim.scanned.first; s < dim.scanned.last && result_.error.empty(); ++s) {
        deadlocks(s);
      }
    } else if (first) {
      dim.scanned = {points[0], points[0]};
    }
    // Every other change of verdict between grid points, narrowed to one byte.
    for (size_t i = 1; i < points.size() && result_.error.empty(); ++i) {
      uint64_t lo = points[i - 1], hi = points[i];
      if (deadlocks(lo) == deadlocks(hi) || (first && i == *first)) continue;
      const bool at_hi = deadlocks(hi);
      while (hi - lo > 1 && result_.error.empty()) {
        const uint64_t mid = lo + (hi - lo) / 2;
        (deadlocks(mid) == at_hi ? hi : lo) = mid;
      }
    }
    if (!result_.error.empty()) return;
    // Ranges: runs of deadlocking sizes among those explored (neighbours that agree are assumed to
    // agree in between; every disagreement was narrowed to adjacent sizes).
    bool previous_dead = false;
    for (const auto& [size, dead] : verdicts_) {
      if (dead && previous_dead) {
        dim.deadlocks.back().last = size;
      } else if (dead) {
        dim.deadlocks.push_back({size, size});
      }
      previous_dead = dead;
    }
    if (!dim.deadlocks.empty()) dim.smallest = dim.deadlocks.front().first;
    dim.monotone = dim.deadlocks.size() == 1 && dim.deadlocks.front().last == max;
    dim.sizes_explored = verdicts_.size();
    if (dim.smallest) {
      ExploreResult r = explore_size(*dim.smallest, /*trace=*/true);
      if (r.counterexample) dim.witness = std::move(r.counterexample);
    }
  }

  bool deadlocks(uint64_t size) {
    if (auto it = verdicts_.find(size); it != verdicts_.end()) return it->second;
    ExploreResult r = explore_size(size, /*trace=*/false);
    ThresholdDimension& dim = *dimension_;
    dim.schedules += r.schedules + r.pruned;
    bool dead = false;
    if (!r.error.empty()) {
      result_.error = "at " + dim.name + " payload " + std::to_string(size) + ": " + r.error;
    } else if (r.counterexample) {
      if (r.counterexample->status == RunStatus::Deadlock) {
        dead = true;
      } else {
        result_.error = "at " + dim.name + " payload " + std::to_string(size) + ": " +
                        to_string(r.counterexample->status) + ": " + r.counterexample->failure +
                        " (schedule " + format_schedule(r.counterexample->schedule) + ")";
      }
    } else if (!r.complete && dim.complete) {
      dim.complete = false;
      dim.incomplete = "at " + std::to_string(size) + " bytes: " + r.cut_reason;
    }
    verdicts_[size] = dead;
    ++explorations_;
    if (options_.progress) {
      options_.progress({dim.name == "task" ? "task" : "result", size, dead, explorations_});
    }
    return dead;
  }

 private:
  ExploreResult explore_size(uint64_t size, bool trace) {
    const ThresholdDimension& dim = *dimension_;
    const bool task = dim.name == "task";
    Scenario scenario =
        threshold_scenario(options_, task ? size : dim.other_bytes, task ? dim.other_bytes : size);
    ExploreOptions o;
    o.mode = ExploreMode::Exhaustive;
    o.preemption_bound = options_.preemption_bound;
    o.schedules = options_.schedule_limit;
    o.stop_at_first_failure = true;
    o.trace_counterexample = trace;
    o.state_cache_entries = size_t{1} << 20;
    return explore(scenario, o);
  }

  const ThresholdOptions& options_;
  ThresholdResult& result_;
  ThresholdDimension* dimension_ = nullptr;
  std::map<uint64_t, bool> verdicts_;
  uint64_t explorations_ = 0;
};

std::string ranges_text(const std::vector<SizeRange>& ranges) {
  std::string out;
  for (const SizeRange& r : ranges) {
    if (!out.empty()) out += ", ";
    out += r.first == r.last ? std::to_string(r.first)
                             : std::to_string(r.first) + ".." + std::to_string(r.last);
  }
  return out.empty() ? "none" : out;
}

}  // namespace

Scenario threshold_scenario(const ThresholdOptions& options, uint64_t task_bytes,
                            uint64_t result_bytes) {
  Scenario s;
  s.strategy = options.strategy;
  s.scheduler = options.scheduler;
  s.workers = 1;
  s.pipe_pages = options.pipe_pages;
  s.page_size = options.page_size;
  s.transport = options.transport;
  s.sndbuf_bytes = options.sndbuf_bytes;
  s.framing = options.framing;
  s.python_task_overhead_bytes = options.python_task_overhead_bytes;
  s.python_result_overhead_bytes = options.python_result_overhead_bytes;
  Call call;
  call.kind = Call::Kind::ApplyAsync;
  call.item = {task_bytes, result_bytes, 0};
  s.calls = {call, call};
  if (!options.join_at_once) {
    Call wait;
    wait.kind = Call::Kind::Wait;
    s.calls.push_back(wait);
  }
  return s;
}

uint64_t threshold_capacity_bytes(const ThresholdOptions& options) {
  if (options.transport != Transport::SocketPair) {
    return uint64_t{options.pipe_pages} * options.page_size;
  }
  SocketConfig config;
  config.sndbuf_bytes = options.sndbuf_bytes;
  SocketPairModel pair(config);
  // More than any sk_sndbuf lets one writer queue: sndbuf plus one largest skb, and some.
  const std::vector<std::byte> data(size_t{options.sndbuf_bytes} + 2 * 37120);
  const SocketPairModel::WriteResult w = pair.write(0, data, /*nonblocking=*/true);
  return w.result > 0 ? static_cast<uint64_t>(w.result) : 0;
}

uint64_t threshold_frame_bytes(const ThresholdOptions& options, bool task, uint64_t payload_bytes) {
  if (options.framing == Framing::Python) {
    return 4 + payload_bytes +
           (task ? options.python_task_overhead_bytes : options.python_result_overhead_bytes);
  }
  return protocol::kHeaderBytes + payload_bytes;
}

ThresholdResult find_threshold(const ThresholdOptions& options) {
  ThresholdResult result;
  result.capacity_bytes = threshold_capacity_bytes(options);
  result.large_bytes =
      options.large_bytes != 0 ? options.large_bytes : result.capacity_bytes + options.page_size;
  result.max_bytes = options.max_bytes != 0 ? options.max_bytes : 2 * result.capacity_bytes;
  result.min_bytes = std::min(options.min_bytes, result.max_bytes);
  result.grid_bytes =
      options.grid_bytes != 0 ? options.grid_bytes : std::max<uint64_t>(1, options.page_size / 8);
  result.task.name = "task";
  result.task.other_bytes = result.large_bytes;
  result.result.name = "result";
  result.result.other_bytes = result.large_bytes;
  Search search(options, result);
  search.run(result.task);
  if (result.error.empty()) search.run(result.result);
  if (result.error.empty() && result.task.smallest && result.result.smallest) {
    ExploreOptions o;
    o.mode = ExploreMode::Exhaustive;
    o.preemption_bound = options.preemption_bound;
    o.schedules = options.schedule_limit;
    o.trace_counterexample = false;
    ExploreResult r =
        explore(threshold_scenario(options, *result.task.smallest, *result.result.smallest), o);
    result.corner_checked = true;
    result.corner_deadlocks = r.counterexample && r.counterexample->status == RunStatus::Deadlock;
  }
  return result;
}

std::string format_threshold_text(const ThresholdOptions& options, const ThresholdResult& r) {
  Scenario example = threshold_scenario(options, 0, 0);
  const bool socket = options.transport == Transport::SocketPair;
  const std::string capacity_name = socket ? "fill" : "capacity";
  std::string out;
  out += "threshold search: " + describe_setup(example) + "\n";
  out += "scenario:  apply_async TASK RESULT 0; apply_async TASK RESULT 0; " +
         std::string(options.join_at_once ? "join (at once)" : "wait; join") +
         (options.framing == Framing::Python
              ? "  (sizes are message payloads; each message adds a 4-byte length and the task's " +
                    std::to_string(options.python_task_overhead_bytes) + " or the result's " +
                    std::to_string(options.python_result_overhead_bytes) + " bytes of overhead)\n"
              : "  (sizes are frame payloads; each frame adds a " +
                    std::to_string(protocol::kHeaderBytes) + "-byte header)\n");
  if (socket) {
    out += "fill:      " + std::to_string(r.capacity_bytes) +
           " bytes: what one writer queues into a socket of sndbuf " +
           std::to_string(options.sndbuf_bytes) + " that nobody reads\n";
  }
  out += "per size:  exhaustive exploration, preemption bound " +
         std::to_string(options.preemption_bound) + ", stop at the first deadlock; sizes " +
         std::to_string(r.min_bytes) + ".." + std::to_string(r.max_bytes) + " on a " +
         std::to_string(r.grid_bytes) +
         "-byte grid, the cell of the smallest size by size, other changes bisected to the byte\n";
  if (!r.error.empty()) {
    out += "\nERROR: " + r.error + "\n";
    return out;
  }
  for (const ThresholdDimension* dim : {&r.task, &r.result}) {
    const std::string other = dim->name == "task" ? "result" : "task";
    out += "\n" + dim->name + " payload (" + other + " payload fixed at " +
           std::to_string(dim->other_bytes) + " bytes):\n";
    if (dim->smallest) {
      const uint64_t frame = threshold_frame_bytes(options, dim->name == "task", *dim->smallest);
      out += "  smallest that deadlocks: " + std::to_string(*dim->smallest) + " bytes (frame " +
             std::to_string(frame) + " bytes = " + capacity_name + " " +
             (frame >= r.capacity_bytes ? "+ " : "- ") +
             std::to_string(frame >= r.capacity_bytes ? frame - r.capacity_bytes
                                                      : r.capacity_bytes - frame) +
             ")\n";
    } else {
      out += "  no size in " + std::to_string(r.min_bytes) + ".." + std::to_string(r.max_bytes) +
             " deadlocks\n";
    }
    out += "  deadlocking sizes: " + ranges_text(dim->deadlocks) +
           (dim->smallest
                ? (dim->monotone ? "  (monotone: every larger size deadlocks)" : "  (NOT monotone)")
                : "") +
           "\n";
    out += "  explored " + std::to_string(dim->sizes_explored) + " sizes, " +
           std::to_string(dim->schedules) + " schedules";
    if (dim->smallest && dim->scanned.last != dim->scanned.first) {
      out += "; every size in " + std::to_string(dim->scanned.first) + ".." +
             std::to_string(dim->scanned.last) + " one by one";
    }
    out += "\n";
    out += "  coverage: " +
           (dim->complete ? std::string("every exploration complete within the bound")
                          : "INCOMPLETE " + dim->incomplete) +
           "\n";
    if (dim->witness) {
      out += "  witness at the smallest size: --replay '" +
             format_schedule(dim->witness->schedule) + "'\n";
      if (dim->witness->deadlock) out += format_deadlock(*dim->witness->deadlock, "    ");
    }
  }
  if (r.corner_checked) {
    out += "\nboth at their smallest (task " + std::to_string(*r.task.smallest) + ", result " +
           std::to_string(*r.result.smallest) +
           "): " + (r.corner_deadlocks ? "deadlocks" : "does NOT deadlock") + "\n";
  }
  return out;
}

std::string format_threshold_json(const ThresholdOptions& options, const ThresholdResult& r) {
  Json json{{"strategy", to_string(options.strategy)},
            {"scheduler", to_string(options.scheduler)},
            {"pipe_pages", options.pipe_pages},
            {"page_size", options.page_size},
            {"transport", to_string(options.transport)},
            {"framing", to_string(options.framing)},
            {"capacity_bytes", r.capacity_bytes},
            {"header_bytes",
             options.framing == Framing::Python ? uint64_t{4} : uint64_t{protocol::kHeaderBytes}},
            {"join_at_once", options.join_at_once},
            {"preemption_bound", options.preemption_bound},
            {"min_bytes", r.min_bytes},
            {"max_bytes", r.max_bytes},
            {"grid_bytes", r.grid_bytes}};
  if (options.transport == Transport::SocketPair) json["sndbuf_bytes"] = options.sndbuf_bytes;
  if (options.framing == Framing::Python) {
    json["python_task_overhead_bytes"] = options.python_task_overhead_bytes;
    json["python_result_overhead_bytes"] = options.python_result_overhead_bytes;
  }
  if (!r.error.empty()) json["error"] = r.error;
  for (const ThresholdDimension* dim : {&r.task, &r.result}) {
    Json deadlocks = Json::array();
    for (const SizeRange& range : dim->deadlocks) deadlocks.push_back({range.first, range.last});
    Json d{{"other_bytes", dim->other_bytes},
           {"smallest", dim->smallest ? Json(*dim->smallest) : Json(nullptr)},
           {"deadlocks", std::move(deadlocks)},
           {"monotone", dim->monotone},
           {"scanned", {dim->scanned.first, dim->scanned.last}},
           {"sizes_explored", dim->sizes_explored},
           {"schedules", dim->schedules},
           {"complete", dim->complete}};
    if (!dim->complete) d["incomplete"] = dim->incomplete;
    if (dim->witness) {
      d["witness_schedule"] = format_schedule(dim->witness->schedule);
      if (dim->witness->deadlock) d["witness_deadlock"] = deadlock_json(*dim->witness->deadlock);
    }
    json[dim->name] = std::move(d);
  }
  json["corner_checked"] = r.corner_checked;
  json["corner_deadlocks"] = r.corner_deadlocks;
  return json.dump(2) + "\n";
}

}  // namespace pipepool::sim
