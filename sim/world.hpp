// The simulated world: a user, the pool's parent and its workers as processes that run the real
// protocol engines (protocol::ParentEngine, protocol::ChildEngine) over PipeModel pipes, in virtual
// time. No system calls, no clock, no randomness: the explorer (explore.hpp) picks which runnable
// process takes the next step, and that choice alone decides the run.
//
// One step is one system call of one process (a read(2), a write(2) or one wake-up of a blocked
// write, an epoll_wait, a kill, a fork, an exit) or one task run. Example:
//
//   World world(make_script(scenario), {});
//   while (uint64_t runnable = world.poll()) {
//     world.step(std::countr_zero(runnable));      // always the lowest-numbered runnable process
//   }
//   if (world.status() == RunStatus::Deadlock) std::puts(world.deadlock().summary.c_str());
//
// Processes are numbered: 0 the user (U), 1 the parent (P), 2 + w worker slot w (Ww). A slot keeps
// its number across the worker processes the parent starts for it.
//
// Virtual time. System calls take no time; a task takes its scenario duration. A worker that begins
// a task sleeps until then; when no process can run, time jumps to the next wake-up (a task's end
// or a task timeout). If nothing is left to wake and the user has not returned from join(), the
// world is deadlocked.
//
// How each process behaves:
//   user    each call is one step that queues its tasks (as the real pool's queue + eventfd); apply
//           and map then wait for their results, join for the pool. A call after terminate() is
//           refused, as the real pool's PoolClosed.
//   parent  the pool's own loop, protocol::ParentLoop, executed action by action exactly as the
//           real driver executes it (pool/src/driver/pool_core.cpp); sim_parent.cpp carries the
//           actions out. One step is one system call the loop asks for: a blocking writev(2) of a
//           task frame (which may sleep on a full pipe and go on in later steps, as
//           PipeModel::continue_writev), a non-blocking writev(2) or read(2), or an epoll_wait
//           (runnable once something it watches is ready: a result pipe it reads, a task pipe it
//           writes, an exited worker, a submission, or its deadline). Actions that are no system
//           call of the parent's own (taking the user's queue, forking a worker, killing one,
//           delivering completions) are carried out within the step that precedes them.
//   worker  ChildEngine::next(): Read is one blocking read(2) (runnable once the pipe has bytes or
//           no writer), Run one step at the end of the task's duration, Write one blocking
//           writev(2) (and one step per wake-up while the pipe is full), Exit one step that closes
//           its pipe ends. The pool is built synchronously: workers exist from the start.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pipe_model.hpp"
#include "protocol/child_engine.hpp"
#include "protocol/parent_engine.hpp"
#include "protocol/parent_loop.hpp"
#include "scenario.hpp"
#include "socket_model.hpp"

