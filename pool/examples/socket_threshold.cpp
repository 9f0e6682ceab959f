// socket_threshold: the smallest payload that deadlocks Unbatched on real processes, per channel.
//
//   build/pool/socket_threshold            # every channel below, about a minute at most
//   build/pool/socket_threshold --quick    # fewer probes near the threshold (no confirmation)
//
// One worker, the static ShortestBacklog scheduler (as lambda_multiprocessing assigns), two
// back-to-back apply_async(echo, std::string(n)) calls: the parent blocks sending task 2 while the
// worker blocks sending result 1 once neither fits in what the channel lets one side have in
// flight. A probe is a fresh pool; it deadlocks if the two results are not back within the budget
// (the echo takes microseconds), and is then terminated. A binary search over n finds the
// smallest n that deadlocks; the answer is then confirmed with a longer budget on n - 1 (must
// complete) and n (must deadlock). n is the string's length; the task frame's payload is that
// plus the codec's few bytes (the function's address and the string's length).
//
// Bounded by alarm(): a run that takes over kWatchdogSeconds prints a line and exits 1.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pipepool/pipepool.hpp"

namespace {

using namespace std::chrono_literals;

constexpr unsigned kWatchdogSeconds = 240;

std::string echo(std::string s) {
  return s;
}

void on_alarm(int) {
  static const char message[] = "socket_threshold: watchdog: no answer within the time limit\n";
  (void)!::write(STDERR_FILENO, message, sizeof message - 1);
  ::_exit(1);
}

struct Channel {
  const char* name;
  pipepool::Options options;
};

bool deadlocks(const pipepool::Options& base, size_t n, std::chrono::milliseconds budget) {
  pipepool::Options options = base;
  options.processes = 1;
  options.strategy = pipepool::Strategy::Unbatched;
  options.scheduler = pipepool::SchedulerKind::ShortestBacklog;
  pipepool::Pool pool(options);
  auto a = pool.apply_async(echo, std::string(n, 'a'));
  auto b = pool.apply_async(echo, std::string(n, 'b'));
  const bool done = a.wait(budget) && b.wait(budget);
  pool.terminate();
  return !done;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && !quick) {
    std::fprintf(stderr, "usage: socket_threshold [--quick]\n");
    return 2;
  }
  ::signal(SIGALRM, on_alarm);
  ::alarm(kWatchdogSeconds);

  std::vector<Channel> channels;
  channels.push_back({"pipes, 64 KiB (enlarge_pipes = false), pipepool framing",
                      pipepool::Options{.enlarge_pipes = false}});
  channels.push_back({"socketpair, default SO_SNDBUF, pipepool framing",
                      pipepool::Options{.transport = pipepool::Transport::SocketPair}});
  channels.push_back({"socketpair, default SO_SNDBUF, Python framing (100 / 60 bytes overhead)",
                      pipepool::Options{.transport = pipepool::Transport::SocketPair,
                                        .framing = pipepool::Framing::Python,
                                        .python_task_overhead_bytes = 100,
                                        .python_result_overhead_bytes = 60}});
  for (const Channel& channel : channels) {
    size_t sndbuf = 0;
    {
      pipepool::Options probe = channel.options;
      probe.processes = 1;
      pipepool::Pool pool(probe);
      sndbuf = pool.socket_sndbuf_bytes();
      if (sndbuf == 0) sndbuf = pool.pipe_capacity_bytes();
    }
    // Completes at `low`, deadlocks at `high`.
    size_t low = 1, high = 4 * sndbuf;
    if (deadlocks(channel.options, low, 2000ms) || !deadlocks(channel.options, high, 2000ms)) {
      std::printf("%s: no threshold in [1, %zu]\n", channel.name, high);
      continue;
    }
    while (high - low > 1) {
      const size_t mid = low + (high - low) / 2;
      (deadlocks(channel.options, mid, quick ? 200ms : 400ms) ? high : low) = mid;
    }
    const char* confirmed = "unconfirmed (--quick)";
    if (!quick) {
      confirmed =
          !deadlocks(channel.options, low, 3000ms) && deadlocks(channel.options, high, 3000ms)
              ? "confirmed with a 3 s budget"
              : "NOT confirmed with a 3 s budget (the boundary moves between runs)";
    }
    std::printf("%s (buffer %zu bytes): completes at %zu, deadlocks from %zu; %s\n", channel.name,
                sndbuf, low, high, confirmed);
    std::fflush(stdout);
  }
  return 0;
}
