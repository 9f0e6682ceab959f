// Tests of the pipe model: unit tests of each rule, and the differential test that plays the same
// generated calls on a real pipe2() pair and on the model and requires identical answers (return
// values, bytes, poll() readiness, FIONREAD, F_GETPIPE_SZ, SIGPIPE) after every call.
//
// A failing sequence prints its seed and calls; replay it alone with
//   PIPEPOOL_PIPE_MODEL_SEED=<seed> sim_tests --gtest_filter='PipeModelDifferential.Replay'
// (PIPEPOOL_PIPE_MODEL_BLOCKING_SEED for a blocking-writer scenario, with
// PIPEPOOL_PIPE_MODEL_SAME_CPU=1 if the report says so). PIPEPOOL_PIPE_MODEL_SEQUENCES
// sets the number of random sequences per shard.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pipe_model.hpp"
#include "testing_real_pipe.hpp"
#include "watchdog.hpp"

namespace pipepool::sim {
namespace {

namespace rp = pipepool::sim::testing;

constexpr uint32_t kPage = 4096;

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
std::string text_of(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}
std::vector<std::byte> filled(size_t n, uint8_t value) {
  return std::vector<std::byte>(n, std::byte{value});
}

// ---------------------------------------------------------------------------------------------
// Unit tests: each rule on its own.

TEST(PipeModel, DefaultsMatchTheKernel) {
  PipeModel pipe;
  EXPECT_EQ(pipe.slots(), 16u);
  EXPECT_EQ(pipe.page_size(), 4096u);
  EXPECT_EQ(pipe.capacity_bytes(), 65536u);
  EXPECT_FALSE(pipe.readable());
  EXPECT_TRUE(pipe.writable());
  EXPECT_FALSE(pipe.hup());
  EXPECT_FALSE(pipe.err());
  EXPECT_EQ(pipe.describe(), "0/16 slots, 0 bytes");
}

TEST(PipeModel, RejectsBadConfig) {
  EXPECT_THROW(PipeModel(PipeConfig{.slots = 3}), std::invalid_argument);
  EXPECT_THROW(PipeModel(PipeConfig{.slots = 0}), std::invalid_argument);
  EXPECT_THROW(PipeModel(PipeConfig{.slots = 16, .page_size = 1000}), std::invalid_argument);
  EXPECT_NO_THROW(PipeModel(PipeConfig{.slots = 1, .page_size = 64}));
}

TEST(PipeModel, SmallWritesMergeIntoOnePage) {
  PipeModel pipe;
  for (int i = 0; i < 100; ++i) {
    auto w = pipe.write(bytes_of("ab"), true);
    ASSERT_EQ(w.result, 2);
  }
  EXPECT_EQ(pipe.slots_used(), 1u);
  EXPECT_EQ(pipe.bytes(), 200u);
}

TEST(PipeModel, FirstWriteIntoEmptyPipeNeverMerges) {
  PipeModel pipe;
  pipe.write(bytes_of("x"), true);
  std::array<std::byte, 1> one;
  ASSERT_EQ(pipe.read(one, true).result, 1);  // empty again: the drained slot is freed
  EXPECT_EQ(pipe.slots_used(), 0u);
  pipe.write(bytes_of("y"), true);
  EXPECT_EQ(pipe.slots_used(), 1u);
  EXPECT_EQ(pipe.buffer(0).offset, 0u);
}

TEST(PipeModel, PageSizedWritesTakeASlotEach) {
  PipeModel pipe;
  const auto page = filled(kPage, 7);
  for (int i = 0; i < 16; ++i) ASSERT_EQ(pipe.write(page, true).result, kPage);
  EXPECT_FALSE(pipe.writable());
  EXPECT_EQ(pipe.write(bytes_of("z"), true).result, -EAGAIN);  // no merge room, no slot
  std::array<std::byte, 1> one;
  pipe.read(one, true);  // the first page keeps its slot until drained
  EXPECT_FALSE(pipe.writable());
  EXPECT_EQ(pipe.write(bytes_of("z"), true).result, -EAGAIN);  // last page has no room either
  EXPECT_EQ(pipe.describe(), "16/16 slots, 65535 bytes");
}

TEST(PipeModel, CapacityIsCountedInSlotsNotBytes) {
  // Capacity is in slots, not bytes: a 4096-byte write never merges (4096 % PAGE_SIZE == 0).
  PipeModel pipe;
  pipe.write(bytes_of("a"), true);
  const auto page = filled(kPage, 1);
  for (int i = 0; i < 15; ++i) ASSERT_EQ(pipe.write(page, true).result, kPage);
  EXPECT_FALSE(pipe.writable());
  EXPECT_EQ(pipe.bytes(), 1u + 15 * kPage);                    // 61441 bytes: full
  EXPECT_EQ(pipe.write(bytes_of("b"), true).result, -EAGAIN);  // no room behind a full page
}

TEST(PipeModel, OnlyTheRemainderMergesAndOnlyIfItFits) {
  PipeModel pipe;
  pipe.write(filled(100, 1), true);
  // 5000 = 4096 + 904: the first 904 bytes go behind the 100, then one full page.
  auto data = filled(5000, 2);
  ASSERT_EQ(pipe.write(data, true).result, 5000);
  ASSERT_EQ(pipe.slots_used(), 2u);
  EXPECT_EQ(pipe.buffer(0).len, 1004u);
  EXPECT_EQ(pipe.buffer(1).len, 4096u);
  // Into an empty pipe the same write fills a full page first, then 904 bytes.
  PipeModel empty;
  ASSERT_EQ(empty.write(data, true).result, 5000);
  EXPECT_EQ(empty.buffer(0).len, 4096u);
  EXPECT_EQ(empty.buffer(1).len, 904u);
  // A remainder that does not fit behind the last buffer's data goes into new pages.
  PipeModel nearly;
  nearly.write(filled(4000, 1), true);
  ASSERT_EQ(nearly.write(filled(97, 2), true).result, 97);
  EXPECT_EQ(nearly.slots_used(), 2u);
  ASSERT_EQ(nearly.write(filled(96, 3), true).result, 96);  // 97 + 96 fits in the second page
  EXPECT_EQ(nearly.slots_used(), 2u);
}

TEST(PipeModel, ReadBytesBeforeTheOffsetAreNotReused) {
  PipeModel pipe;
  pipe.write(filled(4000, 1), true);
  std::vector<std::byte> out(3000);
  ASSERT_EQ(pipe.read(out, true).result, 3000);
  EXPECT_EQ(pipe.buffer(0).offset, 3000u);
  // 1000 bytes in the page, at offset 3000: 96 bytes of room behind them, not 3096.
  ASSERT_EQ(pipe.write(filled(97, 2), true).result, 97);
  EXPECT_EQ(pipe.slots_used(), 2u);
}

TEST(PipeModel, NonblockingWriteReturnsPartialCountWhenFull) {
  PipeModel pipe;
  pipe.write(filled(10, 1), true);
  auto big = filled(100000, 2);
  // 100000 % 4096 = 1696 merges behind the 10 bytes, then 15 pages.
  auto w = pipe.write(big, true);
  EXPECT_EQ(w.result, 1696 + 15 * 4096);
  EXPECT_FALSE(w.blocked);
  EXPECT_FALSE(pipe.writable());
}

TEST(PipeModel, WritesUpToAPageAreAtomic) {
  PipeModel pipe(PipeConfig{.slots = 2});
  pipe.write(filled(4096, 1), true);
  pipe.write(filled(10, 1), true);
  // 4090 does not fit behind the 10 bytes and there is no free slot: all or nothing.
  EXPECT_EQ(pipe.write(filled(4090, 2), true).result, -EAGAIN);
  EXPECT_EQ(pipe.write(filled(4086, 2), true).result, 4086);  // exactly fits behind
}

TEST(PipeModel, BlockedWriteResumesAsReadsFreeSlots) {
  PipeModel pipe;
  pipe.write(filled(100, 1), true);
  auto data = filled(17 * 4096 + 100, 2);
  auto w = pipe.write(data, false);
  // Merge 100 (remainder) into the first page, then 15 pages: full, sleeping.
  ASSERT_TRUE(w.blocked);
  EXPECT_EQ(w.result, 100 + 15 * 4096);
  EXPECT_EQ(w.written, size_t{100 + 15 * 4096});
  EXPECT_FALSE(pipe.writer_can_proceed());
  std::vector<std::byte> out(200);
  ASSERT_EQ(pipe.read(out, true).result, 200);  // frees the first slot
  ASSERT_TRUE(pipe.writer_can_proceed());
  w = pipe.continue_write(data, static_cast<size_t>(w.result));
  ASSERT_TRUE(w.blocked);
  EXPECT_EQ(w.written, 4096u);
  EXPECT_EQ(w.result, 100 + 16 * 4096);
  out.resize(4096);
  ASSERT_EQ(pipe.read(out, true).result, 4096);
  w = pipe.continue_write(data, static_cast<size_t>(w.result));
  ASSERT_FALSE(w.blocked);
  EXPECT_EQ(w.result, static_cast<int64_t>(data.size()));
  EXPECT_EQ(pipe.slots_used(), 16u);
}

TEST(PipeModel, WokenWriterDoesNotMergeBehindAnotherWritersBytes) {
  // The merge step runs once, at the start of a call. 16 full pages and 904 bytes left: a reader
  // frees two slots, another writer puts 1 byte into one of them, then the woken writer puts its
  // 904 bytes into a new page, not behind that byte (which had room for them).
  PipeModel pipe;
  auto data = filled(16 * 4096 + 904, 1);
  auto w = pipe.write(data, false);
  ASSERT_TRUE(w.blocked);
  EXPECT_EQ(w.result, 16 * 4096);
  std::vector<std::byte> out(8192);
  ASSERT_EQ(pipe.read(out, true).result, 8192);
  ASSERT_EQ(pipe.write(bytes_of("x"), true).result, 1);  // no room behind a full page: new slot
  w = pipe.continue_write(data, static_cast<size_t>(w.result));
  ASSERT_FALSE(w.blocked);
  EXPECT_EQ(w.result, static_cast<int64_t>(data.size()));
  EXPECT_EQ(pipe.slots_used(), 16u);
  EXPECT_EQ(pipe.buffer(14).len, 1u);
  EXPECT_EQ(pipe.buffer(15).len, 904u);
  EXPECT_FALSE(pipe.writable());
}

TEST(PipeModel, ReadStopsWhenEmptyOrSatisfied) {
  PipeModel pipe;
  pipe.write(bytes_of("hello "), true);
  pipe.write(filled(4096, 'x'), true);
  std::vector<std::byte> out(3);
  EXPECT_EQ(pipe.read(out, true).result, 3);
  EXPECT_EQ(text_of(out), "hel");
  out.resize(10000);
  EXPECT_EQ(pipe.read(out, true).result, 3 + 4096);  // across buffers, until empty
  EXPECT_EQ(pipe.slots_used(), 0u);
  auto r = pipe.read(out, true);
  EXPECT_EQ(r.result, -EAGAIN);
  EXPECT_FALSE(r.would_block);
  r = pipe.read(out, false);
  EXPECT_EQ(r.result, -EAGAIN);
  EXPECT_TRUE(r.would_block);
  EXPECT_EQ(pipe.read(std::span<std::byte>(), true).result, 0);  // null read
}

TEST(PipeModel, EndOfFileAndHangup) {
  PipeModel pipe;
  pipe.write(bytes_of("abc"), true);
  pipe.close_writer();
  EXPECT_TRUE(pipe.hup());
  EXPECT_TRUE(pipe.readable());
  std::vector<std::byte> out(2);
  EXPECT_EQ(pipe.read(out, false).result, 2);
  EXPECT_EQ(pipe.read(out, false).result, 1);
  auto r = pipe.read(out, false);
  EXPECT_EQ(r.result, 0);
  EXPECT_FALSE(r.would_block);
  EXPECT_TRUE(pipe.reader_can_proceed());
  EXPECT_EQ(pipe.describe(), "0/16 slots, 0 bytes, no writer");
}

TEST(PipeModel, BrokenPipe) {
  PipeModel pipe;
  pipe.close_reader();
  EXPECT_TRUE(pipe.err());
  auto w = pipe.write(bytes_of("x"), true);
  EXPECT_EQ(w.result, -EPIPE);
  EXPECT_TRUE(w.sigpipe);
  w = pipe.write(std::span<const std::byte>(), true);  // null write: no EPIPE, no signal
  EXPECT_EQ(w.result, 0);
  EXPECT_FALSE(w.sigpipe);
}

TEST(PipeModel, ReaderClosingWakesBlockedWriterWithPartialCount) {
  PipeModel pipe;
  auto data = filled(70000, 1);
  auto w = pipe.write(data, false);
  ASSERT_TRUE(w.blocked);
  EXPECT_EQ(w.result, 65536);
  pipe.close_reader();
  ASSERT_TRUE(pipe.writer_can_proceed());
  w = pipe.continue_write(data, static_cast<size_t>(w.result));
  EXPECT_FALSE(w.blocked);
  EXPECT_EQ(w.result, 65536);
  EXPECT_TRUE(w.sigpipe);
}

TEST(PipeModel, WritevIsOneWriteOfTheConcatenation) {
  PipeModel a, b;
  a.write(filled(10, 1), true);
  b.write(filled(10, 1), true);
  const auto header = filled(24, 2);
  const auto payload = filled(5000, 3);
  const std::span<const std::byte> parts[] = {header, {}, payload};
  std::vector<std::byte> joined(header);
  joined.insert(joined.end(), payload.begin(), payload.end());
  EXPECT_EQ(a.writev(parts, true).result, 5024);
  EXPECT_EQ(b.write(joined, true).result, 5024);
  ASSERT_EQ(a.slots_used(), b.slots_used());
  for (uint32_t i = 0; i < a.slots_used(); ++i) EXPECT_EQ(a.buffer(i).len, b.buffer(i).len);
  std::vector<std::byte> out_a(6000), out_b(6000);
  EXPECT_EQ(a.read(out_a, true).result, 5034);
  b.read(out_b, true);
  EXPECT_EQ(out_a, out_b);
}

TEST(PipeModel, SetCapacityRoundsAndRefuses) {
  PipeModel pipe;
  EXPECT_EQ(pipe.set_capacity_bytes(0), 4096);
  EXPECT_EQ(pipe.set_capacity_bytes(4097), 8192);
  EXPECT_EQ(pipe.set_capacity_bytes(65537), 131072);
  EXPECT_EQ(pipe.slots(), 32u);
  EXPECT_EQ(pipe.set_capacity_bytes(3 * 4096), 16384);
  EXPECT_EQ(pipe.set_capacity_bytes((uint64_t{1} << 31) + 1), -EINVAL);
  EXPECT_EQ(pipe.set_capacity_bytes(uint64_t{1} << 31), int64_t{1} << 31);
  EXPECT_EQ(pipe.set_capacity_bytes(65536), 65536);
  const auto page = filled(4096, 1);
  for (int i = 0; i < 5; ++i) pipe.write(page, true);
  EXPECT_EQ(pipe.set_capacity_bytes(4 * 4096), -EBUSY);
  EXPECT_EQ(pipe.set_capacity_bytes(5 * 4096), 8 * 4096);
  // The data survives the move to the new ring, in order.
  std::vector<std::byte> out(5 * 4096);
  EXPECT_EQ(pipe.read(out, true).result, 5 * 4096);
}

TEST(PipeModel, UnprivilegedCallerCannotGrowPastTheLimit) {
  PipeModel pipe(PipeConfig{.unprivileged_max_bytes = 1 << 20});
  EXPECT_EQ(pipe.set_capacity_bytes(1 << 20), 1 << 20);
  EXPECT_EQ(pipe.set_capacity_bytes((1 << 20) + 1), -EPERM);
  EXPECT_EQ(pipe.set_capacity_bytes(4096), 4096);
}

TEST(PipeModel, CountsOperations) {
  PipeModel pipe;
  std::array<std::byte, 4> out;
  pipe.write(bytes_of("abcd"), true);
  pipe.read(out, true);
  pipe.set_capacity_bytes(8192);
  pipe.close_writer();
  EXPECT_EQ(pipe.ops(), 4u);
}

// The simulator needs well over a million pipe operations per second on one core.
TEST(PipeModel, Speed) {
  PipeModel pipe;
  std::array<std::byte, 64> frame{};
  std::array<std::byte, 4096> out;
  const auto start = std::chrono::steady_clock::now();
  constexpr int kRounds = 1'000'000;
  for (int i = 0; i < kRounds; ++i) {
    pipe.write(std::span(frame).first(16 + i % 48), true);
    if (i % 8 == 7) pipe.read(out, true);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_second = static_cast<double>(pipe.ops()) / seconds;
  std::printf("[ pipe model ] %.1f million operations per second\n", per_second / 1e6);
  RecordProperty("ops_per_second", std::to_string(static_cast<int64_t>(per_second)));
  EXPECT_GT(per_second, 1e6);
}

// ---------------------------------------------------------------------------------------------
// The differential test.

// The byte stream every sequence writes: a fixed pseudo-random pattern, period a prime, so that a
// lost, repeated or reordered byte shows. Position p holds pattern()[p % kPatternPeriod].
constexpr size_t kPatternPeriod = 1'000'003;
constexpr size_t kMaxWrite = size_t{6} << 20;

const std::vector<std::byte>& pattern() {
  static const std::vector<std::byte> bytes = [] {
    std::vector<std::byte> b(kPatternPeriod + kMaxWrite);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < kPatternPeriod; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      b[i] = static_cast<std::byte>(x >> 56);
    }
    for (size_t i = kPatternPeriod; i < b.size(); ++i) b[i] = b[i - kPatternPeriod];
    return b;
  }();
  return bytes;
}

std::span<const std::byte> stream(uint64_t position, size_t n) {
  return {pattern().data() + position % kPatternPeriod, n};
}

enum class OpKind { kWrite, kWritev, kRead, kSetSize, kCloseReader, kCloseWriter };

struct Op {
  OpKind kind;
  int64_t size = 0;                // write/read length, or F_SETPIPE_SZ argument (an int)
  std::vector<size_t> parts = {};  // writev part lengths
};

std::string describe(const Op& op) {
  switch (op.kind) {
    case OpKind::kWrite:
      return "write " + std::to_string(op.size);
    case OpKind::kWritev: {
      std::string s = "writev [";
      for (size_t i = 0; i < op.parts.size(); ++i) {
        s += (i ? "," : "") + std::to_string(op.parts[i]);
      }
      return s + "]";
    }
    case OpKind::kRead:
      return "read " + std::to_string(op.size);
    case OpKind::kSetSize:
      return "F_SETPIPE_SZ " + std::to_string(op.size);
    case OpKind::kCloseReader:
      return "close reader";
    case OpKind::kCloseWriter:
      return "close writer";
  }
  return "?";
}

struct Totals {
  uint64_t sequences = 0;
  uint64_t operations = 0;
  uint64_t checks = 0;
  uint64_t bytes_compared = 0;
  // How often each edge was reached (and agreed on).
  uint64_t merged_writes = 0;   // bytes added, no slot taken
  uint64_t partial_writes = 0;  // 0 < result < length
  uint64_t eagain_writes = 0;
  uint64_t epipe_writes = 0;
  uint64_t eagain_reads = 0;
  uint64_t eof_reads = 0;
  uint64_t ebusy = 0;
  uint64_t einval_or_eperm = 0;
  uint64_t writer_wakeups = 0;  // continue_write calls of blocked writers

