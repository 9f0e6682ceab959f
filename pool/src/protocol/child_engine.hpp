// The worker's side of the protocol: when to read, which task to run, what to write. No system
// calls: the real worker loop (driver/worker_main.cpp) and the simulator's child process drive it
// with the same calls, so a strategy's discipline is the same code in both.
//
//   for (;;) {
//     auto action = engine.next();
//     switch (action.op) {
//       case Read:  n = read(fd, action.read_into) (blocking); engine.bytes_read(n);   // 0 = EOF
//       case Run:   run the task; engine.task_finished(ok, encoded result or error);
//       case Write: writev(fd, action.write) (blocking, all of it); engine.bytes_written(n);
//       case Exit:  _exit(action.exit_code);
//     }
//   }
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "pipepool/strategy.hpp"
#include "protocol/frame.hpp"
#include "protocol/outbox.hpp"

namespace pipepool::protocol {

inline constexpr int kExitProtocolError = 3;  // the parent sent bytes that are not a frame
inline constexpr int kExitParentGone = 4;     // writing a result failed: nobody reads any more

struct ChildConfig {
  ChildMode mode = ChildMode::OneAtATime;
  uint64_t max_task_payload_bytes = uint64_t{1} << 40;
  uint32_t max_tasks = 0;       // exit after this many tasks (maxtasksperchild); 0 = never
  bool send_started = false;    // announce each task before running it (for task timeouts)
  size_t read_ahead_bytes = 0;  // 0: read exactly one frame at a time (see FrameReader)
};

class ChildEngine {
 public:
  enum class Op { Read, Run, Write, Exit };
  struct Action {
    Op op = Op::Read;
    std::span<std::byte> read_into;                 // Read: at most these bytes
    TaskId task = 0;                                // Run
    const std::string* task_payload = nullptr;      // Run: valid until task_finished
    std::vector<std::span<const std::byte>> write;  // Write: one frame, written whole
    int exit_code = 0;                              // Exit
    std::string exit_reason;                        // Exit: for logs and the simulator
  };

  explicit ChildEngine(ChildConfig config)
      : config_(config),
        reader_(Direction::ToWorker, config.max_task_payload_bytes, config.read_ahead_bytes) {}

  Action next();
  void bytes_read(size_t n);  // 0 means end of file
  void task_finished(bool ok, std::string payload);
  void bytes_written(size_t n);
  void write_failed(int error);

  uint64_t tasks_done() const { return tasks_done_; }

 private:
  void exit_with(int code, std::string reason);

  ChildConfig config_;
  FrameReader reader_;
  std::deque<Frame> run_queue_;
  bool batch_ready_ = false;
  bool started_sent_ = false;
  Outbox notices_;  // Started frames: written before the task runs
  Outbox results_;  // Result / Error frames
  bool shutdown_received_ = false;
  bool exiting_ = false;
  int exit_code_ = 0;
  std::string exit_reason_;
  uint64_t tasks_done_ = 0;
  uint64_t sequence_ = 0;
};

}  // namespace pipepool::protocol
