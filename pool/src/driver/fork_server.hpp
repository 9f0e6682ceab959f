// driver/fork_server.hpp: a single-threaded process that forks the pool's workers.
//
// Forking a multi-threaded process is only safe up to exec, and workers never exec. The pool's
// parent runs an I/O thread, so it does not fork workers itself: before starting any thread it
// starts a fork server (one fork, while still single-threaded), and gets every worker from it.
//
//   int echo(void* context, int task_read_fd, int result_write_fd);   // runs in each worker
//
//   auto server = driver::ForkServer::start(&echo, &config, {.pipe_capacity_bytes = 1 << 20});
//   if (!server.ok()) throw ...(server.message());
//   os::Result<driver::WorkerHandle> worker = server.value().spawn();   // synchronous
//   write(worker.value().task_write.get(), ...);   // parent -> worker
//   read(worker.value().result_read.get(), ...);   // worker -> parent
//   epoll.add(server.value().events_fd(), EPOLLIN, kServerEvents);
//   while (auto exit = server.value().read_event()) on_exit(exit->pid, exit->status);
//   server.value().shutdown();   // or let the destructor do it
//
// Processes: parent (the pool) -> fork server -> workers. The server talks to the parent over two
// SOCK_SEQPACKET sockets: a control socket (spawn requests; replies carry the worker's pid, the
// actual pipe capacity and, by SCM_RIGHTS, {task_write, result_read, pidfd}) and an events socket
// (one fixed-size record {pid, exit status} per worker the server reaped). Each worker has two
// pipes made with pipe2(O_CLOEXEC): task (parent -> worker) and result (worker -> parent), with
// the requested capacity applied with F_SETPIPE_SZ; or, with ForkServerOptions::socketpairs, one
// AF_UNIX SOCK_STREAM socketpair for both directions. A worker keeps only stdin/stdout/stderr and
// its two pipe ends: every other descriptor of the server is closed before WorkerMain runs.
//
// Lifetime: when the control socket reaches end of file (shutdown(), the destructor, or the
// parent's death) the server SIGKILLs every worker still alive, reaps them, and exits. Every fork
// also arms PR_SET_PDEATHSIG(SIGKILL) (os::fork_child): if the parent dies the server dies, and if
// the server dies its workers die. Note that the death signal follows the *thread* that called
// start(): call it from a thread that outlives the server (the pool's constructor's thread is
// fine if the pool does not outlive it; the main thread always is).
//
// What crosses the fork: `main` and `context` are used in the server's copy of the parent's
// memory as of start(), and again in each worker's copy of the server. Pass a function and a
// context that were fully built before start(); later changes in the parent are not seen.
//
// Call start() while the parent is still single-threaded (the pool does, in its constructor):
// the server and the workers are copies of the parent as of that fork, and a lock another thread
// held at that moment stays held in them. The server itself makes only async-signal-safe calls and
// does not allocate after its fork (its tables are sized by max_workers beforehand).
//
// Thread safety: a ForkServer is used by one thread at a time (the pool's driver thread).
// Move-only.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>

#include "os/fd.hpp"
#include "os/process.hpp"
#include "os/result.hpp"

namespace pipepool::driver {

// Runs in each new worker; its return value becomes the worker's exit code (_exit). The two
// descriptors are the worker's ends of its pipes (blocking, close-on-exec).
using WorkerMain = int (*)(void* context, int task_read_fd, int result_write_fd);

struct ForkServerOptions {
  // Capacity of both pipes of each worker; 0 keeps the kernel default (64 KiB). Clamped to
  // os::pipe_max_size(); the kernel rounds it up to a power-of-two number of pages.
  size_t pipe_capacity_bytes = 0;
  // One AF_UNIX SOCK_STREAM socketpair per worker instead of two pipes (Transport::SocketPair):
  // the worker's WorkerMain gets its end as both descriptors, the parent two descriptors of its
  // end (task_write and result_read: separate epoll registrations for the two directions).
  // pipe_capacity_bytes is then unused.
  bool socketpairs = false;
  // Socketpairs: SO_SNDBUF of both ends (the kernel doubles it); 0 keeps net.core.wmem_default.
  int socket_sndbuf_bytes = 0;
  // Limit on live workers plus exit records the parent has not read yet; spawn() fails with
  // EAGAIN beyond it. Sizes the server's preallocated tables.
  size_t max_workers = 1024;
};

// The parent's view of a new worker. The descriptors are close-on-exec and blocking.
struct WorkerHandle {
  pid_t pid = -1;
  os::Fd task_write;   // parent -> worker
  os::Fd result_read;  // worker -> parent
  // For pidfd_send_signal and for polling (readable once the worker exits). The worker is the
  // server's child, so the parent cannot waitid on it: exits arrive through read_event().
  os::Fd pidfd;
  size_t pipe_capacity_bytes = 0;  // actual capacity of both pipes (0 with a socketpair)
  // A socketpair: task_write and result_read are two descriptors of the parent's end (one open
  // file description: never toggle O_NONBLOCK on one of them, use MSG_DONTWAIT per call).
  bool socket = false;
  size_t socket_sndbuf_bytes = 0;  // SO_SNDBUF of the parent's end, as getsockopt reports it
};

// A worker the server has reaped.
struct WorkerExit {
  pid_t pid = -1;
  os::ExitStatus status;  // code -1 (and no signal) if the server could not learn the status
};

class ForkServer {
 public:
  // Forks the server (os::fork_child). Errors: socketpair, fork, pidfd_open; EINVAL for a null
  // `main` or max_workers == 0.
  static os::Result<ForkServer> start(WorkerMain main, void* context,
                                      ForkServerOptions options = {});

  ForkServer(ForkServer&& other) noexcept;
  ForkServer& operator=(ForkServer&& other) noexcept;
  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;
  ~ForkServer();  // shutdown()

  // Asks the server for a new worker and waits for it. Errors carry the failed step, e.g.
  // "fork server: fork: Resource temporarily unavailable", "fork server: too many workers"
  // (EAGAIN), ECONNRESET if the server is gone, ESHUTDOWN after shutdown().
  os::Result<WorkerHandle> spawn();

  // Readable when exit records are waiting (or at end of file: the server is gone). Non-blocking.
  int events_fd() const noexcept { return events_.get(); }

  // The next exit record, or nullopt if none is waiting right now. Never blocks.
  std::optional<WorkerExit> read_event();

  // True once read_event() has seen end of file on the events socket: the server has exited and
  // no more records will come (stop polling events_fd).
  bool events_closed() const noexcept { return events_closed_; }

  // Closes the control socket and waits for the server to kill and reap its workers and exit
  // (SIGKILLing the server if it takes over 5 s), then reaps it. Idempotent; never throws.
  void shutdown() noexcept;

  // The server's pid; -1 after shutdown().
  pid_t pid() const noexcept { return pid_; }

 private:
  ForkServer() = default;

  pid_t pid_ = -1;
  os::Fd pidfd_;    // the server's
  os::Fd control_;  // parent's end of the control socket
  os::Fd events_;   // parent's end of the events socket (O_NONBLOCK)
  bool events_closed_ = false;
};

}  // namespace pipepool::driver
