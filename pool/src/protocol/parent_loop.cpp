#include "protocol/parent_loop.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "protocol/fingerprint.hpp"

namespace pipepool::protocol {

namespace {
// Bounds of one ready item, so that one busy pipe cannot starve the others of a batch.
constexpr uint32_t kReadRoundsPerEvent = 64;
constexpr uint32_t kWriteRoundsPerEvent = 16;
}  // namespace

ParentLoop::ParentLoop(const EngineSetup& setup, const IoStrategy& strategy, Scheduler& scheduler)
    : setup_(setup),
      engine_(setup.parent, strategy, scheduler),
      blocking_writes_(strategy.parent_blocking_writes()),
      slots_(setup.parent.workers),
      interest_(setup.parent.workers) {
  segments_.reserve(128);
}

ParentLoop::ParentLoop(const ParentLoop& other, Scheduler& scheduler)
    : setup_(other.setup_),
      engine_(other.engine_, scheduler),
      blocking_writes_(other.blocking_writes_),
      phase_(other.phase_),
      pending_(other.pending_),
      now_ns_(other.now_ns_),
      slots_(other.slots_),
      queued_(),  // handed out already (queued_pos_ == size between calls): never read again
      queued_pos_(0),
      delivering_(other.delivering_),
      withdrawn_(other.withdrawn_),
      timers_(other.timers_),
      server_lost_(other.server_lost_),
      server_reason_(other.server_reason_),
      io_worker_(other.io_worker_),
      splice_(other.splice_),
      interest_(other.interest_),
      batch_(other.batch_),
      batch_pos_(other.batch_pos_),
      rounds_(other.rounds_),
      exit_handled_(other.exit_handled_),
      read_after_exit_(other.read_after_exit_),
      read_requested_(other.read_requested_),
      item_over_(other.item_over_),
      write_observer_(other.write_observer_) {
  if (other.queued_pos_ < other.queued_.size()) {
    throw std::logic_error("pipepool: ParentLoop copied while actions were queued");
  }
  // The iterators into timers_ point into other's map: find each task's timer again (a task has
  // at most one armed).
  for (auto it = timers_.begin(); it != timers_.end(); ++it) timer_of_[it->second.task] = it;
  segments_.reserve(128);
  if (pending_ == Pending::Write) engine_.pending_write(io_worker_, segments_, &splice_);
}

ParentLoop::Action ParentLoop::current(const Action& action) {
  Action out = action;
  switch (action.op) {
    case Op::Write:
      out.write = segments_;
      out.splice = splice_;
      break;
    case Op::Read:
      out.read_into = engine_.read_buffer(action.worker);
      out.huge_page_advice = engine_.read_advice(action.worker);
      break;
    case Op::Wait:
      out.interest = interest_;
      break;
    case Op::Deliver:
      out.completions = delivering_;
      break;
    default:
      break;
  }
  return out;
}

uint64_t ParentLoop::fingerprint(uint64_t h) const {
  h = engine_.fingerprint(h);
  h = fingerprint_mix(h, (static_cast<uint64_t>(phase_) << 56) ^
                             (static_cast<uint64_t>(pending_) << 48) ^
                             (uint64_t{server_lost_} << 47) ^ (uint64_t{exit_handled_} << 46) ^
                             (uint64_t{read_after_exit_} << 45) ^ (uint64_t{item_over_} << 44) ^
                             (uint64_t{io_worker_} << 16) ^ rounds_);
  h = fingerprint_mix(h, read_requested_);
  for (const Slot& slot : slots_) {
    h = fingerprint_mix(h, (uint64_t{slot.alive} << 63) ^ (uint64_t{slot.needs_start} << 62) ^
                               (uint64_t{slot.task_pipe_full} << 61) ^ slot.young_deaths);
    h = fingerprint_mix(h, slot.start_after_ns);
    h = fingerprint_mix(h, slot.started_ns);
    h = fingerprint_mix(h, slot.bytes_read);
  }
  for (const Interest& i : interest_) {
    h = fingerprint_mix(h, (uint64_t{i.read} << 1) ^ uint64_t{i.write});
  }
  h = fingerprint_mix(h, timers_.size());
  for (const auto& [due, timer] : timers_) {
    h = fingerprint_mix(fingerprint_mix(h, due), (timer.task << 8) ^ timer.attempt);
  }
  h = fingerprint_mix(h, (uint64_t{batch_.size()} << 32) ^ batch_pos_);
  for (size_t i = batch_pos_; i < batch_.size(); ++i) {
    const ReadyEvent& e = batch_[i];
    h = fingerprint_mix(h, (static_cast<uint64_t>(e.kind) << 56) ^ e.worker);
    if (e.kind == ReadyEvent::Kind::Exited) {
      h = fingerprint_mix(h, (static_cast<uint64_t>(static_cast<uint32_t>(e.exit.signal)) << 32) ^
                                 static_cast<uint32_t>(e.exit.exit_code));
      h = fingerprint_text(h, e.exit.description);
    }
    if (e.kind == ReadyEvent::Kind::ServerLost) h = fingerprint_text(h, e.reason);
  }
  h = fingerprint_mix(h, withdrawn_.size());
  for (const Completion& c : withdrawn_) h = fingerprint_mix(h, c.task);
  if (server_lost_) h = fingerprint_text(h, server_reason_);
  return h;
}

void ParentLoop::expect(Pending pending) const {
  if (pending_ != pending) {
    throw std::logic_error(
        "pipepool: ParentLoop report out of order (an action's report is missing or extra)");
  }
}

// ---- the loop ----------------------------------------------------------------------------------

ParentLoop::Action ParentLoop::next(uint64_t now_ns) {
  expect(Pending::None);
  now_ns_ = now_ns;
  engine_.set_time(now_ns);
  for (;;) {
    if (queued_pos_ < queued_.size()) {
      const Action action = queued_[queued_pos_++];
      if (action.op == Op::StartWorker) pending_ = Pending::Start;
      return action;
    }
    queued_.clear();
    queued_pos_ = 0;
    switch (phase_) {
      case Phase::Boot:
        if (apply_commands()) continue;  // StartWorker for every slot
        phase_ = Phase::Top;
        return {.op = Op::Booted};
      case Phase::Top:
        phase_ = Phase::InboxTaken;
        pending_ = Pending::Inbox;
        return {.op = Op::TakeInbox};
      case Phase::InboxTaken:
      case Phase::Writing:
      case Phase::EagerWriting:
      case Phase::Waiting:
        throw std::logic_error("pipepool: ParentLoop::next() without the report it waits for");
      case Phase::Commands: {
        if (apply_commands() || take_deliveries()) continue;
        if (engine_.finished()) {
          phase_ = Phase::Done;
          continue;
        }
        if (server_lost_ &&
            std::none_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.alive; })) {
          // Everything its workers wrote has been read; nothing can run what is left.
          engine_.abort(server_reason_ + ", and no worker can be started without it");
          phase_ = Phase::Terminating;
          continue;
        }
        if (std::optional<WorkerId> w = engine_.blocking_write_due()) {
          segments_.clear();
          const size_t total = engine_.pending_write(*w, segments_, &splice_);
          io_worker_ = *w;
          phase_ = Phase::Writing;
          pending_ = Pending::Write;
          return {.op = Op::Write,
                  .worker = *w,
                  .blocking = true,
                  .splice = splice_,
                  .write = segments_,
                  .write_bytes = total};
        }
        if (!blocking_writes_) {
          for (WorkerId w = 0; w < slots_.size(); ++w) {
            if (slots_[w].task_pipe_full || !engine_.wants_write(w)) continue;
            segments_.clear();
            const size_t total = engine_.pending_write(w, segments_, &splice_);
            io_worker_ = w;
            phase_ = Phase::EagerWriting;
            pending_ = Pending::Write;
            return {.op = Op::Write,
                    .worker = w,
                    .splice = splice_,
                    .write = segments_,
                    .write_bytes = total};
          }
        }
        for (WorkerId w = 0; w < interest_.size(); ++w) {
          interest_[w].read = engine_.wants_read(w);
          interest_[w].write =
              !blocking_writes_ && slots_[w].task_pipe_full && engine_.wants_write(w);
        }
        phase_ = Phase::Waiting;
        pending_ = Pending::Wait;
        return {.op = Op::Wait, .interest = interest_, .deadline_ns = next_deadline()};
      }
      case Phase::Dispatch: {
        if (batch_pos_ >= batch_.size()) {
          fire_timers();
          phase_ = Phase::Top;
          continue;
        }
        Action action;
        if (!item_over_ && dispatch_item(action)) return action;
        next_event();
        apply_commands();
        continue;
      }
      case Phase::Terminating: {
        // terminate() or abort(): kill what lives, deliver every completion, and stop. Nothing is
        // started again and no timer matters any more.
        for (const Command& command : engine_.take_commands()) {
          if (command.kind == Command::Kind::KillWorker) {
            queued_.push_back({.op = Op::KillWorker, .worker = command.worker});
          }
        }
        if (!queued_.empty() || take_deliveries()) continue;
        phase_ = Phase::Done;
        continue;
      }
      case Phase::Done:
        return {.op = Op::Done};
    }
  }
}

