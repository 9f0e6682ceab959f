// tools/command.hpp: how a subcommand joins the `pipepool` program, and the helpers every
// subcommand shares (validated numbers, one-line usage errors, progress).
//
// A subcommand is one small function in its own tools/*_command.cpp file. It declares its options
// on the CLI11 app the registry hands it and returns what runs once they are parsed:
//
//   namespace {
//   pipepool::tools::Run setup_hello(CLI::App& command) {
//     auto name = std::make_shared<std::string>("world");
//     command.add_option("--name", *name, "who to greet")->capture_default_str();
//     return [name] { std::printf("hello %s\n", name->c_str()); return 0; };
//   }
//   const bool registered = pipepool::tools::register_command("hello", "greets", setup_hello);
//   }  // namespace
//
// The path may name a group: register_command("sim socket", ...) adds `socket` under `sim`
// (groups are created on first use; main.cpp gives the known ones their one-line summary). The
// option storage must outlive parsing: keep it in a shared_ptr that the returned Run captures.
//
// Exit status of every subcommand: 0 success, 1 the command found what it looks for (a deadlock,
// a failure), 2 bad usage (one line on stderr naming the argument and what it accepts), 3 the
// environment or the tool itself failed (cgroups not writable, a replay that differs).
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>

namespace pipepool::tools {

// Runs a parsed subcommand; returns its exit status.
using Run = std::function<int()>;
// Declares a subcommand's options and returns its Run.
using Setup = Run (*)(CLI::App& command);

inline constexpr int kExitFound = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitEnvironment = 3;

// Adds `pipepool PATH` ("tiers", "sim run"). Call from a namespace-scope initializer; returns true.
bool register_command(const char* path, const char* summary, Setup setup);

// Prints "pipepool PATH: MESSAGE" on stderr as one line and returns kExitUsage, for the checks
// that need more than one option (for example "no calls: give --task, --call or --scenario").
int usage_error(const CLI::App& command, const std::string& message);

// "pipepool sim run" for the app of `sim run`.
std::string command_path(const CLI::App& command);

// A validator (use it with ->transform(), which may rewrite) for a decimal integer in [low, high]: no sign on unsigned types, no octal or hex,
// no wrap-around. It rewrites the text to its canonical decimal form, so that CLI11's own
// conversion (which reads "010" as octal) sees what was checked. Message: "-5 is not in 1..62".
CLI::Validator integer_in(int64_t low, int64_t high);
CLI::Validator unsigned_in(uint64_t low, uint64_t high);
// A byte size ("65536", "64K", "1M", as sim::parse_size reads it) in [low, high], rewritten to
// decimal bytes.
CLI::Validator size_in(uint64_t low, uint64_t high);

// Adds a validated integer option with its default shown in --help.
template <class T>
CLI::Option* add_number(CLI::App& app, const std::string& name, T& value, const std::string& help,
                        T low, T high = std::numeric_limits<T>::max()) {
  static_assert(std::is_integral_v<T>);
  CLI::Option* option = app.add_option(name, value, help)->capture_default_str();
  if constexpr (std::is_unsigned_v<T>) {
    option->transform(unsigned_in(low, high));
  } else {
    option->transform(integer_in(low, high));
  }
  return option;
}

// Progress of a long command on stderr. On a terminal: one line rewritten in place at most ten
// times a second, with the fraction done and an estimate of the time left. Not on a terminal
// (piped, in CI): one plain line every `piped_every` seconds. With quiet: nothing.
class Progress {
 public:
  explicit Progress(bool quiet, std::chrono::seconds piped_every = std::chrono::seconds(10));
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `fraction_done` in [0, 1], or negative when the total is unknown (then no estimate).
  void show(double fraction_done, const std::string& text);
  // Removes the terminal line (before printing results).
  void clear();
  double seconds() const;
  bool on_terminal() const { return terminal_; }

 private:
  using Clock = std::chrono::steady_clock;
  bool quiet_;
  bool terminal_;
  std::chrono::seconds piped_every_;
  bool shown_ = false;
  Clock::time_point start_;
  Clock::time_point last_;
};

// "1.23M" and the like, for progress lines.
std::string si(double value);

}  // namespace pipepool::tools
