// The parent's side of the protocol: which worker gets which task, what to write to which pipe and
// when, what the bytes read from a worker mean, and what a worker's death costs. No system calls,
// no clock, no global randomness: the real driver (driver/) and the simulator (sim/) feed it events
// and carry out its requests, so both run exactly this code.
//
// Events in:   submit, worker_started, bytes_read / result_eof, bytes_written / write_failed,
//              worker_exited, timer_fired, begin_shutdown, terminate, abort.
// Requests out: pending writes per worker (and whether the driver must finish one blocking write
//              before anything else), read buffers, Commands (start / kill a worker, arm a timer),
//              Completions (a task's result or error).
//
// Lifecycle of a worker slot: Absent -> (StartWorker) Starting -> (worker_started) Live ->
// Closing (Shutdown sent) or Failed (we asked to kill it) -> exited (exit status known and its pipe
// drained to end of file, unless we gave up reading it) -> Absent, and started again unless the
// pool is shutting down with nothing left to do.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "pipepool/detail/outcome.hpp"
#include "pipepool/random.hpp"
#include "pipepool/scheduler.hpp"
#include "pipepool/strategy.hpp"
#include "protocol/frame.hpp"
#include "protocol/outbox.hpp"

namespace pipepool::protocol {

// The parent reads results in pieces of up to this many bytes (a larger payload goes straight into
// place): fewer system calls for small results, and never a reason to block a worker.
inline constexpr size_t kParentReadAheadBytes = 64 * 1024;

struct ParentConfig {
  uint32_t workers = 1;
  uint64_t max_result_payload_bytes = uint64_t{1} << 40;
  uint32_t max_tasks_per_child = 0;  // 0: unlimited (Python's maxtasksperchild=None)
  bool task_timeouts = false;        // workers send Started; engine asks for timers
  uint32_t max_retries = 0;          // times a lost task may be submitted again
  uint64_t seed = 0;                 // for the scheduler's tie-breaks
  // Result payloads of at least this many bytes are advised for transparent huge pages before
  // they are read (read_advice); 0: never. Such a buffer goes to the caller, so it is always new.
  uint64_t huge_page_advice_bytes = 0;
  // How frames go on the channels (frame.hpp). With Python framing every write the engine asks
  // for is one Python write call (pending_write gathers one write unit, whatever the strategy:
  // no two messages share a writev, as no two share a Python _send), and results are read as
  // Python's recv_bytes reads them (exactly the length, then exactly the body: no read-ahead).
  WireFormat wire{};
};

struct TaskSubmission {
  TaskId id = 0;
  // The encoded task; its segments may point into the caller's objects (payload.hpp).
  pipepool::detail::Payload payload;
  // The task's time budget, carried into its ArmTimer commands (a chunk of a map: the sum of its
  // items' budgets); 0: the driver's pool-wide task timeout.
  uint64_t timeout_ns = 0;
};

// How a worker process ended, as the driver observed it.
struct ExitInfo {
  int signal = 0;           // > 0: killed by this signal
  int exit_code = -1;       // when signal == 0
  std::string description;  // "killed by signal 9 (SIGKILL)", "exited with code 3"
};

// What became of a task: the call layer's own type, handed to it unchanged (one type, no
// conversion; Kind::Cancelled never reaches a caller).
using Completion = pipepool::detail::Outcome;

struct Command {
  enum class Kind {
    StartWorker,  // start a process for slot `worker`, then call worker_started(worker)
    KillWorker,   // SIGKILL the process of slot `worker`; stop reading and writing its pipes
    ArmTimer,     // call timer_fired(task) once its timeout (timeout_ns, or the pool's) elapsed
  };
  Kind kind;
  WorkerId worker = 0;
  TaskId task = 0;
  // ArmTimer: which attempt of the task the timer is for (a retried task gets a timer per attempt;
  // timer_fired(task, attempt) ignores the timers of earlier attempts).
  uint32_t attempt = 0;
  // ArmTimer: the task's TaskSubmission::timeout_ns (0: the pool-wide task timeout).
  uint64_t timeout_ns = 0;
};

struct EngineStats {
  uint64_t tasks_submitted = 0;
  uint64_t tasks_completed = 0;
  uint64_t frames_written = 0;
  uint64_t frames_read = 0;
  uint64_t workers_started = 0;
  uint64_t workers_lost = 0;
  uint64_t tasks_retried = 0;
  uint64_t scheduler_contract_violations = 0;
};

class ParentEngine {
 public:
  enum class SlotState { Absent, Starting, Live, Closing, Failed };

