// A byte-exact model of one Linux AF_UNIX SOCK_STREAM socketpair (net/unix/af_unix.c and the
// accounting of net/core/sock.c, kernel 6.18), for the simulator.
//
// A socket's capacity is not a byte count and not a page count: every skb the writer queues is
// charged to the WRITER's send buffer with its truesize (the sk_buff, the kmalloc'ed head rounded
// up to its slab size, the skb_shared_info, the page frags rounded up to pages), and the writer
// may allocate another skb only while the memory charged is below sk_sndbuf. So 278 one-byte
// writes (768 bytes of truesize each) fill a default 212992-byte buffer with 278 bytes of data,
// while one blocking write of 1 MiB goes through in 36544-byte skbs of 37120 bytes truesize.
//
// Example:
//
//   pipepool::sim::SocketPairModel pair;                 // sndbuf 212992 on both ends
//   auto w = pair.write(0, frame_bytes, /*nonblocking=*/false);   // end 0 writes to end 1
//   if (w.blocked) {
//     // The writing process sleeps in sock_wait_for_wmem. Once pair.writer_can_proceed(0) (it was
//     // woken), it goes on with the same call:
//     w = pair.continue_write(0, frame_bytes, /*written_so_far=*/w.result);  // may block again
//   }
//   std::array<std::byte, 4096> buf;
//   auto r = pair.read(1, buf, /*nonblocking=*/true);   // r.result bytes, 0 at EOF, or -EAGAIN
//
// Both directions live in one object, because they are coupled in the kernel: both ends' sleeping
// tasks wait on one queue per socket, so data arriving at end e (its peer's write) also wakes a
// writer blocked on end e, which then goes on if its memory is merely below sk_sndbuf; and closing
// one end frees the skbs queued to it, gives their memory back to the other end and shuts it down.
//
// Rules (sim/README.md, "The socket model", ties each to the kernel code):
// - write(2) (unix_stream_sendmsg) cuts the data into skbs of at most
//   min(sk_sndbuf / 2 - 64, SKB_MAX_HEAD(0) + UNIX_SKB_FRAGS_SZ) = min(sndbuf/2 - 64, 36544)
//   bytes; the last max(0, size - 3776) bytes, rounded up to a page, go into page frags (up to
//   the whole skb), the rest into the kmalloc'ed head. truesize = kmalloc size of
//   (align64(head) + 320) + 256 + pages of frags (768 for 1..192 bytes).
// - Before each skb (sock_alloc_send_pskb): a pending socket error (ECONNRESET) or SEND_SHUTDOWN
//   ends the call (sent so far, or -ECONNRESET / -EPIPE, no SIGPIPE); if the memory charged is
//   below sk_sndbuf the skb is allocated (so one skb may overshoot sk_sndbuf by up to 37120
//   bytes); else a non-blocking call returns the bytes sent, or -EAGAIN if none, and a blocking
//   one sleeps. A write to a socket whose peer has closed fails at once with -EPIPE and SIGPIPE.
// - A sleeping writer is woken (a) when a freed skb leaves (charged + 2) * 4 <= sk_sndbuf
//   (unix_write_space in sock_wfree, with sock_wfree's extra reference), (b) by SO_SNDBUF when
//   (charged + 1) * 4 <= the new sk_sndbuf, (c) by data arriving at its own socket, (d) by its
//   peer closing. Woken, it goes on only if charged + 1 < sk_sndbuf (or on error/shutdown), and
//   otherwise sleeps again until the next wake-up.
// - read(2) (unix_stream_read_generic) copies from the oldest skb on, across skbs, until the
//   buffer is full or the queue is empty; an skb read to its end is freed and only then is its
//   truesize given back to the writer. Nothing there: pending error (-ECONNRESET, once), end of
//   file (0) after the peer closed, -EAGAIN or sleep.
// - poll (unix_poll): POLLIN iff skbs are queued or the peer closed; POLLOUT iff
//   (charged + 1) * 4 <= sk_sndbuf (a quarter of the buffer, not "an skb fits"); POLLHUP (and
//   POLLRDHUP) iff the peer closed; POLLERR iff an error is pending.
// - SIOCINQ: bytes not yet read (unix_inq_len: the sum of len - consumed over the queue; on this
//   kernel a partly read skb counts only its unread part). SIOCOUTQ: memory charged to the writer
//   (sk_wmem_alloc minus its base reference).
// - SO_SNDBUF(v): sk_sndbuf = max(2 * min((unsigned)v, wmem_max, INT_MAX / 2), SOCK_MIN_SNDBUF).
//
// What is not modelled: SCM_RIGHTS / credentials (which split reads), MSG_PEEK, MSG_OOB,
// MSG_WAITALL and SO_RCVLOWAT, shutdown(2), splice, SO_SNDTIMEO/signals interrupting a blocked
// call, memory pressure (allocation failures), SO_SNDBUFFORCE. Closing means the last descriptor
// of that end.
//
// Thread safety: none; one simulator thread drives a model. No system call, clock or randomness.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