  void add(const Totals& o) {
    sequences += o.sequences;
    operations += o.operations;
    checks += o.checks;
    bytes_compared += o.bytes_compared;
    merged_writes += o.merged_writes;
    partial_writes += o.partial_writes;
    eagain_writes += o.eagain_writes;
    epipe_writes += o.epipe_writes;
    eagain_reads += o.eagain_reads;
    eof_reads += o.eof_reads;
    ebusy += o.ebusy;
    einval_or_eperm += o.einval_or_eperm;
    writer_wakeups += o.writer_wakeups;
  }
};

// One real pipe and one model, driven by the same calls and compared after each.
class Differential {
 public:
  Differential(std::string name, PipeConfig config) : name_(std::move(name)), model_(config) {}

  PipeModel& model() { return model_; }
  rp::RealPipe& real() { return real_; }
  bool failed() const { return !failure_.empty(); }
  const Totals& totals() const { return totals_; }
  Totals& totals() { return totals_; }

  // Plays `op` on both and compares the results; then, if `check`, the whole observable state.
  // Returns false on the first difference (see report()).
  bool play(const Op& op, bool check = true) {
    ++totals_.operations;
    const std::string what = describe(op);
    switch (op.kind) {
      case OpKind::kWrite:
      case OpKind::kWritev: {
        std::vector<std::span<const std::byte>> parts;
        uint64_t pos = write_pos_;
        if (op.kind == OpKind::kWrite) {
          parts.push_back(stream(pos, static_cast<size_t>(op.size)));
        } else {
          for (size_t len : op.parts) {
            parts.push_back(stream(pos, len));
            pos += len;
          }
        }
        const int64_t real = nowait_writes_              ? real_.writev_nowait(parts)
                             : op.kind == OpKind::kWrite ? real_.write(parts[0])
                                                         : real_.writev(parts);
        const bool real_sigpipe = rp::ScopedBlockSigpipe::take_pending_sigpipe();
        const uint32_t slots_before = model_.slots_used();
        const auto model =
            op.kind == OpKind::kWrite ? model_.write(parts[0], true) : model_.writev(parts, true);
        if (model.result > 0 && model_.slots_used() == slots_before) ++totals_.merged_writes;
        if (model.result > 0 && model.result < op.size) ++totals_.partial_writes;
        if (model.result == -EAGAIN) ++totals_.eagain_writes;
        if (model.result == -EPIPE) ++totals_.epipe_writes;
        log(what + " -> " + std::to_string(real) + (real_sigpipe ? " SIGPIPE" : ""));
        if (real != model.result)
          return fail(what + ": kernel " + std::to_string(real) + ", model " +
                      std::to_string(model.result));
        if (real_sigpipe != model.sigpipe) return fail(what + ": SIGPIPE differs");
        if (real > 0) {
          write_pos_ += static_cast<uint64_t>(real);
          expect(parts, 0, static_cast<size_t>(real));
        }
        break;
      }
      case OpKind::kRead: {
        const size_t n = static_cast<size_t>(op.size);
        auto& real_buf = buffer(0, n);
        auto& model_buf = buffer(1, n);
        const int64_t real = real_.read(std::span(real_buf).first(n));
        const auto model = model_.read(std::span(model_buf).first(n), true);
        if (model.result == -EAGAIN) ++totals_.eagain_reads;
        if (model.result == 0 && n != 0) ++totals_.eof_reads;
        log(what + " -> " + std::to_string(real));
        if (real != model.result || model.would_block) {
          return fail(what + ": kernel " + std::to_string(real) + ", model " +
                      std::to_string(model.result));
        }
        if (real > 0) {
          const size_t got = static_cast<size_t>(real);
          totals_.bytes_compared += got;
          if (std::memcmp(real_buf.data(), model_buf.data(), got) != 0) {
            return fail(what + ": the bytes read differ");
          }
          if (!take_expected(std::span(real_buf).first(got))) {
            return fail(what + ": the bytes read are not the bytes written, in order");
          }
        }
        break;
      }
      case OpKind::kSetSize: {
        const int arg = static_cast<int>(op.size);
        const int64_t real = real_.set_size(arg);
        // fcntl passes the int through the kernel's unsigned int.
        const int64_t model = model_.set_capacity_bytes(static_cast<uint32_t>(arg));
        if (model == -EBUSY) ++totals_.ebusy;
        if (model == -EINVAL || model == -EPERM) ++totals_.einval_or_eperm;
        log(what + " -> " + std::to_string(real));
        if (real != model) {
          return fail(what + ": kernel " + std::to_string(real) + ", model " +
                      std::to_string(model));
        }
        break;
      }
      case OpKind::kCloseReader:
        real_.close_read_end();
        model_.close_reader();
        log(what);
        break;
      case OpKind::kCloseWriter:
        real_.close_write_end();
        model_.close_writer();
        log(what);
        break;
    }
    return !check || check_state(what);
  }

