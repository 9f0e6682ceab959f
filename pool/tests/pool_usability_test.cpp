// Issue 10: what a user of Python's Pool hits in the first hour. One test (or more) per item, on
// real workers and, where it applies, on Pool(0).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <ranges>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pipepool/pipepool.hpp"

namespace {

using namespace std::chrono_literals;

// ---- 1: task output reaches a stdout that is a file, once -------------------------------------

int print_line(int x) {
  std::printf("task line %d\n", x);  // no flush: a file is fully buffered
  return x;
}

// Runs `body` in a child whose stdout (or `fd`) is a fully buffered file; returns what it holds.
template <class Body>
std::string stdout_of_child(Body body, int target = STDOUT_FILENO) {
  char path[] = "/tmp/pipepool_stdout_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, target);
    if (target == STDOUT_FILENO) setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
    int code = 0;
    try {
      body();
    } catch (...) {
      code = 3;
    }
    std::fflush(nullptr);
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  close(fd);
  unlink(path);
  return text.str();
}

size_t count_of(const std::string& text, const std::string& line) {
  size_t n = 0;
  for (size_t at = text.find(line); at != std::string::npos; at = text.find(line, at + 1)) ++n;
  return n;
}

TEST(PoolUsability, WorkerOutputToAFileIsFlushedOnceOnEveryExitPath) {
  const std::string text = stdout_of_child([] {
    std::printf("parent before the pool\n");  // still in the buffer when the pool forks
    pipepool::Pool pool(pipepool::Options{.processes = 2, .maxtasksperchild = 3});
    pool.map(print_line, std::vector<int>{11, 12, 13, 14, 15, 16, 17}, 1);
    pool.close();
    pool.join();
    std::printf("parent after the pool\n");
  });
  EXPECT_EQ(count_of(text, "parent before the pool\n"), 1u) << text;
  EXPECT_EQ(count_of(text, "parent after the pool\n"), 1u) << text;
  for (int x = 11; x <= 17; ++x) {
    EXPECT_EQ(count_of(text, "task line " + std::to_string(x) + "\n"), 1u) << x << "\n" << text;
  }
}

TEST(PoolUsability, InlinePoolOutputToAFileIsPrintedOnce) {
  const std::string text = stdout_of_child([] {
    pipepool::Pool pool(0);
    pool.map(print_line, std::vector<int>{21, 22}, 1);
  });
  EXPECT_EQ(count_of(text, "task line 21\n"), 1u) << text;
  EXPECT_EQ(count_of(text, "task line 22\n"), 1u) << text;
}

}  // namespace

namespace {

// ---- 6: a result is ready only after its callback ran ------------------------------------------

int triple(int x) {
  return 3 * x;
}

TEST(PoolUsability, CallbacksFinishBeforeWaitGetReadyAndJoin) {
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    std::atomic<int> seen{0};
    std::vector<pipepool::AsyncResult<int>> results;
    for (int i = 1; i <= 6; ++i) {
      results.push_back(pool.apply_async(pipepool::Callbacks<int>{.callback =
                                                                      [&seen](const int& v) {
                                                                        std::this_thread::sleep_for(
                                                                            30ms);
                                                                        seen += v;
                                                                      }},
                                         triple, i));
    }
    results[0].wait();
    EXPECT_GE(seen.load(), 3) << processes;  // 3 * 1: the first callback has returned
    EXPECT_EQ(results[1].get(), 6);
    EXPECT_GE(seen.load(), 3 + 6) << processes;
    std::atomic<int> mapped{0};
    auto m = pool.map_async(triple, std::vector<int>{5, 7}, 1,
                            {.callback = [&mapped](const std::vector<int>& v) {
                              std::this_thread::sleep_for(30ms);
                              mapped = v[0] + v[1];
                            }});
    while (!m.ready()) std::this_thread::sleep_for(1ms);
    EXPECT_EQ(mapped.load(), 36) << processes;  // ready() implies the callback ran
    auto last = pool.apply_async(pipepool::Callbacks<int>{.callback =
                                                              [&seen](const int&) {
                                                                std::this_thread::sleep_for(50ms);
                                                                seen += 1000;
                                                              }},
                                 triple, 0);
    pool.close();
    pool.join();
    EXPECT_EQ(seen.load(), 3 * 21 + 1000) << processes;  // every callback ran before join returned
  }
}

// ---- 7: a blocking call from a callback throws instead of hanging -----------------------------

