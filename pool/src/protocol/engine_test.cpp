// The protocol engines without any process: events in, requests out.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "protocol/child_engine.hpp"
#include "protocol/parent_engine.hpp"

namespace pipepool::protocol {
namespace {

// Collects the bytes the engine wants written to worker w, and marks them written.
std::string drain_writes(ParentEngine& engine, WorkerId w) {
  std::string out;
  while (engine.wants_write(w)) {
    std::vector<std::span<const std::byte>> segments;
    size_t n = engine.pending_write(w, segments);
    for (auto s : segments) out.append(reinterpret_cast<const char*>(s.data()), s.size());
    engine.bytes_written(w, n);
  }
  return out;
}

std::vector<FrameKind> kinds(const std::string& stream) {
  std::vector<FrameKind> out;
  FrameReader reader(Direction::ToWorker, 1 << 20);
  size_t pos = 0;
  while (pos < stream.size()) {
    auto buffer = reader.buffer();
    size_t n = std::min(buffer.size(), stream.size() - pos);
    std::memcpy(buffer.data(), stream.data() + pos, n);
    pos += n;
    if (reader.commit(n) == FrameReader::Status::FrameReady)
      out.push_back(reader.take().header.kind);
  }
  return out;
}

void feed(ParentEngine& engine, WorkerId w, const std::string& bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    auto buffer = engine.read_buffer(w);
    size_t n = std::min(buffer.size(), bytes.size() - pos);
    std::memcpy(buffer.data(), bytes.data() + pos, n);
    pos += n;
    engine.bytes_read(w, n);
  }
}

std::string frame(FrameKind kind, TaskId id, const std::string& payload = "") {
  auto header = encode_header(kind, id, payload.size());
  return std::string(reinterpret_cast<const char*>(header.data()), kHeaderBytes) + payload;
}

std::vector<TaskSubmission> tasks(TaskId first, int n) {
  std::vector<TaskSubmission> out;
  for (int i = 0; i < n; ++i) out.push_back({first + i, "payload" + std::to_string(first + i)});
  return out;
}

struct Fixture {
  Fixture(Strategy strategy, SchedulerKind kind, uint32_t workers, ParentConfig config = {})
      : scheduler(make_scheduler(kind)),
        engine(
            [&] {
              config.workers = workers;
              return config;
            }(),
            builtin_strategy(strategy), *scheduler) {
    for (const Command& c : engine.take_commands()) {
      EXPECT_EQ(c.kind, Command::Kind::StartWorker);
      engine.worker_started(c.worker);
    }
  }
  std::unique_ptr<Scheduler> scheduler;
  ParentEngine engine;
};

TEST(ParentEngine, DemandHoldsSlowTasksUntilAResultComesBack) {
  Fixture f(Strategy::Epoll, SchedulerKind::Demand, 2);
  f.engine.set_time(0);
  f.engine.submit(tasks(1, 5));
  EXPECT_EQ(f.engine.outstanding(0), 1u);
  EXPECT_EQ(f.engine.outstanding(1), 1u);
  EXPECT_EQ(f.engine.pending_tasks(), 3u);
  EXPECT_EQ(kinds(drain_writes(f.engine, 0)), std::vector<FrameKind>{FrameKind::Task});
  f.engine.set_time(100'000'000);  // task 1 took 100 ms: over the 1 ms queue budget
  feed(f.engine, 0, frame(FrameKind::Result, 1, "r1"));
  auto done = f.engine.take_completions();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].task, 1u);
  EXPECT_EQ(done[0].payload, "r1");
  EXPECT_EQ(f.engine.outstanding(0), 1u);  // task 3 went to the worker that freed up, alone
  EXPECT_EQ(f.engine.pending_tasks(), 2u);
}