  // poll() of each open end, FIONREAD and F_GETPIPE_SZ against the model.
  bool check_state(const std::string& after) {
    ++totals_.checks;
    if (real_.read_open()) {
      const short expected = static_cast<short>((model_.readable() ? POLLIN | POLLRDNORM : 0) |
                                                (model_.hup() ? POLLHUP : 0));
      const short real = real_.poll_read_end();
      if (real != expected) {
        return fail("after " + after + ": poll(read end) kernel 0x" + hex(real) + ", model 0x" +
                    hex(expected));
      }
    }
    if (real_.write_open()) {
      const short expected = static_cast<short>((model_.writable() ? POLLOUT | POLLWRNORM : 0) |
                                                (model_.err() ? POLLERR : 0));
      const short real = real_.poll_write_end();
      if (real != expected) {
        return fail("after " + after + ": poll(write end) kernel 0x" + hex(real) + ", model 0x" +
                    hex(expected));
      }
    }
    if (real_.read_open() || real_.write_open()) {
      const int64_t fionread = real_.fionread();
      if (fionread != static_cast<int64_t>(model_.bytes())) {
        return fail("after " + after + ": FIONREAD kernel " + std::to_string(fionread) +
                    ", model " + std::to_string(model_.bytes()));
      }
      const int64_t size = real_.size();
      if (size != static_cast<int64_t>(model_.capacity_bytes())) {
        return fail("after " + after + ": F_GETPIPE_SZ kernel " + std::to_string(size) +
                    ", model " + std::to_string(model_.capacity_bytes()));
      }
    }
    return true;
  }