// The action for the current item of the batch, or false when the item needs nothing more.
bool ParentLoop::dispatch_item(Action& out) {
  const ReadyEvent& event = batch_[batch_pos_];
  const WorkerId w = event.worker;
  switch (event.kind) {
    case ReadyEvent::Kind::Readable: {
      if (rounds_ >= kReadRoundsPerEvent || !engine_.wants_read(w)) return false;
      const std::span<std::byte> buffer = engine_.read_buffer(w);
      if (buffer.empty()) return false;
      ++rounds_;
      io_worker_ = w;
      read_after_exit_ = false;
      read_requested_ = buffer.size();
      pending_ = Pending::Read;
      out = {.op = Op::Read,
             .worker = w,
             .read_into = buffer,
             .huge_page_advice = engine_.read_advice(w)};
      return true;
    }
    case ReadyEvent::Kind::Writable: {
      slots_[w].task_pipe_full = false;
      if (blocking_writes_ || rounds_ >= kWriteRoundsPerEvent || !engine_.wants_write(w)) {
        return false;
      }
      ++rounds_;
      segments_.clear();
      const size_t total = engine_.pending_write(w, segments_, &splice_);
      io_worker_ = w;
      pending_ = Pending::Write;
      out = {.op = Op::Write,
             .worker = w,
             .splice = splice_,
             .write = segments_,
             .write_bytes = total};
      return true;
    }
    case ReadyEvent::Kind::Exited: {
      if (!exit_handled_) {
        // The engine tracks one process per slot; an exit of one it no longer has is stale.
        if (!slots_[w].alive) return false;
        exit_handled_ = true;
        Slot& slot = slots_[w];
        slot.alive = false;
        const bool failed = event.exit.signal != 0 || event.exit.exit_code != 0;
        const bool young =
            failed && slot.bytes_read == 0 &&
            now_ns_ - std::min(now_ns_, slot.started_ns) < setup_.loop.young_death_ns;
        slot.young_deaths = young ? slot.young_deaths + 1 : 0;
        engine_.worker_exited(w, event.exit);
      }
      // What it wrote is all in the pipe now: read it to the end.
      if (!engine_.wants_read(w)) return false;
      const std::span<std::byte> buffer = engine_.read_buffer(w);
      if (buffer.empty()) {
        engine_.result_eof(w);
        return false;
      }
      io_worker_ = w;
      read_after_exit_ = true;
      pending_ = Pending::Read;
      out = {.op = Op::Read,
             .worker = w,
             .after_exit = true,
             .read_into = buffer,
             .huge_page_advice = engine_.read_advice(w)};
      return true;
    }
    case ReadyEvent::Kind::Wake:
    case ReadyEvent::Kind::ServerLost:
      return false;
  }
  return false;
}

