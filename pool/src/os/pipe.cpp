// os/pipe.cpp: pipe2 and F_SETPIPE_SZ / F_GETPIPE_SZ.
#include "os/pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <climits>
#include <string>

#include "os/eintr.hpp"
#include "os/io.hpp"

namespace pipepool::os {

Result<std::pair<Fd, Fd>> make_pipe() {
  int ends[2];
  if (retry_on_eintr([&] { return ::pipe2(ends, O_CLOEXEC); }) != 0) return last_error("pipe2");
  return std::pair<Fd, Fd>(Fd(ends[0]), Fd(ends[1]));
}

Result<size_t> set_pipe_capacity(int fd, size_t bytes) {
  if (bytes > static_cast<size_t>(INT_MAX)) return Error{EINVAL, "F_SETPIPE_SZ"};
  int set = retry_on_eintr([&] { return ::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(bytes)); });
  if (set < 0) return last_error("F_SETPIPE_SZ");
  return static_cast<size_t>(set);
}

Result<size_t> pipe_capacity(int fd) {
  int size = retry_on_eintr([&] { return ::fcntl(fd, F_GETPIPE_SZ); });
  if (size < 0) return last_error("F_GETPIPE_SZ");
  return static_cast<size_t>(size);
}

size_t pipe_max_size() {
  constexpr size_t kFallback = size_t{1} << 20;
  Result<std::string> text = read_whole_file("/proc/sys/fs/pipe-max-size", 64);
  if (!text.ok()) return kFallback;
  const std::string& s = text.value();
  size_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end == s.data() || value == 0) return kFallback;
  return value;
}

}  // namespace pipepool::os
