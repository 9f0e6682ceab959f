// Strategy::ZeroCopy: payloads spliced into the pipes with vmsplice(2). Sizes on both sides of
// the splice threshold and of page boundaries, memory that the parent and the workers reuse while
// spliced pages may still be in a pipe (checked byte for byte), a worker killed while it splices,
// and the channels the strategy rejects. Every test is bounded by the watchdog of test_main.cpp.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "pipepool/pipepool.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using pipepool::Framing;
using pipepool::Options;
using pipepool::SchedulerKind;
using pipepool::Strategy;
using pipepool::Transport;

constexpr size_t kMiB = size_t{1} << 20;

// Byte i of the payload `seed` names: every offset and every seed differ, so a page of another
// payload, or a stale page of an earlier one, is seen.
std::string pattern(uint64_t seed, size_t bytes) {
  std::string out(bytes, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < bytes; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x);
  }
  return out;
}

std::string echo(std::string s) {
  return s;
}

// The result is a fresh pattern: the worker's memory for it is reused from one task to the next
// (ChildEngine::result_buffer), which is what retention must guard.
std::string make_pattern(uint64_t seed, size_t bytes) {
  return pattern(seed, bytes);
}

Options zerocopy(int processes, bool enlarge) {
  return {.processes = processes, .strategy = Strategy::ZeroCopy, .enlarge_pipes = enlarge};
}

TEST(ZeroCopy, NameAndThreshold) {
  pipepool::Pool pool(zerocopy(1, false));
  EXPECT_EQ(pool.strategy_name(), "zerocopy");
  EXPECT_EQ(pipepool::builtin_strategy(Strategy::ZeroCopy).splice_min_payload_bytes(),
            pipepool::kZeroCopyMinPayloadBytes);
  EXPECT_EQ(pipepool::builtin_strategy(Strategy::Epoll).splice_min_payload_bytes(), 0u);
}

