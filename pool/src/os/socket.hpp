// os/socket.hpp: Unix sequenced-packet sockets that carry descriptors (SCM_RIGHTS).
//
//   auto pair = os::make_socketpair().value();          // AF_UNIX, SOCK_SEQPACKET, close-on-exec
//   int fds[] = {pipe_write_end, pidfd};
//   os::send_with_fds(pair.first.get(), as_bytes(request), fds).value();
//   ...
//   std::vector<os::Fd> received;                        // owned, close-on-exec
//   os::Result<size_t> n = os::recv_with_fds(pair.second.get(), buffer, received);  // 0: EOF
//
// SOCK_SEQPACKET keeps message boundaries: one send is one receive. Because a receive of 0 bytes
// means end of file, an empty message cannot be sent (EINVAL). At most kMaxFdsPerMessage
// descriptors travel in one message.
//
// Stream socketpairs (the pool's Transport::SocketPair) come from make_stream_socketpair; their
// data moves with os::sendv_some / sendv_all / recv_some (io.hpp), their buffer is SO_SNDBUF.
//
// Thread safety: free functions, safe from any thread. make_socketpair and send_with_fds are
// async-signal-safe and allocation-free; recv_with_fds appends to a vector.
#pragma once

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "os/fd.hpp"
#include "os/result.hpp"

namespace pipepool::os {

inline constexpr size_t kMaxFdsPerMessage = 16;

// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC). Both ends are equivalent.
Result<std::pair<Fd, Fd>> make_socketpair();

// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): a duplex byte stream, as Python's
// multiprocessing.Pipe(duplex=True) makes on Linux.
Result<std::pair<Fd, Fd>> make_stream_socketpair();

// setsockopt(SO_SNDBUF, bytes): the kernel doubles it and bounds it by net.core.wmem_max
// (unprivileged). On an AF_UNIX stream socket the sender's SO_SNDBUF is what bounds the bytes in
// flight towards the peer (the receiver's SO_RCVBUF plays no part).
Result<void> set_send_buffer_bytes(int sock, int bytes);
// getsockopt(SO_SNDBUF): the value in effect (already doubled).
Result<int> send_buffer_bytes(int sock);

// sendmsg of one message carrying copies of `fds` (SCM_RIGHTS), with MSG_NOSIGNAL: a gone peer is
// EPIPE, never SIGPIPE. With dont_wait (MSG_DONTWAIT) a full socket fails with EAGAIN instead of
// blocking. Returns the bytes sent (all of `message`). EINVAL: empty message or too many fds.
Result<size_t> send_with_fds(int sock, std::span<const std::byte> message, std::span<const int> fds,
                             bool dont_wait = false);

// recvmsg of one message into `buffer`, with MSG_CMSG_CLOEXEC; the descriptors it carried are
// appended to fds_out. Returns the message size; 0 means the peer closed (end of file).
// EMSGSIZE if the message or its descriptors did not fit (none are kept then).
Result<size_t> recv_with_fds(int sock, std::span<std::byte> buffer, std::vector<Fd>& fds_out);

}  // namespace pipepool::os
