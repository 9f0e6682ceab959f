// One worker's channel in the simulated world: either two PipeModels (the task pipe the parent
// writes and the worker reads, the result pipe the other way round) or one SocketPairModel (the
// parent holds end 0, the worker end 1; the task direction is end 0 -> end 1, the result direction
// end 1 -> end 0). The simulated parent and worker (sim_parent.cpp, sim_worker.cpp) call only this,
// so that every rule of the kernel stays in the models and the world asks them, never guesses.
//
// Example:
//
//   Channel channel(SocketConfig{});                  // Scenario::transport == SocketPair
//   auto w = channel.writev(Direction::Task, frame, /*nonblocking=*/false);
//   while (w.blocked) {
//     // the parent sleeps; the worker's reads (or data arriving at end 0) may wake it
//     if (channel.writer_can_proceed(Direction::Task))
//       w = channel.continue_writev(Direction::Task, frame, w.result);
//   }
//
// The parent's epoll (what the pool's driver registers: the result pipe or socket for EPOLLIN, the
// task pipe or socket for EPOLLOUT). A pipe's read end reports POLLIN or POLLHUP, its write end
// POLLOUT or POLLERR, each exactly as PipeModel says. A socket is one descriptor: epoll reports
// POLLHUP and POLLERR whatever was asked, so both the read and the write interest are ready on
// POLLHUP or POLLERR, and otherwise on POLLIN and POLLOUT ((charged + 1) * 4 <= sk_sndbuf, a
// quarter of the buffer, not "room for a byte").
//
// Value type: every member is a model held by value (copyable as the models are), no pointers.
// Thread safety: none. No system call, clock or randomness.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "pipe_model.hpp"
#include "pipepool/options.hpp"
#include "socket_model.hpp"

namespace pipepool::sim {

enum class Direction : uint8_t {
  Task,    // parent -> worker
  Result,  // worker -> parent
};

// One direction of a channel in the same terms for both transports (for reports).
struct DirectionState {
  Transport transport = Transport::Pipes;
  uint64_t queued_bytes = 0;   // bytes the reader could read now (FIONREAD / SIOCINQ)
  uint32_t queued_units = 0;   // pipe: slots used; socket: skbs queued
  uint32_t unit_limit = 0;     // pipe: slots of the ring; socket: 0 (no bound on the count)
  uint64_t charged_bytes = 0;  // pipe: slots used * page size; socket: SIOCOUTQ of the writer
  uint64_t charge_limit = 0;   // pipe: capacity in bytes; socket: the writer's sk_sndbuf
  bool has_reader = true;
  bool has_writer = true;
  std::string describe;  // PipeModel::describe() or SocketPairModel::describe(reader end)
};

// Where the simulator assumes a spliced payload starts inside its first page: glibc puts the data
// of a large (mmapped) allocation 16 bytes into its first page, so a payload of n bytes spans
// ceil((n + 16) / page) fragments. (The model copies bytes, so it cannot take the real address;
// a fixed offset keeps the simulation deterministic.) Taken modulo the page size.
inline constexpr uint32_t kSimulatedSpliceOffset = 16;

class Channel {
 public:
  // The outcome of a write or read, as the models give it (see PipeModel / SocketPairModel).
  struct WriteResult {
    int64_t result = 0;  // blocked: bytes so far; else bytes, or -EAGAIN, -EPIPE, -ECONNRESET
    size_t written = 0;  // bytes queued during this step only
    bool blocked = false;
  };
  struct ReadResult {
    int64_t result = 0;  // bytes, 0 at end of file, -EAGAIN, -ECONNRESET
    bool would_block = false;
  };

  explicit Channel(PipeConfig pipes);      // two pipes of this configuration
  explicit Channel(SocketConfig sockets);  // one socketpair of this configuration

  Transport transport() const { return socket_ ? Transport::SocketPair : Transport::Pipes; }