  // `strategy` and `scheduler` must outlive the engine.
  ParentEngine(ParentConfig config, const IoStrategy& strategy, Scheduler& scheduler);
  // A copy of `other` in its current state that asks `scheduler` (a snapshot of other's, see
  // Scheduler::snapshot()) from now on; the strategy, a stateless object, is shared. For the
  // simulator, which branches from saved worlds. Spans handed out by `other` (pending_write,
  // read_buffer) point into it: ask the copy again.
  ParentEngine(const ParentEngine& other, Scheduler& scheduler);
  ParentEngine& operator=(const ParentEngine&) = delete;

  // `h` mixed with everything in the engine that decides its future requests and completions
  // (fingerprint.hpp), but the scheduler's own state (Scheduler::state_fingerprint) and the
  // clock: each slot's state, queued frames with their order, reader, outstanding tasks, load
  // estimates and how it ended; the queue of unassigned tasks; every unfinished task's record;
  // the tie-break generator. Not the statistics, which decide nothing.
  uint64_t fingerprint(uint64_t h) const;

  // ---- events ------------------------------------------------------------------------------
  // One API call's tasks (one scheduling pass; Batched sends one RunBatch per worker after it).
  void submit(std::vector<TaskSubmission> tasks);
  // Withdraws `task` if no worker has been given it yet (it is still queued): it will never run
  // and never complete. Returns false (and changes nothing) once it was assigned, or if unknown.
  bool cancel(TaskId task);
  void worker_started(WorkerId w);
  // Bytes were read into read_buffer(w).
  void bytes_read(WorkerId w, size_t n);
  // The result pipe of w reached end of file.
  void result_eof(WorkerId w);
  // n bytes of pending_write(w) were written.
  void bytes_written(WorkerId w, size_t n);
  // Writing to w failed (EPIPE: the worker is gone). `error` is errno.
  void write_failed(WorkerId w, int error);
  // The process of slot w exited.
  void worker_exited(WorkerId w, const ExitInfo& info);
  // A timer requested with ArmTimer expired. The one-argument form applies to whichever attempt of
  // the task is running; the two-argument form only to the attempt the timer was armed for.
  void timer_fired(TaskId task);
  void timer_fired(TaskId task, uint32_t attempt);
  // The driver's clock, in nanoseconds (steady; the simulator's virtual time). Only used to
  // estimate each worker's mean task time for the scheduler; never read otherwise.
  void set_time(uint64_t now_ns) { now_ns_ = now_ns; }
  // Pool.join(): once every submitted task is done, workers get Shutdown and are not replaced.
  void begin_shutdown();
  // Pool.terminate(): every unfinished task completes as Terminated, every live worker is killed.
  void terminate();
  // The pool cannot go on (the real driver: its fork server died). As terminate(), but every
  // unfinished task, and every task submitted later, completes as WorkerLost with `reason`.
  void abort(const std::string& reason);

  // How messages name worker w from now on ("worker 0 (pid 1234)"); by default "worker 0". The
  // driver sets it when it starts a process for the slot. Optional.
  void set_worker_label(WorkerId w, std::string label);

  // ---- requests ----------------------------------------------------------------------------
  // Blocking strategies: the worker whose frame must be written next, with blocking writes and
  // nothing else done meanwhile (nullopt: nothing to write).
  std::optional<WorkerId> blocking_write_due() const;
  // Unwritten bytes for w, as writev segments (at most max_frames_per_write frames; one frame for
  // blocking strategies; one write unit, see outbox.hpp, with Python framing). Empty when nothing
  // is queued.
  // With a strategy that splices (IoStrategy::splice_min_payload_bytes()), `splice` (if given)
  // says whether the segments are one payload to vmsplice (Outbox::gather), or bytes to copy.
  size_t pending_write(WorkerId w, std::vector<std::span<const std::byte>>& segments,
                       bool* splice = nullptr) const;
  bool wants_write(WorkerId w) const;
  // Whether the driver should read w's result pipe now, and where the bytes go.
  bool wants_read(WorkerId w) const;
  std::span<std::byte> read_buffer(WorkerId w);
  // Memory to advise for huge pages before reading into read_buffer(w) (empty: none).
  std::span<std::byte> read_advice(WorkerId w) const { return slots_[w].reader.huge_page_advice(); }

