// The pipe model: fs/pipe.c's anon_pipe_write, anon_pipe_read, pipe_poll and pipe_set_size, with
// the kernel's ring of page buffers. sim/README.md ("The pipe model") ties each rule to the kernel.
#include "pipe_model.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "protocol/fingerprint.hpp"

namespace pipepool::sim {

// The bytes of one write call: an iov_iter over the parts.
struct PipeModel::Source {
  std::span<const std::span<const std::byte>> parts;
  size_t part = 0;       // index of the part being copied
  size_t offset = 0;     // position inside parts[part]
  size_t remaining = 0;  // bytes of the call not yet copied (iov_iter_count)

  explicit Source(std::span<const std::span<const std::byte>> all) : parts(all) {
    for (const auto& p : all) remaining += p.size();
  }

  // copy_page_from_iter: copies min(n, remaining) bytes to `out`, returns how many.
  size_t copy_to(std::byte* out, size_t n) {
    n = std::min(n, remaining);
    size_t done = 0;
    while (done < n) {
      const auto& p = parts[part];
      const size_t chunk = std::min(n - done, p.size() - offset);
      if (chunk != 0) std::memcpy(out + done, p.data() + offset, chunk);
      done += chunk;
      offset += chunk;
      if (offset == p.size()) {
        ++part;
        offset = 0;
      }
    }
    remaining -= n;
    return n;
  }

