// What goes wrong, on real processes (issue 6; the table is docs/what-goes-wrong.md): a worker
// that dies of any cause fails only its task, fast, and is replaced; task timeouts; the memory
// limit; malformed, oversized and truncated frames; the fork server's own death.
//
// Latencies are printed ("death-latency: ..."); the only timing assertions are the 100 ms
// on the median, and loose bounds that catch a hang.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fault_test_util.hpp"
#include "os_test_util.hpp"
#include "pipepool/pipepool.hpp"
#include "process_helpers.hpp"
#include "protocol/frame.hpp"
#include "watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using pipepool::faults::monotonic_ns;
using pipepool::faults::no_core_dumps;

// What tasks and the test tell each other, in memory shared with the workers.
struct Board {
  std::atomic<pid_t> victim{0};        // pid of the worker running the victim task
  std::atomic<int64_t> died_at_ns{0};  // when the victim was about to die by its own hand
  std::atomic<int> running{0};         // sleepers that have started
  std::atomic<int> runs[8] = {};       // runs of a task, to catch a second execution
  std::atomic<pid_t> grandchild{0};
  std::atomic<pid_t> sleepers[8] = {};
};
Board* g_board = nullptr;

// Each test gets a fresh board, mapped before its pool is built.
struct WithBoard : pipepool::faults::ScopedSharedMemory<Board> {
  WithBoard() : ScopedSharedMemory(g_board) {}
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int square(int x) {
  return x * x;
}
int slow_square(int x) {
  std::this_thread::sleep_for(1ms);
  return x * x;
}
double sleep_for_seconds(double seconds) {
  const int slot = g_board->running.fetch_add(1);
  if (slot < 8) g_board->sleepers[slot] = getpid();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}

enum Cause : int { kKilledFromOutside, kSegfault, kAbort, kExit7, kCauses };
const char* cause_name(int cause) {
  switch (cause) {
    case kKilledFromOutside:
      return "SIGKILL";
    case kSegfault:
      return "SIGSEGV";
    case kAbort:
      return "abort";
    case kExit7:
      return "_exit(7)";
  }
  return "?";
}

// The victim: says who it is, then dies as asked (or waits to be killed).
int die(int cause) {
  no_core_dumps();
  g_board->victim = getpid();
  switch (cause) {
    case kKilledFromOutside:
      for (;;) pause();
    case kSegfault: {
      // A real fault (not raise()): a store to a page mapped without access.
      void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      g_board->died_at_ns = monotonic_ns();
      *static_cast<volatile int*>(page) = 1;
      break;
    }
    case kAbort:
      g_board->died_at_ns = monotonic_ns();
      std::abort();
    case kExit7:
      g_board->died_at_ns = monotonic_ns();
      _exit(7);
  }
  return -1;
}

// Waits (bounded) until the victim task has reported its pid.
pid_t wait_for_victim() {
  const auto deadline = Clock::now() + 20s;
  while (g_board->victim == 0 && Clock::now() < deadline) std::this_thread::sleep_for(200us);
  return g_board->victim;
}

void expect_lost_as(const pipepool::WorkerLost& e, int cause, pid_t pid) {
  const std::string what = e.what();
  EXPECT_TRUE(contains(what, "(pid " + std::to_string(pid) + ")")) << what;
  switch (cause) {
    case kKilledFromOutside:
      EXPECT_EQ(e.signal_number(), SIGKILL);
      EXPECT_TRUE(contains(what, "killed by signal 9 (SIGKILL)")) << what;
      break;
    case kSegfault:
      EXPECT_EQ(e.signal_number(), SIGSEGV);
      EXPECT_TRUE(contains(what, "(SIGSEGV)")) << what;
      break;
    case kAbort:
      EXPECT_EQ(e.signal_number(), SIGABRT);
      EXPECT_TRUE(contains(what, "(SIGABRT)")) << what;
      break;
    case kExit7:
      EXPECT_EQ(e.signal_number(), 0);
      EXPECT_EQ(e.exit_code(), 7);
      EXPECT_TRUE(contains(what, "exited with code 7")) << what;
      break;
  }
}

// ---- worker death ------------------------------------------------------------------------------

TEST(FaultsWorkerDeath, EachCauseFailsOnlyItsTaskFastAndTheWorkerIsReplaced) {
  WithBoard board;
  pipepool::Pool pool(2);
  constexpr int kRounds = 12;
  std::vector<int> xs(24);
  for (int i = 0; i < 24; ++i) xs[i] = i;
  uint64_t deaths = 0;
  std::vector<double> all;
  for (int cause = 0; cause < kCauses; ++cause) {
    std::vector<double> latencies_ms;
    for (int round = 0; round < kRounds; ++round) {
      g_board->victim = 0;
      g_board->died_at_ns = 0;
      std::atomic<int64_t> failed_at_ns{0};
      auto others = pool.map_async(slow_square, xs, 1);
      auto victim = pool.apply_async(
          pipepool::Callbacks<int>{
              .error_callback = [&](std::exception_ptr) { failed_at_ns = monotonic_ns(); }},
          die, cause);
      const pid_t pid = wait_for_victim();
      ASSERT_NE(pid, 0) << "the victim task never started";
      int64_t died_at = 0;
      if (cause == kKilledFromOutside) {
        died_at = monotonic_ns();
        ASSERT_EQ(kill(pid, SIGKILL), 0);
      }
      try {
        victim.get();
        ADD_FAILURE() << cause_name(cause) << ": the victim returned";
      } catch (const pipepool::WorkerLost& e) {
        expect_lost_as(e, cause, pid);
      }
      ++deaths;
      if (cause != kKilledFromOutside) died_at = g_board->died_at_ns;
      for (int i = 0; i < 200 && failed_at_ns == 0; ++i) std::this_thread::sleep_for(1ms);
      ASSERT_NE(failed_at_ns.load(), 0) << "the error callback did not run";
      latencies_ms.push_back(static_cast<double>(failed_at_ns - died_at) / 1e6);
      // Every other task completes normally.
      auto ys = others.get();
      for (int i = 0; i < 24; ++i) ASSERT_EQ(ys[i], i * i);
    }
    std::printf("death-latency: %-8s median %.2f ms, p90 %.2f ms, max %.2f ms over %d deaths\n",
                cause_name(cause), pipepool::faults::percentile(latencies_ms, 50),
                pipepool::faults::percentile(latencies_ms, 90),
                pipepool::faults::percentile(latencies_ms, 100), kRounds);
    all.insert(all.end(), latencies_ms.begin(), latencies_ms.end());
  }
  // The number is 100 ms. The median is robust against a loaded machine; a single
  // sample is not (a descheduled I/O thread), so the maximum only has to rule out a hang or a
  // timeout-based detection.
  EXPECT_LT(pipepool::faults::percentile(all, 50), 100.0);
  EXPECT_LT(pipepool::faults::percentile(all, 100), 5000.0);
  // Replaced: both slots still work, and every death was counted.
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3, 4}, 1), (std::vector<int>{1, 4, 9, 16}));
  EXPECT_EQ(pool.stats().workers_lost, deaths);
  // A slot whose workers died young twice in a row waits a little before its next fork.
  for (int i = 0; i < 2000 && pool.stats().workers_started < 2 + deaths; ++i) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(pool.stats().workers_started, 2 + deaths);
}

