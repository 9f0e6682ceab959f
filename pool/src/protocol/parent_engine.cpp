#include "protocol/parent_engine.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

#include "protocol/fingerprint.hpp"

namespace pipepool::protocol {

ParentEngine::ParentEngine(ParentConfig config, const IoStrategy& strategy, Scheduler& scheduler)
    : config_(config), strategy_(&strategy), scheduler_(&scheduler), random_(config.seed) {
  assert(config_.workers > 0);
  validate_wire_format(config_.wire);
  slots_.resize(config_.workers);
  labels_.resize(config_.workers);
  for (WorkerId w = 0; w < config_.workers; ++w) {
    slots_[w].reader = make_reader();
    slots_[w].state = SlotState::Starting;
    commands_.push_back({Command::Kind::StartWorker, w, 0});
  }
}

FrameReader ParentEngine::make_reader() const {
  // Python's result handler reads each message exactly (Connection.recv_bytes): no read-ahead.
  const size_t read_ahead = config_.wire.python ? 0 : kParentReadAheadBytes;
  return FrameReader(Direction::ToParent, config_.max_result_payload_bytes, read_ahead,
                     config_.huge_page_advice_bytes, config_.wire);
}

std::string ParentEngine::worker_name(WorkerId w) const {
  if (!labels_[w].empty()) return labels_[w];
  return "worker " + std::to_string(w);
}

void ParentEngine::set_worker_label(WorkerId w, std::string label) {
  labels_[w] = std::move(label);
}

// ---- events ------------------------------------------------------------------------------------

void ParentEngine::submit(std::vector<TaskSubmission> tasks) {
  for (TaskSubmission& task : tasks) {
    ++stats_.tasks_submitted;
    if (terminated_) {
      if (!abort_reason_.empty()) {
        completions_.push_back({task.id, Completion::Kind::WorkerLost, {}, abort_reason_});
      } else {
        completions_.push_back({task.id,
                                Completion::Kind::Terminated,
                                {},
                                "the pool was terminated before this task was submitted"});
      }
      continue;
    }
    TaskState& state = tasks_[task.id];
    state.payload = std::make_shared<const Payload>(std::move(task.payload));
    state.timeout_ns = task.timeout_ns;
    pending_.push_back(task.id);
  }
  schedule();
}

bool ParentEngine::cancel(TaskId task) {
  auto queued = std::find(pending_.begin(), pending_.end(), task);
  if (queued == pending_.end()) return false;
  pending_.erase(queued);
  tasks_.erase(task);
  maybe_send_shutdown();  // it may have been the last task a shutdown waited for
  return true;
}

void ParentEngine::worker_started(WorkerId w) {
  Slot& slot = slots_[w];
  assert(slot.state == SlotState::Starting);
  slot.state = SlotState::Live;
  ++stats_.workers_started;
  schedule();
  maybe_send_shutdown();
}

void ParentEngine::bytes_read(WorkerId w, size_t n) {
  Slot& slot = slots_[w];
  const FrameReader::Status status = slot.reader.commit(n);
  // Frames completed before any damage are handled first, in order.
  while (slots_[w].reader.has_frame() && !slots_[w].reading_abandoned) {
    ++stats_.frames_read;
    handle_frame(w, slots_[w].reader.take());
  }
  maybe_acknowledge(w);
  if (status == FrameReader::Status::Malformed && !slots_[w].reading_abandoned) {
    fail_worker(w, Completion::Kind::ProtocolError,
                worker_name(w) + " sent a malformed frame: " + slots_[w].reader.error());
  }
}

void ParentEngine::result_eof(WorkerId w) {
  Slot& slot = slots_[w];
  slot.eof = true;
  if (slot.reader.mid_frame() && !slot.failure_kind) {
    slot.truncated = true;
    slot.failure_message = "its result pipe ended inside a frame";
  }
  if (slot.state == SlotState::Live || slot.state == SlotState::Closing) {
    // It closed its end: it is gone or going. No more tasks for it.
    if (slot.state == SlotState::Live) slot.state = SlotState::Failed;
    slot.outbox.clear();
  }
  maybe_finalize(w);
}

void ParentEngine::bytes_written(WorkerId w, size_t n) {
  stats_.frames_written += slots_[w].outbox.consume(n);
}

void ParentEngine::write_failed(WorkerId w, int /*error*/) {
  // The worker closed its task pipe (it died). Keep reading what it wrote before; its exit status
  // and end of file finalize it.
  Slot& slot = slots_[w];
  slot.outbox.clear();
  if (slot.state == SlotState::Live || slot.state == SlotState::Closing) {
    slot.state = SlotState::Failed;
  }
}

void ParentEngine::worker_exited(WorkerId w, const ExitInfo& info) {
  Slot& slot = slots_[w];
  slot.exit = info;
  if (slot.state == SlotState::Live || slot.state == SlotState::Starting) {
    slot.state = SlotState::Failed;
  }
  slot.outbox.clear();
  maybe_finalize(w);
}

void ParentEngine::timer_fired(TaskId task, uint32_t attempt) {
  auto it = tasks_.find(task);
  if (it == tasks_.end() || it->second.attempts != attempt)
    return;  // a timer of an earlier attempt
  timer_fired(task);
}

void ParentEngine::timer_fired(TaskId task) {
  auto it = tasks_.find(task);
  if (it == tasks_.end() || !it->second.started) return;  // finished in time
  WorkerId w = it->second.worker;
  Slot& slot = slots_[w];
  auto pos = std::find(slot.outstanding.begin(), slot.outstanding.end(), task);
  if (pos == slot.outstanding.end() || slot.state == SlotState::Absent) return;
  slot.outstanding.erase(pos);
  complete(task, {task,
                  Completion::Kind::Timeout,
                  {},
                  "task " + std::to_string(task) + " exceeded the pool's task timeout on " +
                      worker_name(w) + ", which was killed and replaced",
                  w});
  fail_worker(w, Completion::Kind::WorkerLost,
              worker_name(w) + " was killed because task " + std::to_string(task) +
                  " exceeded the pool's task timeout");
}

void ParentEngine::begin_shutdown() {
  shutting_down_ = true;
  maybe_send_shutdown();
}

void ParentEngine::terminate() {
  terminated_ = true;
  shutting_down_ = true;
  std::vector<TaskId> unfinished;
  unfinished.reserve(tasks_.size());
  for (const auto& [id, state] : tasks_) unfinished.push_back(id);
  std::sort(unfinished.begin(), unfinished.end());
  for (TaskId id : unfinished) {
    if (!abort_reason_.empty()) {
      Completion completion{
          id, Completion::Kind::WorkerLost, {}, abort_reason_, tasks_.at(id).worker};
      complete(id, std::move(completion));
    } else {
      complete(id, {id,
                    Completion::Kind::Terminated,
                    {},
                    "the pool was terminated before this task completed"});
    }
  }
  pending_.clear();
  for (WorkerId w = 0; w < config_.workers; ++w) {
    Slot& slot = slots_[w];
    slot.outstanding.clear();
    slot.outbox.clear();
    if (slot.state == SlotState::Absent) continue;
    slot.state = SlotState::Failed;
    slot.reading_abandoned = true;
    commands_.push_back({Command::Kind::KillWorker, w, 0});
    maybe_finalize(w);
  }
}

void ParentEngine::abort(const std::string& reason) {
  abort_reason_ = reason.empty() ? std::string("the pool cannot run tasks any more") : reason;
  terminate();
}

// ---- scheduling --------------------------------------------------------------------------------

bool ParentEngine::accepting(const Slot& slot) const {
  return slot.state == SlotState::Live &&
         (config_.max_tasks_per_child == 0 ||
          slot.assigned_this_process < config_.max_tasks_per_child);
}

void ParentEngine::schedule() {
  if (pending_.empty()) return;
  std::vector<bool> touched(config_.workers, false);
  while (!pending_.empty()) {
    loads_scratch_.clear();
    for (WorkerId w = 0; w < config_.workers; ++w) {
      const Slot& slot = slots_[w];
      if (accepting(slot)) {
        loads_scratch_.push_back({w, static_cast<uint32_t>(slot.outstanding.size()),
                                  slot.assigned_total, slot.mean_task_ns});
      }
    }
    if (loads_scratch_.empty()) break;
    std::optional<uint32_t> pick = scheduler_->pick(loads_scratch_, random_);
    bool valid = pick && std::any_of(loads_scratch_.begin(), loads_scratch_.end(),
                                     [&](const WorkerLoad& l) { return l.worker == *pick; });
    if (!valid) {
      bool anything_running = false;
      for (const Slot& slot : slots_) {
        anything_running |= !slot.outstanding.empty() || slot.state == SlotState::Starting;
      }
      if (!pick && anything_running) break;  // hold the task until loads change
      // Contract violation: an unknown worker, or holding back with nothing that could change the
      // loads. Assign to the least loaded worker rather than stall forever.
      ++stats_.scheduler_contract_violations;
      pick = std::min_element(loads_scratch_.begin(), loads_scratch_.end(),
                              [](const WorkerLoad& a, const WorkerLoad& b) {
                                return a.outstanding < b.outstanding;
                              })
                 ->worker;
    }
    WorkerId w = *pick;
    TaskId id = pending_.front();
    pending_.pop_front();
    TaskState& task = tasks_.at(id);
    task.worker = w;
    task.started = false;
    task.assigned_ns = now_ns_;
    ++task.attempts;
    Slot& slot = slots_[w];
    slot.outstanding.push_back(id);
    ++slot.assigned_this_process;
    ++slot.assigned_total;
    touched[w] = true;
    // The task record keeps the payload (for a retry); the frame shares it.
    queue_frame(w, FrameKind::Task, id, task.payload);
  }
  if (strategy_->parent_sends_run_batch()) {
    for (WorkerId w = 0; w < config_.workers; ++w) {
      if (touched[w]) queue_frame(w, FrameKind::RunBatch, 0, nullptr);
    }
  }
}

void ParentEngine::queue_frame(WorkerId w, FrameKind kind, TaskId task,
                               std::shared_ptr<const Payload> payload) {
  slots_[w].outbox.push(make_out_frame(config_.wire, Direction::ToWorker, kind, task,
                                       std::move(payload), next_sequence_++));
}

void ParentEngine::maybe_send_shutdown() {
  if (!shutting_down_ || terminated_ || !pending_.empty()) return;
  for (WorkerId w = 0; w < config_.workers; ++w) {
    Slot& slot = slots_[w];
    if (slot.state != SlotState::Live) continue;
    queue_frame(w, FrameKind::Shutdown, 0, nullptr);
    slot.state = SlotState::Closing;
  }
}

// ---- frames from workers -----------------------------------------------------------------------

void ParentEngine::handle_frame(WorkerId w, Frame frame) {
  Slot& slot = slots_[w];
  const TaskId id = frame.header.task_id;
  if (frame.header.kind == FrameKind::Started) {
    auto pos = std::find(slot.outstanding.begin(), slot.outstanding.end(), id);
    if (pos == slot.outstanding.end()) {
      fail_worker(w, Completion::Kind::ProtocolError,
                  worker_name(w) + " reported starting task " + std::to_string(id) +
                      ", which it was not given");
      return;
    }
    TaskState& task = tasks_.at(id);
    task.started = true;
    if (config_.task_timeouts) {
      commands_.push_back({Command::Kind::ArmTimer, w, id, task.attempts, task.timeout_ns});
    }
    return;
  }
  if (slot.outstanding.empty() || slot.outstanding.front() != id) {
    fail_worker(w, Completion::Kind::ProtocolError,
                worker_name(w) + " sent a result for task " + std::to_string(id) +
                    (slot.outstanding.empty()
                         ? std::string(", but it has no task")
                         : ", but its next task is " + std::to_string(slot.outstanding.front())));
    return;
  }
  slot.outstanding.pop_front();
  // Time per task on this worker: from when it could have started this one (assigned, or the
  // previous result came back, whichever is later) to now. A moving mean over about 8 tasks.
  const uint64_t began = std::max(tasks_.at(id).assigned_ns, slot.last_done_ns);
  const uint64_t took = std::max<uint64_t>(1, now_ns_ - std::min(began, now_ns_));
  slot.mean_task_ns = slot.mean_task_ns == 0 ? took : (slot.mean_task_ns * 7 + took) / 8;
  slot.last_done_ns = now_ns_;
  Completion::Kind kind = frame.header.kind == FrameKind::Result ? Completion::Kind::Result
                                                                 : Completion::Kind::RemoteError;
  const uint64_t splice_min = strategy_->splice_min_payload_bytes();
  if (splice_min != 0 && frame.payload.size() >= splice_min) ++slot.spliced_results_read;
  complete(id, {id, kind, std::move(frame.payload), {}, w});
  schedule();
  maybe_send_shutdown();
}

void ParentEngine::maybe_acknowledge(WorkerId w) {
  Slot& slot = slots_[w];
  if (slot.spliced_results_read == slot.spliced_results_acked || !accepting(slot)) return;
  slot.spliced_results_acked = slot.spliced_results_read;
  queue_frame(w, FrameKind::Ack, slot.spliced_results_acked, nullptr);
}

void ParentEngine::complete(TaskId task, Completion completion) {
  tasks_.erase(task);
  ++stats_.tasks_completed;
  completions_.push_back(std::move(completion));
}

// ---- failures ----------------------------------------------------------------------------------

void ParentEngine::fail_worker(WorkerId w, Completion::Kind kind, std::string message) {
  Slot& slot = slots_[w];
  if (slot.state == SlotState::Absent || slot.state == SlotState::Starting) return;
  if (!slot.failure_kind) {
    slot.failure_kind = kind;
    slot.failure_message = std::move(message);
  }
  if (!slot.reading_abandoned || slot.state != SlotState::Failed) {
    commands_.push_back({Command::Kind::KillWorker, w, 0});
  }
  slot.state = SlotState::Failed;
  slot.reading_abandoned = true;
  slot.outbox.clear();
  maybe_finalize(w);
}

void ParentEngine::maybe_finalize(WorkerId w) {
  Slot& slot = slots_[w];
  if (slot.state == SlotState::Absent || !slot.exit) return;
  if (!slot.eof && !slot.reading_abandoned) return;  // results may still be in the pipe
  const ExitInfo exit = *slot.exit;
  // A clean end: after Shutdown, or by itself after maxtasksperchild tasks, with nothing owed.
  const bool retired =
      config_.max_tasks_per_child != 0 && slot.assigned_this_process >= config_.max_tasks_per_child;
  const bool clean = (slot.state == SlotState::Closing || retired) && slot.outstanding.empty() &&
                     exit.signal == 0 && exit.exit_code == 0 && !slot.failure_kind &&
                     slot.failure_message.empty();
  if (!clean) ++stats_.workers_lost;

  if (!slot.outstanding.empty()) {
    // Which of its tasks may have run? Those that never started go back to the queue; those that
    // may have started fail (or are retried, if the pool allows), never silently run twice.
    std::vector<TaskId> lost, requeue;
    bool first = true;
    for (TaskId id : slot.outstanding) {
      bool may_have_run;
      if (config_.task_timeouts) {
        may_have_run = tasks_.at(id).started;
      } else if (strategy_->child_mode() == ChildMode::OneAtATime) {
        may_have_run = first;
      } else {
        may_have_run = true;
      }
      first = false;
      (may_have_run ? lost : requeue).push_back(id);
    }
    Completion::Kind kind = slot.failure_kind.value_or(Completion::Kind::WorkerLost);
    std::string why =
        slot.failure_kind ? slot.failure_message : worker_name(w) + " " + exit.description;
    if (!slot.failure_kind && slot.truncated && exit.signal == 0) {
      // It closed its pipe in the middle of a frame and exited by itself: that is a frame it
      // broke, not a death from outside (a signal mid-frame stays WorkerLost, see what-goes-wrong).
      kind = Completion::Kind::ProtocolError;
      why = worker_name(w) +
            " sent a truncated frame: its result pipe ended inside a frame, and it " +
            exit.description;
    } else if (!slot.failure_kind && !slot.failure_message.empty()) {
      why += " (" + slot.failure_message + ")";
    }
    for (TaskId id : lost) {
      TaskState& task = tasks_.at(id);
      // Only a death is retried: a protocol error or a timeout would most likely happen again.
      if (kind == Completion::Kind::WorkerLost && task.attempts <= config_.max_retries &&
          !terminated_) {
        ++stats_.tasks_retried;
        requeue.push_back(id);
        continue;
      }
      Completion completion{
          id, kind, {}, why + " while task " + std::to_string(id) + " was running", w};
      completion.signal = exit.signal;
      completion.exit_code = exit.exit_code;
      complete(id, std::move(completion));
    }
    std::sort(requeue.begin(), requeue.end());  // ids grow with submission order
    for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) pending_.push_front(*it);
  }

