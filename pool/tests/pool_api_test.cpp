// The Pool API against Python's Pool semantics: the behaviour lambda_multiprocessing's own suite
// checks, ported, plus the rest of the API. Run for the default configuration; the strategy and
// scheduler matrix is in strategy_matrix_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include "os/cpu.hpp"
#include "pipepool/pipepool.hpp"
#include "process_helpers.hpp"
#include "watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int square(int x) {
  return x * x;
}
int sum_two(int a, int b) {
  return a + b;
}
int fail_on_odd(int x) {
  if (x % 2 == 1) throw std::invalid_argument("odd: " + std::to_string(x));
  return x;
}
int sum_or_fail(int a, int b) {
  if (a + b > 4) throw std::out_of_range("sum " + std::to_string(a + b));
  return a + b;
}
double sleep_for_seconds(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}
pid_t get_pid(int) {
  return getpid();
}

int g_side_effect = 0;
int bump_global(int x) {
  g_side_effect += x;
  return g_side_effect;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST(PoolApi, ApplyWithOneAndTwoArguments) {
  pipepool::Pool pool(2);
  EXPECT_EQ(pool.apply(square, 6), 36);
  EXPECT_EQ(pool.apply(sum_two, 3, 4), 7);
  EXPECT_EQ(pool.apply([](std::string s) { return s + "!"; }, std::string("hi")), "hi!");
}

TEST(PoolApi, DefaultSizeIsTheCpusThisProcessMayUse) {
  pipepool::Pool pool;
  EXPECT_EQ(pool.processes(), pipepool::os::available_cpus());
  EXPECT_GE(pool.processes(), 1);
}

TEST(PoolApi, NegativeProcessesIsRejected) {
  EXPECT_THROW(pipepool::Pool(-2), std::invalid_argument);
}

TEST(PoolApi, ApplyAsyncRunsInParallel) {
  // lambda_multiprocessing's test: four sleeps of 0..3 s on Pool(4) take about 3 s in all, and
  // submitting them takes well under a second.
  pipepool::Pool pool(4);
  auto start = Clock::now();
  std::vector<pipepool::AsyncResult<double>> results;
  for (double s : {0.0, 1.0, 2.0, 3.0}) results.push_back(pool.apply_async(sleep_for_seconds, s));
  EXPECT_LT(seconds_since(start), 0.5);
  for (auto& r : results) r.get();
  double total = seconds_since(start);
  EXPECT_GE(total, 3.0);
  EXPECT_LT(total, 3.9);
}

TEST(PoolApi, GetWithAndWithoutTimeout) {
  pipepool::Pool pool(1);
  auto quick = pool.apply_async(square, 3);
  EXPECT_EQ(quick.get(), 9);
  auto slow = pool.apply_async(sleep_for_seconds, 0.5);
  EXPECT_THROW(slow.get(10ms), pipepool::TimeoutError);
  EXPECT_THROW(slow.get(0s), pipepool::TimeoutError);
  EXPECT_DOUBLE_EQ(slow.get(5s), 0.5);
}

TEST(PoolApi, GetTwiceReturnsTheSameValue) {
  pipepool::Pool pool(1);
  auto r = pool.apply_async(square, 5);
  EXPECT_EQ(r.get(), 25);
  EXPECT_EQ(r.get(), 25);
  auto failing = pool.apply_async(fail_on_odd, 1);
  EXPECT_THROW(failing.get(), std::invalid_argument);
  EXPECT_THROW(failing.get(), std::invalid_argument);
}

TEST(PoolApi, WaitWithTimeout) {
  pipepool::Pool pool(1);
  auto r = pool.apply_async(sleep_for_seconds, 0.3);
  auto start = Clock::now();
  EXPECT_FALSE(r.wait(50ms));
  EXPECT_GE(seconds_since(start), 0.045);
  EXPECT_TRUE(r.wait(5s));
  r.wait();
  EXPECT_TRUE(r.ready());
}

TEST(PoolApi, ReadyAndSuccessful) {
  pipepool::Pool pool(1);
  auto r = pool.apply_async(sleep_for_seconds, 0.2);
  EXPECT_FALSE(r.ready());
  EXPECT_THROW(r.successful(), std::logic_error);
  r.wait();
  EXPECT_TRUE(r.ready());
  EXPECT_TRUE(r.successful());
  auto bad = pool.apply_async(fail_on_odd, 3);
  bad.wait();
  EXPECT_FALSE(bad.successful());
}

TEST(PoolApi, ErrorFromApplyKeepsTypeAndMessage) {
  pipepool::Pool pool(1);
  try {
    pool.apply(fail_on_odd, 3);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "odd: 3");
    auto* remote = dynamic_cast<const pipepool::RemoteError*>(&e);
    ASSERT_NE(remote, nullptr);
    EXPECT_EQ(remote->type_name(), "std::invalid_argument");
    EXPECT_EQ(remote->message(), "odd: 3");
  }
  EXPECT_THROW(pool.apply(fail_on_odd, 3), pipepool::RemoteError);
  EXPECT_THROW(pool.apply(fail_on_odd, 3), std::exception);
}