  std::vector<Command> take_commands();
  std::vector<Completion> take_completions();
  bool has_output() const { return !commands_.empty() || !completions_.empty(); }

  // ---- state -------------------------------------------------------------------------------
  uint32_t workers() const { return config_.workers; }
  SlotState slot_state(WorkerId w) const { return slots_[w].state; }
  size_t outstanding(WorkerId w) const { return slots_[w].outstanding.size(); }
  size_t pending_tasks() const { return pending_.size(); }
  size_t unfinished_tasks() const { return tasks_.size(); }
  // join() may return: shutting down, no task left, every slot Absent.
  bool finished() const;
  bool shutting_down() const { return shutting_down_; }
  const EngineStats& stats() const { return stats_; }
  const IoStrategy& strategy() const { return *strategy_; }

 private:
  struct TaskState {
    // Kept until the task completes, so a task that never started can be sent again.
    std::shared_ptr<const Payload> payload;
    uint64_t timeout_ns = 0;  // TaskSubmission::timeout_ns
    uint32_t attempts = 0;
    bool started = false;  // a Started frame came back
    uint64_t assigned_ns = 0;
    WorkerId worker = 0;
  };
  struct Slot {
    SlotState state = SlotState::Absent;
    Outbox outbox;
    FrameReader reader{Direction::ToParent, 0};
    std::deque<TaskId> outstanding;  // in the order the worker runs them
    uint64_t assigned_this_process = 0;
    uint64_t assigned_total = 0;
    uint64_t last_done_ns = 0;  // when its last result came back
    uint64_t mean_task_ns = 0;  // moving mean of its time per task; 0 = no estimate yet
    bool eof = false;
    bool truncated = false;  // its result pipe ended inside a frame
    bool reading_abandoned = false;
    std::optional<ExitInfo> exit;
    // Why we gave up on it (a protocol error or a timeout), reported instead of a plain death.
    std::optional<Completion::Kind> failure_kind;
    std::string failure_message;
    TaskId timed_out_task = 0;
    // Spliced results (payload >= splice_min_payload_bytes) read from its current process, and how
    // many of them an Ack frame queued so far counts.
    uint64_t spliced_results_read = 0;
    uint64_t spliced_results_acked = 0;
  };

  FrameReader make_reader() const;
  ParentEngine(const ParentEngine&) = default;  // through the constructor above only

  void schedule();
  bool accepting(const Slot& slot) const;
  void queue_frame(WorkerId w, FrameKind kind, TaskId task, std::shared_ptr<const Payload> payload);
  void handle_frame(WorkerId w, Frame frame);
  // Queues an Ack for the spliced results of w read since the last one, if the worker still runs
  // tasks (not after Shutdown, nor once it retires after maxtasksperchild).
  void maybe_acknowledge(WorkerId w);
  void fail_worker(WorkerId w, Completion::Kind kind, std::string message);
  void maybe_finalize(WorkerId w);
  void complete(TaskId task, Completion completion);
  void maybe_send_shutdown();
  std::string worker_name(WorkerId w) const;

  ParentConfig config_;
  const IoStrategy* strategy_;  // never null
  Scheduler* scheduler_;        // never null
  Random random_;
  std::vector<Slot> slots_;
  std::vector<std::string> labels_;  // set_worker_label; empty: "worker N"
  std::string abort_reason_;         // set by abort()
  std::deque<TaskId> pending_;
  std::unordered_map<TaskId, TaskState> tasks_;
  std::vector<Command> commands_;
  std::vector<Completion> completions_;
  std::vector<WorkerLoad> loads_scratch_;
  uint64_t next_sequence_ = 0;
  uint64_t now_ns_ = 0;
  bool shutting_down_ = false;
  bool terminated_ = false;
  EngineStats stats_;
};

}  // namespace pipepool::protocol
