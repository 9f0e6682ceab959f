// os/epoll.cpp: epoll_create1 / epoll_ctl / epoll_wait.
#include "os/epoll.hpp"

#include <algorithm>
#include <climits>

#include "os/eintr.hpp"
#include "os/timeout.hpp"

namespace pipepool::os {
namespace {

Result<void> control(int epoll_fd, int op, int fd, uint32_t events, uint64_t data,
                     const char* operation) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = data;
  if (retry_on_eintr([&] { return ::epoll_ctl(epoll_fd, op, fd, &event); }) != 0) {
    return last_error(operation);
  }
  return {};
}

}  // namespace

Result<Epoll> Epoll::create() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return last_error("epoll_create1");
  return Epoll(Fd(fd));
}

Result<void> Epoll::add(int fd, uint32_t events, uint64_t data) {
  return control(fd_.get(), EPOLL_CTL_ADD, fd, events, data, "epoll_ctl(ADD)");
}

Result<void> Epoll::modify(int fd, uint32_t events, uint64_t data) {
  return control(fd_.get(), EPOLL_CTL_MOD, fd, events, data, "epoll_ctl(MOD)");
}

Result<void> Epoll::remove(int fd) {
  return control(fd_.get(), EPOLL_CTL_DEL, fd, 0, 0, "epoll_ctl(DEL)");
}

Result<int> Epoll::wait(std::span<epoll_event> events, int timeout_ms) {
  const int capacity = static_cast<int>(std::min<size_t>(events.size(), INT_MAX));
  TimeoutBudget budget(timeout_ms);
  int n = retry_on_eintr(
      [&] { return ::epoll_wait(fd_.get(), events.data(), capacity, budget.remaining_ms()); });
  if (n < 0) return last_error("epoll_wait");
  return n;
}

}  // namespace pipepool::os