TEST(PoolUsability, BlockingCallsFromACallbackThrowUsageError) {
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    std::mutex mutex;
    std::vector<std::string> errors;
    auto record = [&](auto attempt) {
      try {
        attempt();
        std::lock_guard lock(mutex);
        errors.push_back("no exception");
      } catch (const pipepool::UsageError& e) {
        std::lock_guard lock(mutex);
        errors.push_back(e.what());
      }
    };
    auto other = pool.apply_async(triple, 9);
    auto r = pool.apply_async(
        pipepool::Callbacks<int>{.callback =
                                     [&](const int&) {
                                       record([&] { pool.apply(triple, 2); });
                                       record([&] { pool.map(triple, std::vector<int>{1, 2}); });
                                       record([&] { other.wait(); });
                                       record([&] { other.get(1s); });
                                       record([&] {
                                         for (int y : pool.imap(triple, std::vector<int>{4}))
                                           (void)y;
                                       });
                                       record([&] { pool.join(); });
                                       record([&] { pool.terminate(); });
                                       // Submitting is fine.
                                       pool.apply_async(triple, 3);
                                     }},
        triple, 1);
    EXPECT_EQ(r.get(), 3);
    ASSERT_EQ(errors.size(), 7u) << processes;
    for (const std::string& e : errors) {
      EXPECT_NE(e.find("called from a callback"), std::string::npos) << processes << ": " << e;
      EXPECT_NE(e.find("hang"), std::string::npos) << e;
    }
    EXPECT_EQ(pool.apply(triple, 4), 12);  // the pool still works
  }
}

}  // namespace

namespace {

// ---- 2, 3, 4: imap over any input, bounded, cancelled when left early ------------------------

long long half(long long x) {
  return x / 2;
}
double nap(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}

TEST(PoolUsability, ImapOverAnUnboundedRangeYieldsAndHoldsOnlyAWindow) {
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    std::vector<long long> got;
    for (long long y : pool.imap(half, std::views::iota(10LL), 3)) {
      got.push_back(y);
      if (got.size() == 9) break;
    }
    EXPECT_EQ(got, (std::vector<long long>{5, 5, 6, 6, 7, 7, 8, 8, 9})) << processes;
    // Only the chunks in flight were ever submitted: a window, not the (unbounded) input.
    EXPECT_LT(pool.stats().tasks_submitted, 300u) << processes;
    got.clear();
    for (long long y : pool.imap_unordered(half, std::views::iota(100LL, 106LL))) got.push_back(y);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (std::vector<long long>{50, 50, 51, 51, 52, 52})) << processes;
  }
}

TEST(PoolUsability, InputOnlyAndFilteredRangesInEveryMapCall) {
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    auto odd = [](int x) { return x % 2 == 1; };
    std::vector<int> xs{3, 4, 5, 6, 7};
    auto filtered = xs | std::views::filter(odd);
    EXPECT_EQ(pool.map(triple, filtered), (std::vector<int>{9, 15, 21})) << processes;
    EXPECT_EQ(pool.map_async(triple, filtered, 2).get(), (std::vector<int>{9, 15, 21}));
    // Single pass, unknown length: std::views::istream.
    std::istringstream words("8 1 6");
    EXPECT_EQ(pool.map(triple, std::views::istream<int>(words)), (std::vector<int>{24, 3, 18}));
    std::istringstream more("2 5");
    int total = 0;
    for (int y : pool.imap(triple, std::views::istream<int>(more))) total += y;
    EXPECT_EQ(total, 21);
    std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
    auto big = [](const std::pair<int, int>& p) { return p.first > 1; };
    auto add = [](int a, int b) { return a + b; };
    EXPECT_EQ(pool.starmap(add, pairs | std::views::filter(big)), (std::vector<int>{7, 11}));
    EXPECT_EQ(pool.starmap_async(add, pairs | std::views::filter(big)).get(),
              (std::vector<int>{7, 11}));
  }
}

TEST(PoolUsability, LeavingAnImapEarlyCancelsChunksNotStarted) {
  pipepool::Pool pool(2);
  {
    auto naps = pool.imap(nap, std::vector<double>(60, 0.15));
    for (double s : naps) {
      EXPECT_EQ(s, 0.15);
      break;
    }
  }  // cancels what no worker has started
  pool.close();
  pool.join();
  // Slow tasks go one at a time per worker (Demand): the first two ran, maybe the next two;
  // the rest of the 60 never did.
  EXPECT_LE(pool.stats().tasks_completed, 6u);
  EXPECT_GE(pool.stats().tasks_completed, 1u);
}

}  // namespace

