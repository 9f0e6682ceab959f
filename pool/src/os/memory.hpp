// os/memory.hpp: advice to the kernel about memory (madvise), wrapped once.
//
//   os::advise_huge_pages(buffer);   // before the buffer is first touched
#pragma once

#include <cstddef>
#include <span>

#include "os/result.hpp"

namespace pipepool::os {

// madvise(MADV_HUGEPAGE) on the whole pages inside `memory` (its start rounded up and its end
// down to the page size; nothing when that leaves no page): pages first touched afterwards may be
// transparent huge pages, where the kernel has them (/sys/kernel/mm/transparent_hugepage/enabled
// "always" or "madvise"). Only worth it for memory not yet touched, of several MiB. Errors:
// madvise's (EINVAL where the kernel has no transparent huge pages); callers may ignore them, the
// memory is usable either way. Allocation-free.
Result<void> advise_huge_pages(std::span<std::byte> memory);

// Makes this process's malloc keep freed memory for reuse instead of returning it to the kernel
// (mallopt: M_TRIM_THRESHOLD to `bytes`, M_MMAP_THRESHOLD to the largest glibc accepts, 32 MiB
// on 64-bit), so that a buffer freed at the end of one task is not faulted in again, zeroed, for
// the next. Resident memory then stays at its high-water mark (up to `bytes` more than in use).
// For a worker process, never for the user's: it is a process-wide setting. False if glibc
// refused a value.
bool retain_freed_heap_memory(size_t bytes);

}  // namespace pipepool::os
