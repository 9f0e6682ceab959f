// The real driver: an executor of the parent loop (protocol/parent_loop.hpp) on the pool's I/O
// thread, over real pipes or socketpairs (Options::transport), with workers forked by a fork
// server. Also the inline mode of Pool(0). It makes no decision of its own: the loop says what to
// do next, this file does it with system calls and reports what happened.
//
// Threads: user threads only touch the submission queue and flags (mutex_) and, in terminate(),
// the workers' pidfds (spawn_mutex_). The loop, the slots and the epoll set belong to the I/O
// thread alone (and to the constructor before the thread starts).
//
// How a worker's death is noticed (docs/what-goes-wrong.md has the whole table): the fork server
// polls each worker's pidfd, reaps it and sends {pid, status} on its events socket, which a Wait
// watches; the exit becomes a ReadyEvent::Exited, and the loop reads what the worker left in its
// pipe and finalises the slot. If the fork server itself dies, its workers die with it
// (PR_SET_PDEATHSIG): their pidfds say when (Exited events), the loop is told no worker can be
// started any more (ServerLost), and it fails every unfinished task once the last process is gone.
#include <sys/epoll.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "driver/fork_server.hpp"
#include "driver/probes.hpp"
#include "driver/test_hooks.hpp"
#include "driver/worker_main.hpp"
#include "driver/worker_slots.hpp"
#include "os/cpu.hpp"
#include "os/epoll.hpp"
#include "os/eventfd.hpp"
#include "os/fd.hpp"
#include "os/io.hpp"
#include "os/limits.hpp"
#include "os/memory.hpp"
#include "os/pipe.hpp"
#include "os/process.hpp"
#include "os/signals.hpp"
#include "pipepool/detail/core.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/errors.hpp"
#include "protocol/config.hpp"
#include "protocol/parent_loop.hpp"

namespace pipepool::detail {
namespace {

using Clock = std::chrono::steady_clock;
using protocol::Completion;
using protocol::ParentLoop;
using protocol::ReadyEvent;
using protocol::TaskId;
using protocol::WorkerId;
using Op = protocol::ParentLoop::Op;

constexpr uint64_t kWakeToken = ~uint64_t{0};
constexpr uint64_t kEventsToken = ~uint64_t{0} - 1;
// How long the I/O thread waits for a fork server whose events socket ended to be reapable.
constexpr int kServerReapTimeoutMs = 2000;

using Which = driver::WorkerSlots::Which;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}

[[noreturn]] void throw_os(const std::string& what, int error) {
  throw std::system_error(error, std::generic_category(), "pipepool: " + what);
}

// VmSize of this process in bytes (0 if unknown): what a worker's address space starts from.
uint64_t address_space_bytes() {
  os::Result<std::string> status = os::read_whole_file("/proc/self/status", 1 << 16);
  if (!status.ok()) return 0;
  const std::string& text = status.value();
  const size_t at = text.find("VmSize:");
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + 7, nullptr, 10) * 1024;  // "VmSize:  1234 kB"
}

// How a worker ended, in the words of an error message ("worker 1 (pid 42) " + this).
std::string describe_exit(const os::ExitStatus& status, const Options& options) {
  if (status.signal == 0 && options.memory_limit_bytes != 0 &&
      status.code == driver::kExitMemoryLimit) {
    return "exceeded its memory limit of " + std::to_string(options.memory_limit_bytes) +
           " bytes (Options::memory_limit_bytes, RLIMIT_AS): an allocation failed and it exited "
           "with code " +
           std::to_string(status.code);
  }
  if (status.signal == 0 && status.code == driver::kExitInitializerFailed && options.initializer) {
    return "exited with code " + std::to_string(status.code) + " (its initializer threw)";
  }
  return status.describe();
}

protocol::ExitInfo exit_info(const os::ExitStatus& status, const Options& options) {
  return {status.signal, status.signal ? -1 : status.code, describe_exit(status, options)};
}

}  // namespace

class Core {
 public:
  explicit Core(Options options);
  ~Core();

  void submit(std::vector<Payload> payloads, std::shared_ptr<CallState> call, size_t first,
              bool continuation, std::vector<uint64_t> items);
  void cancel(std::shared_ptr<CallState> call);
  void close();
  void join();
  void terminate();

