// Framing::Python in the protocol: the bytes on the wire, the write calls the engines ask for at
// Python's 16,384-byte boundary in both directions, the exact reads, and the validation.
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "pipepool/options.hpp"
#include "protocol/child_engine.hpp"
#include "protocol/config.hpp"
#include "protocol/outbox.hpp"
#include "protocol/parent_loop.hpp"

namespace pipepool::protocol {
namespace {

constexpr uint32_t kTaskOverhead = 100;
constexpr uint32_t kResultOverhead = 60;
constexpr WireFormat kWire{true, kTaskOverhead, kResultOverhead};

std::string be32(uint32_t n) {
  std::string out(4, '\0');
  for (int i = 3; i >= 0; --i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  return out;
}

std::string header(FrameKind kind, TaskId id, uint64_t payload) {
  const HeaderBytes h = encode_header(kind, id, payload);
  return std::string(reinterpret_cast<const char*>(h.data()), kHeaderBytes);
}

// The bytes of one Python message holding a frame, built by hand from frame.hpp's table.
std::string message(FrameKind kind, TaskId id, const std::string& payload, uint32_t overhead) {
  const bool has_payload = kind_has_payload(kind);
  const uint32_t n = has_payload ? static_cast<uint32_t>(payload.size()) + overhead : 32;
  return be32(n) + header(kind, id, payload.size()) + payload +
         std::string(has_payload ? overhead - kHeaderBytes : 0, '\0');
}

std::string bytes_of(std::span<const std::span<const std::byte>> segments) {
  std::string out;
  for (auto s : segments) out.append(reinterpret_cast<const char*>(s.data()), s.size());
  return out;
}

Options python_options(Strategy strategy) {
  return Options{.strategy = strategy,
                 .scheduler = SchedulerKind::ShortestBacklog,  // every task assigned at once
                 .framing = Framing::Python,
                 .python_task_overhead_bytes = kTaskOverhead,
                 .python_result_overhead_bytes = kResultOverhead};
}

// Runs a one-worker ParentLoop until it waits, submitting `payloads` as one call; returns the
// bytes of every Write action, in order (each reported as fully written).
std::vector<std::string> parent_writes(Strategy strategy,
                                       const std::vector<std::string>& payloads) {
  const Options options = python_options(strategy);
  const EngineSetup setup = engine_setup(options, 1);
  std::shared_ptr<Scheduler> scheduler = scheduler_of(options);
  ParentLoop loop(setup, strategy_of(options), *scheduler);
  std::vector<std::string> writes;
  bool submitted = false;
  for (int step = 0; step < 1000; ++step) {
    const ParentLoop::Action a = loop.next(0);
    switch (a.op) {
      case ParentLoop::Op::StartWorker:
        loop.started(a.worker, "worker 0");
        break;
      case ParentLoop::Op::TakeInbox: {
        Inbox inbox;
        if (!submitted) {
          std::vector<TaskSubmission>& call = inbox.calls.emplace_back();
          for (size_t i = 0; i < payloads.size(); ++i) call.push_back({i + 1, payloads[i]});
          submitted = true;
        }
        loop.inbox(std::move(inbox));
        break;
      }
      case ParentLoop::Op::Write:
        EXPECT_EQ(a.blocking, strategy != Strategy::Epoll);
        writes.push_back(bytes_of(a.write));
        EXPECT_EQ(writes.back().size(), a.write_bytes);
        loop.wrote(a.write_bytes);
        break;
      case ParentLoop::Op::Wait:
        if (submitted) return writes;
        loop.waited({});
        break;
      case ParentLoop::Op::Read:
        ADD_FAILURE() << "no worker wrote anything";
        return writes;
      default:
        break;
    }
  }
  ADD_FAILURE() << "the loop never waited";
  return writes;
}

TEST(PythonFraming, ATaskIsALengthThenTheHeaderThePayloadAndZeroPadding) {
  const std::vector<std::string> writes = parent_writes(Strategy::Unbatched, {"abc"});
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0], message(FrameKind::Task, 1, "abc", kTaskOverhead));
  EXPECT_EQ(writes[0].size(), 4 + 3 + kTaskOverhead);               // Python: 4 + len(pickled task)
  EXPECT_EQ(writes[0].substr(0, 4), std::string("\0\0\0\x67", 4));  // 103, big-endian
}

TEST(PythonFraming, TheParentWritesMessagesUpTo16384BytesInOneCallAndLargerOnesInTwo) {
  for (Strategy strategy : {Strategy::Unbatched, Strategy::Batched, Strategy::Epoll}) {
    SCOPED_TRACE(std::string(to_string(strategy)));
    const std::string at(kPythonOneWriteMaxBytes - kTaskOverhead, 'a');         // N = 16,384
    const std::string above(kPythonOneWriteMaxBytes + 1 - kTaskOverhead, 'b');  // N = 16,385
    const std::vector<std::string> writes = parent_writes(strategy, {at, above, "c"});
    std::vector<size_t> sizes;
    for (const std::string& w : writes) sizes.push_back(w.size());
    std::vector<size_t> expected = {16388, 4, 16385, 4 + 1 + kTaskOverhead};
    if (strategy == Strategy::Batched) expected.push_back(36);  // RunBatch: a 32-byte message
    EXPECT_EQ(sizes, expected);
    std::string stream;
    for (const std::string& w : writes) stream += w;
    std::string want = message(FrameKind::Task, 1, at, kTaskOverhead) +
                       message(FrameKind::Task, 2, above, kTaskOverhead) +
                       message(FrameKind::Task, 3, "c", kTaskOverhead);
    if (strategy == Strategy::Batched) want += message(FrameKind::RunBatch, 0, "", 0);
    EXPECT_TRUE(stream == want);
    EXPECT_EQ(writes[1], be32(16385));  // the length by itself
  }
}

// Feeds `stream` to the child in the reads it asks for; returns the sizes it asked for.
std::vector<size_t> feed_child(ChildEngine& child, const std::string& stream, size_t& pos) {
  std::vector<size_t> asked;
  ChildEngine::Action a;
  while ((a = child.next()).op == ChildEngine::Op::Read && pos < stream.size()) {
    asked.push_back(a.read_into.size());
    const size_t n = std::min(a.read_into.size(), stream.size() - pos);
    std::memcpy(a.read_into.data(), stream.data() + pos, n);
    pos += n;
    child.bytes_read(n);
  }
  return asked;
}

TEST(PythonFraming, TheWorkerReadsExactlyTheLengthThenExactlyTheMessage) {
  // Epoll's workers read ahead with pipepool framing; with Python's, they read as Python does.
  ChildEngine child(engine_setup(python_options(Strategy::Epoll), 1).child);
  const std::string first = message(FrameKind::Task, 1, "hello", kTaskOverhead);
  const std::string stream = first + message(FrameKind::Task, 2, "next", kTaskOverhead);
  size_t pos = 0;
  EXPECT_EQ(feed_child(child, stream, pos), (std::vector<size_t>{4, 5 + kTaskOverhead}));
  EXPECT_EQ(pos, first.size());  // not one byte of the next message taken
  const ChildEngine::Action run = child.next();
  ASSERT_EQ(run.op, ChildEngine::Op::Run);
  EXPECT_EQ(run.task, 1u);
  EXPECT_EQ(*run.task_payload, "hello");
}

TEST(PythonFraming, TheWorkerWritesResultsUpTo16384BytesInOneCallAndLargerOnesInTwo) {
  for (uint64_t n : {kPythonOneWriteMaxBytes, kPythonOneWriteMaxBytes + 1}) {
    SCOPED_TRACE(n);
    ChildEngine child(engine_setup(python_options(Strategy::Unbatched), 1).child);
    const std::string task = message(FrameKind::Task, 7, "x", kTaskOverhead);
    size_t pos = 0;
    feed_child(child, task, pos);
    ASSERT_EQ(child.next().op, ChildEngine::Op::Run);
    const std::string result(n - kResultOverhead, 'r');
    child.task_finished(true, result);
    std::vector<std::string> writes;
    ChildEngine::Action a;
    while ((a = child.next()).op == ChildEngine::Op::Write) {
      writes.push_back(bytes_of(a.write));
      child.bytes_written(writes.back().size());
    }
    EXPECT_EQ(a.op, ChildEngine::Op::Read);
    std::vector<size_t> sizes;
    for (const std::string& w : writes) sizes.push_back(w.size());
    if (n == kPythonOneWriteMaxBytes) {
      EXPECT_EQ(sizes, (std::vector<size_t>{16388}));
    } else {
      EXPECT_EQ(sizes, (std::vector<size_t>{4, 16385}));
    }
    std::string stream;
    for (const std::string& w : writes) stream += w;
    EXPECT_TRUE(stream == message(FrameKind::Result, 7, result, kResultOverhead));

    // The parent's reader takes it back: 4 bytes, then the whole message.
    FrameReader reader(Direction::ToParent, 1 << 20, 0, 0, kWire);
    std::vector<size_t> asked;
    size_t at = 0;
    while (at < stream.size()) {
      std::span<std::byte> buffer = reader.buffer();
      asked.push_back(buffer.size());
      const size_t k = std::min(buffer.size(), stream.size() - at);
      std::memcpy(buffer.data(), stream.data() + at, k);
      at += k;
      ASSERT_NE(reader.commit(k), FrameReader::Status::Malformed) << reader.error();
    }
    EXPECT_EQ(asked, (std::vector<size_t>{4, n}));
    ASSERT_TRUE(reader.has_frame());
    const Frame frame = reader.take();
    EXPECT_EQ(frame.header.kind, FrameKind::Result);
    EXPECT_EQ(frame.header.task_id, 7u);
    EXPECT_TRUE(frame.payload == result);
  }
}

TEST(PythonFraming, StartedFramesAreMessagesOfTheHeaderAlone) {
  Options options = python_options(Strategy::Unbatched);
  options.task_timeout = std::chrono::milliseconds(1000);
  ChildEngine child(engine_setup(options, 1).child);
  size_t pos = 0;
  feed_child(child, message(FrameKind::Task, 3, "t", kTaskOverhead), pos);
  const ChildEngine::Action a = child.next();
  ASSERT_EQ(a.op, ChildEngine::Op::Write);
  EXPECT_EQ(bytes_of(a.write), be32(32) + header(FrameKind::Started, 3, 0));
}

FrameReader::Status read_stream(FrameReader& reader, const std::string& stream) {
  size_t pos = 0;
  FrameReader::Status status = FrameReader::Status::NeedMore;
  while (pos < stream.size() && status != FrameReader::Status::Malformed) {
    std::span<std::byte> buffer = reader.buffer();
    const size_t n = std::min(buffer.size(), stream.size() - pos);
    std::memcpy(buffer.data(), stream.data() + pos, n);
    pos += n;
    status = reader.commit(n);
  }
  return status;
}

TEST(PythonFraming, TheReaderRejectsWhatPythonFramingCannotHold) {
  const auto malformed = [](const std::string& stream, const std::string& error) {
    FrameReader reader(Direction::ToParent, 1000, 0, 0, kWire);
    EXPECT_EQ(read_stream(reader, stream), FrameReader::Status::Malformed) << error;
    EXPECT_EQ(reader.error(), error);
  };
  // Bounded before allocation: 1000 of payload + 60 of overhead at most.
  malformed(be32(1061),
            "Python message of 1061 bytes exceeds the maximum of 1000 bytes of "
            "payload + 60 bytes of overhead");
  malformed(be32(31), "Python message of 31 bytes is shorter than a frame header (32 bytes)");
  malformed(be32(0x80000000u), "negative Python message length -2147483648");
  // A header whose payload does not match the length.
  malformed(be32(70) + header(FrameKind::Result, 1, 9) + std::string(38, '\0'),
            "Python message of 70 bytes holds a Result frame of 9 payload bytes, which makes a "
            "message of 69 bytes");
  std::string padded = message(FrameKind::Result, 1, "ok", kResultOverhead);
  padded.back() = 'x';
  malformed(padded, "non-zero padding in a Python message");

  // The long form of the length (-1, then 8 bytes) is read as Python reads it: 4, 8, then N.
  const std::string ok = message(FrameKind::Result, 1, "ok", kResultOverhead);
  const std::string long_form =
      std::string("\xff\xff\xff\xff", 4) + std::string(4, '\0') + ok.substr(0, 4) + ok.substr(4);
  FrameReader reader(Direction::ToParent, 1000, 0, 0, kWire);
  std::vector<size_t> asked;
  size_t pos = 0;
  while (pos < long_form.size()) {
    std::span<std::byte> buffer = reader.buffer();
    asked.push_back(buffer.size());
    std::memcpy(buffer.data(), long_form.data() + pos, buffer.size());
    pos += buffer.size();
    ASSERT_NE(reader.commit(buffer.size()), FrameReader::Status::Malformed) << reader.error();
  }
  EXPECT_EQ(asked, (std::vector<size_t>{4, 8, 2 + kResultOverhead}));
  ASSERT_TRUE(reader.has_frame());
  EXPECT_EQ(reader.take().payload, "ok");

  std::array<std::byte, kPythonMaxLengthBytes> length{};
  EXPECT_EQ(encode_python_length(0x7fffffff, length), 4u);
  EXPECT_EQ(encode_python_length(uint64_t{0x80000000}, length), 12u);
  EXPECT_EQ(static_cast<int>(length[0]), 0xff);
  EXPECT_EQ(static_cast<int>(length[8]), 0x80);  // 2^31, big-endian in bytes 4..12
}

TEST(PythonFraming, ALargeMessageIsTwoWriteUnits) {
  OutFrame small = make_out_frame(kWire, Direction::ToWorker, FrameKind::Task, 1,
                                  std::make_shared<const Payload>(std::string(20000, 'p')), 0);
  EXPECT_EQ(small.length_bytes, 4u);
  EXPECT_EQ(small.unit_end(0), 4u);
  EXPECT_EQ(small.unit_end(3), 4u);
  EXPECT_EQ(small.unit_end(4), small.size());
  EXPECT_EQ(small.size(), 4u + 20000 + kTaskOverhead);
}

TEST(PythonFraming, OptionsThatDoNotGoTogetherAreRejected) {
  const auto rejected = [](Options options, const std::string& error) {
    try {
      validate_channel(options);
      ADD_FAILURE() << "accepted; expected: " << error;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), error);
    }
  };
  Options o = python_options(Strategy::Epoll);
  o.python_task_overhead_bytes = 31;
  rejected(o,
           "pipepool: Framing::Python needs python_task_overhead_bytes of at least 32 bytes "
           "(pipepool's frame header travels inside each message's overhead) and at most 65536; "
           "got 31");
  o = python_options(Strategy::Epoll);
  o.python_result_overhead_bytes = 0;
  EXPECT_THROW(validate_channel(o), std::invalid_argument);
  rejected(Options{.python_task_overhead_bytes = 100},
           "pipepool: python_task_overhead_bytes and python_result_overhead_bytes need "
           "Framing::Python (they are 0 with Framing::Pipepool)");
  rejected(Options{.socket_sndbuf_bytes = 4096},
           "pipepool: socket_sndbuf_bytes needs Transport::SocketPair (with pipes, set "
           "pipe_capacity_bytes)");
  rejected(Options{.pipe_capacity_bytes = 65536, .transport = Transport::SocketPair},
           "pipepool: pipe_capacity_bytes applies to Transport::Pipes; with "
           "Transport::SocketPair, set socket_sndbuf_bytes");
  EXPECT_NO_THROW(validate_channel(python_options(Strategy::Epoll)));
  EXPECT_NO_THROW(
      validate_channel(Options{.transport = Transport::SocketPair, .socket_sndbuf_bytes = 8192}));
  EXPECT_THROW(engine_setup(Options{.python_result_overhead_bytes = 1}, 1), std::invalid_argument);
}

}  // namespace
}  // namespace pipepool::protocol
