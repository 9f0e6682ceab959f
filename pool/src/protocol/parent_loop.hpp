// The parent's loop: what the pool's parent does next, one action at a time. No system calls, no
// clock, no randomness of its own: the driver passes its clock to next() and carries out the
// action it gets back, then reports what happened. The real driver (driver/pool_core.cpp, on the
// pool's I/O thread) and the simulator (sim/sim_parent.cpp, in virtual time) are both executors
// of this one loop, so the order in which the shipped pool handles events is the order the
// simulator explores.
//
//   ParentLoop loop(setup, strategy, scheduler);
//   for (;;) {
//     ParentLoop::Action a = loop.next(now_ns());
//     switch (a.op) {
//       case Op::Booted:      break;                          // the constructor may return
//       case Op::TakeInbox:   loop.inbox(what the user threads queued);
//       case Op::StartWorker: fork a worker for a.worker; loop.started(w, label) or start_failed(w)
//       case Op::KillWorker:  SIGKILL the process of a.worker (its exit comes later, as an event)
//       case Op::Write:       writev(a.write) to a.worker's task pipe; loop.wrote(n) / ...
//       case Op::Read:        read(a.read_into) from a.worker's result pipe; loop.read_done(n) /
//       ... case Op::Wait:        epoll_wait on a.interest until a.deadline_ns; loop.waited(events)
//       case Op::Deliver:     hand a.completions to the callers
//       case Op::Done:        return;                         // the pool has shut down
//     }
//   }
//
// One iteration of the loop, in the order the loop itself keeps:
//   1. TakeInbox. Cancelled tasks that no worker has yet are withdrawn (and delivered as
//      Completion::Kind::Cancelled, for the executor to forget). A terminate request ends the loop:
//      every unfinished task completes as Terminated, live workers are killed (KillWorker),
//      completions delivered, Done. Otherwise each queued call is one ParentEngine::submit, and a
//      join request begins the shutdown.
//   2. The engine's commands: StartWorker for slots whose start is due (a young death's back-off
//      or a failed fork's retry may delay it), KillWorker, timers armed; completions delivered.
//   3. Done once the engine has finished (shutting down, no task left, no worker); when the
//      executor reported that no worker can be started any more (ServerLost) and no process is
//      left, every unfinished task fails (ParentEngine::abort) and the loop ends.
//   4. A blocking strategy's due write: one Write with blocking = true, then back to 1.
//   5. Non-blocking strategies: a worker with frames to send whose task pipe has not been found
//      full since it was last reported writable gets one non-blocking Write straight away (no
//      Wait for EPOLLOUT first: an empty pipe is the common case, and watching for room costs
//      two epoll_ctl and a wake-up per submission); one that would block is marked full, and
//      only full pipes join the interest set. After each such write, back to 2.
//   6. Otherwise Wait for any of the interest set (result pipes the engine wants to read, task
//      pipes it wants to write, worker exits, new submissions) or the next deadline (a task
//      timeout, a delayed start). Then the whole ready batch is dispatched in the order the
//      executor reported it, every item checked against the engine first (an earlier item may
//      have made it stale): up to 64 non-blocking reads of a readable result pipe (until one
//      would block, or a staged read returns less than it asked for: the pipe is empty), up to 16
//      non-blocking writes of a writable task pipe (non-blocking strategies only), and for a
//      worker that exited, ParentEngine::worker_exited and reads of what it left in its pipe
//      until end of file (a dead process writes nothing more, so "would block" counts as end of
//      file: a descendant holding the pipe open must not keep the slot waiting). Commands are
//      applied after each item; a blocking write that becomes due meanwhile waits for the batch
//      to end. Then expired timers fire, and back to 1.
//
// Contract of the reports: every action but Booted, KillWorker, Deliver and Done takes exactly one
// report (the ones listed under it below) before the next call to next(). The spans an action
// carries are valid until that call.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/child_engine.hpp"
#include "protocol/parent_engine.hpp"