TEST(ParentEngine, DemandPipelinesTinyTasks) {
  Fixture f(Strategy::Epoll, SchedulerKind::Demand, 1);
  f.engine.set_time(0);
  f.engine.submit(tasks(1, 200));
  EXPECT_EQ(f.engine.outstanding(0), 1u);  // no estimate yet: one at a time
  drain_writes(f.engine, 0);
  f.engine.set_time(20'000);  // 20 us per task: 1 ms holds 50 of them
  feed(f.engine, 0, frame(FrameKind::Result, 1, "r"));
  EXPECT_EQ(f.engine.outstanding(0), 50u);
  EXPECT_EQ(f.engine.pending_tasks(), 149u);
}

TEST(ParentEngine, BatchedSendsOneRunBatchPerWorkerUsedPerCall) {
  Fixture f(Strategy::Batched, SchedulerKind::RoundRobin, 2);
  f.engine.submit(tasks(1, 3));
  f.engine.submit(tasks(4, 1));
  // Blocking discipline: frames go out one at a time, in the order they were produced.
  std::vector<std::pair<WorkerId, FrameKind>> order;
  while (auto w = f.engine.blocking_write_due()) {
    std::vector<std::span<const std::byte>> segments;
    size_t n = f.engine.pending_write(*w, segments);
    std::string bytes;
    for (auto s : segments) bytes.append(reinterpret_cast<const char*>(s.data()), s.size());
    ASSERT_EQ(kinds(bytes).size(), 1u);  // one frame per blocking write
    order.push_back({*w, kinds(bytes)[0]});
    f.engine.bytes_written(*w, n);
  }
  using K = FrameKind;
  std::vector<std::pair<WorkerId, FrameKind>> expected{
      {0, K::Task},     {1, K::Task}, {0, K::Task},    {0, K::RunBatch},
      {1, K::RunBatch}, {1, K::Task}, {1, K::RunBatch}};
  EXPECT_EQ(order, expected);
}

TEST(ParentEngine, EpollNeverAsksForABlockingWrite) {
  Fixture f(Strategy::Epoll, SchedulerKind::ShortestBacklog, 2);
  f.engine.submit(tasks(1, 10));
  EXPECT_FALSE(f.engine.blocking_write_due());
  EXPECT_TRUE(f.engine.wants_write(0) || f.engine.wants_write(1));
}

TEST(ParentEngine, DeathFailsTheRunningTaskAndRequeuesTheRest) {
  Fixture f(Strategy::Epoll, SchedulerKind::ShortestBacklog, 1);
  f.engine.submit(tasks(1, 3));
  drain_writes(f.engine, 0);
  feed(f.engine, 0, frame(FrameKind::Result, 1, "ok"));
  f.engine.result_eof(0);
  f.engine.worker_exited(0, {9, -1, "killed by signal 9 (SIGKILL)"});
  auto done = f.engine.take_completions();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].kind, Completion::Kind::Result);
  EXPECT_EQ(done[1].task, 2u);  // the one it was running
  EXPECT_EQ(done[1].kind, Completion::Kind::WorkerLost);
  EXPECT_EQ(done[1].signal, 9);
  EXPECT_NE(done[1].message.find("SIGKILL"), std::string::npos);
  // Task 3 never started: it waits for the replacement, which gets it first.
  auto commands = f.engine.take_commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].kind, Command::Kind::StartWorker);
  EXPECT_EQ(f.engine.pending_tasks(), 1u);
  f.engine.worker_started(0);
  EXPECT_EQ(f.engine.outstanding(0), 1u);
  EXPECT_EQ(f.engine.stats().workers_lost, 1u);
}

TEST(ParentEngine, RetriesAreBounded) {
  Fixture f(Strategy::Epoll, SchedulerKind::Demand, 1, ParentConfig{.max_retries = 1});
  f.engine.submit(tasks(1, 1));
  for (int death = 0; death < 2; ++death) {
    drain_writes(f.engine, 0);
    f.engine.result_eof(0);
    f.engine.worker_exited(0, {0, 139, "exited with code 139"});
    f.engine.take_commands();
    f.engine.worker_started(0);
  }
  auto done = f.engine.take_completions();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].kind, Completion::Kind::WorkerLost);
  EXPECT_EQ(f.engine.stats().tasks_retried, 1u);
}

