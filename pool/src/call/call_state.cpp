#include "pipepool/detail/call_state.hpp"

#include <algorithm>
#include <string>

#include "pipepool/errors.hpp"

namespace pipepool::detail {

void check_not_in_callback(const char* what) {
  if (callback_depth == 0) return;
  throw UsageError(std::string("pipepool: ") + what +
                   " called from a callback: callbacks run on the pool's I/O thread, the thread "
                   "that delivers results, so waiting there for a result (or for the pool) would "
                   "hang the pool forever; submit with apply_async/map_async and handle the value "
                   "in a callback, or wait from another thread");
}

void CallState::finish() {
  on_done();
  {
    std::lock_guard lock(mutex_);
    done_ = true;
  }
  cv_.notify_all();
}

void CallState::complete(size_t index, Outcome outcome) {
  bool last;
  {
    std::lock_guard lock(mutex_);
    if (outcomes_[index]) return;  // completed already (cannot happen; be safe)
    outcomes_[index] = std::move(outcome);
    last = --remaining_ == 0;
  }
  // Only the last completion wakes anybody: a map of 100,000 tasks wakes its caller once.
  if (last) finish();  // wakes the waiters of the whole call once its callbacks have run
}

bool CallState::ready() const {
  std::lock_guard lock(mutex_);
  return done_;
}

void CallState::wait() const {
  check_not_in_callback("get()/wait() (or apply, map, starmap)");
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
}

bool CallState::wait_until(std::chrono::steady_clock::time_point deadline) const {
  check_not_in_callback("get(timeout)/wait(timeout)");
  std::unique_lock lock(mutex_);
  return cv_.wait_until(lock, deadline, [&] { return done_; });
}

void StreamState::complete(size_t index, Outcome outcome) {
  bool wake;
  {
    std::lock_guard lock(stream_mutex_);
    if (!arrived_.emplace(index, std::move(outcome)).second) return;  // cannot happen; be safe
    completion_order_.push_back(index);
    wake = waiting_any_ || waiting_index_ == index;
  }
  if (wake) stream_cv_.notify_all();
}

Outcome StreamState::take(size_t index) {
  check_not_in_callback("imap's iteration");
  std::unique_lock lock(stream_mutex_);
  waiting_index_ = index;
  stream_cv_.wait(lock, [&] { return arrived_.contains(index); });
  waiting_index_ = kNobody;
  auto node = arrived_.extract(index);
  std::erase(completion_order_, index);  // a handful of entries: the chunks in flight
  return std::move(node.mapped());
}

Outcome StreamState::take_next(size_t& index) {
  check_not_in_callback("imap_unordered's iteration");
  std::unique_lock lock(stream_mutex_);
  waiting_any_ = true;
  stream_cv_.wait(lock, [&] { return !completion_order_.empty(); });
  waiting_any_ = false;
  index = completion_order_.front();
  completion_order_.pop_front();
  auto node = arrived_.extract(index);
  return std::move(node.mapped());
}

}  // namespace pipepool::detail
