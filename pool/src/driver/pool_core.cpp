// The real driver: runs the parent engine on an I/O thread over real pipes, with workers forked by
// a fork server. Also the inline mode of Pool(0).
//
// Threads: user threads only touch the submission queue and flags (mutex_) and, in terminate(),
// the workers' pidfds (spawn_mutex_). The engine, the slots and the epoll set belong to the I/O
// thread alone.
//
// How a worker's death is noticed (docs/what-goes-wrong.md has the whole table): the fork server
// polls each worker's pidfd, reaps it and sends {pid, status} on its events socket, which this
// thread polls. With the status in hand the worker's result pipe is drained without blocking (a
// dead process writes nothing more; a descendant that inherited the pipe must not keep the slot
// waiting for an end of file), and the engine finalises the slot: the task it was running fails
// with WorkerLost naming the signal or exit code, the others go back to the queue, and a new
// worker is forked. If the fork server itself dies, its workers die with it (PR_SET_PDEATHSIG):
// their pidfds say when, what they had written is still read, and then every unfinished task
// fails with WorkerLost and the pool refuses new work.
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "driver/fork_server.hpp"
#include "driver/worker_main.hpp"
#include "os/cpu.hpp"
#include "os/epoll.hpp"
#include "os/eventfd.hpp"
#include "os/fd.hpp"
#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os/process.hpp"
#include "pipepool/detail/core.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/errors.hpp"
#include "protocol/parent_engine.hpp"

namespace pipepool::detail {
namespace {

using Clock = std::chrono::steady_clock;
using protocol::Command;
using protocol::Completion;
using protocol::TaskId;
using protocol::WorkerId;

constexpr uint64_t kWakeToken = ~uint64_t{0};
constexpr uint64_t kEventsToken = ~uint64_t{0} - 1;
constexpr auto kSpawnRetryDelay = std::chrono::milliseconds(50);
// A worker that fails (a signal or a non-zero exit) within this time of its fork, without having
// sent a byte, died "young" (an initializer that throws, a task that crashes at once). From the
// second young death in a row, the slot's next fork waits 10 ms, doubling up to a second, so a
// pool that cannot keep a worker alive does not fork in a tight loop.
constexpr auto kYoungDeath = std::chrono::seconds(1);
constexpr auto kYoungDeathFirstDelay = std::chrono::milliseconds(10);
constexpr auto kYoungDeathMaxDelay = std::chrono::milliseconds(1000);
// How long the I/O thread waits for a fork server whose events socket ended to be reapable.
constexpr int kServerReapTimeoutMs = 2000;

// epoll tokens of a worker's descriptors: slot << 2 | which.
enum class Which : uint64_t { Read = 0, Write = 1, Pidfd = 2 };
uint64_t token(WorkerId w, Which which) {
  return (uint64_t{w} << 2) | static_cast<uint64_t>(which);
}
uint64_t token(WorkerId w, bool write) {
  return token(w, write ? Which::Write : Which::Read);
}

Outcome::Kind to_outcome_kind(Completion::Kind kind) {
  switch (kind) {
    case Completion::Kind::Result:
      return Outcome::Kind::Result;
    case Completion::Kind::RemoteError:
      return Outcome::Kind::RemoteError;
    case Completion::Kind::WorkerLost:
      return Outcome::Kind::WorkerLost;
    case Completion::Kind::ProtocolError:
      return Outcome::Kind::ProtocolError;
    case Completion::Kind::Timeout:
      return Outcome::Kind::Timeout;
    case Completion::Kind::Terminated:
      return Outcome::Kind::Terminated;
  }
  return Outcome::Kind::WorkerLost;
}

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

}  // namespace

class Core {
 public:
  explicit Core(Options options);
  ~Core();

  void submit(std::vector<std::string> payloads, std::shared_ptr<CallState> call, size_t first,
              bool continuation, std::vector<uint64_t> items);
  void cancel(std::shared_ptr<CallState> call);
  void close();
  void join();
  void terminate();

  int processes() const { return processes_; }
  uint64_t pipe_capacity_bytes() const { return pipe_capacity_bytes_.load(); }
  std::string_view strategy_name() const { return strategy_->name(); }
  std::string_view scheduler_name() const { return scheduler_->name(); }
  PoolStats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