TEST(ParentEngine, MalformedResultIsAProtocolErrorAndTheWorkerIsKilled) {
  Fixture f(Strategy::Epoll, SchedulerKind::Demand, 1);
  f.engine.submit(tasks(1, 1));
  drain_writes(f.engine, 0);
  std::string bad = frame(FrameKind::Result, 1, "x");
  bad[0] = 'Z';
  feed(f.engine, 0, bad.substr(0, kHeaderBytes));
  auto commands = f.engine.take_commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].kind, Command::Kind::KillWorker);
  EXPECT_FALSE(f.engine.wants_read(0));
  f.engine.worker_exited(0, {9, -1, "killed by signal 9 (SIGKILL)"});
  auto done = f.engine.take_completions();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].kind, Completion::Kind::ProtocolError);
  EXPECT_NE(done[0].message.find("worker 0"), std::string::npos);
  EXPECT_NE(done[0].message.find("magic"), std::string::npos);
}

TEST(ParentEngine, ResultForAnotherTaskIsAProtocolError) {
  Fixture f(Strategy::Epoll, SchedulerKind::Demand, 1);
  f.engine.submit(tasks(1, 1));
  drain_writes(f.engine, 0);
  feed(f.engine, 0, frame(FrameKind::Result, 99, "x"));
  f.engine.worker_exited(0, {9, -1, "killed"});
  auto done = f.engine.take_completions();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].kind, Completion::Kind::ProtocolError);
  EXPECT_NE(done[0].message.find("task 99"), std::string::npos);
}

TEST(ParentEngine, ShutdownAfterTheLastTaskAndNoReplacement) {
  Fixture f(Strategy::Epoll, SchedulerKind::Demand, 1);
  f.engine.submit(tasks(1, 1));
  f.engine.begin_shutdown();
  // Nothing is pending, so Shutdown follows the task at once: the worker exits after running it.
  EXPECT_EQ(kinds(drain_writes(f.engine, 0)),
            (std::vector<FrameKind>{FrameKind::Task, FrameKind::Shutdown}));
  feed(f.engine, 0, frame(FrameKind::Result, 1, "r"));
  EXPECT_FALSE(f.engine.finished());
  f.engine.result_eof(0);
  f.engine.worker_exited(0, {0, 0, "exited with code 0"});
  EXPECT_TRUE(f.engine.take_commands().empty());
  EXPECT_TRUE(f.engine.finished());
  EXPECT_EQ(f.engine.stats().workers_lost, 0u);
}

TEST(ParentEngine, TerminateCompletesEverythingAndKillsEveryone) {
  Fixture f(Strategy::Unbatched, SchedulerKind::ShortestBacklog, 2);
  f.engine.submit(tasks(1, 6));
  f.engine.terminate();
  auto done = f.engine.take_completions();
  EXPECT_EQ(done.size(), 6u);
  for (const auto& c : done) EXPECT_EQ(c.kind, Completion::Kind::Terminated);
  auto commands = f.engine.take_commands();
  EXPECT_EQ(commands.size(), 2u);
  EXPECT_FALSE(f.engine.blocking_write_due());
}

TEST(ParentEngine, TimerKillsTheWorkerAndFailsOnlyThatTask) {
  Fixture f(Strategy::Epoll, SchedulerKind::ShortestBacklog, 1,
            ParentConfig{.task_timeouts = true});
  f.engine.submit(tasks(1, 2));
  drain_writes(f.engine, 0);
  feed(f.engine, 0, frame(FrameKind::Started, 1));
  auto commands = f.engine.take_commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].kind, Command::Kind::ArmTimer);
  f.engine.timer_fired(1);
  auto done = f.engine.take_completions();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].kind, Completion::Kind::Timeout);
  commands = f.engine.take_commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].kind, Command::Kind::KillWorker);
  f.engine.worker_exited(0, {9, -1, "killed"});
  EXPECT_TRUE(f.engine.take_completions().empty());  // task 2 never started: requeued
  EXPECT_EQ(f.engine.pending_tasks(), 1u);
}

