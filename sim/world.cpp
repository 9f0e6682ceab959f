#include "world.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace pipepool::sim {

using protocol::ChildEngine;
using protocol::Command;
using protocol::Completion;
using protocol::TaskId;
using protocol::WorkerId;

namespace {

inline uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// What a step did, for the trace hash and the processes' histories.
enum StepKind : uint64_t {
  kSubmit = 1,
  kTerminate,
  kJoin,
  kApply,
  kParentWrite,
  kParentContinue,
  kEpollWait,
  kParentRead,
  kParentNbWrite,
  kReap,
  kTimer,
  kWorkerRead,
  kWorkerRun,
  kWorkerWrite,
  kWorkerContinue,
  kWorkerExit,
  kForked,
  kKilled,
  kTimeAdvance,
};

size_t total_size(std::span<const std::span<const std::byte>> segments) {
  size_t total = 0;
  for (const auto& s : segments) total += s.size();
  return total;
}

// Whether a blocking write of `total` bytes would move any byte now, or return at once (EPIPE):
// a free slot, no reader, or room behind the last buffer for the merge step (anon_pipe_write).
bool write_can_start(const PipeModel& pipe, size_t total) {
  if (pipe.writer_can_proceed()) return true;
  const size_t chars = total & (pipe.page_size() - 1);
  if (chars == 0 || pipe.slots_used() == 0) return false;
  const PipeModel::BufferView last = pipe.buffer(pipe.slots_used() - 1);
  return size_t{last.offset} + last.len + chars <= pipe.page_size();
}

// "Task frame of task 2 (32 + 65537 = 65569 bytes)" when the segments start at a frame's header.
std::string describe_frame(std::span<const std::span<const std::byte>> segments) {
  if (segments.empty()) return "";
  if (segments[0].size() != protocol::kHeaderBytes) return "the rest of a frame";
  const std::byte* h = segments[0].data();
  auto kind = static_cast<protocol::FrameKind>(h[4]);
  uint64_t task = 0, payload = 0;
  std::memcpy(&task, h + 8, 8);
  std::memcpy(&payload, h + 16, 8);
  std::string out = std::string(protocol::to_string(kind)) + " frame";
  if (kind != protocol::FrameKind::RunBatch && kind != protocol::FrameKind::Shutdown) {
    out += " of task " + std::to_string(task);
  }
  out += " (" + std::to_string(protocol::kHeaderBytes) + " + " + std::to_string(payload) + " = " +
         std::to_string(protocol::kHeaderBytes + payload) + " bytes)";
  if (segments.size() > 2 || (segments.size() == 2 && payload == 0)) out += " and more frames";
  return out;
}

}  // namespace

std::string process_name(uint32_t process) {
  if (process == kUserProcess) return "U";
  if (process == kParentProcess) return "P";
  return "W" + std::to_string(process - kFirstWorkerProcess);
}

std::string arrow_names(const std::vector<uint32_t>& processes) {
  std::string out;
  for (uint32_t p : processes) {
    if (!out.empty()) out += " -> ";
    out += process_name(p);
  }
  return out;
}

std::string process_long_name(uint32_t process) {
  if (process == kUserProcess) return "the user";
  if (process == kParentProcess) return "the parent";
  return "worker " + std::to_string(process - kFirstWorkerProcess);
}

const char* to_string(RunStatus status) {
  switch (status) {
    case RunStatus::Running:
      return "running";
    case RunStatus::Finished:
      return "finished";
    case RunStatus::Deadlock:
      return "deadlock";
    case RunStatus::StepLimit:
      return "step-limit";
    case RunStatus::Failed:
      return "failed";
  }
  return "?";
}

// ---- processes ---------------------------------------------------------------------------------

struct World::Pipe {
  explicit Pipe(PipeConfig config) : model(config) {}
  PipeModel model;
  uint64_t written = 0;  // bytes ever written
  uint64_t read = 0;     // bytes ever read
};

struct World::Worker {
  enum class Phase : uint8_t { None, Alive, Zombie };
  Phase phase = Phase::None;
  std::optional<ChildEngine> engine;
  ChildEngine::Action action;  // what engine->next() asked for
  uint64_t run_output_bytes = 0;
  uint64_t wake_us = 0;   // Run: when the task ends
  bool in_write = false;  // asleep inside a writev(2)
  size_t write_done = 0;
  size_t write_total = 0;
  protocol::ExitInfo exit;
  uint64_t history = 0;
  uint32_t incarnation = 0;
  std::optional<Pipe> task;    // parent -> worker
  std::optional<Pipe> result;  // worker -> parent
};

struct World::Parent {
  enum class Phase : uint8_t { Top, Writing, Dispatch, Done };
  struct Event {
    enum class Kind : uint8_t { Read, Write, Reap, Timer };
    Kind kind;
    WorkerId worker;
    TaskId task;
    uint32_t attempt;
  };
  struct Timer {
    uint64_t due_us;
    TaskId task;
    uint32_t attempt;
  };
  Phase phase = Phase::Top;
  WorkerId write_worker = 0;
  size_t write_done = 0;
  size_t write_total = 0;
  std::vector<std::span<const std::byte>> segments;
  std::vector<Event> ready;  // the last epoll_wait's snapshot
  size_t ready_pos = 0;
  std::vector<Command> commands;
  std::vector<Timer> timers;
  uint64_t history = 0;
};

struct World::User {
  size_t op = 0;
  TaskId wait_cursor = 0;  // WaitTasks: tasks below it are known complete
  bool joined = false;
  uint64_t history = 0;
};

// ---- construction ------------------------------------------------------------------------------

