// The simulated world's processes and pipes, shared by world.cpp, sim_parent.cpp, sim_worker.cpp
// and deadlock.cpp (the definitions of World's members, split by process). Not a public header.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "channel.hpp"
#include "pipe_model.hpp"
#include "protocol/child_engine.hpp"
#include "protocol/fingerprint.hpp"
#include "protocol/parent_loop.hpp"
#include "world.hpp"

namespace pipepool::sim {

// The trace hash's and the history fingerprint's step: the protocol's fingerprint mixer.
using protocol::fingerprint_mix;
inline uint64_t mix(uint64_t h, uint64_t v) {
  return fingerprint_mix(h, v);
}

// What a step did, for the trace hash and the processes' histories.
enum StepKind : uint64_t {
  kSubmit = 1,
  kTerminate,
  kJoin,
  kInbox,
  kParentWrite,
  kParentContinue,
  kEpollWait,
  kParentRead,
  kParentNbWrite,
  kReap,
  kDeliver,
  kWorkerRead,
  kWorkerRun,
  kWorkerWrite,
  kWorkerContinue,
  kWorkerExit,
  kForked,
  kKilled,
  kTimeAdvance,
  kRefused,
};

inline size_t total_size(std::span<const std::span<const std::byte>> segments) {
  size_t total = 0;
  for (const auto& s : segments) total += s.size();
  return total;
}

// Whether a blocking write of `total` bytes would move any byte now, or return at once (EPIPE):
// a free slot, no reader, or room behind the last buffer for the merge step (anon_pipe_write).
bool write_can_start(const PipeModel& pipe, size_t total);

// "Task frame of task 2 (32 + 65537 = 65569 bytes)" when the segments start at a frame's header;
// with Python's framing (`python`), "Python message: Task frame of task 2 (4-byte length +
// 65600-byte body = 65604 bytes)", or the length or the body alone when they are written apart.
std::string describe_frame(std::span<const std::span<const std::byte>> segments,
                           bool python = false);

struct World::Worker {
  enum class Phase : uint8_t { None, Alive, Zombie };
  Phase phase = Phase::None;
  std::optional<protocol::ChildEngine> engine;
  protocol::ChildEngine::Action action;  // what engine->next() asked for
  uint64_t run_output_bytes = 0;
  uint64_t wake_us = 0;   // Run: when the task ends
  bool in_write = false;  // asleep inside a writev(2)
  size_t write_done = 0;
  size_t write_total = 0;
  protocol::ExitInfo exit;
  uint64_t history = 0;
  // World::fingerprint_worker's hash of this worker (engine, action, channel), kept until
  // own_worker() hands it out for a change: every change goes through it.
  mutable std::optional<uint64_t> fingerprint;
  uint32_t incarnation = 0;
  // Two pipes or one socketpair (Scenario::transport), new with each process of the slot.
  std::optional<Channel> channel;
};

// The parent: the pool's loop and the one action of it that is a step (Write, Read, Wait), or
// Done.
struct World::Parent {
  std::optional<protocol::ParentLoop> loop;
  protocol::ParentLoop::Action action;
  std::vector<std::span<const std::byte>> segments;  // a copy of action.write
  bool in_write = false;                             // asleep inside a blocking writev(2)
  size_t write_done = 0;
  std::vector<protocol::ReadyEvent> events;
  uint64_t history = 0;
  // World::fingerprint_parent's hash of the parent, kept until own_parent() hands it out.
  mutable std::optional<uint64_t> fingerprint;
};

struct World::User {
  size_t op = 0;
  protocol::TaskId wait_cursor = 0;  // WaitTasks: tasks below it are known complete
  bool joined = false;
  uint64_t history = 0;
};

}  // namespace pipepool::sim
