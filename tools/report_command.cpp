// `pipepool report`: the toolkit's main job in one run (under three minutes on two cores).
//
//   1. deadlock   the large-payload deadlock on real processes: a forked application process
//                 builds Pool(1) (Unbatched, 64 KiB pipes, ShortestBacklog) and submits two
//                 apply_async larger than the pipe; once it stops making progress the doctor
//                 (tools/doctor/) diagnoses it and its descendants (the cycle, who blocks where,
//                 pipe fill); then the application calls terminate() and no process may be left.
//                 The same workload on Epoll must complete.
//   2. simulator  fuzz::check on Epoll, Batched and Unbatched (fuzz_demo_rows, as `demo` shows it)
//                 and sim::find_threshold for Unbatched at 16 pages.
//   3. benchmark  sequential echo of 64 KiB and 1 MiB through Pool(1) per strategy (pipes
//                 enlarged) against a raw parent/child pipe echo, interleaved round by round.
//   4. tiers      `pipepool tiers --workload spin` over 128, 512 and 1769 MB (tier_sweep); skipped
//                 when not root or the cgroups cannot be written.
//   5. summary    a few lines a person reads in a minute.
//
// The application runs in its own process because the doctor never inspects the process that
// runs it (its own thread is running, so it would always look live).
//
// Exit status: 0 the report was produced (parts may be skipped), 2 usage, 3 a part errored.
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "command.hpp"
#include "doctor.hpp"
#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os/process.hpp"
#include "pipepool/pipepool.hpp"
#include "proc_reader.hpp"
#include "report_parts.hpp"
#include "threshold.hpp"

namespace pipepool::tools {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

struct ReportArgs {
  bool json = false;
  std::string out;
  bool quick = false;
  bool quiet = false;
};

std::string echo(std::string s) {
  return s;
}

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string format(const char* pattern, double a, double b = 0, double c = 0) {
  char text[256];
  std::snprintf(text, sizeof text, pattern, a, b, c);
  return text;
}

Json skipped(const std::string& reason) {
  return Json{{"status", "skipped"}, {"reason", reason}};
}

// ---- 1. the deadlock on real processes ---------------------------------------------------------

sem_t g_stop;  // posted by SIGUSR1 in the application process

void post_stop(int) {
  sem_post(&g_stop);  // async-signal-safe
}

// The application: two large apply_async on one Unbatched worker, then it waits (sem_wait, a
// futex: the doctor counts it as waiting for its own I/O thread) until told to terminate().
// Exit 0: terminated and both results failed; 4: a result came (no deadlock); 5: setup failed.
int application(size_t payload_bytes, int ready_fd) {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, nullptr);  // the pool's threads inherit the block
  if (sem_init(&g_stop, 0, 0) != 0) return 5;
  struct sigaction action {};
  action.sa_handler = post_stop;
  if (sigaction(SIGUSR1, &action, nullptr) != 0) return 5;
  Pool pool(Options{.processes = 1,
                    .strategy = Strategy::Unbatched,
                    .scheduler = SchedulerKind::ShortestBacklog,
                    .enlarge_pipes = false});
  const std::string payload(payload_bytes, 'x');
  auto first = pool.apply_async(echo, payload);
  auto second = pool.apply_async(echo, payload);
  const std::byte ready{1};
  (void)os::write_all(ready_fd, std::span(&ready, 1));
  pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);  // only this thread takes SIGUSR1
  while (sem_wait(&g_stop) != 0 && errno == EINTR) {
  }
  const bool completed = first.ready() && second.ready();
  pool.terminate();
  return completed ? 4 : 0;
}

std::string pids_text(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t pid : pids) out += (out.empty() ? "" : " -> ") + std::to_string(pid);
  return out;
}

