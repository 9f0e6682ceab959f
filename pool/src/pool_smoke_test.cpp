#include <gtest/gtest.h>

#include "pipepool/pipepool.hpp"

namespace {
int square(int x) { return x * x; }
}  // namespace

TEST(Smoke, MapApply) {
  pipepool::Pool pool(2);
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}), (std::vector<int>{1, 4, 9}));
  EXPECT_EQ(pool.apply(square, 7), 49);
}
