// pipepool/detail/outcome.hpp: what became of one task, the one type for it (internal). The
// protocol's parent engine produces it (as protocol::Completion, the same type), the driver hands
// it unchanged to the call layer, which turns it into a value or an exception. Standard library
// only: the protocol, which makes no system call, includes it.
#pragma once

#include <cstdint>
#include <string>

namespace pipepool::detail {

struct Outcome {
  // Cancelled: withdrawn before any worker got it (ParentLoop's Inbox::cancel, a lazy imap left
  // early); never handed to a caller.
  enum class Kind : uint8_t {
    Result,
    RemoteError,
    WorkerLost,
    ProtocolError,
    Timeout,
    Terminated,
    Cancelled
  };
  uint64_t task = 0;  // the engine's number of the task, which `message` may name
  Kind kind = Kind::Result;
  std::string payload;  // Result: the encoded results; RemoteError: the encoded exception
  std::string message;  // the other kinds: a sentence for the user
  uint32_t worker = 0;  // the worker slot that ran it (when one did)
  int signal = 0;       // WorkerLost: the signal that ended the worker, or 0
  int exit_code = -1;   // WorkerLost: its exit code, or -1
  bool ok() const { return kind == Kind::Result; }
};

}  // namespace pipepool::detail
