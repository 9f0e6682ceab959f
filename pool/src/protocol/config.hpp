// One derivation of the engines' configuration from pipepool::Options, used by the real driver
// and by the simulator alike: a setting cannot mean one thing in the pool and another in the
// simulator. No system calls.
#pragma once

#include <cstdint>
#include <memory>

#include "pipepool/options.hpp"
#include "protocol/parent_loop.hpp"

namespace pipepool::protocol {

// Payload buffers of at least this many bytes (one x86-64 huge page) that are read into new memory
// are advised for transparent huge pages before their first touch (0 would turn it off; an
// Options field can expose it once the public headers are free to change).
inline constexpr uint64_t kHugePageAdviceBytes = uint64_t{2} << 20;

// Options::socket_sndbuf_bytes above this is rejected (setsockopt takes an int, which the kernel
// doubles).
inline constexpr uint64_t kMaxSocketSndbufBytes = uint64_t{1} << 30;

// Throws std::invalid_argument, with a sentence naming the field, for framing settings the
// engines cannot run: overheads with Framing::Pipepool, overheads outside the bounds Python
// framing needs (frame.hpp), a strategy that splices (IoStrategy::splice_min_payload_bytes())
// with Framing::Python or with a blocking parent. engine_setup() calls it.
void validate_framing(const Options& options);

// validate_framing, and the transport's settings that do not go together: socket_sndbuf_bytes
// with Transport::Pipes, pipe_capacity_bytes with Transport::SocketPair, socket_sndbuf_bytes above
// kMaxSocketSndbufBytes, a strategy that splices with Transport::SocketPair (vmsplice needs a
// pipe). The pool's constructor calls it; engine_setup() does not, since the
// transport is the executor's (the simulator's Scenario carries both buffer sizes at once).
void validate_channel(const Options& options);

// Options::framing and its overheads, as the engines take them.
WireFormat wire_format(const Options& options);

// The parent engine's, worker engine's and loop's settings for a pool of `workers` processes.
EngineSetup engine_setup(const Options& options, uint32_t workers);

// Options::custom_strategy, or the built-in Options::strategy.
const IoStrategy& strategy_of(const Options& options);

// Options::custom_scheduler, or a new built-in Options::scheduler with the Demand settings.
std::shared_ptr<Scheduler> scheduler_of(const Options& options);

}  // namespace pipepool::protocol