namespace pipepool::sim {

inline constexpr uint32_t kUserProcess = 0;
inline constexpr uint32_t kParentProcess = 1;
inline constexpr uint32_t kFirstWorkerProcess = 2;
inline constexpr uint32_t kMaxProcesses = 64;

// "U", "P", "W0", ...
std::string process_name(uint32_t process);
// "P -> W0 -> P": the processes of a wait-for cycle.
std::string arrow_names(const std::vector<uint32_t>& processes);
// "the user", "the parent", "worker 0", ...
std::string process_long_name(uint32_t process);

enum class RunStatus {
  Running,
  Finished,   // the user returned from join() and every task completed as expected
  Deadlock,   // nobody can run, nothing is left to wake, the user has not finished
  StepLimit,  // the step bound was reached first: livelock, or a bound too small
  Failed,     // a wrong completion, an engine contract broken, or a replay that diverged
};
const char* to_string(RunStatus status);

// One direction of a worker's channel (a pipe, or one way of its socketpair), as a report shows
// it, in the same terms for both transports: the bytes queued for the reader, and the memory
// charged to the writer against its limit (a pipe: slots used of its ring, counted in pages; a
// socket: SIOCOUTQ of sk_sndbuf).
struct PipeState {
  std::string name;  // "task pipe of worker 0", "socket of worker 0 (tasks)"
  uint32_t worker = 0;
  bool task_pipe = true;            // the task direction (parent -> worker)
  bool socket = false;              // one direction of a socketpair
  uint32_t slots_used = 0;          // pipe: slots used
  uint32_t slots = 0;               // pipe: slots of the ring
  uint32_t skbs = 0;                // socket: skbs queued to the reader
  uint64_t bytes = 0;               // bytes queued for the reader (FIONREAD / SIOCINQ)
  uint64_t charged_bytes = 0;       // pipe: slots_used * page size; socket: SIOCOUTQ
  uint64_t charge_limit_bytes = 0;  // pipe: capacity; socket: the writer's sk_sndbuf
  bool has_reader = true;
  bool has_writer = true;
  std::string describe;  // PipeModel::describe() or SocketPairModel::describe(reader end)
};

// What one process is doing when the world deadlocks.
struct ProcessWait {
  uint32_t process = 0;
  // "write", "read", "epoll_wait", "results", "join", "exited", "done"
  std::string call;
  std::string text;  // one sentence: "blocked in write(2) to the task pipe of worker 0 ..."
  std::optional<PipeState> pipe;    // the pipe of a blocked read or write
  std::string frame;                // the frame a blocked write carries
  uint64_t call_bytes = 0;          // bytes the blocked call was asked for
  uint64_t done_bytes = 0;          // bytes it moved so far
  uint64_t wanted_bytes = 0;        // bytes it still wants
  std::vector<uint32_t> waits_for;  // processes that could unblock it
};

struct DeadlockReport {
  uint64_t step = 0;
  uint64_t virtual_time_us = 0;
  std::vector<ProcessWait> processes;  // every process that exists, in process order
  std::vector<uint32_t> cycle;         // a wait-for cycle, first == last (empty if none)
  std::vector<PipeState> pipes;        // every pipe of every worker slot
  std::string summary;                 // the cycle in one paragraph
};

struct WorldOptions {
  uint64_t max_steps = 1'000'000;
  bool trace = false;  // keep one line of text per step (slow; for reports and replays)
  // Sees the bytes the parent loop has the simulated parent write into each task pipe (the same
  // hook the real driver's tests use: ParentLoop::observe_writes).
  protocol::ParentLoop::WriteObserver write_observer{};
};

class World {
 public:
  World(std::shared_ptr<const Script> script, WorldOptions options);
  ~World();
  // A copy in the same state (world_state.cpp): every process, pipe, engine and the scheduler's
  // state (Scheduler::snapshot()), so that it runs on exactly as the original would, step for
  // step, with the same trace hash. The explorer branches from copies instead of replaying the
  // steps that led to a state. Throws std::logic_error unless copyable().
  World(const World& other);
  World& operator=(const World&) = delete;
  // False when the scenario's own scheduler keeps state that cannot be copied (its snapshot()
  // returns nullptr).
  bool copyable() const;

  uint32_t process_count() const { return kFirstWorkerProcess + workers_count_; }

  // Bit p set: process p can take a step now. When none can, advances virtual time to the next
  // wake-up, and ends the run (status() no longer Running) when nothing is left to wake, when the
  // user has finished, or at the step bound. Returns 0 once the run has ended.
  uint64_t poll();
  // One step of `process`, which the last poll() reported runnable.
  void step(uint32_t process);

  RunStatus status() const { return status_; }
  uint64_t steps() const { return schedule_.size(); }
  // The process of each step so far.
  const std::vector<uint8_t>& schedule() const { return schedule_; }
  // A hash of every step (process, call, outcome, time): equal traces, equal hashes.
  uint64_t trace_hash() const { return trace_hash_; }
  // A hash of everything that decides the world's future (world_state.cpp): virtual time, the
  // user's place in its script and what it has queued, which tasks completed, the parent loop's
  // and engine's state (protocol::ParentLoop::fingerprint) and the scheduler's, each worker's
  // engine and the call it is in, and every pipe's bytes and layout. Two worlds with equal
  // fingerprints take the same steps with the same outcomes when given the same choices from now
  // on, whatever schedules led to them (world_state_test.cpp checks it); the exhaustive explorer's
  // state cache is keyed by it. Falls back to history_fingerprint() when the scheduler cannot
  // fingerprint its state (Scheduler::state_fingerprint()).
  uint64_t fingerprint() const;
  // The old, coarser key: every process's history (its steps and their outcomes) instead of the
  // engines' state, with the pipes' layout. Sound, but keeps apart states that the schedules
  // reached in a different order. For comparison (--history-fingerprint) and for schedulers
  // that cannot fingerprint their state.
  uint64_t history_fingerprint() const;
  // Why a step of `process` is invisible (explore.cpp's coalescing and partial-order reduction):
  // taken now or later, its effect is the same, it stays runnable until taken, and no other
  // process's runnability or steps change with it. Only ever true for a worker; see
  // sim_worker.cpp for the two kinds and why each is invisible.
  enum class Invisible : uint8_t {
    No,
    Run,        // a due Run: purely local work (the engine's task_finished)
    InnerRead,  // a read(2) that gets all it asks from inside the oldest page, freeing no slot
  };
  Invisible invisible_step(uint32_t process) const;
  uint64_t now_us() const { return now_us_; }
  uint64_t pipe_ops() const;
  const std::string& failure() const { return failure_; }
  const DeadlockReport& deadlock() const { return *deadlock_; }
  const std::vector<std::string>& trace() const { return trace_; }
  const protocol::EngineStats& engine_stats() const;
  uint64_t tasks_completed() const { return completed_count_; }

