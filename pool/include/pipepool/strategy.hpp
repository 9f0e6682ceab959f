// pipepool/strategy.hpp: the I/O discipline of parent and workers.
//
// A strategy decides *when* each side reads and writes; the frames and the schedulers are the same
// for all. Three are built in, chosen with Options::strategy:
//
//   Epoll      (default) the parent never blocks on one pipe: task pipes are non-blocking and are
//              written only as far as they take, results are read whenever they arrive, all from
//              one epoll loop. Deadlock-free for any payload size in either direction.
//   Batched    lambda_multiprocessing 1.0, reproduced with its weaknesses: the parent writes each
//              call's tasks with blocking writes, then one RunBatch frame to every worker it used;
//              a worker reads every task until RunBatch, runs them all, then writes all results.
//              Still deadlocks for two back-to-back apply_async on one busy worker with payloads
//              larger than the pipe, or map_async followed by map. For study, not for production.
//   Unbatched  lambda_multiprocessing before 1.0: blocking writes of each task as soon as it is
//              submitted; a worker reads one task, runs it, writes its result, reads again.
//              DEADLOCKS as soon as a task and a result are both larger than the pipe holds: that
//              is its purpose. Never the default; never use it outside the toolkit's experiments.
//   ZeroCopy   Epoll's discipline (the parent never blocks on one pipe), but the payload of every
//              frame of at least kZeroCopyMinPayloadBytes goes into the pipe with vmsplice(2): the
//              pipe takes references to the sender's pages instead of a copy of the bytes, and
//              the reader copies them out with read(2). Headers and small frames still go with
//              writev. The sender must not modify those pages until the reader has read them: the
//              parent keeps a task's payload until the task's result (or the worker's death)
//              arrives; a worker keeps a result's payload until the parent acknowledges that it
//              has read it (an Ack frame in the task pipe; see protocol/frame.hpp). Needs pipes:
//              Transport::SocketPair and Framing::Python are rejected (std::invalid_argument).
//              See pool/README.md ("Zero-copy payloads") for when it pays and what it costs.
//
// A fourth strategy implements IoStrategy and is passed as Options::custom_strategy; nothing else
// changes. The protocol engine consults it at each decision; both the real driver and the
// simulator obey the answers, so a strategy's deadlocks are real in both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace pipepool {

enum class Strategy { Epoll, Batched, Unbatched, ZeroCopy };

// Strategy::ZeroCopy splices payloads of at least this many bytes (bench/README.md: below it, the
// copy of writev costs less than pinning pages and the acknowledgement frame).
inline constexpr uint64_t kZeroCopyMinPayloadBytes = 64 * 1024;

// How a worker consumes the tasks in its pipe.
enum class ChildMode {
  OneAtATime,     // read exactly one task frame, run it, write its result, then read again
  UntilRunBatch,  // read every frame into memory until RunBatch, run them all, write all results
};

class IoStrategy {
 public:
  virtual ~IoStrategy() = default;
  virtual std::string_view name() const = 0;

  // Parent. true: each frame goes out with one blocking write, in the order frames were produced,
  // and the parent does nothing else (reads no result) until it is written. false: task pipes are
  // non-blocking, written as far as they take while results are read whenever they come.
  virtual bool parent_blocking_writes() const = 0;

  // Parent. true: after each scheduling pass, a RunBatch frame goes to every worker that was given
  // tasks in that pass.
  virtual bool parent_sends_run_batch() const = 0;

  // Worker.
  virtual ChildMode child_mode() const = 0;

  // Parent, non-blocking mode: most frames gathered into one writev.
  virtual size_t max_frames_per_write() const { return 64; }

  // Worker: 0 reads exactly one frame's bytes at a time (Python's Connection.recv), so tasks not
  // yet due stay in the pipe; > 0 lets a worker read up to that many bytes of queued small tasks
  // at once. Reading ahead enlarges the buffer between the two sides, so it changes where a
  // blocking design deadlocks: only a strategy whose parent never blocks should use it.
  virtual size_t child_read_ahead_bytes() const { return 0; }

  // Both sides: the payload of a frame of at least this many bytes is put into the pipe with
  // vmsplice(2) (its header with writev before it); 0 (the default): never, everything is copied
  // by writev. Non-zero needs Transport::Pipes, Framing::Pipepool and a parent that does not block
  // (parent_blocking_writes() false: the parent's acknowledgements of spliced results must never
  // wait for a worker); the pool's constructor throws std::invalid_argument otherwise.
  virtual uint64_t splice_min_payload_bytes() const { return 0; }
};

// The built-in strategies (static lifetime).
const IoStrategy& builtin_strategy(Strategy strategy);
std::string_view to_string(Strategy strategy);

}  // namespace pipepool