int square_but_die_at_7(int x) {
  if (x == 7) {
    no_core_dumps();
    raise(SIGKILL);
  }
  return x * x;
}

TEST(FaultsWorkerDeath, MapRaisesAndImapUnorderedYieldsEveryOtherResult) {
  pipepool::Pool pool(2);
  std::vector<int> xs(20);
  for (int i = 0; i < 20; ++i) xs[i] = i;
  EXPECT_THROW(pool.map(square_but_die_at_7, xs, 1), pipepool::WorkerLost);
  EXPECT_THROW(pool.map(square_but_die_at_7, xs), pipepool::WorkerLost);  // chunks of 3

  auto range = pool.imap_unordered(square_but_die_at_7, xs);
  std::multiset<int> got;
  int lost = 0;
  // Iteration throws at the lost task; the range goes on after it.
  std::optional<decltype(range.begin())> it;
  for (;;) {
    try {
      if (!it) {
        it.emplace(range.begin());
      } else {
        ++*it;
      }
    } catch (const pipepool::WorkerLost& e) {
      ++lost;
      EXPECT_TRUE(contains(e.what(), "SIGKILL")) << e.what();
      continue;
    }
    if (*it == std::default_sentinel) break;
    got.insert(**it);
  }
  EXPECT_EQ(lost, 1);
  std::multiset<int> expected;
  for (int x : xs) {
    if (x != 7) expected.insert(x * x);
  }
  EXPECT_EQ(got, expected);
}

