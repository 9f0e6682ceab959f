// Tests of the socketpair model: unit tests of its arithmetic, and the differential test that plays
// the same generated calls on a real socketpair(AF_UNIX, SOCK_STREAM) and on the model and requires
// identical answers (return values, bytes read, SIGPIPE, poll() revents POLLIN/POLLOUT/POLLHUP/
// POLLERR/POLLRDHUP of each open end, SIOCINQ, SIOCOUTQ, SO_SNDBUF) after every call.
//
// A failing sequence prints its seed and calls; replay it alone with
//   PIPEPOOL_SOCKET_MODEL_SEED=<seed> sim_tests --gtest_filter='SocketModelDifferential.Replay'
// (PIPEPOOL_SOCKET_MODEL_BLOCKING_SEED=<seed> for a blocking-writer scenario).
// PIPEPOOL_SOCKET_MODEL_SEQUENCES and PIPEPOOL_SOCKET_MODEL_BLOCKING_SCENARIOS change the counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "socket_model.hpp"
#include "testing_real_pipe.hpp"
#include "testing_real_socket.hpp"

namespace pipepool::sim {
namespace {

namespace rp = pipepool::sim::testing;

std::vector<std::byte> filled(size_t n, uint8_t value = 'x') {
  return std::vector<std::byte>(n, std::byte{value});
}

// ---------------------------------------------------------------------------------------------
// Unit tests: the arithmetic, with the numbers this kernel gave (SIOCOUTQ after one write).

TEST(SocketModel, TruesizeOfOneSkb) {
  SocketPairModel pair;
  // size -> truesize, measured on 6.18: kmalloc size of the head + 256 + frag pages.
  const std::pair<uint32_t, uint32_t> table[] = {
      {1, 768},     {192, 768},   {193, 1280},   {704, 1280},  {705, 2304},
      {1728, 2304}, {1729, 4352}, {3776, 4352},  {3777, 4864}, {4288, 4864},
      {4289, 5376}, {7873, 8960}, {36544, 37120}};
  for (const auto& [size, truesize] : table) {
    EXPECT_EQ(pair.skb_shape(size).truesize, truesize) << size;
  }
  EXPECT_EQ(pair.skb_shape(3777).head_bytes, 0u);  // all 3777 bytes go into one page frag
  EXPECT_EQ(pair.skb_shape(36544).head_bytes, 3776u);
  EXPECT_EQ(pair.max_skb_bytes(0), 36544u);
}

TEST(SocketModel, SmallWritesFillTheBufferWithFewBytes) {
  SocketPairModel pair;
  const auto one = filled(1);
  int count = 0;
  while (pair.write(0, one, true).result == 1) ++count;
  // Each 1-byte skb costs 768: the 278th is allocated at 277 * 768 = 212736 < 212992.
  EXPECT_EQ(count, 278);
  EXPECT_EQ(pair.outq_bytes(0), 278u * 768);
  EXPECT_EQ(pair.inq_bytes(1), 278u);
  EXPECT_FALSE(pair.writable(0));
}

TEST(SocketModel, OneLargeWriteOvershootsAndStopsAtTheBuffer) {
  SocketPairModel pair;
  const auto big = filled(1 << 20);
  auto w = pair.write(0, big, true);
  // 36544-byte skbs of 37120 bytes: the 6th is allocated at 185600 < 212992.
  EXPECT_EQ(w.result, 6 * 36544);
  EXPECT_EQ(pair.outq_bytes(0), 6u * 37120);
  EXPECT_EQ(pair.write(0, big, true).result, -EAGAIN);
}

TEST(SocketModel, MemoryReturnsOnlyWhenAWholeSkbIsRead) {
  SocketPairModel pair;
  pair.write(0, filled(1000), true);
  std::vector<std::byte> out(999);
  ASSERT_EQ(pair.read(1, out, true).result, 999);
  EXPECT_EQ(pair.outq_bytes(0), 2304u);
  EXPECT_EQ(pair.inq_bytes(1), 1u);  // the unread byte; its skb's memory is still charged
  EXPECT_EQ(pair.unread_bytes(1), 1u);
  out.resize(10);
  ASSERT_EQ(pair.read(1, out, true).result, 1);
  EXPECT_EQ(pair.outq_bytes(0), 0u);
  EXPECT_EQ(pair.inq_bytes(1), 0u);
}

TEST(SocketModel, BlockedWriterWakesAtAQuarterOfTheBuffer) {
  SocketPairModel pair;
  const auto data = filled(500000);
  auto w = pair.write(0, data, false);
  ASSERT_TRUE(w.blocked);
  EXPECT_EQ(w.result, 6 * 36544);
  std::vector<std::byte> out(36544);
  // Freeing skbs down to 2 * 37120 = 74240 charged: (74240 + 2) * 4 > 222720, no wake-up yet.
  for (int i = 0; i < 4; ++i) ASSERT_EQ(pair.read(1, out, true).result, 36544);
  EXPECT_FALSE(pair.writer_can_proceed(0));
  ASSERT_EQ(pair.read(1, out, true).result, 36544);  // 37120 charged: woken
  ASSERT_TRUE(pair.writer_can_proceed(0));
  w = pair.continue_write(0, data, static_cast<size_t>(w.result));
  EXPECT_TRUE(w.blocked);
  EXPECT_EQ(w.written, 5u * 36544);
}

TEST(SocketModel, DataFromThePeerWakesABlockedWriter) {
  SocketPairModel pair;
  const auto data = filled(400000);
  auto w = pair.write(0, data, false);
  ASSERT_TRUE(w.blocked);
  std::vector<std::byte> out(36544);
  ASSERT_EQ(pair.read(1, out, true).result, 36544);  // below sndbuf, but not a quarter of it
  EXPECT_FALSE(pair.writer_can_proceed(0));
  ASSERT_EQ(pair.write(1, filled(1), true).result, 1);  // arrives at end 0: wakes its writer
  ASSERT_TRUE(pair.writer_can_proceed(0));
  w = pair.continue_write(0, data, static_cast<size_t>(w.result));
  EXPECT_TRUE(w.blocked);
  EXPECT_EQ(w.written, 36544u);
}

TEST(SocketModel, SndbufIsDoubledAndBounded) {
  SocketPairModel pair(SocketConfig{.wmem_max_bytes = 4194304});
  EXPECT_EQ(pair.set_sndbuf(0, 1), 0);
  EXPECT_EQ(pair.sndbuf_bytes(0), 4608u);
  pair.set_sndbuf(0, 10000);
  EXPECT_EQ(pair.sndbuf_bytes(0), 20000u);
  EXPECT_EQ(pair.max_skb_bytes(0), 9936u);
  pair.set_sndbuf(0, -1);
  EXPECT_EQ(pair.sndbuf_bytes(0), 8388608u);
}

TEST(SocketModel, CloseGivesMemoryBackAndShutsThePeerDown) {
  SocketPairModel pair;
  pair.write(0, filled(5000), true);
  pair.write(1, filled(10), true);
  pair.close(1);  // end 1 leaves end 0's 5000 bytes unread: they are freed, end 0 gets ECONNRESET
  EXPECT_EQ(pair.outq_bytes(0), 0u);
  EXPECT_TRUE(pair.hup(0));
  EXPECT_TRUE(pair.err(0));  // ECONNRESET: end 1 closed with unread data
  auto w = pair.write(0, filled(1), true);
  EXPECT_EQ(w.result, -EPIPE);
  EXPECT_TRUE(w.sigpipe);
  std::vector<std::byte> out(100);
  EXPECT_EQ(pair.read(0, out, true).result, 10);
  EXPECT_EQ(pair.read(0, out, true).result, -ECONNRESET);
  EXPECT_EQ(pair.read(0, out, true).result, 0);
  EXPECT_FALSE(pair.err(0));
}

// ---------------------------------------------------------------------------------------------
// The differential test.

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// The send-buffer sizes sequences start from (the value given to SO_SNDBUF; the kernel doubles
// it): the minimum, small ones where sndbuf / 2 - 64 cuts the skbs, the default, larger.
constexpr int kSndbufValues[] = {0, 2304, 3000, 8192, 16384, 65536, 106496, 212992};

struct Totals {
  uint64_t sequences = 0, calls = 0, eagain = 0, partial = 0, epipe = 0, reads = 0,
           partial_skb_reads = 0, blocked = 0, wakeups = 0, resleeps = 0, peer_wakeups = 0,
           closes = 0, econnreset = 0, writevs = 0, blocked_cut_short = 0;
};

std::string poll_text(short ev) {
  std::string s;
  if (ev & POLLIN) s += "IN ";
  if (ev & POLLOUT) s += "OUT ";
  if (ev & POLLHUP) s += "HUP ";
  if (ev & POLLRDHUP) s += "RDHUP ";
  if (ev & POLLERR) s += "ERR ";
  return s.empty() ? "-" : s.substr(0, s.size() - 1);
}

// The same calls on a real pair and on the model; every call compared, every state checked.
class Differential {
 public:
  Differential(uint64_t seed, Totals& totals)
      : seed_(seed),
        model_(SocketConfig{.sndbuf_bytes = rp::net_core_sysctl("wmem_default", 212992),
                            .wmem_max_bytes = rp::net_core_sysctl("wmem_max", 212992)}),
        totals_(totals) {}

