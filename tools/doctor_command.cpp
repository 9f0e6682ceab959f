// `pipepool doctor`: a live deadlock diagnosis of a process tree, from /proc (tools/doctor/).
//   pipepool doctor [--json] PID
//   pipepool doctor [--json] --pids A,B,...
//   pipepool doctor [--json] [--stall SECONDS] -- COMMAND ARGS...
// Exit status: 0 no cycle, 1 cycle found, 2 usage, 3 not permitted or process gone; with `--`,
// the command's own status, unless it stalled (then 1, or 3 when permissions hid the facts).
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "command.hpp"
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

// CLI11 parses the options (--json, --stall); what follows them is a PID, `--pids A,B,...` or
// `-- COMMAND ARGS...`, which the parser above reads (CLI11 cannot tell a command after `--` from
// a PID once both are positionals), with the same one-line errors.
int run_doctor(CommandLine line, const std::vector<std::string>& rest) {
  std::vector<char*> args;
  for (const std::string& arg : rest) args.push_back(const_cast<char*>(arg.c_str()));
  if (std::string reason = parse(static_cast<int>(args.size()), args.data(), line);
      !reason.empty()) {
    return usage_error(reason);
  }
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

Run setup_doctor(CLI::App& command) {
  // For --help: the syntax (a PID, --pids or `-- COMMAND ARGS...`, where `--` itself matters) is
  // more than CLI11 can express, so the arguments after `doctor` are read by parse() above, with
  // its one-line errors; CLI11 only collects them.
  auto ignored_json = std::make_shared<bool>(false);
  auto ignored_stall = std::make_shared<double>(2.0);
  auto ignored_rest = std::make_shared<std::vector<std::string>>();
  command.add_flag("--json", *ignored_json, "machine-readable report (verdict, cycle, processes)");
  command
      .add_option("--stall", *ignored_stall,
                  "with -- COMMAND: seconds without progress (nothing runnable, no CPU) before "
                  "the diagnosis (0 < S <= 86400)")
      ->capture_default_str();
  command.add_option("--pids", "diagnose these processes (A,B,...), and whoever holds their pipes");
  command.add_option("target", *ignored_rest, "PID, or -- COMMAND ARGS...");
  command.allow_extras();
  command.footer(std::string(kUsage) +
                 "\n  PID          diagnose PID and its descendants, thread by thread"
                 "\n  --pids A,B   diagnose these processes (and whoever holds their pipes)"
                 "\n  -- COMMAND   run COMMAND; if its tree makes no progress for --stall "
                 "seconds, diagnose it and kill it"
                 "\nexit status: 0 no cycle, 1 cycle found, 2 usage, 3 not permitted or process "
                 "gone; with --, the command's own status unless it stalled");
  return [ignored_json, ignored_stall, ignored_rest] {
    const std::vector<std::string>& raw = raw_arguments();
    auto at = std::find(raw.begin(), raw.end(), "doctor");
    std::vector<std::string> rest(at == raw.end() ? raw.end() : at + 1, raw.end());
    return run_doctor(CommandLine{}, rest);
  };
}

[[maybe_unused]] const bool registered = register_command(
    "doctor", "live deadlock diagnosis of a process tree (or of a command), from /proc",
    setup_doctor);

}  // namespace
}  // namespace pipepool::tools