TEST(ChildEngine, OneAtATimeReadsExactlyOneFrameThenRuns) {
  ChildEngine child(ChildConfig{.mode = ChildMode::OneAtATime});
  std::string stream = frame(FrameKind::Task, 1, "abc") + frame(FrameKind::Task, 2, "de");
  size_t pos = 0;
  auto action = child.next();
  ASSERT_EQ(action.op, ChildEngine::Op::Read);
  EXPECT_EQ(action.read_into.size(), kHeaderBytes);  // asks for the header only
  while ((action = child.next()).op == ChildEngine::Op::Read) {
    size_t n = std::min(action.read_into.size(), stream.size() - pos);
    std::memcpy(action.read_into.data(), stream.data() + pos, n);
    pos += n;
    child.bytes_read(n);
  }
  EXPECT_EQ(pos, kHeaderBytes + 3);  // not one byte of task 2 taken
  ASSERT_EQ(action.op, ChildEngine::Op::Run);
  EXPECT_EQ(*action.task_payload, "abc");
  child.task_finished(true, "out");
  action = child.next();
  ASSERT_EQ(action.op, ChildEngine::Op::Write);
}

TEST(ChildEngine, BatchedRunsEverythingBeforeWritingAnything) {
  ChildEngine child(ChildConfig{.mode = ChildMode::UntilRunBatch});
  std::string stream = frame(FrameKind::Task, 1, "a") + frame(FrameKind::Task, 2, "b") +
                       frame(FrameKind::RunBatch, 0);
  size_t pos = 0;
  std::vector<ChildEngine::Op> ops;
  for (int i = 0; i < 40; ++i) {
    auto action = child.next();
    if (action.op == ChildEngine::Op::Read) {
      if (pos == stream.size()) break;
      size_t n = std::min(action.read_into.size(), stream.size() - pos);
      std::memcpy(action.read_into.data(), stream.data() + pos, n);
      pos += n;
      child.bytes_read(n);
      continue;
    }
    ops.push_back(action.op);
    if (action.op == ChildEngine::Op::Run) child.task_finished(true, "r");
    if (action.op == ChildEngine::Op::Write) {
      size_t n = 0;
      for (auto s : action.write) n += s.size();
      child.bytes_written(n);
    }
  }
  using Op = ChildEngine::Op;
  EXPECT_EQ(ops, (std::vector<Op>{Op::Run, Op::Run, Op::Write, Op::Write}));
}

TEST(ChildEngine, ExitsAfterMaxTasksAndOnShutdownAndOnEof) {
  ChildEngine eof(ChildConfig{});
  ASSERT_EQ(eof.next().op, ChildEngine::Op::Read);
  eof.bytes_read(0);
  EXPECT_EQ(eof.next().op, ChildEngine::Op::Exit);
  EXPECT_EQ(eof.next().exit_code, 0);

  ChildEngine truncated(ChildConfig{});
  auto a = truncated.next();
  a.read_into[0] = std::byte{1};
  truncated.bytes_read(1);
  truncated.next();
  truncated.bytes_read(0);
  EXPECT_EQ(truncated.next().exit_code, kExitProtocolError);
}

}  // namespace
}  // namespace pipepool::protocol

namespace pipepool::protocol {
namespace {

// Feeds `stream` to `reader` in reads of at most `chunk` bytes; returns the frames, and counts
// the reads that came with huge-page advice.
std::vector<Frame> read_all(FrameReader& reader, const std::string& stream, size_t chunk,
                            int* advised = nullptr) {
  std::vector<Frame> out;
  size_t pos = 0;
  while (pos < stream.size()) {
    auto buffer = reader.buffer();
    if (advised && !reader.huge_page_advice().empty()) ++*advised;
    size_t n = std::min({buffer.size(), stream.size() - pos, chunk});
    std::memcpy(buffer.data(), stream.data() + pos, n);
    pos += n;
    EXPECT_NE(reader.commit(n), FrameReader::Status::Malformed) << reader.error();
    while (reader.has_frame()) out.push_back(reader.take());
  }
  return out;
}

TEST(FrameReader, ARecycledBufferHoldsTheNextPayloadThatFits) {
  FrameReader reader(Direction::ToWorker, 1 << 20);
  std::vector<Frame> first =
      read_all(reader, frame(FrameKind::Task, 1, std::string(5000, 'a')), 1 << 20);
  ASSERT_EQ(first.size(), 1u);
  const char* memory = first[0].payload.data();
  reader.recycle(std::move(first[0].payload));
  std::vector<Frame> second =
      read_all(reader, frame(FrameKind::Task, 2, std::string(3000, 'b')), 1 << 20);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].payload.data(), memory);
  EXPECT_EQ(second[0].payload, std::string(3000, 'b'));
}