  int processes() const { return processes_; }
  uint64_t pipe_capacity_bytes() const { return pipe_capacity_bytes_.load(); }
  uint64_t socket_sndbuf_bytes() const { return socket_sndbuf_bytes_.load(); }
  std::string_view strategy_name() const { return strategy_->name(); }
  std::string_view scheduler_name() const { return scheduler_->name(); }
  PoolStats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

 private:
  struct Submission {
    std::vector<Payload> payloads;
    std::shared_ptr<CallState> call;
    size_t first;
    std::vector<uint64_t> items;  // per task (empty: one each), for its timeout budget
  };

  void run_inline(std::vector<Payload>& payloads, CallState& call, size_t first);
  void io_loop();
  // Carries out one action of the loop; false once the loop is done.
  bool carry_out(const ParentLoop::Action& action);
  void take_inbox();
  void start_worker(WorkerId w);
  void kill_worker(WorkerId w);
  void write(const ParentLoop::Action& action);
  void read(const ParentLoop::Action& action);
  void wait(const ParentLoop::Action& action);
  void deliver(std::span<Completion> completions);
  void sync_stats();
  void read_server_events(uint32_t epoll_events);
  void fork_server_died();
  void pidfd_ready(WorkerId w);
  void reap_orphans();
  void kill_all_workers();
  void stop_io_thread();

  Options options_;
  int processes_ = 0;
  const IoStrategy* strategy_ = nullptr;
  std::shared_ptr<Scheduler> scheduler_;
  driver::WorkerContext worker_context_;
  std::atomic<uint64_t> pipe_capacity_bytes_{0};
  std::atomic<uint64_t> socket_sndbuf_bytes_{0};

  // Shared with user threads.
  mutable std::mutex mutex_;
  std::vector<Submission> queue_;
  std::vector<std::shared_ptr<CallState>> cancels_;  // calls whose queued tasks to withdraw
  bool closed_ = false;
  bool join_requested_ = false;
  bool terminate_requested_ = false;
  bool stopped_ = false;  // the I/O thread has ended
  std::string broken_;    // why the pool cannot run tasks any more (its fork server died)
  PoolStats stats_;
  std::mutex lifecycle_mutex_;  // serialises join() and terminate()
  std::mutex spawn_mutex_;      // fork server use, and pidfds read by terminate()
  bool spawning_allowed_ = true;

  // I/O thread (and the constructor before it starts).
  std::optional<driver::ForkServer> fork_server_;
  std::optional<ParentLoop> loop_;
  std::optional<os::Epoll> epoll_;
  os::Fd wake_;
  std::optional<driver::WorkerSlots> slots_;
  std::unordered_map<pid_t, WorkerId> pid_slot_;
  std::unordered_map<TaskId, std::pair<std::shared_ptr<CallState>, size_t>> calls_;
  bool server_dead_ = false;
  std::string server_death_;  // "the pool's fork server (pid N) died (killed by signal 9 ...)"
  TaskId next_task_ = 1;
  std::vector<iovec> iovecs_;
  std::vector<ReadyEvent> events_;
  std::thread io_thread_;
};

// ---- construction ------------------------------------------------------------------------------