namespace {
// A user's scheduler without clone(): every run uses the one instance.
class SharedScheduler final : public Scheduler {
 public:
  explicit SharedScheduler(std::shared_ptr<Scheduler> shared) : shared_(std::move(shared)) {}
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random& random) override {
    return shared_->pick(workers, random);
  }
  std::string_view name() const override { return shared_->name(); }

 private:
  std::shared_ptr<Scheduler> shared_;
};
}  // namespace

World::World(std::shared_ptr<const Script> script, WorldOptions options)
    : script_(std::move(script)), options_(options), workers_count_(script_->scenario.workers) {
  const Scenario& s = script_->scenario;
  pipe_config_.slots = s.pipe_pages;
  pipe_config_.page_size = s.page_size;
  const IoStrategy& strategy =
      s.custom_strategy ? *s.custom_strategy : builtin_strategy(s.strategy);
  child_config_.mode = strategy.child_mode();
  child_config_.max_tasks = s.max_tasks_per_child;
  child_config_.send_started = s.task_timeout_us != 0;
  child_config_.read_ahead_bytes = strategy.child_read_ahead_bytes();
  protocol::ParentConfig config;
  config.workers = s.workers;
  config.max_tasks_per_child = s.max_tasks_per_child;
  config.task_timeouts = s.task_timeout_us != 0;
  config.max_retries = s.max_retries;
  config.seed = s.engine_seed;
  if (s.custom_scheduler) {
    scheduler_ = s.custom_scheduler->clone();
    if (!scheduler_) scheduler_ = std::make_unique<SharedScheduler>(s.custom_scheduler);
  } else {
    scheduler_ = make_scheduler(s.scheduler, s.demand_max_in_flight);
  }
  engine_ = std::make_unique<protocol::ParentEngine>(config, strategy, *scheduler_);
  user_ = std::make_unique<User>();
  parent_ = std::make_unique<Parent>();
  for (uint32_t w = 0; w < workers_count_; ++w) workers_.push_back(std::make_unique<Worker>());
  completions_.assign(script_->task_count(), 0);
  schedule_.reserve(1024);
  parent_->segments.reserve(128);
  parent_->ready.reserve(3 * workers_count_ + 4);
  // The pool's constructor starts its workers before it returns to the user.
  drain_engine();
  for (size_t i = 0; i < parent_->commands.size(); ++i) {
    const Command command = parent_->commands[i];
    execute(command);
    drain_engine();
  }
  parent_->commands.clear();
}

World::~World() = default;

const protocol::EngineStats& World::engine_stats() const {
  return engine_->stats();
}

uint64_t World::pipe_ops() const {
  uint64_t ops = closed_pipe_ops_;
  for (const auto& k : workers_) {
    if (k->task) ops += k->task->model.ops() + k->result->model.ops();
  }
  return ops;
}

void World::fail(std::string why) {
  if (status_ != RunStatus::Running && status_ != RunStatus::Finished) return;
  status_ = RunStatus::Failed;
  failure_ = std::move(why);
}

void World::note(uint32_t process, uint64_t kind, uint64_t value) {
  const uint64_t v = (kind << 56) ^ value;
  trace_hash_ = mix(mix(trace_hash_, (uint64_t{process} << 48) ^ v), now_us_);
  if (process == kUserProcess) {
    user_->history = mix(user_->history, v);
  } else if (process == kParentProcess) {
    parent_->history = mix(parent_->history, v);
  } else if (process != kMaxProcesses) {
    Worker& k = *workers_[process - kFirstWorkerProcess];
    k.history = mix(k.history, v);
  }
}

void World::trace_line(uint32_t process, const std::string& text) {
  // Step n (from 1) is the n-th letter of the schedule; "init" is the pool's construction.
  std::string line = schedule_.empty() && process != kMaxProcesses
                         ? std::string("init")
                         : "#" + std::to_string(schedule_.size());
  line += " t=" + format_ms(now_us_) + "ms ";
  line += process == kMaxProcesses ? std::string("--") : process_name(process);
  line += " " + text;
  trace_.push_back(std::move(line));
}

PipeState World::pipe_state(uint32_t w, bool task_pipe) const {
  PipeState state;
  state.worker = w;
  state.task_pipe = task_pipe;
  state.name = std::string(task_pipe ? "task" : "result") + " pipe of worker " + std::to_string(w);
  const Worker& k = *workers_[w];
  const std::optional<Pipe>& pipe = task_pipe ? k.task : k.result;
  if (!pipe) return state;
  state.slots_used = pipe->model.slots_used();
  state.slots = pipe->model.slots();
  state.bytes = pipe->model.bytes();
  state.has_reader = pipe->model.has_reader();
  state.has_writer = pipe->model.has_writer();
  state.describe = pipe->model.describe();
  return state;
}

// ---- runnable ----------------------------------------------------------------------------------

void World::advance_user() {
  const auto& ops = script_->ops;
  while (user_->op < ops.size() && ops[user_->op].kind == Script::Op::Kind::WaitTasks) {
    const Script::Op& op = ops[user_->op];
    TaskId& cursor = user_->wait_cursor;
    if (cursor < op.first_task) cursor = op.first_task;
    while (cursor < op.end_task && completions_[cursor - 1] != 0) ++cursor;
    if (cursor < op.end_task) return;
    ++user_->op;
    user_->wait_cursor = 0;
  }
}

bool World::user_runnable() {
  if (user_->joined) return false;
  advance_user();
  return user_->op < script_->ops.size() &&
         script_->ops[user_->op].kind != Script::Op::Kind::WaitTasks;
}

