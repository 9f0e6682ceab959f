#include "driver/test_hooks.hpp"

#include <mutex>

namespace pipepool::driver::testing {
namespace {
std::mutex g_mutex;
protocol::ParentLoop::WriteObserver g_observer;
}  // namespace

void observe_next_pool_writes(protocol::ParentLoop::WriteObserver observer) {
  std::lock_guard lock(g_mutex);
  g_observer = std::move(observer);
}

protocol::ParentLoop::WriteObserver take_next_pool_write_observer() {
  std::lock_guard lock(g_mutex);
  return std::exchange(g_observer, {});
}

}  // namespace pipepool::driver::testing