// What each process of the diagnosis is doing, one object each.
Json processes_json(const doctor::Diagnosis& d, pid_t application_pid) {
  Json out = Json::array();
  for (const doctor::ProcessReport& p : d.processes) {
    Json threads = Json::array();
    for (const doctor::ThreadReport& t : p.threads) {
      Json thread{{"tid", t.tid},
                  {"comm", t.comm},
                  {"syscall", t.syscall},
                  {"wait", doctor::to_string(t.wait)}};
      if (t.fd >= 0) thread["fd"] = t.fd;
      if (!t.object.empty()) thread["object"] = t.object;
      if (t.bytes_requested) thread["bytes_requested"] = *t.bytes_requested;
      if (!t.waits_for.empty()) thread["waits_for"] = t.waits_for;
      threads.push_back(thread);
    }
    out.push_back(Json{{"pid", p.pid},
                       {"ppid", p.ppid},
                       {"comm", p.comm},
                       {"role", p.pid == application_pid    ? "application (the pool's parent)"
                                : p.ppid == application_pid ? "fork server or worker"
                                                            : "descendant"},
                       {"blocked", p.blocked},
                       {"waits_for", p.waits_for},
                       {"threads", threads}});
  }
  return out;
}

Json pipes_json(const doctor::Diagnosis& d) {
  Json out = Json::array();
  for (const auto& [name, object] : d.objects) {
    if (!object.is_pipe) continue;
    Json pipe{{"pipe", name}, {"readers", object.readers}, {"writers", object.writers}};
    if (object.queued_bytes) pipe["queued_bytes"] = *object.queued_bytes;
    if (object.capacity_bytes) pipe["capacity_bytes"] = *object.capacity_bytes;
    out.push_back(pipe);
  }
  return out;
}

// The same two calls on Epoll, in this process, with a watchdog.
Json epoll_completes(size_t payload_bytes, double watchdog_s) {
  Pool pool(Options{.processes = 1,
                    .strategy = Strategy::Epoll,
                    .scheduler = SchedulerKind::ShortestBacklog,
                    .enlarge_pipes = false});
  const std::string payload(payload_bytes, 'x');
  const Clock::time_point start = Clock::now();
  auto first = pool.apply_async(echo, payload);
  auto second = pool.apply_async(echo, payload);
  const auto limit = std::chrono::milliseconds(static_cast<int64_t>(watchdog_s * 1000));
  const bool completed = first.wait(limit) && second.wait(limit) &&
                         first.get().size() == payload_bytes &&
                         second.get().size() == payload_bytes;
  const double seconds = since(start);
  if (!completed) pool.terminate();
  return Json{{"completed", completed}, {"seconds", seconds}};
}

