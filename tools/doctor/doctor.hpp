// tools/doctor/doctor.hpp: `pipepool doctor`'s logic, apart from its command line and rendering.
//
//   pipepool::doctor::Options options;
//   options.pids = {1234};                          // 1234 and its descendants
//   pipepool::doctor::Diagnosis d = pipepool::doctor::diagnose(options);
//   std::fputs(pipepool::doctor::render_text(d).c_str(), stdout);
//   return pipepool::doctor::exit_status(d);      // 0 no cycle, 1 cycle, 3 unknown or gone
//
// How it decides. Every thread of every process in scope is read from /proc: state, system call
// and its arguments, wchan. A thread blocked in read/write (readv, writev, sendmsg, recvmsg, ...)
// on a pipe or an AF_UNIX socket waits for the processes that could unblock it: a writer, for
// those holding the pipe's read end or the socket's peer; a reader, for those holding the write
// end or the peer. A thread in wait4/waitid waits for its children. A thread in futex waits for
// another thread of its own process and counts for neither side. Any other thread (running,
// sleeping with a timeout, in epoll or poll) may make progress, so its process is live. Then
// live-ness spreads: a blocked process that waits for a live one is live. What is left waits
// only on itself: a deadlock, reported as a cycle of process IDs (a cycle of one when a process
// writes into a pipe or socket that only it reads). When a fact needed for the verdict is hidden
// by permissions (/proc/PID/syscall, wchan, fd), the verdict is "unknown" and says which.
//
// Holders outside the tree are found by scanning every process's fds, and joined to the scope.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pipepool::doctor {

struct Options {
  std::vector<pid_t> pids;          // the processes to inspect
  bool include_descendants = true;  // and their descendants (`doctor PID`; not with --pids)
  std::vector<pid_t> exclude;       // left out of the scope (the doctor itself, by default)
};

enum class Verdict { NoCycle, Deadlock, Unknown };
const char* to_string(Verdict verdict);  // "no cycle", "deadlock", "unknown"

// What a blocked thread waits for.
enum class WaitKind {
  Running,   // runnable, or in a call that ends by itself: may make progress
  Other,     // sleeping in a call the doctor does not follow (epoll, poll, nanosleep, ...)
  Internal,  // futex: another thread of its own process
  Write,     // blocked writing to a pipe or socket
  Read,      // blocked reading from a pipe or socket
  Child,     // wait4/waitid: its children
  Hidden,    // the facts are hidden by permissions
  Exited,    // zombie
};
const char* to_string(WaitKind kind);

struct ThreadReport {
  pid_t tid = 0;
  std::string comm;
  char state = '?';
  std::string syscall;  // "write", "futex", "running", "" when hidden
  std::string wchan;    // "" when none or hidden
  int fd = -1;
  std::optional<uint64_t> bytes_requested;
  std::string object;  // "pipe:[123]", "socket:[456]", or the fd's target
  WaitKind wait = WaitKind::Other;
  std::vector<pid_t> waits_for;      // processes that could unblock it
  std::vector<std::string> missing;  // facts that could not be read
};

struct ProcessReport {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::string comm;
  char state = '?';
  bool in_tree = true;  // false: joined because it holds an end of a pipe or socket in question
  std::vector<ThreadReport> threads;
  // The summary: the thread that decides (the blocked one; else the first), and the verdict.
  size_t main_thread = 0;
  bool live = true;      // may make progress
  bool blocked = false;  // every thread waits (Write/Read/Child/Internal), at least one on I/O
  bool hidden = false;   // some thread's facts were hidden
  std::vector<pid_t> waits_for;
  std::vector<std::string> missing;
};

// An end of a pipe or socket that some blocked thread uses.
struct ObjectReport {
  std::string name;  // "pipe:[123]"
  bool is_pipe = false;
  std::optional<uint64_t> queued_bytes;    // pipe: FIONREAD
  std::optional<uint64_t> capacity_bytes;  // pipe: F_GETPIPE_SZ
  std::vector<pid_t> readers;              // pipe: holders of a read end
  std::vector<pid_t> writers;              // pipe: holders of a write end
  // socket (AF_UNIX)
  bool known_socket = false;
  uint64_t peer_inode = 0;
  std::vector<pid_t> holders;       // of this socket
  std::vector<pid_t> peer_holders;  // of its peer
  uint64_t receive_queue_bytes = 0;
  uint64_t send_queue_bytes = 0;  // sk_wmem_alloc
  uint64_t send_buffer_bytes = 0;
  uint64_t peer_receive_queue_bytes = 0;
};

struct Diagnosis {
  Verdict verdict = Verdict::NoCycle;
  std::vector<pid_t> cycle;       // in wait-for order: cycle[i] waits for cycle[i+1]
  std::vector<pid_t> deadlocked;  // every process that can never progress (cycle included)
  std::vector<ProcessReport> processes;
  std::map<std::string, ObjectReport> objects;
  std::vector<pid_t> gone;           // requested but not found
  std::vector<std::string> missing;  // facts hidden, with what they prevent
  std::string error;                 // set when nothing could be inspected
};

Diagnosis diagnose(const Options& options);

// 0 no cycle, 1 cycle found, 3 not permitted (verdict unknown) or process gone.
int exit_status(const Diagnosis& diagnosis);

std::string render_text(const Diagnosis& diagnosis);
std::string render_json(const Diagnosis& diagnosis);
// The one-paragraph explanation of the cycle ("1234 blocked in write(2) of ... so none ...").
std::string explain_cycle(const Diagnosis& diagnosis);

}  // namespace pipepool::doctor
