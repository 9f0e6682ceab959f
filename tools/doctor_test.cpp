// `pipepool doctor` on real hangs: a pool stuck in Unbatched, Python over
// multiprocessing.Pipe(duplex=True), one process writing into its own socketpair; a healthy
// pool; bad arguments; a vanished process; facts hidden by permissions; `doctor -- COMMAND`.
// Every test runs the installed-style binary (build/tools/pipepool), as a user would.
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "proc_reader.hpp"
#include "testing/spawn.hpp"

namespace pipepool::tools {
namespace {

using namespace std::chrono_literals;
using testing::Spawned;

const std::string kDoctor = PIPEPOOL_COMMAND_PATH;
const std::string kWorkload = PIPEPOOL_WORKLOAD_PATH;

struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
};

Outcome run(const std::vector<std::string>& argv, bool (*setup)() = nullptr,
            std::chrono::milliseconds timeout = 15s) {
  Spawned process(argv, setup);
  Outcome result;
  result.status = process.finish(timeout);
  result.out = process.out();
  result.err = process.err();
  return result;
}

// Runs `doctor --json PID` until it exits with `want` (a hang takes a moment to settle).
Outcome doctor_until(pid_t pid, int want, std::chrono::milliseconds timeout = 8s) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  Outcome last;
  do {
    last = run({kDoctor, "doctor", "--json", std::to_string(pid)});
    if (last.status == want) return last;
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < end);
  return last;
}

std::string write_script(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("pipepool_doctor_" + std::to_string(::getpid()) + "_" + name))
                               .string();
  std::ofstream(path) << text;
  return path;
}

const nlohmann::json* process_of(const nlohmann::json& report, pid_t pid) {
  for (const auto& process : report["processes"]) {
    if (process["pid"] == pid) return &process;
  }
  return nullptr;
}

size_t count_lines(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST(Doctor, FindsTheCycleOfAPoolStuckInUnbatched) {
  Spawned pool({kWorkload, "stuck-unbatched"});
  ASSERT_TRUE(pool.wait_for_text("ready", 10s)) << pool.err();
  const Outcome report = doctor_until(pool.pid(), 1);
  ASSERT_EQ(report.status, 1) << report.out << report.err;
  const auto json = nlohmann::json::parse(report.out);
  EXPECT_EQ(json["verdict"], "deadlock");
  ASSERT_EQ(json["cycle"].size(), 2u) << report.out;
  EXPECT_EQ(json["cycle"][0], pool.pid());
  const pid_t worker = json["cycle"][1];
  EXPECT_NE(worker, pool.pid());
  const nlohmann::json* parent = process_of(json, pool.pid());
  ASSERT_NE(parent, nullptr);
  // The parent blocks in its I/O thread, not its main thread, writing a task into the pipe.
  EXPECT_NE((*parent)["tid"], pool.pid());
  EXPECT_EQ((*parent)["wait"], "write");
  EXPECT_TRUE((*parent)["syscall"] == "write" || (*parent)["syscall"] == "writev");
  EXPECT_EQ((*parent)["object"].get<std::string>().rfind("pipe:[", 0), 0u);
  EXPECT_GT((*parent)["bytes_requested"].get<uint64_t>(), 0u);
  EXPECT_EQ((*parent)["waits_for"], nlohmann::json::array({worker}));
  const nlohmann::json* stuck_worker = process_of(json, worker);
  ASSERT_NE(stuck_worker, nullptr);
  EXPECT_EQ((*stuck_worker)["wait"], "write");
  EXPECT_EQ((*stuck_worker)["waits_for"], nlohmann::json::array({pool.pid()}));
  // Both pipes are full: 64 KiB, not enlarged.
  for (const nlohmann::json* process : {parent, stuck_worker}) {
    const auto& pipe = json["objects"][(*process)["object"].get<std::string>()];
    EXPECT_EQ(pipe["capacity_bytes"], 65536) << pipe;
    EXPECT_GT(pipe["queued_bytes"].get<uint64_t>(), 60000u) << pipe;
  }

  const Outcome text = run({kDoctor, "doctor", std::to_string(pool.pid())});
  EXPECT_EQ(text.status, 1);
  EXPECT_NE(text.out.find("verdict: deadlock: wait-for cycle " + std::to_string(pool.pid())),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("pipe full"), std::string::npos) << text.out;
}

TEST(Doctor, FindsTheCycleOfPythonOverADuplexPipe) {
  const std::string script = write_script("duplex.py", R"(import multiprocessing as mp
def child(conn):
    conn.send(b"c" * 4_000_000)  # both send before either receives
    conn.recv()
if __name__ == "__main__":
    mp.set_start_method("fork")
    a, b = mp.Pipe(duplex=True)  # an AF_UNIX socketpair
    p = mp.Process(target=child, args=(b,))
    p.start()
    print("ready", p.pid, flush=True)
    a.send(b"p" * 4_000_000)
    a.recv()
    p.join()
)");
  Spawned python({"python3", script});
  ASSERT_TRUE(python.wait_for_text("ready", 10s)) << python.err();
  const Outcome report = doctor_until(python.pid(), 1);
  ASSERT_EQ(report.status, 1) << report.out << report.err;
  const auto json = nlohmann::json::parse(report.out);
  EXPECT_EQ(json["verdict"], "deadlock");
  ASSERT_EQ(json["cycle"].size(), 2u) << report.out;
  EXPECT_EQ(json["cycle"][0], python.pid());
  const pid_t child = json["cycle"][1];
  for (pid_t pid : {python.pid(), child}) {
    const nlohmann::json* process = process_of(json, pid);
    ASSERT_NE(process, nullptr);
    EXPECT_EQ((*process)["wait"], "write");
    EXPECT_EQ((*process)["tid"], pid);
    EXPECT_EQ((*process)["object"].get<std::string>().rfind("socket:[", 0), 0u);
    const auto& socket = json["objects"][(*process)["object"].get<std::string>()];
    EXPECT_EQ(socket["kind"], "unix_socket");
    EXPECT_GE(socket["send_queue_bytes"], socket["send_buffer_bytes"]) << socket;
    EXPECT_GE((*process)["bytes_requested"].get<uint64_t>(), 1000000u);
  }
  // --pids on the two, as unrelated processes: the same cycle.
  const Outcome pids = run(
      {kDoctor, "doctor", "--pids", std::to_string(python.pid()) + "," + std::to_string(child)});
  EXPECT_EQ(pids.status, 1) << pids.out << pids.err;
  EXPECT_NE(pids.out.find("send queue full"), std::string::npos) << pids.out;
}

const char* kSelfSocketpair = R"(import socket
a, b = socket.socketpair()
print("ready", flush=True)
a.sendall(b"x" * 10_000_000)  # only this process holds b: nobody will ever read it
)";