bool World::epoll_ready() const {
  for (WorkerId w = 0; w < workers_count_; ++w) {
    const Worker& k = *workers_[w];
    if (k.phase == Worker::Phase::Zombie) return true;
    if (!k.result) continue;
    if (engine_->wants_read(w) && (k.result->model.readable() || k.result->model.hup())) {
      return true;
    }
    if (engine_->wants_write(w) && (k.task->model.writable() || k.task->model.err())) return true;
  }
  for (const Parent::Timer& t : parent_->timers) {
    if (t.due_us <= now_us_) return true;
  }
  return false;
}

bool World::parent_runnable() {
  switch (parent_->phase) {
    case Parent::Phase::Top:
      // Entering write(2) is always possible; it may sleep at once (continue: Writing).
      if (!queue_.empty() || !parent_->commands.empty()) return true;
      if (engine_->blocking_write_due()) return true;
      return epoll_ready();
    case Parent::Phase::Writing:
      return workers_[parent_->write_worker]->task->model.writer_can_proceed();
    case Parent::Phase::Dispatch:
      return true;
    case Parent::Phase::Done:
      return false;
  }
  return false;
}

bool World::worker_runnable(uint32_t w) const {
  const Worker& k = *workers_[w];
  if (k.phase != Worker::Phase::Alive) return false;
  switch (k.action.op) {
    case ChildEngine::Op::Read:
      return k.task->model.reader_can_proceed();
    case ChildEngine::Op::Run:
      return now_us_ >= k.wake_us;
    case ChildEngine::Op::Write:
      // A write that could not move a byte has no effect anyone sees: it only sleeps. So it
      // counts as blocked before it is entered, and the step is taken once it can do something.
      return k.in_write ? k.result->model.writer_can_proceed()
                        : write_can_start(k.result->model, k.write_total);
    case ChildEngine::Op::Exit:
      return true;
  }
  return false;
}

uint64_t World::poll() {
  if (status_ != RunStatus::Running) return 0;
  if (user_->joined && parent_->phase == Parent::Phase::Done) {
    finish_run();
    return 0;
  }
  if (schedule_.size() >= options_.max_steps) {
    status_ = RunStatus::StepLimit;
    failure_ = "the run did not finish within " + std::to_string(options_.max_steps) +
               " steps (livelock, or a step bound too small: --max-steps)";
    return 0;
  }
  for (;;) {
    uint64_t mask = 0;
    if (user_runnable()) mask |= uint64_t{1} << kUserProcess;
    if (parent_runnable()) mask |= uint64_t{1} << kParentProcess;
    for (uint32_t w = 0; w < workers_count_; ++w) {
      if (worker_runnable(w)) mask |= uint64_t{1} << (kFirstWorkerProcess + w);
    }
    if (mask != 0) return mask;
    // Nobody can run: let virtual time pass to the next wake-up.
    uint64_t next = UINT64_MAX;
    for (const auto& k : workers_) {
      if (k->phase == Worker::Phase::Alive && k->action.op == ChildEngine::Op::Run &&
          k->wake_us > now_us_) {
        next = std::min(next, k->wake_us);
      }
    }
    for (const Parent::Timer& t : parent_->timers) {
      if (t.due_us > now_us_) next = std::min(next, t.due_us);
    }
    if (next == UINT64_MAX) {
      build_deadlock_report();
      status_ = RunStatus::Deadlock;
      return 0;
    }
    now_us_ = next;
    note(kMaxProcesses, kTimeAdvance, next);
    if (options_.trace) trace_line(kMaxProcesses, "time advances to " + format_ms(next) + " ms");
  }
}

void World::step(uint32_t process) {
  schedule_.push_back(static_cast<uint8_t>(process));
  if (process == kUserProcess) {
    step_user();
  } else if (process == kParentProcess) {
    step_parent();
  } else {
    step_worker(process - kFirstWorkerProcess);
  }
}

// ---- the user ----------------------------------------------------------------------------------

void World::step_user() {
  const Script::Op& op = script_->ops[user_->op];
  switch (op.kind) {
    case Script::Op::Kind::Submit:
      queue_.push_back({QueueItem::Kind::Tasks, user_->op});
      note(kUserProcess, kSubmit, user_->op);
      if (options_.trace) {
        const Call& call = script_->scenario.calls[op.call];
        std::string tasks =
            op.end_task - op.first_task == 1
                ? "task " + std::to_string(op.first_task)
                : "tasks " + std::to_string(op.first_task) + ".." + std::to_string(op.end_task - 1);
        trace_line(kUserProcess, describe_call(call) + ": queues " + tasks);
      }
      break;
    case Script::Op::Kind::Terminate:
      queue_.push_back({QueueItem::Kind::Terminate, user_->op});
      note(kUserProcess, kTerminate, user_->op);
      if (options_.trace) trace_line(kUserProcess, "terminate()");
      break;
    case Script::Op::Kind::Join:
      queue_.push_back({QueueItem::Kind::Shutdown, user_->op});
      user_->joined = true;
      note(kUserProcess, kJoin, user_->op);
      if (options_.trace) trace_line(kUserProcess, "close(); join(): waits for the pool");
      break;
    case Script::Op::Kind::WaitTasks:
      break;  // never runnable
  }
  ++user_->op;
}

// ---- the parent --------------------------------------------------------------------------------

