// Test support for sim/explore_test.cpp and fuzz/check_test.cpp: the scheduler of scheduler.hpp's
// example, as a user would first write it and hand to the real pool. Tests only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "pipepool/scheduler.hpp"

namespace pipepool::sim::testing {

// Fills the lowest-numbered worker first, up to 4 queued tasks. Keeps no state between picks, so
// it needs no clone(). With Batched, two back-to-back large apply_async to one worker deadlock.
class LowestIndexFirst : public Scheduler {
 public:
  std::optional<uint32_t> pick(std::span<const WorkerLoad> workers, Random&) override {
    for (const auto& w : workers) {
      if (w.outstanding < 4) return w.worker;
    }
    return std::nullopt;
  }
  std::string_view name() const override { return "lowest-index-first"; }
};

}  // namespace pipepool::sim::testing
