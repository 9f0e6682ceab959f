// bench/raw_echo.hpp: the physical limit of an echo load (echo_load.hpp): the same messages over
// the same kind of pipes, with no pool: no framing, no codec, no scheduler, no I/O thread.
//
//   RawEcho raw(load);   // forks load.workers children, each with a task and a result pipe
//   raw.iterate();       // load.messages_per_worker messages to every child, every reply back
//
// Pipes: capacity left at the kernel default, or raised with F_SETPIPE_SZ to
// /proc/sys/fs/pipe-max-size for "enlarged", as the pool does. A child does what a pool worker
// does at the least: read one whole message (in_bytes), write one reply (out_bytes), repeat, with
// buffers allocated once. The parent writes every message of the iteration while reading replies,
// from one poll loop on non-blocking ends, so it never deadlocks. The destructor closes the pipes
// and reaps the children.
//
// Spliced (splice = true): the primitive Strategy::ZeroCopy builds on, at its limit. The parent
// vmsplices (SPLICE_F_NONBLOCK) each message from its send buffer, which it never writes, and a
// child vmsplices each reply from a reply buffer it filled before the fork and never writes again
// (so the reply's bytes are not the message's: an echo of sizes, not of contents; a child that
// spliced the buffer it reads into would overwrite replies the parent has not read yet). Reads
// stay read(2).
//
// Errors: the constructor and iterate() throw std::runtime_error naming the failed call.
// Thread safety: one thread uses a RawEcho. Fork it before starting threads when you can.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "echo_load.hpp"
#include "os/fd.hpp"

namespace pipepool::bench {

class RawEcho {
 public:
  explicit RawEcho(const EchoLoad& load, bool splice = false);
  ~RawEcho();
  RawEcho(const RawEcho&) = delete;
  RawEcho& operator=(const RawEcho&) = delete;

  // Capacity of the pipes in bytes (F_GETPIPE_SZ).
  uint64_t capacity_bytes() const { return capacity_bytes_; }

  // One iteration: load.messages_per_worker messages to every child, every reply back.
  void iterate();

  // The children's process ids.
  std::vector<long> pids() const {
    std::vector<long> pids;
    for (const Child& child : children_) pids.push_back(child.pid);
    return pids;
  }

 private:
  struct Child {
    pid_t pid = -1;
    os::Fd task_write;   // parent -> child, non-blocking in the parent
    os::Fd result_read;  // child -> parent, non-blocking in the parent
    uint64_t to_send = 0, sent = 0, to_receive = 0, received = 0;
  };

  // Memory the program writes before it reads it: allocated, not initialised, so that a page is
  // first touched by the read that fills it (the child's buffer is not copied on write after the
  // fork, as a zero-filled one would be).
  struct Scratch {
    explicit Scratch(size_t size)
        : bytes(std::make_unique_for_overwrite<std::byte[]>(size)), span(bytes.get(), size) {}
    std::unique_ptr<std::byte[]> bytes;
    std::span<std::byte> span;
  };

  EchoLoad load_;
  bool splice_;
  Scratch child_buffer_;
  Scratch reply_buffer_;  // splice: the child's replies
  std::vector<std::byte> send_buffer_;
  Scratch receive_buffer_;
  std::vector<Child> children_;
  uint64_t capacity_bytes_ = 0;
};

}  // namespace pipepool::bench
