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
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pipe_model.hpp"

namespace pipepool::tools {
namespace {

struct Step {
  std::string op;
  std::string result;
  int64_t value = 0;
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

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: pipepool sim pipe [--pages N] [--json] OP...\n"
               "  OP: write:N nbwrite:N fill:N read:N capacity:BYTES close-reader close-writer\n"
               "  example: pipepool sim pipe fill:4097   (how many 4097-byte writes fit?)\n");
  return 2;
}

}  // namespace

int run_sim_pipe_command(int argc, char** argv) {
  uint32_t pages = 16;
  bool json = false;
  std::vector<std::string> ops;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json") {
      json = true;
    } else if (arg == "--pages" && i + 1 < argc) {
      pages = static_cast<uint32_t>(std::stoul(argv[++i]));
    } else if (arg == "--help" || arg == "-h") {
      return usage();
    } else {
      ops.push_back(arg);
    }
  }
  if (ops.empty()) return usage();
  sim::PipeModel pipe(sim::PipeConfig{.slots = pages});
  std::vector<std::byte> buffer;
  std::vector<Step> steps;
  for (const std::string& op : ops) {
    const auto colon = op.find(':');
    const std::string verb = op.substr(0, colon);
    size_t n = 0;
    if (colon != std::string::npos) {
      try {
        n = std::stoull(op.substr(colon + 1));
      } catch (...) {
        std::fprintf(stderr, "pipepool sim pipe: bad number in '%s'\n", op.c_str());
        return 2;
      }
    }
    if (n > (size_t{1} << 32)) {
      std::fprintf(stderr, "pipepool sim pipe: %zu bytes is more than this command plays\n", n);
      return 2;
    }
    buffer.assign(n, std::byte{'x'});
    Step step{op, "", 0};
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
        if (r.result < 0 || static_cast<size_t>(r.result) < n) {
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
    } else if (verb == "close-writer") {
      pipe.close_writer();
      step.result = "closed";
    } else {
      std::fprintf(stderr, "pipepool sim pipe: unknown operation '%s'\n", op.c_str());
      return usage();
    }
    step.result += json ? "" : "    [" + pipe.describe() + "]";
    if (json) step.op = json_escape(step.op);
    steps.push_back(step);
    if (json) {
      steps.back().result = json_escape(step.result) + "\", \"pipe\": \"" +
                            json_escape(pipe.describe()) +
                            "\", \"readable\": " + (pipe.readable() ? "true" : "false") +
                            ", \"writable\": " + (pipe.writable() ? "true" : "false");
    }
  }
  if (json) {
    std::printf("[\n");
    for (size_t i = 0; i < steps.size(); ++i) {
      std::printf("  {\"op\": \"%s\", \"value\": %lld, \"result\": \"%s}%s\n", steps[i].op.c_str(),
                  static_cast<long long>(steps[i].value), steps[i].result.c_str(),
                  i + 1 < steps.size() ? "," : "");
    }
    std::printf("]\n");
  } else {
    for (const Step& s : steps) std::printf("%-16s -> %s\n", s.op.c_str(), s.result.c_str());
  }
  return 0;
}

}  // namespace pipepool::tools