namespace pipepool::sim {

// The kernel constants the model needs; defaults are those of 6.18 on x86-64 as built here. Every
// value is checked by sim/socket_model_test.cpp against the running kernel.
struct SocketConfig {
  uint32_t page_size = 4096;  // PAGE_SIZE
  // Initial sk_sndbuf of both ends (/proc/sys/net/core/wmem_default; the value getsockopt reads).
  uint32_t sndbuf_bytes = 212992;
  // /proc/sys/net/core/wmem_max: SO_SNDBUF's bound before doubling.
  uint32_t wmem_max_bytes = 212992;
  uint32_t min_sndbuf_bytes = 4608;    // SOCK_MIN_SNDBUF = 2 * (2048 + 256)
  uint32_t sk_buff_bytes = 256;        // SKB_DATA_ALIGN(sizeof(struct sk_buff))
  uint32_t shared_info_bytes = 320;    // SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
  uint32_t cache_line_bytes = 64;      // SMP_CACHE_BYTES (SKB_DATA_ALIGN)
  uint32_t smallest_head_bytes = 512;  // smallest kmalloc size a head can get here
  uint32_t frags_bytes = 32768;        // UNIX_SKB_FRAGS_SZ = PAGE_SIZE << get_order(32768)
};

// How one skb of `size` bytes is built, and what it costs.
struct SkbShape {
  uint32_t head_bytes = 0;  // linear data (kmalloc'ed head)
  uint32_t frag_bytes = 0;  // data in page frags
  uint32_t truesize = 0;    // charged to the writer
};

class SocketPairModel {
 public:
  // Throws std::invalid_argument if `config` is inconsistent.
  explicit SocketPairModel(SocketConfig config = {});

  // The outcome of write(), writev() or continue_write(), as PipeModel's.
  struct WriteResult {
    // Not blocked: what write(2) returns: bytes written (> 0), 0 for an empty write, or -EAGAIN,
    // -EPIPE, -ECONNRESET, -EBADF (end closed: misuse). Blocked: bytes written so far (>= 0).
    int64_t result = 0;
    size_t written = 0;    // bytes queued during this step only
    bool blocked = false;  // must sleep: continue_write() once writer_can_proceed()
    bool sigpipe = false;  // the kernel sent SIGPIPE in this step
  };
  struct ReadResult {
    // Bytes read, 0 at end of file (or a 0-byte read of a non-empty queue), -EAGAIN, -ECONNRESET,
    // -EBADF.
    int64_t result = 0;
    // Blocking read of an empty queue: sleeps; call read() again once reader_can_proceed().
    bool would_block = false;
  };

  // send(2)/write(2) on end `end` (0 or 1): the bytes go to the other end's receive queue.
  WriteResult write(int end, std::span<const std::byte> data, bool nonblocking);
  WriteResult writev(int end, std::span<const std::span<const std::byte>> parts, bool nonblocking);
  // A blocked call, woken (writer_can_proceed(end)): goes on with the same data from byte
  // `written_so_far`. If the memory is still not below sk_sndbuf it sleeps again (blocked,
  // written 0) and needs another wake-up, as the kernel's task does.
  WriteResult continue_write(int end, std::span<const std::byte> data, size_t written_so_far);
  WriteResult continue_writev(int end, std::span<const std::span<const std::byte>> parts,
                              size_t written_so_far);
  // recv(2)/read(2) of up to out.size() bytes on end `end`.
  ReadResult read(int end, std::span<std::byte> out, bool nonblocking);

