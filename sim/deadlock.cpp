// The report of a deadlocked world: what each process waits for, and the wait-for cycle.
#include <algorithm>
#include <cerrno>

#include "world.hpp"
#include "world_internal.hpp"

namespace pipepool::sim {
namespace {

// 212992 -> "212,992"
std::string grouped(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// "212,992 of 212,992 bytes of send buffer charged, 4 skbs of 143,392 bytes queued unread": one
// direction of a socket, from the writer's side (what its blocked write waits on).
std::string socket_charge(const PipeState& s) {
  return grouped(s.charged_bytes) + " of " + grouped(s.charge_limit_bytes) +
         " bytes of send buffer charged, " + std::to_string(s.skbs) + " skbs of " +
         grouped(s.bytes) + " bytes queued unread";
}

}  // namespace

using protocol::ChildEngine;
using protocol::TaskId;
using protocol::WorkerId;

void World::build_deadlock_report() {
  auto report = std::make_unique<DeadlockReport>();
  report->step = schedule_.size();
  report->virtual_time_us = now_us_;
  for (WorkerId w = 0; w < workers_count_; ++w) {
    if (!workers_[w]->channel) continue;
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
    using Op = protocol::ParentLoop::Op;
    if (p.action.op == Op::Write && p.action.blocking) {
      const WorkerId w = p.action.worker;
      pw.call = "write";
      pw.pipe = pipe_state(w, true);
      pw.frame = describe_frame(p.segments, python_framing_);
      pw.call_bytes = p.action.write_bytes;
      pw.done_bytes = p.write_done;
      pw.wanted_bytes = p.action.write_bytes - p.write_done;
      if (pw.pipe->socket) {
        pw.text = "blocked in write(2) of a " + grouped(pw.call_bytes) +
                  "-byte frame to the socket of worker " + std::to_string(w) + ": " +
                  socket_charge(*pw.pipe) + "; " + pw.frame + ", " + grouped(pw.done_bytes) +
                  " of " + grouped(pw.call_bytes) + " bytes written, " + grouped(pw.wanted_bytes) +
                  " still wanted; only worker " + std::to_string(w) + " reads that socket";
      } else {
        pw.text = "blocked in write(2) to the task pipe of worker " + std::to_string(w) + ": " +
                  pw.frame + ", " + std::to_string(pw.done_bytes) + " of " +
                  std::to_string(pw.call_bytes) + " bytes written, " +
                  std::to_string(pw.wanted_bytes) + " still wanted; only worker " +
                  std::to_string(w) + " reads that pipe";
      }
      pw.waits_for = {kFirstWorkerProcess + w};
    } else if (p.action.op == Op::Done) {
      pw.call = "done";
      pw.text = "has shut the pool down";
    } else {
      pw.call = "epoll_wait";
      std::string what;
      for (WorkerId w = 0; w < workers_count_; ++w) {
        const uint32_t proc = kFirstWorkerProcess + w;
        const bool watch = p.action.op == Op::Wait && w < p.action.interest.size();
        if (watch && p.action.interest[w].read) {
          const Channel& c = *workers_[w]->channel;
          what += std::string(what.empty() ? "" : ", ") + "the result " +
                  (c.socket() ? "direction of the socket" : "pipe") + " of worker " +
                  std::to_string(w) + " (" + c.describe(Direction::Result) + ")";
          pw.waits_for.push_back(proc);
        }
        if (watch && p.action.interest[w].write) {
          const Channel& c = *workers_[w]->channel;
          what += std::string(what.empty() ? "" : ", ") +
                  (c.socket() ? "room (EPOLLOUT: a quarter of the send buffer) in the socket"
                              : "room in the task pipe") +
                  " of worker " + std::to_string(w) + " (" + c.describe(Direction::Task) + ")";
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
      ww.text = ww.pipe->socket
                    ? "blocked in read(2) of its socket, wants " + std::to_string(ww.call_bytes) +
                          " bytes; only the parent writes to that socket"
                    : "blocked in read(2) of its task pipe, wants " +
                          std::to_string(ww.call_bytes) +
                          " bytes; only the parent writes that pipe";
      ww.waits_for = {kParentProcess};
    } else if (k.action.op == ChildEngine::Op::Write) {
      ww.call = "write";
      ww.pipe = pipe_state(w, false);
      ww.frame = describe_frame(k.action.write, python_framing_);
      ww.call_bytes = k.write_total;
      ww.done_bytes = k.write_done;
      ww.wanted_bytes = k.write_total - k.write_done;
      if (ww.pipe->socket) {
        ww.text = "blocked in writev(2) of a " + grouped(ww.call_bytes) +
                  "-byte frame to its socket: " + socket_charge(*ww.pipe) + "; " + ww.frame + ", " +
                  grouped(ww.done_bytes) + " of " + grouped(ww.call_bytes) + " bytes written, " +
                  grouped(ww.wanted_bytes) + " still wanted; only the parent reads that socket";
      } else {
        ww.text = "blocked in writev(2) to its result pipe: " + ww.frame + ", " +
                  std::to_string(ww.done_bytes) + " of " + std::to_string(ww.call_bytes) +
                  " bytes written, " + std::to_string(ww.wanted_bytes) +
                  " still wanted; only the parent reads that pipe";
      }
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