// Counts its runs; dies (SIGKILL) on the first `deaths` of them.
int die_on_first_runs(int deaths) {
  const int run = ++g_board->runs[0];
  if (run <= deaths) {
    no_core_dumps();
    raise(SIGKILL);
  }
  return run;
}

TEST(FaultsWorkerDeath, ALostTaskRunsOnceUnlessRetriesAreAllowed) {
  WithBoard board;
  {
    pipepool::Pool pool(1);
    EXPECT_THROW(pool.apply(die_on_first_runs, 1), pipepool::WorkerLost);
    EXPECT_EQ(g_board->runs[0], 1);
    EXPECT_EQ(pool.stats().tasks_retried, 0u);
    EXPECT_EQ(pool.apply(square, 5), 25);  // replaced
  }
  g_board->runs[0] = 0;
  {
    pipepool::Pool pool(pipepool::Options{.processes = 1, .max_retries = 2});
    EXPECT_EQ(pool.apply(die_on_first_runs, 2), 3);  // died twice, the third run returned
    EXPECT_EQ(g_board->runs[0], 3);
    EXPECT_EQ(pool.stats().tasks_retried, 2u);
  }
  g_board->runs[0] = 0;
  {
    pipepool::Pool pool(pipepool::Options{.processes = 2, .max_retries = 1});
    try {
      pool.apply(die_on_first_runs, 100);
      ADD_FAILURE() << "no error";
    } catch (const pipepool::WorkerLost& e) {
      EXPECT_EQ(e.signal_number(), SIGKILL);
    }
    EXPECT_EQ(g_board->runs[0], 2);  // the first run and one retry, no more
  }
}

std::pair<pid_t, pid_t> parent_and_self(int) {
  return {getppid(), getpid()};
}

TEST(FaultsWorkerDeath, ReplacementsAreForkedByTheSingleThreadedForkServer) {
  WithBoard board;
  pipepool::Pool pool(1);
  const auto [server, first] = pool.apply(parent_and_self, 0);
  EXPECT_NE(server, getpid());
  pipepool::faults::ProcessInfo info;
  ASSERT_TRUE(pipepool::faults::read_process(server, info));
  EXPECT_EQ(info.ppid, getpid()) << "the fork server is the pool process's child";
  EXPECT_EQ(pipepool::faults::threads_of(server), pipepool::faults::kOneThread);
  EXPECT_GE(pipepool::faults::threads_of(getpid()), pipepool::faults::kOneThread + 1)
      << "the pool process runs an I/O thread";
  EXPECT_THROW(pool.apply(die, static_cast<int>(kExit7)), pipepool::WorkerLost);
  const auto [server_after, replacement] = pool.apply(parent_and_self, 0);
  EXPECT_NE(replacement, first);
  EXPECT_EQ(server_after, server) << "the replacement's parent must be the fork server";
  EXPECT_EQ(pipepool::faults::threads_of(server), pipepool::faults::kOneThread);
}

// Forks a grandchild that keeps the worker's pipe ends for 30 s, then the worker exits.
int exit_leaving_a_descendant(int) {
  const pid_t child = fork();
  if (child == 0) {
    sleep(30);
    _exit(0);
  }
  g_board->grandchild = child;
  _exit(9);
}

