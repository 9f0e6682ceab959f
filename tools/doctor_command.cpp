// `pipepool doctor`: a live deadlock diagnosis of a process tree, from /proc (tools/doctor/).
//   pipepool doctor [--json] PID
//   pipepool doctor [--json] --pids A,B,...
//   pipepool doctor [--json] [--stall SECONDS] -- COMMAND ARGS...
// Exit status: 0 no cycle, 1 cycle found, 2 usage, 3 not permitted or process gone; with `--`,
// the command's own status, unless it stalled (then 1, or 3 when permissions hid the facts).
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "doctor.hpp"
#include "watch.hpp"

namespace pipepool::tools {
namespace {

constexpr const char* kUsage =
    "usage: pipepool doctor [--json] PID | [--json] --pids A,B,... | [--json] [--stall SECONDS] "
    "-- COMMAND ARGS...";

int usage_error(const std::string& reason) {
  std::fprintf(stderr, "pipepool doctor: %s (%s)\n", reason.c_str(), kUsage);
  return 2;
}

bool parse_pid(std::string_view text, pid_t& out) {
  long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value <= 0 ||
      value > 4194304 /* PID_MAX_LIMIT */) {
    return false;
  }
  out = static_cast<pid_t>(value);
  return true;
}

struct CommandLine {
  doctor::Options diagnose;
  doctor::WatchOptions watch;
  bool json = false;
  bool run = false;
};

// Empty on success, else the reason the arguments are wrong.
std::string parse(int argc, char** argv, CommandLine& line) {
  bool have_target = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") {
      line.json = true;
    } else if (arg == "--pids") {
      if (have_target) return "give one PID, one --pids list or one command";
      if (++i >= argc) return "--pids needs a list";
      std::string_view list = argv[i];
      while (!list.empty()) {
        const size_t comma = list.find(',');
        pid_t pid = 0;
        if (!parse_pid(list.substr(0, comma), pid)) {
          return "not a process ID in --pids: '" + std::string(list.substr(0, comma)) + "'";
        }
        line.diagnose.pids.push_back(pid);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      }
      if (line.diagnose.pids.empty()) return "--pids needs a list";
      line.diagnose.include_descendants = false;
      have_target = true;
    } else if (arg == "--stall") {
      if (++i >= argc) return "--stall needs a number of seconds";
      char* end = nullptr;
      errno = 0;
      const double seconds = std::strtod(argv[i], &end);
      if (errno != 0 || end == argv[i] || *end != '\0' || !(seconds > 0) || seconds > 86400) {
        return "--stall takes seconds in (0, 86400], not '" + std::string(argv[i]) + "'";
      }
      line.watch.stall = std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
    } else if (arg == "--") {
      if (have_target) return "give one PID, one --pids list or one command";
      for (int j = i + 1; j < argc; ++j) line.watch.command.emplace_back(argv[j]);
      if (line.watch.command.empty()) return "no command after --";
      line.run = true;
      have_target = true;
      break;
    } else if (!arg.empty() && arg[0] == '-') {
      return "unknown option '" + std::string(arg) + "'";
    } else {
      pid_t pid = 0;
      if (!parse_pid(arg, pid)) return "not a process ID: '" + std::string(arg) + "'";
      if (have_target) return "give one PID, one --pids list or one command";
      line.diagnose.pids.push_back(pid);
      have_target = true;
    }
  }
  if (!have_target) return "nothing to inspect";
  return "";
}

}  // namespace

int run_doctor_command(int argc, char** argv) {
  for (int i = 0; i < argc && std::string_view(argv[i]) != "--"; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::printf("%s\n", kUsage);
      std::printf(
          "  PID          diagnose PID and its descendants, thread by thread\n"
          "  --pids A,B   diagnose these processes (and whoever holds their pipes and sockets)\n"
          "  -- COMMAND   run COMMAND; if its tree makes no progress (nothing runnable, no CPU)\n"
          "               for --stall seconds (default 2), diagnose it and kill it\n"
          "  --json       machine-readable report (fields: verdict, cycle, processes, ...)\n"
          "exit status: 0 no cycle, 1 cycle found, 2 usage, 3 not permitted or process gone;\n"
          "with --, the command's own status unless it stalled (1, or 3 if facts were hidden)\n");
      return 0;
    }
  }
  CommandLine line;
  if (std::string reason = parse(argc, argv, line); !reason.empty()) return usage_error(reason);
  if (line.run) {
    doctor::WatchResult result = doctor::watch_command(line.watch);
    if (!result.started) {
      std::fprintf(stderr, "pipepool doctor: cannot start %s\n", line.watch.command[0].c_str());
      return 3;
    }
    if (result.stalled && result.diagnosis) {
      std::fprintf(stderr,
                   "pipepool doctor: %s (pid %d) made no progress for %.1f s (nothing runnable, "
                   "no CPU used): diagnosis below; its process tree was killed\n",
                   line.watch.command[0].c_str(), static_cast<int>(result.pid),
                   static_cast<double>(line.watch.stall.count()) / 1000.0);
      const std::string report = line.json ? doctor::render_json(*result.diagnosis)
                                           : doctor::render_text(*result.diagnosis);
      std::fputs(report.c_str(), line.json ? stdout : stderr);
    }
    return doctor::exit_status(result);
  }
  const doctor::Diagnosis diagnosis = doctor::diagnose(line.diagnose);
  if (!diagnosis.error.empty() && !line.json) {
    std::fputs(doctor::render_text(diagnosis).c_str(), stderr);
  } else {
    std::fputs(
        line.json ? doctor::render_json(diagnosis).c_str() : doctor::render_text(diagnosis).c_str(),
        stdout);
  }
  return doctor::exit_status(diagnosis);
}

}  // namespace pipepool::tools