Core::Core(Options options) : options_(std::move(options)) {
  if (options_.processes < -1) {
    throw std::invalid_argument("pipepool: processes must be >= 0, or -1 for the CPUs available");
  }
  if (options_.max_frame_bytes < 1024) {
    throw std::invalid_argument("pipepool: max_frame_bytes must be at least 1024");
  }
  protocol::validate_channel(options_);  // transport, framing, overheads, buffer sizes
  if (options_.task_timeout.count() < 0) {
    throw std::invalid_argument("pipepool: task_timeout must not be negative");
  }
  if (options_.memory_limit_bytes != 0 && options_.processes != 0) {
    if (auto hard = os::address_space_hard_limit();
        hard.ok() && options_.memory_limit_bytes > hard.value()) {
      throw std::invalid_argument(
          "pipepool: memory_limit_bytes is above this process's hard RLIMIT_AS of " +
          std::to_string(hard.value()) + " bytes");
    }
    const uint64_t start = address_space_bytes();
    if (start != 0 && options_.memory_limit_bytes <= start) {
      throw std::invalid_argument(
          "pipepool: memory_limit_bytes (" + std::to_string(options_.memory_limit_bytes) +
          ") must exceed this process's address space (" + std::to_string(start) +
          " bytes): a worker starts as a copy of it, and RLIMIT_AS counts all of it");
    }
  }
  processes_ = options_.processes == -1 ? os::available_cpus() : options_.processes;
  strategy_ = &protocol::strategy_of(options_);
  scheduler_ = protocol::scheduler_of(options_);
  if (processes_ == 0) {  // inline: Pool(0) honours the initializer, rejects task_timeout
    if (options_.task_timeout.count() > 0) {
      throw UsageError(
          "pipepool: Options::task_timeout needs worker processes: Pool(0) runs each task in the "
          "calling thread, and a process cannot safely stop its own call halfway (a timed-out "
          "task is stopped by killing its worker); use processes >= 1, or no task_timeout");
    }
    if (options_.initializer) options_.initializer();  // once, before any task; throws through
    return;
  }

  const protocol::EngineSetup setup =
      protocol::engine_setup(options_, static_cast<uint32_t>(processes_));
  worker_context_.config = setup.child;
  worker_context_.memory_limit_bytes = options_.memory_limit_bytes;
  worker_context_.initializer = options_.initializer;
  const bool sockets = options_.transport == Transport::SocketPair;
  worker_context_.socket = sockets;

  size_t capacity = options_.pipe_capacity_bytes;
  if (capacity == 0 && options_.enlarge_pipes && !sockets) capacity = os::pipe_max_size();

  // The fork server first: this thread is the only one the pool has so far.
  auto server = driver::ForkServer::start(
      &driver::worker_main, &worker_context_,
      {.pipe_capacity_bytes = capacity,
       .socketpairs = sockets,
       .socket_sndbuf_bytes = static_cast<int>(options_.socket_sndbuf_bytes)});
  if (!server.ok()) throw_os("cannot start the fork server: " + server.message(), server.error());
  fork_server_.emplace(std::move(server).value());

  auto epoll = os::Epoll::create();
  if (!epoll.ok()) throw_os("epoll_create1", epoll.error());
  epoll_.emplace(std::move(epoll).value());
  auto wake = os::make_eventfd();
  if (!wake.ok()) throw_os("eventfd", wake.error());
  wake_ = std::move(wake).value();
  (void)epoll_->add(wake_.get(), EPOLLIN, kWakeToken);
  (void)epoll_->add(fork_server_->events_fd(), EPOLLIN, kEventsToken);

  slots_.emplace(*epoll_, processes_);
  loop_.emplace(setup, *strategy_, *scheduler_);
  if (auto observer = driver::testing::take_next_pool_write_observer()) {
    loop_->observe_writes(std::move(observer));  // a test compares executors
  }
  // The first workers, synchronously: failures throw here.
  for (;;) {
    const ParentLoop::Action action = loop_->next(now_ns());
    if (action.op == Op::Booted) break;
    carry_out(action);
  }
  for (WorkerId w = 0; w < slots_->size(); ++w) {
    if (!loop_->process_alive(w)) {
      fork_server_->shutdown();
      throw_os("cannot start worker processes", EAGAIN);
    }
  }
  io_thread_ = std::thread([this] { io_loop(); });
}

Core::~Core() {
  if (processes_ == 0) return;
  terminate();
}
// ---- user-thread API ---------------------------------------------------------------------------

void Core::submit(std::vector<Payload> payloads, std::shared_ptr<CallState> call, size_t first,
                  bool continuation, std::vector<uint64_t> items) {
  {
    std::lock_guard lock(mutex_);
    if (!broken_.empty()) throw PoolClosed(broken_);
    if (terminate_requested_ || stopped_ || join_requested_ || (closed_ && !continuation)) {
      throw PoolClosed(terminate_requested_ ? "pipepool: the pool was terminated"
                                            : "pipepool: the pool is closed");
    }
    if (payloads.empty()) return;
    stats_.tasks_submitted += payloads.size();
    if (processes_ > 0) {
      queue_.push_back({std::move(payloads), std::move(call), first, std::move(items)});
    }
  }
  if (processes_ == 0) {
    run_inline(payloads, *call, first);
    return;
  }
  (void)os::notify_eventfd(wake_.get());
}