 private:
  struct Submission {
    std::vector<std::string> payloads;
    std::shared_ptr<CallState> call;
    size_t first;
    std::vector<uint64_t> items;  // per task (empty: one each), for its timeout budget
  };
  struct Slot {
    driver::WorkerHandle handle;
    bool read_registered = false;
    bool write_registered = false;
    bool pidfd_registered = false;  // only once the fork server has died
    bool needs_spawn = false;
    Clock::time_point spawn_after{};
    bool process_alive = false;  // forked, and its exit not yet given to the engine
    Clock::time_point spawned_at{};
    uint64_t bytes_read = 0;    // from the current process
    uint32_t young_deaths = 0;  // in a row
  };
  using Timers = std::multimap<Clock::time_point, std::pair<TaskId, uint32_t>>;

  void run_inline(std::vector<std::string>& payloads, CallState& call, size_t first);
  void io_loop();
  bool io_iteration();
  void take_submissions();
  void apply_commands();
  bool spawn(WorkerId w);
  void release_slot(WorkerId w);
  void deliver_completions();
  void update_interest();
  void set_interest(WorkerId w, bool write, bool want);
  void do_blocking_write(WorkerId w);
  void do_nonblocking_write(WorkerId w);
  void do_read(WorkerId w);
  void handle_events_fd(uint32_t epoll_events);
  void worker_gone(WorkerId w, const protocol::ExitInfo& info);
  void drain_after_exit(WorkerId w);
  void fork_server_died();
  void handle_pidfd(WorkerId w);
  void reap_orphans();
  bool any_process_alive() const;
  int next_timeout_ms() const;
  void fire_timers();
  void kill_all_workers();
  void stop_io_thread();