void ParentLoop::next_event() {
  ++batch_pos_;
  rounds_ = 0;
  exit_handled_ = false;
  item_over_ = false;
}

bool ParentLoop::apply_commands() {
  bool queued = false;
  for (const Command& command : engine_.take_commands()) {
    Slot& slot = slots_[command.worker];
    switch (command.kind) {
      case Command::Kind::StartWorker: {
        slot.needs_start = true;
        slot.start_after_ns = 0;
        if (slot.young_deaths >= 2) {
          const uint64_t delay = setup_.loop.young_first_delay_ns
                                 << std::min<uint32_t>(slot.young_deaths - 2, 7);
          slot.start_after_ns = now_ns_ + std::min(delay, setup_.loop.young_max_delay_ns);
        }
        break;
      }
      case Command::Kind::KillWorker:
        queued_.push_back({.op = Op::KillWorker, .worker = command.worker});
        queued = true;
        break;
      case Command::Kind::ArmTimer: {
        if (auto old = timer_of_.find(command.task); old != timer_of_.end()) {
          timers_.erase(old->second);  // an earlier attempt's
          timer_of_.erase(old);
        }
        const uint64_t budget =
            command.timeout_ns != 0 ? command.timeout_ns : setup_.loop.task_timeout_ns;
        timer_of_[command.task] =
            timers_.emplace(now_ns_ + budget, Timer{command.task, command.attempt});
        break;
      }
    }
  }
  if (!server_lost_) {
    for (WorkerId w = 0; w < slots_.size(); ++w) {
      Slot& slot = slots_[w];
      if (slot.needs_start && slot.start_after_ns <= now_ns_) {
        slot.needs_start = false;
        queued_.push_back({.op = Op::StartWorker, .worker = w});
        queued = true;
      }
    }
  }
  return queued;
}