  const uint64_t assigned_total = slot.assigned_total;
  slot = Slot{};
  slot.reader = make_reader();
  slot.assigned_total = assigned_total;
  slot.state = SlotState::Absent;
  // Replace it, unless the pool is shutting down and nothing is waiting to be assigned: a task
  // still running elsewhere is no reason to start a worker that would be told to shut down at
  // once (that loop was a fork storm until the last task ended; the simulator found it).
  if (!terminated_ && (!shutting_down_ || !pending_.empty())) {
    slot.state = SlotState::Starting;
    commands_.push_back({Command::Kind::StartWorker, w, 0});
  }
  schedule();
  maybe_send_shutdown();
}

// ---- requests ----------------------------------------------------------------------------------

std::optional<WorkerId> ParentEngine::blocking_write_due() const {
  if (!strategy_->parent_blocking_writes()) return std::nullopt;
  std::optional<WorkerId> best;
  for (WorkerId w = 0; w < config_.workers; ++w) {
    if (!wants_write(w)) continue;
    if (!best || slots_[w].outbox.front().sequence < slots_[*best].outbox.front().sequence) {
      best = w;
    }
  }
  return best;
}

size_t ParentEngine::pending_write(WorkerId w, std::vector<std::span<const std::byte>>& segments,
                                   bool* splice) const {
  size_t units = strategy_->parent_blocking_writes() ? 1 : strategy_->max_frames_per_write();
  if (config_.wire.python) units = 1;  // each Python write call by itself
  bool spliced = false;
  const size_t total =
      slots_[w].outbox.gather(segments, units, strategy_->splice_min_payload_bytes(), spliced);
  if (splice) *splice = spliced;
  return total;
}