  void log(std::string line) { log_.push_back(std::move(line)); }
  bool fail(std::string what) {
    if (failure_.empty()) failure_ = std::move(what);
    return false;
  }
  // Takes `n` bytes of the write stream for a call played outside play() (a blocked writer).
  std::span<const std::byte> reserve_stream(size_t n) {
    auto bytes = stream(write_pos_, n);
    write_pos_ += n;
    return bytes;
  }
  // The pipe accepted `n` bytes of `parts` from byte `skip` on: reads must return them in order.
  void expect(std::span<const std::span<const std::byte>> parts, size_t skip, size_t n) {
    for (const auto& p : parts) {
      if (n == 0) break;
      if (skip >= p.size()) {
        skip -= p.size();
        continue;
      }
      const size_t take = std::min(n, p.size() - skip);
      expected_.push_back(p.subspan(skip, take));
      n -= take;
      skip = 0;
    }
  }
  // Writes with RWF_NOWAIT instead of through the O_NONBLOCK flag (which a blocked writer on the
  // same file has cleared).
  void set_nowait_writes(bool on) { nowait_writes_ = on; }

  std::string report() const {
    return name_ + " differs from the kernel: " + failure_ + "\n" + transcript();
  }
  std::string transcript() const {
    std::string s = "  model: " + model_.describe() + "\n  calls (kernel's result):\n";
    for (size_t i = 0; i < log_.size(); ++i)
      s += "    #" + std::to_string(i) + " " + log_[i] + "\n";
    return s;
  }

 private:
  static std::string hex(short v) {
    char b[8];
    std::snprintf(b, sizeof b, "%x", static_cast<unsigned>(static_cast<unsigned short>(v)));
    return b;
  }
  // Read buffers shared by all sequences of a thread (allocating MiBs per sequence is slow).
  static std::vector<std::byte>& buffer(int which, size_t n) {
    thread_local std::vector<std::byte> buffers[2];
    if (buffers[which].size() < n) buffers[which].resize(n);
    return buffers[which];
  }

  std::string name_;
  rp::RealPipe real_;
  PipeModel model_;
  // Pops `got.size()` expected bytes, comparing them with `got`.
  bool take_expected(std::span<const std::byte> got) {
    while (!got.empty()) {
      if (expected_.empty()) return false;
      auto& front = expected_.front();
      const size_t n = std::min(front.size(), got.size());
      if (std::memcmp(front.data(), got.data(), n) != 0) return false;
      got = got.subspan(n);
      front = front.subspan(n);
      if (front.empty()) expected_.pop_front();
    }
    return true;
  }

  uint64_t write_pos_ = 0;                           // next unused byte of the stream
  std::deque<std::span<const std::byte>> expected_;  // accepted, not yet read, oldest first
  std::vector<std::string> log_;
  std::string failure_;
  Totals totals_;
  bool nowait_writes_ = false;
};

// Generates calls biased toward the edges of the slot arithmetic, from the model's state.
class OpGenerator {
 public:
  explicit OpGenerator(uint64_t seed) : rng_(seed) {}

  uint64_t uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  int64_t jitter() { return static_cast<int64_t>(uniform(0, 2)) - 1; }  // -1, 0, +1

  // A write (or read) length: 1 byte to several MiB, mostly near page, slot and capacity edges.
  size_t length(const PipeModel& m, bool for_read) {
    if (chance(0.02)) return 0;  // null call
    const int64_t page = m.page_size();
    const int64_t cap = static_cast<int64_t>(m.capacity_bytes());
    const int64_t free_slots = m.slots() - m.slots_used();
    int64_t room = 0;   // merge room behind the last buffer's data
    int64_t first = 0;  // bytes in the oldest buffer
    if (m.slots_used() != 0) {
      const auto last = m.buffer(m.slots_used() - 1);
      room = page - last.offset - last.len;
      first = m.buffer(0).len;
    }
    int64_t n = 1;
    switch (uniform(0, for_read ? 16 : 13)) {
      case 0:
        n = 1;
        break;
      case 1:
        n = static_cast<int64_t>(uniform(1, 64));
        break;
      case 2:
        n = page + jitter();
        break;
      case 3:
        n = static_cast<int64_t>(uniform(1, m.slots() + 2)) * page + jitter();
        break;
      case 4:
        n = cap + jitter();
        break;
      case 5:
        n = static_cast<int64_t>(uniform(1, 2 * page));
        break;
      case 6:
        n = static_cast<int64_t>(uniform(1, cap));
        break;
      case 7:
        n = static_cast<int64_t>(uniform(1, 4 << 20));
        break;
      case 8:
        n = free_slots * page + jitter();
        break;
      case 9:
        n = room + jitter();
        break;
      case 10:
        n = static_cast<int64_t>(uniform(0, 3)) * page + room + jitter();
        break;
      case 11:
        n = static_cast<int64_t>(uniform(1, kMaxWrite));
        break;
      case 12:
        n = static_cast<int64_t>(uniform(1, 16));
        break;
      case 13:
        n = static_cast<int64_t>(uniform(1, page / 2));
        break;
      // reads only
      case 14:
        n = static_cast<int64_t>(m.bytes()) + jitter();
        break;
      case 15:
        n = first + jitter();
        break;
      case 16:
        n = first + static_cast<int64_t>(uniform(0, 2)) * page + jitter();
        break;
    }
    return static_cast<size_t>(std::clamp<int64_t>(n, 1, kMaxWrite));
  }

