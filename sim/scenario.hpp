// A simulation scenario: the pool's configuration and the user's calls, and the small text format
// they are written in. No system calls.
//
// Example (the text format; `#` starts a comment, one setting or call per line):
//
//   strategy unbatched          # epoll | batched | unbatched | zerocopy
//   scheduler shortest-backlog  # demand | shortest-backlog | round-robin
//   workers 1
//   pipe-pages 16               # capacity of every pipe, in page slots (a power of two)
//   # transport socketpair      # pipes (default) | socketpair: one AF_UNIX socketpair per worker
//   # sndbuf 212992             # socketpair: sk_sndbuf of each end (what getsockopt reads)
//   # framing python            # pipepool (default) | python: 4-byte length, then the message
//   # task-overhead 100         # python: bytes of the library's own pickle around a task payload
//   # result-overhead 60        # python: ... around a result payload
//   apply_async 70000 70000 0   # task payload bytes, result payload bytes, duration in ms
//   apply_async 70000 70000 0
//   # map N IN OUT DUR [CHUNKSIZE], map_async ..., apply IN OUT DUR, wait, terminate, join
//
// Sizes take K (1024) and M (1048576) suffixes; durations are milliseconds, with up to three
// decimals (virtual time counts microseconds). A final `join` is implied: the user closes the pool
// and waits for it, as `pool.close(); pool.join()` does.
//
// Calls and tasks. Each call is one `ParentEngine::submit` of the tasks it makes, numbered from 1
// in submission order. `map` and `map_async` make ceil(N / CHUNKSIZE) tasks; a chunk of k items is
// one task of k * IN payload bytes, k * OUT result bytes and k * DUR of run time. `apply` and `map`
// block the user until their tasks complete; `wait` blocks it until every task so far completed.
//
// Task payloads. The simulated worker must learn a task's duration and result size from the task
// frame alone, as a real worker learns its function and arguments. The payload is two LEB128
// numbers (duration in microseconds, result bytes) padded with 'p' to IN bytes; when IN is smaller
// than those few bytes, the payload is the bytes themselves (reports say so).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pipepool/options.hpp"
#include "pipepool/scheduler.hpp"
#include "pipepool/strategy.hpp"
#include "protocol/frame.hpp"

