// Strategy::ZeroCopy in the simulator: exhaustive exploration certifies that splicing, with the
// parent's Ack frames and the workers' retained results, never makes a schedule deadlock or stall,
// for 1 and 2 workers, payloads below and above the splice threshold and the 64 KiB pipe, and that
// the spliced writes and acknowledgements really happen in those schedules.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <string>

#include "explore.hpp"
#include "testing_scenarios.hpp"
#include "world.hpp"

namespace pipepool::sim {
namespace {

using testing::exhaustive;
using testing::two_tasks;

Scenario zerocopy_tasks(uint32_t workers, uint64_t task_bytes, uint64_t result_bytes) {
  Scenario s = two_tasks(Strategy::ZeroCopy, task_bytes, result_bytes);  // 16-page pipes
  s.workers = workers;
  if (workers > 1) s.calls.push_back(s.calls.front());  // three tasks over two workers
  return s;
}

struct Case {
  uint32_t workers;
  uint64_t task_bytes;
  uint64_t result_bytes;
  int32_t bound;
};

TEST(ZeroCopyExplore, NeverDeadlocksSmallOrLargeOneOrTwoWorkers) {
  for (const Case c :
       {Case{1, 1000, 1000, 2}, Case{1, 70'000, 70'000, 2}, Case{1, 200'000, 200'000, 2},
        Case{1, 100, 300'000, 2}, Case{2, 1000, 1000, 1}, Case{2, 200'000, 200'000, 1}}) {
    const ExploreResult r =
        explore(zerocopy_tasks(c.workers, c.task_bytes, c.result_bytes), exhaustive(c.bound));
    const std::string what = std::to_string(c.workers) + " workers, task " +
                             std::to_string(c.task_bytes) + " result " +
                             std::to_string(c.result_bytes);
    EXPECT_TRUE(r.error.empty()) << what << ": " << r.error;
    EXPECT_FALSE(r.counterexample.has_value()) << what << ": " << r.counterexample->failure << " "
                                               << format_schedule(r.counterexample->schedule);
    EXPECT_TRUE(r.complete) << what << ": " << r.cut_reason;
    EXPECT_TRUE(r.determinism.ok) << what;
  }
}

// The certificates above are about spliced writes: one schedule's trace shows the parent and the
// worker vmsplicing the large payloads, and small ones going with writev.
TEST(ZeroCopyExplore, LargePayloadsAreSplicedSmallOnesWritten) {
  for (const uint64_t bytes : {uint64_t{1000}, uint64_t{200'000}}) {
    World world(make_script(zerocopy_tasks(1, bytes, bytes)), WorldOptions{.trace = true});
    while (const uint64_t ready = world.poll()) {
      world.step(static_cast<uint32_t>(std::countr_zero(ready)));
    }
    EXPECT_EQ(world.status(), RunStatus::Finished) << bytes;
    size_t parent_splices = 0, worker_splices = 0, writes = 0;
    for (const std::string& line : world.trace()) {
      if (line.find("vmsplice(2) task pipe") != std::string::npos) ++parent_splices;
      if (line.find("vmsplice(2) result pipe") != std::string::npos) ++worker_splices;
      if (line.find("writev(2) result pipe") != std::string::npos) ++writes;
    }
    const bool large = bytes >= kZeroCopyMinPayloadBytes;
    EXPECT_EQ(parent_splices > 0, large) << bytes;
    EXPECT_EQ(worker_splices > 0, large) << bytes;
    EXPECT_GT(writes, 0u) << bytes;  // headers and small frames: copied
  }
}

}  // namespace
}  // namespace pipepool::sim