// Waits for the application to exit (SIGKILL after `limit_s`).
std::optional<os::ExitStatus> reap(pid_t pid, double limit_s) {
  const Clock::time_point start = Clock::now();
  while (since(start) < limit_s) {
    auto waited = os::try_wait_pid(pid);
    if (!waited.ok()) return std::nullopt;
    if (waited.value()) return *waited.value();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  (void)os::send_signal(pid, SIGKILL);
  auto status = os::wait_pid(pid);
  return status.ok() ? std::optional(status.value()) : std::nullopt;
}

// The processes of `pids` that still exist after `limit_s` (zombies count: nobody reaped them).
std::vector<pid_t> left_behind(const std::vector<pid_t>& pids, double limit_s) {
  const Clock::time_point start = Clock::now();
  std::vector<pid_t> left;
  do {
    left.clear();
    for (pid_t pid : pids) {
      if (proc::read_process_stat(pid)) left.push_back(pid);
    }
    if (left.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (since(start) < limit_s);
  return left;
}

Json deadlock_part(const ReportArgs& args, Progress& progress) {
  const size_t payload_bytes = args.quick ? (size_t{256} << 10) : (size_t{1} << 20);
  const double stall_limit_s = 10;
  Json part{{"payload_bytes", payload_bytes},
            {"design", "Pool(1), Unbatched, ShortestBacklog, 64 KiB pipes, two apply_async"}};
  auto ready_pipe = os::make_pipe();
  if (!ready_pipe.ok()) return Json{{"status", "error"}, {"error", "pipe2 failed"}};
  auto& [ready_read, ready_write] = ready_pipe.value();
  const int ready_fd = ready_write.get();
  std::fflush(stdout);
  os::Result<pid_t> forked = os::fork_child([&] { return application(payload_bytes, ready_fd); });
  if (!forked.ok()) {
    return Json{{"status", "error"}, {"error", "fork: " + forked.failure().message()}};
  }
  const pid_t application_pid = forked.value();
  ready_write.reset();
  part["application_pid"] = application_pid;
  progress.show(-1, "deadlock: application " + std::to_string(application_pid) + " submitting");
  pollfd fd{ready_read.get(), POLLIN, 0};
  (void)os::poll_fds(std::span(&fd, 1), 20000);
  // Progress stops within milliseconds; diagnose() itself confirms it (a second look 200 ms
  // later, no CPU used meanwhile).
  const Clock::time_point start = Clock::now();
  doctor::Diagnosis diagnosis;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    progress.show(-1, "deadlock: doctor on " + std::to_string(application_pid));
    doctor::Options options;
    options.pids = {application_pid};
    diagnosis = doctor::diagnose(options);
  } while (diagnosis.verdict != doctor::Verdict::Deadlock && since(start) < stall_limit_s);
  part["diagnosed_after_s"] = since(start);
  std::vector<pid_t> tree;
  for (const doctor::ProcessReport& p : diagnosis.processes) {
    if (p.in_tree) tree.push_back(p.pid);
  }
  (void)os::send_signal(application_pid, SIGUSR1);  // terminate()
  const std::optional<os::ExitStatus> exit = reap(application_pid, 10);
  const std::vector<pid_t> left = left_behind(tree, 3);
  part["verdict"] = doctor::to_string(diagnosis.verdict);
  part["cycle"] = diagnosis.cycle;
  part["deadlocked"] = diagnosis.deadlocked;
  part["explanation"] = doctor::explain_cycle(diagnosis);
  part["processes"] = processes_json(diagnosis, application_pid);
  part["pipes"] = pipes_json(diagnosis);
  part["doctor_text"] = doctor::render_text(diagnosis);
  part["terminated"] = exit.has_value() && !exit->killed() && exit->code == 0;
  part["application_exit"] = exit ? exit->describe() : "unknown";
  part["processes_left"] = left;
  progress.show(-1, "deadlock: the same calls on Epoll");
  part["epoll"] = epoll_completes(payload_bytes, 10);
  std::string error;
  if (diagnosis.verdict != doctor::Verdict::Deadlock) {
    error = "the doctor found no deadlock (" + std::string(doctor::to_string(diagnosis.verdict)) +
            ") within " + format("%.0f s", stall_limit_s);
  } else if (!part["terminated"].get<bool>()) {
    error = "the application did not end by terminate(): " +
            part["application_exit"].get<std::string>();
  } else if (!left.empty()) {
    error = "processes left behind: " + pids_text(left);
  } else if (!part["epoll"]["completed"].get<bool>()) {
    error = "the same workload did not complete on Epoll";
  }
  part["status"] = error.empty() ? "ok" : "error";
  if (!error.empty()) part["error"] = error;
  return part;
}

// ---- 2. the simulator --------------------------------------------------------------------------

Json fuzz_row_json(const FuzzDemoRow& row) {
  const fuzz::CheckResult& r = row.result;
  Json out{{"strategy", to_string(row.strategy)},
           {"verdict", r.holds ? "holds" : "fails"},
           {"scenarios_tried", r.scenarios_tried},
           {"schedules", r.schedules}};
  if (!r.holds) {
    out["status"] = sim::to_string(r.status);
    Json calls = Json::array();
    for (const auto& call : r.counterexample.calls) calls.push_back(sim::describe_call(call));
    out["counterexample"] = calls;
    out["replay"] = fuzz::sim_run_command(r.counterexample, r.replay);
    if (r.run && r.run->deadlock) out["deadlock"] = r.run->deadlock->summary;
  }
  if (!r.error.empty()) out["error"] = r.error;
  return out;
}

Json simulator_part(const ReportArgs& args, Progress& progress) {
  const uint32_t runs = args.quick ? 20 : 100;
  progress.show(-1, "simulator: fuzz::check on epoll, batched, unbatched");
  const std::vector<FuzzDemoRow> rows = fuzz_demo_rows(runs);
  Json part{{"fuzz_runs", runs}, {"fuzz", Json::array()}};
  std::string error;
  for (const FuzzDemoRow& row : rows) {
    part["fuzz"].push_back(fuzz_row_json(row));
    if (!row.result.error.empty()) error = row.result.error;
  }
  part["fuzz_text"] = format_fuzz_demo_rows(rows);
  sim::ThresholdOptions options;
  options.strategy = Strategy::Unbatched;
  options.pipe_pages = 16;
  if (args.quick) {  // a window around the answer instead of 0 .. twice the capacity
    options.min_bytes = 61440;
    options.max_bytes = 69632;
  }
  options.progress = [&](const sim::ThresholdProgress& p) {
    progress.show(-1, std::string("simulator: threshold, ") + p.dimension + " " +
                          std::to_string(p.size) + " B");
  };
  const sim::ThresholdResult t = sim::find_threshold(options);
  auto dimension = [](const sim::ThresholdDimension& d) {
    return Json{{"smallest_bytes", d.smallest ? Json(*d.smallest) : Json(nullptr)},
                {"other_bytes", d.other_bytes},
                {"monotone", d.monotone},
                {"complete", d.complete},
                {"sizes_explored", d.sizes_explored},
                {"schedules", d.schedules}};
  };
  part["threshold"] = Json{{"strategy", "unbatched"},
                           {"pipe_pages", 16},
                           {"capacity_bytes", t.capacity_bytes},
                           {"searched_bytes", {t.min_bytes, t.max_bytes}},
                           {"task", dimension(t.task)},
                           {"result", dimension(t.result)},
                           {"corner_deadlocks", t.corner_deadlocks}};
  part["threshold_text"] = sim::format_threshold_text(options, t);
  if (!t.error.empty()) error = t.error;
  part["status"] = error.empty() ? "ok" : "error";
  if (!error.empty()) part["error"] = error;
  return part;
}

// ---- 3. the benchmark --------------------------------------------------------------------------

// The raw baseline: a child that reads a length and that many bytes, and writes them back.
int raw_echo_child(int in_fd, int out_fd) {
  std::vector<std::byte> buffer;
  for (;;) {
    uint64_t size = 0;
    auto got = os::read_exact(in_fd, std::as_writable_bytes(std::span(&size, 1)));
    if (!got.ok() || got.value() != sizeof size || size == 0) return 0;
    buffer.resize(size);
    got = os::read_exact(in_fd, buffer);
    if (!got.ok() || got.value() != size) return 1;
    if (!os::write_all(out_fd, buffer).ok()) return 1;
  }
}

class RawEcho {
 public:
  explicit RawEcho(size_t capacity_bytes) {
    auto to = os::make_pipe();
    auto from = os::make_pipe();
    if (!to.ok() || !from.ok()) return;
    auto& [to_read, to_write] = to.value();
    auto& [from_read, from_write] = from.value();
    for (int fd : {to_read.get(), from_write.get()})
      (void)os::set_pipe_capacity(fd, capacity_bytes);
    const int in = to_read.get(), out = from_write.get();
    auto forked = os::fork_child([&] {
      to_write.reset();  // the child holds only its own ends: EOF when the parent closes
      from_read.reset();
      return raw_echo_child(in, out);
    });
    if (!forked.ok()) return;
    pid_ = forked.value();
    write_ = std::move(to_write);
    read_ = std::move(from_read);
  }
  ~RawEcho() {
    if (pid_ <= 0) return;
    write_.reset();  // end of input: the child exits
    (void)os::wait_pid(pid_);
  }
  RawEcho(const RawEcho&) = delete;
  RawEcho& operator=(const RawEcho&) = delete;
  bool ok() const { return pid_ > 0; }
  bool round_trip(const std::string& payload, std::vector<std::byte>& back) {
    const uint64_t size = payload.size();
    back.resize(size);
    return os::write_all(write_.get(), std::as_bytes(std::span(&size, 1))).ok() &&
           os::write_all(write_.get(), std::as_bytes(std::span(payload))).ok() &&
           os::read_exact(read_.get(), back).ok();
  }

 private:
  pid_t pid_ = -1;
  os::Fd write_, read_;
};

struct Contender {
  std::string name;
  std::unique_ptr<Pool> pool;  // none: the raw pipe
  double seconds = 0;
  uint64_t bytes = 0;
  std::string error;
};

Json benchmark_part(const ReportArgs& args, Progress& progress) {
  const std::vector<size_t> sizes = {size_t{64} << 10, size_t{1} << 20};
  const int rounds = args.quick ? 2 : 4;
  const double slice_s = args.quick ? 0.05 : 0.25;
  // The raw child first, so that it holds no end of the pools' pipes.
  RawEcho raw(os::pipe_max_size());
  if (!raw.ok()) return Json{{"status", "error"}, {"error", "cannot start the raw pipe child"}};
  std::vector<Contender> contenders;
  contenders.emplace_back();
  contenders.back().name = "raw pipe";
  for (Strategy s : {Strategy::Epoll, Strategy::Batched, Strategy::Unbatched}) {
    Contender c;
    c.name = std::string(to_string(s));
    c.pool = std::make_unique<Pool>(Options{.processes = 1, .strategy = s});
    contenders.push_back(std::move(c));
  }
  const size_t capacity = contenders[1].pool->pipe_capacity_bytes();
  Json part{
      {"method", "sequential echo (one call in flight) through Pool(1), pipes enlarged to " +
                     std::to_string(capacity) +
                     " bytes, against a raw parent/child pipe echo of the same capacity; rounds "
                     "interleaved (raw, epoll, batched, unbatched, raw, ...)"},
      {"rounds", rounds},
      {"slice_s", slice_s},
      {"pipe_capacity_bytes", capacity},
      {"rows", Json::array()}};
  std::string error;
  std::vector<std::byte> back;
  for (size_t size : sizes) {
    const std::string payload(size, 'x');
    for (Contender& c : contenders) c.seconds = 0, c.bytes = 0;
    for (int round = 0; round < rounds; ++round) {
      for (Contender& c : contenders) {
        if (!c.error.empty()) continue;
        progress.show(-1, "benchmark: " + c.name + " " + std::to_string(size) + " B, round " +
                              std::to_string(round + 1));
        const Clock::time_point start = Clock::now();
        for (int n = 0; n < 2 || since(start) < slice_s; ++n) {
          if (!c.pool) {
            if (!raw.round_trip(payload, back)) c.error = "the raw echo failed";
          } else {
            auto r = c.pool->apply_async(echo, payload);
            if (!r.wait(std::chrono::seconds(20))) {
              c.error = "no result within 20 s";
              c.pool->terminate();
            } else if (r.get().size() != size) {
              c.error = "a wrong result";
            }
          }
          if (!c.error.empty()) break;
          c.bytes += size;
        }
        c.seconds += since(start);
      }
    }
    const double raw_rate = contenders[0].bytes / std::max(contenders[0].seconds, 1e-9);
    for (Contender& c : contenders) {
      const double rate = c.bytes / std::max(c.seconds, 1e-9);
      Json row{{"payload_bytes", size},
               {"strategy", c.name},
               {"mib_per_s", rate / (1 << 20)},
               {"fraction_of_raw", rate / raw_rate},
               {"round_trips", c.bytes / size}};
      if (!c.error.empty()) {
        row["error"] = c.error;
        error = c.name + ": " + c.error;
      }
      part["rows"].push_back(row);
    }
  }
  part["status"] = error.empty() ? "ok" : "error";
  if (!error.empty()) part["error"] = error;
  return part;
}

// ---- 4. the tier sweep -------------------------------------------------------------------------

Json tiers_part(const ReportArgs& args, Progress& progress) {
  if (::geteuid() != 0) return skipped("not root: the tiers need cgroups that only root can write");
  const std::vector<uint64_t> tiers =
      args.quick ? std::vector<uint64_t>{128, 1769} : std::vector<uint64_t>{128, 512, 1769};
  const double seconds = args.quick ? 0.5 : 1.0;
  progress.show(-1, "tiers: spin under emulated Lambda tiers");
  Json whole;
  std::string failure;
  const int status = tier_sweep(tiers, seconds, args.quiet, whole, failure);
  if (status == kExitEnvironment) return skipped(failure);
  if (status != 0) return Json{{"status", "error"}, {"error", failure}};
  Json part{{"workload", "spin"},
            {"tiers_mb", tiers},
            {"seconds_per_tier", seconds},
            {"cgroup_version", whole["cgroup_version"]},
            {"rows", Json::array()}};
  for (const Json& run : whole["runs"]) {
    part["rows"].push_back(Json{{"tier_mb", run["tier_mb"]},
                                {"cpus", run["cpus"]},
                                {"quota_us", run["quota_us"]},
                                {"throttled_fraction", run["throttled_fraction"]},
                                {"published_throttled_fraction",
                                 run.value("published_throttled_fraction", Json(nullptr))}});
  }
  if (!args.out.empty()) {
    const std::string png = args.out + "/tiers.png";
    const std::string failure_plot = plot_tiers(whole, png);
    if (failure_plot.empty()) {
      part["plot"] = png;
    } else {
      part["plot_error"] = failure_plot;
    }
  }
  part["status"] = "ok";
  return part;
}

// ---- rendering ---------------------------------------------------------------------------------

std::string status_line(const Json& part) {
  const std::string status = part["status"].get<std::string>();
  if (status == "skipped") return "SKIPPED: " + part["reason"].get<std::string>() + "\n";
  if (status == "error") return "ERROR: " + part.value("error", std::string("?")) + "\n";
  return "";
}

std::string deadlock_text(const Json& d) {
  std::string out = "1. The large-payload deadlock on real processes\n" + status_line(d);
  if (!d.contains("verdict")) return out;
  out += "  " + d["design"].get<std::string>() + ", payloads of " +
         std::to_string(d["payload_bytes"].get<uint64_t>()) + " bytes (application pid " +
         std::to_string(d["application_pid"].get<pid_t>()) + ")\n";
  out += "  doctor: " + d["verdict"].get<std::string>() +
         format(" after %.1f s", d["diagnosed_after_s"].get<double>());
  if (!d["cycle"].empty()) out += ", cycle " + pids_text(d["cycle"].get<std::vector<pid_t>>());
  out += "\n";
  std::string text = d["doctor_text"].get<std::string>();
  for (size_t at = 0; at < text.size();) {  // indented
    const size_t end = std::min(text.find('\n', at), text.size());
    out += "    " + text.substr(at, end - at) + "\n";
    at = end + 1;
  }
  out += "  terminate(): application " + d["application_exit"].get<std::string>() +
         ", processes left: " +
         (d["processes_left"].empty() ? std::string("none")
                                      : pids_text(d["processes_left"].get<std::vector<pid_t>>())) +
         "\n";
  const Json& e = d["epoll"];
  out += e["completed"].get<bool>()
             ? format("  Epoll, same calls: completed in %.3f s\n", e["seconds"].get<double>())
             : "  Epoll, same calls: DID NOT COMPLETE\n";
  return out;
}

std::string simulator_text(const Json& s) {
  std::string out =
      "\n2. The simulator: minimal counterexamples and certificates\n" + status_line(s);
  if (!s.contains("fuzz")) return out;
  out += "  fuzz::check, " + std::to_string(s["fuzz_runs"].get<uint32_t>()) +
         " random workloads per strategy (1 worker, 64 KiB pipes, ShortestBacklog):\n";
  out += s["fuzz_text"].get<std::string>();
  out += "  sim::find_threshold, Unbatched, 16 pages:\n";
  std::string text = s["threshold_text"].get<std::string>();
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find('\n', at), text.size());
    out += "    " + text.substr(at, end - at) + "\n";
    at = end + 1;
  }
  return out;
}