namespace pipepool::sim {

// One task as the scenario describes it.
struct TaskSpec {
  uint64_t input_bytes = 0;   // task frame payload bytes (at least the encoded numbers)
  uint64_t output_bytes = 0;  // result frame payload bytes
  uint64_t duration_us = 0;   // virtual time the worker spends running it
};

struct Call {
  enum class Kind { ApplyAsync, Apply, MapAsync, Map, Wait, Terminate, Join };
  Kind kind = Kind::ApplyAsync;
  uint64_t items = 1;      // map / map_async: number of items
  uint64_t chunksize = 1;  // map / map_async: items per task
  TaskSpec item;           // one item
};

// The defaults are the real pool's (pipepool::Options{}), but for the pipes: 64 KiB, the kernel's
// default (Options{.enlarge_pipes = false}), where the interesting thresholds are.
struct Scenario {
  Strategy strategy = Options{}.strategy;
  SchedulerKind scheduler = Options{}.scheduler;
  uint32_t demand_max_in_flight = Options{}.demand_max_in_flight;  // Demand only
  uint64_t demand_queue_budget_us =
      static_cast<uint64_t>(Options{}.demand_queue_budget.count());  // Demand only
  // A user's design, as Options::custom_scheduler / custom_strategy give it to the real pool.
  // Each simulated pool runs a fresh copy of the scheduler (Scheduler::clone()) when it offers one.
  std::shared_ptr<Scheduler> custom_scheduler{};
  std::shared_ptr<const IoStrategy> custom_strategy{};
  uint32_t workers = 1;              // 1 .. 62
  uint32_t pipe_pages = 16;          // slots of every task and result pipe (a power of two)
  uint32_t page_size = 4096;         // bytes of one slot
  uint64_t task_timeout_us = 0;      // 0: no task timeouts (no Started frames, no timers)
  uint32_t max_tasks_per_child = 0;  // 0: unlimited
  uint32_t max_retries = 0;
  uint64_t engine_seed = Options{}.seed;  // the parent engine's seed (scheduler tie-breaks)
  // The channel (Options::transport, framing and overheads). With Transport::SocketPair every
  // worker has one socketpair of sndbuf_bytes per end (the value getsockopt(SO_SNDBUF) reads, as
  // sim::SocketConfig::sndbuf_bytes; the kernel's default here is 212,992); pipe_pages is unused.
  Transport transport = Options{}.transport;
  Framing framing = Options{}.framing;
  uint32_t python_task_overhead_bytes = 0;
  uint32_t python_result_overhead_bytes = 0;
  uint32_t sndbuf_bytes = 212992;
  std::vector<Call> calls;
};

// The Options of the real pool this scenario simulates (the simulator derives the engines' settings
// from them with protocol::engine_setup(), as the pool does). The task timeout keeps only whole
// milliseconds there; the simulator uses task_timeout_us itself.
Options to_options(const Scenario& scenario);
// The scenario of a real pool built with `options` (no calls yet): strategy, scheduler (built-in
// or custom), Demand settings, seed, maxtasksperchild, retries, task timeout, and the pipes'
// capacity (pipe_capacity_bytes; else 64 KiB with enlarge_pipes = false, else 1 MiB, Linux's
// default pipe-max-size). Workers: options.processes, or `default_workers` for -1 (the simulator
// cannot know the CPUs of the machine the pool will run on). Throws std::invalid_argument for
// Pool(0) (nothing to simulate: no pipes).
Scenario scenario_from_options(const Options& options, uint32_t default_workers = 2);

// ---- task payloads -------------------------------------------------------------------------

// The payload of a task frame for `spec` (at least spec.input_bytes long).
std::string encode_task_payload(const TaskSpec& spec);
// Reads back duration and result size; `out.input_bytes` becomes the payload's size. False if the
// payload does not start with two LEB128 numbers.
bool decode_task_payload(std::string_view payload, TaskSpec& out);

// ---- the user's script ---------------------------------------------------------------------

// What the simulated user does, call by call, with every task numbered and encoded once.
struct Script {
  struct Op {
    enum class Kind { Submit, WaitTasks, Terminate, Join };
    Kind kind = Kind::Submit;
    protocol::TaskId first_task = 0;  // Submit, WaitTasks: tasks [first_task, end_task)
    protocol::TaskId end_task = 0;
    size_t call = 0;  // index in Scenario::calls (Join added at the end: calls.size())
  };
  Scenario scenario;
  std::vector<Op> ops;                // ends with Join
  std::vector<TaskSpec> tasks;        // tasks[id - 1]
  std::vector<std::string> payloads;  // payloads[id - 1]
  uint64_t total_bytes = 0;           // every task and result frame, headers included

  const TaskSpec& task(protocol::TaskId id) const { return tasks[id - 1]; }
  size_t task_count() const { return tasks.size(); }
};

// Expands the calls. Throws std::invalid_argument when the scenario breaks a limit (workers in
// 1..62, pipe_pages and page_size powers of two, chunksize >= 1, at most 1,000,000 tasks).
std::shared_ptr<const Script> make_script(const Scenario& scenario);

// A step bound that no correct run of the scenario comes near (used when none is given).
uint64_t default_max_steps(const Script& script);

// ---- text ----------------------------------------------------------------------------------

// Parses the text format above into `out` (settings not given keep their values in `out`).
// On failure returns false and sets `error` to "line 3: ...".
bool parse_scenario(std::string_view text, Scenario& out, std::string& error);
// One call line ("apply_async 70000 70000 0", "map 8 1K 1K 0.5 2"); false with `error` if invalid.
bool parse_call(std::string_view line, Call& out, std::string& error);
// "IN:OUT:DURATION_MS", as `pipepool sim run --task` takes it: one apply_async.
bool parse_task_option(std::string_view text, Call& out, std::string& error);
// The scenario in the text format (parse_scenario reads it back to an equal scenario).
std::string to_text(const Scenario& scenario);
std::string describe_call(const Call& call);

bool parse_strategy(std::string_view text, Strategy& out);
// "pipes" | "socketpair", and back.
bool parse_transport(std::string_view text, Transport& out);
const char* to_string(Transport transport);
// "pipepool" | "python", and back.
bool parse_framing(std::string_view text, Framing& out);
const char* to_string(Framing framing);
bool parse_scheduler(std::string_view text, SchedulerKind& out);
// "65536", "64K", "1M".
bool parse_size(std::string_view text, uint64_t& out);
// Milliseconds with up to three decimals ("0", "2.5") into microseconds.
bool parse_duration_ms(std::string_view text, uint64_t& out_us);
// Microseconds as milliseconds ("2.5").
std::string format_ms(uint64_t us);

}  // namespace pipepool::sim