TEST(FrameReader, LargePayloadsAskForHugePagesBeforeTheirFirstTouch) {
  // Read-ahead of 64 KiB, advice from 1 MiB: a small frame, a large one and a small one in one
  // stream, read in pieces of every size class; the frames come out whole and in order, with one
  // advised read for the large payload.
  const std::string large(3 << 20, 'x');
  const std::string stream = frame(FrameKind::Result, 1, "small") +
                             frame(FrameKind::Result, 2, large) +
                             frame(FrameKind::Result, 3, "tail");
  for (size_t chunk : {size_t{7}, size_t{100}, size_t{64 << 10}, size_t{1} << 30}) {
    FrameReader reader(Direction::ToParent, 1 << 30, 64 << 10, 1 << 20);
    int advised = 0;
    std::vector<Frame> frames = read_all(reader, stream, chunk, &advised);
    ASSERT_EQ(frames.size(), 3u) << chunk;
    EXPECT_EQ(frames[0].payload, "small");
    EXPECT_EQ(frames[1].payload.size(), large.size());
    EXPECT_TRUE(frames[1].payload == large) << chunk;
    EXPECT_EQ(frames[2].payload, "tail");
    EXPECT_EQ(advised, 1) << chunk;
  }
}

// ---- splicing (Strategy::ZeroCopy) --------------------------------------------------------------

// Feeds `bytes` to a child engine's reads until it wants something else; returns that action.
ChildEngine::Action feed_child(ChildEngine& child, const std::string& bytes) {
  size_t pos = 0;
  ChildEngine::Action action = child.next();
  while (action.op == ChildEngine::Op::Read && pos < bytes.size()) {
    const size_t n = std::min(action.read_into.size(), bytes.size() - pos);
    std::memcpy(action.read_into.data(), bytes.data() + pos, n);
    pos += n;
    child.bytes_read(n);
    action = child.next();
  }
  return action;
}

size_t total(const std::vector<std::span<const std::byte>>& segments) {
  size_t n = 0;
  for (auto s : segments) n += s.size();
  return n;
}

TEST(Outbox, GatherGivesASplicedPayloadAWriteOfItsOwn) {
  Outbox outbox;
  const WireFormat wire{};
  auto small = std::make_shared<const Payload>(std::string(10, 's'));
  auto large = std::make_shared<const Payload>(std::string(5000, 'L'));
  outbox.push(make_out_frame(wire, Direction::ToWorker, FrameKind::Task, 1, small, 0));
  outbox.push(make_out_frame(wire, Direction::ToWorker, FrameKind::Task, 2, large, 1));
  outbox.push(make_out_frame(wire, Direction::ToWorker, FrameKind::Ack, 3, nullptr, 2));
  std::vector<std::span<const std::byte>> segments;
  bool splice = true;
  // The small frame and the large one's header, copied.
  EXPECT_EQ(outbox.gather(segments, 64, 4096, splice), kHeaderBytes + 10 + kHeaderBytes);
  EXPECT_FALSE(splice);
  outbox.consume(kHeaderBytes + 10 + 20);  // a short write: 12 bytes of the header are left
  segments.clear();
  EXPECT_EQ(outbox.gather(segments, 64, 4096, splice), 12u);
  EXPECT_FALSE(splice);
  outbox.consume(12);
  segments.clear();
  // The payload alone, pointing into the shared string (no copy).
  EXPECT_EQ(outbox.gather(segments, 64, 4096, splice), 5000u);
  EXPECT_TRUE(splice);
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(segments[0].data(), large->segments()[0].data());
  outbox.consume(1000);
  segments.clear();
  EXPECT_EQ(outbox.gather(segments, 64, 4096, splice), 4000u);
  EXPECT_TRUE(splice);
  outbox.consume(4000);
  segments.clear();
  EXPECT_EQ(outbox.gather(segments, 64, 4096, splice), kHeaderBytes);  // the Ack, copied
  EXPECT_FALSE(splice);
  // Without a threshold: one writev of everything, as before.
  segments.clear();
  EXPECT_EQ(outbox.gather(segments, 64, 0, splice), kHeaderBytes);
  EXPECT_FALSE(splice);
}

