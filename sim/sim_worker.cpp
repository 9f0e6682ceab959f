// The simulated worker: protocol::ChildEngine over the model pipes, as driver/worker_main.cpp
// runs it over real ones.
#include <algorithm>
#include <cerrno>

#include "world.hpp"
#include "world_internal.hpp"

namespace pipepool::sim {

using protocol::ChildEngine;
using protocol::TaskId;
using protocol::WorkerId;

bool World::worker_runnable(uint32_t w) const {
  const Worker& k = *workers_[w];
  if (k.phase != Worker::Phase::Alive) return false;
  switch (k.action.op) {
    case ChildEngine::Op::Read:
      return k.channel->reader_can_proceed(Direction::Task);
    case ChildEngine::Op::Run:
      return now_us_ >= k.wake_us;
    case ChildEngine::Op::Write:
      // On a pipe, a write that could not move a byte has no effect anyone sees: it only sleeps.
      // So it counts as blocked before it is entered, and the step is taken once it can do
      // something. On a socket entering is always a step (Channel::write_can_start says why).
      return k.in_write
                 ? k.channel->writer_can_proceed(Direction::Result)
                 : k.channel->write_can_start(Direction::Result, k.write_total, k.action.splice);
    case ChildEngine::Op::Exit:
      return true;
  }
  return false;
}

// A step t of worker w is invisible when (1) taking it later has the same effect as taking it now,
// (2) it stays runnable until taken, and (3) it changes neither which other processes can run nor
// what their steps do. The explorer then lets w take it at once when w ran the step before (so no
// preemption is spent either way); explore.cpp proves that this loses no schedule within the
// preemption bound. Two kinds qualify, and only while the parent cannot kill w (no terminate(),
// no task timeouts), because a kill is the one step of another process that would disable t:
//  - Run, once due: it calls ChildEngine::task_finished and touches no pipe, no queue and no
//    other process's state; nothing but w's own step changes w's action or the time it is due.
//  - a read(2) that asks for fewer bytes than the oldest page of its task pipe still holds: it
//    gets exactly what it asks whatever the parent writes meanwhile (the parent only appends, and
//    w is the pipe's only reader), and it frees no slot and leaves the pipe non-empty, so the
//    parent's writes (free slots; the merge step, which looks at offset + len of the last page)
//    and its epoll_wait (EPOLLOUT: not full; EPOLLERR: no reader) see the same pipe. Typically
//    the 32-byte header of a frame that lies in a page with the start of its payload. On a
//    socketpair the same holds for a read inside the oldest skb (Channel::read_is_inner): it frees
//    no skb, so the parent's charge, its EPOLLOUT and its wake-ups are unchanged, and a read
//    wakes nobody (only freed skbs and arriving data do).
// The engine also kills a worker that breaks the protocol (ParentEngine::fail_worker), which no
// scenario flag predicts. That case stays sound: the run fails (a ProtocolError or WorkerLost
// completion) in either order, and after the kill t's effect can no longer be observed (the dead
// worker's engine is dropped, its task pipe has no reader, so writes get EPIPE whatever it holds,
// and a new worker gets fresh pipes).
World::Invisible World::invisible_step(uint32_t process) const {
  if (may_kill_ || process < kFirstWorkerProcess) return Invisible::No;
  const Worker& k = *workers_[process - kFirstWorkerProcess];
  if (k.phase != Worker::Phase::Alive) return Invisible::No;
  if (k.action.op == ChildEngine::Op::Run && now_us_ >= k.wake_us) return Invisible::Run;
  if (k.action.op == ChildEngine::Op::Read &&
      k.channel->read_is_inner(Direction::Task, k.action.read_into.size())) {
    return Invisible::InnerRead;
  }
  return Invisible::No;
}

void World::fetch_action(uint32_t w) {
  Worker& k = own_worker(w);
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
  Worker& k = own_worker(w);
  k.channel->close_worker_ends();
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
  Worker& k = own_worker(w);
  const uint32_t process = kFirstWorkerProcess + w;
  switch (k.action.op) {
    case ChildEngine::Op::Read: {
      const Channel::ReadResult r =
          k.channel->read(Direction::Task, k.action.read_into, /*nonblocking=*/false);
      note(process, kWorkerRead, static_cast<uint64_t>(r.result));
      if (options_.trace) {
        trace_line(process, "read(2) " + std::string(k.channel->name(Direction::Task)) +
                                ", wants " + std::to_string(k.action.read_into.size()) + " -> " +
                                std::to_string(r.result) + " [" +
                                k.channel->describe(Direction::Task) + "]");
      }
      if (r.would_block || r.result < 0) {
        fail("worker " + std::to_string(w) + "'s read(2) returned " + std::to_string(r.result));
        return;
      }
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
      const Channel::WriteResult r =
          k.in_write ? k.channel->continue_writev(Direction::Result, k.action.write, k.write_done,
                                                  k.action.splice)
                     : k.channel->writev(Direction::Result, k.action.write, /*nonblocking=*/false,
                                         k.action.splice);
      const std::string where = k.channel->name(Direction::Result);
      note(process, k.in_write ? kWorkerContinue : kWorkerWrite, static_cast<uint64_t>(r.result));
      if (options_.trace) {
        trace_line(process, std::string(k.action.splice ? "vmsplice(2) " : "writev(2) ") + where +
                                (k.in_write ? " wakes: +" : ": ") +
                                (k.in_write ? std::to_string(r.written) + " (" +
                                                  std::to_string(k.write_done + r.written) +
                                                  " of " + std::to_string(k.write_total) + ")"
                                            : describe_frame(k.action.write, python_framing_) +
                                                  " -> " + std::to_string(r.result)) +
                                (r.blocked ? ", sleeps" : "") + " [" +
                                k.channel->describe(Direction::Result) + "]");
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

}  // namespace pipepool::sim
