// Tests of the worker's channel (sim/channel.hpp): it routes every call to the model the kernel's
// answer comes from, and a socket world behaves as SocketPairModel says.
#include "channel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "explore.hpp"
#include "report.hpp"
#include "scenario.hpp"
#include "testing_scenarios.hpp"
#include "threshold.hpp"
#include "world.hpp"

namespace pipepool::sim {
namespace {

// A deterministic sequence of sizes and choices (no global RNG in sim/).
struct Lcg {
  uint64_t state;
  uint64_t next() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  }
};

// The same random calls on a Channel over a socketpair and on a SocketPairModel, end for end: the
// parent's end 0 writes the task direction and reads the result direction, the worker's end 1 the
// other way round. Every answer, and every readiness, must be the model's.
TEST(Channel, ASocketChannelGivesSocketPairModelsAnswersEndForEnd) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Lcg rng{seed};
    Channel channel(SocketConfig{});
    SocketPairModel model;
    std::vector<std::byte> data(300'000);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 7);
    std::array<size_t, 2> blocked_at{};  // bytes so far of a blocked write, per direction
    std::array<bool, 2> blocked{};
    std::array<size_t, 2> sizes{};
    std::vector<std::byte> out_a(70'000), out_b(70'000);
    for (int op = 0; op < 400; ++op) {
      const Direction d = rng.next() % 2 ? Direction::Task : Direction::Result;
      const int di = d == Direction::Task ? 0 : 1;
      const int writer = di, reader = di ^ 1;
      const std::string where = "seed " + std::to_string(seed) + " op " + std::to_string(op);
      switch (rng.next() % 3) {
        case 0: {  // write, or continue a blocked write once woken
          const std::span<const std::byte> part(data.data(), sizes[di] ? sizes[di] : 1);
          const std::span<const std::byte> parts[1] = {part};
          if (blocked[di]) {
            ASSERT_EQ(channel.writer_can_proceed(d), model.writer_can_proceed(writer)) << where;
            if (!model.writer_can_proceed(writer)) break;
            const auto a = channel.continue_writev(d, parts, blocked_at[di]);
            const auto b = model.continue_writev(writer, parts, blocked_at[di]);
            ASSERT_EQ(a.result, b.result) << where;
            ASSERT_EQ(a.blocked, b.blocked) << where;
            blocked[di] = b.blocked;
            blocked_at[di] = b.blocked ? static_cast<size_t>(b.result) : 0;
            break;
          }
          sizes[di] = 1 + rng.next() % (rng.next() % 2 ? 200 : 150'000);
          const std::span<const std::byte> fresh(data.data(), sizes[di]);
          const std::span<const std::byte> fresh_parts[1] = {fresh};
          const bool nonblocking = rng.next() % 2;
          const auto a = channel.writev(d, fresh_parts, nonblocking);
          const auto b = model.writev(writer, fresh_parts, nonblocking);
          ASSERT_EQ(a.result, b.result) << where;
          ASSERT_EQ(a.written, b.written) << where;
          ASSERT_EQ(a.blocked, b.blocked) << where;
          blocked[di] = b.blocked;
          blocked_at[di] = b.blocked ? static_cast<size_t>(b.result) : 0;
          break;
        }
        case 1: {  // a read of the direction's reader
          const size_t want = 1 + rng.next() % (rng.next() % 2 ? 100 : out_a.size());
          ASSERT_EQ(channel.reader_can_proceed(d), model.reader_can_proceed(reader)) << where;
          const bool inner = channel.read_is_inner(d, want);
          const size_t outq_before = model.outq_bytes(writer);
          const auto a = channel.read(d, std::span(out_a).first(want), true);
          const auto b = model.read(reader, std::span(out_b).first(want), true);
          ASSERT_EQ(a.result, b.result) << where;
          if (b.result > 0) {
            ASSERT_TRUE(std::equal(out_a.begin(), out_a.begin() + b.result, out_b.begin()))
                << where;
          }
          // An inner read frees no skb: the writer's charge is unchanged.
          if (inner) {
            ASSERT_EQ(model.outq_bytes(writer), outq_before) << where;
          }
          break;
        }
        case 2:
          break;
      }
      // The parent's epoll on end 0, and the report's terms, after every call.
      ASSERT_EQ(channel.parent_read_ready(), model.readable(0) || model.hup(0) || model.err(0));
      ASSERT_EQ(channel.parent_write_ready(), model.writable(0) || model.hup(0) || model.err(0));
      for (Direction x : {Direction::Task, Direction::Result}) {
        const int w = x == Direction::Task ? 0 : 1;
        const DirectionState s = channel.state(x);
        ASSERT_EQ(s.queued_bytes, model.inq_bytes(w ^ 1)) << where;
        ASSERT_EQ(s.queued_units, model.skbs_queued(w ^ 1)) << where;
        ASSERT_EQ(s.charged_bytes, model.outq_bytes(w)) << where;
        ASSERT_EQ(s.charge_limit, model.sndbuf_bytes(w)) << where;
        ASSERT_EQ(s.describe, model.describe(w ^ 1)) << where;
      }
    }
    // The worker dies: the kernel closes end 1. The parent's blocked write (if any) is woken, and
    // both see what the model says: EPIPE or ECONNRESET, end of file after the queued bytes.
    channel.close_worker_ends();
    model.close(1);
    // The fingerprint sees the close (and a fresh channel is a different state).
    EXPECT_NE(channel.state_hash(0), Channel(SocketConfig{}).state_hash(0));
    EXPECT_TRUE(channel.parent_read_ready());
    EXPECT_TRUE(channel.parent_write_ready());
    if (blocked[0]) {
      ASSERT_TRUE(channel.writer_can_proceed(Direction::Task));
      const std::span<const std::byte> part(data.data(), sizes[0]);
      const std::span<const std::byte> parts[1] = {part};
      const auto a = channel.continue_writev(Direction::Task, parts, blocked_at[0]);
      const auto b = model.continue_writev(0, parts, blocked_at[0]);
      EXPECT_EQ(a.result, b.result);
      EXPECT_FALSE(a.blocked);
    }
    const std::span<const std::byte> one(data.data(), 10);
    const std::span<const std::byte> one_part[1] = {one};
    const auto a = channel.writev(Direction::Task, one_part, false);
    const auto b = model.writev(0, one_part, false);
    EXPECT_EQ(a.result, b.result);
    EXPECT_TRUE(a.result == -EPIPE || a.result == -ECONNRESET) << a.result;
    for (;;) {
      const auto ra = channel.read(Direction::Result, out_a, true);
      const auto rb = model.read(0, out_b, true);
      ASSERT_EQ(ra.result, rb.result);
      if (ra.result <= 0) break;
    }
  }
}

// The same for pipes: the task direction is the first PipeModel, the result direction the second.
TEST(Channel, APipeChannelGivesEachPipeModelsAnswers) {
  Lcg rng{7};
  Channel channel(PipeConfig{});
  PipeModel task, result;
  std::vector<std::byte> data(100'000, std::byte{'x'});
  std::vector<std::byte> out_a(70'000), out_b(70'000);
  for (int op = 0; op < 400; ++op) {
    const Direction d = rng.next() % 2 ? Direction::Task : Direction::Result;
    PipeModel& model = d == Direction::Task ? task : result;
    if (rng.next() % 2) {
      const std::span<const std::byte> part(data.data(), 1 + rng.next() % 20'000);
      const std::span<const std::byte> parts[1] = {part};
      const auto a = channel.writev(d, parts, true);
      const auto b = model.writev(parts, true);
      ASSERT_EQ(a.result, b.result) << op;
    } else {
      const size_t want = 1 + rng.next() % 9000;
      const auto a = channel.read(d, std::span(out_a).first(want), true);
      const auto b = model.read(std::span(out_b).first(want), true);
      ASSERT_EQ(a.result, b.result) << op;
    }
    ASSERT_EQ(channel.parent_read_ready(), result.readable() || result.hup());
    ASSERT_EQ(channel.parent_write_ready(), task.writable() || task.err());
    const DirectionState s = channel.state(d);
    ASSERT_EQ(s.queued_bytes, model.bytes());
    ASSERT_EQ(s.queued_units, model.slots_used());
    ASSERT_EQ(s.charged_bytes, uint64_t{model.slots_used()} * 4096);
    ASSERT_EQ(s.charge_limit, 65536u);
    ASSERT_EQ(s.describe, model.describe());
  }
  channel.close_worker_ends();
  EXPECT_TRUE(channel.state(Direction::Task).has_writer);
  EXPECT_FALSE(channel.state(Direction::Task).has_reader);
  EXPECT_FALSE(channel.state(Direction::Result).has_writer);
  EXPECT_TRUE(channel.parent_write_ready());  // POLLERR: no reader
  EXPECT_TRUE(channel.parent_read_ready());   // POLLHUP: no writer
}

}  // namespace
}  // namespace pipepool::sim

namespace pipepool::sim {
namespace {

using testing::exhaustive;

// lambda_multiprocessing's shape on a socketpair: two back-to-back apply_async on one worker.
Scenario two_tasks_on_a_socket(Strategy strategy, uint64_t task_bytes, uint64_t result_bytes) {
  return testing::two_tasks(strategy, task_bytes, result_bytes, Transport::SocketPair);
}

TEST(SocketWorld, UnbatchedTwoTasksLargerThanTheSocketBufferDeadlockAndTheReportSaysTheCharge) {
  const ExploreResult r =
      explore(two_tasks_on_a_socket(Strategy::Unbatched, 300'000, 300'000), exhaustive(1));
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_TRUE(r.counterexample.has_value());
  ASSERT_EQ(r.counterexample->status, RunStatus::Deadlock) << r.counterexample->failure;
  const DeadlockReport& d = *r.counterexample->deadlock;
  EXPECT_EQ(d.cycle, (std::vector<uint32_t>{kParentProcess, kFirstWorkerProcess, kParentProcess}));
  const ProcessWait& parent = d.processes.at(kParentProcess);
  ASSERT_EQ(parent.call, "write");
  ASSERT_TRUE(parent.pipe.has_value());
  EXPECT_TRUE(parent.pipe->socket);
  EXPECT_EQ(parent.pipe->name, "socket of worker 0 (tasks)");
  EXPECT_EQ(parent.pipe->charge_limit_bytes, 212992u);
  // A sleeping writer is woken only when its charge falls to a quarter of sk_sndbuf: in a deadlock
  // it holds more than that.
  EXPECT_GT((parent.pipe->charged_bytes + 2) * 4, 212992u);
  EXPECT_NE(parent.text.find("-byte frame to the socket of worker 0: "), std::string::npos)
      << parent.text;
  EXPECT_NE(parent.text.find(" of 212,992 bytes of send buffer charged"), std::string::npos)
      << parent.text;
  const ProcessWait& worker = d.processes.at(kFirstWorkerProcess);
  ASSERT_EQ(worker.call, "write");
  EXPECT_EQ(worker.pipe->name, "socket of worker 0 (results)");
  EXPECT_EQ(worker.call_bytes, 300'032u);
  EXPECT_NE(worker.text.find("blocked in writev(2) of a 300,032-byte frame to its socket: "),
            std::string::npos)
      << worker.text;
  // The worker's result is queued unread, nothing of it freed: exactly what a SocketPairModel
  // queues for one blocking write of that frame from end 1 while nobody reads end 0.
  SocketPairModel alone;
  const std::vector<std::byte> frame(300'032);
  const auto w = alone.write(1, frame, /*nonblocking=*/false);
  ASSERT_TRUE(w.blocked);
  EXPECT_EQ(worker.done_bytes, static_cast<uint64_t>(w.result));
  EXPECT_EQ(worker.pipe->charged_bytes, alone.outq_bytes(1));
  EXPECT_EQ(worker.pipe->bytes, alone.inq_bytes(0));
  EXPECT_EQ(worker.pipe->skbs, alone.skbs_queued(0));
  EXPECT_EQ(worker.pipe->describe, alone.describe(0));
  const std::string text = format_deadlock(d, "");
  EXPECT_NE(text.find("sockets:\n"), std::string::npos) << text;
}

TEST(SocketWorld, UnbatchedTwoTasksWellBelowTheSocketBufferAreCertified) {
  const ExploreResult r =
      explore(two_tasks_on_a_socket(Strategy::Unbatched, 50'000, 50'000), exhaustive(2));
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_FALSE(r.counterexample.has_value()) << format_deadlock(*r.counterexample->deadlock, "");
  EXPECT_TRUE(r.complete) << r.cut_reason;
  EXPECT_EQ(verdict(r), "no-failure");
  EXPECT_GT(r.schedules + r.pruned, 10u);  // most branches end at a cached state
  EXPECT_TRUE(r.determinism.ok);
}

TEST(SocketWorld, BatchedDeadlocksAndEpollIsCertifiedAboveTheSocketBuffer) {
  const ExploreResult batched =
      explore(two_tasks_on_a_socket(Strategy::Batched, 300'000, 300'000), exhaustive(1));
  ASSERT_TRUE(batched.error.empty()) << batched.error;
  ASSERT_TRUE(batched.counterexample.has_value());
  EXPECT_EQ(batched.counterexample->status, RunStatus::Deadlock);
  // Above the 212,992-byte buffer: with two preemptions, and twice the buffer with one.
  for (const auto& [size, bound] : {std::pair<uint64_t, int32_t>{250'000, 2}, {500'000, 1}}) {
    const ExploreResult r =
        explore(two_tasks_on_a_socket(Strategy::Epoll, size, size), exhaustive(bound));
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_FALSE(r.counterexample.has_value()) << size << ": " << r.counterexample->failure;
    EXPECT_TRUE(r.complete) << r.cut_reason;
    EXPECT_EQ(verdict(r), "no-failure") << size;
    EXPECT_GT(r.schedules + r.pruned, 10u) << size;
    EXPECT_TRUE(r.determinism.ok) << size;
  }
}

// The socket's state is in the fingerprint and its inner reads in the partial-order reduction:
// neither the state cache nor the reductions change a verdict on sockets, only the work. Sizes on
// both sides of Unbatched's threshold (219,233) and Batched's (208,993), and two workers.
TEST(SocketWorld, TheStateCacheAndTheReductionsChangeNoVerdictOnSockets) {
  Scenario two_workers = two_tasks_on_a_socket(Strategy::Epoll, 150'000, 150'000);
  two_workers.workers = 2;
  two_workers.scheduler = SchedulerKind::RoundRobin;
  two_workers.calls.push_back(two_workers.calls[0]);
  struct Case {
    Scenario scenario;
    bool deadlocks;
    int32_t bound;  // two workers: 1 (489 schedules without reductions; 11,803 with bound 2)
  };
  for (const Case& c :
       {Case{two_tasks_on_a_socket(Strategy::Unbatched, 219'232, 219'232), false, 2},
        Case{two_tasks_on_a_socket(Strategy::Unbatched, 219'233, 219'233), true, 2},
        Case{two_tasks_on_a_socket(Strategy::Batched, 208'992, 100), false, 2},
        Case{two_tasks_on_a_socket(Strategy::Batched, 208'993, 230'000), true, 2},
        Case{two_workers, false, 1}}) {
    ExploreOptions with = exhaustive(c.bound);
    with.stop_at_first_failure = false;
    with.trace_counterexample = false;
    ExploreOptions bare = with;
    bare.state_cache_entries = 0;
    bare.coalesce = false;
    bare.por = false;
    const ExploreResult a = explore(c.scenario, with);
    const ExploreResult b = explore(c.scenario, bare);
    ASSERT_TRUE(a.error.empty() && b.error.empty()) << a.error << b.error;
    EXPECT_TRUE(a.complete && b.complete) << to_text(c.scenario);
    EXPECT_EQ(a.failures > 0, c.deadlocks) << to_text(c.scenario);
    EXPECT_EQ(b.failures > 0, c.deadlocks) << to_text(c.scenario);
    EXPECT_LE(a.schedules, b.schedules) << to_text(c.scenario);
  }
}

TEST(SocketWorld, EveryTaskCompletesOnASocketWithEveryStrategyAndSeveralWorkers) {
  for (Strategy strategy : {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched}) {
    Scenario s;
    s.strategy = strategy;
    s.workers = 3;
    s.transport = Transport::SocketPair;
    s.sndbuf_bytes = 20'000;
    Call map;
    map.kind = Call::Kind::Map;
    map.items = 12;
    map.chunksize = 1;
    map.item = {3000, 2000, 1000};
    s.calls = {map};
    World world(make_script(s), {});
    while (const uint64_t runnable = world.poll()) world.step(std::countr_zero(runnable));
    EXPECT_EQ(world.status(), RunStatus::Finished)
        << to_string(strategy) << ": " << world.failure();
    EXPECT_EQ(world.tasks_completed(), 12u);
  }
}

TEST(SocketWorld, TheScenarioTextCarriesTheChannelAndRoundTrips) {
  Scenario s;
  std::string error;
  ASSERT_TRUE(
      parse_scenario("strategy unbatched\ntransport socketpair\nsndbuf 100000\n"
                     "framing python\ntask-overhead 100\nresult-overhead 60\n"
                     "apply_async 1K 2K 0\n",
                     s, error))
      << error;
  EXPECT_EQ(s.transport, Transport::SocketPair);
  EXPECT_EQ(s.sndbuf_bytes, 100000u);
  EXPECT_EQ(s.framing, Framing::Python);
  EXPECT_EQ(s.python_task_overhead_bytes, 100u);
  EXPECT_EQ(s.python_result_overhead_bytes, 60u);
  const std::string text = to_text(s);
  EXPECT_NE(text.find("transport socketpair\nsndbuf 100000\nframing python\ntask-overhead 100\n"
                      "result-overhead 60\n"),
            std::string::npos)
      << text;
  Scenario back;
  ASSERT_TRUE(parse_scenario(text, back, error)) << error;
  EXPECT_EQ(to_text(back), text);
  EXPECT_EQ(back.transport, s.transport);
  EXPECT_EQ(back.sndbuf_bytes, s.sndbuf_bytes);
  EXPECT_EQ(back.framing, s.framing);
  EXPECT_EQ(back.python_task_overhead_bytes, s.python_task_overhead_bytes);
  EXPECT_EQ(back.python_result_overhead_bytes, s.python_result_overhead_bytes);
  // Pipes print none of it; a socket prints its buffer even at the default.
  EXPECT_EQ(to_text(Scenario{}).find("transport"), std::string::npos);
  Scenario sock;
  sock.transport = Transport::SocketPair;
  EXPECT_NE(to_text(sock).find("sndbuf 212992\n"), std::string::npos);
  for (const char* bad : {"transport tcp\n", "framing json\n", "sndbuf many\n",
                          "task-overhead -1\n", "sndbuf 3G\n"}) {
    Scenario x;
    EXPECT_FALSE(parse_scenario(bad, x, error)) << bad;
    EXPECT_EQ(error.rfind("line 1: ", 0), 0u) << error;
  }
  Scenario tiny;
  tiny.transport = Transport::SocketPair;
  tiny.sndbuf_bytes = 100;
  tiny.calls = s.calls;
  EXPECT_THROW((void)make_script(tiny), std::invalid_argument);
  // A size of the other transport would be ignored: it is refused instead, naming the setting.
  for (const char* text : {"sndbuf 100000\napply_async 1K 2K 0\n",
                           "transport socketpair\npipe-pages 4\napply_async 1K 2K 0\n"}) {
    Scenario x;
    ASSERT_TRUE(parse_scenario(text, x, error)) << error;
    try {
      (void)make_script(x);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(x.transport == Transport::Pipes ? "sndbuf 100000"
                                                                           : "pipe-pages 4"),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace pipepool::sim