void Core::run_inline(std::vector<Payload>& payloads, CallState& call, size_t first) {
  for (size_t i = 0; i < payloads.size(); ++i) {
    Outcome outcome;
    try {
      // Inline: the task's bytes in one buffer, and its result's (what a worker would send).
      const std::string task = payloads[i].flatten();
      Payload result;
      outcome.kind =
          execute_task(task, result) ? Outcome::Kind::Result : Outcome::Kind::RemoteError;
      outcome.payload = result.flatten();
    } catch (const ProtocolError& e) {
      outcome.kind = Outcome::Kind::ProtocolError;
      outcome.message = e.what();
    }
    {
      std::lock_guard lock(mutex_);
      ++stats_.tasks_completed;
    }
    call.complete(first + i, std::move(outcome));
  }
}

// A lazy imap left early: its tasks still in the submission queue are dropped here, those the
// loop still holds unassigned are withdrawn through the next TakeInbox. Holding `call` until the
// I/O thread has seen it keeps its address from being reused meanwhile.
void Core::cancel(std::shared_ptr<CallState> call) {
  if (processes_ == 0) return;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    std::erase_if(queue_, [&](const Submission& s) { return s.call == call; });
    cancels_.push_back(std::move(call));
  }
  (void)os::notify_eventfd(wake_.get());
}

void Core::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

void Core::join() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (!closed_ && !terminate_requested_) {
      throw UsageError("pipepool: join() needs close() or terminate() first");
    }
    join_requested_ = true;
  }
  if (processes_ == 0) return;
  stop_io_thread();
}

void Core::terminate() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    if (stopped_) return;
    terminate_requested_ = true;
  }
  if (processes_ == 0) return;
  kill_all_workers();  // unblocks an I/O thread stuck in a blocking write (EPIPE)
  stop_io_thread();
}

void Core::kill_all_workers() {
  std::lock_guard lock(spawn_mutex_);
  spawning_allowed_ = false;
  for (WorkerId w = 0; w < slots_->size(); ++w) {
    const driver::WorkerHandle& handle = slots_->handle(w);
    if (handle.pidfd) (void)os::pidfd_send_signal(handle.pidfd.get(), SIGKILL);
  }
}

void Core::stop_io_thread() {
  (void)os::notify_eventfd(wake_.get());
  if (io_thread_.joinable()) io_thread_.join();
  {
    std::lock_guard lock(spawn_mutex_);
    spawning_allowed_ = false;
    if (server_dead_) reap_orphans();
    for (WorkerId w = 0; w < slots_->size(); ++w) slots_->release(w);
    if (fork_server_) fork_server_->shutdown();  // kills and reaps anything left
  }
  std::lock_guard lock(mutex_);
  stopped_ = true;
}

// ---- the I/O thread: the loop's executor ------------------------------------------------------

void Core::io_loop() {
  // SIGPIPE from our writes stays pending on this thread and is discarded with the guard: a write
  // to a dead worker comes back as EPIPE. No process-wide disposition is touched.
  os::ScopedSigpipeBlock no_sigpipe;
  while (carry_out(loop_->next(now_ns()))) {
  }
  sync_stats();
}

bool Core::carry_out(const ParentLoop::Action& action) {
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
    case Op::Write:
      write(action);
      break;
    case Op::Read:
      read(action);
      break;
    case Op::Wait:
      wait(action);
      break;
    case Op::Deliver:
      deliver(action.completions);
      break;
    case Op::Done:
      return false;
  }
  return true;
}

void Core::take_inbox() {
  std::vector<Submission> batch;
  std::vector<std::shared_ptr<CallState>> cancels;
  protocol::Inbox inbox;
  {
    std::lock_guard lock(mutex_);
    batch.swap(queue_);
    cancels.swap(cancels_);
    inbox.join = join_requested_;
    inbox.terminate = terminate_requested_;
  }
  for (const std::shared_ptr<CallState>& call : cancels) {  // an imap the user stopped reading
    for (const auto& [id, entry] : calls_) {
      if (entry.first == call) inbox.cancel.push_back(id);
    }
  }
  inbox.calls.reserve(batch.size());
  for (Submission& submission : batch) {
    std::vector<protocol::TaskSubmission>& tasks = inbox.calls.emplace_back();
    tasks.reserve(submission.payloads.size());
    for (size_t i = 0; i < submission.payloads.size(); ++i) {
      const TaskId id = next_task_++;
      PIPEPOOL_PROBE4(task_submitted, id, -1, submission.payloads[i].size(),
                      options_.custom_strategy ? -1 : static_cast<int>(options_.strategy));
      calls_.emplace(id, std::make_pair(submission.call, submission.first + i));
      // Options::task_timeout bounds each item: a chunk's budget is the sum of its items'.
      const uint64_t items = i < submission.items.size() ? submission.items[i] : 1;
      const auto budget = std::chrono::nanoseconds(options_.task_timeout) * items;
      tasks.push_back(
          {id, std::move(submission.payloads[i]), static_cast<uint64_t>(budget.count())});
    }
  }
  loop_->inbox(std::move(inbox));
}

