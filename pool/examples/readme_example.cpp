// The README's example, compiled and run by ctest so that it stays true.
#include <pipepool/pipepool.hpp>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

int square(int x) {
  return x * x;
}
int sum_two(int a, int b) {
  return a + b;
}
int must_be_even(int x) {
  if (x % 2) throw std::invalid_argument("odd: " + std::to_string(x));
  return x;
}

struct Quote {  // any trivially copyable struct can be sent as is
  double price;
  int volume;
};

int main() {
  pipepool::Pool pool(4);  // four worker processes; Pool() = one per usable CPU, Pool(0) = inline

  std::vector<int> v = pool.map(square, std::vector<int>{1, 2, 3});  // {1, 4, 9}
  int s = pool.apply(sum_two, 3, 4);                                 // 7

  pipepool::AsyncResult<int> r = pool.apply_async(square, 7);
  r.wait(std::chrono::seconds(1));                  // true once ready
  int forty_nine = r.get(std::chrono::seconds(5));  // or pipepool::TimeoutError

  auto pairs = pool.starmap(sum_two, std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}});  // {3, 7}
  auto later = pool.map_async(square, std::vector<int>(100, 3), /*chunksize=*/10);

  int total = 0;
  for (int y : pool.imap(square, std::vector<int>{1, 2, 3}, /*chunksize=*/16)) total += y;
  for (int y : pool.imap_unordered(square, std::vector<int>{4, 5})) total += y;
  for (int y : pool.imap(square, std::views::iota(0))) {  // any input range, even unbounded
    if (y > 50) break;                                    // leaving early cancels what is queued
  }

  // Bound values travel through the codec (functools.partial); a lambda with captures would not
  // compile.
  auto scaled = pool.map(pipepool::bind(sum_two, 100), std::vector<int>{1, 2});  // {101, 102}
  auto big = pool.apply_async([](int n) { return std::vector<int>(n, 7); }, 1 << 20);
  std::vector<int> moved = big.take();  // moved out of the handle, no copy

  double notional = pool.apply([](Quote q) { return q.price * q.volume; }, Quote{2.5, 4});

  try {
    pool.map(must_be_even, std::vector<int>{2, 3, 4, 5});
  } catch (const std::invalid_argument& e) {  // the original type, from the lowest failing index
    std::printf("caught %s\n", e.what());     // "odd: 3"; also a pipepool::RemoteError
  }

  auto done = pool.apply_async(
      pipepool::Callbacks<int>{.callback = [](const int& value) { std::printf("got %d\n", value); },
                               .error_callback = [](std::exception_ptr) {}},
      square, 8);  // the callback runs on the pool's I/O thread
  done.wait();

  pool.close();
  pool.join();

  const bool ok = v == std::vector<int>{1, 4, 9} && s == 7 && forty_nine == 49 &&
                  pairs == std::vector<int>{3, 7} && later.get().size() == 100 && total == 55 &&
                  notional == 10.0 && scaled == std::vector<int>{101, 102} &&
                  moved.size() == size_t{1} << 20;
  std::printf(ok ? "readme example ok\n" : "readme example WRONG\n");
  return ok ? 0 : 1;
}
