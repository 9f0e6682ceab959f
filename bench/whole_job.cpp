// bench/whole_job: whole jobs as a user runs them, one per process, for their wall time and (run
// by whole_jobs.py, which puts each in a memory cgroup of its own) their peak memory. Not a Google
// Benchmark: each job is a fresh process, so its memory is the job's own.
//
//   whole_job echo16 pool    Pool(2), default Options: map an identity function over 8 strings
//                            of 16 MiB, 4 times (Python's peers: whole_jobs.py runs the same job
//                            with bytes on multiprocessing.Pool(2) and ProcessPoolExecutor(2))
//   whole_job gib pool       Pool(1): apply an identity function to one 1 GiB string
//   whole_job gib raw        the same bytes with no pool: a forked child reads the whole 1 GiB
//                            message from an enlarged pipe and writes it back (bench/raw_echo.hpp)
//   whole_job JOB IMPL K     every size divided by K (run.sh --smoke: K = 64)
//
// Prints one JSON line: {"job": ..., "impl": ..., "seconds": ..., "bytes": ...}: seconds from
// before the pool (or the raw child) is made until every reply is back and checked, bytes the
// payload moved in + out. Exit status 0 on success, 1 on a wrong result, 2 for bad arguments.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "echo_load.hpp"
#include "pipepool/pipepool.hpp"
#include "raw_echo.hpp"

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

std::string identity(std::string s) {
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Distinct contents per item, so that a result in the wrong place is caught.
std::string item(uint64_t bytes, int index) {
  std::string s(bytes, static_cast<char>('a' + index));
  s.front() = s.back() = static_cast<char>('A' + index);
  return s;
}

int echo16_pool(uint64_t divisor) {
  constexpr int kItems = 8, kRounds = 4;
  const uint64_t size = 16 * kMiB / divisor;
  std::vector<std::string> items;
  for (int i = 0; i < kItems; ++i) items.push_back(item(size, i));
  const auto start = std::chrono::steady_clock::now();
  bool ok = true;
  {
    pipepool::Pool pool(2);
    for (int round = 0; round < kRounds; ++round) {
      std::vector<std::string> out = pool.map(identity, items);
      ok = ok && out.size() == items.size();
      for (size_t i = 0; ok && i < out.size(); ++i) ok = out[i] == items[i];
    }
  }
  const double seconds = seconds_since(start);
  std::printf("{\"job\": \"echo16\", \"impl\": \"pool\", \"seconds\": %.6f, \"bytes\": %llu}\n",
              seconds, static_cast<unsigned long long>(2ULL * kRounds * kItems * size));
  return ok ? 0 : 1;
}

int gib_pool(uint64_t divisor) {
  const std::string big = item(kGiB / divisor, 0);
  const auto start = std::chrono::steady_clock::now();
  bool ok;
  {
    pipepool::Pool pool(1);
    const std::string back = pool.apply(identity, big);
    ok = back == big;
  }
  const double seconds = seconds_since(start);
  std::printf("{\"job\": \"gib\", \"impl\": \"pool\", \"seconds\": %.6f, \"bytes\": %llu}\n",
              seconds, static_cast<unsigned long long>(2 * big.size()));
  return ok ? 0 : 1;
}

int gib_raw(uint64_t divisor) {
  const pipepool::bench::EchoLoad load{.shape = pipepool::bench::Shape::Symmetric,
                                       .size_bytes = kGiB / divisor,
                                       .enlarged_pipes = true,
                                       .workers = 1,
                                       .messages_per_worker = 1};
  const auto start = std::chrono::steady_clock::now();
  {
    pipepool::bench::RawEcho raw(load);
    raw.iterate();
  }
  const double seconds = seconds_since(start);
  std::printf("{\"job\": \"gib\", \"impl\": \"raw\", \"seconds\": %.6f, \"bytes\": %llu}\n",
              seconds, static_cast<unsigned long long>(load.bytes_per_iteration()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool args_ok = argc == 3 || argc == 4;
  const std::string_view job = args_ok ? argv[1] : "", impl = args_ok ? argv[2] : "";
  uint64_t divisor = 1;
  if (argc == 4) {
    char* end = nullptr;
    divisor = std::strtoull(argv[3], &end, 10);
    if (*argv[3] == '\0' || *end != '\0' || divisor == 0 || divisor > kMiB) {
      std::fprintf(stderr, "whole_job: the divisor must be an integer in [1, %llu], not '%s'\n",
                   static_cast<unsigned long long>(kMiB), argv[3]);
      return 2;
    }
  }
  try {
    if (job == "echo16" && impl == "pool") return echo16_pool(divisor);
    if (job == "gib" && impl == "pool") return gib_pool(divisor);
    if (job == "gib" && impl == "raw") return gib_raw(divisor);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "whole_job %s %s: %s\n", argv[1], argv[2], error.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: whole_job echo16 pool [DIVISOR] | whole_job gib pool|raw [DIVISOR]\n");
  return 2;
}
