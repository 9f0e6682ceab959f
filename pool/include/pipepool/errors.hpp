// pipepool/errors.hpp: the typed errors of pipepool.
//
// Every error the pool reports is one of these types.
//
//   TimeoutError   get()/wait-with-result past its timeout, or a task past Options::task_timeout.
//   PoolClosed     a submission after close() or terminate() (a std::logic_error: it is misuse).
//   RemoteError    a task threw in a worker. Not itself a std::exception: every RemoteError thrown
//                  by the pool is also the original standard type (std::invalid_argument, ...) or a
//                  registered user type, or std::runtime_error when the type is not registered. So
//                  both `catch (const std::invalid_argument&)` and `catch (const RemoteError&)`
//                  work.
//   WorkerLost     the worker running the task died (signal or exit code in the message), went
//                  over Options::memory_limit_bytes, or the pool's fork server died.
//   ProtocolError  a malformed, truncated or oversized frame, or undecodable bytes. A frame cut
//                  short because its worker was killed by a signal is a WorkerLost instead.
//
// Thread safety: these are plain value types.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace pipepool {

// get(timeout), wait-with-result or a per-task timeout expired. Python:
// multiprocessing.TimeoutError.
class TimeoutError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Submission to a pool that was closed or terminated.
class PoolClosed : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// A task raised an exception in the worker. Carries the original dynamic type's (demangled) name
// and its what(). See the header comment for how it combines with the original type.
class RemoteError {
 public:
  static constexpr size_t kNoIndex = static_cast<size_t>(-1);

  RemoteError(std::string type_name, std::string message, size_t input_index = kNoIndex)
      : type_name_(std::move(type_name)), message_(std::move(message)), input_index_(input_index) {}
  virtual ~RemoteError() = default;
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }
  // map, starmap, imap...: the index in the call's input of the item whose task threw (for map,
  // the lowest failing index). kNoIndex for apply.
  size_t input_index() const noexcept { return input_index_; }

 private:
  std::string type_name_;
  std::string message_;
  size_t input_index_;
};

// The worker running a task died: killed by a signal, exited, or was replaced after a timeout.
// The message names the worker (slot and pid), how it ended and the task; for example
// "worker 1 (pid 4242) killed by signal 9 (SIGKILL) while task 17 was running".
class WorkerLost : public std::runtime_error {
 public:
  // exit_code() of a worker that went over Options::memory_limit_bytes (an allocation failed).
  static constexpr int kMemoryLimitExitCode = 12;

  // signal_number > 0: killed by that signal; otherwise exit_code is the exit status (-1: unknown).
  WorkerLost(const std::string& what, int signal_number, int exit_code)
      : std::runtime_error(what), signal_number_(signal_number), exit_code_(exit_code) {}
  int signal_number() const noexcept { return signal_number_; }
  int exit_code() const noexcept { return exit_code_; }

 private:
  int signal_number_;
  int exit_code_;
};

// Bytes that do not form a valid frame or value: bad magic or check value, a length over the
// configured maximum, a result for a task the worker was not given, a truncated frame (its worker
// ended the stream mid-frame and exited by itself), trailing bytes after a value. The message
// names the worker ("worker 0 (pid 4242) sent a malformed frame: bad frame magic 0x78787878");
// that worker is killed and replaced.
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A contract violation in the use of a pipepool object (for example successful() before ready()).
class UsageError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace pipepool
