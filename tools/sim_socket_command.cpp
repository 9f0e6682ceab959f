// `pipepool sim socket`: plays writes and reads against the AF_UNIX stream socketpair model and
// prints what each call returns and what the socket then holds, so a user can ask "how many
// 100-byte messages fit before the writer blocks?" (sim/README.md, "The socket model").
//
//   pipepool sim socket [--sndbuf BYTES] [--json] OP...
//   End 0 writes, end 1 reads, unless an operation says otherwise.
//   OP: write:N     one blocking write(2) of N bytes; if it sleeps, later operations that wake it
//                   show it going on ("writer wakes: ...")
//       nbwrite:N   one O_NONBLOCK write of N bytes (bytes, or EAGAIN / EPIPE)
//       fill:N      O_NONBLOCK writes of N bytes until one is short or fails; prints the count
//       read:N      one O_NONBLOCK read of up to N bytes on end 1
//       reply:N     one O_NONBLOCK write of N bytes from end 1 to end 0 (it wakes end 0's writer)
//       sndbuf:V    setsockopt(SO_SNDBUF, V) on end 0 (the kernel doubles V; capacity:V is the
//       same) close-reader, close-writer   close end 1 / end 0
//
// The logic is run_sim_socket(options), separate from the argument parsing, so that the command
// line can move to another parser without touching it.
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "command.hpp"
#include "socket_model.hpp"

namespace pipepool::tools {

struct SimSocketOptions {
  // sk_sndbuf of both ends in bytes, as getsockopt(SO_SNDBUF) reads it (the kernel's default here
  // is 212992). At least SOCK_MIN_SNDBUF (4608), at most 256 MiB (the model holds what is queued).
  uint32_t sndbuf_bytes = 212992;
  // /proc/sys/net/core/wmem_max: what sndbuf:V is capped at before doubling (Linux's default).
  uint32_t wmem_max_bytes = 212992;
  bool json = false;
  std::vector<std::string> ops;  // non-empty
};

// Plays `options.ops`; prints one line (or JSON object) per operation to `out`, and a one-line
// error to `err`. Returns 0, or 2 for an operation that cannot be parsed or played.
int run_sim_socket(const SimSocketOptions& options, std::FILE* out, std::FILE* err);

namespace {

// Upper bound of one operation's byte count: the command allocates that buffer.
constexpr uint64_t kMaxOpBytes = uint64_t{1} << 28;

std::string errno_name(int64_t r) {
  if (r == -EAGAIN) return "EAGAIN";
  if (r == -EPIPE) return "EPIPE";
  if (r == -ECONNRESET) return "ECONNRESET";
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

// Decimal digits only (an optional '-' if `allow_negative`), within [min, max]; no wrap-around.
std::optional<int64_t> parse_number(const std::string& text, int64_t min, int64_t max) {
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && text[i] == '-' && min < 0) {
    negative = true;
    ++i;
  }
  if (i == text.size() || text.size() - i > 19) return std::nullopt;
  uint64_t value = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
    if (value > (uint64_t{1} << 62)) return std::nullopt;
  }
  const int64_t v = negative ? -static_cast<int64_t>(value) : static_cast<int64_t>(value);
  if (v < min || v > max) return std::nullopt;
  return v;
}

int usage(std::FILE* err) {
  std::fprintf(err,
               "usage: pipepool sim socket [--sndbuf BYTES] [--json] OP...\n"
               "  end 0 writes, end 1 reads; --sndbuf is sk_sndbuf as getsockopt reads it "
               "(default 212992, 4608..268435456)\n"
               "  OP: write:N nbwrite:N fill:N read:N reply:N sndbuf:V close-reader close-writer\n"
               "  (sndbuf:V is setsockopt(SO_SNDBUF, V): min(V, wmem_max 212992) doubled, at least "
               "4608)\n"
               "  example: pipepool sim socket fill:100   (how many 100-byte writes fit?)\n");
  return 2;
}

// What the reader's queue holds, what the writer is charged, and poll() of both ends.
std::string state_text(const sim::SocketPairModel& pair) {
  const auto flags = [&](int end) {
    if (!pair.open(end)) return std::string("closed");
    std::string s;
    if (pair.readable(end)) s += "IN ";
    if (pair.writable(end)) s += "OUT ";
    if (pair.hup(end)) s += "HUP ";
    if (pair.err(end)) s += "ERR ";
    return s.empty() ? std::string("-") : s.substr(0, s.size() - 1);
  };
  return std::to_string(pair.skbs_queued(1)) + " skbs, " + std::to_string(pair.unread_bytes(1)) +
         " bytes queued; charged " + std::to_string(pair.outq_bytes(0)) + " of " +
         std::to_string(pair.sndbuf_bytes(0)) + "; poll end 0 " + flags(0) + ", end 1 " + flags(1);
}

struct Line {
  std::string op;
  std::string result;
  int64_t value = 0;
  std::string state;
};

}  // namespace

