// os/io.cpp: read/write/writev, single-shot and looping.
#include "os/io.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include "os/eintr.hpp"
#include "os/fd.hpp"
#include "os/timeout.hpp"

namespace pipepool::os {
namespace {

IoResult from_return(ssize_t n, bool is_read) {
  if (n > 0) return IoResult{static_cast<size_t>(n), IoResult::Ok, 0};
  if (n == 0) return IoResult{0, is_read ? IoResult::Eof : IoResult::Ok, 0};
  if (errno == EAGAIN || errno == EWOULDBLOCK) return IoResult{0, IoResult::WouldBlock, 0};
  return IoResult{0, IoResult::Error, errno};
}

// Blocks until fd is ready for `events` (used by the loops on O_NONBLOCK descriptors).
Result<void> wait_ready(int fd, short events) {
  pollfd entry{fd, events, 0};
  Result<int> ready = poll_fds(std::span<pollfd>(&entry, 1), -1);
  if (!ready.ok()) return ready.failure();
  return {};
}

}  // namespace

IoResult read_some(int fd, std::span<std::byte> buffer) {
  if (buffer.empty()) return IoResult{};
  ssize_t n = retry_on_eintr([&] { return ::read(fd, buffer.data(), buffer.size()); });
  return from_return(n, /*is_read=*/true);
}

IoResult write_some(int fd, std::span<const std::byte> bytes) {
  if (bytes.empty()) return IoResult{};
  ssize_t n = retry_on_eintr([&] { return ::write(fd, bytes.data(), bytes.size()); });
  return from_return(n, /*is_read=*/false);
}

IoResult writev_some(int fd, std::span<const iovec> pieces) {
  if (pieces.empty()) return IoResult{};
  const int count = static_cast<int>(std::min<size_t>(pieces.size(), IOV_MAX));
  ssize_t n = retry_on_eintr([&] { return ::writev(fd, pieces.data(), count); });
  return from_return(n, /*is_read=*/false);
}

Result<void> write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    IoResult r = write_some(fd, bytes);
    switch (r.status) {
      case IoResult::Ok:
        bytes = bytes.subspan(r.bytes);
        break;
      case IoResult::WouldBlock:
        if (auto w = wait_ready(fd, POLLOUT); !w.ok()) return w;
        break;
      case IoResult::Eof:
      case IoResult::Error:
        return Error{r.error, "write"};
    }
  }
  return {};
}

// The write-all loop of writev_all and sendv_all: `some` makes one call of at most kBatch pieces.
template <class Some>
Result<void> gather_all(int fd, std::span<const iovec> pieces, Some some, const char* what) {
  // A window of at most kBatch pieces is copied to the stack, the first one advanced past what
  // was already written; nothing is allocated and the caller's pieces stay untouched.
  constexpr size_t kBatch = 64;
  std::array<iovec, kBatch> window;
  size_t index = 0;   // first piece not completely written
  size_t offset = 0;  // bytes of pieces[index] already written
  for (;;) {
    while (index < pieces.size() && offset == pieces[index].iov_len) {
      ++index;  // skip finished and empty pieces
      offset = 0;
    }
    if (index == pieces.size()) return {};
    size_t count = 0;
    for (size_t i = index; i < pieces.size() && count < kBatch; ++i) {
      if (pieces[i].iov_len == 0) continue;
      window[count] = pieces[i];
      if (i == index) {
        window[count].iov_base = static_cast<char*>(pieces[i].iov_base) + offset;
        window[count].iov_len -= offset;
      }
      ++count;
    }
    IoResult r = some(std::span<const iovec>(window.data(), count));
    switch (r.status) {
      case IoResult::Ok: {
        size_t written = r.bytes;
        while (written > 0) {  // advance (index, offset) by `written` bytes
          size_t left = pieces[index].iov_len - offset;
          if (written < left) {
            offset += written;
            written = 0;
          } else {
            written -= left;
            ++index;
            offset = 0;
          }
        }
        break;
      }
      case IoResult::WouldBlock:
        if (auto w = wait_ready(fd, POLLOUT); !w.ok()) return w;
        break;
      case IoResult::Eof:
      case IoResult::Error:
        return Error{r.error, what};
    }
  }
}

