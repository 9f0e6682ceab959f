// Nothing leaks and nothing kills (issue 6): a thousand pools leave no descriptor, zombie or
// thread; every descriptor is close-on-exec; SIGPIPE kills neither side; a flood of signals
// interrupts no system call for good; workers die with their parent.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fault_test_util.hpp"
#include "os/fd.hpp"
#include "os/process.hpp"
#include "os_test_util.hpp"
#include "pipepool/pipepool.hpp"
#include "process_helpers.hpp"
#include "watchdog.hpp"

// ThreadSanitizer, for the whole test binary: a thread may destroy the last AsyncResult state
// holding an exception_ptr while another thread is still in a catch block for that exception.
// That is safe (the exception object is reference-counted by the C++ runtime, and rethrow_exception
// holds a reference until the handler ends), but the runtime's counting happens inside libstdc++,
// which is not instrumented, so TSan cannot see it and reports the delete as a race.
#if defined(__SANITIZE_THREAD__)
extern "C" __attribute__((visibility("default"))) const char* __tsan_default_suppressions() {
  return "race:std::__exception_ptr::exception_ptr::_M_release\n";
}
#endif

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Board {
  std::atomic<int> running{0};
  std::atomic<int> ready_workers{0};
  std::atomic<pid_t> workers[64] = {};  // published by the initializer, once it handles SIGUSR1
};
Board* g_board = nullptr;

struct WithBoard : pipepool::faults::ScopedSharedMemory<Board> {
  WithBoard() : ScopedSharedMemory(g_board) {}
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int square(int x) {
  return x * x;
}
double sleep_for_seconds(double seconds) {
  ++g_board->running;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}
double plain_sleep(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}
int exit_now(int code) {
  _exit(code);
}
size_t size_of(std::string s) {
  return s.size();
}

// ---- a thousand pools --------------------------------------------------------------------------

TEST(Leaks, AThousandPoolsLeaveNoDescriptorZombieOrThread) {
  pipepool::testing::extend_watchdog(180);
  {  // warm up whatever is created once per process (locale, /proc readers, gtest)
    pipepool::Pool pool(1);
    EXPECT_EQ(pool.apply(square, 2), 4);
  }
  const std::set<int> fds_before = pipepool::testing::open_fds();
  const size_t threads_before = pipepool::testing::thread_count();
  const auto start = Clock::now();
  constexpr int kPools = 1000;
  for (int i = 0; i < kPools; ++i) {
    pipepool::Pool pool(1 + i % 2);
    switch (i % 4) {
      case 0:  // used and closed by the destructor
        ASSERT_EQ(pool.apply(square, i % 100), (i % 100) * (i % 100));
        break;
      case 1: {  // terminated with a task running
        auto r = pool.apply_async(plain_sleep, 30.0);
        pool.terminate();
        ASSERT_THROW(r.get(), pipepool::WorkerLost);
        break;
      }
      case 2:  // a worker dies and is replaced
        ASSERT_THROW(pool.apply(exit_now, 3), pipepool::WorkerLost);
        ASSERT_EQ(pool.apply(square, 3), 9);
        break;
      case 3:  // destroyed with results nobody reads
        for (int k = 0; k < 4; ++k) (void)pool.apply_async(square, k);
        break;
    }
  }
  const double seconds = seconds_since(start);
  const std::set<int> fds_after = pipepool::testing::open_fds();
  const size_t threads_after = pipepool::testing::thread_count();
  const auto zombies_or_alive = pipepool::testing::descendants(/*include_zombies=*/true);
  std::printf(
      "leaks: %d pools in %.1f s (%.1f ms each): descriptors %zu -> %zu, threads %zu -> "
      "%zu, descendants left %zu\n",
      kPools, seconds, seconds * 1000 / kPools, fds_before.size(), fds_after.size(), threads_before,
      threads_after, zombies_or_alive.size());
  EXPECT_EQ(fds_after, fds_before);
  EXPECT_EQ(threads_after, threads_before);
  EXPECT_TRUE(zombies_or_alive.empty());
}

// ---- close-on-exec -----------------------------------------------------------------------------

// In a worker: its descriptors above stderr, and how many of them lack FD_CLOEXEC.
std::pair<int, int> worker_descriptors(int) {
  int open = 0, inheritable = 0;
  for (int fd : pipepool::os::list_open_fds()) {
    if (fd <= 2) continue;
    ++open;
    if (!pipepool::os::is_cloexec(fd)) ++inheritable;
  }
  return {open, inheritable};
}

TEST(Leaks, EveryDescriptorOfThePoolAndItsWorkersIsCloseOnExec) {
  WithBoard board;
  const std::set<int> before = pipepool::testing::open_fds();
  pipepool::Pool pool(2);
  auto running = pool.apply_async(sleep_for_seconds, 0.5);
  for (int i = 0; i < 5000 && g_board->running < 1; ++i) std::this_thread::sleep_for(1ms);
  std::vector<int> pools_own;
  for (int fd : pipepool::testing::open_fds()) {
    if (!before.count(fd)) pools_own.push_back(fd);
  }
  // epoll, eventfd, the fork server's two sockets, three per worker (two pipes and a pidfd).
  EXPECT_GE(pools_own.size(), 10u);
  for (int fd : pools_own) EXPECT_TRUE(pipepool::os::is_cloexec(fd)) << "descriptor " << fd;
  std::printf("cloexec: the pool holds %zu descriptors, all close-on-exec\n", pools_own.size());
  const auto [open, inheritable] = pool.apply(worker_descriptors, 0);
  EXPECT_EQ(open, 2) << "a worker keeps stdio and its two pipe ends, nothing else";
  EXPECT_EQ(inheritable, 0);
  EXPECT_DOUBLE_EQ(running.get(), 0.5);
}

// ---- SIGPIPE -----------------------------------------------------------------------------------

// Sleeps, then exits while the parent is still writing it a large next task.
int exit_after_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  _exit(1);
}

