// Test support for sim/socket_model_test.cpp: a real socketpair(AF_UNIX, SOCK_STREAM) driven with
// the same calls as a SocketPairModel. Tests only: this file makes system calls, which sim/ code
// proper never does. Every call returns -errno on failure, as the model does.
#pragma once

#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <span>
#include <stdexcept>
#include <vector>

namespace pipepool::sim::testing {

// One socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC), both descriptors blocking: the test's own
// calls are non-blocking per call (MSG_DONTWAIT), so that a writer thread can block in write(2) on
// the same descriptor. SIGPIPE is not suppressed (no MSG_NOSIGNAL): the test blocks and counts it.
class RealSocketPair {
 public:
  RealSocketPair() {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_) != 0) {
      throw std::runtime_error("socketpair failed");
    }
  }
  ~RealSocketPair() {
    close_end(0);
    close_end(1);
  }
  RealSocketPair(const RealSocketPair&) = delete;
  RealSocketPair& operator=(const RealSocketPair&) = delete;

  int fd(int end) const { return fds_[end]; }
  bool open(int end) const { return fds_[end] >= 0; }

  int64_t send_nowait(int end, std::span<const std::byte> data) {
    return value(::send(fds_[end], data.data(), data.size(), MSG_DONTWAIT));
  }
  // sendmsg(2) of several parts at once (one iov_iter, as writev), MSG_DONTWAIT.
  int64_t sendv_nowait(int end, std::span<const std::span<const std::byte>> parts) {
    std::vector<iovec> iov;
    for (const auto& p : parts) iov.push_back({const_cast<std::byte*>(p.data()), p.size()});
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    return value(::sendmsg(fds_[end], &msg, MSG_DONTWAIT));
  }
  // write(2) of the whole buffer on the (blocking) descriptor: for the writer thread.
  int64_t write_blocking(int end, std::span<const std::byte> data) {
    return value(::write(fds_[end], data.data(), data.size()));
  }
  int64_t recv_nowait(int end, std::span<std::byte> out) {
    return value(::recv(fds_[end], out.data(), out.size(), MSG_DONTWAIT));
  }
  int64_t set_sndbuf(int end, int value_bytes) {
    return value(setsockopt(fds_[end], SOL_SOCKET, SO_SNDBUF, &value_bytes, sizeof value_bytes));
  }
  int64_t sndbuf(int end) const {
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fds_[end], SOL_SOCKET, SO_SNDBUF, &v, &len) != 0) return -errno;
    return v;
  }
  int64_t inq(int end) const { return ioctl_int(end, SIOCINQ); }
  int64_t outq(int end) const { return ioctl_int(end, SIOCOUTQ); }
  // poll() revents of one end, asked for everything the model answers.
  short poll_end(int end) const {
    pollfd p{fds_[end], POLLIN | POLLOUT | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) < 0) return -1;
    return p.revents;
  }
  void close_end(int end) {
    if (fds_[end] >= 0) ::close(fds_[end]);
    fds_[end] = -1;
  }

 private:
  static int64_t value(int64_t r) { return r < 0 ? -errno : r; }
  int64_t ioctl_int(int end, unsigned long request) const {
    int n = 0;
    if (ioctl(fds_[end], request, &n) != 0) return -errno;
    return n;
  }

  int fds_[2] = {-1, -1};
};

// /proc/sys/net/core/<name> (wmem_max, wmem_default), or `fallback` if it cannot be read.
inline uint32_t net_core_sysctl(const char* name, uint32_t fallback) {
  std::ifstream in(std::string("/proc/sys/net/core/") + name);
  uint64_t v = 0;
  if (!(in >> v) || v == 0 || v > 0x7fffffff) return fallback;
  return static_cast<uint32_t>(v);
}

}  // namespace pipepool::sim::testing
