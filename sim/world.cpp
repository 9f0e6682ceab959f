#include "world.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "protocol/config.hpp"
#include "world_internal.hpp"

namespace pipepool::sim {

using protocol::ChildEngine;
using protocol::Completion;
using protocol::TaskId;
using protocol::WorkerId;

// Whether a blocking write of `total` bytes would move any byte now, or return at once (EPIPE):
// a free slot, no reader, or room behind the last buffer for the merge step (anon_pipe_write).
bool write_can_start(const PipeModel& pipe, size_t total) {
  if (pipe.writer_can_proceed()) return true;
  const size_t chars = total & (pipe.page_size() - 1);
  if (chars == 0 || pipe.slots_used() == 0) return false;
  const PipeModel::BufferView last = pipe.buffer(pipe.slots_used() - 1);
  return last.can_merge && size_t{last.offset} + last.len + chars <= pipe.page_size();
}

namespace {

// "Task frame of task 2" from a frame's 32-byte header; the payload length into `payload`.
std::string header_text(const std::byte* h, uint64_t& payload) {
  const auto kind = static_cast<protocol::FrameKind>(h[4]);
  uint64_t task = 0;
  std::memcpy(&task, h + 8, 8);
  std::memcpy(&payload, h + 16, 8);
  std::string out = std::string(protocol::to_string(kind)) + " frame";
  if (kind != protocol::FrameKind::RunBatch && kind != protocol::FrameKind::Shutdown) {
    out += " of task " + std::to_string(task);
  }
  return out;
}

// Python's framing: one write unit of a message (see protocol/frame.hpp), its length in front
// (4 bytes, or 12), then the body (the header, the payload, zero padding) or the body alone.
std::string describe_python_unit(std::span<const std::span<const std::byte>> segments) {
  const size_t total = total_size(segments);
  const size_t first = segments[0].size();
  const bool starts_with_length =
      (first == 4 || first == 12) &&
      (segments.size() == 1 || segments[1].size() == protocol::kHeaderBytes);
  uint64_t payload = 0;
  if (starts_with_length && segments.size() == 1) {
    return "the " + std::to_string(first) + "-byte length of a Python message";
  }
  if (starts_with_length) {
    const std::string what = header_text(segments[1].data(), payload);
    return "Python message: " + what + " (" + std::to_string(first) + "-byte length + " +
           std::to_string(total - first) + "-byte body = " + std::to_string(total) + " bytes)";
  }
  if (first == protocol::kHeaderBytes) {
    const std::string what = header_text(segments[0].data(), payload);
    return "the body of a Python message: " + what + " (" + std::to_string(total) + " bytes)";
  }
  return "the rest of a Python message";
}

}  // namespace

std::string describe_frame(std::span<const std::span<const std::byte>> segments, bool python) {
  if (segments.empty()) return "";
  if (python) return describe_python_unit(segments);
  if (segments[0].size() != protocol::kHeaderBytes) return "the rest of a frame";
  uint64_t payload = 0;
  std::string out = header_text(segments[0].data(), payload);
  out += " (" + std::to_string(protocol::kHeaderBytes) + " + " + std::to_string(payload) + " = " +
         std::to_string(protocol::kHeaderBytes + payload) + " bytes)";
  if (segments.size() > 2 || (segments.size() == 2 && payload == 0)) out += " and more frames";
  return out;
}

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

// ---- construction ------------------------------------------------------------------------------

World::World(std::shared_ptr<const Script> script, WorldOptions options)
    : script_(std::move(script)), options_(options), workers_count_(script_->scenario.workers) {
  const Scenario& s = script_->scenario;
  pipe_config_.slots = s.pipe_pages;
  pipe_config_.page_size = s.page_size;
  socket_config_.sndbuf_bytes = s.sndbuf_bytes;
  python_framing_ = s.framing == Framing::Python;
  // The pool's own derivation of the engines' settings, from the Options the scenario stands for.
  const Options pool_options = to_options(s);
  setup_ = protocol::engine_setup(pool_options, s.workers);
  setup_.loop.task_timeout_ns = s.task_timeout_us * 1000;  // microseconds, finer than Options'
  strategy_ = &protocol::strategy_of(pool_options);
  // A user's scheduler runs as a fresh copy in each world when it can be copied (clone()).
  if (s.custom_scheduler) {
    std::unique_ptr<Scheduler> fresh = s.custom_scheduler->clone();
    scheduler_ = fresh ? std::shared_ptr<Scheduler>(std::move(fresh)) : s.custom_scheduler;
  } else {
    scheduler_ = protocol::scheduler_of(pool_options);
  }
  user_ = std::make_unique<User>();
  std::shared_ptr<Parent> parent = std::make_shared<Parent>();
  for (uint32_t w = 0; w < workers_count_; ++w) workers_.push_back(std::make_shared<Worker>());
  completions_.assign(script_->task_count(), 0);
  may_kill_ = s.task_timeout_us != 0 ||
              std::any_of(script_->ops.begin(), script_->ops.end(), [](const Script::Op& op) {
                return op.kind == Script::Op::Kind::Terminate;
              });
  schedule_.reserve(1024);
  parent->segments.reserve(128);
  parent->events.reserve(3 * workers_count_ + 4);
  parent->loop.emplace(setup_, *strategy_, *scheduler_);
  if (options_.write_observer) parent->loop->observe_writes(options_.write_observer);
  parent_ = std::move(parent);
  // The pool's constructor starts its workers before it returns to the user.
  advance_parent();
}

World::~World() = default;

const protocol::EngineStats& World::engine_stats() const {
  return parent_->loop->engine().stats();
}

uint64_t World::pipe_ops() const {
  uint64_t ops = closed_pipe_ops_;
  for (const auto& k : workers_) {
    if (k->channel) ops += k->channel->ops();
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
    // With the time: the loop's scheduler estimates task times from when it observes results.
    Parent& p = own_parent();
    p.history = mix(mix(p.history, v), now_us_);
  } else if (process != kMaxProcesses) {
    Worker& k = own_worker(process - kFirstWorkerProcess);
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
  state.socket = script_->scenario.transport == Transport::SocketPair;
  state.name =
      state.socket
          ? "socket of worker " + std::to_string(w) + (task_pipe ? " (tasks)" : " (results)")
          : std::string(task_pipe ? "task" : "result") + " pipe of worker " + std::to_string(w);
  const Worker& k = *workers_[w];
  if (!k.channel) return state;
  const DirectionState d = k.channel->state(task_pipe ? Direction::Task : Direction::Result);
  if (state.socket) {
    state.skbs = d.queued_units;
  } else {
    state.slots_used = d.queued_units;
    state.slots = d.unit_limit;
  }
  state.bytes = d.queued_bytes;
  state.charged_bytes = d.charged_bytes;
  state.charge_limit_bytes = d.charge_limit;
  state.has_reader = d.has_reader;
  state.has_writer = d.has_writer;
  state.describe = d.describe;
  return state;
}

// ---- the user ----------------------------------------------------------------------------------

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

uint64_t World::poll() {
  if (status_ != RunStatus::Running) return 0;
  if (user_->joined && parent_->action.op == protocol::ParentLoop::Op::Done) {
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
    if (parent_->action.op == protocol::ParentLoop::Op::Wait &&
        parent_->action.deadline_ns != UINT64_MAX) {
      const uint64_t due_us = (parent_->action.deadline_ns + 999) / 1000;
      if (due_us > now_us_) next = std::min(next, due_us);
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

void World::step_user() {
  const Script::Op& op = script_->ops[user_->op];
  switch (op.kind) {
    case Script::Op::Kind::Submit:
      if (terminate_requested_) {
        // The real pool raises PoolClosed: the call's tasks never exist.
        for (TaskId id = op.first_task; id < op.end_task; ++id) completions_[id - 1] = 1;
        completed_count_ += op.end_task - op.first_task;
        note(kUserProcess, kRefused, user_->op);
        if (options_.trace) trace_line(kUserProcess, "submits after terminate(): PoolClosed");
        break;
      }
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
      terminate_requested_ = true;
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

// ---- the end of a run ---------------------------------------------------------------------------

void World::finish_run() {
  if (status_ != RunStatus::Running) return;
  status_ = RunStatus::Finished;
  if (completed_count_ != script_->task_count()) {
    fail(std::to_string(script_->task_count() - completed_count_) +
         " task(s) never completed, yet join() returned");
  }
}

uint64_t World::history_fingerprint() const {
  uint64_t h = mix(0x5157, now_us_);
  h = mix(h, user_->history);
  h = mix(h, (uint64_t{user_->joined} << 62) ^ (uint64_t{user_->op} << 32) ^ user_->wait_cursor);
  h = mix(h, queue_.size());
  const Parent& p = *parent_;
  // The loop is a deterministic function of what it observed: its history (with the time of
  // each observation) and where its current action stands.
  h = mix(h, p.history);
  h = mix(h, (static_cast<uint64_t>(p.action.op) << 56) ^ (uint64_t{p.action.worker} << 40) ^
                 (uint64_t{p.in_write} << 32) ^ p.write_done);
  for (const auto& kp : workers_) {
    const Worker& k = *kp;
    h = mix(h, k.history);
    h = mix(h,
            (static_cast<uint64_t>(k.phase) << 56) ^ (uint64_t{k.in_write} << 48) ^ k.write_done);
    if (k.phase == Worker::Phase::Alive && k.action.op == ChildEngine::Op::Run) {
      h = mix(h, k.wake_us);
    }
    // Every buffer of both pipes, or the socketpair's queues, charges and sleeping writers.
    if (k.channel) h = k.channel->state_hash(h);
  }
  return h;
}

}  // namespace pipepool::sim