  // An F_SETPIPE_SZ argument: rounding edges, EBUSY edges around the slots in use, EINVAL.
  int64_t capacity_argument(const PipeModel& m) {
    const int64_t page = m.page_size();
    const int64_t used = m.slots_used();
    switch (uniform(0, 11)) {
      case 0:
        return 0;
      case 1:
        return static_cast<int64_t>(uniform(1, page - 1));
      case 2:
        return page + jitter();
      case 3:
        return page << uniform(0, 8);  // 4 KiB .. 1 MiB
      case 4:
        return static_cast<int64_t>(uniform(1, 1 << 20));
      case 5:
        return std::max<int64_t>(used * page + jitter(), 0);
      case 6:
        return std::max<int64_t>((used - 1) * page, 0);
      case 7:
        return (int64_t{1} << 20) + jitter();  // 2 MiB needs CAP_SYS_RESOURCE
      case 8:
        return -1;  // (unsigned) 0xffffffff: EINVAL
      case 9:
        return chance(0.1) ? INT_MAX : (int64_t{4} << 20);
      case 10:
        return static_cast<int64_t>(m.capacity_bytes()) + jitter();
      default:
        return 3 * page;
    }
  }

  Op write_op(const PipeModel& m) {
    if (!chance(0.2)) return Op{OpKind::kWrite, static_cast<int64_t>(length(m, false))};
    const size_t total = length(m, false);
    const size_t count = uniform(1, 4);
    Op op{OpKind::kWritev, static_cast<int64_t>(total)};
    size_t left = total;
    for (size_t i = 0; i + 1 < count; ++i) {
      size_t part = chance(0.3) ? std::min<size_t>(left, 24) : uniform(0, left);  // frame header
      op.parts.push_back(part);
      left -= part;
    }
    op.parts.push_back(left);
    return op;
  }

  // Any call that is legal with the ends still open.
  Op next(const PipeModel& m) {
    for (;;) {
      const uint64_t pick = uniform(0, 99);
      if (pick < 45) {
        if (m.has_writer()) return write_op(m);
      } else if (pick < 92) {
        if (m.has_reader()) return Op{OpKind::kRead, static_cast<int64_t>(length(m, true))};
      } else {
        return Op{OpKind::kSetSize, capacity_argument(m)};
      }
    }
  }

 private:
  std::mt19937_64 rng_;
};

uint64_t env_number(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::strtoull(value, nullptr, 10) : fallback;
}

// The model of the test process's privilege over F_SETPIPE_SZ (pipe_set_size's EPERM check).
PipeConfig config_for_this_thread() {
  PipeConfig config;
  config.page_size = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
  if (!rp::has_cap_sys_resource()) config.unprivileged_max_bytes = rp::pipe_max_size();
  return config;
}

void add_totals(Totals& totals, const Differential& d) {
  totals.add(d.totals());
  totals.sequences += 1;
}

// One random sequence: capacity, 10..160 calls, sometimes closing an end. Adds to `totals`.
// Returns the failure report, or nothing.
std::optional<std::string> run_random_sequence(uint64_t seed, Totals& totals,
                                               bool print_calls = false) {
  OpGenerator gen(seed);
  Differential d("random sequence seed " + std::to_string(seed), config_for_this_thread());
  const uint64_t length = gen.uniform(10, 160);
  const uint64_t close_reader_at = gen.chance(0.25) ? gen.uniform(0, length) : UINT64_MAX;
  const uint64_t close_writer_at = gen.chance(0.25) ? gen.uniform(0, length) : UINT64_MAX;
  bool ok = d.check_state("pipe2");
  if (ok && gen.chance(0.5)) ok = d.play(Op{OpKind::kSetSize, gen.capacity_argument(d.model())});
  uint64_t after_reader_closed = 0;  // EPIPE again and again teaches little: a few, then stop
  for (uint64_t i = 0; ok && i < length; ++i) {
    if (!d.model().has_reader() && (!d.model().has_writer() || ++after_reader_closed > 6)) break;
    if (i == close_reader_at && d.model().has_reader()) {
      ok = d.play(Op{OpKind::kCloseReader});
    } else if (i == close_writer_at && d.model().has_writer()) {
      ok = d.play(Op{OpKind::kCloseWriter});
    } else {
      ok = d.play(gen.next(d.model()));
    }
  }
  add_totals(totals, d);
  if (print_calls) std::printf("%s", d.transcript().c_str());
  if (ok) return std::nullopt;
  return d.report() + "  replay: PIPEPOOL_PIPE_MODEL_SEED=" + std::to_string(seed) +
         " sim_tests --gtest_filter='PipeModelDifferential.Replay'\n";
}

void report_totals(const char* what, const Totals& t, double seconds) {
  std::printf(
      "[ pipe model ] %s: %llu sequences, %llu calls, %llu state checks, %llu bytes read "
      "compared with the kernel in %.1f s\n",
      what, static_cast<unsigned long long>(t.sequences),
      static_cast<unsigned long long>(t.operations), static_cast<unsigned long long>(t.checks),
      static_cast<unsigned long long>(t.bytes_compared), seconds);
  std::printf(
      "[ pipe model ]   agreed on: %llu merging writes, %llu partial writes, %llu write "
      "EAGAIN, %llu EPIPE, %llu read EAGAIN, %llu EOF, %llu EBUSY, %llu EINVAL/EPERM, "
      "%llu blocked-writer wake-ups\n",
      static_cast<unsigned long long>(t.merged_writes),
      static_cast<unsigned long long>(t.partial_writes),
      static_cast<unsigned long long>(t.eagain_writes),
      static_cast<unsigned long long>(t.epipe_writes),
      static_cast<unsigned long long>(t.eagain_reads), static_cast<unsigned long long>(t.eof_reads),
      static_cast<unsigned long long>(t.ebusy), static_cast<unsigned long long>(t.einval_or_eperm),
      static_cast<unsigned long long>(t.writer_wakeups));
  ::testing::Test::RecordProperty("sequences", std::to_string(t.sequences));
  ::testing::Test::RecordProperty("operations", std::to_string(t.operations));
  ::testing::Test::RecordProperty("state_checks", std::to_string(t.checks));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class PipeModelRandom : public ::testing::TestWithParam<int> {};

// Random sequences, in shards so that ctest can run them side by side.
TEST_P(PipeModelRandom, Sequences) {
  pipepool::testing::extend_watchdog(280);
  rp::ScopedBlockSigpipe block_sigpipe;
  const uint64_t count = env_number("PIPEPOOL_PIPE_MODEL_SEQUENCES", 1000);
  const auto start = std::chrono::steady_clock::now();
  Totals totals;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t seed = static_cast<uint64_t>(GetParam()) * 1'000'000 + i;
    if (auto failure = run_random_sequence(seed, totals)) {
      ADD_FAILURE() << *failure;
      break;
    }
  }
  report_totals(("random sequences, shard " + std::to_string(GetParam())).c_str(), totals,
                seconds_since(start));
}

INSTANTIATE_TEST_SUITE_P(Shards, PipeModelRandom, ::testing::Range(0, 8));

// ---------------------------------------------------------------------------------------------
// Blocking writes: a writer thread sleeps in the kernel's anon_pipe_write; the model's
// continue_write must match it step by step.

// A thread doing one blocking write(2)/writev(2) on the pipe's write end, on `cpu` at ordinary
// priority if cpu >= 0 (see ExclusiveCpu).
class WriterThread {
 public:
  WriterThread(rp::RealPipe& pipe, std::vector<std::span<const std::byte>> parts, int cpu)
      : pipe_(pipe), parts_(std::move(parts)) {
    thread_ = std::thread([this, cpu] {
      rp::run_on_cpu_below(cpu);
      tid_.store(rp::current_tid());
      const int64_t r = parts_.size() == 1 ? pipe_.write(parts_[0]) : pipe_.writev(parts_);
      sigpipe_ = rp::ScopedBlockSigpipe::take_pending_sigpipe();  // the mask is inherited
      result_ = r;
      done_.store(true);
    });
  }
  ~WriterThread() { join(); }
  WriterThread(const WriterThread&) = delete;
  WriterThread& operator=(const WriterThread&) = delete;

