// os/io.hpp: reads and writes on descriptors, in two flavours.
//
// Non-blocking-aware single calls (read_some, write_some, writev_some) make one system call
// (retried on EINTR) and return an IoResult: "would block" and "end of file" are values, not
// errors, so an event loop can switch on them:
//
//   os::IoResult r = os::write_some(fd, bytes);
//   switch (r.status) {
//     case os::IoResult::Ok:         advance(r.bytes); break;   // possibly a short write
//     case os::IoResult::WouldBlock: wait_for_writable(); break;
//     case os::IoResult::Eof:        break;                     // reads only
//     case os::IoResult::Error:      fail(r.error); break;      // EPIPE: the reader is gone
//   }
//
// Blocking loops (write_all, writev_all, read_exact) repeat until everything is transferred. On a
// descriptor in O_NONBLOCK mode they wait with poll(2) instead of failing with EAGAIN, so they
// work on either kind.
//
// SIGPIPE: a write to a pipe whose reader is gone raises SIGPIPE in the writing thread, which
// kills the process unless the application ignores it. These functions do not change that (the
// library never touches a process-wide disposition); wrap writes in a ScopedSigpipeBlock
// (signals.hpp) to get EPIPE back as a value instead.
//
// Thread safety: free functions, safe from any thread; all but read_whole_file are
// async-signal-safe and allocation-free.
#pragma once

#include <poll.h>
#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <string>

#include "os/result.hpp"

namespace pipepool::os {

// The outcome of one read or write attempt.
struct IoResult {
  enum Status {
    Ok,          // `bytes` were transferred (> 0, except for an empty request)
    WouldBlock,  // O_NONBLOCK and nothing could be transferred now (EAGAIN/EWOULDBLOCK)
    Eof,         // read: the writer is gone and the pipe is empty
    Error,       // the call failed with `error` (errno), e.g. EPIPE, EBADF
  };
  size_t bytes = 0;
  Status status = Ok;
  int error = 0;
};

// One read(2) into `buffer`. An empty buffer returns Ok with 0 bytes without a system call.
IoResult read_some(int fd, std::span<std::byte> buffer);

// One write(2) of (a prefix of) `bytes`. An empty span returns Ok with 0 bytes.
IoResult write_some(int fd, std::span<const std::byte> bytes);

// One writev(2); more than IOV_MAX entries are cut to the first IOV_MAX (it is "some").
IoResult writev_some(int fd, std::span<const iovec> pieces);

// Writes every byte, looping over short writes. Fails with the errno of the failed write.
Result<void> write_all(int fd, std::span<const std::byte> bytes);

// Writes every byte of every piece, in order, with as few writev(2) calls as it can, advancing
// through the pieces correctly after a short write. Any number of pieces (more than IOV_MAX is
// fine); empty pieces are skipped. `pieces` is not modified.
Result<void> writev_all(int fd, std::span<const iovec> pieces);

// One vmsplice(2) of `pieces` (cut to IOV_MAX entries) into the pipe `fd`: the pipe takes
// references to the pages, one pipe buffer per page fragment of each piece, never merged with
// other writes (sim/pipe_model.hpp has the rules). dont_wait adds SPLICE_F_NONBLOCK: a full pipe
// is WouldBlock. May transfer less than asked even when blocking (as many fragments as there are
// free slots). The caller must not modify the memory until the reader has read it.
IoResult vmsplice_some(int fd, std::span<const iovec> pieces, bool dont_wait);
// Splices every byte of every piece, as writev_all writes them (short transfers looped, would
// block waited for with poll).
Result<void> vmsplice_all(int fd, std::span<const iovec> pieces);

// ---- Stream sockets (Transport::SocketPair). O_NONBLOCK belongs to the open file description,
// which every descriptor of a socket shares, so these choose per call instead: dont_wait adds
// MSG_DONTWAIT (EAGAIN is WouldBlock). Sends add MSG_NOSIGNAL: a gone peer is EPIPE, never
// SIGPIPE.

// One sendmsg(2) of `pieces` (cut to IOV_MAX entries).
IoResult sendv_some(int sock, std::span<const iovec> pieces, bool dont_wait);
// Sends every byte of every piece, blocking, as writev_all does (without MSG_DONTWAIT).
Result<void> sendv_all(int sock, std::span<const iovec> pieces);
// One recv(2) into `buffer`: Eof when the peer closed and nothing is queued. ECONNRESET (the peer
// closed with bytes of ours unread) is an Error; it comes only after every queued byte was read.
IoResult recv_some(int sock, std::span<std::byte> buffer, bool dont_wait);

// Reads until `buffer` is full or end of file. Returns the bytes read: less than buffer.size()
// only at end of file.
Result<size_t> read_exact(int fd, std::span<std::byte> buffer);

// poll(2), EINTR retried with what is left of the timeout (-1: forever). Returns the number of
// entries with a non-zero revents (0: timed out).
Result<int> poll_fds(std::span<pollfd> fds, int timeout_ms);

// The whole content of a (small) file such as /proc/self/cgroup, at most max_bytes of it.
// Allocates: not for a child between fork and exit.
Result<std::string> read_whole_file(const char* path, size_t max_bytes = size_t{1} << 20);

}  // namespace pipepool::os
