// A byte-exact model of one Linux anonymous pipe (fs/pipe.c, kernel 6.x), for the simulator.
//
// The model answers every call exactly as the kernel's pipe would: the same return values, the same
// bytes, the same readiness, the same capacity in page slots. It is what the simulator runs the
// pool's real protocol over, so that a strategy that deadlocks or stalls on a real pipe does so in
// the simulator too, and for the same reason (a full ring of page slots, not a byte count).
//
// Example:
//
//   pipepool::sim::PipeModel pipe;                       // 16 slots of 4096 bytes
//   auto w = pipe.write(frame_bytes, /*nonblocking=*/false);
//   if (w.blocked) {
//     // The writing process sleeps. Once pipe.writer_can_proceed() (a reader freed a slot, or the
//     // reader closed), it goes on with the same call:
//     w = pipe.continue_write(frame_bytes, /*written_so_far=*/w.result);
//   }
//   std::array<std::byte, 4096> buf;
//   auto r = pipe.read(buf, /*nonblocking=*/true);       // r.result bytes, 0 at EOF, or -EAGAIN
//
// Rules (each from fs/pipe.c; sim/README.md, "The pipe model", ties them to the kernel code):
// - The pipe is a ring of `slots()` buffers, each holding part of one page (offset, len). It is
//   full when every slot is used, however few bytes they hold; it is empty when no slot is used.
// - write(2) of n bytes (anon_pipe_write): if the pipe is not empty and n % page_size != 0, the
//   first n % page_size bytes are appended to the last buffer when they fit behind its data;
//   then the rest goes into new pages of up to page_size bytes while slots are free. A write of
//   at most page_size (= PIPE_BUF) bytes is therefore atomic. When the ring is full before all is
//   written, a non-blocking write returns what it wrote, or -EAGAIN if nothing; a blocking one
//   sleeps and, woken, goes on WITHOUT the merge step (continue_write).
// - read(2) of n bytes (anon_pipe_read): takes bytes from the oldest buffers on; a buffer read to
//   its end frees its slot. It returns once n bytes are read or the pipe is empty. Empty with a
//   writer: -EAGAIN (non-blocking) or "would block"; empty without writer: 0 (end of file).
// - poll (pipe_poll): read end POLLIN iff not empty, POLLHUP iff no writer; write end POLLOUT iff
//   a slot is free, POLLERR iff no reader.
// - F_SETPIPE_SZ (pipe_set_size, round_pipe_size, pipe_resize_ring): the size is rounded up to a
//   power of two of at least one page; -EINVAL above 2^31 bytes; -EBUSY when fewer slots than are
//   in use; -EPERM above the unprivileged limit, if one is configured.
//
// - vmsplice(2) of user memory into the pipe (fs/splice.c, vmsplice_to_pipe, wait_for_space,
//   iter_to_pipe, add_to_pipe; kernel 6.x): no reader: SIGPIPE and -EPIPE. A full ring (every slot
//   used): -EAGAIN with SPLICE_F_NONBLOCK (the model's nonblocking; the pool passes it for
//   non-blocking calls), else the caller sleeps until a slot frees (pipe_wait_writable). Then each
//   iovec's part in each user page becomes a pipe buffer of its own (user_page_pipe_buf_ops,
//   offset = where the part starts in that page, len = up to the page's end), taken while slots
//   are free: a pipe of 16 slots holds 16 fragments whatever their sizes. Nothing is merged: the
//   buffers lack PIPE_BUF_FLAG_CAN_MERGE, so no fragment joins the last buffer and no later
//   write(2) joins a fragment (anon_pipe_write checks the flag). A call returns what it
//   transferred as soon as the ring is full, even a blocking one (a short count, not a sleep: only
//   wait_for_space sleeps, before anything is transferred), so a blocking sender loops. No
//   alignment is required (SPLICE_F_GIFT, which would, is not used). The model takes the page
//   offset of the memory as a parameter (where `parts` start inside their first page), since the
//   bytes it is given are copies: the simulator passes kSimulatedSpliceOffset. The bytes are copied
//   into the model's pages at the call: the real pipe reads the sender's pages later, so what the
//   model cannot show is a sender modifying them meanwhile (the protocol's retention rules prevent
//   it: frame.hpp, FrameKind::Ack).
//
// What is not modelled: O_DIRECT (packet) pipes, splice/tee, watch queues, EFAULT, signals
// interrupting a blocked call (the caller returns written_so_far, or -EINTR if it is 0), the
// per-user page limits (pipe-user-pages-soft/hard), and FIFOs opened by name.
//
// Readers and writers: a pipe from pipe2() has one read file and one write file; fork and dup share
// them. close_reader()/close_writer() mean "the last descriptor of that end was closed": the
// simulator counts descriptors, the model only knows whether each end is still open.
//
// Thread safety: none; one simulator thread drives a model. No system call, clock or randomness.
// Memory: the slot array is allocated at construction and on set_capacity_bytes(); pages are
// allocated the first time the pipe needs that many at once and reused after, so a model in steady
// state does no allocation per operation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pipepool::sim {

