// Tests of the threshold search (sim/threshold.hpp) against numbers derived from the pipe rules in
// sim/README.md ("Threshold search: the numbers, by hand").
#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <utility>

#include "socket_model.hpp"
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

// The memory charged for one write of `bytes` into an empty default socket: its skbs of at most
// 36544 bytes, each of its truesize (SocketPairModel::skb_shape), allocated while the charge is
// below sk_sndbuf. Returns the bytes queued before the charge reached sk_sndbuf, and the charge.
std::pair<uint64_t, uint64_t> socket_write(uint64_t bytes) {
  SocketPairModel pair;
  uint64_t queued = 0, charged = 0;
  while (queued < bytes && charged < pair.sndbuf_bytes(0)) {
    const uint64_t skb = std::min<uint64_t>(bytes - queued, pair.max_skb_bytes(0));
    charged += pair.skb_shape(static_cast<uint32_t>(skb)).truesize;
    queued += skb;
  }
  return {queued, charged};
}

// As `pipepool sim threshold` does (tools/sim_command.cpp): every exploration allocates payloads
// and socket queues of 200+ KiB; served from fresh mmaps, their page faults take 90% of the time.
[[maybe_unused]] const bool malloc_tuned = [] {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return true;
}();

ThresholdOptions socket_threshold(Strategy strategy) {
  ThresholdOptions o;
  o.strategy = strategy;
  o.transport = Transport::SocketPair;  // sndbuf 212992, the kernel's default
  // Around the boundary only, to keep the test short under ASan (the whole default range gives the
  // same answers: sim/README.md, "Thresholds over a socketpair").
  const bool batched = strategy == Strategy::Batched;
  o.min_bytes = batched ? 208'000 : 218'000;
  o.max_bytes = 220'000;
  o.grid_bytes = batched ? 128 : 64;
  return o;
}

TEST(Threshold, OnADefaultSocketpairUnbatchedDeadlocksFromOneByteOverWhatOneWriterQueues) {
  const ThresholdOptions o = socket_threshold(Strategy::Unbatched);
  // One writer queues six 36544-byte skbs (the sixth allocated at 5 * 37120 = 185600 charged, below
  // 212992) before it must sleep: 219264 bytes, not a whole number of pages nor sk_sndbuf.
  const uint64_t fill = threshold_capacity_bytes(o);
  EXPECT_EQ(fill, 6u * 36544u);
  EXPECT_EQ(socket_write(1'000'000).first, fill);
  const ThresholdResult r = find_threshold(o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_TRUE(r.task.smallest && r.result.smallest);
  EXPECT_EQ(*r.task.smallest, fill + 1 - kHeader);  // 219233: the frame does not fit
  EXPECT_EQ(*r.result.smallest, fill + 1 - kHeader);
  EXPECT_TRUE(r.task.monotone);
  EXPECT_TRUE(r.result.monotone);
  EXPECT_TRUE(r.task.complete && r.result.complete);
  ASSERT_TRUE(r.task.witness && r.task.witness->deadlock);
  EXPECT_TRUE(r.task.witness->deadlock->processes.at(kParentProcess).pipe->socket);
  EXPECT_TRUE(r.corner_deadlocks);
}

TEST(Threshold, OnADefaultSocketpairBatchedDeadlocksWhenTheTaskFramesChargeReachesTheBuffer) {
  const ThresholdOptions o = socket_threshold(Strategy::Batched);
  const ThresholdResult r = find_threshold(o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_TRUE(r.task.smallest && r.result.smallest);
  // Batched writes each task frame and then a 32-byte RunBatch frame. The RunBatch frame of the
  // first batch cannot get an skb once the task frame alone has charged sk_sndbuf: the smallest
  // such frame is 209025 bytes (five 36544-byte skbs and one of 26305, whose 1729-byte head takes
  // a 4096-byte slab: 214528 charged; one byte less, a 2048-byte slab: 212480, below 212992).
  uint64_t frame = 1;
  while (socket_write(frame).second < 212'992) ++frame;
  EXPECT_EQ(frame, 209'025u);
  EXPECT_EQ(socket_write(frame - 1).second, 212'480u);
  EXPECT_EQ(socket_write(frame).second, 214'528u);
  EXPECT_EQ(*r.task.smallest, frame - kHeader);
  // The result frame, written alone into an empty socket, deadlocks once it does not fit.
  EXPECT_EQ(*r.result.smallest, threshold_capacity_bytes(o) + 1 - kHeader);
  EXPECT_TRUE(r.task.monotone);
  EXPECT_TRUE(r.result.monotone);
  EXPECT_TRUE(r.task.complete && r.result.complete);
}

}  // namespace
}  // namespace pipepool::sim