std::string benchmark_text(const Json& b) {
  std::string out = "\n3. Benchmark: echo through Pool(1) against the raw pipe\n" + status_line(b);
  if (!b.contains("rows")) return out;
  out += "  " + b["method"].get<std::string>() + "\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-10s %10s %10s %9s %8s\n", "strategy", "payload", "MiB/s",
                "of raw", "calls");
  out += line;
  for (const Json& row : b["rows"]) {
    std::snprintf(line, sizeof line, "  %-10s %10llu %10.1f %8.0f%% %8llu%s\n",
                  row["strategy"].get<std::string>().c_str(),
                  static_cast<unsigned long long>(row["payload_bytes"].get<uint64_t>()),
                  row["mib_per_s"].get<double>(), 100 * row["fraction_of_raw"].get<double>(),
                  static_cast<unsigned long long>(row["round_trips"].get<uint64_t>()),
                  row.contains("error") ? ("  " + row["error"].get<std::string>()).c_str() : "");
    out += line;
  }
  return out;
}

std::string tiers_text(const Json& t) {
  std::string out = "\n4. Tier sweep: a spin loop under emulated Lambda tiers\n" + status_line(t);
  if (!t.contains("rows")) return out;
  char line[160];
  std::snprintf(line, sizeof line, "  %7s %5s %12s %10s %10s\n", "tier MB", "cpus", "quota us",
                "throttled", "published");
  out += line;
  for (const Json& row : t["rows"]) {
    const Json& published = row["published_throttled_fraction"];
    std::snprintf(
        line, sizeof line, "  %7llu %5d %12s %9.1f%% %10s\n",
        static_cast<unsigned long long>(row["tier_mb"].get<uint64_t>()), row["cpus"].get<int>(),
        (std::to_string(row["quota_us"].get<uint64_t>()) + "/20000").c_str(),
        100 * row["throttled_fraction"].get<double>(),
        published.is_null() ? "-" : format("%.1f%%", 100 * published.get<double>()).c_str());
    out += line;
  }
  if (t.contains("plot")) out += "  plot: " + t["plot"].get<std::string>() + "\n";
  return out;
}