void World::step_parent() {
  // The real driver hands the engine its clock at each loop turn; here, virtual time.
  engine_->set_time(now_us_ * 1000);
  switch (parent_->phase) {
    case Parent::Phase::Top:
      if (!queue_.empty() || !parent_->commands.empty()) {
        parent_apply();
      } else if (std::optional<WorkerId> w = engine_->blocking_write_due()) {
        parent_start_write(*w);
      } else {
        parent_epoll_wait();
      }
      break;
    case Parent::Phase::Writing:
      parent_continue_write();
      break;
    case Parent::Phase::Dispatch:
      parent_dispatch();
      break;
    case Parent::Phase::Done:
      break;
  }
  parent_after_step();
}

void World::drain_engine() {
  if (!engine_->has_output()) return;
  for (const Command& c : engine_->take_commands()) parent_->commands.push_back(c);
  completion_scratch_ = engine_->take_completions();
  for (Completion& c : completion_scratch_) record_completion(std::move(c));
  completion_scratch_.clear();
}

void World::record_completion(Completion c) {
  if (c.task == 0 || c.task > script_->task_count()) {
    fail("the engine completed task " + std::to_string(c.task) + ", which was never submitted");
    return;
  }
  if (++completions_[c.task - 1] > 1) {
    fail("task " + std::to_string(c.task) + " completed twice");
    return;
  }
  ++completed_count_;
  const std::string task = "task " + std::to_string(c.task);
  switch (c.kind) {
    case Completion::Kind::Result:
      if (c.payload.size() != script_->task(c.task).output_bytes) {
        fail(task + " returned " + std::to_string(c.payload.size()) + " result bytes, expected " +
             std::to_string(script_->task(c.task).output_bytes));
      }
      break;
    case Completion::Kind::Terminated:
      if (!terminate_applied_) fail(task + " completed as Terminated without terminate()");
      break;
    case Completion::Kind::RemoteError:
      fail(task + " completed with a remote error");
      break;
    case Completion::Kind::WorkerLost:
      fail(task + " was lost: " + c.message);
      break;
    case Completion::Kind::ProtocolError:
      fail(task + " failed with a protocol error: " + c.message);
      break;
    case Completion::Kind::Timeout:
      // Expected when the task runs longer than the timeout; a failure otherwise.
      if (script_->task(c.task).duration_us <= script_->scenario.task_timeout_us) {
        fail(task + " timed out although it runs " + format_ms(script_->task(c.task).duration_us) +
             " ms: " + c.message);
      }
      break;
  }
  if (options_.trace) trace_line(kParentProcess, "completes " + task);
}

void World::execute(const Command& command) {
  const WorkerId w = command.worker;
  switch (command.kind) {
    case Command::Kind::StartWorker: {
      Worker& k = *workers_[w];
      if (k.phase != Worker::Phase::None) {
        fail("the engine started worker " + std::to_string(w) + " while its process still exists");
        return;
      }
      if (k.task) closed_pipe_ops_ += k.task->model.ops() + k.result->model.ops();
      k.task.emplace(pipe_config_);
      k.result.emplace(pipe_config_);
      k.engine.emplace(child_config_);
      ++k.incarnation;
      k.in_write = false;
      k.phase = Worker::Phase::Alive;
      note(kFirstWorkerProcess + w, kForked, k.incarnation);
      fetch_action(w);
      if (options_.trace) trace_line(kParentProcess, "forks worker " + std::to_string(w));
      engine_->worker_started(w);
      break;
    }
    case Command::Kind::KillWorker:
      if (workers_[w]->phase == Worker::Phase::Alive) {
        if (options_.trace) trace_line(kParentProcess, "kills worker " + std::to_string(w));
        worker_exit(w, 9, -1, "killed by signal 9 (SIGKILL)");
      }
      break;
    case Command::Kind::ArmTimer:
      parent_->timers.push_back(
          {now_us_ + script_->scenario.task_timeout_us, command.task, command.attempt});
      break;
  }
}

void World::parent_apply() {
  note(kParentProcess, kApply, queue_.size());
  if (options_.trace) {
    trace_line(kParentProcess, "applies " + std::to_string(parent_->commands.size()) +
                                   " command(s) and " + std::to_string(queue_.size()) +
                                   " queued call(s)");
  }
  auto run_commands = [&] {
    for (size_t i = 0; i < parent_->commands.size(); ++i) {
      const Command command = parent_->commands[i];
      execute(command);
      drain_engine();
    }
    parent_->commands.clear();
  };
  run_commands();
  while (!queue_.empty()) {
    const QueueItem item = queue_.front();
    queue_.pop_front();
    switch (item.kind) {
      case QueueItem::Kind::Tasks: {
        const Script::Op& op = script_->ops[item.op];
        std::vector<protocol::TaskSubmission> tasks;
        tasks.reserve(op.end_task - op.first_task);
        for (TaskId id = op.first_task; id < op.end_task; ++id) {
          tasks.push_back({id, script_->payloads[id - 1]});
        }
        engine_->submit(std::move(tasks));
        break;
      }
      case QueueItem::Kind::Shutdown:
        engine_->begin_shutdown();
        break;
      case QueueItem::Kind::Terminate:
        terminate_applied_ = true;
        engine_->terminate();
        break;
    }
    drain_engine();
  }
  run_commands();
}

void World::parent_start_write(WorkerId w) {
  Parent& p = *parent_;
  p.segments.clear();
  p.write_total = engine_->pending_write(w, p.segments);
  p.write_worker = w;
  p.write_done = 0;
  Pipe& pipe = *workers_[w]->task;
  const PipeModel::WriteResult r = pipe.model.writev(p.segments, /*nonblocking=*/false);
  pipe.written += r.written;
  note(kParentProcess, kParentWrite, (uint64_t{w} << 40) ^ static_cast<uint64_t>(r.result));
  if (options_.trace) {
    trace_line(kParentProcess, "write(2) task pipe " + std::to_string(w) + ": " +
                                   describe_frame(p.segments) + " -> " + std::to_string(r.result) +
                                   (r.blocked ? ", sleeps" : "") + " [" + pipe.model.describe() +
                                   "]");
  }
  if (r.blocked) {
    p.write_done = static_cast<size_t>(r.result);
    p.phase = Parent::Phase::Writing;
  } else {
    parent_finish_write(r.result);
  }
}