  SocketPairModel& model() { return model_; }
  rp::RealSocketPair& real() { return real_; }
  Totals& totals() { return totals_; }
  bool failed() const { return failed_; }
  void log(const std::string& line) { log_.push_back(line); }

  bool fail(const std::string& what) {
    if (!failed_) {
      std::string report = "seed " + std::to_string(seed_) + ": " + what + "\ncalls:\n";
      for (const auto& line : log_) report += "  " + line + "\n";
      ADD_FAILURE() << report;
    }
    failed_ = true;
    return false;
  }

  // The next n bytes of end e's stream (a pattern that shows reordering and loss). A non-blocking
  // write never queues more than sndbuf + one skb, so unless `all`, only that much is patterned.
  std::vector<std::byte> stream(int end, size_t n, bool all = false) const {
    std::vector<std::byte> out(n);
    const size_t patterned =
        all ? n : std::min<size_t>(n, size_t{model_.sndbuf_bytes(end)} + 65536);
    uint64_t pos = next_[end];
    for (size_t i = 0; i < patterned; ++i, ++pos) {
      out[i] = std::byte(static_cast<uint8_t>(pos * 131 + (pos >> 8) + uint64_t(end) * 7));
    }
    return out;
  }
  void advance(int end, size_t n) { next_[end] += n; }

