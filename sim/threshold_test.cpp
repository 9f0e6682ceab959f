// Tests of the threshold search (sim/threshold.hpp) against numbers derived from the pipe rules in
// sim/README.md ("Threshold search: the numbers, by hand").
#include <gtest/gtest.h>

#include "threshold.hpp"

namespace pipepool::sim {
namespace {

constexpr uint64_t kHeader = protocol::kHeaderBytes;  // 32
constexpr uint64_t kPage = 4096;
constexpr uint64_t kCapacity = 16 * kPage;  // 65536

TEST(Threshold, UnbatchedAt16PagesDeadlocksFromOneByteOverTheCapacityPerFrame) {
  ThresholdOptions o;
  o.strategy = Strategy::Unbatched;
  o.pipe_pages = 16;
  const ThresholdResult r = find_threshold(o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  // The second task frame must not fit in 16 slots once the worker has taken the first one
  // (65537 bytes need a 17th page), and the first result frame must not fit in the empty result
  // pipe: both frames one byte over the capacity.
  const uint64_t expected = kCapacity + 1 - kHeader;  // 65505
  ASSERT_TRUE(r.task.smallest.has_value());
  ASSERT_TRUE(r.result.smallest.has_value());
  EXPECT_EQ(*r.task.smallest, expected);
  EXPECT_EQ(*r.result.smallest, expected);
  EXPECT_TRUE(r.task.monotone);
  EXPECT_TRUE(r.result.monotone);
  EXPECT_TRUE(r.task.complete) << r.task.incomplete;
  EXPECT_TRUE(r.result.complete) << r.result.incomplete;
  // The boundary's whole grid cell was explored size by size.
  EXPECT_LE(r.task.scanned.first, expected - 1);
  EXPECT_GE(r.task.scanned.last, expected);
  EXPECT_TRUE(r.corner_checked);
  EXPECT_TRUE(r.corner_deadlocks);
  ASSERT_TRUE(r.task.witness.has_value());
  EXPECT_EQ(r.task.witness->status, RunStatus::Deadlock);
}

TEST(Threshold, UnbatchedWithJoinAtOnceIsNotMonotone) {
  // The Shutdown frame (32 bytes) follows the second task. When the worker has not yet read the
  // last page of task 1 (c = frame % 4096 bytes), task 2's first c bytes merge into it, so task 2
  // takes 1 + 15 slots and the Shutdown frame has none: a deadlock for 61441 <= frame <= 63488
  // (2c <= 4096). Above that task 2 ends in a page of its own with room for the Shutdown frame,
  // until that page holds more than 4064 bytes (frame >= 65505).
  ThresholdOptions o;
  o.strategy = Strategy::Unbatched;
  o.pipe_pages = 16;
  o.join_at_once = true;
  o.min_bytes = 14 * kPage;
  o.max_bytes = kCapacity + 2 * kPage;
  o.grid_bytes = 256;
  const ThresholdResult r = find_threshold(o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.task.deadlocks.size(), 2u);
  ASSERT_TRUE(r.task.smallest.has_value());
  EXPECT_EQ(*r.task.smallest, 15 * kPage + 1 - kHeader);
  EXPECT_EQ(r.task.deadlocks[0].first, 15 * kPage + 1 - kHeader);           // 61409
  EXPECT_EQ(r.task.deadlocks[0].last, 15 * kPage + kPage / 2 - kHeader);    // 63456
  EXPECT_EQ(r.task.deadlocks[1].first, kCapacity - kHeader + 1 - kHeader);  // 65473
  EXPECT_FALSE(r.task.monotone);
}

}  // namespace
}  // namespace pipepool::sim
