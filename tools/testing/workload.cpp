// pipepool_workload: real pools for the doctor and bpftrace tests (tools/*_test.cpp). Tests only.
//   pipepool_workload stuck-unbatched   two 200 KB tasks on one Unbatched worker: deadlocks
//   pipepool_workload slow SECONDS      a healthy pool whose tasks sleep, for SECONDS
//   pipepool_workload tasks N           N tasks of 1000 bytes on each strategy, then exits 0
// Prints "ready" once its pool has its tasks, then does its job.
#include <pipepool/pipepool.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string identity(std::string text) {
  return text;
}

int nap(int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

int stuck_unbatched() {
  pipepool::Pool pool(pipepool::Options{.processes = 1,
                                        .strategy = pipepool::Strategy::Unbatched,
                                        .scheduler = pipepool::SchedulerKind::RoundRobin,
                                        .enlarge_pipes = false});
  const std::string big(200 * 1000, 'x');
  auto first = pool.apply_async(identity, big);
  auto second = pool.apply_async(identity, big);
  std::printf("ready\n");
  std::fflush(stdout);
  first.wait(std::chrono::hours(1));  // never: the doctor test kills this process
  second.wait(std::chrono::hours(1));
  return 0;
}

int slow(int seconds) {
  pipepool::Pool pool(pipepool::Options{.processes = 2});
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::printf("ready\n");
  std::fflush(stdout);
  while (std::chrono::steady_clock::now() < end) {
    (void)pool.map(nap, std::vector<int>(4, 200));
  }
  return 0;
}

int tasks(int count) {
  for (pipepool::Strategy strategy :
       {pipepool::Strategy::Epoll, pipepool::Strategy::Batched, pipepool::Strategy::Unbatched}) {
    pipepool::Pool pool(pipepool::Options{.processes = 2, .strategy = strategy});
    std::vector<std::string> inputs(static_cast<size_t>(count), std::string(1000, 'y'));
    if (pool.map(identity, inputs, 1).size() != inputs.size()) return 1;  // one task each
  }
  std::printf("ready\ndone\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "stuck-unbatched") == 0) return stuck_unbatched();
  if (argc >= 3 && std::strcmp(argv[1], "slow") == 0) return slow(std::atoi(argv[2]));
  if (argc >= 3 && std::strcmp(argv[1], "tasks") == 0) return tasks(std::atoi(argv[2]));
  std::fprintf(stderr, "usage: pipepool_workload stuck-unbatched | slow SECONDS | tasks N\n");
  return 2;
}
