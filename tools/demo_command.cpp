// `pipepool demo`: the toolkit's main job for now. A short tour of the pool, then the reason the
// toolkit exists: the same large-payload calls on each strategy, with a watchdog that turns a
// deadlock into a verdict instead of a hang.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "command.hpp"
#include "pipepool/pipepool.hpp"

namespace pipepool::tools {

std::string fuzz_demo_section();  // fuzz_command.cpp (report_parts.hpp)

namespace {

using Clock = std::chrono::steady_clock;

int square(int x) {
  return x * x;
}
int checked_sqrt(int x) {
  if (x < 0) throw std::domain_error("negative input " + std::to_string(x));
  int r = 0;
  while ((r + 1) * (r + 1) <= x) ++r;
  return r;
}
std::string echo(std::string s) {
  return s;
}

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void tour() {
  Pool pool(2);
  std::printf("Pool(2): %d workers, strategy %s, scheduler %s, pipes of %llu bytes\n",
              pool.processes(), std::string(pool.strategy_name()).c_str(),
              std::string(pool.scheduler_name()).c_str(),
              static_cast<unsigned long long>(pool.pipe_capacity_bytes()));
  auto squares = pool.map(square, std::vector<int>{1, 2, 3, 4, 5});
  std::printf("  map(square, 1..5)          =");
  for (int v : squares) std::printf(" %d", v);
  std::printf("\n");
  auto async = pool.apply_async(square, 12);
  std::printf("  apply_async(square, 12)    = %d\n", async.get());
  std::printf("  imap(square, 1..5, 2)      =");
  for (int v : pool.imap(square, std::vector<int>{1, 2, 3, 4, 5}, 2)) std::printf(" %d", v);
  std::printf("\n");
  try {
    pool.map(checked_sqrt, std::vector<int>{4, 9, -1, 16, -5});
  } catch (const std::domain_error& e) {
    std::printf(
        "  map(checked_sqrt, [4, 9, -1, 16, -5]) raised %s: %s (the lowest failing index)\n",
        dynamic_cast<const RemoteError&>(e).type_name().c_str(), e.what());
  }
}

struct DemoArgs {
  uint64_t payload_bytes = uint64_t{16} << 20;
  int64_t watchdog_s = 3;
};

std::string mib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, bytes % (1 << 20) == 0 ? "%.0f MiB" : "%.2f MiB",
                static_cast<double>(bytes) / (1 << 20));
  return text;
}

void large_payloads(const DemoArgs& args) {
  const size_t size = args.payload_bytes;
  std::printf(
      "\nTwo %s tasks with %s results on one worker (map, chunksize 1), default 64 KiB "
      "pipes,\nShortestBacklog scheduler as in lambda_multiprocessing; watchdog %lld s:\n",
      mib(size).c_str(), mib(size).c_str(), static_cast<long long>(args.watchdog_s));
  for (Strategy strategy :
       {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched, Strategy::ZeroCopy}) {
    Pool pool(Options{.processes = 1,
                      .strategy = strategy,
                      .scheduler = SchedulerKind::ShortestBacklog,
                      .enlarge_pipes = false});
    auto start = Clock::now();
    auto result = pool.map_async(echo, std::vector<std::string>(2, std::string(size, 'x')), 1);
    if (result.wait(std::chrono::seconds(args.watchdog_s))) {
      std::printf("  %-10s completed in %.3f s\n", std::string(to_string(strategy)).c_str(),
                  since(start));
    } else {
      pool.terminate();
      std::printf(
          "  %-10s DEADLOCK: no result after %lld s (parent blocked writing task 2, worker "
          "blocked writing result 1); terminated cleanly\n",
          std::string(to_string(strategy)).c_str(), static_cast<long long>(args.watchdog_s));
    }
  }
}

Run setup_demo(CLI::App& command) {
  auto args = std::make_shared<DemoArgs>();
  command
      .add_option("--payload", args->payload_bytes,
                  "bytes of each task and of each result (64K, 16M; at least 64 KiB + 1 so "
                  "that one frame overfills a default pipe)")
      ->capture_default_str()
      ->transform(size_in((uint64_t{64} << 10) + 1, uint64_t{256} << 20));
  add_number<int64_t>(command, "--watchdog-s", args->watchdog_s,
                      "seconds without a result after which a strategy is declared deadlocked", 1,
                      600);
  return [args] {
    tour();
    large_payloads(*args);
    std::fputs(fuzz_demo_section().c_str(), stdout);
    std::printf(
        "\nNext: `pipepool sim` explores such scenarios exhaustively over a byte-exact pipe "
        "model;\n`pipepool sim pipe fill:4097` shows how many 4097-byte writes fit in a pipe.\n");
    return 0;
  };
}

[[maybe_unused]] const bool registered = register_command(
    "demo", "a tour of the pool, then the large-payload deadlock on each strategy", setup_demo);

}  // namespace

}  // namespace pipepool::tools
