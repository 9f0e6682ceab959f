// The simulator's exact threshold against the real pool: the smallest task and result payloads
// that deadlock Unbatched on one worker with 64 KiB pipes, found by search over the pipe model,
// must be exactly where real processes over real pipes start to hang.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "pipepool/pipepool.hpp"
#include "process_helpers.hpp"
#include "threshold.hpp"

namespace pipepool::sim {
namespace {

using namespace std::chrono_literals;

std::string echo_resized(std::string in, size_t out_bytes) {
  in.resize(out_bytes, 'r');
  return in;
}

// Payload bytes of a real task `echo_resized(std::string(n), m)`: trampoline (8) + function
// pointer (8) + item count (8) + string length (8) + n + size_t (8). Of its result: item count (8)
// + string length (8) + m.
constexpr size_t kTaskOverhead = 40;
constexpr size_t kResultOverhead = 16;

// Two back-to-back apply_async on Pool(1), Unbatched, 64 KiB pipes: true if they deadlock.
bool real_pool_deadlocks(uint64_t task_payload, uint64_t result_payload) {
  Pool pool(Options{.processes = 1,
                    .strategy = Strategy::Unbatched,
                    .scheduler = SchedulerKind::ShortestBacklog,
                    .enlarge_pipes = false});
  const std::string in(task_payload - kTaskOverhead, 'x');
  const size_t out = result_payload - kResultOverhead;
  auto a = pool.apply_async(echo_resized, in, out);
  auto b = pool.apply_async(echo_resized, in, out);
  const bool done = a.wait(2s) && b.wait(2s);
  if (!done) pool.terminate();
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(2000).empty() || done);
  return !done;
}

TEST(RealPoolAgreement, UnbatchedThresholdIsWhereRealProcessesHang) {
  ThresholdOptions options;
  options.strategy = Strategy::Unbatched;
  options.pipe_pages = 16;
  ThresholdResult found = find_threshold(options);
  ASSERT_TRUE(found.task.smallest && found.result.smallest) << found.error;
  const uint64_t task = *found.task.smallest, result = *found.result.smallest;
  std::printf("simulator: smallest deadlocking task payload %llu, result payload %llu\n",
              static_cast<unsigned long long>(task), static_cast<unsigned long long>(result));
  EXPECT_TRUE(real_pool_deadlocks(task, result)) << "the real pool did not hang at the threshold";
  EXPECT_FALSE(real_pool_deadlocks(task - 1, result)) << "the real pool hung one byte below";
  EXPECT_FALSE(real_pool_deadlocks(task, result - 1)) << "the real pool hung one byte below";
}

}  // namespace
}  // namespace pipepool::sim