struct QuotaExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Unregistered : std::domain_error {
  using std::domain_error::domain_error;
};
int throw_quota(int) {
  throw QuotaExceeded("over quota");
}
int throw_unregistered(int) {
  throw Unregistered("subclass");
}
int throw_int(int) {
  throw 42;
}

TEST(PoolApi, UserExceptionTypesCanBeRegistered) {
  pipepool::register_remote_exception<QuotaExceeded>();
  pipepool::Pool pool(1);
  EXPECT_THROW(pool.apply(throw_quota, 1), QuotaExceeded);
  // Unregistered: rethrown as its nearest standard base, name kept.
  try {
    pool.apply(throw_unregistered, 1);
    FAIL();
  } catch (const std::domain_error& e) {
    EXPECT_NE(dynamic_cast<const pipepool::RemoteError&>(e).type_name().find("Unregistered"),
              std::string::npos);
  }
  // Not a std::exception at all: a RemoteError that is a std::runtime_error.
  EXPECT_THROW(pool.apply(throw_int, 1), pipepool::RemoteError);
}

TEST(PoolApi, MapRaisesTheLowestFailingIndex) {
  pipepool::Pool pool(2);
  std::vector<int> xs{0, 2, 4, 5, 6, 7, 9};
  for (size_t chunksize : {size_t{0}, size_t{1}, size_t{3}}) {
    try {
      pool.map(fail_on_odd, xs, chunksize);
      FAIL();
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "odd: 5") << "chunksize " << chunksize;
    }
    try {
      pool.map_async(fail_on_odd, xs, chunksize).get();
      FAIL();
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "odd: 5");
    }
  }
}

TEST(PoolApi, StarmapAndItsErrors) {
  pipepool::Pool pool(2);
  std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}};
  EXPECT_EQ(pool.starmap(sum_two, pairs), (std::vector<int>{3, 7}));
  std::vector<std::pair<int, int>> as_pairs{{1, 1}, {2, 2}, {5, 5}, {1, 9}};
  EXPECT_EQ(pool.starmap_async(sum_two, as_pairs).get(), (std::vector<int>{2, 4, 10, 10}));
  try {
    pool.starmap(sum_or_fail, as_pairs);
    FAIL();
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "sum 10");
  }
  EXPECT_THROW(pool.starmap_async(sum_or_fail, as_pairs).get(), std::out_of_range);
}

TEST(PoolApi, MapOverEmptyInput) {
  pipepool::Pool pool(2);
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
  EXPECT_TRUE(pool.map_async(square, std::vector<int>{}).get().empty());
  int n = 0;
  for (int y : pool.imap(square, std::vector<int>{})) n += y;
  EXPECT_EQ(n, 0);
}

