// driver/fork_server.cpp: the fork server process and the parent's client of it.
#include "driver/fork_server.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os/socket.hpp"

namespace pipepool::driver {
namespace {

// ---- Wire format between the parent and the server (same binary, same machine). ----

constexpr uint32_t kMagic = 0x70706673;  // "ppfs"
constexpr uint32_t kSpawnRequest = 1;

struct SpawnRequest {
  uint32_t magic = kMagic;
  uint32_t kind = kSpawnRequest;
};

// Which step of a spawn failed, so that the parent's error names the system call.
enum FailedStep : uint32_t {
  kNoFailure = 0,
  kTooManyWorkers,
  kPipe,
  kCapacity,
  kFork,
  kPidfdOpen,
  kBadRequest,
  kSocketpair,
  kSndbuf,
};

const char* step_name(uint32_t step) {
  switch (step) {
    case kTooManyWorkers:
      return "fork server: too many workers";
    case kPipe:
      return "fork server: pipe2";
    case kCapacity:
      return "fork server: F_SETPIPE_SZ";
    case kFork:
      return "fork server: fork";
    case kPidfdOpen:
      return "fork server: pidfd_open";
    case kBadRequest:
      return "fork server: bad request";
    case kSocketpair:
      return "fork server: socketpair";
    case kSndbuf:
      return "fork server: setsockopt(SO_SNDBUF)";
    default:
      return "fork server";
  }
}

// Sent with SCM_RIGHTS {task_write, result_read, pidfd} when error == 0. With socketpairs the
// first two are the parent's end of the worker's socket, sent twice: SCM_RIGHTS installs two
// descriptors of the one socket in the parent (a dup), one for each direction's epoll interest.
struct SpawnReply {
  uint32_t magic = kMagic;
  int32_t error = 0;  // errno of the failed step
  uint32_t failed_step = kNoFailure;
  int32_t pid = -1;
  uint64_t pipe_capacity_bytes = 0;  // pipes
  uint64_t socket_sndbuf_bytes = 0;  // socketpairs: SO_SNDBUF of the parent's end
};

// One per reaped worker, on the events socket.
struct ExitRecord {
  int32_t pid = -1;
  int32_t signal = 0;
  int32_t code = 0;
  int32_t core_dumped = 0;
};

template <class T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span<const T>(&value, 1));
}
template <class T>
std::span<std::byte> writable_bytes_of(T& value) {
  return std::as_writable_bytes(std::span<T>(&value, 1));
}

// ---- The server. Everything below runs after fork: async-signal-safe calls, no allocation. ----

constexpr int kServerSetupFailedExitCode = 2;
constexpr int kServerPollFailedExitCode = 3;

struct WorkerSlot {
  pid_t pid;
  int pidfd;  // the server's own pidfd of the worker
};

// Built by the parent before the fork; the server uses its copy and never frees it (it _exits).
struct ServerState {
  WorkerMain worker_main = nullptr;
  void* context = nullptr;
  size_t pipe_capacity_bytes = 0;
  bool socketpairs = false;
  int socket_sndbuf_bytes = 0;
  int control_fd = -1;
  int events_fd = -1;
  size_t max_workers = 0;
  std::unique_ptr<WorkerSlot[]> workers;  // [0, live) are alive
  size_t live = 0;
  std::unique_ptr<pollfd[]> poll_set;     // control, events, one per live worker
  std::unique_ptr<ExitRecord[]> backlog;  // ring of exit records not yet sent
  size_t backlog_head = 0;
  size_t backlog_count = 0;
};

// What a worker needs between its fork and WorkerMain (lives on the server's stack).
struct WorkerStart {
  WorkerMain main;
  void* context;
  int task_read;
  int result_write;
};

int worker_entry(void* context) {
  const WorkerStart& start = *static_cast<const WorkerStart*>(context);
  const int keep[] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, start.task_read,
                      start.result_write};
  if (!os::close_fds_except(keep).ok()) return kServerSetupFailedExitCode;
  return start.main(start.context, start.task_read, start.result_write);
}

// Sends queued exit records until the socket is full. A parent that closed its end (EPIPE) does
// not want them: drop them.
void flush_events(ServerState& s) {
  while (s.backlog_count > 0) {
    const ExitRecord& record = s.backlog[s.backlog_head];
    os::Result<size_t> sent = os::send_with_fds(s.events_fd, bytes_of(record), {}, true);
    if (!sent.ok() && (sent.error() == EAGAIN || sent.error() == ENOBUFS)) return;
    s.backlog_head = (s.backlog_head + 1) % s.max_workers;
    --s.backlog_count;
  }
}