  short model_poll(int end) const {
    short ev = 0;
    if (model_.readable(end)) ev |= POLLIN;
    if (model_.writable(end)) ev |= POLLOUT;
    if (model_.hup(end)) ev |= POLLHUP | POLLRDHUP;
    if (model_.err(end)) ev |= POLLERR;
    return ev;
  }

  bool check_state(const std::string& when) {
    for (int end = 0; end < 2; ++end) {
      if (!real_.open(end)) continue;
      const short mask = POLLIN | POLLOUT | POLLHUP | POLLERR | POLLRDHUP;
      const short real_ev = static_cast<short>(real_.poll_end(end) & mask);
      const short model_ev = model_poll(end);
      const std::string e = " of end " + std::to_string(end) + " " + when;
      if (real_ev != model_ev) {
        return fail("poll" + e + ": kernel " + poll_text(real_ev) + ", model " +
                    poll_text(model_ev));
      }
      if (real_.inq(end) != static_cast<int64_t>(model_.inq_bytes(end))) {
        return fail("SIOCINQ" + e + ": kernel " + std::to_string(real_.inq(end)) + ", model " +
                    std::to_string(model_.inq_bytes(end)));
      }
      if (real_.outq(end) != static_cast<int64_t>(model_.outq_bytes(end))) {
        return fail("SIOCOUTQ" + e + ": kernel " + std::to_string(real_.outq(end)) + ", model " +
                    std::to_string(model_.outq_bytes(end)));
      }
      if (real_.sndbuf(end) != static_cast<int64_t>(model_.sndbuf_bytes(end))) {
        return fail("SO_SNDBUF" + e + ": kernel " + std::to_string(real_.sndbuf(end)) + ", model " +
                    std::to_string(model_.sndbuf_bytes(end)));
      }
    }
    return true;
  }

