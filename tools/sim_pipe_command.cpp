// `pipepool sim pipe`: plays writes and reads against the Linux pipe model and prints what each
// call returns, so a user can ask "how many 4097-byte writes fit before the writer blocks?".
//
//   pipepool sim pipe [--pages N] [--json] OP...
//   OP: write:N     one blocking write(2) of N bytes (reports where it would block)
//       nbwrite:N   one O_NONBLOCK write of N bytes (bytes, or EAGAIN / EPIPE)
//       fill:N      O_NONBLOCK writes of N bytes until one is short or fails; prints the count
//       read:N      one O_NONBLOCK read of up to N bytes (a blocking read of an empty pipe blocks)
//       capacity:B  F_SETPIPE_SZ to B bytes
//       close-reader, close-writer
#include <nlohmann/json.hpp>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "command.hpp"
#include "pipe_model.hpp"

namespace pipepool::tools {
namespace {

constexpr uint64_t kMaxOpBytes = uint64_t{1} << 32;

struct SimPipeArgs {
  uint32_t pages = 16;
  bool json = false;
  std::vector<std::string> ops;
};

std::string errno_name(int64_t r) {
  if (r == -EAGAIN) return "EAGAIN";
  if (r == -EPIPE) return "EPIPE";
  if (r == -EBUSY) return "EBUSY";
  if (r == -EINVAL) return "EINVAL";
  if (r == -EPERM) return "EPERM";
  if (r == -EBADF) return "EBADF";
  return "errno " + std::to_string(-r);
}

struct Step {
  std::string result;
  int64_t value = 0;
};

// Plays one operation; false with `error` for an operation that is not one.
bool play(sim::PipeModel& pipe, const std::string& op, std::vector<std::byte>& buffer, Step& step,
          std::string& error) {
  const auto colon = op.find(':');
  const std::string verb = op.substr(0, colon);
  const bool takes_number = verb == "write" || verb == "nbwrite" || verb == "fill" ||
                            verb == "read" || verb == "capacity";
  if (!takes_number && verb != "close-reader" && verb != "close-writer") {
    error = "unknown operation '" + op +
            "' (write:N nbwrite:N fill:N read:N capacity:BYTES close-reader close-writer)";
    return false;
  }
  uint64_t n = 0;
  if (takes_number) {
    const std::string number = colon == std::string::npos ? "" : op.substr(colon + 1);
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), n, 10);
    if (number.empty() || ec != std::errc() || end != number.data() + number.size() ||
        n > kMaxOpBytes) {
      error = "'" + op + "': " + verb + " takes a byte count in 0.." + std::to_string(kMaxOpBytes);
      return false;
    }
  } else if (colon != std::string::npos) {
    error = "'" + op + "': " + verb + " takes no number";
    return false;
  }
  buffer.assign(n, std::byte{'x'});
  if (verb == "write" || verb == "nbwrite") {
    auto r = pipe.write(buffer, verb == "nbwrite");
    step.value = r.result;
    if (r.result < 0) {
      step.result = errno_name(r.result);
    } else if (r.blocked) {
      step.result = "blocks after " + std::to_string(r.written) + " of " + std::to_string(n) +
                    " bytes (a reader must free a slot)";
    } else {
      step.result = std::to_string(r.result);
    }
    if (r.sigpipe) step.result += " + SIGPIPE";
  } else if (verb == "fill") {
    int64_t count = 0;
    for (;;) {
      auto r = pipe.write(buffer, true);
      if (r.result < 0 || static_cast<uint64_t>(r.result) < n) {
        step.result = std::to_string(count) + " whole writes fit; the next returns " +
                      (r.result < 0 ? errno_name(r.result) : std::to_string(r.result));
        break;
      }
      if (++count > (int64_t{1} << 24)) break;
    }
    step.value = count;
  } else if (verb == "read") {
    auto r = pipe.read(buffer, true);
    step.value = r.result;
    step.result = r.result < 0
                      ? errno_name(r.result)
                      : (r.result == 0 && n > 0 ? "0 (end of file)" : std::to_string(r.result));
  } else if (verb == "capacity") {
    step.value = pipe.set_capacity_bytes(n);
    step.result = step.value < 0 ? errno_name(step.value) : std::to_string(step.value);
  } else if (verb == "close-reader") {
    pipe.close_reader();
    step.result = "closed";
  } else {
    pipe.close_writer();
    step.result = "closed";
  }
  return true;
}

int run(const CLI::App& command, const SimPipeArgs& args) {
  sim::PipeModel pipe(sim::PipeConfig{.slots = args.pages});
  std::vector<std::byte> buffer;
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  std::string text;
  for (const std::string& op : args.ops) {
    Step step;
    std::string error;
    if (!play(pipe, op, buffer, step, error)) return usage_error(command, error);
    if (args.json) {
      steps.push_back({{"op", op},
                       {"value", step.value},
                       {"result", step.result},
                       {"pipe", pipe.describe()},
                       {"readable", pipe.readable()},
                       {"writable", pipe.writable()}});
    } else {
      char line[64];
      std::snprintf(line, sizeof line, "%-16s -> ", op.c_str());
      text += line + step.result + "    [" + pipe.describe() + "]\n";
    }
  }
  if (args.json) {
    std::printf("%s\n", steps.dump(2).c_str());
  } else {
    std::fputs(text.c_str(), stdout);
  }
  return 0;
}

Run setup_sim_pipe(CLI::App& command) {
  auto args = std::make_shared<SimPipeArgs>();
  command.add_option("--pages", args->pages, "pipe capacity in page slots, a power of two")
      ->capture_default_str()
      ->transform(unsigned_in(1, 1 << 20))
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            const uint64_t n = std::stoull(input);  // unsigned_in has made it decimal
            if ((n & (n - 1)) != 0) {
              return input + " is not a power of two (1, 2, 4, ..., 1048576 page slots)";
            }
            return {};
          },
          "POWER OF TWO"));
  command.add_flag("--json", args->json, "JSON instead of text");
  command
      .add_option("ops", args->ops,
                  "write:N nbwrite:N fill:N read:N capacity:BYTES close-reader close-writer")
      ->required();
  command.footer("example: pipepool sim pipe fill:4097   (how many 4097-byte writes fit?)");
  const CLI::App* self = &command;
  return [args, self] { return run(*self, *args); };
}

[[maybe_unused]] const bool registered = register_command(
    "sim pipe", "play writes and reads against the Linux pipe model", setup_sim_pipe);

}  // namespace
}  // namespace pipepool::tools