namespace pipepool::protocol {

// Timing rules of the loop (nanoseconds of the driver's clock).
struct LoopConfig {
  uint64_t task_timeout_ns = 0;  // 0: no task timeouts
  // A fork that failed (EAGAIN...) is tried again after this long.
  uint64_t start_retry_ns = 50'000'000;
  // A worker that fails (a signal or a non-zero exit) within young_death_ns of its start, having
  // sent no byte, died young (an initializer that throws, a task that crashes at once). From the
  // second young death of a slot in a row, its next start waits young_first_delay_ns, doubling up
  // to young_max_delay_ns: a pool that cannot keep a worker alive does not fork in a tight loop.
  uint64_t young_death_ns = 1'000'000'000;
  uint64_t young_first_delay_ns = 10'000'000;
  uint64_t young_max_delay_ns = 1'000'000'000;
};

// Everything the engines need, derived from pipepool::Options by engine_setup() (config.hpp).
struct EngineSetup {
  ParentConfig parent;
  ChildConfig child;
  LoopConfig loop;
};

// What the user threads queued since the last TakeInbox.
struct Inbox {
  std::vector<std::vector<TaskSubmission>> calls;  // one ParentEngine::submit each, in order
  std::vector<TaskId> cancel;  // withdraw these if no worker has them yet (a lazy imap left early)
  bool join = false;           // join() was called (after close())
  bool terminate = false;      // terminate() was called
};

// One item of a Wait's ready batch.
struct ReadyEvent {
  enum class Kind : uint8_t {
    Readable,    // the result pipe of `worker` has bytes or reached end of file (EPOLLIN/HUP)
    Writable,    // the task pipe of `worker` has room, or its reader is gone (EPOLLOUT/ERR)
    Exited,      // the process of `worker` exited; `exit` says how
    Wake,        // new submissions or requests (the executor's eventfd)
    ServerLost,  // no worker can be started any more (the fork server died); `reason` says why
  };
  Kind kind = Kind::Wake;
  WorkerId worker = 0;
  ExitInfo exit{};
  std::string reason{};
};

// What a Wait watches for one worker slot.
struct Interest {
  bool read = false;   // its result pipe: readable or end of file
  bool write = false;  // its task pipe: room (non-blocking strategies only)
};

class ParentLoop {
 public:
  enum class Op : uint8_t {
    // The first workers are started: the pool's constructor may return. No report. Once, first.
    Booted,
    // Hand in what the user threads queued. Report: inbox(). No system call in the real driver
    // (a mutex); the simulator takes no step for it.
    TakeInbox,
    // Start a worker process for slot `worker` with fresh pipes. Report: started(worker, label)
    // once it runs, or start_failed(worker) (the loop tries again after start_retry_ns).
    StartWorker,
    // SIGKILL the process of slot `worker`. No report: its exit comes as an Exited event.
    KillWorker,
    // writev(2) `write` to the task pipe of `worker` (a socketpair: sendmsg on its task descriptor,
    // MSG_DONTWAIT when not blocking; with Python framing `write` is exactly one of Python's write
    // calls, see outbox.hpp). blocking: do nothing else until all of it is
    // written (the strategy's discipline), then wrote(total), or write_failed(errno) (EPIPE: the
    // worker is gone). Not blocking: one non-blocking writev, then wrote(n > 0),
    // write_would_block() or write_failed(errno). splice (a strategy with
    // splice_min_payload_bytes(), pipes only): `write` is (the rest of) one payload, to be put
    // into the pipe with vmsplice(2) instead of writev (SPLICE_F_NONBLOCK when not blocking), with
    // the same reports; its memory stays unmodified until the task's result arrives (the task
    // record owns it), so the executor needs no copy.
    Write,
    // One non-blocking read(2) of the result pipe of `worker` into `read_into`. Report:
    // read_done(n > 0), read_would_block(), or read_eof() (end of file, or an error that means
    // the same). after_exit: the process has exited; would block is taken as end of file.
    // huge_page_advice, when not empty: first madvise(MADV_HUGEPAGE) it (untouched memory of a
    // large result's buffer; see FrameReader), ignoring failure. No report of its own.
    Read,
    // Sleep until one of `interest` is ready, a worker exits, the user threads queue something,
    // or the clock reaches deadline_ns (UINT64_MAX: no deadline). Report: waited(events), the
    // ready batch (possibly empty, when the deadline passed), in the order the executor saw it.
    Wait,
    // Hand `completions` to their callers (a result, an error). No report.
    Deliver,
    // The loop has ended: the pool has shut down (or was terminated). next() keeps returning it.
    Done,
  };
  struct Action {
    Op op = Op::Done;
    WorkerId worker = 0;
    bool blocking = false;                                // Write
    bool splice = false;                                  // Write: vmsplice, not writev
    bool after_exit = false;                              // Read
    std::span<const std::span<const std::byte>> write{};  // Write: the segments of one writev
    size_t write_bytes = 0;                               // Write: their total
    std::span<std::byte> read_into{};                     // Read
    std::span<std::byte> huge_page_advice{};              // Read: advise before reading
    std::span<const Interest> interest{};                 // Wait: one per worker slot
    uint64_t deadline_ns = UINT64_MAX;                    // Wait
    std::span<Completion> completions{};  // Deliver: the executor may move from them
  };