TEST(Doctor, AProcessWritingToItsOwnSocketpairIsACycleOfOne) {
  Spawned python({"python3", write_script("self.py", kSelfSocketpair)});
  ASSERT_TRUE(python.wait_for_text("ready", 10s)) << python.err();
  const Outcome report = doctor_until(python.pid(), 1);
  ASSERT_EQ(report.status, 1) << report.out << report.err;
  const auto json = nlohmann::json::parse(report.out);
  EXPECT_EQ(json["cycle"], nlohmann::json::array({python.pid()}));
  EXPECT_NE(json["explanation"].get<std::string>().find("a cycle of one"), std::string::npos)
      << json["explanation"];
}

TEST(Doctor, AHealthySlowPoolHasNoCycle) {
  Spawned pool({kWorkload, "slow", "20"});
  ASSERT_TRUE(pool.wait_for_text("ready", 10s)) << pool.err();
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < 3; ++i) {
    const Outcome report = run({kDoctor, "doctor", "--json", std::to_string(pool.pid())});
    ASSERT_EQ(report.status, 0) << report.out << report.err;
    const auto json = nlohmann::json::parse(report.out);
    EXPECT_EQ(json["verdict"], "no cycle");
    EXPECT_TRUE(json["cycle"].empty());
    EXPECT_GE(json["processes"].size(), 4u) << "parent, fork server, two workers";
  }
}

TEST(Doctor, BadArgumentsExitTwoWithOneLine) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {},
           {"12x"},
           {"0"},
           {"--pids"},
           {"--pids", "1,,2"},
           {"--stall", "-1", "--", "true"},
           {"--stall", "abc", "--", "true"},
           {"--"},
           {"--frobnicate", "1"},
           {"1", "2"},
       }) {
    std::vector<std::string> argv{kDoctor, "doctor"};
    argv.insert(argv.end(), args.begin(), args.end());
    const Outcome result = run(argv);
    std::string joined;
    for (const std::string& arg : args) joined += arg + " ";
    EXPECT_EQ(result.status, 2) << joined;
    EXPECT_EQ(count_lines(result.err), 1u) << joined << ": " << result.err;
    EXPECT_EQ(result.err.rfind("pipepool doctor: ", 0), 0u) << result.err;
    EXPECT_TRUE(result.out.empty()) << joined;
  }
}

TEST(Doctor, AVanishedProcessExitsThree) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const Outcome text = run({kDoctor, "doctor", std::to_string(pid)});
  EXPECT_EQ(text.status, 3);
  EXPECT_NE(text.err.find("no such process: " + std::to_string(pid)), std::string::npos)
      << text.err;
  EXPECT_EQ(count_lines(text.err), 1u);
  const Outcome json = run({kDoctor, "doctor", "--json", std::to_string(pid)});
  EXPECT_EQ(json.status, 3);
  EXPECT_EQ(nlohmann::json::parse(json.out)["verdict"], "unknown");
}