void World::parent_continue_write() {
  Parent& p = *parent_;
  Pipe& pipe = *workers_[p.write_worker]->task;
  const PipeModel::WriteResult r = pipe.model.continue_writev(p.segments, p.write_done);
  pipe.written += r.written;
  note(kParentProcess, kParentContinue, static_cast<uint64_t>(r.result));
  if (options_.trace) {
    trace_line(kParentProcess,
               "write(2) task pipe " + std::to_string(p.write_worker) + " wakes: +" +
                   std::to_string(r.written) + " (" + std::to_string(p.write_done + r.written) +
                   " of " + std::to_string(p.write_total) + ")" +
                   (r.blocked ? ", sleeps" : ", returns " + std::to_string(r.result)) + " [" +
                   pipe.model.describe() + "]");
  }
  if (r.blocked) {
    p.write_done = static_cast<size_t>(r.result);
  } else {
    parent_finish_write(r.result);
  }
}

void World::parent_finish_write(int64_t result) {
  Parent& p = *parent_;
  p.phase = Parent::Phase::Top;
  if (result > 0) {
    engine_->bytes_written(p.write_worker, static_cast<size_t>(result));
  } else if (result == -EPIPE) {
    engine_->write_failed(p.write_worker, EPIPE);
  } else {
    fail("the parent's write(2) to task pipe " + std::to_string(p.write_worker) + " returned " +
         std::to_string(result));
  }
}

void World::parent_epoll_wait() {
  Parent& p = *parent_;
  p.ready.clear();
  p.ready_pos = 0;
  uint64_t h = 0;
  for (WorkerId w = 0; w < workers_count_; ++w) {
    const Worker& k = *workers_[w];
    if (k.result && engine_->wants_read(w) &&
        (k.result->model.readable() || k.result->model.hup())) {
      p.ready.push_back({Parent::Event::Kind::Read, w, 0, 0});
    }
    if (k.task && engine_->wants_write(w) && (k.task->model.writable() || k.task->model.err())) {
      p.ready.push_back({Parent::Event::Kind::Write, w, 0, 0});
    }
    if (k.phase == Worker::Phase::Zombie) p.ready.push_back({Parent::Event::Kind::Reap, w, 0, 0});
  }
  for (const Parent::Timer& t : p.timers) {
    if (t.due_us <= now_us_) {
      p.ready.push_back({Parent::Event::Kind::Timer, 0, t.task, t.attempt});
    }
  }
  std::string text;
  for (const Parent::Event& e : p.ready) {
    h = mix(h, (static_cast<uint64_t>(e.kind) << 56) ^ (uint64_t{e.worker} << 40) ^
                   (uint64_t{e.attempt} << 32) ^ e.task);
    if (options_.trace) {
      static const char* const kNames[] = {"read", "write", "reap", "timer"};
      text += std::string(text.empty() ? "" : ", ") + kNames[static_cast<int>(e.kind)] + " " +
              (e.kind == Parent::Event::Kind::Timer ? "task " + std::to_string(e.task)
                                                    : "W" + std::to_string(e.worker));
    }
  }
  note(kParentProcess, kEpollWait, h);
  if (options_.trace) trace_line(kParentProcess, "epoll_wait -> " + text);
  p.phase = Parent::Phase::Dispatch;
}

void World::parent_dispatch() {
  Parent& p = *parent_;
  const Parent::Event e = p.ready[p.ready_pos++];
  Worker& k = *workers_[e.worker];
  switch (e.kind) {
    case Parent::Event::Kind::Read: {
      const std::span<std::byte> buffer = engine_->read_buffer(e.worker);
      if (buffer.empty()) {
        fail("the parent engine asked to read 0 bytes from worker " + std::to_string(e.worker));
        return;
      }
      const PipeModel::ReadResult r = k.result->model.read(buffer, /*nonblocking=*/true);
      note(kParentProcess, kParentRead,
           (uint64_t{e.worker} << 40) ^ static_cast<uint64_t>(r.result));
      if (options_.trace) {
        trace_line(kParentProcess, "read(2) result pipe " + std::to_string(e.worker) + ", wants " +
                                       std::to_string(buffer.size()) + " -> " +
                                       std::to_string(r.result) + " [" +
                                       k.result->model.describe() + "]");
      }
      if (r.result > 0) {
        k.result->read += static_cast<uint64_t>(r.result);
        engine_->bytes_read(e.worker, static_cast<size_t>(r.result));
      } else if (r.result == 0) {
        engine_->result_eof(e.worker);
      } else {
        fail("read(2) of a ready result pipe returned " + std::to_string(r.result));
      }
      break;
    }
    case Parent::Event::Kind::Write: {
      p.segments.clear();
      engine_->pending_write(e.worker, p.segments);
      const PipeModel::WriteResult r = k.task->model.writev(p.segments, /*nonblocking=*/true);
      k.task->written += r.written;
      note(kParentProcess, kParentNbWrite,
           (uint64_t{e.worker} << 40) ^ static_cast<uint64_t>(r.result));
      if (options_.trace) {
        trace_line(kParentProcess, "write(2) task pipe " + std::to_string(e.worker) +
                                       " (non-blocking): " + describe_frame(p.segments) + " -> " +
                                       std::to_string(r.result) + " [" + k.task->model.describe() +
                                       "]");
      }
      if (r.result > 0) {
        engine_->bytes_written(e.worker, static_cast<size_t>(r.result));
      } else if (r.result == -EPIPE) {
        engine_->write_failed(e.worker, EPIPE);
      } else {
        fail("write(2) to a writable task pipe returned " + std::to_string(r.result));
      }
      break;
    }
    case Parent::Event::Kind::Reap:
      k.phase = Worker::Phase::None;
      note(kParentProcess, kReap, e.worker);
      if (options_.trace) {
        trace_line(kParentProcess,
                   "reaps worker " + std::to_string(e.worker) + ": " + k.exit.description);
      }
      engine_->worker_exited(e.worker, k.exit);
      break;
    case Parent::Event::Kind::Timer: {
      auto it = std::find_if(p.timers.begin(), p.timers.end(), [&](const Parent::Timer& t) {
        return t.task == e.task && t.attempt == e.attempt;
      });
      if (it != p.timers.end()) p.timers.erase(it);
      note(kParentProcess, kTimer, (uint64_t{e.attempt} << 40) ^ e.task);
      if (options_.trace) {
        trace_line(kParentProcess, "timer of task " + std::to_string(e.task) + " (attempt " +
                                       std::to_string(e.attempt) + ") expires");
      }
      engine_->timer_fired(e.task, e.attempt);
      break;
    }
  }
}