TEST(Leaks, SigpipeNeverKillsTheParent) {
  struct sigaction current {};
  ASSERT_EQ(sigaction(SIGPIPE, nullptr, &current), 0);
  ASSERT_EQ(current.sa_handler, SIG_DFL) << "the test needs SIGPIPE's default action: death";
  const std::string big(8 << 20, 'b');  // far over the 64 KiB pipe: the write blocks mid-frame
  struct Case {
    const char* name;
    pipepool::Options options;
  };
  const Case cases[] = {
      {"epoll (non-blocking writes)",
       {.processes = 1, .demand_max_in_flight = 2, .enlarge_pipes = false}},
      {"unbatched (blocking writes)",
       {.processes = 1,
        .strategy = pipepool::Strategy::Unbatched,
        .scheduler = pipepool::SchedulerKind::RoundRobin,
        .enlarge_pipes = false}},
  };
  for (const Case& c : cases) {
    pipepool::Pool pool(c.options);
    auto dying = pool.apply_async(exit_after_ms, 200);
    auto next = pool.apply_async(size_of, big);  // queued behind it on the same worker
    EXPECT_THROW(dying.get(), pipepool::WorkerLost) << c.name;
    EXPECT_EQ(next.get(), big.size()) << c.name << ": sent again to the replacement";
    sigset_t pending;
    sigpending(&pending);
    EXPECT_FALSE(sigismember(&pending, SIGPIPE)) << c.name;
    std::printf("sigpipe: %s: the write to the dead worker failed with EPIPE, no signal\n", c.name);
  }
}

// In a worker: writes to a pipe nobody reads. Returns the errno (EPIPE), or 0 if it "worked".
int write_to_a_closed_pipe(int) {
  int ends[2];
  if (pipe(ends) != 0) return -1;
  close(ends[0]);
  const char byte = 'x';
  const ssize_t n = write(ends[1], &byte, 1);
  const int error = n < 0 ? errno : 0;
  close(ends[1]);
  return error;
}
pid_t own_pid(int) {
  return getpid();
}

TEST(Leaks, SigpipeNeverKillsAWorker) {
  pipepool::Pool pool(1);
  const pid_t before = pool.apply(own_pid, 0);
  EXPECT_EQ(pool.apply(write_to_a_closed_pipe, 0), EPIPE);
  EXPECT_EQ(pool.apply(own_pid, 0), before);
  EXPECT_EQ(pool.stats().workers_lost, 0u);
}

// ---- EINTR -------------------------------------------------------------------------------------

// Workers: a no-op SIGUSR1 handler without SA_RESTART (every blocking call of the worker loop
// can fail with EINTR), then publish the pid so the test starts signalling it.
void handle_sigusr1_and_publish() {
  struct sigaction action {};
  action.sa_handler = [](int) {};
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, nullptr);
  const int slot = g_board->ready_workers.fetch_add(1);
  if (slot < 64) g_board->workers[slot] = getpid();
}

std::string echo_after_sleep(std::string s) {
  std::this_thread::sleep_for(std::chrono::microseconds(s.size() % 500));
  return s;
}

