// The simulated parent: an executor of protocol::ParentLoop, the loop the real pool runs
// (pool/src/driver/pool_core.cpp executes the same actions with system calls). It decides
// nothing: it carries out each action over the model pipes and reports what happened. Which
// step comes when is the explorer's choice; what each step does is the loop's.
#include <algorithm>
#include <cerrno>

#include "world.hpp"
#include "world_internal.hpp"

namespace pipepool::sim {

using protocol::Completion;
using protocol::ParentLoop;
using protocol::ReadyEvent;
using protocol::TaskId;
using protocol::WorkerId;
using Op = protocol::ParentLoop::Op;

// ---- runnable ----------------------------------------------------------------------------------

// Whether the parent's epoll_wait would return now (what epoll reports for the interest set, a
// worker to reap, a submission's eventfd, or the deadline).
bool World::wait_ready() const {
  const ParentLoop::Action& a = parent_->action;
  if (!queue_.empty()) return true;
  if (a.deadline_ns != UINT64_MAX && a.deadline_ns <= now_us_ * 1000) return true;
  for (WorkerId w = 0; w < workers_count_; ++w) {
    const Worker& k = *workers_[w];
    if (k.phase == Worker::Phase::Zombie) return true;
    if (!k.channel) continue;
    if (a.interest[w].read && k.channel->parent_read_ready()) return true;
    if (a.interest[w].write && k.channel->parent_write_ready()) return true;
  }
  return false;
}

bool World::parent_runnable() const {
  const Parent& p = *parent_;
  switch (p.action.op) {
    case Op::Write:
      // Entering write(2) is always possible; a blocking one may sleep at once and go on later.
      if (p.action.blocking && p.in_write) {
        return workers_[p.action.worker]->channel->writer_can_proceed(Direction::Task);
      }
      return true;
    case Op::Read:
      return true;  // non-blocking
    case Op::Wait:
      return wait_ready();
    default:
      return false;  // Done (the other actions are carried out within a step)
  }
}

// ---- steps -------------------------------------------------------------------------------------

void World::step_parent() {
  switch (parent_->action.op) {
    case Op::Write:
      parent_write();
      break;
    case Op::Read:
      parent_read();
      break;
    case Op::Wait:
      parent_wait();
      break;
    default:
      fail("the parent took a step with nothing to do");
      return;
  }
  if (!parent_->in_write) advance_parent();
}

// Asks the loop for actions, carrying out those that are no step of their own, until it names
// one that is (Write, Read, Wait) or is Done.
void World::advance_parent() {
  Parent& p = own_parent();
  for (;;) {
    if (status_ != RunStatus::Running) {
      p.action = {.op = Op::Done};
      return;
    }
    ParentLoop::Action action;
    try {
      action = p.loop->next(now_us_ * 1000);
    } catch (const std::exception& e) {
      fail(std::string("the parent loop broke its contract: ") + e.what());
      p.action = {.op = Op::Done};
      return;
    }
    switch (action.op) {
      case Op::Booted:
        break;
      case Op::TakeInbox:
        take_inbox();
        break;
      case Op::StartWorker:
        start_worker(action.worker);
        break;
      case Op::KillWorker:
        kill_worker(action.worker);
        break;
      case Op::Deliver:
        note(kParentProcess, kDeliver, action.completions.size());
        for (Completion& c : action.completions) record_completion(c);
        break;
      case Op::Write:
      case Op::Read:
      case Op::Wait:
      case Op::Done:
        p.action = action;
        if (action.op == Op::Write) {
          p.segments.assign(action.write.begin(), action.write.end());
          p.action.write = p.segments;
          p.in_write = false;
          p.write_done = 0;
        }
        if (action.op == Op::Done && options_.trace) {
          trace_line(kParentProcess, "the pool has shut down");
        }
        return;
    }
  }
}

void World::take_inbox() {
  protocol::Inbox inbox;
  while (!queue_.empty()) {
    const QueueItem item = queue_.front();
    queue_.pop_front();
    switch (item.kind) {
      case QueueItem::Kind::Tasks: {
        const Script::Op& op = script_->ops[item.op];
        std::vector<protocol::TaskSubmission>& tasks = inbox.calls.emplace_back();
        tasks.reserve(op.end_task - op.first_task);
        for (TaskId id = op.first_task; id < op.end_task; ++id) {
          tasks.push_back({id, script_->payloads[id - 1]});
        }
        break;
      }
      case QueueItem::Kind::Shutdown:
        inbox.join = true;
        break;
      case QueueItem::Kind::Terminate:
        inbox.terminate = true;
        break;
    }
  }
  if (!inbox.calls.empty() || inbox.join || inbox.terminate) {
    note(kParentProcess, kInbox,
         (inbox.calls.size() << 2) ^ (uint64_t{inbox.join} << 1) ^ uint64_t{inbox.terminate});
    if (options_.trace) {
      trace_line(kParentProcess, "takes " + std::to_string(inbox.calls.size()) + " call(s)" +
                                     (inbox.join ? " and join()" : "") +
                                     (inbox.terminate ? " and terminate()" : ""));
    }
  }
  own_parent().loop->inbox(std::move(inbox));
}

void World::start_worker(WorkerId w) {
  Worker& k = own_worker(w);
  if (k.phase != Worker::Phase::None) {
    fail("the loop started worker " + std::to_string(w) + " while its process still exists");
    own_parent().loop->start_failed(w);
    return;
  }
  if (k.channel) closed_pipe_ops_ += k.channel->ops();
  if (script_->scenario.transport == Transport::SocketPair) {
    k.channel.emplace(socket_config_);
  } else {
    k.channel.emplace(pipe_config_);
  }
  k.engine.emplace(setup_.child);
  ++k.incarnation;
  k.in_write = false;
  k.phase = Worker::Phase::Alive;
  note(kFirstWorkerProcess + w, kForked, k.incarnation);
  fetch_action(w);
  if (options_.trace) trace_line(kParentProcess, "forks worker " + std::to_string(w));
  own_parent().loop->started(w, "worker " + std::to_string(w));
}

void World::kill_worker(WorkerId w) {
  if (workers_[w]->phase != Worker::Phase::Alive) return;
  if (options_.trace) trace_line(kParentProcess, "kills worker " + std::to_string(w));
  worker_exit(w, 9, -1, "killed by signal 9 (SIGKILL)");
}

void World::parent_write() {
  Parent& p = own_parent();
  const WorkerId w = p.action.worker;
  Channel& channel = *own_worker(w).channel;
  const std::string where = std::string(channel.name(Direction::Task)) + " " + std::to_string(w);
  if (!p.action.blocking) {
    const Channel::WriteResult r =
        channel.writev(Direction::Task, p.segments, /*nonblocking=*/true, p.action.splice);
    note(kParentProcess, kParentNbWrite, (uint64_t{w} << 40) ^ static_cast<uint64_t>(r.result));
    if (options_.trace) {
      trace_line(kParentProcess,
                 std::string(p.action.splice ? "vmsplice(2) " : "write(2) ") + where +
                     " (non-blocking): " + describe_frame(p.segments, python_framing_) + " -> " +
                     std::to_string(r.result) + " [" + channel.describe(Direction::Task) + "]");
    }
    if (r.result > 0) {
      p.loop->wrote(static_cast<size_t>(r.result));
    } else if (r.result == -EAGAIN) {
      p.loop->write_would_block();
    } else {
      p.loop->write_failed(static_cast<int>(-r.result));
    }
    return;
  }
  const bool continuing = p.in_write;
  const Channel::WriteResult r =
      continuing
          ? channel.continue_writev(Direction::Task, p.segments, p.write_done, p.action.splice)
          : channel.writev(Direction::Task, p.segments, false, p.action.splice);
  note(kParentProcess, continuing ? kParentContinue : kParentWrite,
       (uint64_t{w} << 40) ^ static_cast<uint64_t>(r.result));
  if (options_.trace) {
    const std::string state = " [" + channel.describe(Direction::Task) + "]";
    trace_line(kParentProcess,
               continuing
                   ? "write(2) " + where + " wakes: +" + std::to_string(r.written) + " (" +
                         std::to_string(p.write_done + r.written) + " of " +
                         std::to_string(p.action.write_bytes) + ")" +
                         (r.blocked ? ", sleeps" : ", returns " + std::to_string(r.result)) + state
                   : "write(2) " + where + ": " + describe_frame(p.segments, python_framing_) +
                         " -> " + std::to_string(r.result) + (r.blocked ? ", sleeps" : "") + state);
  }
  if (r.blocked) {
    p.in_write = true;
    p.write_done = static_cast<size_t>(r.result);
    return;
  }
  p.in_write = false;
  if (r.result > 0) {
    p.loop->wrote(static_cast<size_t>(r.result));
  } else if (r.result == -EPIPE || r.result == -ECONNRESET) {
    // The worker is gone: a pipe without reader, or a socket whose peer closed (ECONNRESET when
    // it left bytes unread, the socket model says which).
    p.loop->write_failed(static_cast<int>(-r.result));
  } else {
    fail("the parent's write(2) to " + where + " returned " + std::to_string(r.result));
    p.loop->write_failed(static_cast<int>(-r.result));
  }
}

void World::parent_read() {
  Parent& p = own_parent();
  const WorkerId w = p.action.worker;
  Worker& k = own_worker(w);
  if (!k.channel) {
    p.loop->read_eof();
    return;
  }
  Channel& channel = *k.channel;
  const Channel::ReadResult r =
      channel.read(Direction::Result, p.action.read_into, /*nonblocking=*/true);
  note(kParentProcess, kParentRead, (uint64_t{w} << 40) ^ static_cast<uint64_t>(r.result));
  if (options_.trace) {
    trace_line(kParentProcess,
               "read(2) " + std::string(channel.name(Direction::Result)) + " " + std::to_string(w) +
                   ", wants " + std::to_string(p.action.read_into.size()) + " -> " +
                   std::to_string(r.result) + " [" + channel.describe(Direction::Result) + "]");
  }
  if (r.would_block || r.result == -EAGAIN) {
    p.loop->read_would_block();
  } else if (r.result > 0) {
    p.loop->read_done(static_cast<size_t>(r.result));
  } else {
    // 0 (end of file), or ECONNRESET from a socket whose worker died with task bytes unread: the
    // real driver reports both as end of file (pool_core.cpp).
    p.loop->read_eof();
  }
}

void World::parent_wait() {
  Parent& p = own_parent();
  const ParentLoop::Action& a = p.action;
  p.events.clear();
  uint64_t h = 0;
  std::string text;
  for (WorkerId w = 0; w < workers_count_; ++w) {
    const Worker& k = *workers_[w];
    if (k.channel && a.interest[w].read && k.channel->parent_read_ready()) {
      p.events.push_back({.kind = ReadyEvent::Kind::Readable, .worker = w});
    }
    if (k.channel && a.interest[w].write && k.channel->parent_write_ready()) {
      p.events.push_back({.kind = ReadyEvent::Kind::Writable, .worker = w});
    }
    if (k.phase == Worker::Phase::Zombie) {
      // The fork server reaps it and reports its exit, which this epoll_wait returns.
      Worker& reaped = own_worker(w);  // `k` may be the copy another world still shares
      reaped.phase = Worker::Phase::None;
      p.events.push_back({.kind = ReadyEvent::Kind::Exited, .worker = w, .exit = reaped.exit});
    }
  }
  if (!queue_.empty()) p.events.push_back({.kind = ReadyEvent::Kind::Wake});
  for (const ReadyEvent& e : p.events) {
    h = mix(h, (static_cast<uint64_t>(e.kind) << 56) ^ (uint64_t{e.worker} << 40));
    if (options_.trace) {
      static const char* const kNames[] = {"read", "write", "reap", "wake", "server-lost"};
      text += std::string(text.empty() ? "" : ", ") + kNames[static_cast<int>(e.kind)] +
              (e.kind == ReadyEvent::Kind::Wake ? "" : " W" + std::to_string(e.worker));
      if (e.kind == ReadyEvent::Kind::Exited) text += " (" + e.exit.description + ")";
    }
  }
  note(kParentProcess, kEpollWait, mix(h, now_us_));
  if (options_.trace) {
    trace_line(kParentProcess, "epoll_wait -> " + (text.empty() ? std::string("timeout") : text));
  }
  p.loop->waited(p.events);
}

// ---- completions -------------------------------------------------------------------------------

void World::record_completion(Completion& c) {
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
      if (!terminate_requested_) fail(task + " completed as Terminated without terminate()");
      break;
    case Completion::Kind::Cancelled:
      fail(task + " was cancelled, though the simulated user never cancels");
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
  // Checked: the bytes go, as the real driver moves them to the caller (the action's contract
  // lets the executor move from them). Kept, every copy of the world would copy them again: the
  // loop holds the batch it delivered until the next one, and a copy is taken every few steps.
  std::string().swap(c.payload);
}

}  // namespace pipepool::sim
