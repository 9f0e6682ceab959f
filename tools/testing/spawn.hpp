// tools/testing/spawn.hpp: processes for the tools tests: each started in a process group of
// its own, its output captured, and the whole group killed (SIGKILL) and reaped on destruction.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace pipepool::tools::testing {

// A started command: its stdout and stderr are pipes read by wait_for_text() / finish().
class Spawned {
 public:
  // `setup` runs in the child before exec (for dropping privileges); return false to fail.
  explicit Spawned(const std::vector<std::string>& argv, bool (*setup)() = nullptr) {
    int out[2];
    int err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      if (setup != nullptr && !setup()) ::_exit(126);
      std::vector<char*> args;
      for (const std::string& word : argv) args.push_back(const_cast<char*>(word.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;
  ~Spawned() {
    kill_group();
    ::close(out_);
    ::close(err_);
  }

  pid_t pid() const { return pid_; }

  // Reads stdout until it holds `text` or `timeout` passes; true if it does.
  bool wait_for_text(const std::string& text, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (out_text_.find(text) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(left)) return false;
    }
    return true;
  }

  // Waits for the process to exit (killing the group after `timeout`); returns its exit code,
  // or 128 + signal. Collects all of stdout and stderr.
  int finish(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (!read_some(std::max<std::chrono::milliseconds>(left, std::chrono::milliseconds(1)))) {
        break;  // both pipes at end of file: the process is done writing
      }
    }
    kill_group_if_timed_out(end);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    kill_group();
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }

  const std::string& out() const { return out_text_; }
  const std::string& err() const { return err_text_; }

  void kill_group() {
    ::kill(-pid_, SIGKILL);
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
    }
  }

 private:
  void kill_group_if_timed_out(std::chrono::steady_clock::time_point end) {
    if (std::chrono::steady_clock::now() >= end) ::kill(-pid_, SIGKILL);
  }

  // One poll over both pipes; false once both are at end of file (or on timeout).
  bool read_some(std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{out_open_ ? out_ : -1, POLLIN, 0}, {err_open_ ? err_ : -1, POLLIN, 0}};
    if (!out_open_ && !err_open_) return false;
    const int ready = ::poll(fds, 2, static_cast<int>(timeout.count()));
    if (ready <= 0) return false;
    char buffer[65536];
    if (fds[0].revents != 0) {
      const ssize_t n = ::read(out_, buffer, sizeof buffer);
      if (n > 0) out_text_.append(buffer, static_cast<size_t>(n));
      if (n <= 0) out_open_ = false;
    }
    if (fds[1].revents != 0) {
      const ssize_t n = ::read(err_, buffer, sizeof buffer);
      if (n > 0) err_text_.append(buffer, static_cast<size_t>(n));
      if (n <= 0) err_open_ = false;
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  bool out_open_ = true;
  bool err_open_ = true;
  bool reaped_ = false;
  std::string out_text_;
  std::string err_text_;
};

}  // namespace pipepool::tools::testing