  void join() {
    if (thread_.joinable()) thread_.join();
  }
  pid_t tid() const { return tid_.load(); }
  bool done() const { return done_.load(); }
  int64_t result() const { return result_; }
  bool sigpipe() const { return sigpipe_; }

 private:
  rp::RealPipe& pipe_;
  std::vector<std::span<const std::byte>> parts_;
  std::atomic<pid_t> tid_{0};
  std::atomic<bool> done_{false};
  int64_t result_ = 0;
  bool sigpipe_ = false;
  std::thread thread_;
};

enum class Settled { kAsleep, kDone, kTimeout };

// Waits until the writer has returned, or sleeps in anon_pipe_write with FIONREAD unchanged over
// several looks (a woken writer is runnable until it has filled the ring again).
Settled wait_for_writer(const WriterThread& writer, rp::RealPipe& pipe) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int64_t last = -1;
  int stable = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (writer.done()) return Settled::kDone;
    const pid_t tid = writer.tid();
    if (tid != 0) {
      const char state = rp::thread_state(tid);
      const std::string wchan = rp::thread_wchan(tid);
      const bool in_pipe_write = wchan.empty() || wchan.find("pipe_write") != std::string::npos;
      const int64_t bytes = pipe.fionread();
      stable = (state == 'S' && in_pipe_write && bytes == last) ? stable + 1 : 0;
      last = bytes;
      if (stable >= 3 && !writer.done()) return Settled::kAsleep;
    }
    rp::sleep_us(100);
  }
  return Settled::kTimeout;
}

// One blocking write played on the kernel (a writer thread) and on the model (write, then
// continue_write whenever the model's writer can proceed), compared each time it settles.
class BlockedWrite {
 public:
  // `cpu` >= 0: the calling thread holds an ExclusiveCpu on it, so the woken kernel writer does
  // not run until this thread sleeps (in settle()): calls between a wake-up and settle() happen
  // before the writer goes on, in the kernel as in the model.
  BlockedWrite(Differential& d, const std::vector<size_t>& lengths, int cpu)
      : d_(d), exclusive_(cpu >= 0) {
    size_t total = 0;
    for (size_t len : lengths) {
      parts_.push_back(d.reserve_stream(len));
      total += len;
    }
    d.log("blocking " + std::string(parts_.size() == 1 ? "write " : "writev ") +
          std::to_string(total) + (exclusive_ ? " (same CPU)" : ""));
    d.real().set_write_nonblocking(false);
    d.set_nowait_writes(true);
    writer_.emplace(d.real(), parts_, cpu);
    step_ = d.model().writev(parts_, /*nonblocking=*/false);
    d.expect(parts_, 0, step_.written);
  }
  ~BlockedWrite() {
    if (writer_ && !writer_->done() && d_.real().read_open()) d_.real().close_read_end();
  }

  bool model_blocked() const { return step_.blocked; }

  // Lets the kernel's writer run; requires it to sleep or have returned as the model's does.
  bool settle(const std::string& when) {
    const Settled settled = wait_for_writer(*writer_, d_.real());
    if (settled == Settled::kTimeout) {
      return d_.fail(when + ": the writer thread neither slept nor returned within 20 s");
    }
    if ((settled == Settled::kDone) == step_.blocked) {
      return d_.fail(when + ": the kernel's writer " +
                     (settled == Settled::kDone ? "returned" : "sleeps") + ", the model's " +
                     (step_.blocked ? "sleeps" : "returned") + " (model wrote " +
                     std::to_string(step_.result) + ")");
    }
    return step_.blocked ? d_.check_state(when + ", writer asleep") : true;
  }

  // After calls that may have woken the writer: the model's writer goes on if it can.
  bool wake(const std::string& when) {
    if (!step_.blocked || !d_.model().writer_can_proceed()) return true;
    // With the CPU held, the kernel's writer cannot have run yet: the state must still agree.
    if (exclusive_ && !d_.check_state(when + ", writer woken but not yet run")) return false;
    ++d_.totals().writer_wakeups;
    const auto so_far = static_cast<size_t>(step_.result);
    step_ = d_.model().continue_writev(parts_, so_far);
    d_.expect(parts_, so_far, step_.written);
    d_.log("  model writer woken: wrote " + std::to_string(step_.written) +
           (step_.blocked ? ", sleeps again" : ", returns " + std::to_string(step_.result)));
    return true;
  }

  // Joins the returned writer and compares what write(2) returned; back to O_NONBLOCK.
  bool finish() {
    writer_->join();
    d_.log("kernel writer returned " + std::to_string(writer_->result()) +
           (writer_->sigpipe() ? " with SIGPIPE" : ""));
    if (writer_->result() != step_.result || writer_->sigpipe() != step_.sigpipe) {
      return d_.fail("blocking write returned " + std::to_string(writer_->result()) +
                     " in the kernel, " + std::to_string(step_.result) + " in the model (SIGPIPE " +
                     std::to_string(writer_->sigpipe()) + " vs " + std::to_string(step_.sigpipe) +
                     ")");
    }
    if (d_.real().write_open()) d_.real().set_write_nonblocking(true);
    d_.set_nowait_writes(false);
    return d_.check_state("blocking write returned");
  }

 private:
  Differential& d_;
  bool exclusive_;
  std::vector<std::span<const std::byte>> parts_;
  std::optional<WriterThread> writer_;
  PipeModel::WriteResult step_;
};

