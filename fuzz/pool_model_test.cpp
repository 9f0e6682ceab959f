// Model-based tests of the Pool API (rc::state): random sequences of apply, apply_async, map,
// map_async, imap, imap_unordered, get with and without a timeout, close, join and terminate,
// each checked against a small model of what it must return or throw, on real workers and on
// Pool(0). A failure prints the command sequence and RC_PARAMS="seed=..." to rerun it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "pipepool/pipepool.hpp"

namespace pipepool::fuzz {
namespace {

using namespace std::chrono_literals;

int square(int x) {
  return x * x;
}
// Sleeps `ms` milliseconds first: a task that is not ready yet when get(timeout) asks.
int slow_square(int x, int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return x * x;
}
int checked_square(int x) {
  if (x < 0) throw std::domain_error("negative");
  return x * x;
}

enum class Life { Open, Closed, Terminated, Joined };

struct Model {
  Life life = Life::Open;
  bool terminated = false;  // terminate() was called (results may be WorkerLost)
  struct Pending {
    std::vector<int> expected;  // squares, in order (one for apply_async)
    bool single = true;         // apply_async (else map_async)
    bool throws = false;        // checked_square of a negative: domain_error
  };
  std::vector<Pending> results;
  bool open() const { return life == Life::Open; }
};

struct Sut {
  std::unique_ptr<Pool> pool;
  std::vector<AsyncResult<int>> singles;
  std::vector<AsyncResult<std::vector<int>>> maps;
  std::vector<size_t> index;  // results[i] -> position in singles or maps
};

using Cmd = rc::state::Command<Model, Sut>;

std::vector<int> squares(const std::vector<int>& xs) {
  std::vector<int> out;
  for (int x : xs) out.push_back(x * x);
  return out;
}

rc::Gen<std::vector<int>> small_lists() {
  return rc::gen::container<std::vector<int>>(*rc::gen::inRange<size_t>(0, 12),
                                              rc::gen::inRange(-1000, 1000));
}

// A call after close()/terminate() must throw PoolClosed. Except that a map family call with no
// items submits nothing and returns an empty result without PoolClosed (Python's Pool raises
// ValueError there): a divergence this model accepts and fuzz/README.md notes.
template <class F>
void expect_closed(F&& f, bool empty_items = false) {
  try {
    f();
  } catch (const PoolClosed&) {
    return;
  }
  RC_ASSERT(empty_items);  // else: no PoolClosed after close()/terminate()
}

struct Apply : Cmd {
  int x = *rc::gen::inRange(-1000, 1000);
  void run(const Model& m, Sut& s) const override {
    if (!m.open()) return expect_closed([&] { (void)s.pool->apply(square, x); });
    RC_ASSERT(s.pool->apply(square, x) == x * x);
  }
  void show(std::ostream& os) const override { os << "apply(square, " << x << ")"; }
};

struct ApplyAsync : Cmd {
  int x = *rc::gen::inRange(-1000, 1000);
  int sleep_ms = *rc::gen::element(0, 0, 0, 30);
  bool checked = *rc::gen::element(false, false, true);
  void apply(Model& m) const override {
    if (m.open()) m.results.push_back({{x * x}, true, checked && x < 0});
  }
  void run(const Model& m, Sut& s) const override {
    if (!m.open()) return expect_closed([&] { (void)s.pool->apply_async(square, x); });
    s.index.push_back(s.singles.size());
    s.singles.push_back(checked ? s.pool->apply_async(checked_square, x)
                                : s.pool->apply_async(slow_square, x, sleep_ms));
  }
  void show(std::ostream& os) const override {
    os << "apply_async(" << (checked ? "checked_square, " : "slow_square, ") << x
       << (checked ? "" : ", " + std::to_string(sleep_ms) + " ms") << ")";
  }
};

struct Map : Cmd {
  std::vector<int> xs = *small_lists();
  size_t chunksize = *rc::gen::inRange<size_t>(0, 4);
  void run(const Model& m, Sut& s) const override {
    if (!m.open())
      return expect_closed([&] { (void)s.pool->map(square, xs, chunksize); }, xs.empty());
    RC_ASSERT(s.pool->map(square, xs, chunksize) == squares(xs));
  }
  void show(std::ostream& os) const override {
    os << "map(square, " << rc::toString(xs) << ", " << chunksize << ")";
  }
};

struct MapAsync : Cmd {
  std::vector<int> xs = *small_lists();
  size_t chunksize = *rc::gen::inRange<size_t>(0, 4);
  void apply(Model& m) const override {
    if (m.open()) m.results.push_back({squares(xs), false, false});
  }
  void run(const Model& m, Sut& s) const override {
    if (!m.open()) {
      return expect_closed([&] { (void)s.pool->map_async(square, xs, chunksize); }, xs.empty());
    }
    s.index.push_back(s.maps.size());
    s.maps.push_back(s.pool->map_async(square, xs, chunksize));
  }
  void show(std::ostream& os) const override {
    os << "map_async(square, " << rc::toString(xs) << ", " << chunksize << ")";
  }
};

struct Imap : Cmd {
  std::vector<int> xs = *small_lists();
  size_t chunksize = *rc::gen::inRange<size_t>(1, 4);
  bool ordered = *rc::gen::arbitrary<bool>();
  void run(const Model& m, Sut& s) const override {
    std::vector<int> got;
    const auto collect = [&] {
      if (ordered) {
        for (int y : s.pool->imap(square, xs, chunksize)) got.push_back(y);
      } else {
        for (int y : s.pool->imap_unordered(square, xs, chunksize)) got.push_back(y);
      }
    };
    if (!m.open()) return expect_closed(collect, xs.empty());
    collect();
    std::vector<int> want = squares(xs);
    if (!ordered) {
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
    }
    RC_ASSERT(got == want);
  }
  void show(std::ostream& os) const override {
    os << (ordered ? "imap" : "imap_unordered") << "(square, " << rc::toString(xs) << ", "
       << chunksize << ")";
  }
};

// get() of an earlier async result, with or without a timeout.
struct Get : Cmd {
  size_t which;
  bool with_timeout = *rc::gen::arbitrary<bool>();
  explicit Get(const Model& m) {
    RC_PRE(!m.results.empty());
    which = *rc::gen::inRange<size_t>(0, m.results.size());
  }
  void checkPreconditions(const Model& m) const override { RC_PRE(which < m.results.size()); }
  void run(const Model& m, Sut& s) const override {
    const Model::Pending& want = m.results[which];
    try {
      if (want.single) {
        auto& r = s.singles[s.index[which]];
        const int v = with_timeout ? r.get(5ms) : r.get();
        RC_ASSERT(!want.throws);
        RC_ASSERT(v == want.expected[0]);
      } else {
        auto& r = s.maps[s.index[which]];
        const std::vector<int> v = with_timeout ? r.get(5ms) : r.get();
        RC_ASSERT(v == want.expected);
      }
    } catch (const TimeoutError&) {
      RC_ASSERT(with_timeout);  // only a timed get may time out
    } catch (const std::domain_error&) {
      RC_ASSERT(want.throws);
    } catch (const WorkerLost&) {
      RC_ASSERT(m.terminated);  // only terminate() loses tasks here
    }
  }
  void show(std::ostream& os) const override {
    os << "result[" << which << "].get(" << (with_timeout ? "5 ms" : "") << ")";
  }
};

struct Close : Cmd {
  void apply(Model& m) const override {
    if (m.life == Life::Open) m.life = Life::Closed;
  }
  void run(const Model&, Sut& s) const override { s.pool->close(); }
  void show(std::ostream& os) const override { os << "close()"; }
};

struct Join : Cmd {
  void apply(Model& m) const override {
    if (m.life == Life::Closed || m.life == Life::Terminated) m.life = Life::Joined;
  }
  void run(const Model& m, Sut& s) const override {
    if (m.life == Life::Open) {
      try {
        s.pool->join();
      } catch (const std::logic_error&) {
        return;  // UsageError: join() of an open pool
      }
      RC_FAIL("join() of an open pool did not throw");
    }
    s.pool->join();
    // Every submitted result is ready after join() (with its value, or WorkerLost if terminated).
    for (size_t i = 0; i < m.results.size(); ++i) {
      const bool ready =
          m.results[i].single ? s.singles[s.index[i]].ready() : s.maps[s.index[i]].ready();
      RC_ASSERT(ready);
    }
  }
  void show(std::ostream& os) const override { os << "join()"; }
};

struct Terminate : Cmd {
  void apply(Model& m) const override {
    if (m.life != Life::Joined) m.life = Life::Terminated;
    m.terminated = true;
  }
  void run(const Model&, Sut& s) const override { s.pool->terminate(); }
  void show(std::ostream& os) const override { os << "terminate()"; }
};

void run_model(int processes) {
  Sut sut;
  sut.pool = std::make_unique<Pool>(Options{.processes = processes, .enlarge_pipes = false});
  rc::state::check(
      Model{}, sut,
      rc::state::gen::execOneOfWithArgs<Apply, ApplyAsync, ApplyAsync, Map, MapAsync, Imap, Get,
                                        Get, Get, Close, Join, Terminate>());
  // The pool is joined or terminated by its destructor; nothing may hang there.
  sut.pool->terminate();
}

// Runs the model with `cases` test cases of at most `max_size` (RapidCheck's size, which bounds
// the command count), unless RC_PARAMS sets max_success / max_size; prints how to rerun a failure.
void check_model(int processes, int cases, int max_size) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  const char* env = std::getenv("RC_PARAMS");
  const std::string given = env ? env : "";
  if (given.find("max_success") == std::string::npos) {
    params.maxSuccess = static_cast<int>(scaled(static_cast<uint64_t>(cases)));
  }
  if (given.find("max_size") == std::string::npos) params.maxSize = max_size;
  const auto result = rc::detail::checkTestable([processes] { run_model(processes); },
                                                rc::detail::TestMetadata{}, params);
  if (!result.template is<rc::detail::SuccessResult>()) {
    std::ostringstream message;
    rc::detail::printResultMessage(result, message);
    ADD_FAILURE() << message.str() << "\nrerun: RC_PARAMS=\"seed=" << params.seed
                  << "\" build/fuzz/fuzz_tests --gtest_filter='PoolModel.*'";
  }
}

// Each case forks a pool (a fork server and workers): few cases, short sequences.
TEST(PoolModel, TwoWorkersFollowTheModel) {
  check_model(2, 25, 25);
}

TEST(PoolModel, InlinePoolFollowsTheModel) {
  check_model(0, 60, 30);
}

}  // namespace
}  // namespace pipepool::fuzz
