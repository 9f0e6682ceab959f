// bench/imap_memory: peak memory of imap over a long input (issue 10.2). Not a Google Benchmark:
// each case runs in a fresh child process, so that its ru_maxrss is the case's own peak.
//
//   imap_memory [items]     (default 10,000,000)
//
// Prints one line per case: peak resident memory of the process running the pool (workers not
// included: each is a separate process), and the time to the first result and to the end.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <string>

#include "pipepool/pipepool.hpp"

namespace {

long long twice(long long x) {
  return 2 * x;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// In the child: imap with chunksize 1 over [0, items); `whole` reads every result, else the first.
int run_case(long long items, bool whole) {
  const auto start = std::chrono::steady_clock::now();
  double first = -1;
  long long seen = 0, sum = 0;
  {
    pipepool::Pool pool(2);
    for (long long y : pool.imap(twice, std::views::iota(0LL, items), 1)) {
      if (seen++ == 0) first = seconds_since(start);
      sum += y;
      if (!whole) break;
    }
  }
  const double total = seconds_since(start);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "imap chunksize 1 over %lld items, %-13s peak RSS %6.1f MiB, first result %.4f s, "
      "%lld results in %.2f s\n",
      items, whole ? "whole input:" : "first result:", usage.ru_maxrss / 1024.0, first, seen,
      total);
  return (whole ? sum == items * (items - 1) : seen == 1) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const long long items = argc > 1 ? std::atoll(argv[1]) : 10'000'000;
  int failures = 0;
  for (bool whole : {false, true}) {
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      const int code = run_case(items, whole);
      std::fflush(nullptr);
      _exit(code);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  return failures == 0 ? 0 : 1;
}