TEST(FaultsWorkerDeath, ADescendantHoldingThePipeDoesNotDelayTheVerdict) {
  WithBoard board;
  pipepool::os::test::ScopedSubreaper subreaper;  // the orphaned grandchild comes to us to reap
  {
    pipepool::Pool pool(1);
    const auto start = Clock::now();
    try {
      pool.apply(exit_leaving_a_descendant, 0);
      ADD_FAILURE() << "no error";
    } catch (const pipepool::WorkerLost& e) {
      EXPECT_EQ(e.exit_code(), 9);
    }
    const double ms = ms_since(start);
    std::printf(
        "death-with-descendant: verdict after %.1f ms (the descendant holds the pipe 30 s)\n", ms);
    EXPECT_LT(ms, 10'000.0);
    EXPECT_EQ(pool.apply(square, 4), 16);
  }
  const pid_t grandchild = g_board->grandchild;
  ASSERT_GT(grandchild, 0);
  kill(grandchild, SIGKILL);
  EXPECT_TRUE(pipepool::os::test::wait_until_gone(grandchild, 5000).gone);
}

TEST(FaultsWorkerDeath, AWorkerThatCannotStartIsNotForkedInATightLoop) {
  pipepool::Pool pool(pipepool::Options{
      .processes = 1, .initializer = [] { throw std::runtime_error("cannot start"); }});
  try {
    pool.apply(square, 2);
    ADD_FAILURE() << "no error";
  } catch (const pipepool::WorkerLost& e) {
    EXPECT_EQ(e.exit_code(), 5);
    EXPECT_TRUE(contains(e.what(), "its initializer threw")) << e.what();
  }
  std::this_thread::sleep_for(1s);
  const uint64_t started = pool.stats().workers_started;
  std::printf("crash-loop: %llu forks in the first second of a worker that dies at start\n",
              static_cast<unsigned long long>(started));
  EXPECT_LT(started, 50u);  // without the back-off: thousands
}

// ---- task timeouts -----------------------------------------------------------------------------

TEST(FaultsTimeout, ATaskPastItsTimeoutFailsAndItsWorkerIsReplaced) {
  WithBoard board;
  pipepool::Pool pool(pipepool::Options{.processes = 2, .task_timeout = 300ms});
  std::vector<int> xs(40);
  for (int i = 0; i < 40; ++i) xs[i] = i;
  const auto start = Clock::now();
  auto slow = pool.apply_async(sleep_for_seconds, 30.0);
  auto quick = pool.map_async(slow_square, xs, 1);
  try {
    slow.get();
    ADD_FAILURE() << "no timeout";
  } catch (const pipepool::TimeoutError& e) {
    EXPECT_TRUE(contains(e.what(), "timeout")) << e.what();
    EXPECT_TRUE(contains(e.what(), "(pid ")) << e.what();
  }
  const double ms = ms_since(start);
  std::printf("task-timeout: 300 ms timeout reported after %.1f ms\n", ms);
  EXPECT_GE(ms, 290.0);
  EXPECT_LT(ms, 10'000.0);
  auto ys = quick.get();
  for (int i = 0; i < 40; ++i) EXPECT_EQ(ys[i], i * i);
  const pid_t killed = g_board->sleepers[0];
  ASSERT_GT(killed, 0);
  EXPECT_TRUE(pipepool::os::test::wait_until_gone(killed, 5000).gone);
  EXPECT_EQ(pool.map(square, std::vector<int>{5, 6}, 1), (std::vector<int>{25, 36}));
  EXPECT_GE(pool.stats().workers_lost, 1u);
}

// First run: 800 ms, then death. Second run: 300 ms, then the result.
int slow_death_then_slow_success(int) {
  const int run = ++g_board->runs[1];
  if (run == 1) {
    std::this_thread::sleep_for(800ms);
    no_core_dumps();
    raise(SIGKILL);
  }
  std::this_thread::sleep_for(300ms);
  return run;
}

TEST(FaultsTimeout, ARetriedTaskGetsATimerOfItsOwn) {
  // The first attempt's timer (armed at its start, due at 1000 ms) must not fire on the second
  // attempt, which started at about 800 ms and needs 300 ms.
  WithBoard board;
  pipepool::Pool pool(pipepool::Options{.processes = 1, .task_timeout = 1000ms, .max_retries = 1});
  EXPECT_EQ(pool.apply(slow_death_then_slow_success, 0), 2);
  EXPECT_EQ(pool.stats().tasks_retried, 1u);
}

// ---- memory limit ------------------------------------------------------------------------------

uint64_t address_space_bytes(int) {
  FILE* status = std::fopen("/proc/self/status", "r");
  char line[256];
  uint64_t kib = 0;
  while (status && std::fgets(line, sizeof line, status)) {
    if (std::strncmp(line, "VmSize:", 7) == 0) kib = std::strtoull(line + 7, nullptr, 10);
  }
  if (status) std::fclose(status);
  return kib * 1024;
}

uint64_t allocate_and_touch(uint64_t bytes) {
  std::vector<char> block(bytes);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < bytes; i += 4096) {
    block[i] = static_cast<char>(i >> 12);
    sum += static_cast<unsigned char>(block[i]);
  }
  return sum + bytes;
}

TEST(FaultsMemoryLimit, AnAllocationOverTheLimitFailsWithWorkerLostNamingIt) {
  if (pipepool::faults::kUnderSanitizer) {
    GTEST_SKIP() << "RLIMIT_AS cannot work under a sanitizer: its shadow memory reserves terabytes";
  }
  uint64_t base = 0;
  {
    pipepool::Pool probe(1);
    base = probe.apply(address_space_bytes, 0);
  }
  ASSERT_GT(base, 0u);
  const uint64_t limit = base + (uint64_t{256} << 20);
  std::printf("memory-limit: a worker starts with %.1f MiB of address space; limit %.1f MiB\n",
              static_cast<double>(base) / (1 << 20), static_cast<double>(limit) / (1 << 20));
  pipepool::Pool pool(pipepool::Options{.processes = 2, .memory_limit_bytes = limit});
  EXPECT_GT(pool.apply(allocate_and_touch, uint64_t{32} << 20), 0u);
  auto others = pool.map_async(slow_square, std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8}, 1);
  try {
    pool.apply(allocate_and_touch, uint64_t{1} << 30);
    ADD_FAILURE() << "a 1 GiB allocation fitted under the limit";
  } catch (const pipepool::WorkerLost& e) {
    EXPECT_EQ(e.signal_number(), 0);
    EXPECT_EQ(e.exit_code(), pipepool::WorkerLost::kMemoryLimitExitCode);
    EXPECT_TRUE(
        contains(e.what(), "exceeded its memory limit of " + std::to_string(limit) + " bytes"))
        << e.what();
    std::printf("memory-limit: %s\n", e.what());
  }
  EXPECT_EQ(others.get(), (std::vector<int>{1, 4, 9, 16, 25, 36, 49, 64}));
  EXPECT_GT(pool.apply(allocate_and_touch, uint64_t{32} << 20), 0u);  // the replacement works
  // A limit no worker could start under is refused at once, not discovered by crashing workers.
  EXPECT_THROW(pipepool::Pool(pipepool::Options{.processes = 1, .memory_limit_bytes = 1 << 20}),
               std::invalid_argument);
}

