#include "os/memory.hpp"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

namespace pipepool::os {

Result<void> advise_huge_pages(std::span<std::byte> memory) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(memory.data());
  const uintptr_t first = (begin + page - 1) & ~(page - 1);
  const uintptr_t end = (begin + memory.size()) & ~(page - 1);
  if (memory.empty() || end <= first) return {};
  if (::madvise(reinterpret_cast<void*>(first), end - first, MADV_HUGEPAGE) != 0) {
    return Error{errno, "madvise"};
  }
  return {};
}

bool retain_freed_heap_memory(size_t bytes) {
  constexpr size_t kLargestMmapThreshold = size_t{32} << 20;  // glibc's HEAP_MAX / 2 on 64-bit
  const int trim = static_cast<int>(std::min<size_t>(bytes, INT32_MAX));
  const int mmap_threshold = static_cast<int>(std::min(bytes, kLargestMmapThreshold));
  return ::mallopt(M_TRIM_THRESHOLD, trim) == 1 && ::mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1;
}

}  // namespace pipepool::os