int run_sim_socket(const SimSocketOptions& options, std::FILE* out, std::FILE* err) {
  if (options.ops.empty()) return usage(err);
  if (options.sndbuf_bytes < 4608 || options.sndbuf_bytes > kMaxOpBytes) {
    std::fprintf(err, "pipepool sim socket: --sndbuf must be in 4608..268435456\n");
    return 2;
  }
  sim::SocketPairModel pair(sim::SocketConfig{.sndbuf_bytes = options.sndbuf_bytes,
                                              .wmem_max_bytes = options.wmem_max_bytes});
  std::vector<Line> lines;
  std::vector<std::byte> blocked_data;  // the sleeping blocking write's buffer
  int64_t blocked_so_far = -1;          // >= 0 while it sleeps
  std::vector<std::byte> buffer;
  for (const std::string& op : options.ops) {
    const auto colon = op.find(':');
    const std::string verb = op.substr(0, colon);
    const bool takes_number = verb == "write" || verb == "nbwrite" || verb == "fill" ||
                              verb == "read" || verb == "reply" || verb == "sndbuf" ||
                              verb == "capacity";
    if (!takes_number && verb != "close-reader" && verb != "close-writer") {
      std::fprintf(err, "pipepool sim socket: unknown operation '%s'\n", op.c_str());
      return 2;
    }
    if (takes_number != (colon != std::string::npos)) {
      std::fprintf(err, "pipepool sim socket: '%s' %s\n", op.c_str(),
                   takes_number ? "needs a number (OP:N)" : "takes no number");
      return 2;
    }
    const bool is_sndbuf = verb == "sndbuf" || verb == "capacity";
    int64_t n = 0;
    if (takes_number) {
      const auto parsed =
          is_sndbuf ? parse_number(op.substr(colon + 1), INT_MIN, INT_MAX)
                    : parse_number(op.substr(colon + 1), 0, static_cast<int64_t>(kMaxOpBytes));
      if (!parsed) {
        std::fprintf(err, "pipepool sim socket: bad number in '%s' (%s)\n", op.c_str(),
                     is_sndbuf ? "an int" : "0..268435456 bytes");
        return 2;
      }
      n = *parsed;
    }
    const bool writes_end0 = verb == "write" || verb == "nbwrite" || verb == "fill";
    if ((writes_end0 && !pair.open(0)) || ((verb == "read" || verb == "reply") && !pair.open(1))) {
      std::fprintf(err, "pipepool sim socket: '%s' on a closed end\n", op.c_str());
      return 2;
    }
    if (verb == "write" && blocked_so_far >= 0) {
      std::fprintf(err, "pipepool sim socket: '%s': a blocking write already sleeps on end 0\n",
                   op.c_str());
      return 2;
    }
    if (!is_sndbuf) buffer.assign(static_cast<size_t>(n), std::byte{'x'});
    Line line{op, "", 0, ""};
    if (verb == "write" || verb == "nbwrite" || verb == "reply") {
      const int end = verb == "reply" ? 1 : 0;
      const auto r = pair.write(end, buffer, verb != "write");
      line.value = r.result;
      if (r.blocked) {
        line.result = "sleeps after " + std::to_string(r.result) + " of " + std::to_string(n) +
                      " bytes (charged " + std::to_string(pair.outq_bytes(0)) +
                      " >= sndbuf; wakes when a read leaves 4 * (charged + 2) <= sndbuf)";
        blocked_data = buffer;
        blocked_so_far = r.result;
      } else {
        line.result = r.result < 0 ? errno_name(r.result) : std::to_string(r.result);
      }
      if (r.sigpipe) line.result += " + SIGPIPE";
    } else if (verb == "fill") {
      int64_t count = 0;
      for (;;) {
        const auto r = pair.write(0, buffer, true);
        if (r.result < 0 || r.result < n || n == 0) {
          line.result = std::to_string(count) + " whole writes fit; the next returns " +
                        (r.result < 0 ? errno_name(r.result) : std::to_string(r.result));
          break;
        }
        if (++count >= (int64_t{1} << 24)) {
          line.result = std::to_string(count) + " whole writes fit (stopped counting)";
          break;
        }
      }
      line.value = count;
    } else if (verb == "read") {
      const auto r = pair.read(1, buffer, true);
      line.value = r.result;
      line.result = r.result < 0
                        ? errno_name(r.result)
                        : (r.result == 0 && n > 0 ? "0 (end of file)" : std::to_string(r.result));
    } else if (is_sndbuf) {
      line.value = pair.set_sndbuf(0, static_cast<int32_t>(n));
      line.result = line.value < 0 ? errno_name(line.value)
                                   : "sndbuf " + std::to_string(pair.sndbuf_bytes(0));
    } else if (verb == "close-reader") {
      pair.close(1);
      line.result = "closed end 1";
    } else {
      pair.close(0);
      line.result = "closed end 0";
      blocked_so_far = -1;
    }
    // A sleeping writer that this operation woke goes on, as the kernel's task would.
    if (blocked_so_far >= 0 && pair.writer_can_proceed(0)) {
      const auto r = pair.continue_write(0, blocked_data, static_cast<size_t>(blocked_so_far));
      line.result += "; writer wakes: +" + std::to_string(r.written);
      if (r.blocked) {
        line.result += " (" + std::to_string(r.result) + " of " +
                       std::to_string(blocked_data.size()) + "), sleeps again";
        blocked_so_far = r.result;
      } else {
        line.result +=
            ", write returns " + (r.result < 0 ? errno_name(r.result) : std::to_string(r.result));
        blocked_so_far = -1;
      }
    }
    line.state = state_text(pair);
    lines.push_back(line);
  }
  if (options.json) {
    std::fprintf(out, "[\n");
    for (size_t i = 0; i < lines.size(); ++i) {
      const Line& l = lines[i];
      std::fprintf(
          out, "  {\"op\": \"%s\", \"value\": %lld, \"result\": \"%s\", \"state\": \"%s\"}%s\n",
          json_escape(l.op).c_str(), static_cast<long long>(l.value), json_escape(l.result).c_str(),
          json_escape(l.state).c_str(), i + 1 < lines.size() ? "," : "");
    }
    std::fprintf(out, "]\n");
  } else {
    for (const Line& l : lines) {
      std::fprintf(out, "%-16s -> %s\n%19s[%s]\n", l.op.c_str(), l.result.c_str(), "",
                   l.state.c_str());
    }
  }
  return 0;
}

namespace {

Run setup_sim_socket(CLI::App& command) {
  auto options = std::make_shared<SimSocketOptions>();
  add_number(command, "--sndbuf", options->sndbuf_bytes,
             "sk_sndbuf of both ends in bytes, as getsockopt(SO_SNDBUF) reads it", uint32_t{4608},
             static_cast<uint32_t>(kMaxOpBytes));
  command.add_flag("--json", options->json, "JSON instead of text");
  command
      .add_option("ops", options->ops,
                  "write:N nbwrite:N fill:N read:N reply:N sndbuf:V close-reader close-writer")
      ->required();
  command.footer(
      "example: pipepool sim socket fill:100 read:1000 fill:100000   (how small and large "
      "writes fill a socket's send buffer)");
  return [options] { return run_sim_socket(*options, stdout, stderr); };
}

[[maybe_unused]] const bool registered = register_command(
    "sim socket", "play writes and reads against the AF_UNIX socketpair model", setup_sim_socket);

}  // namespace

}  // namespace pipepool::tools