  Options options_;
  int processes_ = 0;
  const IoStrategy* strategy_ = nullptr;
  std::shared_ptr<Scheduler> scheduler_;
  driver::WorkerContext worker_context_;
  std::atomic<uint64_t> pipe_capacity_bytes_{0};

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
  std::optional<protocol::ParentEngine> engine_;
  std::optional<os::Epoll> epoll_;
  os::Fd wake_;
  std::vector<Slot> slots_;
  std::unordered_map<pid_t, WorkerId> pid_slot_;
  std::unordered_map<TaskId, std::pair<std::shared_ptr<CallState>, size_t>> calls_;
  Timers timers_;  // task timeouts: when -> (task, attempt)
  std::unordered_map<TaskId, Timers::iterator> timer_of_;
  bool server_dead_ = false;
  std::string server_death_;  // "the pool's fork server (pid N) died (killed by signal 9 ...)"
  TaskId next_task_ = 1;
  std::vector<std::span<const std::byte>> segments_;
  std::vector<iovec> iovecs_;
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
  if (options_.task_timeout.count() < 0) {
    throw std::invalid_argument("pipepool: task_timeout must not be negative");
  }
  if (options_.memory_limit_bytes != 0 && options_.processes != 0) {
    rlimit current{};
    if (getrlimit(RLIMIT_AS, &current) == 0 && current.rlim_max != RLIM_INFINITY &&
        options_.memory_limit_bytes > current.rlim_max) {
      throw std::invalid_argument(
          "pipepool: memory_limit_bytes is above this process's hard "
          "RLIMIT_AS of " +
          std::to_string(current.rlim_max) + " bytes");
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
  strategy_ = options_.custom_strategy ? options_.custom_strategy.get()
                                       : &builtin_strategy(options_.strategy);
  scheduler_ = options_.custom_scheduler
                   ? options_.custom_scheduler
                   : std::shared_ptr<Scheduler>(make_scheduler(
                         options_.scheduler, options_.demand_max_in_flight,
                         static_cast<uint64_t>(options_.demand_queue_budget.count()) * 1000));
  if (processes_ == 0) {  // inline (issue 10.8: Pool(0) honours initializer, rejects task_timeout)
    if (options_.task_timeout.count() > 0) {
      throw UsageError(
          "pipepool: Options::task_timeout needs worker processes: Pool(0) runs each task in the "
          "calling thread, and a process cannot safely stop its own call halfway (a timed-out "
          "task is stopped by killing its worker); use processes >= 1, or no task_timeout");
    }
    if (options_.initializer) options_.initializer();  // once, before any task; throws through
    return;
  }

  worker_context_.mode = strategy_->child_mode();
  worker_context_.max_frame_bytes = options_.max_frame_bytes;
  worker_context_.max_tasks = options_.maxtasksperchild;
  worker_context_.send_started = options_.task_timeout.count() > 0;
  worker_context_.read_ahead_bytes = strategy_->child_read_ahead_bytes();
  worker_context_.memory_limit_bytes = options_.memory_limit_bytes;
  worker_context_.initializer = options_.initializer;

  size_t capacity = options_.pipe_capacity_bytes;
  if (capacity == 0 && options_.enlarge_pipes) capacity = os::pipe_max_size();

  // The fork server first: this thread is the only one the pool has so far.
  auto server = driver::ForkServer::start(&driver::worker_main, &worker_context_,
                                          {.pipe_capacity_bytes = capacity});
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

  slots_.resize(processes_);
  engine_.emplace(protocol::ParentConfig{.workers = static_cast<uint32_t>(processes_),
                                         .max_result_payload_bytes = options_.max_frame_bytes,
                                         .max_tasks_per_child = options_.maxtasksperchild,
                                         .task_timeouts = options_.task_timeout.count() > 0,
                                         .max_retries = options_.max_retries,
                                         .seed = options_.seed},
                  *strategy_, *scheduler_);
  apply_commands();  // the first workers, synchronously: failures throw here
  for (WorkerId w = 0; w < slots_.size(); ++w) {
    if (slots_[w].needs_spawn) {
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

void Core::submit(std::vector<std::string> payloads, std::shared_ptr<CallState> call, size_t first,
                  bool continuation, std::vector<uint64_t> items) {
  {
    std::lock_guard lock(mutex_);
    if (!broken_.empty()) throw PoolClosed(broken_);
    if (terminate_requested_ || stopped_ || join_requested_ || (closed_ && !continuation)) {
      throw PoolClosed(terminate_requested_ ? "pipepool: the pool was terminated"
                                            : "pipepool: the pool is closed");
    }
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

void Core::run_inline(std::vector<std::string>& payloads, CallState& call, size_t first) {
  for (size_t i = 0; i < payloads.size(); ++i) {
    Outcome outcome;
    try {
      outcome.kind = execute_task(payloads[i], outcome.payload) ? Outcome::Kind::Result
                                                                : Outcome::Kind::RemoteError;
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

// A lazy imap left early (issue 10.4): its tasks still in the submission queue are dropped here,
// those in the engine's queue by take_submissions() on the I/O thread.
// Holding `call` until the I/O thread has seen it keeps its address from being reused meanwhile.
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
  for (Slot& slot : slots_) {
    if (slot.handle.pidfd) (void)os::pidfd_send_signal(slot.handle.pidfd.get(), SIGKILL);
  }
}

void Core::stop_io_thread() {
  (void)os::notify_eventfd(wake_.get());
  if (io_thread_.joinable()) io_thread_.join();
  {
    std::lock_guard lock(spawn_mutex_);
    spawning_allowed_ = false;
    if (server_dead_) reap_orphans();
    for (WorkerId w = 0; w < slots_.size(); ++w) release_slot(w);
    if (fork_server_) fork_server_->shutdown();  // kills and reaps anything left
  }
  std::lock_guard lock(mutex_);
  stopped_ = true;
}

// ---- the I/O thread ----------------------------------------------------------------------------

void Core::io_loop() {
  // SIGPIPE from our writes stays pending on this thread and is discarded with it: a write to a
  // dead worker comes back as EPIPE. No process-wide disposition is touched.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
  while (io_iteration()) {
  }
}

bool Core::io_iteration() {
  bool terminate_now, join_now;
  {
    std::lock_guard lock(mutex_);
    terminate_now = terminate_requested_;
    join_now = join_requested_;
    const protocol::EngineStats& s = engine_->stats();
    stats_.workers_started = s.workers_started;
    stats_.workers_lost = s.workers_lost;
    stats_.tasks_retried = s.tasks_retried;
  }
  if (terminate_now) {
    take_submissions();
    engine_->terminate();
    deliver_completions();
    return false;
  }
  engine_->set_time(now_ns());
  take_submissions();
  if (join_now && !engine_->shutting_down()) engine_->begin_shutdown();
  apply_commands();
  deliver_completions();
  if (engine_->finished()) return false;
  if (server_dead_ && !any_process_alive()) {
    // Everything the dead server's workers wrote has been read; nothing can run what is left.
    take_submissions();
    engine_->abort(server_death_ + ", and no worker can be started without it");
    deliver_completions();
    return false;
  }

  if (auto w = engine_->blocking_write_due()) {
    do_blocking_write(*w);  // and nothing else until it is written: the strategy's discipline
    apply_commands();
    deliver_completions();
    return true;
  }

  update_interest();
  epoll_event events[64];
  auto n = epoll_->wait(events, next_timeout_ms());
  if (!n.ok()) throw_os("epoll_wait", n.error());
  engine_->set_time(now_ns());  // for the scheduler's estimate of each worker's task time
  for (int i = 0; i < n.value(); ++i) {
    const uint64_t data = events[i].data.u64;
    if (data == kWakeToken) {
      (void)os::drain_eventfd(wake_.get());
    } else if (data == kEventsToken) {
      handle_events_fd(events[i].events);
    } else {
      // Events of one batch may be stale (the slot was finalised, or given a new process, by an
      // earlier one): each handler checks the engine's state or the descriptor before acting.
      const WorkerId w = static_cast<WorkerId>(data >> 2);
      switch (static_cast<Which>(data & 3)) {
        case Which::Write:
          do_nonblocking_write(w);
          break;
        case Which::Read:
          do_read(w);
          break;
        case Which::Pidfd:
          handle_pidfd(w);
          break;
      }
    }
    apply_commands();
  }
  fire_timers();
  apply_commands();
  deliver_completions();
  return true;
}

void Core::take_submissions() {
  std::vector<Submission> batch;
  std::vector<std::shared_ptr<CallState>> cancels;
  {
    std::lock_guard lock(mutex_);
    batch.swap(queue_);
    cancels.swap(cancels_);
  }
  for (const std::shared_ptr<CallState>& call : cancels) {  // an imap the user stopped reading
    std::erase_if(calls_, [&](const auto& entry) {
      return entry.second.first == call && engine_->cancel(entry.first);
    });
  }
  for (Submission& submission : batch) {
    std::vector<protocol::TaskSubmission> tasks;
    tasks.reserve(submission.payloads.size());
    for (size_t i = 0; i < submission.payloads.size(); ++i) {
      const TaskId id = next_task_++;
      calls_.emplace(id, std::make_pair(submission.call, submission.first + i));
      // Options::task_timeout bounds each item: a chunk's budget is the sum of its items'.
      const uint64_t items = i < submission.items.size() ? submission.items[i] : 1;
      const auto budget = std::chrono::nanoseconds(options_.task_timeout) * items;
      tasks.push_back(
          {id, std::move(submission.payloads[i]), static_cast<uint64_t>(budget.count())});
    }
    engine_->submit(std::move(tasks));
  }
}

void Core::apply_commands() {
  for (;;) {
    std::vector<Command> commands = engine_->take_commands();
    for (const Command& command : commands) {
      switch (command.kind) {
        case Command::Kind::StartWorker: {
          Slot& slot = slots_[command.worker];
          slot.needs_spawn = true;
          slot.spawn_after = Clock::time_point{};
          if (slot.young_deaths >= 2) {
            const auto delay = kYoungDeathFirstDelay * (1u << std::min(slot.young_deaths - 2, 7u));
            slot.spawn_after = Clock::now() + std::min<Clock::duration>(delay, kYoungDeathMaxDelay);
          }
          break;
        }
        case Command::Kind::KillWorker: {
          Slot& slot = slots_[command.worker];
          if (slot.handle.pidfd) (void)os::pidfd_send_signal(slot.handle.pidfd.get(), SIGKILL);
          set_interest(command.worker, false, false);
          set_interest(command.worker, true, false);
          break;
        }
        case Command::Kind::ArmTimer: {
          if (auto old = timer_of_.find(command.task); old != timer_of_.end()) {
            timers_.erase(old->second);  // an earlier attempt's
            timer_of_.erase(old);
          }
          const Clock::duration budget = command.timeout_ns != 0
                                             ? std::chrono::nanoseconds(command.timeout_ns)
                                             : Clock::duration(options_.task_timeout);
          timer_of_[command.task] =
              timers_.emplace(Clock::now() + budget, std::make_pair(command.task, command.attempt));
          break;
        }
      }
    }
    // Also the spawns that were due later (a failed fork, a young death's back-off): the loop
    // calls this every iteration, and next_timeout_ms() wakes it when one is due.
    const auto now = Clock::now();
    bool spawned = false;
    for (WorkerId w = 0; w < slots_.size(); ++w) {
      if (!server_dead_ && slots_[w].needs_spawn && slots_[w].spawn_after <= now) {
        spawned |= spawn(w);
      }
    }
    if (commands.empty() && !spawned) break;
  }
}

// True if a worker was started (the engine may have new commands then).
bool Core::spawn(WorkerId w) {
  Slot& slot = slots_[w];
  {
    std::lock_guard lock(spawn_mutex_);  // terminate() reads the pidfds from another thread
    release_slot(w);
    if (!spawning_allowed_) {  // terminate() is under way
      slot.needs_spawn = false;
      return false;
    }
    auto handle = fork_server_->spawn();
    if (!handle.ok()) {
      slot.spawn_after = Clock::now() + kSpawnRetryDelay;  // fork failed (EAGAIN...): try again
      return false;
    }
    slot.handle = std::move(handle).value();
  }
  slot.needs_spawn = false;
  slot.process_alive = true;
  slot.spawned_at = Clock::now();
  slot.bytes_read = 0;
  pipe_capacity_bytes_ = slot.handle.pipe_capacity_bytes;
  (void)os::set_nonblocking(slot.handle.result_read.get(), true);
  (void)os::set_nonblocking(slot.handle.task_write.get(), !strategy_->parent_blocking_writes());
  pid_slot_[slot.handle.pid] = w;
  engine_->set_worker_label(
      w, "worker " + std::to_string(w) + " (pid " + std::to_string(slot.handle.pid) + ")");
  engine_->worker_started(w);
  return true;
}

// Callers hold spawn_mutex_.
void Core::release_slot(WorkerId w) {
  Slot& slot = slots_[w];
  set_interest(w, false, false);
  set_interest(w, true, false);
  if (slot.pidfd_registered) {
    (void)epoll_->remove(slot.handle.pidfd.get());
    slot.pidfd_registered = false;
  }
  slot.handle.task_write.reset();
  slot.handle.result_read.reset();
  slot.handle.pidfd.reset();
}

void Core::deliver_completions() {
  std::vector<Completion> completions = engine_->take_completions();
  if (completions.empty()) return;
  {
    // Before the callers wake: whoever sees a task fail with WorkerLost also sees it counted.
    std::lock_guard lock(mutex_);
    const protocol::EngineStats& s = engine_->stats();
    stats_.workers_started = s.workers_started;
    stats_.workers_lost = s.workers_lost;
    stats_.tasks_retried = s.tasks_retried;
  }
  for (Completion& completion : completions) {
    auto it = calls_.find(completion.task);
    if (it == calls_.end()) continue;
    auto [call, index] = std::move(it->second);
    calls_.erase(it);
    if (auto timer = timer_of_.find(completion.task); timer != timer_of_.end()) {
      timers_.erase(timer->second);
      timer_of_.erase(timer);
    }
    Outcome outcome;
    outcome.kind = to_outcome_kind(completion.kind);
    outcome.payload = std::move(completion.payload);
    outcome.message = std::move(completion.message);
    outcome.signal = completion.signal;
    outcome.exit_code = completion.exit_code;
    outcome.task_id = completion.task;  // the engine's messages name it (issue 10.10)
    {
      std::lock_guard lock(mutex_);
      ++stats_.tasks_completed;
    }
    call->complete(index, std::move(outcome));  // may run user callbacks
  }
}

void Core::set_interest(WorkerId w, bool write, bool want) {
  Slot& slot = slots_[w];
  bool& registered = write ? slot.write_registered : slot.read_registered;
  if (registered == want) return;
  const int fd = write ? slot.handle.task_write.get() : slot.handle.result_read.get();
  if (fd < 0) {
    registered = false;
    return;
  }
  if (want) {
    (void)epoll_->add(fd, write ? EPOLLOUT : EPOLLIN, token(w, write));
  } else {
    (void)epoll_->remove(fd);
  }
  registered = want;
}

void Core::update_interest() {
  const bool nonblocking = !strategy_->parent_blocking_writes();
  for (WorkerId w = 0; w < slots_.size(); ++w) {
    if (!slots_[w].handle.result_read) continue;
    set_interest(w, false, engine_->wants_read(w));
    set_interest(w, true, nonblocking && engine_->wants_write(w));
  }
}

void Core::do_blocking_write(WorkerId w) {
  segments_.clear();
  const size_t total = engine_->pending_write(w, segments_);
  iovecs_.clear();
  for (auto s : segments_) iovecs_.push_back({const_cast<std::byte*>(s.data()), s.size()});
  os::Result<void> r = os::writev_all(slots_[w].handle.task_write.get(), iovecs_);
  if (r.ok()) {
    engine_->bytes_written(w, total);
  } else {
    engine_->write_failed(w, r.error());
  }
}

void Core::do_nonblocking_write(WorkerId w) {
  for (int rounds = 0; rounds < 16 && engine_->wants_write(w); ++rounds) {
    segments_.clear();
    engine_->pending_write(w, segments_);
    iovecs_.clear();
    for (auto s : segments_) iovecs_.push_back({const_cast<std::byte*>(s.data()), s.size()});
    os::IoResult r = os::writev_some(slots_[w].handle.task_write.get(), iovecs_);
    if (r.status == os::IoResult::Ok) {
      engine_->bytes_written(w, r.bytes);
    } else if (r.status == os::IoResult::WouldBlock) {
      return;
    } else {
      engine_->write_failed(w, r.error);
      return;
    }
  }
}

void Core::do_read(WorkerId w) {
  for (int rounds = 0; rounds < 64 && engine_->wants_read(w); ++rounds) {
    std::span<std::byte> buffer = engine_->read_buffer(w);
    if (buffer.empty()) return;
    os::IoResult r = os::read_some(slots_[w].handle.result_read.get(), buffer);
    if (r.status == os::IoResult::Ok) {
      slots_[w].bytes_read += r.bytes;
      engine_->bytes_read(w, r.bytes);
    } else if (r.status == os::IoResult::WouldBlock) {
      return;
    } else {
      engine_->result_eof(w);  // end of file, or an error that means the same
      set_interest(w, false, false);
      return;
    }
  }
}

void Core::handle_events_fd(uint32_t epoll_events) {
  while (auto event = fork_server_->read_event()) {
    auto it = pid_slot_.find(event->pid);
    if (it == pid_slot_.end()) continue;
    const WorkerId w = it->second;
    pid_slot_.erase(it);
    // The engine tracks one process per slot; an exit of an older process of the slot has been
    // accounted for already.
    if (slots_[w].handle.pid != event->pid || !slots_[w].process_alive) continue;
    worker_gone(
        w, protocol::ExitInfo{event->status.signal, event->status.signal ? -1 : event->status.code,
                              describe_exit(event->status, options_)});
    apply_commands();
  }
  if (fork_server_->events_closed() || (epoll_events & (EPOLLHUP | EPOLLERR)) != 0) {
    fork_server_died();
  }
}

void Core::worker_gone(WorkerId w, const protocol::ExitInfo& info) {
  Slot& slot = slots_[w];
  slot.process_alive = false;
  const bool young = (info.signal != 0 || info.exit_code != 0) && slot.bytes_read == 0 &&
                     Clock::now() - slot.spawned_at < kYoungDeath;
  slot.young_deaths = young ? slot.young_deaths + 1 : 0;
  engine_->worker_exited(w, info);
  drain_after_exit(w);
}

// The process is gone, so what it wrote is all in the pipe now: read it, then end the stream
// ourselves if the pipe is empty without an end of file (a descendant of the worker, forked by a
// task, still holds the write end; it must not keep the slot, and the task, waiting).
void Core::drain_after_exit(WorkerId w) {
  Slot& slot = slots_[w];
  while (engine_->wants_read(w)) {
    std::span<std::byte> buffer = engine_->read_buffer(w);
    os::IoResult r{};
    if (!buffer.empty() && slot.handle.result_read) {
      r = os::read_some(slot.handle.result_read.get(), buffer);
    } else {
      r.status = os::IoResult::Eof;
    }
    if (r.status == os::IoResult::Ok) {
      slot.bytes_read += r.bytes;
      engine_->bytes_read(w, r.bytes);
      continue;
    }
    engine_->result_eof(w);  // Eof, WouldBlock (see above) or an error: nothing more comes
    break;
  }
  set_interest(w, false, false);
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
  std::lock_guard lock(spawn_mutex_);
  fork_server_->shutdown();  // nothing left to wait for; closes our sockets
  // Its workers die with it (PR_SET_PDEATHSIG): make sure, and watch their pidfds, since no
  // server will report their exits.
  for (WorkerId w = 0; w < slots_.size(); ++w) {
    Slot& slot = slots_[w];
    if (!slot.process_alive || !slot.handle.pidfd) continue;
    (void)os::pidfd_send_signal(slot.handle.pidfd.get(), SIGKILL);
    if (epoll_->add(slot.handle.pidfd.get(), EPOLLIN, token(w, Which::Pidfd)).ok()) {
      slot.pidfd_registered = true;
    } else {
      slot.process_alive = false;  // cannot watch it: it was just SIGKILLed, count it gone
      worker_gone(w, {SIGKILL, -1, "was killed (SIGKILL) when " + server_death_});
    }
  }
  pid_slot_.clear();
}

void Core::handle_pidfd(WorkerId w) {
  Slot& slot = slots_[w];
  if (!slot.pidfd_registered) return;
  pollfd exited{slot.handle.pidfd.get(), POLLIN, 0};
  if (auto ready = os::poll_fds(std::span<pollfd>(&exited, 1), 0);
      ready.ok() && ready.value() == 0) {
    return;  // not yet
  }
  (void)epoll_->remove(slot.handle.pidfd.get());
  slot.pidfd_registered = false;
  protocol::ExitInfo info{SIGKILL, -1, "was killed (SIGKILL) when " + server_death_};
  // Reapable here only if this process is a child subreaper (PR_SET_CHILD_SUBREAPER): then the
  // orphan is ours, and this gives its real status. Otherwise init reaps it.
  auto status = os::wait_pidfd(slot.handle.pidfd.get(), true);
  if (status.ok() && status.value().has_value()) {
    const os::ExitStatus& exit = *status.value();
    info = {exit.signal, exit.signal ? -1 : exit.code,
            describe_exit(exit, options_) + " after " + server_death_};
  }
  worker_gone(w, info);
}

// After the I/O thread has ended (terminate() while the workers of a dead fork server were still
// dying): no server will reap them. If this process is a child subreaper they are its children
// now, and only it can reap them; otherwise init does, and wait_pidfd fails with ECHILD.
void Core::reap_orphans() {
  for (Slot& slot : slots_) {
    if (!slot.process_alive || !slot.handle.pidfd) continue;
    (void)os::pidfd_send_signal(slot.handle.pidfd.get(), SIGKILL);
    pollfd exited{slot.handle.pidfd.get(), POLLIN, 0};
    (void)os::poll_fds(std::span<pollfd>(&exited, 1), kServerReapTimeoutMs);
    (void)os::wait_pidfd(slot.handle.pidfd.get(), true);
    slot.process_alive = false;
  }
}

bool Core::any_process_alive() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.process_alive; });
}

int Core::next_timeout_ms() const {
  Clock::time_point next = Clock::time_point::max();
  if (!timers_.empty()) next = timers_.begin()->first;
  for (const Slot& slot : slots_) {
    if (slot.needs_spawn && !server_dead_) next = std::min(next, slot.spawn_after);
  }
  if (next == Clock::time_point::max()) return -1;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void Core::fire_timers() {
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const auto [task, attempt] = timers_.begin()->second;
    timers_.erase(timers_.begin());
    timer_of_.erase(task);
    engine_->timer_fired(task, attempt);
  }
}

// ---- the free functions the templates call -----------------------------------------------------

std::shared_ptr<Core> make_core(Options options) {
  return std::make_shared<Core>(std::move(options));
}

void submit(Core& core, std::vector<std::string> payloads, std::shared_ptr<CallState> call,
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