  // One non-blocking send of n bytes; `parts` > 1 splits it into that many iovecs (sendmsg).
  bool write(int end, size_t n, size_t parts = 1) {
    const auto data = stream(end, n);
    std::vector<std::span<const std::byte>> iov;
    for (size_t i = 0, at = 0; i < parts; ++i) {
      const size_t len = i + 1 == parts ? n - at : (n - at) / 2;
      iov.emplace_back(data.data() + at, len);
      at += len;
    }
    const int64_t r = parts == 1 ? real_.send_nowait(end, data) : real_.sendv_nowait(end, iov);
    const bool real_sigpipe = rp::ScopedBlockSigpipe::take_pending_sigpipe();
    const auto m = parts == 1 ? model_.write(end, data, true) : model_.writev(end, iov, true);
    ++totals_.calls;
    if (parts > 1) ++totals_.writevs;
    log("end " + std::to_string(end) + (parts > 1 ? " sendmsg " : " send ") + std::to_string(n) +
        (parts > 1 ? " in " + std::to_string(parts) + " iovecs" : "") + " -> " + std::to_string(r) +
        (real_sigpipe ? " +SIGPIPE" : "") + "   [outq " + std::to_string(real_.outq(end)) + "]");
    if (r != m.result || real_sigpipe != m.sigpipe) {
      return fail("send: kernel " + std::to_string(r) + (real_sigpipe ? " +SIGPIPE" : "") +
                  ", model " + std::to_string(m.result) + (m.sigpipe ? " +SIGPIPE" : ""));
    }
    if (r == -EAGAIN) ++totals_.eagain;
    if (r == -EPIPE) ++totals_.epipe;
    if (r > 0 && static_cast<size_t>(r) < n) ++totals_.partial;
    if (r > 0) advance(end, static_cast<size_t>(r));
    return check_state("after send");
  }

  bool read(int end, size_t n) {
    std::vector<std::byte> real_out(n), model_out(n);
    const size_t skbs_before = model_.skbs_queued(end);
    const int64_t r = real_.recv_nowait(end, real_out);
    const auto m = model_.read(end, model_out, true);
    ++totals_.calls;
    ++totals_.reads;
    log("end " + std::to_string(end) + " recv " + std::to_string(n) + " -> " + std::to_string(r));
    if (r != m.result) {
      return fail("recv: kernel " + std::to_string(r) + ", model " + std::to_string(m.result));
    }
    if (r > 0 && !std::equal(real_out.begin(), real_out.begin() + r, model_out.begin())) {
      return fail("recv: different bytes");
    }
    if (r == -ECONNRESET) ++totals_.econnreset;
    if (r > 0 && model_.skbs_queued(end) == skbs_before && skbs_before != 0) {
      ++totals_.partial_skb_reads;
    }
    return check_state("after recv");
  }

  bool set_sndbuf(int end, int value) {
    const int64_t r = real_.set_sndbuf(end, value);
    const int64_t m = model_.set_sndbuf(end, value);
    ++totals_.calls;
    log("end " + std::to_string(end) + " SO_SNDBUF " + std::to_string(value) + " -> " +
        std::to_string(r) + " (sndbuf " + std::to_string(real_.sndbuf(end)) + ")");
    if (r != m)
      return fail("SO_SNDBUF: kernel " + std::to_string(r) + ", model " + std::to_string(m));
    return check_state("after SO_SNDBUF");
  }