// ---- 5: move-only values through arguments and results --------------------------------------

struct Blob {
  std::unique_ptr<std::vector<int>> data;
  Blob() = default;
  explicit Blob(std::vector<int> v) : data(std::make_unique<std::vector<int>>(std::move(v))) {}
  Blob(Blob&&) = default;
  Blob& operator=(Blob&&) = default;
  Blob(const Blob&) = delete;  // a copy anywhere on the way would not compile
};

template <>
struct pipepool::Codec<Blob> {
  static void encode(pipepool::Writer& writer, const Blob& blob) {
    pipepool::encode(writer, blob.data ? *blob.data : std::vector<int>{});
  }
  static Blob decode(pipepool::Reader& reader) {
    return Blob(pipepool::decode<std::vector<int>>(reader));
  }
};

namespace {

Blob append_sum(Blob blob) {
  int sum = 0;
  for (int v : *blob.data) sum += v;
  blob.data->push_back(sum);
  return blob;
}
std::string long_text(int n) {
  return std::string(static_cast<size_t>(n), 'q');
}

TEST(PoolUsability, MoveOnlyArgumentsAndResultsAndTakeWithoutCopy) {
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    Blob out = pool.apply(append_sum, Blob({4, 5}));
    EXPECT_EQ(*out.data, (std::vector<int>{4, 5, 9})) << processes;
    std::vector<Blob> ins;
    ins.emplace_back(std::vector<int>{1});
    ins.emplace_back(std::vector<int>{2, 3});
    std::vector<Blob> outs = pool.map(append_sum, ins);
    ASSERT_EQ(outs.size(), 2u);
    EXPECT_EQ(*outs[1].data, (std::vector<int>{2, 3, 5}));
    auto r = pool.apply_async(append_sum, Blob({7}));
    auto copy = r;  // another handle: take() still moves, no copy is ever needed
    Blob taken = r.take();
    EXPECT_EQ(*taken.data, (std::vector<int>{7, 7}));
    EXPECT_THROW(copy.take(), pipepool::UsageError);
    EXPECT_TRUE(copy.successful());
    // A large copyable result, taken out of an lvalue handle without a copy.
    auto text = pool.apply_async(long_text, 3 << 20);
    std::string big = text.take();
    EXPECT_EQ(big.size(), size_t{3} << 20);
    EXPECT_THROW(text.get(), pipepool::UsageError);
    int moved = 0;
    for (Blob& b : pool.imap(append_sum, std::move(ins))) {
      Blob mine = std::move(b);  // imap hands out its values to be moved from
      moved += mine.data->back();
    }
    EXPECT_EQ(moved, 1 + 5);
  }
}

}  // namespace

namespace {

// ---- 11: arguments convert as a call would; Pool is movable -----------------------------------

size_t length_of(std::string s) {
  return s.size();
}
std::string label(std::string name, int n) {
  return name + "#" + std::to_string(n);
}

TEST(PoolUsability, ArgumentsConvertToTheParameterTypesAsACallWould) {
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    EXPECT_EQ(pool.apply(length_of, "seven c"), 7u) << processes;
    EXPECT_EQ(pool.apply(label, "box", 4), "box#4");
    EXPECT_EQ(
        pool.apply([](std::string s, double d) { return s + std::to_string(int(d * 2)); }, "x", 3),
        "x6");
    std::vector<const char*> words{"a", "bcd", "efghij"};
    EXPECT_EQ(pool.map(length_of, words), (std::vector<size_t>{1, 3, 6}));
    size_t total = 0;
    for (size_t n : pool.imap(length_of, words)) total += n;
    EXPECT_EQ(total, 10u);
    std::vector<std::pair<const char*, int>> pairs{{"p", 1}, {"q", 2}};
    EXPECT_EQ(pool.starmap(label, pairs), (std::vector<std::string>{"p#1", "q#2"}));
  }
}

struct Service {
  pipepool::Pool pool{0};  // replaced once the configuration is known
};

