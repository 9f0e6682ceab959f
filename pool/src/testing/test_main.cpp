// gtest main with a watchdog: SIGALRM after the budget prints which test hung and kills the whole
// process group (the test's pool processes included), so a deadlock fails fast with a message.
#include <gtest/gtest.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "watchdog.hpp"

namespace pipepool::testing {
namespace {

char g_current_test[512] = "(none)";
unsigned g_budget_s = kDefaultWatchdogSeconds;

void on_alarm(int) {
  // Async-signal-safe only: write(2) and kill(2).
  const char prefix[] = "\nWATCHDOG: test hung past its budget: ";
  (void)!write(STDERR_FILENO, prefix, sizeof prefix - 1);
  (void)!write(STDERR_FILENO, g_current_test, strlen(g_current_test));
  (void)!write(STDERR_FILENO, "\n", 1);
  signal(SIGKILL, SIG_DFL);
  kill(0, SIGKILL);  // own process group: workers and fork servers go too
  _exit(124);
}

class WatchdogListener : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& info) override {
    std::string name = std::string(info.test_suite_name()) + "." + info.name();
    strncpy(g_current_test, name.c_str(), sizeof g_current_test - 1);
    alarm(g_budget_s);
  }
  void OnTestEnd(const ::testing::TestInfo&) override { alarm(0); }
};

}  // namespace

void extend_watchdog(unsigned seconds) {
  alarm(seconds);
}

}  // namespace pipepool::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (const char* s = std::getenv("PIPEPOOL_TEST_TIMEOUT_S")) {
    pipepool::testing::g_budget_s = static_cast<unsigned>(std::strtoul(s, nullptr, 10));
  }
  // Run each test binary in its own process group, so the watchdog kills only what it started.
  if (getpgrp() != getpid()) setpgid(0, 0);
  struct sigaction sa {};
  sa.sa_handler = pipepool::testing::on_alarm;
  sigaction(SIGALRM, &sa, nullptr);
  ::testing::UnitTest::GetInstance()->listeners().Append(new pipepool::testing::WatchdogListener);
  return RUN_ALL_TESTS();
}