// Reaps workers[index] if it has exited, queueing its exit record.
void reap(ServerState& s, size_t index) {
  WorkerSlot& slot = s.workers[index];
  os::Result<std::optional<os::ExitStatus>> status = os::wait_pidfd(slot.pidfd, true);
  if (status.ok() && !status.value().has_value()) return;  // not yet (spurious wake-up)
  ExitRecord record;
  record.pid = slot.pid;
  if (status.ok()) {
    const os::ExitStatus& exit = *status.value();
    record.signal = exit.signal;
    record.code = exit.code;
    record.core_dumped = exit.core_dumped ? 1 : 0;
  } else {
    record.code = -1;  // cannot happen for our own child; report it as unknown
  }
  os::close_fd(slot.pidfd);
  s.workers[index] = s.workers[--s.live];
  // live + backlog_count <= max_workers (spawn checks it), so the ring has room.
  s.backlog[(s.backlog_head + s.backlog_count) % s.max_workers] = record;
  ++s.backlog_count;
}

void kill_and_reap_all(ServerState& s) {
  for (size_t i = 0; i < s.live; ++i) (void)os::pidfd_send_signal(s.workers[i].pidfd, SIGKILL);
  for (size_t i = 0; i < s.live; ++i) {
    (void)os::wait_pidfd(s.workers[i].pidfd, false);
    os::close_fd(s.workers[i].pidfd);
  }
  s.live = 0;
}

void reply_error(const ServerState& s, int error, FailedStep step) {
  SpawnReply reply;
  reply.error = error;
  reply.failed_step = step;
  (void)os::send_with_fds(s.control_fd, bytes_of(reply), {});  // a gone parent: EOF comes next
}

// Forks a worker that runs `start` and tracks it (s.workers[s.live - 1]); true on success. On
// failure it replies the error; a child whose pidfd cannot be opened is killed and reaped first.
bool fork_tracked_worker(ServerState& s, WorkerStart& start) {
  os::Result<pid_t> pid = os::fork_child(os::ChildSetup{&worker_entry, &start});
  if (!pid.ok()) {
    reply_error(s, pid.error(), kFork);
    return false;
  }
  os::Result<os::Fd> pidfd = os::pidfd_open(pid.value());
  if (!pidfd.ok()) {
    (void)os::send_signal(pid.value(), SIGKILL);
    (void)os::wait_pid(pid.value());
    reply_error(s, pidfd.error(), kPidfdOpen);
    return false;
  }
  s.workers[s.live++] = WorkerSlot{pid.value(), pidfd.value().release()};
  return true;
}

// One AF_UNIX stream socketpair for both directions (Transport::SocketPair); the worker gets one
// end as both its task and its result descriptor.
void spawn_socket_worker(ServerState& s) {
  os::Result<std::pair<os::Fd, os::Fd>> pair = os::make_stream_socketpair();
  if (!pair.ok()) return reply_error(s, pair.error(), kSocketpair);
  auto& [parent_end, worker_end] = pair.value();
  if (s.socket_sndbuf_bytes > 0) {
    for (const os::Fd* end : {&parent_end, &worker_end}) {
      if (auto r = os::set_send_buffer_bytes(end->get(), s.socket_sndbuf_bytes); !r.ok()) {
        return reply_error(s, r.error(), kSndbuf);
      }
    }
  }
  os::Result<int> sndbuf = os::send_buffer_bytes(parent_end.get());
  if (!sndbuf.ok()) return reply_error(s, sndbuf.error(), kSndbuf);

  WorkerStart start{s.worker_main, s.context, worker_end.get(), worker_end.get()};
  if (!fork_tracked_worker(s, start)) return;
  worker_end.reset();  // lives in the worker only: its death must be the parent's end of file
  const WorkerSlot& worker = s.workers[s.live - 1];

  SpawnReply reply;
  reply.pid = worker.pid;
  reply.socket_sndbuf_bytes = static_cast<uint64_t>(sndbuf.value());
  const int fds[] = {parent_end.get(), parent_end.get(), worker.pidfd};
  (void)os::send_with_fds(s.control_fd, bytes_of(reply), fds);
}  // parent_end: the server's copy closes here