  // Ends the run as Failed with `why` (a replay that asks for a process that cannot run).
  void fail(std::string why);

 private:
  struct Worker;
  struct Parent;
  struct User;
  struct QueueItem {
    enum class Kind : uint8_t { Tasks, Shutdown, Terminate };
    Kind kind;
    size_t op;  // Tasks: index in script ops
  };

  // world.cpp: the user, time, the end of a run.
  bool user_runnable();
  void advance_user();
  void step_user();
  void finish_run();
  // sim_parent.cpp: the executor of protocol::ParentLoop.
  bool parent_runnable() const;
  bool wait_ready() const;
  void step_parent();
  void advance_parent();
  void take_inbox();
  void start_worker(protocol::WorkerId w);
  void kill_worker(protocol::WorkerId w);
  void parent_write();
  void parent_read();
  void parent_wait();
  void record_completion(protocol::Completion& completion);
  // sim_worker.cpp: the simulated worker.
  bool worker_runnable(uint32_t w) const;
  void step_worker(uint32_t w);
  void fetch_action(uint32_t w);
  void worker_exit(uint32_t w, int signal, int exit_code, const std::string& reason);
  // deadlock.cpp
  void build_deadlock_report();
  // world_state.cpp: copies and fingerprints, one function per part of the world.
  // The parent (or worker w), made this world's own first if a copy of the world still shares
  // it: what every change goes through.
  Parent& own_parent();
  Worker& own_worker(uint32_t w);
  std::shared_ptr<Parent> copy_parent(const Parent& from);
  std::shared_ptr<Worker> copy_worker(const Worker& from);
  uint64_t fingerprint_user(uint64_t h) const;
  uint64_t fingerprint_parent(uint64_t h) const;
  uint64_t fingerprint_worker(uint64_t h, const Worker& k) const;
  uint64_t hash_parent(const Parent& p) const;
  uint64_t hash_worker(const Worker& k) const;

  PipeState pipe_state(uint32_t w, bool task_pipe) const;
  void note(uint32_t process, uint64_t kind, uint64_t value);
  void trace_line(uint32_t process, const std::string& text);

  std::shared_ptr<const Script> script_;
  WorldOptions options_;
  uint32_t workers_count_;
  PipeConfig pipe_config_;
  SocketConfig socket_config_;
  bool python_framing_ = false;  // Scenario::framing == Python (for the reports' frame names)
  protocol::EngineSetup setup_;
  std::shared_ptr<Scheduler> scheduler_;
  const IoStrategy* strategy_ = nullptr;
  std::unique_ptr<User> user_;
  // The parent and the workers are shared with copies of this world until one of them changes
  // (own_parent(), own_worker()): a copy of the world is a few pointers, and a step copies only
  // what it changes. Held as const so that nothing changes a shared one by mistake. The parent
  // shares scheduler_ with it (its loop holds a reference to it), and takes its own copy with it.
  std::shared_ptr<const Parent> parent_;
  std::vector<std::shared_ptr<const Worker>> workers_;
  std::deque<QueueItem> queue_;
  std::vector<uint8_t> completions_;  // per task: completions received
  uint64_t completed_count_ = 0;
  bool terminate_requested_ = false;  // the user called terminate()
  bool may_kill_ = true;  // the parent may kill a worker (terminate() or task timeouts in script)
  uint64_t now_us_ = 0;
  RunStatus status_ = RunStatus::Running;
  std::vector<uint8_t> schedule_;
  uint64_t trace_hash_ = 0;
  uint64_t closed_pipe_ops_ = 0;  // ops of pipes already replaced
  std::string failure_;
  std::unique_ptr<DeadlockReport> deadlock_;
  std::vector<std::string> trace_;
};

}  // namespace pipepool::sim