struct PipeConfig {
  // Ring size in page slots (the kernel's max_usage = ring_size). A power of two, at least 1.
  uint32_t slots = 16;
  // PAGE_SIZE: bytes of one slot's page. A power of two, at least 16. PIPE_BUF equals it here.
  uint32_t page_size = 4096;
  // /proc/sys/fs/pipe-max-size for a caller without CAP_SYS_RESOURCE: set_capacity_bytes() above it
  // (when growing) fails with -EPERM. 0: the caller is privileged, no such limit.
  uint64_t unprivileged_max_bytes = 0;
};

class PipeModel {
 public:
  // Throws std::invalid_argument if `config` breaks the rules above.
  explicit PipeModel(PipeConfig config = {});

  PipeModel(PipeModel&&) noexcept = default;
  PipeModel& operator=(PipeModel&&) noexcept = default;
  // A copy holds the same bytes in the same ring layout (its own pages: only the used ones are
  // copied), and behaves exactly as the original from now on. The explorer branches from copies.
  PipeModel(const PipeModel& other);
  PipeModel& operator=(const PipeModel& other);

  // The outcome of write(), writev() or continue_write().
  struct WriteResult {
    // Not blocked: what write(2) returns for the whole call: bytes written (> 0), 0 for an empty
    // write, or -EAGAIN, -EPIPE, -EBADF (write end closed: misuse). Blocked: the bytes written so
    // far in this call (>= 0), to pass to continue_write() as `written_so_far`.
    int64_t result = 0;
    // Bytes the pipe accepted during this step only.
    size_t written = 0;
    // Blocking call that must sleep: call continue_write() once writer_can_proceed().
    bool blocked = false;
    // The kernel sent SIGPIPE to the writer in this step (no reader). The model only reports it.
    bool sigpipe = false;
  };

  // One write(2) call of `data`. A blocking call writes what fits now and, if that is not all,
  // returns blocked = true.
  WriteResult write(std::span<const std::byte> data, bool nonblocking);
  // One writev(2) call: the same as write() of the concatenated parts (pipe_write sees one
  // iov_iter of the total length); empty parts are allowed.
  WriteResult writev(std::span<const std::span<const std::byte>> parts, bool nonblocking);
  // A blocked blocking call, woken up: goes on with the same call, without the merge step. `data`
  // (or `parts`) is the call's whole original buffer; the model resumes at byte `written_so_far`
  // (the previous step's result). Returns blocked again if the pipe is still full.
  WriteResult continue_write(std::span<const std::byte> data, size_t written_so_far);
  WriteResult continue_writev(std::span<const std::span<const std::byte>> parts,
                              size_t written_so_far);

  // vmsplice(2) of `parts` into the write end (see the rules above). `page_offset`: where the
  // memory of each part starts inside a page (all parts alike; < page_size()).
  // Non-blocking (SPLICE_F_NONBLOCK): one call: `result` is the bytes transferred (maybe fewer
  // than asked), or -EAGAIN (ring full), -EPIPE, -EBADF.
  // Blocking: the loop of os::vmsplice_all, whose calls each transfer what fits and whose next
  // call sleeps in wait_for_space while the ring is full: `result` is the bytes transferred so
  // far and blocked = true until all are in; then call continue_vmsplice() once
  // writer_can_proceed(). -EPIPE when the reader is gone.
  WriteResult vmsplice(std::span<const std::span<const std::byte>> parts, uint32_t page_offset,
                       bool nonblocking);
  // The blocking loop goes on with the rest of `parts` after `written_so_far` bytes (its iovecs
  // advanced past them); `result` counts from the start of `parts`.
  WriteResult continue_vmsplice(std::span<const std::span<const std::byte>> parts,
                                uint32_t page_offset, size_t written_so_far);

  struct ReadResult {
    // Bytes read (> 0), 0 at end of file or for an empty read, -EAGAIN when nothing is there yet
    // (also when would_block), -EBADF (read end closed: misuse).
    int64_t result = 0;
    // Blocking call on an empty pipe with a writer: the reader sleeps, and calls read() again once
    // reader_can_proceed(). Nothing was consumed.
    bool would_block = false;
  };
  // One read(2) call of up to out.size() bytes into `out`. (readv(2) is the same as read() into
  // the concatenated buffers.)
  ReadResult read(std::span<std::byte> out, bool nonblocking);

