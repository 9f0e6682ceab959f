// tools/proc/proc_reader.hpp: the project's one reader of /proc (and of the kernel's AF_UNIX
// sock_diag netlink interface), for `pipepool doctor`, bench/deadlock_watch and the tests.
//
//   for (pid_t pid : proc::process_tree(root)) {
//     for (pid_t tid : proc::list_threads(pid)) {
//       std::optional<proc::TaskStat> stat = proc::read_thread_stat(pid, tid);  // state, CPU
//       proc::SyscallState call = proc::read_syscall(pid, tid);  // Denied without ptrace rights
//     }
//     proc::FdList fds = proc::read_fds(pid);  // pipe:[inode], socket:[inode], open mode
//   }
//   auto sockets = proc::unix_sockets();  // inode -> peer, queues, send buffer (no privilege)
//
// Every function reads the kernel's state at the moment of the call; processes come and go, so
// each answer may be stale by the time it is used, and "gone" is an ordinary outcome, not an
// error. Nothing here throws (but std::bad_alloc) or writes to the processes it reads, with one
// exception stated at pipe_fill(). Linux only. Thread safety: every function may be called from
// any thread; none keeps state between calls.
//
// Links libc only (no pipepool target), so that test helpers of any folder can use it.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipepool::proc {

// Whether a fact could be read: Denied is a permission refusal (EACCES/EPERM: another user's
// process without CAP_SYS_PTRACE), Gone means the process or thread no longer exists.
enum class Access { Ok, Denied, Gone };
std::string_view to_string(Access access);

// /proc/PID/stat or /proc/PID/task/TID/stat. `id` is the pid or tid the file describes.
struct TaskStat {
  pid_t id = 0;
  std::string comm;  // may hold spaces and parentheses
  char state = '?';  // R running, S sleeping, D uninterruptible, T stopped, Z zombie, ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  uint64_t utime_ticks = 0;  // clock ticks (sysconf(_SC_CLK_TCK)) in user mode
  uint64_t stime_ticks = 0;  // ... in kernel mode
  uint64_t cpu_ticks() const { return utime_ticks + stime_ticks; }
};

// Parses one stat line ("pid (comm) S ppid pgrp ..."); nullopt if it is not one.
std::optional<TaskStat> parse_stat(std::string_view line);
std::optional<TaskStat> read_process_stat(pid_t pid);
std::optional<TaskStat> read_thread_stat(pid_t pid, pid_t tid);

// Every process in /proc, ascending.
std::vector<pid_t> list_processes();
// Threads of `pid` (/proc/PID/task), ascending; empty when it is gone.
std::vector<pid_t> list_threads(pid_t pid);
// Children of `pid` (/proc/PID/task/*/children), ascending.
std::vector<pid_t> children_of(pid_t pid);
// `root` and its descendants, breadth first (root first), at most `limit` of them; empty when
// `root` is gone.
std::vector<pid_t> process_tree(pid_t root, size_t limit = 4096);

// /proc/PID/task/TID/syscall: the system call a thread is blocked in, with its six arguments.
// Reading it needs ptrace access (PTRACE_MODE_ATTACH): same user, or CAP_SYS_PTRACE.
struct SyscallState {
  enum class Kind { InSyscall, Running, NotInSyscall };
  Access access = Access::Gone;
  Kind kind = Kind::NotInSyscall;
  long number = -1;                // InSyscall: the system call number of this architecture
  std::array<uint64_t, 6> args{};  // InSyscall: its raw arguments
};
SyscallState read_syscall(pid_t pid, pid_t tid);
// "write", "futex", ... for a number of this architecture; "syscall 123" for the others.
std::string syscall_name(long number);

// /proc/PID/task/TID/wchan: the kernel function a sleeping thread waits in ("pipe_write",
// "unix_stream_sendmsg"...). The kernel prints "0" both for a running thread and when the caller
// lacks ptrace read access; `symbol` is then empty and `hidden` says the second (a permission
// probe on /proc/PID/syscall decides it).
struct Wchan {
  Access access = Access::Gone;
  std::string symbol;  // empty: none, or hidden
  bool hidden = false;
};
Wchan read_wchan(pid_t pid, pid_t tid);