  // One writev(2) by the direction's writer (Task: the parent; Result: the worker).
  // splice: vmsplice(2) instead (pipes only: PipeModel::vmsplice, at kSimulatedSpliceOffset).
  WriteResult writev(Direction d, std::span<const std::span<const std::byte>> parts,
                     bool nonblocking, bool splice = false);
  // A blocked blocking writev, woken (writer_can_proceed(d)): goes on from `written_so_far`.
  WriteResult continue_writev(Direction d, std::span<const std::span<const std::byte>> parts,
                              size_t written_so_far, bool splice = false);
  // One read(2) by the direction's reader (Task: the worker; Result: the parent).
  ReadResult read(Direction d, std::span<std::byte> out, bool nonblocking);

  // A blocking read by d's reader would return now (bytes, end of file or an error).
  bool reader_can_proceed(Direction d) const;
  // The blocked writer of d has been woken: its continue_writev() is a step that does something.
  bool writer_can_proceed(Direction d) const;
  // Whether a blocking writev of `total` bytes entered now would do anything but sleep. A pipe:
  // a free slot, no reader, or room for the merge step (so a write that would only sleep is taken
  // when it can move a byte, which is the same as entering it earlier: a pipe wakes its writer
  // exactly when a slot frees). A socket: always, because a writer that sleeps is woken only when
  // the charge falls to a quarter of sk_sndbuf (or data arrives at its end), not as soon as it is
  // below sk_sndbuf: when the write is entered changes what it does.
  // A vmsplice (splice) can start only with a free slot or no reader: it never merges.
  bool write_can_start(Direction d, size_t total, bool splice = false) const;
  // A read of `want` bytes (> 0) by d's reader that takes them from inside the oldest buffer (pipe
  // page or skb), frees nothing and so wakes nobody and changes no one's readiness.
  bool read_is_inner(Direction d, size_t want) const;

  // The parent's epoll (see the header comment).
  bool parent_read_ready() const;   // the result pipe / socket end 0 for EPOLLIN
  bool parent_write_ready() const;  // the task pipe / socket end 0 for EPOLLOUT

  // The worker died or exited: the kernel closes the worker's ends (the task pipe's read end and
  // the result pipe's write end, or socket end 1).
  void close_worker_ends();

  DirectionState state(Direction d) const;
  std::string describe(Direction d) const;
  // "task pipe" / "result pipe" / "socket" (the worker's name for it)
  const char* name(Direction d) const;

  uint64_t ops() const;
  // A hash of the whole channel's state (every buffer, charge, flag and sleeping writer), for
  // World::fingerprint(): equal states, equal hashes.
  uint64_t state_hash(uint64_t seed) const;
  // The canonical fingerprint (World::fingerprint()): what decides the channel's future, bytes
  // included (every unread byte of both pipes, or of both socket queues), but not how many bytes
  // went through it before.
  uint64_t fingerprint(uint64_t h) const;

  uint64_t written(Direction d) const {
    return d == Direction::Task ? task_written_ : result_written_;
  }
  uint64_t read_bytes(Direction d) const {
    return d == Direction::Task ? task_read_ : result_read_;
  }

  const PipeModel* pipe(Direction d) const {
    const auto& p = d == Direction::Task ? task_pipe_ : result_pipe_;
    return p ? &*p : nullptr;
  }
  const SocketPairModel* socket() const { return socket_ ? &*socket_ : nullptr; }

 private:
  PipeModel& pipe_of(Direction d) { return d == Direction::Task ? *task_pipe_ : *result_pipe_; }
  const PipeModel& pipe_of(Direction d) const {
    return d == Direction::Task ? *task_pipe_ : *result_pipe_;
  }
  static int writer_end(Direction d) { return d == Direction::Task ? 0 : 1; }
  static int reader_end(Direction d) { return d == Direction::Task ? 1 : 0; }
  void count_written(Direction d, size_t n) {
    (d == Direction::Task ? task_written_ : result_written_) += n;
  }

  std::optional<PipeModel> task_pipe_;
  std::optional<PipeModel> result_pipe_;
  std::optional<SocketPairModel> socket_;
  uint64_t task_written_ = 0;
  uint64_t result_written_ = 0;
  uint64_t task_read_ = 0;
  uint64_t result_read_ = 0;
};

}  // namespace pipepool::sim