  // The blocked writer on `end` has been woken since it last slept (the kernel made it runnable).
  bool writer_can_proceed(int end) const { return side(end).writer_woken; }
  bool writer_blocked(int end) const { return side(end).writer_sleeping; }
  // A sleeping reader would be woken: data queued, the peer closed, or an error pending.
  bool reader_can_proceed(int end) const;

  // unix_poll on `end`.
  bool readable(int end) const;  // POLLIN
  bool writable(int end) const;  // POLLOUT: (charged + 1) * 4 <= sk_sndbuf
  bool hup(int end) const;       // POLLHUP (with POLLRDHUP): the peer closed
  bool err(int end) const { return side(end).error != 0; }  // POLLERR

  size_t inq_bytes(int end) const { return side(end).unread; }     // SIOCINQ
  size_t outq_bytes(int end) const { return side(end).wmem; }      // SIOCOUTQ
  size_t unread_bytes(int end) const { return side(end).unread; }  // bytes a read could return
  size_t skbs_queued(int end) const { return side(end).queue.size(); }
  // The i-th skb of `end`'s receive queue, oldest first (i < skbs_queued(end)).
  struct SkbView {
    uint32_t len;
    uint32_t consumed;
    uint32_t truesize;
  };
  SkbView skb(int end, size_t i) const;
  uint32_t sndbuf_bytes(int end) const { return side(end).sndbuf; }  // getsockopt(SO_SNDBUF)

  // setsockopt(SO_SNDBUF, value) on `end`: 0 (never fails), or -EBADF on a closed end.
  int64_t set_sndbuf(int end, int32_t value);
  // close(2) of the last descriptor of `end`.
  void close(int end);
  bool open(int end) const { return !side(end).closed; }

  // The skb a write of `size` bytes (at most max_skb_bytes(end)) builds, and its truesize.
  SkbShape skb_shape(uint32_t size) const;
  // The largest skb a write on `end` builds now: min(sndbuf / 2 - 64, 3776 + 32768).
  uint32_t max_skb_bytes(int end) const;

  // "3 skbs, 2049 bytes queued; writer charged 2304 of 212992" for `end`'s receive queue and
  // the memory its peer (the writer into it) is charged; for reports.
  std::string describe(int end) const;

  uint64_t ops() const { return ops_; }

  // A hash of the pair's whole state mixed into `seed`: both receive queues (each skb's length,
  // bytes consumed and truesize), the charges, buffer sizes, errors, shutdowns and closes, and
  // each end's sleeping writer (woken or not, and the skb it was allocating). Equal states, equal
  // hashes; for the simulator's fingerprints (World::fingerprint).
  uint64_t state_hash(uint64_t seed) const;

 private:
  struct Skb {
    uint32_t len = 0;
    uint32_t consumed = 0;
    uint32_t truesize = 0;
  };
  struct Side {
    std::deque<Skb> queue;         // this end's receive queue
    std::vector<std::byte> bytes;  // the unread bytes of `queue` from `bytes_head` on, in order
    size_t bytes_head = 0;
    size_t unread = 0;  // sum of len - consumed (SIOCINQ)
    size_t wmem = 0;    // truesize charged to this end as a writer (SIOCOUTQ)
    uint32_t sndbuf = 0;
    int error = 0;               // sk_err (ECONNRESET)
    bool send_shutdown = false;  // SEND_SHUTDOWN (the peer closed)
    bool rcv_shutdown = false;   // RCV_SHUTDOWN (the peer closed)
    bool closed = false;
    bool writer_sleeping = false;  // a blocking write on this end sleeps in sock_wait_for_wmem
    bool writer_woken = false;     // ... and has been woken since
    uint32_t pending_skb = 0;      // size of the skb the sleeping writer was allocating
  };
  struct Source;

  Side& side(int end);
  const Side& side(int end) const;
  static int peer_of(int end) { return end ^ 1; }
  void wake_writer(int end);
  void free_skb_of(int writer_end, const Skb& skb);
  WriteResult send_loop(int end, Source& source, size_t sent, uint32_t pending, bool nonblocking,
                        bool in_wait);

  SocketConfig config_;
  uint32_t max_head_;  // SKB_MAX_HEAD(0) = page - shared_info = 3776
  std::array<Side, 2> sides_;
  uint64_t ops_ = 0;
};

}  // namespace pipepool::sim