TEST(Leaks, AFloodOfSignalsInterruptsNothing) {
  WithBoard board;
  pipepool::faults::ScopedNoopHandler parent_handler(SIGUSR1);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sent{0};
  // Sizes from 10 bytes to 300 KB against 64 KiB pipes: both sides block in read and write.
  std::vector<std::string> inputs;
  std::mt19937 random(7);
  for (int i = 0; i < 300; ++i) {
    const size_t size = (i % 5 == 0) ? 100'000 + random() % 200'000 : 10 + random() % 5000;
    inputs.push_back(std::string(size, static_cast<char>('a' + i % 26)));
  }
  std::thread flood([&] {
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    std::vector<pid_t> live;
    for (uint64_t round = 0; !stop; ++round) {
      for (pid_t tid : pipepool::faults::own_threads()) {
        if (tid != self && pipepool::faults::signal_thread(tid, SIGUSR1) == 0) ++sent;
      }
      // Only workers that handle SIGUSR1 (published) and are still the children of this
      // process's fork server: a dead worker's pid may already belong to someone else.
      if (round % 16 == 0) {
        live.clear();
        for (pid_t server : pipepool::faults::children_of(getpid())) {
          for (pid_t pid : pipepool::faults::children_of(server)) live.push_back(pid);
        }
      }
      const int workers = std::min(64, g_board->ready_workers.load());
      for (int i = 0; i < workers; ++i) {
        const pid_t pid = g_board->workers[i];
        if (std::find(live.begin(), live.end(), pid) != live.end() && kill(pid, SIGUSR1) == 0) {
          ++sent;
        }
      }
      std::this_thread::sleep_for(100us);
    }
  });
  for (pipepool::Strategy strategy : {pipepool::Strategy::Epoll, pipepool::Strategy::Unbatched}) {
    // One task in flight per worker: Unbatched with more deadlocks on these sizes by design.
    pipepool::Pool pool(pipepool::Options{.processes = 2,
                                          .strategy = strategy,
                                          .demand_max_in_flight = 1,
                                          .initializer = handle_sigusr1_and_publish,
                                          .enlarge_pipes = false});
    for (int round = 0; round < 4; ++round) {
      EXPECT_EQ(pool.map(echo_after_sleep, inputs, 1), inputs);
    }
    std::vector<pipepool::AsyncResult<int>> squares;
    for (int i = 0; i < 500; ++i) squares.push_back(pool.apply_async(square, i));
    for (int i = 0; i < 500; ++i) EXPECT_EQ(squares[i].get(), i * i);
    EXPECT_EQ(pool.stats().workers_lost, 0u) << "a signal killed a worker";
  }
  stop = true;
  flood.join();
  std::printf("eintr: %llu SIGUSR1 sent to the pool's threads and workers; every result checked\n",
              static_cast<unsigned long long>(sent.load()));
  EXPECT_GT(sent.load(), 100u);
}

// ---- parent death ------------------------------------------------------------------------------

TEST(Leaks, WorkersAndTheForkServerDieWithTheirParent) {
  WithBoard board;
  pipepool::os::test::ScopedSubreaper subreaper;  // orphans come to us, to be reaped here
  int report[2];
  ASSERT_EQ(pipe2(report, O_CLOEXEC), 0);
  // The intermediate process: a pool with running tasks; reports its descendants, then waits
  // to be killed.
  auto pid = pipepool::os::fork_child([&]() -> int {
    close(report[0]);
    pipepool::Pool pool(2);
    auto r = pool.map_async(sleep_for_seconds, std::vector<double>{60, 60}, 1);
    for (int i = 0; i < 20'000 && g_board->running < 2; ++i) std::this_thread::sleep_for(1ms);
    std::vector<pid_t> pids = pipepool::testing::descendants(false);
    const int count = static_cast<int>(pids.size());
    if (write(report[1], &count, sizeof count) != sizeof count) return 1;
    if (write(report[1], pids.data(), sizeof(pid_t) * pids.size()) < 0) return 1;
    for (;;) pause();
  });
  ASSERT_TRUE(pid.ok());
  pipepool::os::test::ReapGuard intermediate(pid.value());
  close(report[1]);
  int count = 0;
  ASSERT_EQ(read(report[0], &count, sizeof count), static_cast<ssize_t>(sizeof count));
  std::vector<pid_t> pids(static_cast<size_t>(count));
  ASSERT_EQ(read(report[0], pids.data(), sizeof(pid_t) * pids.size()),
            static_cast<ssize_t>(sizeof(pid_t) * pids.size()));
  close(report[0]);
  EXPECT_EQ(count, 3) << "the fork server and two workers";
  const auto start = Clock::now();
  ASSERT_EQ(kill(pid.value(), SIGKILL), 0);
  auto status = intermediate.wait();
  ASSERT_TRUE(status.ok());
  for (pid_t p : pids) {
    EXPECT_TRUE(pipepool::os::test::wait_until_gone(p, 5000).gone) << "pid " << p << " survived";
  }
  std::printf("parent-death: %d descendants gone %.1f ms after the parent was SIGKILLed\n", count,
              seconds_since(start) * 1000);
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(5000).empty());
}

}  // namespace