  // `strategy` and `scheduler` must outlive the loop.
  ParentLoop(const EngineSetup& setup, const IoStrategy& strategy, Scheduler& scheduler);
  // A copy of `other` in its current state, asking `scheduler` (a snapshot of other's, see
  // Scheduler::snapshot()) from now on: the simulator branches from saved worlds instead of
  // replaying the steps that led to them. The action `other` handed out last holds spans into
  // `other`; pass it to current() to get the same action over the copy.
  ParentLoop(const ParentLoop& other, Scheduler& scheduler);
  ParentLoop(const ParentLoop&) = delete;
  ParentLoop& operator=(const ParentLoop&) = delete;
  // `action`, the last one next() returned (to the original of a copy), with its spans pointing
  // into this loop: the segments to write, the buffer to read into, the interest set.
  Action current(const Action& action);

  // `h` mixed with everything that decides the loop's future actions but the clock and the
  // scheduler's own state (fingerprint.hpp): its phase and the report it waits for, each slot's
  // process, start and back-off, armed timers, the ready batch and where its dispatch stands, and
  // the engine's fingerprint. Not the write observer, which decides nothing.
  uint64_t fingerprint(uint64_t h) const;

  // The next action, given the driver's clock (steady, nanoseconds; the simulator's virtual time).
  Action next(uint64_t now_ns);

  // ---- reports -----------------------------------------------------------------------------
  void inbox(Inbox inbox);
  void started(WorkerId w, std::string label);
  void start_failed(WorkerId w);
  void wrote(size_t n);
  void write_would_block();
  void write_failed(int error);
  void read_done(size_t n);
  void read_would_block();
  void read_eof();
  void waited(std::span<const ReadyEvent> events);

  // ---- observation (for tests that compare executors) -------------------------------------
  // Called in wrote(n) with the n bytes just written to slot w's task pipe: what the loop has
  // made an executor put into each pipe, whichever executor it is. Not a decision: the loop runs
  // the same with or without it.
  using WriteObserver = std::function<void(WorkerId w, std::span<const std::byte> bytes)>;
  void observe_writes(WriteObserver observer) { write_observer_ = std::move(observer); }

  // ---- state -------------------------------------------------------------------------------
  const ParentEngine& engine() const { return engine_; }
  // Whether the process of slot w runs (started, and its exit not yet reported).
  bool process_alive(WorkerId w) const { return slots_[w].alive; }

 private:
  enum class Phase : uint8_t {
    Boot,
    Top,           // TakeInbox next
    InboxTaken,    // waiting for inbox()
    Commands,      // engine commands, deliveries, then the checks of step 3
    Writing,       // waiting for the report of a blocking write
    EagerWriting,  // waiting for the report of a non-blocking write of step 5
    Waiting,       // waiting for waited()
    Dispatch,      // the ready batch
    Terminating,   // kills and deliveries after terminate / abort, then Done
    Done,
  };
  struct Slot {
    bool alive = false;        // a process runs for it
    bool needs_start = false;  // the engine asked for a worker
    uint64_t start_after_ns = 0;
    uint64_t started_ns = 0;
    uint64_t bytes_read = 0;      // from its current process
    bool task_pipe_full = false;  // a non-blocking write would block; cleared when writable
    uint32_t young_deaths = 0;
  };
  struct Timer {
    TaskId task;
    uint32_t attempt;
  };
  enum class Pending : uint8_t { None, Inbox, Start, Write, Read, Wait };

  // Pulls the engine's commands into actions and timers. True if it queued an action.
  bool apply_commands();
  bool take_deliveries();
  bool dispatch_item(Action& out);
  void next_event();
  void fire_timers();
  uint64_t next_deadline() const;
  void expect(Pending pending) const;

  EngineSetup setup_;
  ParentEngine engine_;
  bool blocking_writes_;
  Phase phase_ = Phase::Boot;
  Pending pending_ = Pending::None;
  uint64_t now_ns_ = 0;
  std::vector<Slot> slots_;
  std::vector<Action> queued_;  // StartWorker / KillWorker / Deliver, before anything else
  size_t queued_pos_ = 0;
  std::vector<Completion> delivering_;
  std::vector<Completion> withdrawn_;      // cancelled by the inbox, delivered with the next batch
  std::multimap<uint64_t, Timer> timers_;  // due -> task
  std::unordered_map<TaskId, std::multimap<uint64_t, Timer>::iterator> timer_of_;
  bool server_lost_ = false;
  std::string server_reason_;
  // The action in progress.
  WorkerId io_worker_ = 0;
  std::vector<std::span<const std::byte>> segments_;
  bool splice_ = false;  // segments_ are one payload to vmsplice
  std::vector<Interest> interest_;
  // The ready batch.
  std::vector<ReadyEvent> batch_;
  size_t batch_pos_ = 0;
  uint32_t rounds_ = 0;
  bool exit_handled_ = false;  // batch_[batch_pos_] is an Exited event already given to the engine
  bool read_after_exit_ = false;
  size_t read_requested_ = 0;  // the size of the current (not after-exit) Read
  bool item_over_ = false;
  WriteObserver write_observer_;  // the current item's pipe would block or ended
};

}  // namespace pipepool::protocol
