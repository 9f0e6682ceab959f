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
//                   (one frame; with Python framing one write unit of a message, outbox.hpp;
//                   action.splice: vmsplice(2) of one result payload, looping until all of it
//                   is in the pipe, as the strategy's splice_min_payload_bytes asks)
//       case Exit:  _exit(action.exit_code);
//     }
//   }
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <utility>
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
  // Task payloads of at least this many bytes that need a new buffer are advised for transparent
  // huge pages before they are read (Read's huge_page_advice; read-ahead only); 0: never.
  uint64_t huge_page_advice_bytes = 0;
  // How frames go on the channel (frame.hpp): with Python framing each Write is one Python write
  // call (a message, or its length or body alone; outbox.hpp), and tasks are read as
  // Connection.recv_bytes reads them, exactly, whatever read_ahead_bytes says (it is ignored).
  WireFormat wire{};
  // IoStrategy::splice_min_payload_bytes(): result payloads of at least this many bytes are
  // written with vmsplice (Action::splice) and kept unmodified until the parent's Ack frames count
  // them as read; 0: never.
  uint64_t splice_min_payload_bytes = 0;
};

class ChildEngine {
 public:
  enum class Op { Read, Run, Write, Exit };
  struct Action {
    Op op = Op::Read;
    std::span<std::byte> read_into;                 // Read: at most these bytes
    std::span<std::byte> huge_page_advice;          // Read: madvise(MADV_HUGEPAGE) first
    TaskId task = 0;                                // Run
    const std::string* task_payload = nullptr;      // Run: valid until task_finished
    std::vector<std::span<const std::byte>> write;  // Write: one write unit, written whole
    bool splice = false;                            // Write: vmsplice(2) it, not writev
    int exit_code = 0;                              // Exit
    std::string exit_reason;                        // Exit: for logs and the simulator
  };

  explicit ChildEngine(ChildConfig config)
      : config_((validate_wire_format(config.wire), config)),
        reader_(Direction::ToWorker, config.max_task_payload_bytes,
                config.wire.python ? 0 : config.read_ahead_bytes, config.huge_page_advice_bytes,
                config.wire) {}

  Action next();
  void bytes_read(size_t n);  // 0 means end of file
  // `payload` is the encoded result or error; start it from result_buffer() to reuse memory.
  void task_finished(bool ok, std::string payload);
  // The same with a payload whose segments may point into the task's result objects: its owner
  // keeps them alive until the frame is written (payload.hpp's invariant).
  void task_finished(bool ok, Payload payload);
  // An empty string with the capacity of an earlier result whose frame has been written, if any:
  // the executor encodes the next result into it, so a worker does not fault in a new buffer per
  // task.
  std::string result_buffer() {
    std::string buffer = std::exchange(spare_result_, {});
    buffer.clear();
    return buffer;
  }
  void bytes_written(size_t n);
  void write_failed(int error);

  uint64_t tasks_done() const { return tasks_done_; }
  // Spliced results written whose memory is kept until the parent acknowledges them.
  size_t retained_results() const { return retained_.size(); }

  // Copies: the engine is copyable (the simulator branches from saved worlds). An Action holds
  // spans into its engine, so after copying, ask the copy for its action again: next() called
  // twice without a report in between returns the same action.
  //
  // `h` mixed with everything that decides this engine's actions from now on (fingerprint.hpp):
  // its reader, the tasks queued to run (by header), batch and shutdown flags, the frames waiting
  // to be written, the exit it is taking, and how many tasks it has done (maxtasksperchild). Not
  // the buffers kept only to reuse memory (result_buffer()).
  uint64_t fingerprint(uint64_t h) const;

 private:
  void exit_with(int code, std::string reason);
  // Queues the Result or Error frame of the task at the front; `recyclable` (may be null) is the
  // string the payload lives in, whose memory result_buffer() hands out once the frame is written.
  void finish_task(bool ok, std::shared_ptr<const Payload> payload,
                   std::shared_ptr<std::string> recyclable);

  ChildConfig config_;
  FrameReader reader_;
  std::deque<Frame> run_queue_;
  bool batch_ready_ = false;
  bool started_sent_ = false;
  Outbox notices_;  // Started frames: written before the task runs
  Outbox results_;  // Result / Error frames
  // A result frame's payload (null for none) and the string its bytes live in (null when they
  // live in the task's result objects), whose memory result_buffer() hands out again.
  struct SentResult {
    std::shared_ptr<const Payload> payload;
    std::shared_ptr<std::string> recyclable;
  };
  // The payloads of results_, in order, to recover their memory once written.
  std::deque<SentResult> result_payloads_;
  std::string spare_result_;
  // Spliced results written but not yet acknowledged, oldest first: the pipe holds references to
  // their pages (the owner's memory: a string, or the task's result objects) until the parent
  // reads them (see FrameKind::Ack).
  std::deque<SentResult> retained_;
  uint64_t spliced_written_ = 0;  // spliced results written by this process
  uint64_t spliced_acked_ = 0;    // of which the parent has acknowledged so many
  void acknowledged(uint64_t count);
  // Lets the payload go, and keeps its string for result_buffer() if nobody else holds it.
  void reuse_result_memory(SentResult sent);
  bool shutdown_received_ = false;
  bool exiting_ = false;
  int exit_code_ = 0;
  std::string exit_reason_;
  uint64_t tasks_done_ = 0;
  uint64_t sequence_ = 0;
};

}  // namespace pipepool::protocol
