// os/command_support.cpp: see command_support.hpp.
#include "os/command_support.hpp"

#include <unistd.h>

namespace pipepool::os {
namespace {

volatile sig_atomic_t* g_flag = nullptr;

extern "C" void store_signal(int signal) {
  if (g_flag != nullptr) *g_flag = signal;
}

}  // namespace

Result<void> catch_termination_signals(volatile sig_atomic_t* flag) {
  g_flag = flag;
  struct sigaction action {};
  action.sa_handler = store_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: interrupt blocking calls
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) {
    if (::sigaction(signal, &action, nullptr) != 0) return last_error("sigaction");
  }
  return Result<void>();
}

Error exec_command(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  return last_error("execvp");
}

}  // namespace pipepool::os
