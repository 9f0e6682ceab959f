#include "case_alarm.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace pipepool::bench {
namespace {

// Prepared before arming: the handler only writes it (async-signal-safe).
char g_message[512];
size_t g_message_length = 0;

extern "C" void on_alarm(int) {
  ssize_t ignored = ::write(STDERR_FILENO, g_message, g_message_length);
  (void)ignored;
  ::_exit(3);
}

}  // namespace

CaseAlarm::CaseAlarm(std::string_view name, std::chrono::seconds limit) {
  const int length = std::snprintf(g_message, sizeof g_message,
                                   "\npipepool_bench: %.*s still running after %lld s: hung, "
                                   "aborting\n",
                                   static_cast<int>(std::min<size_t>(name.size(), 400)),
                                   name.data(), static_cast<long long>(limit.count()));
  g_message_length = static_cast<size_t>(std::clamp(length, 0, int{sizeof g_message} - 1));
  struct sigaction action {};
  action.sa_handler = on_alarm;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGALRM, &action, nullptr);
  ::alarm(static_cast<unsigned>(limit.count()));
}

CaseAlarm::~CaseAlarm() {
  ::alarm(0);
}

}  // namespace pipepool::bench
