#include "pipepool/detail/call_state.hpp"

namespace pipepool::detail {

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
  if (wake) cv_.notify_all();
  if (last) on_done();
}

bool CallState::ready() const {
  std::lock_guard lock(mutex_);
  return remaining_ == 0;
}

void CallState::wait() const {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return remaining_ == 0; });
}

bool CallState::wait_until(std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_until(lock, deadline, [&] { return remaining_ == 0; });
}

Outcome CallState::take(size_t index) {
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
