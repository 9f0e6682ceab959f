// os/fd.cpp: close, dup, fcntl flags, the descriptor table.
#include "os/fd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>

#include "os/eintr.hpp"

namespace pipepool::os {

void close_fd(int fd) noexcept {
  if (fd >= 0) ::close(fd);  // not retried: see the header
}

Result<Fd> open_file(const char* path, int flags) {
  int fd = retry_on_eintr([&] { return ::open(path, flags | O_CLOEXEC); });
  if (fd < 0) return last_error("open");
  return Fd(fd);
}

Result<Fd> dup_cloexec(int fd, int min_fd) {
  int copy = retry_on_eintr([&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, min_fd); });
  if (copy < 0) return last_error("F_DUPFD_CLOEXEC");
  return Fd(copy);
}

Result<void> set_nonblocking(int fd, bool on) {
  int flags = retry_on_eintr([&] { return ::fcntl(fd, F_GETFL); });
  if (flags < 0) return last_error("F_GETFL");
  int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted == flags) return {};
  if (retry_on_eintr([&] { return ::fcntl(fd, F_SETFL, wanted); }) < 0) {
    return last_error("F_SETFL");
  }
  return {};
}

bool is_cloexec(int fd) {
  int flags = retry_on_eintr([&] { return ::fcntl(fd, F_GETFD); });
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

std::vector<int> list_open_fds() {
  std::vector<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    int fd = static_cast<int>(std::strtol(entry->d_name, nullptr, 10));
    if (fd != own) fds.push_back(fd);
  }
  ::closedir(dir);
  std::sort(fds.begin(), fds.end());
  return fds;
}

namespace {

// Closes [first, last]; close_range(2) when the kernel has it, else one close per descriptor.
Result<void> close_range_of(unsigned first, unsigned last) {
  if (first > last) return {};
  if (::syscall(SYS_close_range, first, last, 0) == 0) return {};
  if (errno != ENOSYS) return last_error("close_range");
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return last_error("getrlimit");
  rlim_t end = std::min<rlim_t>(limit.rlim_cur, static_cast<rlim_t>(last) + 1);
  for (rlim_t fd = first; fd < end; ++fd) close_fd(static_cast<int>(fd));
  return {};
}

}  // namespace

Result<void> close_fds_except(std::span<const int> keep) {
  constexpr size_t kMaxKeep = 64;
  if (keep.size() > kMaxKeep) return Error{EINVAL, "close_fds_except"};
  std::array<int, kMaxKeep> sorted{};
  size_t count = 0;
  for (int fd : keep) {
    if (fd >= 0) sorted[count++] = fd;
  }
  std::sort(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(count));
  unsigned next = 0;  // first descriptor not yet handled
  for (size_t i = 0; i < count; ++i) {
    unsigned fd = static_cast<unsigned>(sorted[i]);
    if (fd < next) continue;  // duplicate
    if (fd > next) {
      if (auto r = close_range_of(next, fd - 1); !r.ok()) return r;
    }
    next = fd + 1;
  }
  return close_range_of(next, UINT_MAX);
}

}  // namespace pipepool::os
