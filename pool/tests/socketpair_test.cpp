// Transport::SocketPair and Framing::Python on real processes: the pool API over socketpairs, what
// the pool reports about them, a worker's death, the validation, and the epoll fact the driver
// relies on (two descriptors of one socket are two registrations). The strategy matrix runs over
// both transports in strategy_matrix_test.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "os/epoll.hpp"
#include "os/fd.hpp"
#include "os/io.hpp"
#include "os/socket.hpp"
#include "pipepool/pipepool.hpp"
#include "process_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using pipepool::Framing;
using pipepool::Strategy;
using pipepool::Transport;

int square(int x) {
  return x * x;
}
int fail_on_odd(int x) {
  if (x % 2 == 1) throw std::invalid_argument("odd: " + std::to_string(x));
  return x;
}
std::string echo(std::string s) {
  return s;
}
pid_t get_pid(int) {
  return getpid();
}
int sleep_seconds(int seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  return seconds;
}
int die_by_sigkill(int) {
  raise(SIGKILL);
  return 0;
}

pipepool::Options sockets(int processes, Strategy strategy = Strategy::Epoll) {
  return {.processes = processes, .strategy = strategy, .transport = Transport::SocketPair};
}
pipepool::Options python(int processes, Strategy strategy = Strategy::Epoll) {
  pipepool::Options o = sockets(processes, strategy);
  o.framing = Framing::Python;
  o.python_task_overhead_bytes = 100;
  o.python_result_overhead_bytes = 60;
  return o;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST(SocketPairOs, TwoDescriptorsOfOneSocketAreTwoEpollRegistrations) {
  // epoll keys a registration by (open file, descriptor number): a dup of a socket can be watched
  // for EPOLLOUT while the original is watched for EPOLLIN, each reporting its own token.
  auto pair = pipepool::os::make_stream_socketpair().value();
  pipepool::os::Fd dup = pipepool::os::dup_cloexec(pair.first.get()).value();
  auto epoll = pipepool::os::Epoll::create().value();
  ASSERT_TRUE(epoll.add(pair.first.get(), EPOLLIN, 1).ok());
  ASSERT_TRUE(epoll.add(dup.get(), EPOLLOUT, 2).ok());
  epoll_event ready[4];
  int n = epoll.wait(ready, 0).value();
  ASSERT_EQ(n, 1);  // room to write, nothing to read
  EXPECT_EQ(ready[0].data.u64, 2u);
  const char byte = 'x';
  ASSERT_EQ(::write(pair.second.get(), &byte, 1), 1);
  n = epoll.wait(ready, 0).value();
  ASSERT_EQ(n, 2);
  EXPECT_NE(ready[0].data.u64, ready[1].data.u64);
  // Removing one leaves the other.
  ASSERT_TRUE(epoll.remove(dup.get()).ok());
  n = epoll.wait(ready, 0).value();
  ASSERT_EQ(n, 1);
  EXPECT_EQ(ready[0].data.u64, 1u);
}

TEST(SocketPairOs, DontWaitIsPerCallAndAGonePeerIsEpipeWithoutSigpipe) {
  auto pair = pipepool::os::make_stream_socketpair().value();
  ASSERT_TRUE(pipepool::os::set_send_buffer_bytes(pair.first.get(), 4096).ok());
  EXPECT_EQ(pipepool::os::send_buffer_bytes(pair.first.get()).value(), 8192);  // doubled
  std::vector<char> big(1 << 20, 'b');
  const iovec piece{big.data(), big.size()};
  // Non-blocking on a blocking socket: fills what it can, then would block.
  pipepool::os::IoResult r = pipepool::os::sendv_some(pair.first.get(), {&piece, 1}, true);
  ASSERT_EQ(r.status, pipepool::os::IoResult::Ok);
  EXPECT_LT(r.bytes, big.size());
  r = pipepool::os::sendv_some(pair.first.get(), {&piece, 1}, true);
  EXPECT_EQ(r.status, pipepool::os::IoResult::WouldBlock);
  std::byte in[16];
  EXPECT_EQ(pipepool::os::recv_some(pair.first.get(), in, true).status,
            pipepool::os::IoResult::WouldBlock);
  pair.second.reset();  // the peer closes with our bytes unread
  r = pipepool::os::sendv_some(pair.first.get(), {&piece, 1}, false);
  ASSERT_EQ(r.status, pipepool::os::IoResult::Error);
  EXPECT_EQ(r.error, EPIPE);  // and this process is still alive: MSG_NOSIGNAL
}

TEST(SocketPairPool, ApiBasics) {
  for (const pipepool::Options& options : {sockets(2), python(2)}) {
    SCOPED_TRACE(options.framing == Framing::Python ? "python framing" : "pipepool framing");
    pipepool::Pool pool(options);
    std::vector<int> xs(200);
    for (int i = 0; i < 200; ++i) xs[i] = i;
    auto ys = pool.map(square, xs, 7);
    for (int i = 0; i < 200; ++i) ASSERT_EQ(ys[i], i * i);
    EXPECT_EQ(pool.apply(square, 12), 144);
    long sum = 0;
    for (int y : pool.imap_unordered(square, xs)) sum += y;
    EXPECT_EQ(sum, 2646700);
    int expected = 0;
    for (int y : pool.imap(square, xs, 3)) {
      EXPECT_EQ(y, expected * expected);
      ++expected;
    }
    EXPECT_THROW(pool.map(fail_on_odd, xs), std::invalid_argument);
    try {
      pool.apply(fail_on_odd, 3);
      ADD_FAILURE() << "no error";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "odd: 3");
    }
    // Both sides of Python's 16,384-byte boundary and a large payload, both ways.
    for (size_t n : {size_t{16384 - 100}, size_t{16385 - 100}, size_t{16384 - 60},
                     size_t{16385 - 60}, size_t{3} << 20}) {
      const std::string in(n, 'p');
      EXPECT_EQ(pool.apply(echo, in), in) << n;
    }
    auto a = pool.apply_async(echo, std::string(1 << 20, 'a'));
    auto b = pool.apply_async(echo, std::string(1 << 20, 'b'));
    EXPECT_EQ(a.get(), std::string(1 << 20, 'a'));
    EXPECT_EQ(b.get(), std::string(1 << 20, 'b'));
    pool.close();
    pool.join();
  }
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(2000).empty());
}