void World::parent_after_step() {
  drain_engine();
  Parent& p = *parent_;
  if (p.phase == Parent::Phase::Dispatch) {
    if (!p.commands.empty() || engine_->blocking_write_due()) {
      p.phase = Parent::Phase::Top;  // back to the loop's top; epoll will report the rest again
    } else {
      while (p.ready_pos < p.ready.size()) {
        const Parent::Event& e = p.ready[p.ready_pos];
        const bool stale =
            (e.kind == Parent::Event::Kind::Read && !engine_->wants_read(e.worker)) ||
            (e.kind == Parent::Event::Kind::Write && !engine_->wants_write(e.worker)) ||
            (e.kind == Parent::Event::Kind::Reap &&
             workers_[e.worker]->phase != Worker::Phase::Zombie);
        if (!stale) break;
        ++p.ready_pos;
      }
      if (p.ready_pos == p.ready.size()) p.phase = Parent::Phase::Top;
    }
  }
  if (p.phase == Parent::Phase::Top && queue_.empty() && p.commands.empty() && user_->joined &&
      engine_->finished()) {
    p.phase = Parent::Phase::Done;
    if (options_.trace) trace_line(kParentProcess, "the pool has shut down");
  }
}

// ---- workers -----------------------------------------------------------------------------------

void World::fetch_action(uint32_t w) {
  Worker& k = *workers_[w];
  k.action = k.engine->next();
  switch (k.action.op) {
    case ChildEngine::Op::Run: {
      TaskSpec spec;
      if (!decode_task_payload(*k.action.task_payload, spec)) {
        fail("worker " + std::to_string(w) + " got a task payload it cannot decode");
        return;
      }
      k.run_output_bytes = spec.output_bytes;
      k.wake_us = now_us_ + spec.duration_us;
      break;
    }
    case ChildEngine::Op::Write:
      k.write_total = total_size(k.action.write);
      k.write_done = 0;
      k.in_write = false;
      break;
    case ChildEngine::Op::Read:
    case ChildEngine::Op::Exit:
      break;
  }
}

void World::worker_exit(uint32_t w, int signal, int exit_code, const std::string& reason) {
  Worker& k = *workers_[w];
  k.task->model.close_reader();
  k.result->model.close_writer();
  k.phase = Worker::Phase::Zombie;
  k.in_write = false;
  k.exit = {};
  k.exit.signal = signal;
  k.exit.exit_code = exit_code;
  k.exit.description = signal != 0 ? "killed by signal " + std::to_string(signal) + " (SIGKILL)"
                                   : "exited with code " + std::to_string(exit_code);
  if (!reason.empty() && signal == 0) k.exit.description += " (" + reason + ")";
  k.engine.reset();
  k.action = {};
  note(kFirstWorkerProcess + w, signal != 0 ? kKilled : kWorkerExit,
       static_cast<uint64_t>(exit_code));
}