TEST(ZeroCopy, RejectsSocketpairsAndPythonFraming) {
  Options sockets = zerocopy(1, true);
  sockets.transport = Transport::SocketPair;
  try {
    pipepool::Pool pool(sockets);
    ADD_FAILURE() << "a zerocopy pool over socketpairs was built";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("zerocopy"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Transport::SocketPair"), std::string::npos) << e.what();
  }
  Options python = zerocopy(1, true);
  python.framing = Framing::Python;
  python.python_task_overhead_bytes = 100;
  python.python_result_overhead_bytes = 60;
  try {
    pipepool::Pool pool(python);
    ADD_FAILURE() << "a zerocopy pool with Python framing was built";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("zerocopy"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Framing::Python"), std::string::npos) << e.what();
  }
}

// A custom strategy that splices but blocks: rejected, its acknowledgements could wait forever.
class BlockingSplicer final : public pipepool::IoStrategy {
 public:
  std::string_view name() const override { return "blocking-splicer"; }
  bool parent_blocking_writes() const override { return true; }
  bool parent_sends_run_batch() const override { return false; }
  pipepool::ChildMode child_mode() const override { return pipepool::ChildMode::OneAtATime; }
  uint64_t splice_min_payload_bytes() const override { return 4096; }
};

TEST(ZeroCopy, RejectsASplicingStrategyWhoseParentBlocks) {
  Options o{.processes = 1};
  o.custom_strategy = std::make_shared<BlockingSplicer>();
  EXPECT_THROW(pipepool::Pool pool(o), std::invalid_argument);
}

// 1 byte to 16 MiB, on both sides of every page boundary and of the splice threshold, with the
// default 64 KiB pipe and with an enlarged one, on 1 and 2 workers.
TEST(ZeroCopy, PayloadsFromOneByteTo16MiBAcrossPageBoundaries) {
  const std::vector<size_t> sizes = {
      1,
      4095,
      4096,
      4097,
      pipepool::kZeroCopyMinPayloadBytes - 1,
      pipepool::kZeroCopyMinPayloadBytes,
      pipepool::kZeroCopyMinPayloadBytes + 1,
      3 * 4096 + 17,
      kMiB - 1,
      kMiB + 4097,
      16 * kMiB,
  };
  for (bool enlarge : {false, true}) {
    for (int workers : {1, 2}) {
      pipepool::Pool pool(zerocopy(workers, enlarge));
      std::vector<std::string> inputs;
      for (size_t i = 0; i < sizes.size(); ++i) inputs.push_back(pattern(i + 1, sizes[i]));
      auto outputs = pool.map(echo, inputs, 1);
      ASSERT_EQ(outputs.size(), inputs.size());
      for (size_t i = 0; i < inputs.size(); ++i) {
        EXPECT_TRUE(outputs[i] == inputs[i]) << "payload of " << sizes[i] << " bytes, " << workers
                                             << " workers, enlarged " << enlarge;
      }
    }
  }
}

TEST(ZeroCopy, LargePayloadsBothWaysWithEveryScheduler) {
  for (SchedulerKind k :
       {SchedulerKind::Demand, SchedulerKind::ShortestBacklog, SchedulerKind::RoundRobin}) {
    Options o = zerocopy(1, false);
    o.scheduler = k;
    pipepool::Pool pool(o);
    const std::string big = pattern(7, 16 * kMiB);
    auto a = pool.apply_async(echo, big);
    auto b = pool.apply_async(echo, big);
    EXPECT_TRUE(a.get() == big);
    EXPECT_TRUE(b.get() == big);
    auto first = pool.map_async(echo, std::vector<std::string>(3, big));
    auto second = pool.map(echo, std::vector<std::string>(3, big));
    for (const std::string& s : second) EXPECT_TRUE(s == big);
    for (const std::string& s : first.get()) EXPECT_TRUE(s == big);
  }
}

// Memory reuse never shows. The parent: one buffer, rewritten after every submission (the pool
// encodes a copy that its task record owns until the result is in). The workers: each result is
// built in the memory of an earlier one (result_buffer) as soon as that one's Ack came; the
// callbacks slow the parent's I/O thread, so spliced results wait in the pipe while their workers
// go on computing the next ones. Every byte of every result is checked.
TEST(ZeroCopy, ReusedMemoryIsNeverObserved) {
  for (int workers : {1, 2}) {
    Options o = zerocopy(workers, true);
    o.demand_max_in_flight = 8;
    pipepool::Pool pool(o);
    constexpr int kTasks = 48;
    constexpr size_t kResultBytes = 256 * 1024 + 123;
    std::string buffer;
    std::vector<pipepool::AsyncResult<std::string>> results;
    for (int i = 0; i < kTasks; ++i) {
      buffer = pattern(1000 + i, 100 * 1024 + i);  // the same std::string, reused
      pipepool::Callbacks<std::string> slow{[](const std::string&) {
        std::this_thread::sleep_for(2ms);  // on the I/O thread: results wait in the pipes
      }};
      results.push_back(pool.apply_async(slow, echo, buffer));
      results.push_back(pool.apply_async(make_pattern, uint64_t(5000 + i), kResultBytes));
    }
    for (int i = 0; i < kTasks; ++i) {
      EXPECT_TRUE(results[2 * i].get() == pattern(1000 + i, 100 * 1024 + i)) << "echo " << i;
      EXPECT_TRUE(results[2 * i + 1].get() == pattern(5000 + i, kResultBytes)) << "result " << i;
    }
  }
}

// The worker is killed while it splices a result into a full pipe: the parent's I/O thread is
// held in a callback (so nobody reads) while the worker's 8 MiB vmsplice waits on a 64 KiB pipe;
// a thread of the worker kills it 200 ms into that wait. WorkerLost, no hang, no process left.
TEST(ZeroCopy, WorkerKilledMidSpliceIsWorkerLost) {
  Options o = zerocopy(1, false);
  o.scheduler = SchedulerKind::RoundRobin;  // both tasks go at once (Demand would hold the second)
  pipepool::Pool pool(o);
  pipepool::Callbacks<int> hold{[](const int&) { std::this_thread::sleep_for(600ms); }};
  auto first = pool.apply_async(
      hold, [](int x) { return x; }, 1);
  auto second = pool.apply_async(
      [](size_t n) {
        // By now the parent has read the first result and sits in its callback for 600 ms.
        std::this_thread::sleep_for(100ms);
        std::thread([] {
          std::this_thread::sleep_for(200ms);
          ::kill(::getpid(), SIGKILL);
        }).detach();
        return std::string(n, 'k');
      },
      8 * kMiB);
  EXPECT_EQ(first.get(), 1);
  EXPECT_THROW(second.get(), pipepool::WorkerLost);
  // The pool goes on with a new worker.
  EXPECT_TRUE(pool.apply(echo, pattern(3, kMiB)) == pattern(3, kMiB));
  pool.close();
  pool.join();
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(2000).empty());
}

}  // namespace