  // pipe_poll on the read end.
  bool readable() const { return head_ != tail_; }  // POLLIN
  bool hup() const { return !has_writer_; }         // POLLHUP
  // pipe_poll on the write end.
  bool writable() const { return head_ - tail_ < max_usage_; }  // POLLOUT
  bool err() const { return !has_reader_; }                     // POLLERR
  // The kernel's wake-up conditions (pipe_readable, pipe_writable): when a sleeping reader or
  // writer is woken to retry.
  bool reader_can_proceed() const { return readable() || !has_writer_; }
  bool writer_can_proceed() const { return writable() || !has_reader_; }

  size_t bytes() const { return bytes_; }                // FIONREAD
  uint32_t slots_used() const { return head_ - tail_; }  // pipe_occupancy
  uint32_t slots() const { return max_usage_; }          // F_GETPIPE_SZ / page_size
  uint32_t page_size() const { return page_size_; }
  size_t capacity_bytes() const { return size_t{max_usage_} * page_size_; }  // F_GETPIPE_SZ

  // Offset and length of the i-th used slot, oldest first (i < slots_used()). For tests and
  // reports.
  struct BufferView {
    uint32_t offset;
    uint32_t len;
    bool can_merge = true;  // false: a vmspliced fragment (PIPE_BUF_FLAG_CAN_MERGE unset)
  };
  BufferView buffer(uint32_t i) const;

  // fcntl(F_SETPIPE_SZ, bytes): the new capacity in bytes, or -EINVAL, -EBUSY, -EPERM.
  int64_t set_capacity_bytes(uint64_t bytes);

  void close_reader() {
    ++ops_;
    has_reader_ = false;
  }
  void close_writer() {
    ++ops_;
    has_writer_ = false;
  }
  bool has_reader() const { return has_reader_; }
  bool has_writer() const { return has_writer_; }

  // "7/16 slots, 28672 bytes", then ", no reader" / ", no writer" when closed; for deadlock
  // reports.
  std::string describe() const;

  // Calls that change or consume state (write, continue, read, resize, close) so far.
  uint64_t ops() const { return ops_; }

  // `h` mixed with everything that decides this pipe's future: the ring layout (each used slot's
  // offset and length: merges and free slots), the bytes themselves, capacity and which ends are
  // open. The hash of the contents is kept until the next call that changes them, so asking again
  // is cheap.
  uint64_t fingerprint(uint64_t h) const;

 private:
  static constexpr uint32_t kNotHashed = ~uint32_t{0};
  struct Buffer {
    std::shared_ptr<std::byte[]> page;  // shared with copies of the pipe until one appends to it
    uint32_t offset = 0;
    uint32_t len = 0;
    bool can_merge = true;                     // PIPE_BUF_FLAG_CAN_MERGE: write(2) may append to it
    mutable uint32_t hashed_end = kNotHashed;  // page_hash is of bytes [0, hashed_end)
    mutable uint64_t page_hash = 0;
  };
  // Where the bytes of one call come from: the parts, and the position reached in them.
  struct Source;

  Buffer& slot(uint32_t index) { return ring_[index & (ring_.size() - 1)]; }
  const Buffer& slot(uint32_t index) const { return ring_[index & (ring_.size() - 1)]; }
  std::shared_ptr<std::byte[]> take_page();
  void own_page(Buffer& buf);
  WriteResult start_write(Source& source, bool nonblocking);
  // iter_to_pipe: fragments while slots are free; returns the bytes transferred.
  size_t splice_fragments(Source& source, uint32_t page_offset);
  WriteResult fill_pages(Source& source, size_t written_so_far, size_t written_in_step,
                         bool nonblocking);

  uint32_t page_size_;
  uint64_t unprivileged_max_bytes_;
  std::vector<Buffer> ring_;  // ring_size entries (a power of two)
  uint32_t head_ = 0;         // next slot to fill; indices wrap as the kernel's do
  uint32_t tail_ = 0;         // oldest used slot
  uint32_t max_usage_;        // slots usable by writers (== ring_.size())
  size_t bytes_ = 0;
  bool has_reader_ = true;
  bool has_writer_ = true;
  uint64_t ops_ = 0;
  std::vector<std::shared_ptr<std::byte[]>> free_pages_;  // pages no slot of any copy holds
  mutable uint64_t hashed_ops_ = ~uint64_t{0};            // ops_ when content_hash_ was computed
  mutable uint64_t content_hash_ = 0;
};

}  // namespace pipepool::sim