  bool close(int end) {
    real_.close_end(end);
    model_.close(end);
    ++totals_.calls;
    ++totals_.closes;
    log("close end " + std::to_string(end));
    return check_state("after close");
  }

 private:
  uint64_t seed_;
  rp::RealSocketPair real_;
  SocketPairModel model_;
  Totals& totals_;
  uint64_t next_[2] = {0, 0};
  std::vector<std::string> log_;
  bool failed_ = false;
};

// Write sizes biased to the edges: the head's slab classes, a page, the frag boundary, one skb,
// sndbuf, the room left below sndbuf, and beyond the buffer.
size_t pick_write_size(std::mt19937_64& rng, const SocketPairModel& model, int end) {
  const size_t sndbuf = model.sndbuf_bytes(end);
  const size_t skb = model.max_skb_bytes(end);
  const size_t charged = model.outq_bytes(end);
  const size_t room = sndbuf > charged ? sndbuf - charged : 1;
  const size_t edges[] = {1,
                          2,
                          192,
                          193,
                          704,
                          705,
                          1728,
                          1729,
                          3776,
                          3777,
                          4096,
                          4097,
                          skb,
                          skb + 1,
                          skb - 1,
                          2 * skb + 1,
                          sndbuf,
                          sndbuf + 1,
                          room,
                          room + 1,
                          room / 768 * 768,
                          2 * sndbuf + 17,
                          0};
  switch (rng() % 4) {
    case 0:
    case 1: {
      const size_t base = edges[rng() % std::size(edges)];
      const int64_t jitter = static_cast<int64_t>(rng() % 3) - 1;
      return base == 0
                 ? 0
                 : static_cast<size_t>(std::max<int64_t>(1, static_cast<int64_t>(base) + jitter));
    }
    case 2:
      return 1 + rng() % 256;  // tiny messages: the truesize dominates
    default:
      return 1 + rng() % std::min<size_t>(3 * sndbuf, 1 << 21);
  }
}

size_t pick_read_size(std::mt19937_64& rng, const SocketPairModel& model, int end) {
  const size_t unread = model.unread_bytes(end);
  switch (rng() % 5) {
    case 0:
      return 1 + rng() % 64;
    case 1:
      return unread + (rng() % 3);
    case 2:
      return unread > 1 ? unread - 1 : 1;
    case 3:
      return rng() % 40 == 0 ? 0 : 1 + rng() % 100000;
    default:
      return 1 + rng() % (unread + 1);
  }
}

// One generated sequence: calls on both ends (mostly end 0 writing to end 1), SO_SNDBUF changes,
// sometimes a close of either end near the end.
void play_sequence(uint64_t seed, Totals& totals) {
  std::mt19937_64 rng(seed);
  Differential d(seed, totals);
  ++totals.sequences;
  const int start_value = kSndbufValues[seed % std::size(kSndbufValues)];
  if (start_value != 0 && !d.set_sndbuf(0, start_value)) return;
  if (rng() % 2 == 0 && !d.set_sndbuf(1, kSndbufValues[rng() % std::size(kSndbufValues)])) return;
  if (!d.check_state("at start")) return;
  const int calls = 10 + static_cast<int>(rng() % 60);
  for (int i = 0; i < calls && !d.failed(); ++i) {
    const uint64_t kind = rng() % 100;
    if (kind < 45) {
      const int end = rng() % 5 == 0 ? 1 : 0;  // mostly end 0 writes, end 1 reads
      const size_t parts = rng() % 6 == 0 ? 2 + rng() % 3 : 1;
      if (d.real().open(end)) d.write(end, pick_write_size(rng, d.model(), end), parts);
    } else if (kind < 90) {
      const int end = rng() % 5 == 0 ? 0 : 1;
      if (d.real().open(end)) d.read(end, pick_read_size(rng, d.model(), end));
    } else if (kind < 97) {
      const int end = static_cast<int>(rng() % 2);
      const int value = rng() % 16 == 0 ? static_cast<int>(static_cast<uint32_t>(rng()))
                                        : kSndbufValues[rng() % std::size(kSndbufValues)];
      if (d.real().open(end)) d.set_sndbuf(end, value);
    } else if (i > calls / 2) {
      const int end = static_cast<int>(rng() % 2);
      if (d.real().open(end) && d.real().open(end ^ 1)) d.close(end);
    }
  }
}

// A writer thread doing one blocking write(2) of `data` on end 0.
class WriterThread {
 public:
  WriterThread(rp::RealSocketPair& real, std::span<const std::byte> data, int cpu)
      : thread_([this, &real, data, cpu] {
          rp::run_on_cpu_below(cpu);
          tid_.store(rp::current_tid());
          result_.store(real.write_blocking(0, data));
          done_.store(true);
        }) {}
  ~WriterThread() {
    if (thread_.joinable()) thread_.join();
  }
  WriterThread(const WriterThread&) = delete;
  WriterThread& operator=(const WriterThread&) = delete;

