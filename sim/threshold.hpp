// Threshold search: the smallest task payload and the smallest result payload with which a
// strategy deadlocks, for a pipe capacity, found by exploring the two-tasks-on-one-worker scenario
// at many sizes:
//
//   workers 1
//   apply_async TASK RESULT 0
//   apply_async TASK RESULT 0
//   wait            # get both results (left out with join_at_once)
//   (join)
//
// For each dimension the other size is fixed large (the capacity plus a page, so that that frame
// alone overfills a pipe), and every size on a grid over [min_bytes, max_bytes] is explored
// exhaustively within the preemption bound (stopping at the first deadlock). The grid cell in which
// the first deadlocking size lies is then scanned size by size, so the smallest size is exact
// unless a deadlocking island narrower than the grid hides below it; every later change of verdict
// is narrowed to one byte by bisection, and reported, so non-monotone answers show. Sizes are frame
// payload bytes: each frame adds its 32-byte header. sim/README.md derives the expected numbers.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "explore.hpp"
#include "scenario.hpp"

namespace pipepool::sim {

struct ThresholdProgress {
  const char* dimension = "";  // "task" or "result"
  uint64_t size = 0;           // the size just explored
  bool deadlock = false;
  uint64_t explorations = 0;  // so far, both dimensions
};

struct ThresholdOptions {
  Strategy strategy = Strategy::Unbatched;
  SchedulerKind scheduler = SchedulerKind::ShortestBacklog;
  uint32_t pipe_pages = 16;
  uint32_t page_size = 4096;
  // The channel. With Transport::SocketPair the "capacity" is what one writer can queue into a
  // socket nobody reads (threshold_capacity_bytes: the skbs it may allocate while its charge is
  // below sndbuf_bytes), which is not a whole number of pages.
  Transport transport = Transport::Pipes;
  uint32_t sndbuf_bytes = 212992;
  Framing framing = Framing::Pipepool;
  uint32_t python_task_overhead_bytes = 0;
  uint32_t python_result_overhead_bytes = 0;
  // Join right after the two calls instead of waiting for their results: the pool then queues its
  // Shutdown frame behind the second task, and that frame's 32 bytes count too.
  bool join_at_once = false;
  uint64_t large_bytes = 0;  // the other payload's fixed size; 0: capacity + one page
  uint64_t min_bytes = 0;    // sizes searched: min_bytes .. max_bytes
  uint64_t max_bytes = 0;    // 0: twice the capacity
  uint64_t grid_bytes = 0;   // 0: page_size / 8
  int32_t preemption_bound = 1;
  uint64_t schedule_limit = 1'000'000;  // per size
  std::function<void(const ThresholdProgress&)> progress;
};

struct SizeRange {
  uint64_t first = 0;
  uint64_t last = 0;
};

struct ThresholdDimension {
  std::string name;                  // "task" or "result"
  uint64_t other_bytes = 0;          // the fixed payload size of the other frame
  std::optional<uint64_t> smallest;  // the smallest payload that deadlocks (none: none found)
  std::vector<SizeRange> deadlocks;  // every size range that deadlocks, in min .. max_bytes
  bool monotone = false;             // one range, from `smallest` to max_bytes
  SizeRange scanned;                 // sizes explored one by one (the cell of the smallest)
  uint64_t sizes_explored = 0;
  uint64_t schedules = 0;
  bool complete = true;    // every size's exploration covered its bound (or found a deadlock)
  std::string incomplete;  // why not
  std::optional<RunSummary> witness;  // a deadlocking run at `smallest`, traced
};

struct ThresholdResult {
  uint64_t capacity_bytes = 0;  // threshold_capacity_bytes(options)
  uint64_t large_bytes = 0;
  uint64_t min_bytes = 0;
  uint64_t max_bytes = 0;
  uint64_t grid_bytes = 0;
  ThresholdDimension task;
  ThresholdDimension result;
  bool corner_checked = false;  // both sizes at their smallest, together
  bool corner_deadlocks = false;
  std::string error;  // an exploration failed otherwise than by deadlock
};

// The scenario explored for one pair of sizes.
Scenario threshold_scenario(const ThresholdOptions& options, uint64_t task_bytes,
                            uint64_t result_bytes);

// Bytes one writer can put into the channel while nobody reads: a pipe's capacity (slots * page),
// or, for a socket, the data of the skbs a non-blocking write of far more than sndbuf queues
// (SocketPairModel's answer: 219,264 for the default 212,992, six skbs of 36,544 bytes).
uint64_t threshold_capacity_bytes(const ThresholdOptions& options);
// The bytes a frame with `payload_bytes` of payload takes on the channel: pipepool's 32-byte header
// + payload, or Python's 4-byte length + payload + the task's or result's overhead.
uint64_t threshold_frame_bytes(const ThresholdOptions& options, bool task, uint64_t payload_bytes);

ThresholdResult find_threshold(const ThresholdOptions& options);

std::string format_threshold_text(const ThresholdOptions& options, const ThresholdResult& result);
std::string format_threshold_json(const ThresholdOptions& options, const ThresholdResult& result);

}  // namespace pipepool::sim