// "application in writev(2) of 1048640 bytes into a pipe holding 61504 of 65536, ...": what the
// doctor saw each blocked process of the cycle do.
std::string blocked_text(const Json& d) {
  std::map<std::string, std::string> fill;
  for (const Json& pipe : d["pipes"]) {
    if (pipe.contains("queued_bytes") && pipe.contains("capacity_bytes")) {
      fill[pipe["pipe"].get<std::string>()] =
          std::to_string(pipe["queued_bytes"].get<uint64_t>()) + " of " +
          std::to_string(pipe["capacity_bytes"].get<uint64_t>());
    }
  }
  std::string out;
  for (const Json& process : d["processes"]) {
    for (const Json& thread : process["threads"]) {
      const std::string wait = thread["wait"].get<std::string>();
      if (wait != "write" && wait != "read") continue;
      const std::string object = thread.value("object", std::string());
      out += std::string(out.empty() ? "" : "; ") +
             (process["pid"] == d["application_pid"] ? "parent " : "worker ") +
             std::to_string(process["pid"].get<pid_t>()) + " in " +
             thread["syscall"].get<std::string>() + "(2) of " +
             std::to_string(thread.value("bytes_requested", uint64_t{0})) + " bytes into a pipe " +
             (fill.count(object) ? "holding " + fill[object] + " bytes" : object);
    }
  }
  return out;
}