TEST(PoolApi, ChunksizeFollowsPythonsRule) {
  EXPECT_EQ(pipepool::detail::default_chunksize(100, 2), 13u);  // divmod(100, 8) = (12, 4) -> 13
  EXPECT_EQ(pipepool::detail::default_chunksize(8, 2), 1u);
  EXPECT_EQ(pipepool::detail::default_chunksize(1, 4), 1u);
  pipepool::Pool pool(2);
  std::vector<int> xs(1000);
  for (int i = 0; i < 1000; ++i) xs[i] = i;
  for (size_t chunksize : {0, 1, 7, 1000, 5000}) {
    auto ys = pool.map(square, xs, chunksize);
    ASSERT_EQ(ys.size(), xs.size());
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(ys[i], i * i);
  }
}

TEST(PoolApi, UsedWithoutAnyScope) {
  auto* pool = new pipepool::Pool(2);
  EXPECT_EQ(pool->map(square, std::vector<int>{1, 2}), (std::vector<int>{1, 4}));
  pool->close();
  pool->join();
  delete pool;
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(2000).empty());
}

TEST(PoolApi, CloseDoesNotWaitJoinDoes) {
  pipepool::Pool pool(1);
  auto r = pool.apply_async(sleep_for_seconds, 0.5);
  auto start = Clock::now();
  pool.close();
  EXPECT_LT(seconds_since(start), 0.2);
  pool.join();
  EXPECT_GE(seconds_since(start), 0.4);
  EXPECT_TRUE(r.ready());
  EXPECT_DOUBLE_EQ(r.get(), 0.5);
  EXPECT_TRUE(pipepool::testing::descendants().empty());
}

TEST(PoolApi, JoinBeforeCloseIsMisuse) {
  pipepool::Pool pool(1);
  EXPECT_THROW(pool.join(), std::logic_error);
}

TEST(PoolApi, SubmissionAfterCloseOrTerminateFails) {
  pipepool::Pool closed(1);
  closed.close();
  EXPECT_THROW(closed.apply(square, 1), pipepool::PoolClosed);
  EXPECT_THROW(closed.map_async(square, std::vector<int>{1}), pipepool::PoolClosed);
  EXPECT_THROW(closed.imap(square, std::vector<int>{1}), pipepool::PoolClosed);
  // Empty input is no exception to the rule (Python: map([]) on a closed Pool raises).
  EXPECT_THROW(closed.map(square, std::vector<int>{}), pipepool::PoolClosed);
  EXPECT_THROW(closed.map_async(square, std::vector<int>{}), pipepool::PoolClosed);
  EXPECT_THROW(closed.imap(square, std::vector<int>{}), pipepool::PoolClosed);
  EXPECT_THROW(closed.imap_unordered(square, std::vector<int>{}), pipepool::PoolClosed);
  EXPECT_THROW(closed.apply_async(square, 1), std::logic_error);
  pipepool::Pool terminated(1);
  terminated.terminate();
  EXPECT_THROW(terminated.apply(square, 1), pipepool::PoolClosed);
  pipepool::Pool inline_pool(0);
  inline_pool.close();
  EXPECT_THROW(inline_pool.apply(square, 1), pipepool::PoolClosed);
  EXPECT_THROW(inline_pool.map(square, std::vector<int>{}), pipepool::PoolClosed);
}

TEST(PoolApi, TerminateIsImmediateAndLeavesNoChild) {
  pipepool::Pool pool(2);
  auto r = pool.apply_async(sleep_for_seconds, 30.0);
  auto m = pool.map_async(sleep_for_seconds, std::vector<double>{30, 30, 30});
  std::this_thread::sleep_for(100ms);
  auto start = Clock::now();
  pool.terminate();
  EXPECT_LT(seconds_since(start), 1.0);
  EXPECT_TRUE(pipepool::testing::descendants().empty());
  // Nothing waits forever on a terminated pool's results.
  EXPECT_THROW(r.get(), pipepool::WorkerLost);
  EXPECT_THROW(m.get(), pipepool::WorkerLost);
  pool.join();  // allowed after terminate, returns at once
}

TEST(PoolApi, LeavingScopeWaitsForARunningTask) {
  std::optional<pipepool::AsyncResult<double>> r;
  auto start = Clock::now();
  {
    pipepool::Pool pool(1);
    r.emplace(pool.apply_async(sleep_for_seconds, 0.5));
  }
  EXPECT_GE(seconds_since(start), 0.45);
  EXPECT_TRUE(r->ready());
  EXPECT_DOUBLE_EQ(r->get(), 0.5);
  EXPECT_TRUE(pipepool::testing::descendants().empty());
}