  void skip(size_t n) {
    remaining -= n;
    while (n != 0 || (part < parts.size() && offset == parts[part].size())) {
      const size_t chunk = std::min(n, parts[part].size() - offset);
      n -= chunk;
      offset += chunk;
      if (offset == parts[part].size()) {
        ++part;
        offset = 0;
      }
    }
  }
};

PipeModel::PipeModel(PipeConfig config)
    : page_size_(config.page_size),
      unprivileged_max_bytes_(config.unprivileged_max_bytes),
      max_usage_(config.slots) {
  if (!std::has_single_bit(config.slots)) {
    throw std::invalid_argument("PipeModel: slots must be a power of two, got " +
                                std::to_string(config.slots));
  }
  if (!std::has_single_bit(config.page_size) || config.page_size < 16 ||
      config.page_size > (1u << 30)) {
    throw std::invalid_argument("PipeModel: page_size must be a power of two in [16, 2^30], got " +
                                std::to_string(config.page_size));
  }
  if (uint64_t{config.slots} * config.page_size > (uint64_t{1} << 31)) {
    throw std::invalid_argument("PipeModel: capacity above 2^31 bytes");
  }
  ring_.resize(config.slots);
}

std::shared_ptr<std::byte[]> PipeModel::take_page() {
  if (!free_pages_.empty()) {
    std::shared_ptr<std::byte[]> page = std::move(free_pages_.back());
    free_pages_.pop_back();
    return page;
  }
  return std::make_shared_for_overwrite<std::byte[]>(page_size_);
}

// A copy shares its pages with the original; before bytes are appended to a shared page (the
// merge step), the appender takes a copy of its own.
void PipeModel::own_page(Buffer& buf) {
  if (buf.page.use_count() == 1) return;
  std::shared_ptr<std::byte[]> page = take_page();
  std::memcpy(page.get(), buf.page.get(), size_t{buf.offset} + buf.len);
  buf.page = std::move(page);
}

PipeModel::WriteResult PipeModel::write(std::span<const std::byte> data, bool nonblocking) {
  const std::span<const std::byte> one[1] = {data};
  Source source(one);
  return start_write(source, nonblocking);
}

PipeModel::WriteResult PipeModel::writev(std::span<const std::span<const std::byte>> parts,
                                         bool nonblocking) {
  Source source(parts);
  return start_write(source, nonblocking);
}

PipeModel::WriteResult PipeModel::continue_write(std::span<const std::byte> data,
                                                 size_t written_so_far) {
  const std::span<const std::byte> one[1] = {data};
  return continue_writev(one, written_so_far);
}

// anon_pipe_write from its start: null write, readers check, merge step, then the page loop.
PipeModel::WriteResult PipeModel::start_write(Source& source, bool nonblocking) {
  ++ops_;
  if (!has_writer_) return {-EBADF, 0, false, false};
  const size_t total_len = source.remaining;
  if (total_len == 0) return {0, 0, false, false};  // "Null write succeeds", even without reader
  if (!has_reader_) return {-EPIPE, 0, false, true};

  // Merge only the remainder total_len % PAGE_SIZE, only into a non-empty pipe, only if it fits
  // behind the last buffer's data (offset + len + chars <= PAGE_SIZE).
  size_t written = 0;
  const size_t chars = total_len & (page_size_ - 1);
  if (chars != 0 && head_ != tail_) {
    Buffer& last = slot(head_ - 1);
    const size_t end = size_t{last.offset} + last.len;
    if (last.can_merge && end + chars <= page_size_) {
      own_page(last);
      source.copy_to(last.page.get() + end, chars);
      last.len += static_cast<uint32_t>(chars);
      bytes_ += chars;
      written = chars;
      if (source.remaining == 0) return {static_cast<int64_t>(written), written, false, false};
    }
  }
  return fill_pages(source, written, written, nonblocking);
}

// The woken writer: back at the top of anon_pipe_write's loop (readers check, then pages).
PipeModel::WriteResult PipeModel::continue_writev(std::span<const std::span<const std::byte>> parts,
                                                  size_t written_so_far) {
  ++ops_;
  Source source(parts);
  if (written_so_far > source.remaining) {
    throw std::invalid_argument("PipeModel::continue_write: written_so_far past the data");
  }
  if (!has_writer_) return {-EBADF, 0, false, false};
  source.skip(written_so_far);
  const auto so_far = static_cast<int64_t>(written_so_far);
  if (source.remaining == 0) return {so_far, 0, false, false};
  if (!has_reader_) return {so_far != 0 ? so_far : -EPIPE, 0, false, true};
  return fill_pages(source, written_so_far, 0, /*nonblocking=*/false);
}

// anon_pipe_write's loop: a new page per free slot, up to PAGE_SIZE bytes each; when the ring is
// full, -EAGAIN or the partial count for O_NONBLOCK, or sleep.
PipeModel::WriteResult PipeModel::fill_pages(Source& source, size_t written_so_far,
                                             size_t written_in_step, bool nonblocking) {
  while (source.remaining != 0 && head_ - tail_ < max_usage_) {
    Buffer& buf = slot(head_);
    buf.page = take_page();
    buf.offset = 0;
    buf.can_merge = true;
    buf.hashed_end = kNotHashed;
    const size_t copied = source.copy_to(buf.page.get(), page_size_);
    buf.len = static_cast<uint32_t>(copied);
    ++head_;
    bytes_ += copied;
    written_so_far += copied;
    written_in_step += copied;
  }
  const auto so_far = static_cast<int64_t>(written_so_far);
  if (source.remaining == 0) return {so_far, written_in_step, false, false};
  if (nonblocking) return {so_far != 0 ? so_far : -EAGAIN, written_in_step, false, false};
  return {so_far, written_in_step, true, false};
}

// anon_pipe_read: consume from the tail; a drained buffer frees its slot; stop when `out` is full
// or the pipe is empty; then EOF, -EAGAIN or sleep if nothing was read.
PipeModel::ReadResult PipeModel::read(std::span<std::byte> out, bool nonblocking) {
  ++ops_;
  if (!has_reader_) return {-EBADF, false};
  const size_t total_len = out.size();
  if (total_len == 0) return {0, false};  // "Reads with count = 0 should always return 0"
  size_t done = 0;
  while (head_ != tail_) {
    Buffer& buf = slot(tail_);
    const size_t chars = std::min<size_t>(buf.len, total_len - done);
    std::memcpy(out.data() + done, buf.page.get() + buf.offset, chars);
    buf.offset += static_cast<uint32_t>(chars);
    buf.len -= static_cast<uint32_t>(chars);
    bytes_ -= chars;
    done += chars;
    if (buf.len == 0) {
      // Recycled only if no copy of the pipe still holds it.
      if (buf.page.use_count() == 1 && free_pages_.size() < ring_.size()) {
        free_pages_.push_back(std::move(buf.page));
      }
      buf.page = nullptr;
      ++tail_;
    }
    if (done == total_len) break;
  }
  if (done != 0) return {static_cast<int64_t>(done), false};
  if (!has_writer_) return {0, false};
  return {-EAGAIN, !nonblocking};
}

PipeModel::BufferView PipeModel::buffer(uint32_t i) const {
  if (i >= slots_used()) throw std::out_of_range("PipeModel::buffer: no such used slot");
  const Buffer& buf = slot(tail_ + i);
  return {buf.offset, buf.len, buf.can_merge};
}

// iter_to_pipe: one buffer per page fragment of each part, from byte `position` of the call on
// (the memory at position p of a part lies at page offset (page_offset + p) % page_size).
size_t PipeModel::splice_fragments(Source& source, uint32_t page_offset) {
  size_t moved = 0;
  while (source.remaining != 0 && head_ - tail_ < max_usage_) {
    const auto& part = source.parts[source.part];
    if (source.offset == part.size()) {  // an empty part
      source.skip(0);
      continue;
    }
    const uint32_t start = static_cast<uint32_t>((page_offset + source.offset) & (page_size_ - 1));
    const size_t chunk = std::min<size_t>(page_size_ - start, part.size() - source.offset);
    Buffer& buf = slot(head_);
    buf.page = take_page();
    buf.offset = start;
    buf.can_merge = false;
    buf.hashed_end = kNotHashed;
    std::memset(buf.page.get(), 0, start);  // below the fragment: hashed, never read
    source.copy_to(buf.page.get() + start, chunk);
    buf.len = static_cast<uint32_t>(chunk);
    ++head_;
    bytes_ += chunk;
    moved += chunk;
  }
  return moved;
}

PipeModel::WriteResult PipeModel::vmsplice(std::span<const std::span<const std::byte>> parts,
                                           uint32_t page_offset, bool nonblocking) {
  ++ops_;
  if (page_offset >= page_size_) {
    throw std::invalid_argument("PipeModel::vmsplice: page_offset must be below the page size");
  }
  Source source(parts);
  if (!has_writer_) return {-EBADF, 0, false, false};
  if (!has_reader_) return {-EPIPE, 0, false, true};  // wait_for_space: SIGPIPE, -EPIPE
  if (source.remaining == 0) return {0, 0, false, false};
  if (head_ - tail_ >= max_usage_) {
    if (nonblocking) return {-EAGAIN, 0, false, false};
    return {0, 0, true, false};  // pipe_wait_writable
  }
  const size_t moved = splice_fragments(source, page_offset);
  // Blocking: the loop's next call finds the ring full and sleeps in wait_for_space.
  return {static_cast<int64_t>(moved), moved, !nonblocking && source.remaining != 0, false};
}

PipeModel::WriteResult PipeModel::continue_vmsplice(
    std::span<const std::span<const std::byte>> parts, uint32_t page_offset,
    size_t written_so_far) {
  ++ops_;
  Source source(parts);
  if (written_so_far > source.remaining) {
    throw std::invalid_argument("PipeModel::continue_vmsplice: written_so_far past the data");
  }
  if (!has_writer_) return {-EBADF, 0, false, false};
  if (!has_reader_) return {-EPIPE, 0, false, true};
  source.skip(written_so_far);
  const auto so_far = static_cast<int64_t>(written_so_far);
  if (source.remaining == 0) return {so_far, 0, false, false};
  const size_t moved = splice_fragments(source, page_offset);
  const int64_t total = so_far + static_cast<int64_t>(moved);
  return {total, moved, source.remaining != 0, false};
}

// pipe_set_size with round_pipe_size and pipe_resize_ring.
int64_t PipeModel::set_capacity_bytes(uint64_t bytes) {
  ++ops_;
  if (bytes > (uint64_t{1} << 31)) return -EINVAL;  // round_pipe_size returns 0
  const uint64_t size = bytes < page_size_ ? page_size_ : std::bit_ceil(bytes);
  const uint64_t nr_slots = size / page_size_;
  if (nr_slots == 0) return -EINVAL;
  if (unprivileged_max_bytes_ != 0 && nr_slots > max_usage_ && size > unprivileged_max_bytes_) {
    return -EPERM;
  }
  const uint32_t used = head_ - tail_;
  if (nr_slots < used) return -EBUSY;
  // The used buffers move to the start of the new ring, keeping their order.
  std::vector<Buffer> ring(nr_slots);
  for (uint32_t i = 0; i < used; ++i) ring[i] = slot(tail_ + i);
  ring_.swap(ring);
  tail_ = 0;
  head_ = used;
  max_usage_ = static_cast<uint32_t>(nr_slots);
  return static_cast<int64_t>(capacity_bytes());
}

std::string PipeModel::describe() const {
  std::string out = std::to_string(slots_used()) + "/" + std::to_string(slots()) + " slots, " +
                    std::to_string(bytes_) + " bytes";
  if (!has_reader_) out += ", no reader";
  if (!has_writer_) out += ", no writer";
  return out;
}

// ---- copies and fingerprints -------------------------------------------------------------------

PipeModel::PipeModel(const PipeModel& other)
    : page_size_(other.page_size_),
      unprivileged_max_bytes_(other.unprivileged_max_bytes_),
      ring_(other.ring_),  // the used slots share their pages with the original
      head_(other.head_),
      tail_(other.tail_),
      max_usage_(other.max_usage_),
      bytes_(other.bytes_),
      has_reader_(other.has_reader_),
      has_writer_(other.has_writer_),
      ops_(other.ops_),
      hashed_ops_(other.hashed_ops_),
      content_hash_(other.content_hash_) {}

PipeModel& PipeModel::operator=(const PipeModel& other) {
  if (this != &other) *this = PipeModel(other);
  return *this;
}

uint64_t PipeModel::fingerprint(uint64_t h) const {
  if (hashed_ops_ != ops_) {
    uint64_t c = protocol::fingerprint_mix(0x50495045, head_ - tail_);
    for (uint32_t i = tail_; i != head_; ++i) {
      const Buffer& buf = slot(i);
      // A page's bytes below its end never change while it is in a slot (reads move the offset,
      // merges append), so the hash of [0, end) is kept with the slot and, with the offset,
      // identifies the bytes unread. (The bytes before the offset were read already; hashing them
      // too only keeps apart states that differ in what they were, which is sound.)
      const uint32_t end = buf.offset + buf.len;
      if (buf.hashed_end != end) {
        buf.page_hash =
            protocol::fingerprint_bytes(0, std::span<const std::byte>(buf.page.get(), end));
        buf.hashed_end = end;
      }
      c = protocol::fingerprint_mix(
          c, (uint64_t{buf.can_merge} << 63) ^ (uint64_t{buf.offset} << 32) ^ buf.len);
      c = protocol::fingerprint_mix(c, buf.page_hash);
    }
    content_hash_ = c;
    hashed_ops_ = ops_;
  }
  h = protocol::fingerprint_mix(h, content_hash_);
  return protocol::fingerprint_mix(
      h, (uint64_t{max_usage_} << 2) ^ (uint64_t{has_reader_} << 1) ^ uint64_t{has_writer_});
}

}  // namespace pipepool::sim