std::vector<std::string> summary_lines(const Json& report) {
  std::vector<std::string> lines;
  const Json& d = report["deadlock"];
  if (d["status"] == "ok") {
    lines.push_back("Deadlock: Unbatched with two " +
                    std::to_string(d["payload_bytes"].get<uint64_t>()) +
                    "-byte calls on one worker hangs for real; the doctor found the cycle " +
                    pids_text(d["cycle"].get<std::vector<pid_t>>()) + " (" + blocked_text(d) +
                    "); terminate() left no process; Epoll completed the same calls.");
  } else {
    lines.push_back("Deadlock part: " + d["status"].get<std::string>() + ": " +
                    d.value("error", d.value("reason", std::string())));
  }
  const Json& s = report["simulator"];
  if (s.contains("fuzz")) {
    std::string fuzz = "Simulator: ";
    for (const Json& row : s["fuzz"]) {
      fuzz += row["strategy"].get<std::string>() + " " +
              (row["verdict"] == "holds"
                   ? "holds over " + std::to_string(row["scenarios_tried"].get<uint64_t>())
                   : "deadlocks (shrunk: " + row["counterexample"].dump() + ")") +
              "; ";
    }
    lines.push_back(fuzz.substr(0, fuzz.size() - 2) + ".");
    const Json& t = s["threshold"];
    auto smallest = [](const Json& dim) {
      return dim["smallest_bytes"].is_null()
                 ? std::string("none")
                 : std::to_string(dim["smallest_bytes"].get<uint64_t>());
    };
    lines.push_back(
        "Threshold (Unbatched, 64 KiB pipe): the smallest task that deadlocks is " +
        smallest(t["task"]) + " bytes, the smallest result " + smallest(t["result"]) +
        " bytes, with the other frame larger than the pipe: not \"> 90 kB, IIRC\" but the "
        "first frame (payload + 32-byte header) that no longer fits in 65,536 bytes.");
  }
  const Json& b = report["benchmark"];
  if (b.contains("rows")) {
    std::string bench = "Speed (sequential echo, MiB/s, share of the raw pipe):";
    for (const Json& row : b["rows"]) {
      if (row["strategy"] == "raw pipe") {
        bench += format(" | %.0f KiB: raw %.0f", row["payload_bytes"].get<double>() / 1024,
                        row["mib_per_s"].get<double>());
      } else {
        bench += ", " + row["strategy"].get<std::string>() +
                 format(" %.0f (%.0f%%)", row["mib_per_s"].get<double>(),
                        100 * row["fraction_of_raw"].get<double>());
      }
    }
    lines.push_back(bench + ".");
  }
  const Json& t = report["tiers"];
  if (t["status"] == "ok") {
    std::string tiers = "Tiers (spin): throttled";
    for (const Json& row : t["rows"]) {
      tiers += format(" %.0f MB %.1f%%", row["tier_mb"].get<double>(),
                      100 * row["throttled_fraction"].get<double>());
      if (!row["published_throttled_fraction"].is_null()) {
        tiers +=
            format(" (Lambda %.1f%%)", 100 * row["published_throttled_fraction"].get<double>());
      }
      tiers += ",";
    }
    lines.push_back(tiers.substr(0, tiers.size() - 1) + ".");
  }
  std::string skipped_parts, errored_parts;
  for (const auto& [name, part] : report.items()) {
    if (!part.is_object() || !part.contains("status")) continue;
    if (part["status"] == "skipped")
      skipped_parts += " " + name + " (" + part["reason"].get<std::string>() + ")";
    if (part["status"] == "error")
      errored_parts += " " + name + " (" + part.value("error", std::string()) + ")";
  }
  lines.push_back("Skipped:" + (skipped_parts.empty() ? std::string(" nothing") : skipped_parts) +
                  ". Errors:" + (errored_parts.empty() ? std::string(" none") : errored_parts) +
                  ".");
  return lines;
}