TEST(PoolApi, DestructorDoesNotWaitForUnreadResults) {
  // Large results nobody reads must not block the destructor: the I/O thread reads them anyway.
  auto start = Clock::now();
  {
    pipepool::Pool pool(2);
    for (int i = 0; i < 4; ++i) {
      pool.apply_async([](int n) { return std::string(static_cast<size_t>(n), 'x'); }, 8 << 20);
    }
  }
  EXPECT_LT(seconds_since(start), 20.0);
  EXPECT_TRUE(pipepool::testing::descendants().empty());
}

TEST(PoolApi, InlinePoolRunsInTheCallerWithSideEffectsInTheParent) {
  g_side_effect = 0;
  pipepool::Pool pool(0);
  EXPECT_EQ(pool.processes(), 0);
  EXPECT_EQ(pool.apply(get_pid, 0), getpid());
  auto r = pool.apply_async(bump_global, 5);
  EXPECT_TRUE(r.ready());  // ran inside apply_async
  EXPECT_EQ(r.get(), 5);
  EXPECT_EQ(g_side_effect, 5);
  EXPECT_EQ(pool.map(bump_global, std::vector<int>{1, 1}), (std::vector<int>{6, 7}));
  EXPECT_EQ(g_side_effect, 7);
  EXPECT_THROW(pool.apply(fail_on_odd, 1), std::invalid_argument);
}

TEST(PoolApi, WorkerSideEffectsStayInTheChild) {
  g_side_effect = 0;
  pipepool::Pool pool(2);
  EXPECT_NE(pool.apply(get_pid, 0), getpid());
  EXPECT_EQ(pool.apply(bump_global, 5), 5);
  EXPECT_EQ(g_side_effect, 0);
}

