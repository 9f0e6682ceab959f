#include "pipepool/detail/call_state.hpp"

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
  bool last, wake;
  {
    std::lock_guard lock(mutex_);
    if (outcomes_[index]) return;  // completed already (cannot happen; be safe)
    outcomes_[index] = std::move(outcome);
    completion_order_.push_back(index);
    last = --remaining_ == 0;
    // Wake only a waiter this completion can satisfy: a map of 100,000 tasks wakes its caller
    // once, not 100,000 times.
    wake = last || waiting_any_ > 0 || waiting_index_ == index;
  }
  if (last) {
    finish();  // wakes the waiters of the whole call once its callbacks have run
  } else if (wake) {
    cv_.notify_all();
  }
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

Outcome CallState::take(size_t index) {
  check_not_in_callback("imap's iteration");
  std::unique_lock lock(mutex_);
  waiting_index_ = index;
  cv_.wait(lock, [&] { return outcomes_[index].has_value(); });
  waiting_index_ = kNobody;
  Outcome outcome = std::move(*outcomes_[index]);
  outcomes_[index]->payload.clear();
  outcomes_[index]->payload.shrink_to_fit();
  return outcome;
}

Outcome CallState::take_next() {
  check_not_in_callback("imap_unordered's iteration");
  std::unique_lock lock(mutex_);
  ++waiting_any_;
  cv_.wait(lock, [&] { return !completion_order_.empty(); });
  --waiting_any_;
  size_t index = completion_order_.front();
  completion_order_.pop_front();
  Outcome outcome = std::move(*outcomes_[index]);
  outcomes_[index]->payload.clear();
  outcomes_[index]->payload.shrink_to_fit();
  return outcome;
}

}  // namespace pipepool::detail