TEST(SocketPairPool, ReportsTheSocketBufferNotAPipe) {
  pipepool::Pool kept(sockets(1));
  EXPECT_EQ(kept.pipe_capacity_bytes(), 0u);
  EXPECT_GT(kept.socket_sndbuf_bytes(), 0u);  // net.core.wmem_default
  pipepool::Options small = sockets(1);
  small.socket_sndbuf_bytes = 10000;
  pipepool::Pool set(small);
  EXPECT_EQ(set.socket_sndbuf_bytes(), 20000u);  // the kernel doubles it
  EXPECT_EQ(set.apply(echo, std::string(100000, 's')), std::string(100000, 's'));
  pipepool::Pool pipes(1);
  EXPECT_EQ(pipes.socket_sndbuf_bytes(), 0u);
  EXPECT_GE(pipes.pipe_capacity_bytes(), 65536u);
}

TEST(SocketPairPool, SettingsThatDoNotGoTogetherAreRejected) {
  pipepool::Options o = sockets(1);
  o.pipe_capacity_bytes = 65536;
  EXPECT_THROW(pipepool::Pool{o}, std::invalid_argument);
  EXPECT_THROW(pipepool::Pool(pipepool::Options{.processes = 1, .socket_sndbuf_bytes = 4096}),
               std::invalid_argument);
  o = python(1);
  o.python_result_overhead_bytes = 16;
  try {
    pipepool::Pool pool(o);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("python_result_overhead_bytes of at least 32"),
              std::string::npos)
        << e.what();
  }
  o = python(0);  // also for the inline pool, which has no channel
  o.python_task_overhead_bytes = 0;
  EXPECT_THROW(pipepool::Pool{o}, std::invalid_argument);
  // Python framing over pipes is allowed: the framing is the protocol's, the transport the pool's.
  pipepool::Options over_pipes = python(1);
  over_pipes.transport = Transport::Pipes;
  pipepool::Pool pool(over_pipes);
  EXPECT_EQ(pool.apply(echo, std::string(20000, 'q')), std::string(20000, 'q'));
}

// A worker killed while the parent is in the middle of a blocking send of a task larger than the
// socket's buffer: the send fails (EPIPE or ECONNRESET, no SIGPIPE), the running task fails with
// WorkerLost, the one that never started runs on the replacement. Nothing hangs.
TEST(SocketPairPool, AWorkerKilledMidSendIsWorkerLost) {
  for (Strategy strategy : {Strategy::Unbatched, Strategy::Epoll}) {
    SCOPED_TRACE(std::string(pipepool::to_string(strategy)));
    pipepool::Options options = sockets(1, strategy);
    options.scheduler = pipepool::SchedulerKind::ShortestBacklog;  // both tasks go at once
    pipepool::Pool pool(options);
    const pid_t pid = pool.apply(get_pid, 0);
    auto sleeping = pool.apply_async(sleep_seconds, 30);
    const std::string big(8 << 20, 'k');
    auto queued = pool.apply_async(echo, big);
    std::this_thread::sleep_for(200ms);  // the parent is blocked in (or polling) its send
    const auto start = Clock::now();
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    EXPECT_THROW(sleeping.get(), pipepool::WorkerLost);
    EXPECT_LT(seconds_since(start), 5.0);
    EXPECT_EQ(queued.get(), big);  // never started: sent again to the new worker
    EXPECT_THROW(pool.apply(die_by_sigkill, 0), pipepool::WorkerLost);
    EXPECT_EQ(pool.apply(square, 9), 81);
    EXPECT_GE(pool.stats().workers_lost, 2u);
  }
  EXPECT_TRUE(pipepool::testing::wait_for_no_descendants(2000).empty());
}

}  // namespace
