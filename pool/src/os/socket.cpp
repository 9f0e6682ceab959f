// os/socket.cpp: socketpair, sendmsg/recvmsg with SCM_RIGHTS.
#include "os/socket.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

#include "os/eintr.hpp"

namespace pipepool::os {
namespace {

// Control-message buffer big enough for kMaxFdsPerMessage descriptors, correctly aligned.
union ControlBuffer {
  char bytes[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  cmsghdr align;
};

}  // namespace

Result<std::pair<Fd, Fd>> make_socketpair() {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
    return last_error("socketpair");
  }
  return std::pair<Fd, Fd>(Fd(ends[0]), Fd(ends[1]));
}

Result<std::pair<Fd, Fd>> make_stream_socketpair() {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    return last_error("socketpair");
  }
  return std::pair<Fd, Fd>(Fd(ends[0]), Fd(ends[1]));
}

Result<void> set_send_buffer_bytes(int sock, int bytes) {
  if (::setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes) != 0) {
    return last_error("setsockopt(SO_SNDBUF)");
  }
  return {};
}

Result<int> send_buffer_bytes(int sock) {
  int bytes = 0;
  socklen_t size = sizeof bytes;
  if (::getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &bytes, &size) != 0) {
    return last_error("getsockopt(SO_SNDBUF)");
  }
  return bytes;
}

Result<size_t> send_with_fds(int sock, std::span<const std::byte> message, std::span<const int> fds,
                             bool dont_wait) {
  if (message.empty() || fds.size() > kMaxFdsPerMessage) return Error{EINVAL, "sendmsg"};
  iovec piece{const_cast<std::byte*>(message.data()), message.size()};
  msghdr header{};
  header.msg_iov = &piece;
  header.msg_iovlen = 1;
  ControlBuffer control;
  if (!fds.empty()) {
    std::memset(&control, 0, sizeof control);
    header.msg_control = control.bytes;
    header.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* entry = CMSG_FIRSTHDR(&header);
    entry->cmsg_level = SOL_SOCKET;
    entry->cmsg_type = SCM_RIGHTS;
    entry->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(entry), fds.data(), sizeof(int) * fds.size());
  }
  const int flags = MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0);
  ssize_t n = retry_on_eintr([&] { return ::sendmsg(sock, &header, flags); });
  if (n < 0) return last_error("sendmsg");
  return static_cast<size_t>(n);
}

Result<size_t> recv_with_fds(int sock, std::span<std::byte> buffer, std::vector<Fd>& fds_out) {
  iovec piece{buffer.data(), buffer.size()};
  msghdr header{};
  header.msg_iov = &piece;
  header.msg_iovlen = 1;
  ControlBuffer control;
  header.msg_control = control.bytes;
  header.msg_controllen = sizeof control.bytes;
  ssize_t n = retry_on_eintr([&] { return ::recvmsg(sock, &header, MSG_CMSG_CLOEXEC); });
  if (n < 0) return last_error("recvmsg");

  // Take ownership of every descriptor first, so that none leaks on the error paths below.
  const size_t first_new = fds_out.size();
  for (cmsghdr* entry = CMSG_FIRSTHDR(&header); entry != nullptr;
       entry = CMSG_NXTHDR(&header, entry)) {
    if (entry->cmsg_level != SOL_SOCKET || entry->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (entry->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(entry) + i * sizeof(int), sizeof fd);
      fds_out.emplace_back(fd);
    }
  }
  if ((header.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    fds_out.resize(first_new);  // closes what this message brought
    return Error{EMSGSIZE, "recvmsg"};
  }
  return static_cast<size_t>(n);
}

}  // namespace pipepool::os
