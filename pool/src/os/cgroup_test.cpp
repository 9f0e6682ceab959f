// Tests of the pure parts of os/cgroup (the cgroup writes themselves are tested end to end by
// tools/tiers_*_test: they need root).
#include "os/cgroup.hpp"

#include <gtest/gtest.h>

namespace pipepool::os {
namespace {

TEST(Cgroup, ParsesV1CpuStatWithThrottledTimeInNanoseconds) {
  auto stat = parse_cgroup_cpu_stat(
      "nr_periods 101\nnr_throttled 99\nthrottled_time 705504407\nnr_bursts 0\nburst_time 0\n");
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->nr_periods, 101u);
  EXPECT_EQ(stat->nr_throttled, 99u);
  EXPECT_EQ(stat->throttled_us, 705504u);
}

TEST(Cgroup, ParsesV2CpuStatWithThrottledUsec) {
  auto stat = parse_cgroup_cpu_stat(
      "usage_usec 1000\nuser_usec 900\nsystem_usec 100\nnr_periods 50\nnr_throttled 40\n"
      "throttled_usec 123456\n");
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->nr_periods, 50u);
  EXPECT_EQ(stat->nr_throttled, 40u);
  EXPECT_EQ(stat->throttled_us, 123456u);
}

TEST(Cgroup, CpuStatWithoutBandwidthCountersIsNone) {
  EXPECT_FALSE(parse_cgroup_cpu_stat("usage_usec 1000\nuser_usec 900\n"));
  EXPECT_FALSE(parse_cgroup_cpu_stat(""));
}

TEST(Cgroup, CpuListsRoundTrip) {
  EXPECT_EQ(parse_cpu_list("0-3,6\n"), (std::vector<int>{0, 1, 2, 3, 6}));
  EXPECT_EQ(parse_cpu_list("1"), (std::vector<int>{1}));
  EXPECT_EQ(parse_cpu_list(""), (std::vector<int>{}));
  EXPECT_FALSE(parse_cpu_list("3-1"));
  EXPECT_FALSE(parse_cpu_list("a"));
  EXPECT_FALSE(parse_cpu_list("1,-2"));
  EXPECT_EQ(format_cpu_list({0, 1, 2, 6}), "0-2,6");
  EXPECT_EQ(format_cpu_list({0, 1}), "0-1");
  EXPECT_EQ(format_cpu_list({}), "");
}

TEST(Cgroup, RejectsANameThatIsNotOnePathComponent) {
  std::string error;
  EXPECT_FALSE(Cgroup::create("a/b", error));
  EXPECT_NE(error.find("not one path component"), std::string::npos) << error;
  EXPECT_FALSE(Cgroup::create("..", error));
}

}  // namespace
}  // namespace pipepool::os