TEST(PoolUsability, PoolIsMovable) {
  Service service;
  service.pool = pipepool::Pool(2);
  EXPECT_EQ(service.pool.processes(), 2);
  EXPECT_EQ(service.pool.apply(triple, 5), 15);
  pipepool::Pool other = std::move(service.pool);
  EXPECT_EQ(other.apply(triple, 6), 18);
  EXPECT_THROW(service.pool.apply(triple, 1), pipepool::UsageError);
  service.pool = std::move(other);  // a moved-from pool can be assigned again
  EXPECT_EQ(service.pool.map(triple, std::vector<int>{1, 2}), (std::vector<int>{3, 6}));
  static_assert(std::is_nothrow_move_constructible_v<pipepool::Pool>);
}

}  // namespace

namespace {

// ---- 8: Pool(0) runs the initializer and refuses task_timeout -----------------------------------

int g_inline_initialized = 0;

TEST(PoolUsability, InlinePoolRunsTheInitializerOnceBeforeTheFirstTask) {
  g_inline_initialized = 0;
  pipepool::Pool pool(
      pipepool::Options{.processes = 0, .initializer = [] { g_inline_initialized += 7; }});
  EXPECT_EQ(pool.apply([](int) { return g_inline_initialized; }, 0), 7);
  EXPECT_EQ(pool.map([](int x) { return g_inline_initialized + x; }, std::vector<int>{1, 2}),
            (std::vector<int>{8, 9}));
  EXPECT_EQ(g_inline_initialized, 7);  // once
  EXPECT_THROW(pipepool::Pool(pipepool::Options{
                   .processes = 0, .initializer = [] { throw std::runtime_error("no config"); }}),
               std::runtime_error);
}

TEST(PoolUsability, InlinePoolRejectsTaskTimeoutSayingWhy) {
  try {
    pipepool::Pool pool(pipepool::Options{.processes = 0, .task_timeout = 250ms});
    FAIL() << "accepted";
  } catch (const pipepool::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("task_timeout needs worker processes"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot safely stop its own call"), std::string::npos);
  }
}

}  // namespace

namespace {

// ---- 10: errors name the input's index ---------------------------------------------------------

int reject_multiples_of_seven(int x) {
  if (x % 7 == 0) throw std::domain_error("multiple of seven: " + std::to_string(x));
  return x;
}
int die_on_negative(int x) {
  if (x < 0) _exit(9);
  return x;
}

TEST(PoolUsability, ErrorsNameTheIndexOfTheFailingInputItem) {
  std::vector<int> xs{1, 2, 3, 4, 5, 6, 14, 8, 21, 10};  // 14 at index 6, 21 at index 8
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    for (size_t chunksize : {size_t{1}, size_t{4}, size_t{0}}) {
      try {
        pool.map(reject_multiples_of_seven, xs, chunksize);
        FAIL();
      } catch (const std::domain_error& e) {
        EXPECT_STREQ(e.what(), "multiple of seven: 14");
        EXPECT_EQ(dynamic_cast<const pipepool::RemoteError&>(e).input_index(), 6u)
            << processes << " chunksize " << chunksize;
      }
      try {
        for (int y : pool.imap(reject_multiples_of_seven, xs, chunksize == 0 ? 3 : chunksize)) {
          (void)y;
        }
        FAIL();
      } catch (const pipepool::RemoteError& e) {
        EXPECT_EQ(e.input_index(), 6u) << processes << " chunksize " << chunksize;
      }
      try {
        for (int y : pool.imap_unordered(reject_multiples_of_seven, std::vector<int>{3, 9, 49})) {
          (void)y;
        }
        FAIL();
      } catch (const pipepool::RemoteError& e) {
        EXPECT_EQ(e.input_index(), 2u);
      }
    }
    try {
      pool.apply(reject_multiples_of_seven, 7);
      FAIL();
    } catch (const pipepool::RemoteError& e) {
      EXPECT_EQ(e.input_index(), pipepool::RemoteError::kNoIndex);
    }
  }
  // A worker that dies: the message names the input items its task held, not a task number.
  pipepool::Pool pool(2);
  try {
    pool.map(die_on_negative, std::vector<int>{0, 1, 2, 3, 4, -5, 6, 7}, 2);
    FAIL();
  } catch (const pipepool::WorkerLost& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("input items 4 to 5"), std::string::npos) << what;
    EXPECT_EQ(what.find("task 3 "), std::string::npos) << what;
  }
}

}  // namespace