bool ParentEngine::wants_write(WorkerId w) const {
  const Slot& slot = slots_[w];
  return (slot.state == SlotState::Live || slot.state == SlotState::Closing) &&
         !slot.outbox.empty();
}

bool ParentEngine::wants_read(WorkerId w) const {
  const Slot& slot = slots_[w];
  return (slot.state == SlotState::Live || slot.state == SlotState::Closing ||
          slot.state == SlotState::Failed) &&
         !slot.eof && !slot.reading_abandoned;
}

std::span<std::byte> ParentEngine::read_buffer(WorkerId w) {
  return slots_[w].reader.buffer();
}

std::vector<Command> ParentEngine::take_commands() {
  return std::exchange(commands_, {});
}

std::vector<Completion> ParentEngine::take_completions() {
  return std::exchange(completions_, {});
}

bool ParentEngine::finished() const {
  if (!shutting_down_ || !tasks_.empty()) return false;
  return std::all_of(slots_.begin(), slots_.end(),
                     [](const Slot& s) { return s.state == SlotState::Absent; });
}

// ---- copies and fingerprints -------------------------------------------------------------------

ParentEngine::ParentEngine(const ParentEngine& other, Scheduler& scheduler) : ParentEngine(other) {
  scheduler_ = &scheduler;
}

