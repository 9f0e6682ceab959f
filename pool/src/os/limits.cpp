#include "os/limits.hpp"

#include <sys/resource.h>

#include <cerrno>

namespace pipepool::os {

Result<uint64_t> address_space_hard_limit() {
  rlimit current{};
  if (::getrlimit(RLIMIT_AS, &current) != 0) return Error{errno, "getrlimit"};
  if (current.rlim_max == RLIM_INFINITY) return uint64_t{UINT64_MAX};
  return static_cast<uint64_t>(current.rlim_max);
}

Result<void> limit_address_space(uint64_t bytes) {
  const rlimit limit{static_cast<rlim_t>(bytes), static_cast<rlim_t>(bytes)};
  if (::setrlimit(RLIMIT_AS, &limit) != 0) return Error{errno, "setrlimit"};
  return {};
}

}  // namespace pipepool::os