namespace {

// ---- 12: closures with captures are rejected; pipepool::bind sends bound values ---------------

std::string greet(std::string greeting, int times, std::string name) {
  std::string out;
  for (int i = 0; i < times; ++i) out += greeting;
  return out + " " + name;
}

TEST(PoolUsability, CapturingClosuresAreRejectedAtCompileTime) {
  int local = 3;
  auto by_reference = [&](int x) { return x + local; };
  auto by_value = [local](int x) { return x + local; };
  struct Functor {
    int offset;
    int operator()(int x) const { return x + offset; }
  };
  using pipepool::detail::is_sendable_callable_v;
  static_assert(!is_sendable_callable_v<decltype(by_reference)>);
  static_assert(!is_sendable_callable_v<decltype(by_value)>);
  static_assert(!is_sendable_callable_v<Functor>);
  static_assert(is_sendable_callable_v<decltype(&triple)>);
  static_assert(is_sendable_callable_v<decltype([](int x) { return x; })>);
  static_assert(is_sendable_callable_v<decltype(pipepool::bind(greet, std::string("hi")))>);
  (void)by_reference(0);
  (void)by_value(0);
  // The compiler's own message is checked by the ctest pool_rejects_capturing_lambda.
}

TEST(PoolUsability, BindSendsBoundValuesThroughTheCodec) {
  for (int processes : {2, 0}) {
    pipepool::Pool pool(processes);
    std::string greeting = "yo";  // a heap string: a captured pointer to it would not do
    greeting.append(40, '!');
    auto bound = pipepool::bind(greet, greeting, 2);
    EXPECT_EQ(pool.apply(bound, "ann"), greeting + greeting + " ann") << processes;
    EXPECT_EQ(pool.map(bound, std::vector<std::string>{"b", "c"}),
              (std::vector<std::string>{greeting + greeting + " b", greeting + greeting + " c"}));
    std::string all;
    for (const std::string& s : pool.imap(pipepool::bind(greet, std::string("a"), 1),
                                          std::vector<const char*>{"x", "y"})) {
      all += s + ";";
    }
    EXPECT_EQ(all, "a x;a y;");
    EXPECT_EQ(pool.starmap(pipepool::bind(greet, std::string("z")),
                           std::vector<std::tuple<int, std::string>>{{3, "q"}}),
              (std::vector<std::string>{"zzz q"}));
    auto scale = pipepool::bind([](std::vector<int> factors, int x) { return factors[1] * x; },
                                std::vector<int>{0, 5});
    EXPECT_EQ(pool.apply(scale, 4), 20);
  }
}

}  // namespace

namespace {

// ---- 9: task_timeout bounds each item, a chunk gets the sum -----------------------------------

int doze_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

TEST(PoolUsability, TaskTimeoutBoundsEachItemAndAChunkGetsTheSum) {
  pipepool::Pool pool(pipepool::Options{.processes = 2, .task_timeout = 40ms});
  // 96 items of 6 ms: the default chunk holds 12 of them (72 ms, over one 40 ms budget, well
  // within 12 of them).
  std::vector<int> quick(96, 6);
  EXPECT_EQ(pool.map(doze_ms, quick), quick);
  EXPECT_EQ(pool.map_async(doze_ms, quick, 16).get(), quick);
  int total = 0;
  for (int ms : pool.imap(doze_ms, quick, 10)) total += ms;
  EXPECT_EQ(total, 96 * 6);
  // One item alone over its budget still times out.
  EXPECT_THROW(pool.apply(doze_ms, 400), pipepool::TimeoutError);
  EXPECT_THROW(pool.map(doze_ms, std::vector<int>{1, 400, 1}, 1), pipepool::TimeoutError);
}

}  // namespace

namespace {

// ---- 10 (initializer): what a worker's initializer threw is said -------------------------------

TEST(PoolUsability, AThrowingInitializerSaysWhatItThrew) {
  const std::string text = stdout_of_child(
      [] {
        pipepool::Pool pool(pipepool::Options{.processes = 1, .initializer = [] {
                                                throw std::invalid_argument("missing PIPE_CONF");
                                              }});
        try {
          pool.apply(triple, 1);
        } catch (const pipepool::WorkerLost& e) {
          std::fprintf(stderr, "caught: %s\n", e.what());
        }
        pool.terminate();
      },
      STDERR_FILENO);
  EXPECT_NE(text.find("its initializer threw std::invalid_argument: missing PIPE_CONF"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("caught: "), std::string::npos) << text;
}

}  // namespace
