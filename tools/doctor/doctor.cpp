#include "doctor.hpp"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <set>
#include <thread>

#include "proc_reader.hpp"

namespace pipepool::doctor {
namespace {

constexpr size_t kMaxProcesses = 512;

bool is_write_call(long n) {
  return n == SYS_write || n == SYS_writev || n == SYS_pwrite64 || n == SYS_sendto ||
         n == SYS_sendmsg || n == SYS_pwritev2;
}
bool is_read_call(long n) {
  return n == SYS_read || n == SYS_readv || n == SYS_pread64 || n == SYS_recvfrom ||
         n == SYS_recvmsg || n == SYS_preadv2;
}
bool is_futex_call(long n) {
#ifdef SYS_futex_waitv
  if (n == SYS_futex_waitv) return true;
#endif
  return n == SYS_futex;
}

std::optional<uint64_t> requested_bytes(pid_t pid, const proc::SyscallState& call) {
  const long n = call.number;
  if (n == SYS_write || n == SYS_read || n == SYS_pwrite64 || n == SYS_pread64 || n == SYS_sendto ||
      n == SYS_recvfrom) {
    return call.args[2];
  }
  if (n == SYS_writev || n == SYS_readv || n == SYS_pwritev2 || n == SYS_preadv2) {
    return proc::iovec_bytes(pid, call.args[1], call.args[2]);
  }
  if (n == SYS_sendmsg || n == SYS_recvmsg) return proc::msghdr_bytes(pid, call.args[1]);
  return std::nullopt;
}

void add_unique(std::vector<pid_t>& pids, pid_t pid) {
  if (std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

const char* kPtraceNote =
    "permission denied: reading it needs ptrace access (the same user, or "
    "CAP_SYS_PTRACE)";

class Inspector {
 public:
  explicit Inspector(pid_t self) : self_(self) {
    holders_ = proc::index_holders();
    sockets_ = proc::unix_sockets();
  }

  ProcessReport inspect(pid_t pid, Diagnosis& diagnosis);
  const std::vector<pid_t>& hidden_holders() const { return holders_.denied; }

 private:
  std::vector<pid_t> holders_of(uint64_t inode, bool want_read, bool want_write) const;
  void follow_io(pid_t pid, ThreadReport& thread, const proc::SyscallState& call, bool writing,
                 Diagnosis& diagnosis);

  pid_t self_;
  proc::HolderIndex holders_;
  std::optional<std::map<uint64_t, proc::UnixSocket>> sockets_;
};

std::vector<pid_t> Inspector::holders_of(uint64_t inode, bool want_read, bool want_write) const {
  std::vector<pid_t> out;
  auto it = holders_.by_inode.find(inode);
  if (it == holders_.by_inode.end()) return out;
  for (const proc::Holder& holder : it->second) {
    if (holder.pid == self_) continue;
    if ((want_read && !holder.readable()) || (want_write && !holder.writable())) continue;
    add_unique(out, holder.pid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void Inspector::follow_io(pid_t pid, ThreadReport& thread, const proc::SyscallState& call,
                          bool writing, Diagnosis& diagnosis) {
  thread.fd = static_cast<int>(call.args[0]);
  thread.bytes_requested = requested_bytes(pid, call);
  std::optional<proc::FdEntry> entry = proc::read_fd(pid, thread.fd);
  if (!entry) {
    thread.wait = WaitKind::Other;
    thread.missing.push_back("fd " + std::to_string(thread.fd) + " (closed, or hidden)");
    return;
  }
  thread.object = entry->target;
  if (entry->kind == proc::FdKind::Pipe) {
    ObjectReport& object = diagnosis.objects[entry->target];
    object.name = entry->target;
    object.is_pipe = true;
    object.readers = holders_of(entry->inode, true, false);
    object.writers = holders_of(entry->inode, false, true);
    if (auto fill = proc::pipe_fill(pid, thread.fd)) {
      object.queued_bytes = fill->queued_bytes;
      object.capacity_bytes = fill->capacity_bytes;
    }
    thread.wait = writing ? WaitKind::Write : WaitKind::Read;
    thread.waits_for = writing ? object.readers : object.writers;
    // Nobody visible holds the other end (another PID namespace, or hidden fds): it may well
    // be alive, so this thread is not followed.
    if (thread.waits_for.empty()) thread.wait = WaitKind::Other;
    return;
  }
  if (entry->kind == proc::FdKind::Socket && sockets_) {
    auto it = sockets_->find(entry->inode);
    if (it != sockets_->end() && it->second.peer_inode != 0) {
      const proc::UnixSocket& socket = it->second;
      ObjectReport& object = diagnosis.objects[entry->target];
      object.name = entry->target;
      object.known_socket = true;
      object.peer_inode = socket.peer_inode;
      object.holders = holders_of(socket.inode, false, false);
      object.peer_holders = holders_of(socket.peer_inode, false, false);
      object.receive_queue_bytes = socket.receive_queue_bytes;
      object.send_queue_bytes = socket.send_queue_bytes;
      object.send_buffer_bytes = socket.send_buffer_bytes;
      if (auto peer = sockets_->find(socket.peer_inode); peer != sockets_->end()) {
        object.peer_receive_queue_bytes = peer->second.receive_queue_bytes;
      }
      thread.wait = writing ? WaitKind::Write : WaitKind::Read;
      thread.waits_for = object.peer_holders;
      if (thread.waits_for.empty()) thread.wait = WaitKind::Other;  // as for a pipe
      return;
    }
  }
  thread.wait = WaitKind::Other;  // a file, a TCP socket, an unconnected socket: not followed
}

ProcessReport Inspector::inspect(pid_t pid, Diagnosis& diagnosis) {
  ProcessReport report;
  report.pid = pid;
  std::optional<proc::TaskStat> stat = proc::read_process_stat(pid);
  if (!stat) {
    report.state = 'X';
    report.live = false;
    return report;
  }
  report.ppid = stat->ppid;
  report.comm = stat->comm;
  report.state = stat->state;
  const proc::FdList fds = proc::read_fds(pid);
  if (fds.access == proc::Access::Denied) {
    report.missing.push_back("/proc/" + std::to_string(pid) + "/fd (" + kPtraceNote + ")");
  }
  for (pid_t tid : proc::list_threads(pid)) {
    ThreadReport thread;
    thread.tid = tid;
    std::optional<proc::TaskStat> thread_stat = proc::read_thread_stat(pid, tid);
    if (!thread_stat) continue;  // ended meanwhile
    thread.comm = thread_stat->comm;
    thread.state = thread_stat->state;
    const proc::Wchan wchan = proc::read_wchan(pid, tid);
    thread.wchan = wchan.symbol;
    const std::string where = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
    if (wchan.hidden) thread.missing.push_back(where + "/wchan (" + kPtraceNote + ")");
    const char state = thread.state;
    if (state == 'Z' || state == 'X') {
      thread.wait = WaitKind::Exited;
    } else if (state == 'R') {
      thread.wait = WaitKind::Running;
      thread.syscall = "running";
    } else if (state == 'T' || state == 't' || state == 'D') {
      thread.wait = WaitKind::Other;
    } else {
      const proc::SyscallState call = proc::read_syscall(pid, tid);
      if (call.access == proc::Access::Denied) {
        thread.wait = WaitKind::Hidden;
        thread.missing.insert(thread.missing.begin(), where + "/syscall (" + kPtraceNote + ")");
      } else if (call.access == proc::Access::Gone) {
        thread.wait = WaitKind::Exited;
      } else if (call.kind == proc::SyscallState::Kind::Running) {
        thread.wait = WaitKind::Running;
        thread.syscall = "running";
      } else if (call.kind == proc::SyscallState::Kind::NotInSyscall) {
        thread.wait = WaitKind::Other;
      } else {
        thread.syscall = proc::syscall_name(call.number);
        if (is_futex_call(call.number)) {
          thread.wait = WaitKind::Internal;
        } else if (is_write_call(call.number) || is_read_call(call.number)) {
          follow_io(pid, thread, call, is_write_call(call.number), diagnosis);
        } else if (call.number == SYS_wait4 || call.number == SYS_waitid) {
          thread.wait = WaitKind::Child;
          const long target = call.number == SYS_wait4        ? static_cast<int>(call.args[0])
                              : call.args[0] == 1 /* P_PID */ ? static_cast<long>(call.args[1])
                                                              : -1;
          if (target > 0) {
            thread.waits_for.push_back(static_cast<pid_t>(target));
          } else {
            thread.waits_for = proc::children_of(pid);
          }
          std::erase(thread.waits_for, self_);
          if (thread.waits_for.empty()) thread.wait = WaitKind::Other;
        } else {
          thread.wait = WaitKind::Other;
        }
      }
    }
    report.threads.push_back(std::move(thread));
  }

  bool any_live = false;
  bool any_hidden = false;
  bool any_wait = false;
  for (size_t i = 0; i < report.threads.size(); ++i) {
    const ThreadReport& thread = report.threads[i];
    for (const std::string& fact : thread.missing) report.missing.push_back(fact);
    switch (thread.wait) {
      case WaitKind::Running:
      case WaitKind::Other:
        any_live = true;
        break;
      case WaitKind::Hidden:
        any_hidden = true;
        break;
      case WaitKind::Write:
      case WaitKind::Read:
      case WaitKind::Child:
        if (!any_wait) report.main_thread = i;
        any_wait = true;
        for (pid_t other : thread.waits_for) add_unique(report.waits_for, other);
        break;
      case WaitKind::Internal:
      case WaitKind::Exited:
        break;
    }
  }
  report.hidden = any_hidden && !any_live;
  report.blocked = !any_live && !any_hidden && any_wait;
  report.live = !report.blocked && (any_live || any_hidden || !any_wait) && report.state != 'Z' &&
                !report.threads.empty();
  if (report.state == 'Z') report.live = false;
  return report;
}

// The shortest cycle through `deadlocked` (cycle[i] waits for cycle[i+1]); length 2 or more
// preferred over a process waiting for itself, which is reported only when nothing else is.
std::vector<pid_t> find_cycle(const std::vector<pid_t>& deadlocked,
                              const std::map<pid_t, const ProcessReport*>& by_pid) {
  std::vector<pid_t> best;
  for (pid_t start : deadlocked) {
    // BFS from start's successors (other than itself) back to start.
    std::map<pid_t, pid_t> parent;
    std::deque<pid_t> queue;
    for (pid_t next : by_pid.at(start)->waits_for) {
      if (next == start || !contains(deadlocked, next) || parent.count(next)) continue;
      parent[next] = start;
      queue.push_back(next);
    }
    std::vector<pid_t> found;
    while (!queue.empty() && found.empty()) {
      const pid_t at = queue.front();
      queue.pop_front();
      for (pid_t next : by_pid.at(at)->waits_for) {
        if (next == start) {
          for (pid_t p = at; p != start; p = parent[p]) found.push_back(p);
          found.push_back(start);
          std::reverse(found.begin(), found.end());
          break;
        }
        if (!contains(deadlocked, next) || parent.count(next)) continue;
        parent[next] = at;
        queue.push_back(next);
      }
    }
    if (!found.empty() && (best.empty() || found.size() < best.size())) best = found;
  }
  if (!best.empty()) return best;
  for (pid_t start : deadlocked) {
    if (contains(by_pid.at(start)->waits_for, start)) return {start};
  }
  return {};
}

Diagnosis diagnose_once(const Options& options) {
  Diagnosis diagnosis;
  const pid_t self = ::getpid();
  std::vector<pid_t> scope;
  for (pid_t pid : options.pids) {
    std::vector<pid_t> found =
        options.include_descendants ? proc::process_tree(pid) : std::vector<pid_t>{};
    if (!options.include_descendants && proc::read_process_stat(pid)) found.push_back(pid);
    if (found.empty()) {
      diagnosis.gone.push_back(pid);
      continue;
    }
    for (pid_t member : found) {
      if (member != self && !contains(options.exclude, member)) add_unique(scope, member);
    }
  }
  if (scope.empty()) {
    diagnosis.verdict = Verdict::Unknown;
    diagnosis.error = diagnosis.gone.empty() ? "nothing to inspect" : "no such process";
    return diagnosis;
  }
  const size_t in_tree = scope.size();
  Inspector inspector(self);
  for (size_t i = 0; i < scope.size() && i < kMaxProcesses; ++i) {
    ProcessReport report = inspector.inspect(scope[i], diagnosis);
    report.in_tree = i < in_tree;
    for (pid_t other : report.waits_for) {
      if (other != self && !contains(options.exclude, other)) add_unique(scope, other);
    }
    diagnosis.processes.push_back(std::move(report));
  }

  std::map<pid_t, const ProcessReport*> by_pid;
  for (const ProcessReport& report : diagnosis.processes) by_pid[report.pid] = &report;
  // Liveness spreads backwards along the wait-for edges: whoever waits for a live process (or
  // for one the doctor could not inspect) may still progress.
  std::set<pid_t> live;
  for (const ProcessReport& report : diagnosis.processes) {
    if (!report.blocked) live.insert(report.pid);
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (const ProcessReport& report : diagnosis.processes) {
      if (live.count(report.pid)) continue;
      for (pid_t other : report.waits_for) {
        const auto it = by_pid.find(other);
        const bool other_live =
            it == by_pid.end() ? true : (live.count(other) > 0 && it->second->state != 'Z');
        if (other_live) {
          live.insert(report.pid);
          changed = true;
          break;
        }
      }
    }
  }
  for (const ProcessReport& report : diagnosis.processes) {
    if (report.blocked && !live.count(report.pid)) diagnosis.deadlocked.push_back(report.pid);
  }
  bool any_hidden = false;
  for (const ProcessReport& report : diagnosis.processes) {
    if (report.hidden) any_hidden = true;
    for (const std::string& fact : report.missing) diagnosis.missing.push_back(fact);
  }
  if (!diagnosis.deadlocked.empty() && !inspector.hidden_holders().empty()) {
    diagnosis.missing.push_back(
        "the fds of " + std::to_string(inspector.hidden_holders().size()) +
        " processes of other users: an end held by one of them is not seen");
  }
  if (!diagnosis.deadlocked.empty()) {
    diagnosis.verdict = Verdict::Deadlock;
    diagnosis.cycle = find_cycle(diagnosis.deadlocked, by_pid);
  } else if (any_hidden) {
    diagnosis.verdict = Verdict::Unknown;
  } else {
    diagnosis.verdict = Verdict::NoCycle;
  }
  return diagnosis;
}

uint64_t cpu_ticks_of(const std::vector<pid_t>& pids) {
  uint64_t total = 0;
  for (pid_t pid : pids) {
    if (auto stat = proc::read_process_stat(pid)) total += stat->cpu_ticks();
  }
  return total;
}

}  // namespace

const char* to_string(Verdict verdict) {
  switch (verdict) {
    case Verdict::NoCycle:
      return "no cycle";
    case Verdict::Deadlock:
      return "deadlock";
    case Verdict::Unknown:
      return "unknown";
  }
  return "unknown";
}

const char* to_string(WaitKind kind) {
  switch (kind) {
    case WaitKind::Running:
      return "running";
    case WaitKind::Other:
      return "other";
    case WaitKind::Internal:
      return "own thread";
    case WaitKind::Write:
      return "write";
    case WaitKind::Read:
      return "read";
    case WaitKind::Child:
      return "child";
    case WaitKind::Hidden:
      return "hidden";
    case WaitKind::Exited:
      return "exited";
  }
  return "other";
}

Diagnosis diagnose(const Options& options) {
  // One snapshot can catch a live pipeline between two wake-ups; a deadlock is confirmed by a
  // second look 200 ms later at the same processes, which must have used no CPU meanwhile.
  Diagnosis diagnosis = diagnose_once(options);
  for (int attempt = 0; attempt < 3 && diagnosis.verdict == Verdict::Deadlock; ++attempt) {
    const uint64_t before = cpu_ticks_of(diagnosis.deadlocked);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const uint64_t after = cpu_ticks_of(diagnosis.deadlocked);
    Diagnosis again = diagnose_once(options);
    const bool same = again.verdict == Verdict::Deadlock &&
                      again.deadlocked == diagnosis.deadlocked && before == after;
    diagnosis = std::move(again);
    if (same) break;
  }
  return diagnosis;
}

int exit_status(const Diagnosis& diagnosis) {
  if (!diagnosis.error.empty()) return 3;
  if (diagnosis.verdict == Verdict::Deadlock) return 1;
  if (!diagnosis.gone.empty()) return 3;
  switch (diagnosis.verdict) {
    case Verdict::NoCycle:
      return 0;
    case Verdict::Deadlock:
      return 1;
    case Verdict::Unknown:
      return 3;
  }
  return 3;
}

}  // namespace pipepool::doctor
