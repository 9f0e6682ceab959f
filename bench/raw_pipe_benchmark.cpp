// bench/raw_pipe_benchmark.cpp: the physical limit. The same loads as echo_benchmark.cpp over the
// same kind of pipes, with no pool: no framing, no codec, no scheduler, no I/O thread.
//
// Per benchmark run, `workers` children are forked once, each with a task pipe and a result pipe
// (capacity left at the kernel default, or raised with F_SETPIPE_SZ to /proc/sys/fs/pipe-max-size
// for "enlarged", as the pool does). A child does what a pool worker does at the least: read one
// whole message (in_bytes), write one reply (out_bytes), repeat. The parent writes every message
// of the iteration while reading replies, from one poll loop on non-blocking ends, so it never
// deadlocks. Bytes processed count payload in + out, as for the pool.
#include <benchmark/benchmark.h>
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "bench_mode.hpp"
#include "case_alarm.hpp"
#include "echo_load.hpp"
#include "os/fd.hpp"
#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os/process.hpp"

namespace pipepool::bench {
namespace {

struct Child {
  pid_t pid = -1;
  os::Fd task_write;   // parent -> child, non-blocking in the parent
  os::Fd result_read;  // child -> parent, non-blocking in the parent
  uint64_t to_send = 0, sent = 0, to_receive = 0, received = 0;
};

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
int serve(int task_read, int result_write, std::span<std::byte> buffer, uint64_t in_bytes,
          uint64_t out_bytes) {
  while (true) {
    auto got = os::read_exact(task_read, buffer.first(in_bytes));
    if (!got.ok() || got.value() < in_bytes) return got.ok() && got.value() == 0 ? 0 : 1;
    if (!os::write_all(result_write, buffer.first(out_bytes)).ok()) return 2;
  }
}

class RawEcho {
 public:
  explicit RawEcho(const EchoLoad& load)
      : load_(load),
        child_buffer_(std::max(load.in_bytes(), load.out_bytes())),
        send_buffer_(kMessagesPerWorker * load.in_bytes(), std::byte{'s'}),
        receive_buffer_(std::max<uint64_t>(kMessagesPerWorker * load.out_bytes(), 1)) {
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
      std::span<std::byte> buffer(child_buffer_);
      const uint64_t in_bytes = load.in_bytes(), out_bytes = load.out_bytes();
      const pid_t pid = checked(os::fork_child([&]() -> int {
        if (!os::close_fds_except(keep).ok()) return 4;
        return serve(child_task_read, child_result_write, buffer, in_bytes, out_bytes);
      }));
      Child& child = children_.emplace_back();
      child.pid = pid;
      child.task_write = std::move(task_write);
      child.result_read = std::move(result_read);
      checked(os::set_nonblocking(child.task_write.get(), true));
      checked(os::set_nonblocking(child.result_read.get(), true));
    }
  }

  ~RawEcho() {
    for (Child& child : children_) {
      child.task_write.reset();   // end of file: the child exits
      child.result_read.reset();  // and cannot block on a reply nobody reads
    }
    for (Child& child : children_) (void)os::wait_pid(child.pid);
  }

  uint64_t capacity_bytes() const { return capacity_bytes_; }

  // One iteration: kMessagesPerWorker messages to every child, every reply back.
  void iterate() {
    for (Child& child : children_) {
      child.to_send = send_buffer_.size();
      child.to_receive = kMessagesPerWorker * load_.out_bytes();
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
          auto wrote =
              os::write_some(child.task_write.get(), std::span(send_buffer_).subspan(child.sent));
          if (wrote.status == os::IoResult::Error) throw std::runtime_error("raw echo: write");
          child.sent += wrote.bytes;
        } else {
          auto got =
              os::read_some(child.result_read.get(),
                            std::span(receive_buffer_)
                                .first(std::min<uint64_t>(receive_buffer_.size(),
                                                          child.to_receive - child.received)));
          if (got.status == os::IoResult::Error || got.status == os::IoResult::Eof) {
            throw std::runtime_error("raw echo: read (child gone?)");
          }
          child.received += got.bytes;
        }
      }
    }
  }

 private:
  EchoLoad load_;
  std::vector<std::byte> child_buffer_, send_buffer_, receive_buffer_;
  std::vector<Child> children_;
  uint64_t capacity_bytes_ = 0;
};

void run_raw_echo(benchmark::State& state, const std::string& name, EchoLoad load) {
  CaseAlarm alarm(name, std::chrono::seconds(120));
  try {
    RawEcho raw(load);
    for (auto _ : state) raw.iterate();
    state.counters["pipe_capacity_bytes"] = static_cast<double>(raw.capacity_bytes());
    state.counters["workers"] = load.workers;
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(load.bytes_per_iteration()));
    state.SetItemsProcessed(state.iterations() * load.messages());
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

}  // namespace

void register_raw_pipe_benchmarks(const BenchMode& mode) {
  for (const EchoLoad& load : echo_loads(mode)) {
    const std::string name = "echo/impl:raw_pipe/" + load.name_suffix();
    benchmark::RegisterBenchmark(name.c_str(), run_raw_echo, name, load)
        ->UseRealTime()
        ->MinTime(mode.min_time_seconds)
        ->Repetitions(mode.repetitions)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace pipepool::bench