uint64_t ParentEngine::fingerprint(uint64_t h) const {
  h = fingerprint_mix(h, random_.state());
  h = fingerprint_mix(
      h, (uint64_t{shutting_down_} << 63) ^ (uint64_t{terminated_} << 62) ^ next_sequence_);
  h = fingerprint_text(h, abort_reason_);
  for (WorkerId w = 0; w < slots_.size(); ++w) {
    const Slot& slot = slots_[w];
    h = fingerprint_mix(h, (static_cast<uint64_t>(slot.state) << 56) ^ (uint64_t{slot.eof} << 55) ^
                               (uint64_t{slot.truncated} << 54) ^
                               (uint64_t{slot.reading_abandoned} << 53) ^
                               (uint64_t{slot.exit.has_value()} << 52) ^
                               (uint64_t{slot.failure_kind.has_value()} << 51) ^
                               (slot.failure_kind ? static_cast<uint64_t>(*slot.failure_kind) : 0));
    h = slot.outbox.fingerprint(h, true);
    h = slot.reader.fingerprint(h);
    h = fingerprint_mix(h, slot.outstanding.size());
    for (TaskId task : slot.outstanding) h = fingerprint_mix(h, task);
    h = fingerprint_mix(h, slot.assigned_this_process);
    h = fingerprint_mix(h, slot.assigned_total);
    h = fingerprint_mix(h, slot.last_done_ns);
    h = fingerprint_mix(h, slot.mean_task_ns);
    h = fingerprint_mix(h, slot.timed_out_task);
    h = fingerprint_mix(h, (slot.spliced_results_read << 32) ^ slot.spliced_results_acked);
    if (slot.exit) {
      h = fingerprint_mix(h,
                          (static_cast<uint64_t>(static_cast<uint32_t>(slot.exit->signal)) << 32) ^
                              static_cast<uint32_t>(slot.exit->exit_code));
      h = fingerprint_text(h, slot.exit->description);
    }
    h = fingerprint_text(h, slot.failure_message);
    h = fingerprint_text(h, labels_[w]);
  }
  h = fingerprint_mix(h, pending_.size());
  for (TaskId task : pending_) h = fingerprint_mix(h, task);
  // An unordered map: combine its entries' hashes in an order-free way.
  uint64_t tasks = 0;
  for (const auto& [id, t] : tasks_) {
    uint64_t e = fingerprint_mix(id, t.payload ? t.payload->size() : ~uint64_t{0});
    e = fingerprint_mix(e, t.timeout_ns);
    e = fingerprint_mix(e, (uint64_t{t.attempts} << 33) ^ (uint64_t{t.started} << 32) ^ t.worker);
    e = fingerprint_mix(e, t.assigned_ns);
    tasks += e;
  }
  h = fingerprint_mix(fingerprint_mix(h, tasks_.size()), tasks);
  // Commands and completions are taken by the loop before it hands its driver an action; any
  // left are part of the state all the same.
  h = fingerprint_mix(h, (uint64_t{commands_.size()} << 32) ^ completions_.size());
  for (const Command& c : commands_) {
    h = fingerprint_mix(
        h, (static_cast<uint64_t>(c.kind) << 56) ^ (uint64_t{c.worker} << 32) ^ c.attempt);
    h = fingerprint_mix(fingerprint_mix(h, c.task), c.timeout_ns);
  }
  for (const Completion& c : completions_) {
    h = fingerprint_mix(h, (static_cast<uint64_t>(c.kind) << 56) ^ c.task);
    h = fingerprint_mix(h, c.payload.size());
    h = fingerprint_text(h, c.message);
  }
  return h;
}

}  // namespace pipepool::protocol