void Core::start_worker(WorkerId w) {
  driver::WorkerHandle& slot = slots_->handle(w);
  {
    std::lock_guard lock(spawn_mutex_);  // terminate() reads the pidfds from another thread
    slots_->release(w);
    auto handle = spawning_allowed_
                      ? fork_server_->spawn()
                      : os::Result<driver::WorkerHandle>(os::Error{EINTR, "stopping"});
    if (!handle.ok()) {
      loop_->start_failed(w);  // fork failed (EAGAIN...), or terminate() is under way
      return;
    }
    slots_->install(w, std::move(handle).value());
  }
  if (slot.socket) {
    // One open file description for both directions: O_NONBLOCK stays off, and each call says
    // whether it may block (MSG_DONTWAIT), see write() and read().
    socket_sndbuf_bytes_ = slot.socket_sndbuf_bytes;
  } else {
    pipe_capacity_bytes_ = slot.pipe_capacity_bytes;
    (void)os::set_nonblocking(slot.result_read.get(), true);
    (void)os::set_nonblocking(slot.task_write.get(), !strategy_->parent_blocking_writes());
  }
  pid_slot_[slot.pid] = w;
  PIPEPOOL_PROBE2(worker_spawned, w, slot.pid);
  loop_->started(w, "worker " + std::to_string(w) + " (pid " + std::to_string(slot.pid) + ")");
}

void Core::kill_worker(WorkerId w) {
  const driver::WorkerHandle& slot = slots_->handle(w);
  if (slot.pidfd) (void)os::pidfd_send_signal(slot.pidfd.get(), SIGKILL);
}

void Core::write(const ParentLoop::Action& action) {
  iovecs_.clear();
  for (auto s : action.write) iovecs_.push_back({const_cast<std::byte*>(s.data()), s.size()});
  const driver::WorkerHandle& handle = slots_->handle(action.worker);
  const int fd = handle.task_write.get();
  if (action.blocking) {
    // A socket's EPIPE / ECONNRESET (MSG_NOSIGNAL) is a pipe's EPIPE: write_failed.
    const os::Result<void> r = handle.socket   ? os::sendv_all(fd, iovecs_)
                               : action.splice ? os::vmsplice_all(fd, iovecs_)
                                               : os::writev_all(fd, iovecs_);
    if (r.ok()) {
      loop_->wrote(action.write_bytes);
    } else {
      loop_->write_failed(r.error());
    }
    return;
  }
  // A spliced payload's memory is the task record's, kept until the task's result arrives.
  const os::IoResult r = handle.socket   ? os::sendv_some(fd, iovecs_, true)
                         : action.splice ? os::vmsplice_some(fd, iovecs_, true)
                                         : os::writev_some(fd, iovecs_);
  if (r.status == os::IoResult::Ok) {
    loop_->wrote(r.bytes);
  } else if (r.status == os::IoResult::WouldBlock) {
    loop_->write_would_block();
  } else {
    loop_->write_failed(r.error);
  }
}

void Core::read(const ParentLoop::Action& action) {
  const driver::WorkerHandle& handle = slots_->handle(action.worker);
  const int fd = handle.result_read.get();
  if (fd < 0) {
    loop_->read_eof();
    return;
  }
  // Ignored where it fails: the memory is usable without huge pages.
  if (!action.huge_page_advice.empty()) (void)os::advise_huge_pages(action.huge_page_advice);
  const os::IoResult r = handle.socket ? os::recv_some(fd, action.read_into, true)
                                       : os::read_some(fd, action.read_into);
  if (r.status == os::IoResult::Ok) {
    loop_->read_done(r.bytes);
  } else if (r.status == os::IoResult::WouldBlock) {
    loop_->read_would_block();
  } else {
    loop_->read_eof();  // end of file, or an error that means the same (ECONNRESET)
  }
}

