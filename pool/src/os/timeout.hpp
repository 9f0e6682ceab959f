// os/timeout.hpp: what is left of a millisecond timeout, for calls retried after EINTR.
//
//   TimeoutBudget budget(timeout_ms);                       // -1: wait forever, 0: do not wait
//   retry_on_eintr([&] { return ::poll(fds, n, budget.remaining_ms()); });
//
// Reads CLOCK_MONOTONIC (async-signal-safe). Thread safety: a plain value.
#pragma once

#include <time.h>

#include <cstdint>

namespace pipepool::os {

class TimeoutBudget {
 public:
  explicit TimeoutBudget(int timeout_ms) noexcept
      : timeout_ms_(timeout_ms), start_ns_(timeout_ms > 0 ? now_ns() : 0) {}

  // -1 for an infinite timeout, else the milliseconds left (>= 0), rounded up so that a
  // retried wait never ends before its timeout.
  int remaining_ms() const noexcept {
    if (timeout_ms_ <= 0) return timeout_ms_ < 0 ? -1 : 0;
    int64_t left_ns = start_ns_ + int64_t{timeout_ms_} * 1'000'000 - now_ns();
    return left_ns > 0 ? static_cast<int>((left_ns + 999'999) / 1'000'000) : 0;
  }

 private:
  static int64_t now_ns() noexcept {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
  }

  int timeout_ms_;
  int64_t start_ns_;
};

}  // namespace pipepool::os