bool ParentLoop::take_deliveries() {
  if (!engine_.has_output() && withdrawn_.empty()) return false;
  delivering_ = engine_.take_completions();
  for (Completion& completion : withdrawn_) delivering_.push_back(std::move(completion));
  withdrawn_.clear();
  if (delivering_.empty()) return false;
  for (const Completion& completion : delivering_) {
    if (auto timer = timer_of_.find(completion.task); timer != timer_of_.end()) {
      timers_.erase(timer->second);
      timer_of_.erase(timer);
    }
  }
  queued_.push_back({.op = Op::Deliver, .completions = delivering_});
  return true;
}

void ParentLoop::fire_timers() {
  while (!timers_.empty() && timers_.begin()->first <= now_ns_) {
    const Timer timer = timers_.begin()->second;
    timers_.erase(timers_.begin());
    timer_of_.erase(timer.task);
    engine_.timer_fired(timer.task, timer.attempt);
  }
}

uint64_t ParentLoop::next_deadline() const {
  uint64_t next = timers_.empty() ? UINT64_MAX : timers_.begin()->first;
  if (!server_lost_) {
    for (const Slot& slot : slots_) {
      if (slot.needs_start) next = std::min(next, slot.start_after_ns);
    }
  }
  return next;
}

// ---- reports -----------------------------------------------------------------------------------

void ParentLoop::inbox(Inbox inbox) {
  expect(Pending::Inbox);
  pending_ = Pending::None;
  for (std::vector<TaskSubmission>& call : inbox.calls) engine_.submit(std::move(call));
  for (TaskId task : inbox.cancel) {
    if (engine_.cancel(task)) {
      withdrawn_.push_back({task,
                            Completion::Kind::Cancelled,
                            {},
                            "withdrawn before any worker had it (its imap was left early)"});
    }
  }
  if (inbox.terminate) {
    engine_.terminate();
    phase_ = Phase::Terminating;
    return;
  }
  if (inbox.join && !engine_.shutting_down()) engine_.begin_shutdown();
  phase_ = Phase::Commands;
}

