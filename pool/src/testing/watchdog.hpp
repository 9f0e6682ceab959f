// Test support: a per-test watchdog, so that a hang fails in seconds with a message naming the test
// instead of eating CI. Every test binary of the project links pipepool_test_main, which installs
// it. A test that needs longer calls pipepool::testing::extend_watchdog(seconds).
#pragma once

namespace pipepool::testing {

// Default budget of one test, in seconds (PIPEPOOL_TEST_TIMEOUT_S overrides it).
inline constexpr unsigned kDefaultWatchdogSeconds = 60;

// Re-arms the watchdog of the running test for `seconds` from now.
void extend_watchdog(unsigned seconds);

}  // namespace pipepool::testing
