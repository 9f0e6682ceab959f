// driver/test_hooks.hpp: for tests only. A write observer handed to the parent loop of the next
// pool this process constructs (ParentLoop::observe_writes), so that a test can see exactly
// which bytes the real executor wrote into each task pipe and compare them with the simulator's.
// Set it before constructing the pool; the pool takes it (and clears it) in its constructor.
#pragma once

#include "protocol/parent_loop.hpp"

namespace pipepool::driver::testing {

void observe_next_pool_writes(protocol::ParentLoop::WriteObserver observer);
protocol::ParentLoop::WriteObserver take_next_pool_write_observer();

}  // namespace pipepool::driver::testing