void Core::wait(const ParentLoop::Action& action) {
  for (WorkerId w = 0; w < slots_->size(); ++w) {
    slots_->watch(w, Which::Read, action.interest[w].read);
    slots_->watch(w, Which::Write, action.interest[w].write);
  }
  int timeout_ms = -1;
  if (action.deadline_ns != UINT64_MAX) {
    const uint64_t now = now_ns();
    const uint64_t left = action.deadline_ns > now ? action.deadline_ns - now : 0;
    timeout_ms = static_cast<int>(std::min<uint64_t>((left + 999'999) / 1'000'000, 60'000));
  }
  epoll_event ready[64];
  auto n = epoll_->wait(ready, timeout_ms);
  if (!n.ok()) throw_os("epoll_wait", n.error());
  events_.clear();
  for (int i = 0; i < n.value(); ++i) {
    const uint64_t data = ready[i].data.u64;
    if (data == kWakeToken) {
      (void)os::drain_eventfd(wake_.get());
      events_.push_back({.kind = ReadyEvent::Kind::Wake});
    } else if (data == kEventsToken) {
      read_server_events(ready[i].events);
    } else {
      const WorkerId w = driver::WorkerSlots::slot_of(data);
      switch (driver::WorkerSlots::which_of(data)) {
        case Which::Read:
          events_.push_back({.kind = ReadyEvent::Kind::Readable, .worker = w});
          break;
        case Which::Write:
          events_.push_back({.kind = ReadyEvent::Kind::Writable, .worker = w});
          break;
        case Which::Pidfd:
          pidfd_ready(w);
          break;
      }
    }
  }
  loop_->waited(events_);
}

void Core::read_server_events(uint32_t epoll_events) {
  while (auto event = fork_server_->read_event()) {
    auto it = pid_slot_.find(event->pid);
    if (it == pid_slot_.end()) continue;
    const WorkerId w = it->second;
    pid_slot_.erase(it);
    if (slots_->handle(w).pid != event->pid) continue;  // an older process of the slot
    PIPEPOOL_PROBE4(worker_lost, w, event->pid, event->status.signal,
                    event->status.signal ? -1 : event->status.code);
    events_.push_back({.kind = ReadyEvent::Kind::Exited,
                       .worker = w,
                       .exit = exit_info(event->status, options_)});
  }
  if (fork_server_->events_closed() || (epoll_events & (EPOLLHUP | EPOLLERR)) != 0) {
    fork_server_died();
  }
}

void Core::fork_server_died() {
  if (server_dead_) return;
  server_dead_ = true;
  (void)epoll_->remove(fork_server_->events_fd());
  const pid_t server = fork_server_->pid();
  // Its events socket ends when it exits: it is (about to be) a zombie, our child. Reap it for
  // its status, then let ForkServer::shutdown() find it gone.
  std::string how = "its exit status is unknown";
  if (auto pidfd = os::pidfd_open(server); pidfd.ok()) {
    pollfd exited{pidfd.value().get(), POLLIN, 0};
    (void)os::poll_fds(std::span<pollfd>(&exited, 1), kServerReapTimeoutMs);
  }
  if (auto status = os::try_wait_pid(server); status.ok() && status.value().has_value()) {
    how = status.value()->describe();
  }
  server_death_ = "the pool's fork server (pid " + std::to_string(server) + ") died (" + how + ")";
  {
    std::lock_guard lock(mutex_);
    broken_ = "pipepool: " + server_death_ + ", so the pool cannot start workers any more";
  }
  events_.push_back({.kind = ReadyEvent::Kind::ServerLost, .reason = server_death_});
  std::lock_guard lock(spawn_mutex_);
  fork_server_->shutdown();  // nothing left to wait for; closes our sockets
  // Its workers die with it (PR_SET_PDEATHSIG): make sure, and watch their pidfds, since no
  // server will report their exits.
  for (WorkerId w = 0; w < slots_->size(); ++w) {
    const driver::WorkerHandle& slot = slots_->handle(w);
    if (!loop_->process_alive(w) || !slot.pidfd) continue;
    (void)os::pidfd_send_signal(slot.pidfd.get(), SIGKILL);
    if (!slots_->watch(w, Which::Pidfd,
                       true)) {  // cannot watch it: it was just SIGKILLed, count it gone
      events_.push_back({.kind = ReadyEvent::Kind::Exited,
                         .worker = w,
                         .exit = {SIGKILL, -1, "was killed (SIGKILL) when " + server_death_}});
    }
  }
  pid_slot_.clear();
}

void Core::pidfd_ready(WorkerId w) {
  const driver::WorkerHandle& slot = slots_->handle(w);
  if (!slots_->watched(w, Which::Pidfd)) return;
  pollfd exited{slot.pidfd.get(), POLLIN, 0};
  if (auto ready = os::poll_fds(std::span<pollfd>(&exited, 1), 0);
      ready.ok() && ready.value() == 0) {
    return;  // not yet
  }
  slots_->watch(w, Which::Pidfd, false);
  protocol::ExitInfo info{SIGKILL, -1, "was killed (SIGKILL) when " + server_death_};
  // Reapable here only if this process is a child subreaper (PR_SET_CHILD_SUBREAPER): then the
  // orphan is ours, and this gives its real status. Otherwise init reaps it.
  auto status = os::wait_pidfd(slot.pidfd.get(), true);
  if (status.ok() && status.value().has_value()) {
    info = exit_info(*status.value(), options_);
    info.description += " after " + server_death_;
  }
  events_.push_back({.kind = ReadyEvent::Kind::Exited, .worker = w, .exit = info});
}

// After the I/O thread has ended (terminate() while the workers of a dead fork server were still
// dying): no server will reap them. If this process is a child subreaper they are its children
// now, and only it can reap them; otherwise init does, and wait_pidfd fails with ECHILD.
void Core::reap_orphans() {
  for (WorkerId w = 0; w < slots_->size(); ++w) {
    const driver::WorkerHandle& slot = slots_->handle(w);
    if (!loop_->process_alive(w) || !slot.pidfd) continue;
    (void)os::pidfd_send_signal(slot.pidfd.get(), SIGKILL);
    pollfd exited{slot.pidfd.get(), POLLIN, 0};
    (void)os::poll_fds(std::span<pollfd>(&exited, 1), kServerReapTimeoutMs);
    (void)os::wait_pidfd(slot.pidfd.get(), true);
  }
}

void Core::sync_stats() {
  std::lock_guard lock(mutex_);
  const protocol::EngineStats& s = loop_->engine().stats();
  stats_.workers_started = s.workers_started;
  stats_.workers_lost = s.workers_lost;
  stats_.tasks_retried = s.tasks_retried;
}

void Core::deliver(std::span<Completion> completions) {
  // Before the callers wake: whoever sees a task fail with WorkerLost also sees it counted.
  sync_stats();
  for (Completion& completion : completions) {
    PIPEPOOL_PROBE4(result_received, completion.task, completion.worker, completion.payload.size(),
                    static_cast<int>(completion.kind));
    auto it = calls_.find(completion.task);
    if (it == calls_.end()) continue;
    auto [call, index] = std::move(it->second);
    calls_.erase(it);
    if (completion.kind == Completion::Kind::Cancelled) continue;  // nobody waits for it
    {
      std::lock_guard lock(mutex_);
      ++stats_.tasks_completed;
    }
    call->complete(index, std::move(completion));  // may run user callbacks
  }
}

// ---- the free functions the templates call -----------------------------------------------------

std::shared_ptr<Core> make_core(Options options) {
  return std::make_shared<Core>(std::move(options));
}

void submit(Core& core, std::vector<Payload> payloads, std::shared_ptr<CallState> call,
            size_t first_index, bool continuation, std::vector<uint64_t> items) {
  core.submit(std::move(payloads), std::move(call), first_index, continuation, std::move(items));
}
void cancel(Core& core, std::shared_ptr<CallState> call) {
  core.cancel(std::move(call));
}
void close(Core& core) {
  core.close();
}
void join(Core& core) {
  core.join();
}
void terminate(Core& core) {
  core.terminate();
}
int processes(const Core& core) {
  return core.processes();
}
uint64_t pipe_capacity_bytes(const Core& core) {
  return core.pipe_capacity_bytes();
}
uint64_t socket_sndbuf_bytes(const Core& core) {
  return core.socket_sndbuf_bytes();
}
std::string_view strategy_name(const Core& core) {
  return core.strategy_name();
}
std::string_view scheduler_name(const Core& core) {
  return core.scheduler_name();
}
PoolStats stats(const Core& core) {
  return core.stats();
}

}  // namespace pipepool::detail
