// tools/bpf/*.bt against a short real workload (pipepool_workload tasks N), when this machine
// allows BPF: root, bpftrace installed, tracefs mounted (the test mounts it if it can). Otherwise
// every test skips and prints why.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "testing/spawn.hpp"

namespace pipepool::tools {
namespace {

using namespace std::chrono_literals;
using testing::Spawned;

const std::string kWorkload = PIPEPOOL_WORKLOAD_PATH;
const std::string kBpfDir = PIPEPOOL_BPF_DIR;
constexpr int kTasks = 300;

std::string find_bpftrace() {
  for (const char* path : {"/usr/bin/bpftrace", "/usr/sbin/bpftrace", "/usr/local/bin/bpftrace"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

// Empty when BPF tracing works here, else why not.
std::string why_no_bpf() {
  if (::geteuid() != 0) return "not root: bpftrace needs CAP_BPF and CAP_PERFMON";
  if (find_bpftrace().empty()) return "bpftrace is not installed (Debian package bpftrace)";
  if (!std::filesystem::exists("/sys/kernel/tracing/events/syscalls") &&
      ::mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0 &&
      !std::filesystem::exists("/sys/kernel/debug/tracing/events/syscalls")) {
    return "tracefs is not mounted and cannot be (mount -t tracefs nodev /sys/kernel/tracing)";
  }
  Spawned probe({find_bpftrace(), "-e", "BEGIN { printf(\"bpf-ok\\n\"); exit(); }"});
  if (probe.finish(30s) != 0 || probe.out().find("bpf-ok") == std::string::npos) {
    return "bpftrace cannot load a program here: " + probe.err().substr(0, 300);
  }
  return "";
}

const std::string& bpf_skip_reason() {
  static const std::string reason = why_no_bpf();
  return reason;
}

// Runs `script args...` while the workload runs once, then ends it (SIGINT: it prints its maps).
// The syscall scripts get the workload's command name (15 characters) as their COMM filter.
std::string trace_workload(const std::string& script, const std::vector<std::string>& args = {}) {
  std::vector<std::string> argv{find_bpftrace(), kBpfDir + "/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  Spawned tracer(argv);
  EXPECT_TRUE(tracer.wait_for_text("Ctrl-C to end", 30s)) << script << ": " << tracer.err();
  Spawned workload({kWorkload, "tasks", std::to_string(kTasks)});
  EXPECT_EQ(workload.finish(30s), 0) << workload.err();
  EXPECT_NE(workload.out().find("done"), std::string::npos);
  std::this_thread::sleep_for(200ms);
  ::kill(tracer.pid(), SIGINT);
  EXPECT_EQ(tracer.finish(60s), 0) << tracer.err();  // printing its maps, on a busy machine
  return tracer.out();
}

// Values of the bpftrace map lines ("@name[key, ...]: value") that start with `prefix` and hold
// every one of `parts`. (Plain string search: std::regex trips a false -Wmaybe-uninitialized of
// GCC 12 under ASan.)
std::vector<uint64_t> map_values(const std::string& out, const std::string& prefix,
                                 const std::vector<std::string>& parts) {
  std::vector<uint64_t> values;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    bool all = true;
    for (const std::string& part : parts) all = all && line.find(part) != std::string::npos;
    const size_t colon = line.rfind("]: ");
    if (all && colon != std::string::npos) values.push_back(std::stoull(line.substr(colon + 3)));
  }
  return values;
}

// The count of one bucket ("[1K, 2K)   1502 |@@@|") of a histogram; 0 if absent.
uint64_t bucket_count(const std::string& histogram, const std::string& bucket) {
  std::istringstream lines(histogram);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(bucket, 0) == 0) return std::stoull(line.substr(bucket.size()));
  }
  return 0;
}

#define SKIP_WITHOUT_BPF()                                   \
  if (!bpf_skip_reason().empty()) {                          \
    std::printf("skipped: %s\n", bpf_skip_reason().c_str()); \
    GTEST_SKIP() << bpf_skip_reason();                       \
  }

TEST(Bpf, BlockedIoTimesBlockedPipeReadsPerProcess) {
  SKIP_WITHOUT_BPF();
  const std::string out = trace_workload("blocked_io.bt", {"pipepool_worklo"});
  // Workers block reading their task pipe between tasks.
  const auto micros = map_values(out, "@blocked_us[pipepool_worklo, ", {", pipe, read]: "});
  const auto calls = map_values(out, "@blocked_calls[pipepool_worklo, ", {", pipe, read]: "});
  EXPECT_FALSE(micros.empty()) << out;
  EXPECT_FALSE(calls.empty()) << out;
  for (uint64_t value : calls) EXPECT_GT(value, 0u) << out;
}

TEST(Bpf, PipeBytesCountsEveryTaskByte) {
  SKIP_WITHOUT_BPF();
  const std::string out = trace_workload("pipe_bytes.bt", {"pipepool_worklo"});
  uint64_t written = 0;
  for (uint64_t bytes : map_values(out, "@pipe_bytes[", {", pipepool_worklo, ", ", write]: "})) {
    written += bytes;
  }
  // Three pools; each writes every task (1000 bytes and a header) and its result.
  EXPECT_GE(written, 3u * 2u * kTasks * 1000u) << out;
}

TEST(Bpf, WriteSizesHistogramShowsTheFrameSize) {
  SKIP_WITHOUT_BPF();
  const std::string out = trace_workload("write_sizes.bt", {"pipepool_worklo"});
  const size_t at = out.find("@write_bytes[pipepool_worklo, pipe]:");
  ASSERT_NE(at, std::string::npos) << out;
  // A 1000-byte task or result and its header: one write of 1 KiB to 2 KiB.
  const std::string histogram = out.substr(at, out.find("\n\n", at) - at);
  EXPECT_GT(bucket_count(histogram, "[1K, 2K)"), 0u) << histogram;
}

// The probes of every process running the workload binary are traced: with ctest -j, another
// test's workload may add to the counts, so they are lower bounds.
uint64_t scalar(const std::string& out, const std::string& name) {
  const size_t at = out.find("\n" + name + ": ");
  return at == std::string::npos ? 0 : std::stoull(out.substr(at + name.size() + 3));
}

TEST(Bpf, TaskLatencyHasAHistogramPerStrategy) {
  SKIP_WITHOUT_BPF();
  const std::string out = trace_workload("task_latency.bt", {kWorkload});
  for (const std::string strategy : {"epoll", "batched", "unbatched"}) {
    EXPECT_NE(out.find("@latency_us[" + strategy + "]:"), std::string::npos) << strategy << out;
    EXPECT_GE(scalar(out, "@tasks[" + strategy + "]"), static_cast<uint64_t>(kTasks))
        << strategy << out;
  }
  EXPECT_NE(out.find("@run_us:"), std::string::npos) << out;
  EXPECT_GE(scalar(out, "@workers_spawned"), 6u) << out;     // 3 pools, 2 workers each
  EXPECT_GE(scalar(out, "@workers_lost[0, 0]"), 6u) << out;  // each retired when its pool closed
}

}  // namespace
}  // namespace pipepool::tools
