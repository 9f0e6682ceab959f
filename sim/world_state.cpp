// Copies and fingerprints of a World: what lets the explorer branch from a saved world instead of
// replaying a prefix, and recognise a state reached by another schedule. Each part of the world
// copies and hashes itself in one function here (copy_*, fingerprint_*); a new member joins its
// part's pair.
#include <algorithm>

#include "protocol/fingerprint.hpp"
#include "world.hpp"
#include "world_internal.hpp"

namespace pipepool::sim {

using protocol::ChildEngine;
using protocol::fingerprint_mix;
using protocol::fingerprint_text;
using Op = protocol::ParentLoop::Op;

namespace {

uint64_t fingerprint_exit(uint64_t h, const protocol::ExitInfo& exit) {
  h = fingerprint_mix(h, (static_cast<uint64_t>(static_cast<uint32_t>(exit.signal)) << 32) ^
                             static_cast<uint32_t>(exit.exit_code));
  return fingerprint_text(h, exit.description);
}

}  // namespace

// ---- copies ------------------------------------------------------------------------------------

bool World::copyable() const {
  // A scheduler shared between worlds (a user's that cannot be cloned) keeps no state by its
  // contract (Scheduler::clone()); one of the world's own must be able to copy its state.
  return scheduler_ == script_->scenario.custom_scheduler || scheduler_->snapshot() != nullptr;
}

World::World(const World& other)
    : script_(other.script_),
      options_(other.options_),
      workers_count_(other.workers_count_),
      pipe_config_(other.pipe_config_),
      socket_config_(other.socket_config_),
      python_framing_(other.python_framing_),
      setup_(other.setup_),
      scheduler_(other.scheduler_),  // shared with the parent, which is shared too (own_parent)
      strategy_(other.strategy_),
      parent_(other.parent_),
      workers_(other.workers_),
      queue_(other.queue_),
      completions_(other.completions_),
      completed_count_(other.completed_count_),
      terminate_requested_(other.terminate_requested_),
      may_kill_(other.may_kill_),
      now_us_(other.now_us_),
      status_(other.status_),
      schedule_(other.schedule_),
      trace_hash_(other.trace_hash_),
      closed_pipe_ops_(other.closed_pipe_ops_),
      failure_(other.failure_),
      trace_(other.trace_) {
  // The copy takes no copy of the parent's scheduler until its parent changes, but one that
  // cannot be copied is refused now, as before, not in the middle of a later step.
  if (!copyable()) {
    throw std::logic_error("pipepool::sim::World: the scheduler '" +
                           std::string(other.scheduler_->name()) +
                           "' cannot copy its state (Scheduler::snapshot())");
  }
  schedule_.reserve(std::max<size_t>(1024, other.schedule_.capacity()));
  if (other.deadlock_) deadlock_ = std::make_unique<DeadlockReport>(*other.deadlock_);
  user_ = std::make_unique<User>(*other.user_);
}

// Copy on write. A world's parent (with the scheduler its loop refers to) and each of its workers
// may be shared with copies of the world (the explorer's snapshots and the worlds begun from
// them), all in the same state; the first world to change one takes a copy of its own and leaves
// the shared one to the others. Sharing is sound because a shared part is never changed (it is
// held as const) and a part's copy behaves exactly as the original (the copy constructors').
World::Parent& World::own_parent() {
  if (parent_.use_count() > 1) {
    if (scheduler_ != script_->scenario.custom_scheduler) {
      std::unique_ptr<Scheduler> copy = scheduler_->snapshot();
      if (!copy) {
        throw std::logic_error("pipepool::sim::World: the scheduler '" +
                               std::string(scheduler_->name()) +
                               "' cannot copy its state (Scheduler::snapshot())");
      }
      scheduler_ = std::move(copy);
    }
    parent_ = copy_parent(*parent_);
  }
  // Made from a non-const Parent (make_shared<Parent>, copy_parent) and held by this world alone.
  // Handed out to be changed: its fingerprint is computed again when next asked for.
  Parent& p = const_cast<Parent&>(*parent_);
  p.fingerprint.reset();
  return p;
}

World::Worker& World::own_worker(uint32_t w) {
  if (workers_[w].use_count() > 1) workers_[w] = copy_worker(*workers_[w]);
  Worker& k = const_cast<Worker&>(*workers_[w]);
  k.fingerprint.reset();
  return k;
}

std::shared_ptr<World::Parent> World::copy_parent(const Parent& from) {
  std::shared_ptr<Parent> copy = std::make_shared<Parent>();
  Parent& p = *copy;
  p.loop.emplace(*from.loop, *scheduler_);
  p.action = p.loop->current(from.action);
  p.segments.reserve(128);
  if (p.action.op == Op::Write) {
    p.segments.assign(p.action.write.begin(), p.action.write.end());
    p.action.write = p.segments;
  }
  p.in_write = from.in_write;
  p.write_done = from.write_done;
  p.events.reserve(3 * workers_count_ + 4);
  p.history = from.history;
  return copy;
}

std::shared_ptr<World::Worker> World::copy_worker(const Worker& from) {
  // Pipes, engine and counters copy as they are; the action holds spans into the engine, so it
  // is asked for again (ChildEngine::next() without a report returns the same action).
  std::shared_ptr<Worker> copy = std::make_shared<Worker>(from);
  if (copy->engine) copy->action = copy->engine->next();
  return copy;
}

// ---- fingerprints ------------------------------------------------------------------------------

uint64_t World::fingerprint() const {
  const std::optional<uint64_t> scheduler = scheduler_->state_fingerprint();
  if (!scheduler) return history_fingerprint();
  uint64_t h = fingerprint_mix(0x57524c44, now_us_);
  h = fingerprint_mix(h, *scheduler);
  h = fingerprint_user(h);
  h = fingerprint_parent(h);
  for (const auto& k : workers_) h = fingerprint_worker(h, *k);
  return h;
}

uint64_t World::fingerprint_user(uint64_t h) const {
  const User& u = *user_;
  h = fingerprint_mix(h, (uint64_t{u.joined} << 63) ^ (uint64_t{terminate_requested_} << 62) ^
                             (static_cast<uint64_t>(status_) << 56) ^ (uint64_t{u.op} << 24) ^
                             u.wait_cursor);
  h = fingerprint_mix(h, queue_.size());
  for (const QueueItem& item : queue_) {
    h = fingerprint_mix(h, (static_cast<uint64_t>(item.kind) << 56) ^ item.op);
  }
  h = fingerprint_mix(h, completed_count_);
  return protocol::fingerprint_bytes(h, std::as_bytes(std::span(completions_)));
}

// The parent's and each worker's part of the fingerprint is hashed from a fixed seed and kept
// with the part (Parent::fingerprint, Worker::fingerprint) until own_parent() / own_worker()
// hands the part out to be changed, which every change does; a part shared by copies of the world
// is in one state, so its hash serves them all.
uint64_t World::fingerprint_parent(uint64_t h) const {
  const Parent& p = *parent_;
  if (!p.fingerprint) p.fingerprint = hash_parent(p);
  return fingerprint_mix(h, *p.fingerprint);
}

uint64_t World::hash_parent(const Parent& p) const {
  uint64_t h = p.loop->fingerprint(0x50415245);
  const protocol::ParentLoop::Action& a = p.action;
  h = fingerprint_mix(h, (static_cast<uint64_t>(a.op) << 56) ^ (uint64_t{a.blocking} << 55) ^
                             (uint64_t{a.after_exit} << 54) ^ (uint64_t{p.in_write} << 53) ^
                             (uint64_t{a.worker} << 32) ^ p.write_done);
  h = fingerprint_mix(h, a.write_bytes);
  h = fingerprint_mix(h, a.read_into.size());
  return fingerprint_mix(h, a.deadline_ns);
}

uint64_t World::fingerprint_worker(uint64_t h, const Worker& k) const {
  if (!k.fingerprint) k.fingerprint = hash_worker(k);
  return fingerprint_mix(h, *k.fingerprint);
}

uint64_t World::hash_worker(const Worker& k) const {
  uint64_t h = 0x574f524b;
  h = fingerprint_mix(h, (static_cast<uint64_t>(k.phase) << 56) ^ (uint64_t{k.in_write} << 55) ^
                             (uint64_t{k.incarnation} << 32) ^ static_cast<uint64_t>(k.action.op));
  if (k.engine) h = k.engine->fingerprint(h);
  if (k.phase == Worker::Phase::Alive && k.action.op == ChildEngine::Op::Run) {
    h = fingerprint_mix(fingerprint_mix(h, k.wake_us), k.run_output_bytes);
  }
  if (k.action.op == ChildEngine::Op::Write) {
    h = fingerprint_mix(fingerprint_mix(h, k.write_done), k.write_total);
  }
  if (k.phase == Worker::Phase::Zombie) h = fingerprint_exit(h, k.exit);
  // The channel: both pipes' unread bytes, or the socketpair's queues with their bytes.
  if (!k.channel) return fingerprint_mix(h, 0x4e4f4e45);
  return k.channel->fingerprint(h);
}

}  // namespace pipepool::sim