void ParentLoop::started(WorkerId w, std::string label) {
  expect(Pending::Start);
  pending_ = Pending::None;
  Slot& slot = slots_[w];
  slot.alive = true;
  slot.started_ns = now_ns_;
  slot.bytes_read = 0;
  slot.task_pipe_full = false;  // fresh pipes
  engine_.set_worker_label(w, std::move(label));
  engine_.worker_started(w);
}

void ParentLoop::start_failed(WorkerId w) {
  expect(Pending::Start);
  pending_ = Pending::None;
  Slot& slot = slots_[w];
  slot.needs_start = true;
  slot.start_after_ns = now_ns_ + setup_.loop.start_retry_ns;
}

void ParentLoop::wrote(size_t n) {
  expect(Pending::Write);
  pending_ = Pending::None;
  if (write_observer_) {
    std::vector<std::byte> written;
    written.reserve(n);
    for (std::span<const std::byte> segment : segments_) {
      const size_t take = std::min(segment.size(), n - written.size());
      written.insert(written.end(), segment.begin(), segment.begin() + take);
      if (written.size() == n) break;
    }
    write_observer_(io_worker_, written);
  }
  engine_.bytes_written(io_worker_, n);
  if (phase_ == Phase::Writing) phase_ = Phase::Top;
  if (phase_ == Phase::EagerWriting) phase_ = Phase::Commands;
}

void ParentLoop::write_would_block() {
  expect(Pending::Write);
  pending_ = Pending::None;
  if (phase_ == Phase::Writing) {
    throw std::logic_error("pipepool: a blocking write reported that it would block");
  }
  if (phase_ == Phase::EagerWriting) {
    slots_[io_worker_].task_pipe_full = true;  // watched for room from now on
    phase_ = Phase::Commands;
    return;
  }
  item_over_ = true;
}

void ParentLoop::write_failed(int error) {
  expect(Pending::Write);
  pending_ = Pending::None;
  engine_.write_failed(io_worker_, error);
  if (phase_ == Phase::Writing) {
    phase_ = Phase::Top;
  } else if (phase_ == Phase::EagerWriting) {
    phase_ = Phase::Commands;
  } else {
    item_over_ = true;
  }
}

void ParentLoop::read_done(size_t n) {
  expect(Pending::Read);
  pending_ = Pending::None;
  slots_[io_worker_].bytes_read += n;
  engine_.bytes_read(io_worker_, n);
  // A pipe's read returns what it holds, up to the request: a short read emptied it, so another
  // read now would only say "would block" (one system call per wake-up for small results). The
  // epoll set is level-triggered: bytes written meanwhile make the next Wait return at once.
  // Reads straight into a large payload keep going (its writer is refilling the pipe).
  if (!read_after_exit_ && n < read_requested_ && read_requested_ <= kParentReadAheadBytes) {
    item_over_ = true;
  }
}

void ParentLoop::read_would_block() {
  expect(Pending::Read);
  pending_ = Pending::None;
  if (read_after_exit_) {
    engine_.result_eof(io_worker_);  // a dead process writes nothing more
  } else {
    item_over_ = true;
  }
}

void ParentLoop::read_eof() {
  expect(Pending::Read);
  pending_ = Pending::None;
  engine_.result_eof(io_worker_);
  if (!read_after_exit_) item_over_ = true;
}

void ParentLoop::waited(std::span<const ReadyEvent> events) {
  expect(Pending::Wait);
  pending_ = Pending::None;
  batch_.assign(events.begin(), events.end());
  batch_pos_ = 0;
  rounds_ = 0;
  exit_handled_ = false;
  item_over_ = false;
  for (const ReadyEvent& event : batch_) {
    if (event.kind == ReadyEvent::Kind::ServerLost && !server_lost_) {
      server_lost_ = true;
      server_reason_ = event.reason;
    }
  }
  phase_ = Phase::Dispatch;
}

}  // namespace pipepool::protocol