int run_report(const ReportArgs& args) {
  if (!args.out.empty() && ::mkdir(args.out.c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "pipepool report: cannot create %s: %s\n", args.out.c_str(),
                 std::strerror(errno));
    return kExitEnvironment;
  }
  const Clock::time_point start = Clock::now();
  Progress progress(args.quiet, std::chrono::seconds(5));
  Json report{{"quick", args.quick}};
  report["deadlock"] = deadlock_part(args, progress);
  report["simulator"] = simulator_part(args, progress);
  report["benchmark"] = benchmark_part(args, progress);
  report["tiers"] = tiers_part(args, progress);
  progress.clear();
  report["summary"] = summary_lines(report);
  report["seconds"] = since(start);
  std::string text = "pipepool report" + std::string(args.quick ? " --quick" : "") + "\n\n" +
                     deadlock_text(report["deadlock"]) + simulator_text(report["simulator"]) +
                     benchmark_text(report["benchmark"]) + tiers_text(report["tiers"]) +
                     "\nSummary\n";
  for (const Json& line : report["summary"]) text += "  - " + line.get<std::string>() + "\n";
  text += format("(%.0f s)\n", report["seconds"].get<double>());
  const std::string json = report.dump(2) + "\n";
  std::fputs(args.json ? json.c_str() : text.c_str(), stdout);
  if (!args.out.empty()) {
    std::ofstream(args.out + "/report.json") << json;
    std::ofstream(args.out + "/report.txt") << text;
    std::fprintf(stderr, "pipepool report: wrote %s/report.json and %s/report.txt\n",
                 args.out.c_str(), args.out.c_str());
  }
  for (const char* part : {"deadlock", "simulator", "benchmark", "tiers"}) {
    if (report[part]["status"] == "error") return kExitEnvironment;
  }
  return 0;
}

Run setup_report(CLI::App& command) {
  auto args = std::make_shared<ReportArgs>();
  command.add_flag("--json", args->json, "the whole report as one JSON object (a key per part)");
  command.add_option("--out", args->out,
                     "also write report.json, report.txt and (if the tiers ran) tiers.png here");
  command.add_flag("--quick", args->quick, "a faster smoke run (smaller payloads, fewer runs)");
  command.add_flag("--quiet,-q", args->quiet, "no progress on stderr");
  command.footer(
      "Parts: deadlock (real processes, diagnosed by the doctor), simulator (fuzz::check, "
      "threshold), benchmark (echo against the raw pipe), tiers (needs root and cgroups; skipped "
      "otherwise), summary.\nExit status: 0 the report was produced (some parts may be skipped), "
      "2 usage, 3 a part errored.");
  return [args] { return run_report(*args); };
}

[[maybe_unused]] const bool registered = register_command(
    "report",
    "the main job: the deadlock on real processes with the doctor's diagnosis, the simulator's "
    "counterexamples and threshold, a benchmark, a tier sweep, a summary",
    setup_report);

}  // namespace
}  // namespace pipepool::tools
