// The real driver: runs the parent engine on an I/O thread over real pipes, with workers forked by
// a fork server. Also the inline mode of Pool(0).
//
// Threads: user threads only touch the submission queue and flags (mutex_) and, in terminate(),
// the workers' pidfds (spawn_mutex_). The engine, the slots and the epoll set belong to the I/O
// thread alone.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
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

uint64_t token(WorkerId w, bool write) {
  return (uint64_t{w} << 1) | (write ? 1 : 0);
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

[[noreturn]] void throw_os(const std::string& what, int error) {
  throw std::system_error(error, std::generic_category(), "pipepool: " + what);
}

}  // namespace

class Core {
 public:
  explicit Core(Options options);
  ~Core();

  void submit(std::vector<std::string> payloads, std::shared_ptr<CallState> call, size_t first,
              bool continuation);
  void close();
  void join();
  void terminate();

  int processes() const { return processes_; }
  uint64_t pipe_capacity_bytes() const { return pipe_capacity_bytes_; }
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
  };
  struct Slot {
    driver::WorkerHandle handle;
    bool read_registered = false;
    bool write_registered = false;
    bool needs_spawn = false;
    Clock::time_point spawn_after{};
  };

  void run_inline(std::vector<std::string>& payloads, CallState& call, size_t first);
  void io_loop();
  bool io_iteration();
  void take_submissions();
  void apply_commands();
  void spawn(WorkerId w);
  void release_slot(WorkerId w);
  void deliver_completions();
  void update_interest();
  void set_interest(WorkerId w, bool write, bool want);
  void do_blocking_write(WorkerId w);
  void do_nonblocking_write(WorkerId w);
  void do_read(WorkerId w);
  void handle_events_fd();
  int next_timeout_ms() const;
  void fire_timers();
  void kill_all_workers();
  void stop_io_thread();

  Options options_;
  int processes_ = 0;
  const IoStrategy* strategy_ = nullptr;
  std::shared_ptr<Scheduler> scheduler_;
  driver::WorkerContext worker_context_;
  uint64_t pipe_capacity_bytes_ = 0;

  // Shared with user threads.
  mutable std::mutex mutex_;
  std::vector<Submission> queue_;
  bool closed_ = false;
  bool join_requested_ = false;
  bool terminate_requested_ = false;
  bool stopped_ = false;  // the I/O thread has ended
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
  std::multimap<Clock::time_point, TaskId> timers_;
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
  processes_ = options_.processes == -1 ? os::available_cpus() : options_.processes;
  strategy_ = options_.custom_strategy ? options_.custom_strategy.get()
                                       : &builtin_strategy(options_.strategy);
  scheduler_ = options_.custom_scheduler ? options_.custom_scheduler
                                         : std::shared_ptr<Scheduler>(make_scheduler(
                                               options_.scheduler, options_.demand_max_in_flight));
  if (processes_ == 0) return;  // inline

  worker_context_.mode = strategy_->child_mode();
  worker_context_.max_frame_bytes = options_.max_frame_bytes;
  worker_context_.max_tasks = options_.maxtasksperchild;
  worker_context_.send_started = options_.task_timeout.count() > 0;
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
                  bool continuation) {
  {
    std::lock_guard lock(mutex_);
    if (terminate_requested_ || stopped_ || join_requested_ || (closed_ && !continuation)) {
      throw PoolClosed(terminate_requested_ ? "pipepool: the pool was terminated"
                                            : "pipepool: the pool is closed");
    }
    stats_.tasks_submitted += payloads.size();
    if (processes_ > 0) {
      queue_.push_back({std::move(payloads), std::move(call), first});
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
  take_submissions();
  if (join_now && !engine_->shutting_down()) engine_->begin_shutdown();
  apply_commands();
  deliver_completions();
  if (engine_->finished()) return false;

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
  for (int i = 0; i < n.value(); ++i) {
    const uint64_t data = events[i].data.u64;
    if (data == kWakeToken) {
      (void)os::drain_eventfd(wake_.get());
    } else if (data == kEventsToken) {
      handle_events_fd();
    } else {
      const WorkerId w = static_cast<WorkerId>(data >> 1);
      if (data & 1) {
        do_nonblocking_write(w);
      } else {
        do_read(w);
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
  {
    std::lock_guard lock(mutex_);
    batch.swap(queue_);
  }
  for (Submission& submission : batch) {
    std::vector<protocol::TaskSubmission> tasks;
    tasks.reserve(submission.payloads.size());
    for (size_t i = 0; i < submission.payloads.size(); ++i) {
      const TaskId id = next_task_++;
      calls_.emplace(id, std::make_pair(submission.call, submission.first + i));
      tasks.push_back({id, std::move(submission.payloads[i])});
    }
    engine_->submit(std::move(tasks));
  }
}

void Core::apply_commands() {
  for (;;) {
    std::vector<Command> commands = engine_->take_commands();
    if (commands.empty()) break;
    for (const Command& command : commands) {
      switch (command.kind) {
        case Command::Kind::StartWorker:
          slots_[command.worker].needs_spawn = true;
          slots_[command.worker].spawn_after = Clock::time_point{};
          break;
        case Command::Kind::KillWorker: {
          Slot& slot = slots_[command.worker];
          if (slot.handle.pidfd) (void)os::pidfd_send_signal(slot.handle.pidfd.get(), SIGKILL);
          set_interest(command.worker, false, false);
          set_interest(command.worker, true, false);
          break;
        }
        case Command::Kind::ArmTimer:
          timers_.emplace(Clock::now() + options_.task_timeout, command.task);
          break;
      }
    }
    const auto now = Clock::now();
    for (WorkerId w = 0; w < slots_.size(); ++w) {
      if (slots_[w].needs_spawn && slots_[w].spawn_after <= now) spawn(w);
    }
  }
}

void Core::spawn(WorkerId w) {
  Slot& slot = slots_[w];
  release_slot(w);
  std::lock_guard lock(spawn_mutex_);
  if (!spawning_allowed_) return;
  auto handle = fork_server_->spawn();
  if (!handle.ok()) {
    slot.spawn_after = Clock::now() + kSpawnRetryDelay;  // fork failed (EAGAIN...): try again
    return;
  }
  slot.needs_spawn = false;
  slot.handle = std::move(handle).value();
  pipe_capacity_bytes_ = slot.handle.pipe_capacity_bytes;
  (void)os::set_nonblocking(slot.handle.result_read.get(), true);
  (void)os::set_nonblocking(slot.handle.task_write.get(), !strategy_->parent_blocking_writes());
  pid_slot_[slot.handle.pid] = w;
  engine_->worker_started(w);
}

void Core::release_slot(WorkerId w) {
  Slot& slot = slots_[w];
  set_interest(w, false, false);
  set_interest(w, true, false);
  slot.handle.task_write.reset();
  slot.handle.result_read.reset();
  slot.handle.pidfd.reset();
}

void Core::deliver_completions() {
  for (Completion& completion : engine_->take_completions()) {
    auto it = calls_.find(completion.task);
    if (it == calls_.end()) continue;
    auto [call, index] = std::move(it->second);
    calls_.erase(it);
    Outcome outcome;
    outcome.kind = to_outcome_kind(completion.kind);
    outcome.payload = std::move(completion.payload);
    outcome.message = std::move(completion.message);
    outcome.signal = completion.signal;
    outcome.exit_code = completion.exit_code;
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
    os::IoResult r = os::read_some(slots_[w].handle.result_read.get(), buffer);
    if (r.status == os::IoResult::Ok) {
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

void Core::handle_events_fd() {
  while (auto event = fork_server_->read_event()) {
    auto it = pid_slot_.find(event->pid);
    if (it == pid_slot_.end()) continue;
    const WorkerId w = it->second;
    pid_slot_.erase(it);
    protocol::ExitInfo info{event->status.signal, event->status.signal ? -1 : event->status.code,
                            event->status.describe()};
    // The engine tracks one process per slot; an exit of an older process of the slot has been
    // accounted for already.
    if (slots_[w].handle.pid == event->pid) engine_->worker_exited(w, info);
    apply_commands();
  }
}

int Core::next_timeout_ms() const {
  Clock::time_point next = Clock::time_point::max();
  if (!timers_.empty()) next = timers_.begin()->first;
  for (const Slot& slot : slots_) {
    if (slot.needs_spawn) next = std::min(next, slot.spawn_after);
  }
  if (next == Clock::time_point::max()) return -1;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void Core::fire_timers() {
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const TaskId task = timers_.begin()->second;
    timers_.erase(timers_.begin());
    engine_->timer_fired(task);
  }
}

// ---- the free functions the templates call -----------------------------------------------------

std::shared_ptr<Core> make_core(Options options) {
  return std::make_shared<Core>(std::move(options));
}

void submit(Core& core, std::vector<std::string> payloads, std::shared_ptr<CallState> call,
            size_t first_index, bool continuation) {
  core.submit(std::move(payloads), std::move(call), first_index, continuation);
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