TEST(ChildEngine, KeepsASplicedResultUntilTheParentAcknowledgesIt) {
  ChildEngine child(ChildConfig{
      .mode = ChildMode::OneAtATime, .read_ahead_bytes = 4096, .splice_min_payload_bytes = 100});
  ChildEngine::Action action = feed_child(child, frame(FrameKind::Task, 1, "abc"));
  ASSERT_EQ(action.op, ChildEngine::Op::Run);
  child.task_finished(true, std::string(300, 'r'));
  action = child.next();
  ASSERT_EQ(action.op, ChildEngine::Op::Write);
  EXPECT_FALSE(action.splice);
  EXPECT_EQ(total(action.write), kHeaderBytes);
  child.bytes_written(kHeaderBytes);
  action = child.next();
  ASSERT_EQ(action.op, ChildEngine::Op::Write);
  EXPECT_TRUE(action.splice);
  EXPECT_EQ(total(action.write), 300u);
  child.bytes_written(300);
  EXPECT_EQ(child.retained_results(), 1u);
  // Not reused for the next result while the parent may not have read it.
  EXPECT_EQ(child.result_buffer().capacity() >= 300, false);
  action = feed_child(child, frame(FrameKind::Ack, 1));
  EXPECT_EQ(action.op, ChildEngine::Op::Read);
  EXPECT_EQ(child.retained_results(), 0u);
  EXPECT_GE(child.result_buffer().capacity(), 300u);  // now its memory serves the next result
  // A small result is copied (writev of header and payload together) and kept by nobody.
  action = feed_child(child, frame(FrameKind::Task, 2, "x"));
  ASSERT_EQ(action.op, ChildEngine::Op::Run);
  child.task_finished(true, "tiny");
  action = child.next();
  EXPECT_FALSE(action.splice);
  EXPECT_EQ(total(action.write), kHeaderBytes + 4);
  child.bytes_written(kHeaderBytes + 4);
  EXPECT_EQ(child.retained_results(), 0u);
}

TEST(ChildEngine, AnAckForMoreThanWasWrittenIsAProtocolError) {
  ChildEngine child(ChildConfig{.splice_min_payload_bytes = 100});
  const ChildEngine::Action action = feed_child(child, frame(FrameKind::Ack, 2));
  ASSERT_EQ(action.op, ChildEngine::Op::Exit);
  EXPECT_EQ(action.exit_code, kExitProtocolError);
}

TEST(ParentEngine, AcknowledgesSplicedResultsOnlyAndNotAfterShutdown) {
  Fixture f(Strategy::ZeroCopy, SchedulerKind::RoundRobin, 1);
  f.engine.submit(tasks(1, 3));
  EXPECT_EQ(kinds(drain_writes(f.engine, 0)),
            (std::vector<FrameKind>{FrameKind::Task, FrameKind::Task, FrameKind::Task}));
  const std::string spliced(kZeroCopyMinPayloadBytes, 'r');
  feed(f.engine, 0, frame(FrameKind::Result, 1, "small"));
  EXPECT_FALSE(f.engine.wants_write(0));  // nothing spliced: no Ack
  feed(f.engine, 0, frame(FrameKind::Result, 2, spliced));
  std::string acks = drain_writes(f.engine, 0);
  ASSERT_EQ(kinds(acks), std::vector<FrameKind>{FrameKind::Ack});
  FrameHeader header;
  std::string error;
  ASSERT_TRUE(decode_header(std::span<const std::byte, kHeaderBytes>(
                                reinterpret_cast<const std::byte*>(acks.data()), kHeaderBytes),
                            Direction::ToWorker, 0, header, error))
      << error;
  EXPECT_EQ(header.task_id, 1u);  // one spliced result read so far
  f.engine.begin_shutdown();
  feed(f.engine, 0, frame(FrameKind::Result, 3, spliced));
  EXPECT_EQ(kinds(drain_writes(f.engine, 0)), std::vector<FrameKind>{FrameKind::Shutdown});
}

}  // namespace
}  // namespace pipepool::protocol