TEST(PoolApi, InlinePoolSurvivesAHundredThousandApplies) {
  pipepool::Pool pool(0);
  long total = 0;
  for (int i = 0; i < 100'000; ++i) total += pool.apply(square, i % 100);
  EXPECT_EQ(total, 1000L * 328350);  // 1000 rounds of sum(i^2, i < 100)
}

TEST(PoolApi, CallbacksRunOnCompletion) {
  pipepool::Pool pool(2);
  std::atomic<int> value{0};
  std::atomic<bool> error_seen{false};
  auto r = pool.apply_async(
      pipepool::Callbacks<int>{.callback = [&](const int& v) { value = v; },
                               .error_callback = [&](std::exception_ptr) { error_seen = true; }},
      square, 9);
  r.wait();
  for (int i = 0; i < 200 && value != 81; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(value, 81);
  auto bad =
      pool.apply_async(pipepool::Callbacks<int>{.error_callback =
                                                    [&](std::exception_ptr e) {
                                                      try {
                                                        std::rethrow_exception(e);
                                                      } catch (const std::invalid_argument&) {
                                                        error_seen = true;
                                                      }
                                                    }},
                       fail_on_odd, 1);
  bad.wait();
  for (int i = 0; i < 200 && !error_seen; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(error_seen);
  std::atomic<size_t> mapped{0};
  pool.map_async(square, std::vector<int>{1, 2, 3}, 0,
                 {.callback = [&](const std::vector<int>& v) { mapped = v.size(); }})
      .wait();
  for (int i = 0; i < 200 && mapped != 3; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(mapped, 3u);
}

TEST(PoolApi, InitializerRunsOnceInEachWorker) {
  static int initialized = 0;
  pipepool::Pool pool(pipepool::Options{.processes = 2, .initializer = [] { initialized += 100; }});
  auto values = pool.map([](int) { return initialized; }, std::vector<int>(20, 0), 1);
  for (int v : values) EXPECT_EQ(v, 100);
  EXPECT_EQ(initialized, 0);  // not in the parent
}

TEST(PoolApi, MaxTasksPerChildReplacesWorkers) {
  pipepool::Pool pool(pipepool::Options{.processes = 1, .maxtasksperchild = 2});
  std::vector<pid_t> pids = pool.map(get_pid, std::vector<int>(6, 0), 1);
  ASSERT_EQ(pids.size(), 6u);
  EXPECT_EQ(pids[0], pids[1]);
  EXPECT_NE(pids[1], pids[2]);
  EXPECT_EQ(pids[2], pids[3]);
  EXPECT_NE(pids[3], pids[4]);
  EXPECT_GE(pool.stats().workers_started, 3u);
  EXPECT_EQ(pool.stats().workers_lost, 0u);
}

TEST(PoolApi, ImapKeepsInputOrderAndIsLazy) {
  pipepool::Pool pool(2);
  std::vector<int> xs(200);
  for (int i = 0; i < 200; ++i) xs[i] = i;
  int expected = 0;
  for (int y : pool.imap(square, xs, 7)) {
    EXPECT_EQ(y, expected * expected);
    ++expected;
  }
  EXPECT_EQ(expected, 200);
  // Lazy: a huge input is not submitted up front, only a window of chunks.
  auto range = pool.imap(square, std::vector<int>(1'000'000, 3), 1);
  EXPECT_LT(pool.stats().tasks_submitted, 1000u);
  auto it = range.begin();
  EXPECT_EQ(*it, 9);
}

TEST(PoolApi, ImapUnorderedYieldsInCompletionOrder) {
  pipepool::Pool pool(2);
  std::vector<double> sleeps{0.6, 0.05, 0.05, 0.05};
  std::vector<double> seen;
  for (double s : pool.imap_unordered(sleep_for_seconds, sleeps)) seen.push_back(s);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_DOUBLE_EQ(seen.back(), 0.6);  // the slow one finishes last
  std::multiset<double> all(seen.begin(), seen.end());
  EXPECT_EQ(all, std::multiset<double>(sleeps.begin(), sleeps.end()));
}

TEST(PoolApi, ImapRaisesWhenIterationReachesTheError) {
  pipepool::Pool pool(2);
  std::vector<int> got;
  try {
    for (int y : pool.imap(fail_on_odd, std::vector<int>{0, 2, 3, 4})) got.push_back(y);
    FAIL();
  } catch (const std::invalid_argument&) {
  }
  EXPECT_EQ(got, (std::vector<int>{0, 2}));
}

struct Point {
  double x, y;
  int tag;
};

TEST(PoolApi, RichArgumentAndResultTypes) {
  pipepool::Pool pool(2);
  using Map = std::map<std::string, std::vector<std::optional<std::variant<int, std::string>>>>;
  Map m{{"a", {1, std::nullopt, std::string("z")}}, {"b", {}}};
  EXPECT_EQ(pool.apply([](Map v) { return v; }, m), m);
  Point p = pool.apply([](Point q) { return Point{q.y, q.x, q.tag + 1}; }, Point{1.5, 2.5, 7});
  EXPECT_EQ(p.x, 2.5);
  EXPECT_EQ(p.tag, 8);
  auto pairs = pool.apply(
      [](std::array<int, 3> a, std::pair<int, std::string> b) {
        return std::make_tuple(a[0] + a[1] + a[2], b.second, std::vector<bool>{true, false});
      },
      std::array<int, 3>{1, 2, 3}, std::make_pair(1, std::string("s")));
  EXPECT_EQ(std::get<0>(pairs), 6);
  EXPECT_EQ(std::get<2>(pairs), (std::vector<bool>{true, false}));
  pool.apply([](int) {}, 1);  // void result
}

TEST(PoolApi, ReportsPipeCapacityInUse) {
  pipepool::Pool enlarged(1);
  EXPECT_GE(enlarged.pipe_capacity_bytes(), 65536u);
  pipepool::Pool kept(pipepool::Options{.processes = 1, .enlarge_pipes = false});
  EXPECT_EQ(kept.pipe_capacity_bytes(), 65536u);
  pipepool::Pool inline_pool(0);
  EXPECT_EQ(inline_pool.pipe_capacity_bytes(), 0u);
}

}  // namespace
