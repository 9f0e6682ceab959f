// The built-in I/O strategies. Each is only a set of answers; the engines carry them out.
#include "pipepool/strategy.hpp"

namespace pipepool {
namespace {

class EpollStrategy : public IoStrategy {
 public:
  std::string_view name() const override { return "epoll"; }
  bool parent_blocking_writes() const override { return false; }
  bool parent_sends_run_batch() const override { return false; }
  ChildMode child_mode() const override { return ChildMode::OneAtATime; }
  size_t child_read_ahead_bytes() const override { return 64 * 1024; }
};

class BatchedStrategy final : public IoStrategy {
 public:
  std::string_view name() const override { return "batched"; }
  bool parent_blocking_writes() const override { return true; }
  bool parent_sends_run_batch() const override { return true; }
  ChildMode child_mode() const override { return ChildMode::UntilRunBatch; }
};

class UnbatchedStrategy final : public IoStrategy {
 public:
  std::string_view name() const override { return "unbatched"; }
  bool parent_blocking_writes() const override { return true; }
  bool parent_sends_run_batch() const override { return false; }
  ChildMode child_mode() const override { return ChildMode::OneAtATime; }
};

// Epoll's discipline, every answer of it, plus vmsplice for large payloads.
class ZeroCopyStrategy final : public EpollStrategy {
 public:
  std::string_view name() const override { return "zerocopy"; }
  uint64_t splice_min_payload_bytes() const override { return kZeroCopyMinPayloadBytes; }
};

}  // namespace

const IoStrategy& builtin_strategy(Strategy strategy) {
  static const EpollStrategy epoll;
  static const BatchedStrategy batched;
  static const UnbatchedStrategy unbatched;
  static const ZeroCopyStrategy zerocopy;
  switch (strategy) {
    case Strategy::ZeroCopy:
      return zerocopy;
    case Strategy::Batched:
      return batched;
    case Strategy::Unbatched:
      return unbatched;
    case Strategy::Epoll:
      break;
  }
  return epoll;
}

std::string_view to_string(Strategy strategy) {
  return builtin_strategy(strategy).name();
}

}  // namespace pipepool