bool become_nobody() {
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) return false;
  return ::setgroups(0, nullptr) == 0 && ::setgid(nobody->pw_gid) == 0 &&
         ::setuid(nobody->pw_uid) == 0 && ::getuid() == nobody->pw_uid;
}

TEST(Doctor, SaysWhichFactsPermissionsHide) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to drop to nobody in a child";
  // Only root holds the socketpair; the doctor runs as nobody.
  Spawned python({"python3", write_script("hidden.py", kSelfSocketpair)});
  ASSERT_TRUE(python.wait_for_text("ready", 10s)) << python.err();
  ASSERT_EQ(doctor_until(python.pid(), 1).status, 1);  // as root: a cycle of one
  const Outcome json =
      run({kDoctor, "doctor", "--json", std::to_string(python.pid())}, become_nobody);
  ASSERT_NE(json.status, 126) << "could not become nobody";
  EXPECT_EQ(json.status, 3) << json.out << json.err;
  const auto report = nlohmann::json::parse(json.out);
  EXPECT_EQ(report["verdict"], "unknown");
  EXPECT_TRUE(report["cycle"].empty());
  const std::string missing = report["missing"].dump();
  const std::string task =
      "/proc/" + std::to_string(python.pid()) + "/task/" + std::to_string(python.pid());
  EXPECT_NE(missing.find(task + "/syscall"), std::string::npos) << missing;
  EXPECT_NE(missing.find(task + "/wchan"), std::string::npos) << missing;
  EXPECT_NE(missing.find("/proc/" + std::to_string(python.pid()) + "/fd"), std::string::npos)
      << missing;
  const Outcome text = run({kDoctor, "doctor", std::to_string(python.pid())}, become_nobody);
  EXPECT_EQ(text.status, 3);
  EXPECT_NE(text.out.find("verdict: unknown"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("cannot say whether they are in a cycle"), std::string::npos) << text.out;
}

TEST(Doctor, RunModeDiagnosesAndEndsAStalledCommand) {
  const auto start = std::chrono::steady_clock::now();
  const Outcome result = run({kDoctor, "doctor", "--stall", "0.5", "--", "python3",
                              write_script("run.py", kSelfSocketpair)});
  EXPECT_EQ(result.status, 1) << result.out << result.err;
  EXPECT_NE(result.err.find("made no progress for 0.5 s"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("a cycle of one"), std::string::npos) << result.err;
  EXPECT_NE(result.out.find("ready"), std::string::npos) << "the command's own output";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  // "python3 (pid N) made no progress": N is gone (killed and reaped).
  const size_t at = result.err.find("(pid ");
  ASSERT_NE(at, std::string::npos);
  const pid_t pid = static_cast<pid_t>(std::atoi(result.err.c_str() + at + 5));
  EXPECT_FALSE(proc::read_process_stat(pid)) << pid;
}

TEST(Doctor, RunModeEndsAStuckPoolsWholeTree) {
  const Outcome result =
      run({kDoctor, "doctor", "--json", "--stall", "0.5", "--", kWorkload, "stuck-unbatched"});
  EXPECT_EQ(result.status, 1) << result.err;
  const size_t ready = result.out.find("ready\n");
  ASSERT_NE(ready, std::string::npos) << result.out;
  const auto json = nlohmann::json::parse(result.out.substr(ready + 6));
  EXPECT_EQ(json["verdict"], "deadlock");
  ASSERT_EQ(json["cycle"].size(), 2u);
  // The pool, its fork server and its worker are all gone, reaped (not zombies left to init).
  for (const auto& process : json["processes"]) {
    const pid_t pid = process["pid"];
    EXPECT_FALSE(proc::read_process_stat(pid)) << pid;
  }
  const pid_t group = json["cycle"][0];
  EXPECT_EQ(::kill(-group, 0), -1);
}

TEST(Doctor, RunModeExitsWithTheCommandsStatus) {
  EXPECT_EQ(run({kDoctor, "doctor", "--", "sh", "-c", "exit 7"}).status, 7);
  EXPECT_EQ(run({kDoctor, "doctor", "--", "sh", "-c", "sleep 0.3; exit 0"}).status, 0);
  EXPECT_EQ(run({kDoctor, "doctor", "--", "sh", "-c", "kill -TERM $$"}).status, 128 + SIGTERM);
  EXPECT_EQ(run({kDoctor, "doctor", "--", "/nonexistent/command"}).status, 127);
}

}  // namespace
}  // namespace pipepool::tools