void spawn_worker(ServerState& s) {
  if (s.live + s.backlog_count >= s.max_workers) return reply_error(s, EAGAIN, kTooManyWorkers);
  if (s.socketpairs) return spawn_socket_worker(s);
  os::Result<std::pair<os::Fd, os::Fd>> task = os::make_pipe();
  if (!task.ok()) return reply_error(s, task.error(), kPipe);
  os::Result<std::pair<os::Fd, os::Fd>> result = os::make_pipe();
  if (!result.ok()) return reply_error(s, result.error(), kPipe);
  auto& [task_read, task_write] = task.value();
  auto& [result_read, result_write] = result.value();

  os::Result<size_t> capacity = os::pipe_capacity(task_write.get());
  if (s.pipe_capacity_bytes > 0) {
    capacity = os::set_pipe_capacity(task_write.get(), s.pipe_capacity_bytes);
    if (!capacity.ok()) return reply_error(s, capacity.error(), kCapacity);
    os::Result<size_t> other = os::set_pipe_capacity(result_write.get(), s.pipe_capacity_bytes);
    if (!other.ok()) return reply_error(s, other.error(), kCapacity);
    if (other.value() < capacity.value()) capacity = other.value();
  }
  if (!capacity.ok()) return reply_error(s, capacity.error(), kCapacity);

  WorkerStart start{s.worker_main, s.context, task_read.get(), result_write.get()};
  if (!fork_tracked_worker(s, start)) return;
  task_read.reset();  // the worker's ends live in the worker only
  result_write.reset();
  const WorkerSlot& worker = s.workers[s.live - 1];

  SpawnReply reply;
  reply.pid = worker.pid;
  reply.pipe_capacity_bytes = capacity.value();
  const int fds[] = {task_write.get(), result_read.get(), worker.pidfd};
  // If the parent is gone the worker stays tracked, and is killed when EOF arrives.
  (void)os::send_with_fds(s.control_fd, bytes_of(reply), fds);
}  // task_write and result_read: the server's copies close here

// Handles one readable control socket. Returns false at end of file.
bool serve_request(ServerState& s) {
  SpawnRequest request;
  os::IoResult r = os::read_some(s.control_fd, writable_bytes_of(request));
  if (r.status == os::IoResult::WouldBlock) return true;
  if (r.status != os::IoResult::Ok) return false;  // Eof, or ECONNRESET: the parent is gone
  if (r.bytes != sizeof request || request.magic != kMagic || request.kind != kSpawnRequest) {
    reply_error(s, EPROTO, kBadRequest);
    return true;
  }
  spawn_worker(s);
  return true;
}

int serve(void* context) {
  ServerState& s = *static_cast<ServerState*>(context);
  const int keep[] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, s.control_fd, s.events_fd};
  if (!os::close_fds_except(keep).ok()) return kServerSetupFailedExitCode;

  for (;;) {
    s.poll_set[0] = pollfd{s.control_fd, POLLIN, 0};
    s.poll_set[1] = pollfd{s.backlog_count > 0 ? s.events_fd : -1, POLLOUT, 0};
    for (size_t i = 0; i < s.live; ++i) s.poll_set[2 + i] = pollfd{s.workers[i].pidfd, POLLIN, 0};
    os::Result<int> ready = os::poll_fds(std::span<pollfd>(s.poll_set.get(), 2 + s.live), -1);
    if (!ready.ok()) {
      kill_and_reap_all(s);
      return kServerPollFailedExitCode;
    }
    // Descending, so that reap()'s swap-with-last only moves slots already looked at.
    for (size_t i = s.live; i-- > 0;) {
      if (s.poll_set[2 + i].revents != 0) reap(s, i);
    }
    flush_events(s);
    if (s.poll_set[0].revents != 0 && !serve_request(s)) {
      kill_and_reap_all(s);
      return 0;
    }
  }
}

constexpr int kShutdownTimeoutMs = 5000;

}  // namespace

// ---- The parent's side. ----