// One scenario: a capacity, some data already in the pipe, one big blocking write, then rounds
// of calls (reads of random sizes; with the CPU held also non-blocking writes from "another
// writer" and F_SETPIPE_SZ between a wake-up and the writer running; sometimes closing the
// reader) until it returns; then random non-blocking calls, which see where the continuation put
// its bytes.
std::optional<std::string> run_blocking_scenario(uint64_t seed, Totals& totals, int cpu,
                                                 bool print_calls = false) {
  OpGenerator gen(seed);
  Differential d("blocking-writer scenario seed " + std::to_string(seed), config_for_this_thread());
  auto finish = [&](bool ok) -> std::optional<std::string> {
    add_totals(totals, d);
    if (print_calls) std::printf("%s", d.transcript().c_str());
    if (ok) return std::nullopt;
    return d.report() + "  replay: PIPEPOOL_PIPE_MODEL_BLOCKING_SEED=" + std::to_string(seed) +
           (cpu >= 0 ? " PIPEPOOL_PIPE_MODEL_SAME_CPU=1" : "") +
           " sim_tests --gtest_filter='PipeModelDifferential.Replay'\n";
  };

  static constexpr int kCapacityPages[] = {1, 2, 4, 16, 16, 64};
  const int capacity = kCapacityPages[gen.uniform(0, std::size(kCapacityPages) - 1)] *
                       static_cast<int>(d.model().page_size());
  if (capacity != static_cast<int>(d.model().capacity_bytes()) &&
      !d.play(Op{OpKind::kSetSize, capacity})) {
    return finish(false);
  }
  // Leave some bytes (maybe partly read) so that the merge step has something to merge into.
  for (uint64_t i = gen.uniform(0, 3); i > 0; --i) {
    const bool read = gen.chance(0.3);
    const int64_t n = gen.chance(0.5) ? static_cast<int64_t>(gen.uniform(1, 200))
                                      : static_cast<int64_t>(gen.length(d.model(), read));
    if (!d.play(Op{read ? OpKind::kRead : OpKind::kWrite, std::min<int64_t>(n, capacity)})) {
      return finish(false);
    }
  }

  // The blocking write: one to four capacities, plus a remainder that often is not page-aligned.
  const size_t total = static_cast<size_t>(capacity) * gen.uniform(1, 4) +
                       (gen.chance(0.8) ? gen.uniform(1, 2 * d.model().page_size()) : 0);
  std::vector<size_t> lengths = {total};
  if (gen.chance(0.3)) {
    const size_t header = gen.uniform(1, 64);
    lengths = {header, total - header};
  }
  const bool close_reader_midway = gen.chance(0.15);
  BlockedWrite blocked(d, lengths, cpu);
  for (int round = 0;; ++round) {
    const std::string when = "round " + std::to_string(round);
    if (!blocked.settle(when)) return finish(false);
    if (!blocked.model_blocked()) break;
    if (close_reader_midway && gen.chance(0.2)) {
      if (!d.play(Op{OpKind::kCloseReader}, /*check=*/false)) return finish(false);
    } else {
      for (uint64_t calls = cpu >= 0 ? gen.uniform(1, 4) : 1; calls > 0; --calls) {
        const uint64_t pick = gen.uniform(0, 99);
        Op op{OpKind::kRead};
        if (cpu >= 0 && pick < 25 && d.model().has_writer()) {
          op = gen.write_op(d.model());
        } else if (cpu >= 0 && pick < 32) {
          op = Op{OpKind::kSetSize, gen.capacity_argument(d.model())};
        } else {
          // Reads shorter than a buffer leave the writer asleep; a drained buffer wakes it.
          const int64_t n = gen.chance(0.3) ? static_cast<int64_t>(gen.uniform(1, 300))
                                            : static_cast<int64_t>(gen.length(d.model(), true));
          op = Op{OpKind::kRead, std::min<int64_t>(n, capacity)};
        }
        if (!d.play(op, /*check=*/false)) return finish(false);
      }
    }
    if (!blocked.wake(when)) return finish(false);
  }
  if (!blocked.finish()) return finish(false);
  for (uint64_t i = gen.uniform(10, 40); i > 0; --i) {
    if (!d.model().has_reader() && (!d.model().has_writer() || i % 8 == 0)) break;
    if (!d.play(gen.next(d.model()))) return finish(false);
  }
  return finish(true);
}

TEST(PipeModelDifferential, BlockedWriterContinuation) {
  pipepool::testing::extend_watchdog(280);
  rp::ScopedBlockSigpipe block_sigpipe;
  const uint64_t count = env_number("PIPEPOOL_PIPE_MODEL_BLOCKING_SCENARIOS", 100);
  const auto start = std::chrono::steady_clock::now();
  Totals totals;
  for (uint64_t i = 0; i < count; ++i) {
    if (auto failure = run_blocking_scenario(1'000'000'000 + i, totals, -1)) {
      ADD_FAILURE() << *failure;
      break;
    }
  }
  report_totals("blocked-writer scenarios", totals, seconds_since(start));
}

// The same with the test thread holding the CPU, so that other calls can come between the
// writer's wake-up and its continuation (another writer taking the freed slot, F_SETPIPE_SZ).
TEST(PipeModelDifferential, BlockedWriterContinuationWithCallsBetweenWakeAndRun) {
  pipepool::testing::extend_watchdog(280);
  rp::ScopedBlockSigpipe block_sigpipe;
  rp::ExclusiveCpu cpu;
  if (cpu.cpu() < 0) GTEST_SKIP() << "cannot pin this thread at SCHED_FIFO";
  const uint64_t count = env_number("PIPEPOOL_PIPE_MODEL_BLOCKING_SCENARIOS", 100);
  const auto start = std::chrono::steady_clock::now();
  Totals totals;
  for (uint64_t i = 0; i < count; ++i) {
    if (auto failure = run_blocking_scenario(1'500'000'000 + i, totals, cpu.cpu())) {
      ADD_FAILURE() << *failure;
      break;
    }
  }
  report_totals("blocked-writer scenarios with calls between wake-up and run", totals,
                seconds_since(start));
}

// anon_pipe_write merges only at the start of a call: the woken writer's last 904 bytes take a
// new slot although the slot before, filled by another writer meanwhile, has room for them.
TEST(PipeModelDifferential, WokenWriterNeverMerges) {
  pipepool::testing::extend_watchdog(60);
  rp::ScopedBlockSigpipe block_sigpipe;
  rp::ExclusiveCpu cpu;
  if (cpu.cpu() < 0) GTEST_SKIP() << "cannot pin this thread at SCHED_FIFO";
  Differential d("woken writer, no merge", config_for_this_thread());
  {
    const size_t page = d.model().page_size();
    BlockedWrite blocked(d, {16 * page + 904}, cpu.cpu());
    ASSERT_TRUE(blocked.settle("start")) << d.report();
    ASSERT_TRUE(d.play(Op{OpKind::kRead, static_cast<int64_t>(2 * page)}, false))  // wakes it
        << d.report();
    ASSERT_TRUE(d.play(Op{OpKind::kWrite, 1}, false)) << d.report();  // another writer, first
    ASSERT_TRUE(blocked.wake("woken")) << d.report();
    ASSERT_TRUE(blocked.settle("end")) << d.report();
    ASSERT_FALSE(blocked.model_blocked());
    ASSERT_TRUE(blocked.finish()) << d.report();
  }
  // 14 pages, the 1 byte, the 904 bytes: 16 slots, full (merging would have left one free).
  EXPECT_EQ(d.model().slots_used(), 16u);
  EXPECT_FALSE(d.model().writable());
  EXPECT_TRUE(d.check_state("end")) << d.report();
}

// The EPERM rule of pipe_set_size for a caller without CAP_SYS_RESOURCE: a thread drops it from
// its own credentials and plays random sequences with the limit in the model.
TEST(PipeModelDifferential, UnprivilegedCapacityLimit) {
  pipepool::testing::extend_watchdog(120);
  std::optional<std::string> failure;
  Totals totals;
  bool dropped = false;
  const auto start = std::chrono::steady_clock::now();
  std::thread unprivileged([&] {
    rp::ScopedBlockSigpipe block_sigpipe;
    dropped = !rp::has_cap_sys_resource() || rp::drop_cap_sys_resource_in_this_thread();
    if (!dropped) return;
    for (uint64_t i = 0; i < 200 && !failure; ++i) {
      failure = run_random_sequence(2'000'000'000 + i, totals);
    }
    // The rule itself, deterministically: growing past pipe-max-size fails, shrinking does not.
    Differential d("unprivileged F_SETPIPE_SZ", config_for_this_thread());
    const int max = static_cast<int>(rp::pipe_max_size());
    for (int arg : {max, max + 1, 4096, max + 1, max, 2 * max}) {
      if (!failure && !d.play(Op{OpKind::kSetSize, arg})) failure = d.report();
    }
    add_totals(totals, d);
  });
  unprivileged.join();
  if (!dropped) GTEST_SKIP() << "could not drop CAP_SYS_RESOURCE in a thread";
  if (failure) ADD_FAILURE() << *failure;
  report_totals("without CAP_SYS_RESOURCE", totals, seconds_since(start));
}

// Replays one seed given in the environment, printing every call.
TEST(PipeModelDifferential, Replay) {
  const uint64_t seed = env_number("PIPEPOOL_PIPE_MODEL_SEED", UINT64_MAX);
  const uint64_t blocking_seed = env_number("PIPEPOOL_PIPE_MODEL_BLOCKING_SEED", UINT64_MAX);
  if (seed == UINT64_MAX && blocking_seed == UINT64_MAX) {
    GTEST_SKIP() << "set PIPEPOOL_PIPE_MODEL_SEED or PIPEPOOL_PIPE_MODEL_BLOCKING_SEED";
  }
  rp::ScopedBlockSigpipe block_sigpipe;
  Totals totals;
  if (seed != UINT64_MAX) {
    if (auto failure = run_random_sequence(seed, totals, true)) ADD_FAILURE() << *failure;
  }
  if (blocking_seed != UINT64_MAX) {
    std::optional<rp::ExclusiveCpu> cpu;
    if (env_number("PIPEPOOL_PIPE_MODEL_SAME_CPU", 0) != 0) cpu.emplace();
    const int on = cpu ? cpu->cpu() : -1;
    if (auto failure = run_blocking_scenario(blocking_seed, totals, on, true)) {
      ADD_FAILURE() << *failure;
    }
  }
  std::printf("[ pipe model ] replay: %llu calls agree\n",
              static_cast<unsigned long long>(totals.operations));
}

}  // namespace
}  // namespace pipepool::sim

// ---- vmsplice(2) (fs/splice.c: vmsplice_to_pipe, iter_to_pipe) ---------------------------------

namespace pipepool::sim {
namespace {

std::vector<std::byte> pattern_bytes(size_t n, int seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 31 + seed * 7) & 0xff);
  return out;
}

TEST(PipeModelVmsplice, OneSlotPerPageFragmentNeverMerged) {
  PipeModel pipe;
  const auto data = pattern_bytes(10000, 1);
  const std::span<const std::byte> parts[] = {data};
  // 16 bytes into its first page: 4080 + 4096 + 1824.
  const auto w = pipe.vmsplice(parts, 16, true);
  EXPECT_EQ(w.result, 10000);
  ASSERT_EQ(pipe.slots_used(), 3u);
  EXPECT_EQ(pipe.buffer(0).offset, 16u);
  EXPECT_EQ(pipe.buffer(0).len, 4080u);
  EXPECT_EQ(pipe.buffer(1).len, 4096u);
  EXPECT_EQ(pipe.buffer(2).len, 1824u);
  EXPECT_FALSE(pipe.buffer(2).can_merge);
  // A small write behind a fragment takes a slot of its own (no PIPE_BUF_FLAG_CAN_MERGE).
  EXPECT_EQ(pipe.write(bytes_of("ab"), true).result, 2);
  EXPECT_EQ(pipe.slots_used(), 4u);
  // Nor does a fragment merge into a written page.
  const std::span<const std::byte> tiny[] = {std::span<const std::byte>(data).first(3)};
  EXPECT_EQ(pipe.vmsplice(tiny, 0, true).result, 3);
  EXPECT_EQ(pipe.slots_used(), 5u);
  std::vector<std::byte> out(10005);
  ASSERT_EQ(pipe.read(out, true).result, 10005);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), out.begin()));
}

