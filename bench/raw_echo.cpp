#include "raw_echo.hpp"

#include <poll.h>

#include <algorithm>
#include <span>
#include <stdexcept>

#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os/process.hpp"

namespace pipepool::bench {
namespace {

// Throws std::runtime_error with the failed call's message.
template <class T>
T checked(os::Result<T> result) {
  if (!result.ok()) throw std::runtime_error(result.message());
  return std::move(result.value());
}
void checked(os::Result<void> result) {
  if (!result.ok()) throw std::runtime_error(result.message());
}

// Runs in the child (async-signal-safe calls only; `buffer` was allocated before the fork).
// splice: replies are vmspliced from `reply`, which nothing writes any more.
int serve(int task_read, int result_write, std::span<std::byte> buffer, uint64_t in_bytes,
          uint64_t out_bytes, std::span<std::byte> reply, bool splice) {
  while (true) {
    auto got = os::read_exact(task_read, buffer.first(in_bytes));
    if (!got.ok() || got.value() < in_bytes) return got.ok() && got.value() == 0 ? 0 : 1;
    if (splice) {
      const iovec piece{reply.data(), out_bytes};
      if (out_bytes != 0 && !os::vmsplice_all(result_write, std::span(&piece, 1)).ok()) return 2;
      continue;
    }
    if (!os::write_all(result_write, buffer.first(out_bytes)).ok()) return 2;
  }
}

}  // namespace

RawEcho::RawEcho(const EchoLoad& load, bool splice)
    : load_(load),
      splice_(splice),
      child_buffer_(std::max(load.in_bytes(), load.out_bytes())),
      reply_buffer_(splice ? std::max<uint64_t>(load.out_bytes(), 1) : 1),
      send_buffer_(load.messages_per_worker * load.in_bytes(), std::byte{'s'}),
      receive_buffer_(std::max<uint64_t>(load.messages_per_worker * load.out_bytes(), 1)) {
  if (splice) std::fill(reply_buffer_.span.begin(), reply_buffer_.span.end(), std::byte{'r'});
  for (int i = 0; i < load.workers; ++i) {
    auto [task_read, task_write] = checked(os::make_pipe());
    auto [result_read, result_write] = checked(os::make_pipe());
    if (load.enlarged_pipes) {
      checked(os::set_pipe_capacity(task_write.get(), os::pipe_max_size()));
      checked(os::set_pipe_capacity(result_write.get(), os::pipe_max_size()));
    }
    capacity_bytes_ = checked(os::pipe_capacity(task_write.get()));
    const int keep[] = {0, 1, 2, task_read.get(), result_write.get()};
    const int child_task_read = task_read.get(), child_result_write = result_write.get();
    std::span<std::byte> buffer = child_buffer_.span;
    std::span<std::byte> reply = reply_buffer_.span;
    const uint64_t in_bytes = load.in_bytes(), out_bytes = load.out_bytes();
    const pid_t pid = checked(os::fork_child([&]() -> int {
      if (!os::close_fds_except(keep).ok()) return 4;
      return serve(child_task_read, child_result_write, buffer, in_bytes, out_bytes, reply, splice);
    }));
    Child& child = children_.emplace_back();
    child.pid = pid;
    child.task_write = std::move(task_write);
    child.result_read = std::move(result_read);
    checked(os::set_nonblocking(child.task_write.get(), true));
    checked(os::set_nonblocking(child.result_read.get(), true));
  }
}

RawEcho::~RawEcho() {
  for (Child& child : children_) {
    child.task_write.reset();   // end of file: the child exits
    child.result_read.reset();  // and cannot block on a reply nobody reads
  }
  for (Child& child : children_) (void)os::wait_pid(child.pid);
}

// One iteration: load.messages_per_worker messages to every child, every reply back.
void RawEcho::iterate() {
  for (Child& child : children_) {
    child.to_send = send_buffer_.size();
    child.to_receive = load_.messages_per_worker * load_.out_bytes();
    child.sent = child.received = 0;
  }
  std::vector<pollfd> fds;
  std::vector<Child*> owners;
  while (true) {
    fds.clear();
    owners.clear();
    for (Child& child : children_) {
      if (child.sent < child.to_send) {
        fds.push_back({child.task_write.get(), POLLOUT, 0});
        owners.push_back(&child);
      }
      if (child.received < child.to_receive) {
        fds.push_back({child.result_read.get(), POLLIN, 0});
        owners.push_back(&child);
      }
    }
    if (fds.empty()) return;
    checked(os::poll_fds(fds, -1));
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Child& child = *owners[i];
      if (fds[i].events == POLLOUT) {
        const std::span<const std::byte> rest = std::span(send_buffer_).subspan(child.sent);
        const iovec piece{const_cast<std::byte*>(rest.data()), rest.size()};
        auto wrote = splice_ ? os::vmsplice_some(child.task_write.get(), std::span(&piece, 1), true)
                             : os::write_some(child.task_write.get(), rest);
        if (wrote.status == os::IoResult::Error) throw std::runtime_error("raw echo: write");
        child.sent += wrote.bytes;
      } else {
        auto got =
            os::read_some(child.result_read.get(),
                          receive_buffer_.span.first(std::min<uint64_t>(
                              receive_buffer_.span.size(), child.to_receive - child.received)));
        if (got.status == os::IoResult::Error || got.status == os::IoResult::Eof) {
          throw std::runtime_error("raw echo: read (child gone?)");
        }
        child.received += got.bytes;
      }
    }
  }
}

}  // namespace pipepool::bench