// ---- malformed frames --------------------------------------------------------------------------

enum Garbage : int {
  kBadMagic,
  kBadCheck,
  kOversized,
  kResultForAnotherTask,
  kTruncatedThenExit,
  kTruncatedThenKilled,
  kGarbageKinds
};
constexpr uint64_t kMaxFrame = 1 << 20;

// Writes garbage straight into the worker's own result pipe, then waits to be killed (or dies).
int write_garbage(int kind) {
  using pipepool::protocol::encode_header;
  using pipepool::protocol::FrameKind;
  const int fd = pipepool::faults::own_result_pipe();
  if (fd < 0) return -1;
  std::string bytes;
  auto append = [&](const auto& header) {
    bytes.append(reinterpret_cast<const char*>(header.data()), header.size());
  };
  switch (kind) {
    case kBadMagic:
      bytes.assign(32, 'x');
      break;
    case kBadCheck: {
      auto header = encode_header(FrameKind::Result, 1, 0);
      header[24] ^= std::byte{0x5a};
      append(header);
      break;
    }
    case kOversized:
      append(encode_header(FrameKind::Result, 1, 2 * kMaxFrame));
      break;
    case kResultForAnotherTask:
      append(encode_header(FrameKind::Result, 999'999, 0));
      break;
    case kTruncatedThenExit:
    case kTruncatedThenKilled:
      append(encode_header(FrameKind::Result, 1, 100));
      bytes.append(10, 'p');
      break;
  }
  if (write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) return -2;
  if (kind == kTruncatedThenExit) _exit(0);
  if (kind == kTruncatedThenKilled) {
    no_core_dumps();
    raise(SIGKILL);
  }
  sleep(30);  // the parent kills this worker as soon as it reads the garbage
  return -3;
}

TEST(FaultsProtocol, MalformedOversizedAndTruncatedFramesFailTheirTaskAndThePoolGoesOn) {
  pipepool::Pool pool(pipepool::Options{.processes = 2, .max_frame_bytes = kMaxFrame});
  const char* expected[] = {
      "sent a malformed frame: bad frame magic 0x78787878",
      "sent a malformed frame: frame header check value mismatch",
      "exceeds the maximum of 1048576 bytes",
      "sent a result for task 999999",
      "sent a truncated frame",
      "ended inside a frame",
  };
  std::vector<int> xs(16);
  for (int i = 0; i < 16; ++i) xs[i] = i;
  for (int kind = 0; kind < kGarbageKinds; ++kind) {
    const auto start = Clock::now();
    auto others = pool.map_async(slow_square, xs, 1);
    try {
      pool.apply(write_garbage, kind);
      ADD_FAILURE() << "kind " << kind << ": no error";
    } catch (const pipepool::ProtocolError& e) {
      EXPECT_NE(kind, kTruncatedThenKilled) << e.what();
      EXPECT_TRUE(contains(e.what(), expected[kind])) << e.what();
      EXPECT_TRUE(contains(e.what(), "(pid ")) << "names the worker: " << e.what();
      std::printf("protocol-error: %s\n", e.what());
    } catch (const pipepool::WorkerLost& e) {
      // Cut short by a signal: a death, named with the truncation.
      EXPECT_EQ(kind, kTruncatedThenKilled) << e.what();
      EXPECT_EQ(e.signal_number(), SIGKILL);
      EXPECT_TRUE(contains(e.what(), expected[kind])) << e.what();
      std::printf("protocol-error: (death) %s\n", e.what());
    }
    EXPECT_LT(ms_since(start), 10'000.0);
    auto ys = others.get();
    for (int i = 0; i < 16; ++i) EXPECT_EQ(ys[i], i * i);
  }
  EXPECT_EQ(pool.stats().workers_lost, static_cast<uint64_t>(kGarbageKinds));
  EXPECT_EQ(pool.map(square, std::vector<int>{2, 3}, 1), (std::vector<int>{4, 9}));
}

// ---- the fork server's death -------------------------------------------------------------------

TEST(FaultsForkServer, ItsDeathFailsUnfinishedTasksAndClosesThePool) {
  WithBoard board;
  // The workers, orphaned, come to us: the pool then reaps them itself (and the test checks that
  // nothing is left). Without a subreaper init would.
  pipepool::os::test::ScopedSubreaper subreaper;
  std::vector<pid_t> workers;
  {
    pipepool::Pool pool(2);
    EXPECT_EQ(pool.apply(square, 3), 9);
    auto running = pool.map_async(sleep_for_seconds, std::vector<double>{30, 30}, 1);
    auto queued = pool.map_async(square, std::vector<int>{1, 2, 3, 4, 5}, 1);
    for (int i = 0; i < 20'000 && g_board->running < 2; ++i) std::this_thread::sleep_for(1ms);
    ASSERT_EQ(g_board->running, 2);
    workers = {g_board->sleepers[0], g_board->sleepers[1]};
    const std::vector<pid_t> servers = pipepool::faults::children_of(getpid());
    ASSERT_EQ(servers.size(), 1u);
    const auto start = Clock::now();
    ASSERT_EQ(kill(servers[0], SIGKILL), 0);
    try {
      running.get();
      ADD_FAILURE() << "no error";
    } catch (const pipepool::WorkerLost& e) {
      EXPECT_TRUE(contains(e.what(), "fork server (pid " + std::to_string(servers[0]) + ") died"))
          << e.what();
      std::printf("fork-server-death: running task: %s\n", e.what());
    }
    try {
      queued.get();
      ADD_FAILURE() << "no error";
    } catch (const pipepool::WorkerLost& e) {
      EXPECT_TRUE(contains(e.what(), "fork server")) << e.what();
      std::printf("fork-server-death: queued task: %s\n", e.what());
    }
    const double ms = ms_since(start);
    std::printf("fork-server-death: every unfinished task failed %.1f ms after the kill\n", ms);
    EXPECT_LT(ms, 10'000.0);
    try {
      pool.apply(square, 1);
      ADD_FAILURE() << "a submission was accepted";
    } catch (const pipepool::PoolClosed& e) {
      EXPECT_TRUE(contains(e.what(), "fork server")) << e.what();
    }
    EXPECT_THROW(pool.map_async(square, std::vector<int>{1}), pipepool::PoolClosed);
  }  // the destructor returns
  for (pid_t pid : workers) EXPECT_TRUE(pipepool::os::test::process_gone(pid)) << pid;
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(5000).empty());
}

TEST(FaultsForkServer, ItsDeathWhileIdleAndTerminateAfterwardsAreClean) {
  pipepool::os::test::ScopedSubreaper subreaper;
  {
    pipepool::Pool pool(2);
    EXPECT_EQ(pool.apply(square, 3), 9);
    const std::vector<pid_t> servers = pipepool::faults::children_of(getpid());
    ASSERT_EQ(servers.size(), 1u);
    ASSERT_EQ(kill(servers[0], SIGKILL), 0);
    // The pool notices by itself, without a submission to trip over it.
    bool closed = false;
    for (int i = 0; i < 10'000 && !closed; ++i) {
      try {
        pool.apply(square, 1);
      } catch (const pipepool::PoolClosed&) {
        closed = true;
      } catch (const pipepool::WorkerLost&) {
      }
      if (!closed) std::this_thread::sleep_for(1ms);
    }
    EXPECT_TRUE(closed);
    pool.terminate();
    pool.join();
  }
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(5000).empty());
}

}  // namespace
