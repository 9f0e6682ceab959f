// os/limits.hpp: resource limits (setrlimit/getrlimit), wrapped once.
//
//   if (!os::limit_address_space(1 << 30).ok()) ...   // RLIMIT_AS of this process: soft and hard
#pragma once

#include <cstdint>

#include "os/result.hpp"

namespace pipepool::os {

// The hard RLIMIT_AS of this process in bytes; UINT64_MAX if unlimited.
Result<uint64_t> address_space_hard_limit();

// Sets this process's RLIMIT_AS (soft and hard) to `bytes`. Errors: setrlimit's (EPERM above the
// hard limit, EINVAL).
Result<void> limit_address_space(uint64_t bytes);

}  // namespace pipepool::os