void World::step_worker(uint32_t w) {
  Worker& k = *workers_[w];
  const uint32_t process = kFirstWorkerProcess + w;
  switch (k.action.op) {
    case ChildEngine::Op::Read: {
      const PipeModel::ReadResult r = k.task->model.read(k.action.read_into, /*nonblocking=*/false);
      note(process, kWorkerRead, static_cast<uint64_t>(r.result));
      if (options_.trace) {
        trace_line(process, "read(2) task pipe, wants " +
                                std::to_string(k.action.read_into.size()) + " -> " +
                                std::to_string(r.result) + " [" + k.task->model.describe() + "]");
      }
      if (r.would_block || r.result < 0) {
        fail("worker " + std::to_string(w) + "'s read(2) returned " + std::to_string(r.result));
        return;
      }
      k.task->read += static_cast<uint64_t>(r.result);
      k.engine->bytes_read(static_cast<size_t>(r.result));
      break;
    }
    case ChildEngine::Op::Run:
      note(process, kWorkerRun, k.action.task);
      if (options_.trace) {
        trace_line(process, "runs task " + std::to_string(k.action.task) + " -> " +
                                std::to_string(k.run_output_bytes) + " result bytes");
      }
      k.engine->task_finished(true, std::string(k.run_output_bytes, 'r'));
      break;
    case ChildEngine::Op::Write: {
      const PipeModel::WriteResult r =
          k.in_write ? k.result->model.continue_writev(k.action.write, k.write_done)
                     : k.result->model.writev(k.action.write, /*nonblocking=*/false);
      k.result->written += r.written;
      note(process, k.in_write ? kWorkerContinue : kWorkerWrite, static_cast<uint64_t>(r.result));
      if (options_.trace) {
        trace_line(
            process,
            std::string(k.in_write ? "writev(2) result pipe wakes: +" : "writev(2) result pipe: ") +
                (k.in_write
                     ? std::to_string(r.written) + " (" + std::to_string(k.write_done + r.written) +
                           " of " + std::to_string(k.write_total) + ")"
                     : describe_frame(k.action.write) + " -> " + std::to_string(r.result)) +
                (r.blocked ? ", sleeps" : "") + " [" + k.result->model.describe() + "]");
      }
      if (r.blocked) {
        k.in_write = true;
        k.write_done = static_cast<size_t>(r.result);
        return;
      }
      k.in_write = false;
      if (r.result >= 0) {
        k.engine->bytes_written(static_cast<size_t>(r.result));
      } else {
        k.engine->write_failed(static_cast<int>(-r.result));
      }
      break;
    }
    case ChildEngine::Op::Exit: {
      const ChildEngine::Action action = k.action;
      if (options_.trace) {
        trace_line(process, "exits with code " + std::to_string(action.exit_code) + " (" +
                                action.exit_reason + ")");
      }
      worker_exit(w, 0, action.exit_code, action.exit_reason);
      return;
    }
  }
  fetch_action(w);
}

// ---- the end of a run --------------------------------------------------------------------------

void World::finish_run() {
  if (status_ != RunStatus::Running) return;
  status_ = RunStatus::Finished;
  if (completed_count_ != script_->task_count()) {
    fail(std::to_string(script_->task_count() - completed_count_) +
         " task(s) never completed, yet join() returned");
  }
}

uint64_t World::fingerprint() const {
  uint64_t h = mix(0x5157, now_us_);
  h = mix(h, user_->history);
  h = mix(h, (uint64_t{user_->joined} << 62) ^ (uint64_t{user_->op} << 32) ^ user_->wait_cursor);
  h = mix(h, queue_.size());
  const Parent& p = *parent_;
  h = mix(h, p.history);
  h = mix(h, (static_cast<uint64_t>(p.phase) << 56) ^ (uint64_t{p.ready_pos} << 32) ^
                 p.commands.size());
  h = mix(h, p.write_done);
  for (const Parent::Timer& t : p.timers)
    h = mix(mix(h, t.due_us), (uint64_t{t.attempt} << 40) ^ t.task);
  for (const auto& kp : workers_) {
    const Worker& k = *kp;
    h = mix(h, k.history);
    h = mix(h,
            (static_cast<uint64_t>(k.phase) << 56) ^ (uint64_t{k.in_write} << 48) ^ k.write_done);
    if (k.phase == Worker::Phase::Alive && k.action.op == ChildEngine::Op::Run) {
      h = mix(h, k.wake_us);
    }
    for (const std::optional<Pipe>* pipe : {&k.task, &k.result}) {
      if (!*pipe) continue;
      const PipeModel& m = (*pipe)->model;
      h = mix(h, (uint64_t{m.slots_used()} << 48) ^ (uint64_t{m.has_reader()} << 47) ^
                     (uint64_t{m.has_writer()} << 46) ^ m.bytes());
      h = mix(h, (*pipe)->written);
      for (uint32_t i = 0; i < m.slots_used(); ++i) {
        const PipeModel::BufferView b = m.buffer(i);
        h = mix(h, (uint64_t{b.offset} << 32) ^ b.len);
      }
    }
  }
  return h;
}

