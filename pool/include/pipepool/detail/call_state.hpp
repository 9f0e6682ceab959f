// pipepool/detail/call_state.hpp: the shared state of one API call (internal; used by templates).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pipepool/detail/outcome.hpp"

namespace pipepool::detail {

// Which items of the call's input a task held: [first, first + count). count 0: not a map (apply).
struct InputItems {
  size_t first = 0;
  size_t count = 0;
};

// The exception a failed outcome stands for (RemoteError combined with the original type, or
// WorkerLost, ProtocolError, TimeoutError). With `items`, the error names the input's index: a
// RemoteError's input_index() is the failing item's, and a message that named the engine's task
// number names the task's input items instead.
std::exception_ptr to_exception(const Outcome& outcome, InputItems items = {});

// How many pool callbacks this thread is running (callbacks run on a pool's I/O thread, or in the
// submitting call of Pool(0)). A call that waits for a result (get, wait, apply, map, imap's
// iteration, join, terminate) made from a callback throws UsageError instead of hanging the pool.
inline thread_local int callback_depth = 0;

// Throws UsageError naming `what` when called from inside a callback.
void check_not_in_callback(const char* what);

// Marks the scope of a running callback on this thread.
class CallbackScope {
 public:
  CallbackScope() { ++callback_depth; }
  ~CallbackScope() { --callback_depth; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};

// Completion of a call's tasks, shared by the pool's I/O thread (which completes tasks) and the
// user's threads (which wait). Thread-safe.
class CallState {
 public:
  explicit CallState(size_t tasks) : outcomes_(tasks), remaining_(tasks) {}
  virtual ~CallState() = default;
  CallState(const CallState&) = delete;
  CallState& operator=(const CallState&) = delete;

  // Records task `index`'s outcome; the last one runs on_done() (the callbacks) on this thread,
  // and only then makes the call ready and wakes its waiters: whoever sees ready() also sees
  // every effect of its callback, as in Python.
  virtual void complete(size_t index, Outcome outcome);

  // A call with no task (map over an empty input) is ready at once: runs on_done().
  void finish_empty() {
    if (outcomes_.empty()) finish();
  }

  size_t tasks() const { return outcomes_.size(); }
  bool ready() const;
  void wait() const;
  // True if ready by `deadline`.
  bool wait_until(std::chrono::steady_clock::time_point deadline) const;

  // Valid once ready().
  const std::vector<std::optional<Outcome>>& outcomes() const { return outcomes_; }

 protected:
  virtual void on_done() {}

 private:
  void finish();

  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<std::optional<Outcome>> outcomes_;
  size_t remaining_;
  bool done_ = false;  // every task completed and on_done() returned
};

// The state of an imap / imap_unordered: an open-ended sequence of tasks, submitted as iteration
// goes on, of which it holds only the outcomes that arrived and were not taken yet (so its memory
// follows the chunks in flight, not the input's length). Thread-safe; one consumer.
class StreamState final : public CallState {
 public:
  StreamState() : CallState(0) {}

  void complete(size_t index, Outcome outcome) override;

  // imap: waits for task `index` and moves its outcome out.
  Outcome take(size_t index);
  // imap_unordered: waits for the next task to complete (in completion order) and moves it out;
  // `index` becomes its index.
  Outcome take_next(size_t& index);

 private:
  std::mutex stream_mutex_;
  std::condition_variable stream_cv_;
  std::unordered_map<size_t, Outcome> arrived_;
  std::deque<size_t> completion_order_;
  static constexpr size_t kNobody = static_cast<size_t>(-1);
  size_t waiting_index_ = kNobody;  // take(index) is waiting for this task
  bool waiting_any_ = false;        // take_next() is waiting
};

}  // namespace pipepool::detail