TEST(PipeModelVmsplice, SixteenFragmentsFillSixteenSlotsWhateverTheirSize) {
  PipeModel pipe;
  const auto data = pattern_bytes(16, 2);
  // Each iovec of one byte is a fragment, each in a slot.
  std::vector<std::span<const std::byte>> parts;
  for (int i = 0; i < 16; ++i) parts.push_back(std::span<const std::byte>(data).subspan(i, 1));
  EXPECT_EQ(pipe.vmsplice(parts, 100, true).result, 16);
  EXPECT_EQ(pipe.slots_used(), 16u);
  EXPECT_EQ(pipe.bytes(), 16u);
  EXPECT_FALSE(pipe.writable());
  EXPECT_EQ(pipe.vmsplice(parts, 0, true).result, -EAGAIN);  // SPLICE_F_NONBLOCK, ring full
  EXPECT_EQ(pipe.write(bytes_of("z"), true).result, -EAGAIN);
  // Blocking: sleeps before transferring anything.
  const auto b = pipe.vmsplice(parts, 0, false);
  EXPECT_TRUE(b.blocked);
  EXPECT_EQ(b.result, 0);
}

TEST(PipeModelVmsplice, PartialTransferThenTheBlockingLoopGoesOn) {
  PipeModel pipe;  // 16 slots
  const auto data = pattern_bytes(20 * kPage, 3);
  const std::span<const std::byte> parts[] = {data};
  auto nb = pipe.vmsplice(parts, 0, true);
  EXPECT_EQ(nb.result, 16 * int64_t{kPage});  // what fits, a short count
  std::vector<std::byte> out(20 * kPage);
  ASSERT_EQ(pipe.read(std::span<std::byte>(out).first(16 * kPage), true).result, 16 * kPage);
  auto w = pipe.vmsplice(std::span<const std::span<const std::byte>>(parts), 0, false);
  // Blocking, from the start again on an empty pipe: 16 pages in, blocked for the rest.
  EXPECT_EQ(w.result, 16 * int64_t{kPage});
  EXPECT_TRUE(w.blocked);
  std::vector<std::byte> sink(16 * kPage);
  ASSERT_EQ(pipe.read(sink, true).result, 16 * kPage);
  w = pipe.continue_vmsplice(parts, 0, static_cast<size_t>(w.result));
  EXPECT_EQ(w.result, 20 * int64_t{kPage});
  EXPECT_FALSE(w.blocked);
  pipe.close_reader();
  EXPECT_EQ(pipe.vmsplice(parts, 0, false).result, -EPIPE);
}

// The model against the kernel: vmsplice(SPLICE_F_NONBLOCK) of page-offset memory, writes and
// reads interleaved, the same results, readiness, FIONREAD and bytes on both.
TEST(PipeModelDifferential, VmspliceAgainstTheKernel) {
  namespace rp = pipepool::sim::testing;
  rp::RealPipe real;
  PipeModel model;
  ASSERT_EQ(real.size(), static_cast<int64_t>(model.capacity_bytes()));
  std::mt19937 rng(11);
  // Page-aligned memory, never modified once spliced (the real pipe reads it later).
  std::vector<std::unique_ptr<std::byte, decltype(&std::free)>> keep;
  for (int op = 0; op < 400; ++op) {
    const int kind = static_cast<int>(rng() % 3);
    if (kind == 0) {
      const uint32_t offset = rng() % 2 ? 0 : static_cast<uint32_t>(rng() % kPage);
      const size_t n = 1 + rng() % (3 * kPage);
      auto* memory =
          static_cast<std::byte*>(std::aligned_alloc(kPage, (offset + n + kPage) / kPage * kPage));
      keep.emplace_back(memory, &std::free);
      const auto data = pattern_bytes(n, op);
      std::memcpy(memory + offset, data.data(), n);
      iovec iov{memory + offset, n};
      const int64_t r =
          rp::result_or_errno(::vmsplice(real.write_fd(), &iov, 1, SPLICE_F_NONBLOCK));
      const std::span<const std::byte> parts[] = {std::span<const std::byte>(memory + offset, n)};
      const auto m = model.vmsplice(parts, offset, true);
      ASSERT_EQ(r, m.result) << "vmsplice of " << n << " bytes at page offset " << offset << ", op "
                             << op;
    } else if (kind == 1) {
      const auto data = pattern_bytes(1 + rng() % 5000, op);
      ASSERT_EQ(real.write(data), model.write(data, true).result) << "write, op " << op;
    } else {
      std::vector<std::byte> a(1 + rng() % 9000), b(a.size());
      const int64_t ra = real.read(a);
      const int64_t rb = model.read(b, true).result;
      ASSERT_EQ(ra, rb) << "read, op " << op;
      if (ra > 0) {
        ASSERT_TRUE(std::equal(a.begin(), a.begin() + ra, b.begin())) << "op " << op;
      }
    }
    ASSERT_EQ(real.fionread(), int64_t(model.bytes())) << "op " << op;
    ASSERT_EQ((real.poll_write_end() & POLLOUT) != 0, model.writable()) << "op " << op;
  }
}

}  // namespace
}  // namespace pipepool::sim