  bool done() const { return done_.load(); }
  pid_t tid() const { return tid_.load(); }
  int64_t join() {
    thread_.join();
    return result_.load();
  }

 private:
  std::atomic<pid_t> tid_{0};
  std::atomic<int64_t> result_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

enum class Settled { kAsleep, kDone, kTimeout };

// Waits until the writer has returned, or sleeps with SIOCOUTQ unchanged over several looks.
Settled wait_for_writer(const WriterThread& writer, rp::RealSocketPair& real) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int64_t last = -1;
  int stable = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (writer.done()) return Settled::kDone;
    const pid_t tid = writer.tid();
    if (tid != 0) {
      const char state = rp::thread_state(tid);
      const int64_t charged = real.outq(0);
      stable = (state == 'S' && charged == last) ? stable + 1 : 0;
      last = charged;
      if (stable >= 3 && !writer.done()) return Settled::kAsleep;
    }
    rp::sleep_us(100);
  }
  return Settled::kTimeout;
}

// One blocking write on end 0 by a thread on the test's CPU (held at SCHED_FIFO, so a woken writer
// runs only once the test sleeps), against the model's write / continue_write. Between wake-ups
// the test reads from end 1, writes from end 1 to end 0 (its data wakes end 0's writer), changes
// SO_SNDBUF, reads end 0, and sometimes closes end 1.
void play_blocking_scenario(uint64_t seed, Totals& totals) {
  std::mt19937_64 rng(seed);
  Differential d(seed, totals);
  ++totals.sequences;
  const int value = kSndbufValues[seed % std::size(kSndbufValues)];
  if (value != 0 && !d.set_sndbuf(0, value)) return;
  // Something already queued: a few writes of either end, or end 0 filled with tiny ones.
  if (rng() % 3 == 0) {
    const size_t n = 1 + rng() % 300;
    while (d.model().writable(0) || d.model().outq_bytes(0) < d.model().sndbuf_bytes(0)) {
      if (!d.write(0, n) || d.model().outq_bytes(0) >= d.model().sndbuf_bytes(0)) break;
    }
  } else {
    for (int i = static_cast<int>(rng() % 4); i > 0 && !d.failed(); --i) {
      d.write(static_cast<int>(rng() % 2), 1 + rng() % 5000);
    }
  }
  if (d.failed()) return;
  const size_t sndbuf = d.model().sndbuf_bytes(0);
  const size_t length =
      rng() % 4 == 0 ? 1 + rng() % 2000 : sndbuf * (1 + rng() % 3) + rng() % 50000;
  const auto data = d.stream(0, length, /*all=*/true);
  d.log("end 0 blocking write " + std::to_string(length));

  rp::ExclusiveCpu cpu;
  WriterThread writer(d.real(), data, cpu.cpu());
  // On an early return (a failed comparison) the writer may still sleep: closing end 1 wakes it
  // (EPIPE or ECONNRESET) before ~WriterThread joins it.
  struct WakeOnExit {
    rp::RealSocketPair& real;
    ~WakeOnExit() { real.close_end(1); }
  } wake_on_exit{d.real()};
  auto step = d.model().write(0, data, false);
  if (step.blocked) ++totals.blocked;
  const auto settle = [&](const std::string& when) {
    const Settled s = wait_for_writer(writer, d.real());
    if (s == Settled::kTimeout) return d.fail(when + ": the writer neither slept nor returned");
    if ((s == Settled::kDone) == step.blocked) {
      return d.fail(when + ": the kernel's writer " +
                    (s == Settled::kDone ? "returned" : "sleeps") + ", the model's " +
                    (step.blocked ? "sleeps" : "returned") + " (model at " +
                    std::to_string(step.result) + ")");
    }
    return d.check_state(when);
  };
  if (!settle("writer started")) return;
  for (int i = 0; i < 400 && step.blocked && !d.failed(); ++i) {
    const bool draining = i >= 40;
    const uint64_t kind = draining ? 0 : rng() % 100;
    bool peer_data = false;
    if (kind < 50) {
      const size_t skb = d.model().max_skb_bytes(0);
      const size_t sizes[] = {1 + rng() % 100, skb, skb + 1, 1 + rng() % (4 * skb),
                              d.model().unread_bytes(1)};
      d.read(1, draining ? 1 << 20 : sizes[rng() % std::size(sizes)]);
    } else if (kind < 65) {
      d.write(1, 1 + rng() % 3000);
      peer_data = true;
    } else if (kind < 80) {
      d.set_sndbuf(0, kSndbufValues[rng() % std::size(kSndbufValues)]);
    } else if (kind < 88 && d.model().skbs_queued(1) != 0) {
      // The wake-up edge: SO_SNDBUF set so that freeing the oldest skb leaves the writer charged
      // W with 4 * (W + 2) just above, at, or just below sk_sndbuf (sock_wfree's extra
      // reference), then that skb read to its end.
      const auto oldest = d.model().skb(1, 0);
      const int64_t w_after = static_cast<int64_t>(d.model().outq_bytes(0)) - oldest.truesize;
      const int64_t delta = static_cast<int64_t>(rng() % 4) * 2 - 2;
      d.set_sndbuf(0, static_cast<int>(2 * w_after + 2 + delta));
      if (!d.failed()) d.read(1, oldest.len - oldest.consumed);
    } else if (kind < 95) {
      d.read(0, 1 + rng() % 5000);
    } else if (kind < 98) {
      d.read(1, 1 + rng() % 100);
    } else {
      d.close(1);
    }
    if (d.failed()) return;
    if (d.model().writer_can_proceed(0)) {
      ++totals.wakeups;
      if (peer_data) ++totals.peer_wakeups;
      const auto so_far = static_cast<size_t>(step.result);
      step = d.model().continue_write(0, data, so_far);
      if (step.blocked && step.written == 0) ++totals.resleeps;
      d.log("  model writer woken: wrote " + std::to_string(step.written) +
            (step.blocked ? ", sleeps again" : ", returns " + std::to_string(step.result)));
    }
    if (!settle("after call " + std::to_string(i))) return;
  }
  if (step.blocked) {
    d.fail("the writer never finished");
    return;
  }
  const int64_t r = writer.join();
  const bool sigpipe = rp::ScopedBlockSigpipe::take_pending_sigpipe();
  d.log("kernel writer returned " + std::to_string(r) + (sigpipe ? " +SIGPIPE" : ""));
  if (r != step.result || sigpipe != step.sigpipe) {
    d.fail("blocking write: kernel " + std::to_string(r) + (sigpipe ? " +SIGPIPE" : "") +
           ", model " + std::to_string(step.result) + (step.sigpipe ? " +SIGPIPE" : ""));
    return;
  }
  if (r != static_cast<int64_t>(length)) ++totals.blocked_cut_short;
  if (r > 0) d.advance(0, static_cast<size_t>(r));
  // The layout the write left: drain both ends and compare every byte.
  while (!d.failed() && d.real().open(1) && d.model().unread_bytes(1) != 0) d.read(1, 65536);
  d.check_state("at the end");
}

void print_totals(const char* name, const Totals& t) {
  std::printf(
      "%s: %llu sequences, %llu calls: %llu EAGAIN, %llu partial writes, %llu EPIPE, %llu reads "
      "(%llu left a partly read skb), %llu ECONNRESET, %llu closes, %llu sendmsg with iovecs; "
      "blocking: %llu sleeps, %llu wake-ups (%llu by the peer's data), %llu back to sleep, %llu "
      "cut short by a close\n",
      name, static_cast<unsigned long long>(t.sequences), static_cast<unsigned long long>(t.calls),
      static_cast<unsigned long long>(t.eagain), static_cast<unsigned long long>(t.partial),
      static_cast<unsigned long long>(t.epipe), static_cast<unsigned long long>(t.reads),
      static_cast<unsigned long long>(t.partial_skb_reads),
      static_cast<unsigned long long>(t.econnreset), static_cast<unsigned long long>(t.closes),
      static_cast<unsigned long long>(t.writevs), static_cast<unsigned long long>(t.blocked),
      static_cast<unsigned long long>(t.wakeups), static_cast<unsigned long long>(t.peer_wakeups),
      static_cast<unsigned long long>(t.resleeps),
      static_cast<unsigned long long>(t.blocked_cut_short));
}

class SocketModelRandom : public ::testing::TestWithParam<int> {};

TEST_P(SocketModelRandom, Sequences) {
  rp::ScopedBlockSigpipe block;
  const uint64_t count = env_u64("PIPEPOOL_SOCKET_MODEL_SEQUENCES", 500);
  Totals totals;
  for (uint64_t i = 0; i < count && !::testing::Test::HasFailure(); ++i) {
    play_sequence(static_cast<uint64_t>(GetParam()) * 1000003 + i, totals);
  }
  print_totals(("shard " + std::to_string(GetParam())).c_str(), totals);
  EXPECT_GT(totals.eagain, 0u);
  EXPECT_GT(totals.partial, 0u);
  EXPECT_GT(totals.partial_skb_reads, 0u);
}

INSTANTIATE_TEST_SUITE_P(Shards, SocketModelRandom, ::testing::Range(0, 8));

TEST(SocketModelDifferential, BlockedWriter) {
  rp::ScopedBlockSigpipe block;
  {
    rp::ExclusiveCpu probe;
    if (probe.cpu() < 0) GTEST_SKIP() << "needs SCHED_FIFO (root) to order the writer's wake-ups";
  }
  const uint64_t count = env_u64("PIPEPOOL_SOCKET_MODEL_BLOCKING_SCENARIOS", 300);
  Totals totals;
  for (uint64_t i = 0; i < count && !::testing::Test::HasFailure(); ++i) {
    play_blocking_scenario(7000001 + i, totals);
  }
  print_totals("blocking", totals);
  EXPECT_GT(totals.blocked, count / 2);
  EXPECT_GT(totals.wakeups, 0u);
  EXPECT_GT(totals.peer_wakeups, 0u);
}

TEST(SocketModelDifferential, Replay) {
  const uint64_t seed = env_u64("PIPEPOOL_SOCKET_MODEL_SEED", 0);
  const uint64_t blocking_seed = env_u64("PIPEPOOL_SOCKET_MODEL_BLOCKING_SEED", 0);
  if (seed == 0 && blocking_seed == 0) GTEST_SKIP() << "set PIPEPOOL_SOCKET_MODEL_SEED";
  rp::ScopedBlockSigpipe block;
  Totals totals;
  if (seed != 0) play_sequence(seed, totals);
  if (blocking_seed != 0) play_blocking_scenario(blocking_seed, totals);
}

}  // namespace
}  // namespace pipepool::sim