// One open descriptor: /proc/PID/fd/N (readlink) and /proc/PID/fdinfo/N (flags).
enum class FdKind { Pipe, Socket, AnonInode, File, Other };
struct FdEntry {
  int fd = -1;
  std::string target;  // "pipe:[123]", "socket:[456]", "/dev/null", "anon_inode:[eventpoll]"
  FdKind kind = FdKind::Other;
  uint64_t inode = 0;     // Pipe and Socket: the inode in the brackets
  int flags = -1;         // fdinfo "flags:" (open flags, O_ACCMODE inside), -1 if unreadable
  bool readable() const;  // opened O_RDONLY or O_RDWR (true when flags are unknown)
  bool writable() const;  // opened O_WRONLY or O_RDWR (true when flags are unknown)
};
struct FdList {
  Access access = Access::Gone;
  std::vector<FdEntry> fds;  // ascending by fd
};
FdList read_fds(pid_t pid);
std::optional<FdEntry> read_fd(pid_t pid, int fd);
// Parses a readlink target of /proc/PID/fd/N into kind and inode.
void classify_target(FdEntry& entry);

// How full a pipe is: FIONREAD and F_GETPIPE_SZ on a read end of the same pipe, opened through
// /proc/PID/fd/N with O_RDONLY|O_NONBLOCK (also for a write end: the open gives a read end of
// the same pipe). The one side effect of this library: for the instant the descriptor is open,
// the pipe has one more reader. nullopt when it cannot be opened (permission, gone).
struct PipeFill {
  uint64_t queued_bytes = 0;
  uint64_t capacity_bytes = 0;
};
std::optional<PipeFill> pipe_fill(pid_t pid, int fd);

// Every AF_UNIX socket of this network namespace, by inode, from sock_diag netlink
// (NETLINK_SOCK_DIAG, UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_MEMINFO), as `ss -x` reads
// it; needs no privilege. nullopt if the kernel refused the request.
struct UnixSocket {
  uint64_t inode = 0;
  uint64_t peer_inode = 0;  // 0: no peer (listening, unconnected, or the peer is closed)
  int type = 0;             // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  int state = 0;            // TCP_ESTABLISHED (1), TCP_LISTEN (10), ...
  // Connected sockets: bytes waiting in this socket's receive queue (sent by the peer, not yet
  // read), and this socket's sk_wmem_alloc (memory of what it sent that the peer has not read).
  uint64_t receive_queue_bytes = 0;
  uint64_t send_queue_bytes = 0;
  bool have_meminfo = false;
  uint64_t send_buffer_bytes = 0;     // SK_MEMINFO_SNDBUF: a sender blocks past this
  uint64_t receive_buffer_bytes = 0;  // SK_MEMINFO_RCVBUF
  uint64_t write_alloc_bytes = 0;     // SK_MEMINFO_WMEM_ALLOC
};
std::optional<std::map<uint64_t, UnixSocket>> unix_sockets();

// Who holds each pipe or socket: for every inode, the (pid, fd, flags) that have it open, among
// `pids` (every process of /proc when empty). Processes whose fds are hidden are in `denied`.
struct Holder {
  pid_t pid = 0;
  int fd = -1;
  int flags = -1;
  bool readable() const;
  bool writable() const;
};
struct HolderIndex {
  std::map<uint64_t, std::vector<Holder>> by_inode;
  std::vector<pid_t> denied;
};
HolderIndex index_holders(const std::vector<pid_t>& pids = {});

// Bytes an I/O call in another process asks to move, read from its memory (process_vm_readv:
// needs ptrace access): the iovec array of readv/writev, or the msghdr of sendmsg/recvmsg.
std::optional<uint64_t> iovec_bytes(pid_t pid, uint64_t iov_address, uint64_t iov_count);
std::optional<uint64_t> msghdr_bytes(pid_t pid, uint64_t msghdr_address);

}  // namespace pipepool::proc
