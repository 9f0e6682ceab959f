// The socketpair model: net/unix/af_unix.c's unix_stream_sendmsg, unix_stream_read_generic,
// unix_poll, unix_release_sock and unix_ioctl, with net/core/sock.c's sock_alloc_send_pskb,
// sock_wait_for_wmem, sock_wfree and SO_SNDBUF, and net/core/skbuff.c's truesize arithmetic.
// sim/README.md ("The socket model") ties each rule to the kernel.
#include "socket_model.hpp"

#include "protocol/fingerprint.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <stdexcept>

namespace pipepool::sim {

using protocol::fingerprint_mix;

// The bytes of one call: an iov_iter over the parts.
struct SocketPairModel::Source {
  std::span<const std::span<const std::byte>> parts;
  size_t part = 0;
  size_t offset = 0;
  size_t total = 0;

  explicit Source(std::span<const std::span<const std::byte>> all) : parts(all) {
    for (const auto& p : all) total += p.size();
  }
  void skip(size_t n) {
    while (n != 0) {
      const size_t chunk = std::min(n, parts[part].size() - offset);
      n -= chunk;
      offset += chunk;
      if (offset == parts[part].size()) {
        ++part;
        offset = 0;
      }
    }
  }
  void append_to(std::vector<std::byte>& out, size_t n) {
    while (n != 0) {
      const auto& p = parts[part];
      const size_t chunk = std::min(n, p.size() - offset);
      out.insert(out.end(), p.begin() + static_cast<std::ptrdiff_t>(offset),
                 p.begin() + static_cast<std::ptrdiff_t>(offset + chunk));
      n -= chunk;
      offset += chunk;
      if (offset == p.size()) {
        ++part;
        offset = 0;
      }
    }
  }
};

SocketPairModel::SocketPairModel(SocketConfig config) : config_(config) {
  if (!std::has_single_bit(config.page_size) || config.page_size < 1024) {
    throw std::invalid_argument("SocketPairModel: page_size must be a power of two >= 1024");
  }
  if (config.shared_info_bytes >= config.page_size || config.min_sndbuf_bytes < 256 ||
      config.sndbuf_bytes < config.min_sndbuf_bytes || config.sndbuf_bytes > INT_MAX ||
      config.wmem_max_bytes > INT_MAX || !std::has_single_bit(config.cache_line_bytes) ||
      !std::has_single_bit(config.smallest_head_bytes) || config.frags_bytes < config.page_size) {
    throw std::invalid_argument("SocketPairModel: inconsistent SocketConfig");
  }
  max_head_ = config.page_size - config.shared_info_bytes;
  for (Side& s : sides_) s.sndbuf = config.sndbuf_bytes;
}

SocketPairModel::Side& SocketPairModel::side(int end) {
  if (end != 0 && end != 1) throw std::out_of_range("SocketPairModel: end must be 0 or 1");
  return sides_[static_cast<size_t>(end)];
}
const SocketPairModel::Side& SocketPairModel::side(int end) const {
  if (end != 0 && end != 1) throw std::out_of_range("SocketPairModel: end must be 0 or 1");
  return sides_[static_cast<size_t>(end)];
}

uint32_t SocketPairModel::max_skb_bytes(int end) const {
  // "Keep two messages in the pipe so it schedules better", then "allow fallback to order-0".
  const int64_t half = (static_cast<int64_t>(side(end).sndbuf) >> 1) - 64;
  return static_cast<uint32_t>(std::min<int64_t>(half, max_head_ + config_.frags_bytes));
}

// unix_stream_sendmsg's split, alloc_skb_with_frags (frags: page-aligned, whatever the orders),
// __alloc_skb/kmalloc_reserve (head: kmalloc size of SKB_HEAD_ALIGN), __build_skb_around's
// SKB_TRUESIZE.
SkbShape SocketPairModel::skb_shape(uint32_t size) const {
  const uint32_t page = config_.page_size;
  const uint32_t over = size > max_head_ ? size - max_head_ : 0;
  const uint32_t data_len = std::min<uint32_t>(size, (over + page - 1) & ~(page - 1));
  const uint32_t head = size - data_len;
  const uint32_t align = config_.cache_line_bytes;
  const uint32_t obj = ((head + align - 1) & ~(align - 1)) + config_.shared_info_bytes;
  const uint32_t slab = std::max(config_.smallest_head_bytes, std::bit_ceil(obj));
  const uint32_t frags = (data_len + page - 1) & ~(page - 1);
  return {head, data_len, slab + config_.sk_buff_bytes + frags};
}

SocketPairModel::SkbView SocketPairModel::skb(int end, size_t i) const {
  const Side& s = side(end);
  if (i >= s.queue.size()) throw std::out_of_range("SocketPairModel::skb: no such skb");
  const Skb& k = s.queue[i];
  return {k.len, k.consumed, k.truesize};
}

bool SocketPairModel::reader_can_proceed(int end) const {
  const Side& s = side(end);
  return !s.queue.empty() || s.rcv_shutdown || s.error != 0;
}

bool SocketPairModel::readable(int end) const {
  const Side& s = side(end);
  return !s.queue.empty() || s.rcv_shutdown;
}

bool SocketPairModel::writable(int end) const {
  const Side& s = side(end);
  return (static_cast<uint64_t>(s.wmem) + 1) * 4 <= s.sndbuf;
}

bool SocketPairModel::hup(int end) const {
  const Side& s = side(end);
  return s.send_shutdown && s.rcv_shutdown;
}

void SocketPairModel::wake_writer(int end) {
  Side& s = sides_[static_cast<size_t>(end)];
  if (s.writer_sleeping) s.writer_woken = true;
}

// consume_skb -> sock_wfree: the truesize goes back to the writer, then unix_write_space wakes its
// sleepers if unix_writable with sock_wfree's one extra reference still held.
void SocketPairModel::free_skb_of(int writer_end, const Skb& skb) {
  Side& w = sides_[static_cast<size_t>(writer_end)];
  w.wmem -= skb.truesize;
  if ((static_cast<uint64_t>(w.wmem) + 2) * 4 <= w.sndbuf) wake_writer(writer_end);
}

SocketPairModel::WriteResult SocketPairModel::write(int end, std::span<const std::byte> data,
                                                    bool nonblocking) {
  const std::span<const std::byte> one[1] = {data};
  return writev(end, one, nonblocking);
}

SocketPairModel::WriteResult SocketPairModel::writev(
    int end, std::span<const std::span<const std::byte>> parts, bool nonblocking) {
  ++ops_;
  Side& s = side(end);
  if (s.closed) return {-EBADF, 0, false, false};
  Source source(parts);
  // Before the loop, even for 0 bytes: a socket whose peer has gone is SEND_SHUTDOWN.
  if (s.send_shutdown) return {-EPIPE, 0, false, true};
  return send_loop(end, source, 0, 0, nonblocking, false);
}

SocketPairModel::WriteResult SocketPairModel::continue_write(int end,
                                                             std::span<const std::byte> data,
                                                             size_t written_so_far) {
  const std::span<const std::byte> one[1] = {data};
  return continue_writev(end, one, written_so_far);
}

SocketPairModel::WriteResult SocketPairModel::continue_writev(
    int end, std::span<const std::span<const std::byte>> parts, size_t written_so_far) {
  ++ops_;
  Side& s = side(end);
  Source source(parts);
  if (written_so_far > source.total) {
    throw std::invalid_argument("SocketPairModel::continue_write: written_so_far past the data");
  }
  if (s.closed) return {-EBADF, 0, false, false};
  if (!s.writer_sleeping) {
    throw std::logic_error("SocketPairModel::continue_write: no blocked write on this end");
  }
  source.skip(written_so_far);
  return send_loop(end, source, written_so_far, s.pending_skb, false, true);
}

// unix_stream_sendmsg's loop from skb to skb, with sock_alloc_send_pskb's wait loop. `pending` is
// the size of the skb being allocated when the call slept (0: compute the next one); `in_wait`:
// resume inside sock_wait_for_wmem, which re-checks its own condition first.
SocketPairModel::WriteResult SocketPairModel::send_loop(int end, Source& source, size_t sent,
                                                        uint32_t pending, bool nonblocking,
                                                        bool in_wait) {
  Side& s = sides_[static_cast<size_t>(end)];
  Side& peer = sides_[static_cast<size_t>(peer_of(end))];
  const size_t start = sent;
  s.writer_woken = false;
  if (in_wait) {
    s.writer_sleeping = false;
    if (!(s.wmem + 1 < s.sndbuf || s.send_shutdown || s.error != 0)) {
      s.writer_sleeping = true;  // woken, but no room: back to sleep until the next wake-up
      return {static_cast<int64_t>(sent), 0, true, false};
    }
  }
  const auto done = [&](int64_t err) -> WriteResult {
    const size_t now = sent - start;
    return {sent != 0 ? static_cast<int64_t>(sent) : err, now, false, false};
  };
  while (sent < source.total) {
    uint32_t size = pending;
    pending = 0;
    if (size == 0) {
      size = static_cast<uint32_t>(
          std::min<size_t>(source.total - sent, static_cast<size_t>(max_skb_bytes(end))));
    }
    // sock_alloc_send_pskb
    if (s.error != 0) {
      const int err = s.error;
      s.error = 0;  // sock_error() takes it
      return done(-err);
    }
    if (s.send_shutdown) return done(-EPIPE);  // out_err: no SIGPIPE from this path
    if (s.wmem >= s.sndbuf) {
      if (nonblocking) return done(-EAGAIN);
      s.writer_sleeping = true;
      s.pending_skb = size;
      return {static_cast<int64_t>(sent), sent - start, true, false};
    }
    const SkbShape shape = skb_shape(size);
    s.wmem += shape.truesize;  // skb_set_owner_w
    peer.queue.push_back({size, 0, shape.truesize});
    source.append_to(peer.bytes, size);
    peer.unread += size;
    wake_writer(peer_of(end));  // sk_data_ready on the peer wakes every sleeper on its queue
    sent += size;
  }
  s.writer_sleeping = false;
  return {static_cast<int64_t>(sent), sent - start, false, false};
}

SocketPairModel::ReadResult SocketPairModel::read(int end, std::span<std::byte> out,
                                                  bool nonblocking) {
  ++ops_;
  Side& s = side(end);
  if (s.closed) return {-EBADF, false};
  size_t size = out.size();
  size_t copied = 0;
  do {
    if (s.queue.empty()) {
      if (copied >= 1) break;  // target = sock_rcvlowat() = 1
      if (s.error != 0) {
        const int err = s.error;
        s.error = 0;
        return {-err, false};
      }
      if (s.rcv_shutdown) return {0, false};
      return {-EAGAIN, !nonblocking};
    }
    Skb& skb = s.queue.front();
    const size_t chunk = std::min<size_t>(skb.len - skb.consumed, size);
    std::copy_n(s.bytes.begin() + static_cast<std::ptrdiff_t>(s.bytes_head), chunk,
                out.begin() + static_cast<std::ptrdiff_t>(copied));
    s.bytes_head += chunk;
    copied += chunk;
    size -= chunk;
    skb.consumed += static_cast<uint32_t>(chunk);
    s.unread -= chunk;
    if (skb.consumed != skb.len) break;
    const Skb freed = skb;
    s.queue.pop_front();
    free_skb_of(peer_of(end), freed);
  } while (size != 0);
  // Drop what was read once it is most of the buffer: amortised O(1) per byte, no allocation.
  if (s.bytes_head == s.bytes.size()) {
    s.bytes.clear();
    s.bytes_head = 0;
  } else if (s.bytes_head > (1u << 16) && s.bytes_head * 2 > s.bytes.size()) {
    s.bytes.erase(s.bytes.begin(), s.bytes.begin() + static_cast<std::ptrdiff_t>(s.bytes_head));
    s.bytes_head = 0;
  }
  return {static_cast<int64_t>(copied), false};
}

// sk_setsockopt(SO_SNDBUF), then sk_write_space.
int64_t SocketPairModel::set_sndbuf(int end, int32_t value) {
  ++ops_;
  Side& s = side(end);
  if (s.closed) return -EBADF;
  uint32_t v = std::min(static_cast<uint32_t>(value), config_.wmem_max_bytes);
  v = std::min<uint32_t>(v, INT_MAX / 2);
  s.sndbuf = std::max(v * 2, config_.min_sndbuf_bytes);
  if (writable(end)) wake_writer(end);
  return 0;
}

// unix_release_sock: the peer is shut down both ways (and gets ECONNRESET if this end leaves data
// unread), woken, and the skbs queued to this end are freed, giving the peer its memory back.
void SocketPairModel::close(int end) {
  ++ops_;
  Side& s = side(end);
  if (s.closed) return;
  s.closed = true;
  s.send_shutdown = s.rcv_shutdown = true;
  s.writer_sleeping = s.writer_woken = false;
  const int p = peer_of(end);
  Side& peer = sides_[static_cast<size_t>(p)];
  if (!peer.closed) {
    peer.send_shutdown = peer.rcv_shutdown = true;
    if (!s.queue.empty()) peer.error = ECONNRESET;
    wake_writer(p);  // sk_state_change
  }
  while (!s.queue.empty()) {
    const Skb freed = s.queue.front();
    s.queue.pop_front();
    free_skb_of(p, freed);
  }
  s.bytes.clear();
  s.bytes_head = 0;
  s.unread = 0;
}

uint64_t SocketPairModel::state_hash(uint64_t seed) const {
  uint64_t h = seed;
  for (const Side& s : sides_) {
    h = fingerprint_mix(h, (uint64_t{s.sndbuf} << 32) ^ s.wmem);
    h = fingerprint_mix(h, (static_cast<uint64_t>(s.error) << 40) ^
                               (uint64_t{s.send_shutdown} << 36) ^
                               (uint64_t{s.rcv_shutdown} << 35) ^ (uint64_t{s.closed} << 34) ^
                               (uint64_t{s.writer_sleeping} << 33) ^
                               (uint64_t{s.writer_woken} << 32) ^ s.pending_skb);
    h = fingerprint_mix(h, (uint64_t{s.queue.size()} << 40) ^ s.unread);
    for (const Skb& k : s.queue) {
      h = fingerprint_mix(h, (uint64_t{k.len} << 40) ^ (uint64_t{k.consumed} << 20) ^ k.truesize);
    }
  }
  return h;
}

uint64_t SocketPairModel::fingerprint(uint64_t h) const {
  h = state_hash(h);
  for (const Side& s : sides_) {
    const std::span<const std::byte> unread(s.bytes.data() + s.bytes_head,
                                            s.bytes.size() - s.bytes_head);
    h = fingerprint_mix(h, protocol::fingerprint_bytes(0, unread));
  }
  return h;
}

std::string SocketPairModel::describe(int end) const {
  const Side& s = side(end);
  const Side& writer = side(peer_of(end));
  std::string out = std::to_string(s.queue.size()) + " skbs, " + std::to_string(s.unread) +
                    " bytes queued; writer charged " + std::to_string(writer.wmem) + " of " +
                    std::to_string(writer.sndbuf);
  if (writer.closed) out += ", writer closed";
  if (s.closed) out += ", reader closed";
  return out;
}

}  // namespace pipepool::sim