os::Result<ForkServer> ForkServer::start(WorkerMain main, void* context,
                                         ForkServerOptions options) {
  if (main == nullptr || options.max_workers == 0) return os::Error{EINVAL, "ForkServer::start"};
  os::Result<std::pair<os::Fd, os::Fd>> control = os::make_socketpair();
  if (!control.ok()) return control.failure();
  os::Result<std::pair<os::Fd, os::Fd>> events = os::make_socketpair();
  if (!events.ok()) return events.failure();
  if (auto r = os::set_nonblocking(events.value().first.get(), true); !r.ok()) return r.failure();

  auto state = std::make_unique<ServerState>();
  state->worker_main = main;
  state->context = context;
  state->pipe_capacity_bytes = options.pipe_capacity_bytes == 0
                                   ? 0
                                   : std::min(options.pipe_capacity_bytes, os::pipe_max_size());
  state->socketpairs = options.socketpairs;
  state->socket_sndbuf_bytes = options.socket_sndbuf_bytes;
  state->control_fd = control.value().second.get();
  state->events_fd = events.value().second.get();
  state->max_workers = options.max_workers;
  state->workers = std::make_unique<WorkerSlot[]>(options.max_workers);
  state->poll_set = std::make_unique<pollfd[]>(options.max_workers + 2);
  state->backlog = std::make_unique<ExitRecord[]>(options.max_workers);

  // What this process's stdio buffers hold is its own output: flush it before the fork, or the
  // server's copy of the buffers (and every worker's) would print it again when a worker flushes.
  std::fflush(nullptr);
  os::Result<pid_t> pid = os::fork_child(os::ChildSetup{&serve, state.get()});
  if (!pid.ok()) return pid.failure();
  state.reset();
  control.value().second.reset();  // the server's ends live in the server only
  events.value().second.reset();

  os::Result<os::Fd> pidfd = os::pidfd_open(pid.value());
  if (!pidfd.ok()) {
    (void)os::send_signal(pid.value(), SIGKILL);
    (void)os::wait_pid(pid.value());
    return pidfd.failure();
  }
  ForkServer server;
  server.pid_ = pid.value();
  server.pidfd_ = std::move(pidfd).value();
  server.control_ = std::move(control.value().first);
  server.events_ = std::move(events.value().first);
  return server;
}

ForkServer::ForkServer(ForkServer&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      control_(std::move(other.control_)),
      events_(std::move(other.events_)),
      events_closed_(std::exchange(other.events_closed_, false)) {}

ForkServer& ForkServer::operator=(ForkServer&& other) noexcept {
  if (this != &other) {
    shutdown();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    control_ = std::move(other.control_);
    events_ = std::move(other.events_);
    events_closed_ = std::exchange(other.events_closed_, false);
  }
  return *this;
}

ForkServer::~ForkServer() {
  shutdown();
}

os::Result<WorkerHandle> ForkServer::spawn() {
  if (!control_) return os::Error{ESHUTDOWN, "ForkServer::spawn"};
  const SpawnRequest request;
  if (auto sent = os::send_with_fds(control_.get(), bytes_of(request), {}); !sent.ok()) {
    return sent.failure();
  }
  SpawnReply reply;
  std::vector<os::Fd> fds;
  os::Result<size_t> received = os::recv_with_fds(control_.get(), writable_bytes_of(reply), fds);
  if (!received.ok()) return received.failure();
  if (received.value() == 0) return os::Error{ECONNRESET, "fork server: connection closed"};
  if (received.value() != sizeof reply || reply.magic != kMagic) {
    return os::Error{EPROTO, "fork server: malformed reply"};
  }
  if (reply.error != 0) return os::Error{reply.error, step_name(reply.failed_step)};
  if (fds.size() != 3) return os::Error{EPROTO, "fork server: reply without descriptors"};
  WorkerHandle handle;
  handle.pid = reply.pid;
  handle.task_write = std::move(fds[0]);
  handle.result_read = std::move(fds[1]);
  handle.pidfd = std::move(fds[2]);
  handle.pipe_capacity_bytes = static_cast<size_t>(reply.pipe_capacity_bytes);
  handle.socket = reply.socket_sndbuf_bytes != 0;
  handle.socket_sndbuf_bytes = static_cast<size_t>(reply.socket_sndbuf_bytes);
  return handle;
}

std::optional<WorkerExit> ForkServer::read_event() {
  while (events_ && !events_closed_) {
    ExitRecord record;
    os::IoResult r = os::read_some(events_.get(), writable_bytes_of(record));
    if (r.status == os::IoResult::Eof) events_closed_ = true;
    if (r.status != os::IoResult::Ok) return std::nullopt;
    if (r.bytes != sizeof record) continue;  // cannot happen: one record per message
    WorkerExit exit;
    exit.pid = record.pid;
    exit.status.signal = record.signal;
    exit.status.code = record.code;
    exit.status.core_dumped = record.core_dumped != 0;
    return exit;
  }
  return std::nullopt;
}

void ForkServer::shutdown() noexcept {
  if (pid_ <= 0) return;
  control_.reset();  // EOF: the server kills and reaps its workers, then exits
  pollfd server_exit{pidfd_.get(), POLLIN, 0};
  os::Result<int> exited = os::poll_fds(std::span<pollfd>(&server_exit, 1), kShutdownTimeoutMs);
  if (!exited.ok() || exited.value() == 0) (void)os::pidfd_send_signal(pidfd_.get(), SIGKILL);
  (void)os::wait_pid(pid_);  // ECHILD if the application reaped it: fine
  events_.reset();
  pidfd_.reset();
  pid_ = -1;
}

}  // namespace pipepool::driver