Result<void> writev_all(int fd, std::span<const iovec> pieces) {
  return gather_all(
      fd, pieces, [fd](std::span<const iovec> window) { return writev_some(fd, window); },
      "writev");
}

IoResult vmsplice_some(int fd, std::span<const iovec> pieces, bool dont_wait) {
  if (pieces.empty()) return IoResult{};
  const size_t count = std::min<size_t>(pieces.size(), IOV_MAX);
  const unsigned int flags = dont_wait ? SPLICE_F_NONBLOCK : 0;
  ssize_t n = retry_on_eintr([&] { return ::vmsplice(fd, pieces.data(), count, flags); });
  return from_return(n, /*is_read=*/false);
}

Result<void> vmsplice_all(int fd, std::span<const iovec> pieces) {
  return gather_all(
      fd, pieces, [fd](std::span<const iovec> window) { return vmsplice_some(fd, window, false); },
      "vmsplice");
}

IoResult sendv_some(int sock, std::span<const iovec> pieces, bool dont_wait) {
  if (pieces.empty()) return IoResult{};
  msghdr header{};
  header.msg_iov = const_cast<iovec*>(pieces.data());
  header.msg_iovlen = std::min<size_t>(pieces.size(), IOV_MAX);
  const int flags = MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0);
  ssize_t n = retry_on_eintr([&] { return ::sendmsg(sock, &header, flags); });
  return from_return(n, /*is_read=*/false);
}

Result<void> sendv_all(int sock, std::span<const iovec> pieces) {
  return gather_all(
      sock, pieces,
      [sock](std::span<const iovec> window) { return sendv_some(sock, window, false); }, "sendmsg");
}

IoResult recv_some(int sock, std::span<std::byte> buffer, bool dont_wait) {
  if (buffer.empty()) return IoResult{};
  const int flags = dont_wait ? MSG_DONTWAIT : 0;
  ssize_t n = retry_on_eintr([&] { return ::recv(sock, buffer.data(), buffer.size(), flags); });
  return from_return(n, /*is_read=*/true);
}

Result<size_t> read_exact(int fd, std::span<std::byte> buffer) {
  size_t done = 0;
  while (done < buffer.size()) {
    IoResult r = read_some(fd, buffer.subspan(done));
    switch (r.status) {
      case IoResult::Ok:
        done += r.bytes;
        break;
      case IoResult::Eof:
        return done;
      case IoResult::WouldBlock:
        if (auto w = wait_ready(fd, POLLIN); !w.ok()) return w.failure();
        break;
      case IoResult::Error:
        return Error{r.error, "read"};
    }
  }
  return done;
}

Result<int> poll_fds(std::span<pollfd> fds, int timeout_ms) {
  TimeoutBudget budget(timeout_ms);
  int n = retry_on_eintr(
      [&] { return ::poll(fds.data(), static_cast<nfds_t>(fds.size()), budget.remaining_ms()); });
  if (n < 0) return last_error("poll");
  return n;
}

Result<std::string> read_whole_file(const char* path, size_t max_bytes) {
  Result<Fd> file = open_file(path, O_RDONLY);
  if (!file.ok()) return file.failure();
  std::string content;
  std::array<std::byte, 4096> chunk;
  while (content.size() < max_bytes) {
    size_t want = std::min(chunk.size(), max_bytes - content.size());
    IoResult r = read_some(file.value().get(), std::span(chunk.data(), want));
    if (r.status == IoResult::Eof) break;
    if (r.status != IoResult::Ok) return Error{r.error != 0 ? r.error : EAGAIN, "read"};
    content.append(reinterpret_cast<const char*>(chunk.data()), r.bytes);
  }
  return content;
}

}  // namespace pipepool::os
