// os/eventfd.cpp: eventfd creation, notify and drain.
#include "os/eventfd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include "os/eintr.hpp"

namespace pipepool::os {

Result<Fd> make_eventfd() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return last_error("eventfd");
  return Fd(fd);
}

Result<void> notify_eventfd(int fd) {
  const uint64_t one = 1;
  ssize_t n = retry_on_eintr([&] { return ::write(fd, &one, sizeof one); });
  if (n < 0 && errno != EAGAIN) return last_error("eventfd write");
  return {};
}

Result<uint64_t> drain_eventfd(int fd) {
  uint64_t count = 0;
  ssize_t n = retry_on_eintr([&] { return ::read(fd, &count, sizeof count); });
  if (n < 0) {
    if (errno == EAGAIN) return uint64_t{0};
    return last_error("eventfd read");
  }
  return count;
}

}  // namespace pipepool::os
