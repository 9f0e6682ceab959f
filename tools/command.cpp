// tools/command.cpp: the subcommand registry, the shared validators and the progress line.
#include "command.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <vector>

#include "registry.hpp"
#include "scenario.hpp"

namespace pipepool::tools {

std::vector<Registration>& registrations() {
  static std::vector<Registration> all;  // built before main by the commands' initializers
  return all;
}

bool register_command(const char* path, const char* summary, Setup setup) {
  registrations().push_back(Registration{path, summary, setup});
  return true;
}

std::string command_path(const CLI::App& command) {
  std::string path = command.get_name();
  for (const CLI::App* app = command.get_parent(); app != nullptr; app = app->get_parent()) {
    path = app->get_name() + " " + path;
  }
  return path;
}

int usage_error(const CLI::App& command, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", command_path(command).c_str(), message.c_str());
  return kExitUsage;
}

namespace {

template <class T>
std::string check_integer(std::string& input, T low, T high) {
  T value{};
  const char* first = input.data();
  const char* last = input.data() + input.size();
  if (std::is_unsigned_v<T> && !input.empty() && input.front() == '-') {
    return input + " is not in " + std::to_string(low) + ".." + std::to_string(high);
  }
  if (!input.empty() && input.front() == '+') ++first;
  auto [end, error] = std::from_chars(first, last, value, 10);
  if (error == std::errc::result_out_of_range) {
    return input + " is not in " + std::to_string(low) + ".." + std::to_string(high);
  }
  if (error != std::errc() || end != last || first == last) {
    return "'" + input + "' is not a decimal number (expected " + std::to_string(low) + ".." +
           std::to_string(high) + ")";
  }
  if (value < low || value > high) {
    return input + " is not in " + std::to_string(low) + ".." + std::to_string(high);
  }
  input = std::to_string(value);
  return {};
}

std::string size_text(uint64_t bytes) {
  return std::to_string(bytes);
}

}  // namespace

CLI::Validator integer_in(int64_t low, int64_t high) {
  return CLI::Validator(
      [low, high](std::string& input) { return check_integer<int64_t>(input, low, high); },
      "INT in " + std::to_string(low) + ".." + std::to_string(high));
}

CLI::Validator unsigned_in(uint64_t low, uint64_t high) {
  return CLI::Validator(
      [low, high](std::string& input) { return check_integer<uint64_t>(input, low, high); },
      "UINT in " + std::to_string(low) + ".." + std::to_string(high));
}

CLI::Validator size_in(uint64_t low, uint64_t high) {
  return CLI::Validator(
      [low, high](std::string& input) -> std::string {
        uint64_t bytes = 0;
        const std::string range = size_text(low) + ".." + size_text(high) + " bytes";
        if (!input.empty() && input.front() == '-') return input + " is not in " + range;
        if (!sim::parse_size(input, bytes)) {
          return "'" + input + "' is not a size (65536, 64K, 1M; " + range + ")";
        }
        if (bytes < low || bytes > high) return input + " is not in " + range;
        input = std::to_string(bytes);
        return {};
      },
      "SIZE in " + size_text(low) + ".." + size_text(high));
}

// ---- progress ----------------------------------------------------------------------------------

Progress::Progress(bool quiet, std::chrono::seconds piped_every)
    : quiet_(quiet),
      terminal_(isatty(STDERR_FILENO) == 1),
      piped_every_(piped_every),
      start_(Clock::now()),
      last_(start_) {}

Progress::~Progress() {
  clear();
}

double Progress::seconds() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

void Progress::show(double fraction_done, const std::string& text) {
  if (quiet_) return;
  const Clock::time_point now = Clock::now();
  const auto every = terminal_
                         ? std::chrono::milliseconds(100)
                         : std::chrono::duration_cast<std::chrono::milliseconds>(piped_every_);
  if (now - last_ < every) return;
  last_ = now;
  std::string line = text;
  const double elapsed = seconds();
  char estimate[96] = "";
  if (fraction_done > 0 && fraction_done <= 1) {
    std::snprintf(estimate, sizeof estimate, " [%.0f%%, %.0f s elapsed, about %.0f s left]",
                  100 * fraction_done, elapsed, elapsed * (1 - fraction_done) / fraction_done);
  } else {
    std::snprintf(estimate, sizeof estimate, " [%.0f s elapsed]", elapsed);
  }
  line += estimate;
  if (terminal_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    shown_ = true;
  } else {
    std::fprintf(stderr, "progress: %s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::clear() {
  if (shown_) std::fprintf(stderr, "\r\033[K");
  shown_ = false;
}

std::string si(double v) {
  char text[32];
  if (v >= 1e9) {
    std::snprintf(text, sizeof text, "%.2fG", v / 1e9);
  } else if (v >= 1e6) {
    std::snprintf(text, sizeof text, "%.2fM", v / 1e6);
  } else if (v >= 1e3) {
    std::snprintf(text, sizeof text, "%.1fk", v / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.0f", v);
  }
  return text;
}

}  // namespace pipepool::tools
