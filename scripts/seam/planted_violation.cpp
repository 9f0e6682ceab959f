// A planted violation of the seam between the protocol/simulator and the system, compiled only so
// that ctest's seam_check_rejects_a_violation can show scripts/check_seam.sh rejecting it: an
// os/ include, a system call, a clock read and an os-layer function. Never linked into anything.
#include <unistd.h>

#include <chrono>
#include <span>

#include "os/io.hpp"

namespace pipepool::seam_test {

long planted_violation(int fd) {
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  std::byte byte{};
  (void)pipepool::os::read_some(fd, std::span<std::byte>(&byte, 1));
  return static_cast<long>(::write(fd, "x", 1)) + static_cast<long>(now);
}

}  // namespace pipepool::seam_test