void World::build_deadlock_report() {
  auto report = std::make_unique<DeadlockReport>();
  report->step = schedule_.size();
  report->virtual_time_us = now_us_;
  for (WorkerId w = 0; w < workers_count_; ++w) {
    if (!workers_[w]->task) continue;
    report->pipes.push_back(pipe_state(w, true));
    report->pipes.push_back(pipe_state(w, false));
  }
  // The user.
  {
    ProcessWait u;
    u.process = kUserProcess;
    if (user_->joined) {
      u.call = "join";
      u.text = "waits in join() for the pool to shut down";
      u.waits_for = {kParentProcess};
    } else if (user_->op < script_->ops.size()) {
      const Script::Op& op = script_->ops[user_->op];
      u.call = "results";
      u.text = "waits for the results of tasks " + std::to_string(op.first_task) + ".." +
               std::to_string(op.end_task - 1) + " (" +
               describe_call(script_->scenario.calls[op.call]) + ")";
      u.waits_for = {kParentProcess};
    } else {
      u.call = "done";
      u.text = "has nothing left to do";
    }
    report->processes.push_back(std::move(u));
  }
  // The parent.
  {
    ProcessWait pw;
    pw.process = kParentProcess;
    const Parent& p = *parent_;
    if (p.phase == Parent::Phase::Writing) {
      const WorkerId w = p.write_worker;
      pw.call = "write";
      pw.pipe = pipe_state(w, true);
      pw.frame = describe_frame(p.segments);
      pw.call_bytes = p.write_total;
      pw.done_bytes = p.write_done;
      pw.wanted_bytes = p.write_total - p.write_done;
      pw.text = "blocked in write(2) to the task pipe of worker " + std::to_string(w) + ": " +
                pw.frame + ", " + std::to_string(pw.done_bytes) + " of " +
                std::to_string(pw.call_bytes) + " bytes written, " +
                std::to_string(pw.wanted_bytes) + " still wanted; only worker " +
                std::to_string(w) + " reads that pipe";
      pw.waits_for = {kFirstWorkerProcess + w};
    } else if (p.phase == Parent::Phase::Done) {
      pw.call = "done";
      pw.text = "has shut the pool down";
    } else {
      pw.call = "epoll_wait";
      std::string what;
      for (WorkerId w = 0; w < workers_count_; ++w) {
        const uint32_t proc = kFirstWorkerProcess + w;
        if (engine_->wants_read(w)) {
          what += std::string(what.empty() ? "" : ", ") + "the result pipe of worker " +
                  std::to_string(w) + " (" + workers_[w]->result->model.describe() + ")";
          pw.waits_for.push_back(proc);
        }
        if (engine_->wants_write(w)) {
          what += std::string(what.empty() ? "" : ", ") + "room in the task pipe of worker " +
                  std::to_string(w) + " (" + workers_[w]->task->model.describe() + ")";
          if (pw.waits_for.empty() || pw.waits_for.back() != proc) pw.waits_for.push_back(proc);
        }
      }
      if (!user_->joined) {
        what += std::string(what.empty() ? "" : ", ") + "new submissions";
        pw.waits_for.push_back(kUserProcess);
      }
      pw.text = "waits in epoll_wait for " + (what.empty() ? std::string("nothing") : what);
    }
    report->processes.push_back(std::move(pw));
  }
  // The workers.
  for (WorkerId w = 0; w < workers_count_; ++w) {
    const Worker& k = *workers_[w];
    ProcessWait ww;
    ww.process = kFirstWorkerProcess + w;
    if (k.phase == Worker::Phase::None) {
      ww.call = "exited";
      ww.text = k.incarnation == 0 ? "was never started" : "has exited and been reaped";
    } else if (k.phase == Worker::Phase::Zombie) {
      ww.call = "exited";
      ww.text = "has exited (" + k.exit.description + "), not yet reaped";
    } else if (k.action.op == ChildEngine::Op::Read) {
      ww.call = "read";
      ww.pipe = pipe_state(w, true);
      ww.call_bytes = k.action.read_into.size();
      ww.wanted_bytes = ww.call_bytes;
      ww.text = "blocked in read(2) of its task pipe, wants " + std::to_string(ww.call_bytes) +
                " bytes; only the parent writes that pipe";
      ww.waits_for = {kParentProcess};
    } else if (k.action.op == ChildEngine::Op::Write) {
      ww.call = "write";
      ww.pipe = pipe_state(w, false);
      ww.frame = describe_frame(k.action.write);
      ww.call_bytes = k.write_total;
      ww.done_bytes = k.write_done;
      ww.wanted_bytes = k.write_total - k.write_done;
      ww.text = "blocked in writev(2) to its result pipe: " + ww.frame + ", " +
                std::to_string(ww.done_bytes) + " of " + std::to_string(ww.call_bytes) +
                " bytes written, " + std::to_string(ww.wanted_bytes) +
                " still wanted; only the parent reads that pipe";
      ww.waits_for = {kParentProcess};
    } else {
      ww.call = "running";
      ww.text = "is runnable (inconsistent deadlock)";
    }
    report->processes.push_back(std::move(ww));
  }
  // A wait-for cycle through the parent if there is one, else through anyone.
  const size_t n = report->processes.size();
  auto find_cycle = [&](uint32_t start) -> std::vector<uint32_t> {
    std::vector<uint32_t> path{start};
    std::vector<size_t> next_edge{0};
    std::vector<bool> on_path(n, false), dead(n, false);
    on_path[start] = true;
    while (!path.empty()) {
      const uint32_t at = path.back();
      const auto& edges = report->processes[at].waits_for;
      if (next_edge.back() == edges.size()) {
        dead[at] = true;
        on_path[at] = false;
        path.pop_back();
        next_edge.pop_back();
        continue;
      }
      const uint32_t to = edges[next_edge.back()++];
      if (to >= n || dead[to]) continue;
      if (on_path[to]) {
        auto from = std::find(path.begin(), path.end(), to);
        std::vector<uint32_t> cycle(from, path.end());
        cycle.push_back(to);
        return cycle;
      }
      path.push_back(to);
      next_edge.push_back(0);
      on_path[to] = true;
    }
    return {};
  };
  report->cycle = find_cycle(kParentProcess);
  for (uint32_t start = 0; report->cycle.empty() && start < n; ++start) {
    report->cycle = find_cycle(start);
  }
  // The summary: each process on the cycle and why it waits.
  if (report->cycle.empty()) {
    report->summary =
        "no process can run and no wake-up is pending, but no wait-for cycle was "
        "found";
  } else {
    std::vector<uint32_t> members(report->cycle.begin(), report->cycle.end() - 1);
    report->summary = "wait-for cycle " + arrow_names(report->cycle) + ": ";
    for (size_t i = 0; i < members.size(); ++i) {
      const ProcessWait& pw = report->processes[members[i]];
      if (i != 0) report->summary += "; ";
      report->summary += process_long_name(pw.process) +
                         (pw.text.rfind("blocked", 0) == 0 ? " is " : " ") + pw.text;
      if (pw.pipe) report->summary += " [" + pw.pipe->name + ": " + pw.pipe->describe + "]";
    }
  }
  deadlock_ = std::move(report);
}

}  // namespace pipepool::sim
