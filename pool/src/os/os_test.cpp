// Tests of the os layer on real descriptors and processes. Every test that forks reaps what it
// forked (ReapGuard), and the watchdog main bounds every test in time.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "os/cpu.hpp"
#include "os/epoll.hpp"
#include "os/eventfd.hpp"
#include "os/fd.hpp"
#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os/process.hpp"
#include "os/result.hpp"
#include "os/signals.hpp"
#include "os/socket.hpp"
#include "os_test_util.hpp"

namespace pipepool::os {
namespace {

using test::ReapGuard;

std::span<const std::byte> as_bytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

std::string to_string(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::vector<std::byte> pattern(size_t size, unsigned seed) {
  std::vector<std::byte> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>((i * 131 + seed) % 251);
  return bytes;
}

std::pair<Fd, Fd> pipe_or_die() {
  Result<std::pair<Fd, Fd>> p = make_pipe();
  if (!p.ok()) throw std::runtime_error(p.message());
  return std::move(p).value();
}

bool fd_is_open(int fd) {
  return ::fcntl(fd, F_GETFD) >= 0;
}

// ---------------------------------------------------------------- Result, Fd

TEST(ResultTest, MessageNamesTheCallAndTheErrno) {
  Result<int> failed = Error{EMFILE, "pipe2"};
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(failed.error(), EMFILE);
  EXPECT_STREQ(failed.operation(), "pipe2");
  EXPECT_EQ(failed.message(), "pipe2: Too many open files");
  EXPECT_THROW((void)failed.value(), BadResultAccess);

  Result<int> fine = 42;
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(fine.value(), 42);
  EXPECT_EQ(fine.error(), 0);

  Result<void> done;
  EXPECT_TRUE(done.ok());
  Result<void> undone = Error{EPIPE, "write"};
  EXPECT_EQ(undone.message(), "write: Broken pipe");
  EXPECT_EQ(undone.failure().code, EPIPE);
}

TEST(FdTest, OwnsClosesReleasesAndMoves) {
  auto [read_end, write_end] = pipe_or_die();
  const int r = read_end.get();
  const int w = write_end.get();
  ASSERT_TRUE(read_end);
  {
    Fd moved = std::move(read_end);
    EXPECT_FALSE(read_end);  // NOLINT: testing the moved-from state
    EXPECT_EQ(moved.get(), r);
  }
  EXPECT_FALSE(fd_is_open(r));

  int raw = write_end.release();
  EXPECT_EQ(raw, w);
  EXPECT_FALSE(write_end);
  EXPECT_TRUE(fd_is_open(w));
  Fd again(raw);
  again.reset();
  EXPECT_FALSE(fd_is_open(w));
  EXPECT_FALSE(again);
}

// ---------------------------------------------------------------- pipes and capacity

// What Linux makes of a capacity request: whole pages, rounded up to a power of two.
size_t expected_capacity(size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t pages = std::max<size_t>(1, (bytes + page - 1) / page);
  size_t power = 1;
  while (power < pages) power *= 2;
  return power * page;
}

TEST(PipeTest, CapacitySetGetAndRounding) {
  auto [read_end, write_end] = pipe_or_die();
  ASSERT_TRUE(pipe_capacity(read_end.get()).ok());
  EXPECT_EQ(pipe_capacity(read_end.get()).value(), 65536u);  // the kernel default

  for (size_t request : {size_t{1}, size_t{4096}, size_t{12288}, size_t{100000}, size_t{1} << 20}) {
    Result<size_t> set = set_pipe_capacity(write_end.get(), request);
    ASSERT_TRUE(set.ok()) << set.message();
    EXPECT_EQ(set.value(), expected_capacity(request)) << "request " << request;
    // The capacity belongs to the pipe: visible from the other end too.
    EXPECT_EQ(pipe_capacity(read_end.get()).value(), set.value());
  }
  EXPECT_EQ(expected_capacity(100000), 131072u);  // on 4 KiB pages: 25 pages -> 32
}

TEST(PipeTest, ShrinkingBelowContentIsEbusy) {
  auto [read_end, write_end] = pipe_or_die();
  std::vector<std::byte> data = pattern(3 * 4096, 1);
  ASSERT_TRUE(write_all(write_end.get(), data).ok());
  Result<size_t> shrink = set_pipe_capacity(write_end.get(), 4096);
  EXPECT_FALSE(shrink.ok());
  EXPECT_EQ(shrink.error(), EBUSY);
  EXPECT_EQ(set_pipe_capacity(write_end.get(), size_t{1} << 40).error(), EINVAL);
}

TEST(PipeTest, MaxSizeComesFromProc) {
  std::ifstream in("/proc/sys/fs/pipe-max-size");
  size_t expected = 0;
  if (!(in >> expected)) GTEST_SKIP() << "no /proc/sys/fs/pipe-max-size";
  EXPECT_EQ(pipe_max_size(), expected);
}

// ---------------------------------------------------------------- reads and writes

TEST(IoTest, ShortReadReturnsWhatIsThere) {
  auto [read_end, write_end] = pipe_or_die();
  ASSERT_TRUE(write_all(write_end.get(), as_bytes("0123456789")).ok());
  std::vector<std::byte> buffer(1000);
  IoResult r = read_some(read_end.get(), buffer);
  EXPECT_EQ(r.status, IoResult::Ok);
  EXPECT_EQ(r.bytes, 10u);
  EXPECT_EQ(to_string(std::span(buffer).first(r.bytes)), "0123456789");
}

TEST(IoTest, WouldBlockIsAValueAndWritesAreShortOnAFullPipe) {
  auto [read_end, write_end] = pipe_or_die();
  ASSERT_TRUE(set_nonblocking(read_end.get(), true).ok());
  ASSERT_TRUE(set_nonblocking(write_end.get(), true).ok());
  const size_t capacity = pipe_capacity(write_end.get()).value();

  std::vector<std::byte> buffer(16);
  IoResult empty = read_some(read_end.get(), buffer);
  EXPECT_EQ(empty.status, IoResult::WouldBlock);
  EXPECT_EQ(empty.error, 0);

  std::vector<std::byte> big = pattern(4 * capacity, 2);
  IoResult first = write_some(write_end.get(), big);
  ASSERT_EQ(first.status, IoResult::Ok);
  EXPECT_EQ(first.bytes, capacity);  // a short write: exactly what fits
  IoResult full = write_some(write_end.get(), big);
  EXPECT_EQ(full.status, IoResult::WouldBlock);

  std::vector<std::byte> all(capacity);
  EXPECT_EQ(read_exact(read_end.get(), all).value(), capacity);
  EXPECT_TRUE(std::equal(all.begin(), all.end(), big.begin()));
  write_end.reset();
  EXPECT_EQ(read_some(read_end.get(), buffer).status, IoResult::Eof);
}

TEST(IoTest, ReadExactReturnsLessOnlyAtEof) {
  auto [read_end, write_end] = pipe_or_die();
  ASSERT_TRUE(write_all(write_end.get(), as_bytes("abc")).ok());
  write_end.reset();
  std::vector<std::byte> buffer(100);
  Result<size_t> n = read_exact(read_end.get(), buffer);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 3u);
  EXPECT_EQ(read_some(read_end.get(), {}).status, IoResult::Ok);  // empty request: no syscall
}

TEST(IoTest, LoopsWorkOnNonblockingDescriptors) {
  auto [read_end, write_end] = pipe_or_die();
  ASSERT_TRUE(set_nonblocking(read_end.get(), true).ok());
  ASSERT_TRUE(set_nonblocking(write_end.get(), true).ok());
  const std::vector<std::byte> data = pattern(size_t{3} << 20, 3);
  std::thread writer([&, fd = write_end.get()] { EXPECT_TRUE(write_all(fd, data).ok()); });
  std::vector<std::byte> got(data.size());
  Result<size_t> n = read_exact(read_end.get(), got);
  writer.join();
  ASSERT_TRUE(n.ok()) << n.message();
  EXPECT_EQ(n.value(), data.size());
  EXPECT_TRUE(got == data);
}

TEST(IoTest, WritevAllAcrossManyIovecsWithAConcurrentReader) {
  auto [read_end, write_end] = pipe_or_die();
  // A one-page pipe, so that nearly every writev is short and ends inside some piece.
  ASSERT_TRUE(set_pipe_capacity(write_end.get(), 4096).ok());
  const std::vector<std::byte> data = pattern(900'000, 4);
  std::vector<iovec> pieces;
  size_t offset = 0;
  for (size_t i = 0; offset < data.size(); ++i) {
    size_t length = std::min((i * 7919) % 613, data.size() - offset);  // zeros included
    pieces.push_back(iovec{const_cast<std::byte*>(data.data() + offset), length});
    offset += length;
  }
  ASSERT_GT(pieces.size(), size_t{IOV_MAX});  // more pieces than one writev can take
  const std::vector<iovec> original = pieces;

  std::vector<std::byte> got;
  std::thread reader([&, fd = read_end.get()] {
    std::vector<std::byte> chunk(1500);
    for (;;) {
      IoResult r = read_some(fd, chunk);
      if (r.status != IoResult::Ok) break;
      got.insert(got.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(r.bytes));
    }
  });
  Result<void> written = writev_all(write_end.get(), pieces);
  write_end.reset();
  reader.join();
  ASSERT_TRUE(written.ok()) << written.message();
  EXPECT_TRUE(got == data);
  for (size_t i = 0; i < pieces.size(); ++i) {  // the caller's pieces are untouched
    EXPECT_EQ(pieces[i].iov_base, original[i].iov_base);
    EXPECT_EQ(pieces[i].iov_len, original[i].iov_len);
  }
}

TEST(IoTest, WritevSomeTakesAtMostIovMaxPieces) {
  auto [read_end, write_end] = pipe_or_die();
  std::vector<std::byte> data = pattern(3000, 5);
  std::vector<iovec> pieces;
  for (auto& b : data) pieces.push_back(iovec{&b, 1});
  IoResult r = writev_some(write_end.get(), pieces);
  ASSERT_EQ(r.status, IoResult::Ok);
  EXPECT_EQ(r.bytes, size_t{IOV_MAX});
}

// ---------------------------------------------------------------- SIGPIPE

// In a fresh child (default SIGPIPE disposition): write to a pipe whose reader is closed.
int write_to_closed_pipe(bool block_sigpipe) {
  auto p = make_pipe();
  if (!p.ok()) return 10;
  auto& [read_end, write_end] = p.value();
  read_end.reset();
  Result<void> r;
  IoResult single;
  {
    std::optional<ScopedSigpipeBlock> guard;
    if (block_sigpipe) guard.emplace();
    single = write_some(write_end.get(), as_bytes("x"));
    r = write_all(write_end.get(), as_bytes("hello"));
  }
  // Still alive: the guard consumed the SIGPIPE and restored the mask.
  if (single.status != IoResult::Error || single.error != EPIPE) return 11;
  if (r.ok() || r.error() != EPIPE) return 12;
  sigset_t pending;
  sigpending(&pending);
  if (sigismember(&pending, SIGPIPE)) return 13;
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  if (sigismember(&mask, SIGPIPE)) return 14;
  return 0;
}

TEST(SigpipeTest, WithoutTheGuardAWriteToAClosedPipeKills) {
  Result<pid_t> pid = fork_child([] { return write_to_closed_pipe(false); });
  ASSERT_TRUE(pid.ok());
  ReapGuard child(pid.value());
  Result<ExitStatus> status = child.wait();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.value().signal, SIGPIPE) << status.value().describe();
}

TEST(SigpipeTest, TheScopedBlockTurnsItIntoEpipe) {
  Result<pid_t> pid = fork_child([] { return write_to_closed_pipe(true); });
  ASSERT_TRUE(pid.ok());
  ReapGuard child(pid.value());
  Result<ExitStatus> status = child.wait();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.value(), (ExitStatus{0, 0, false})) << status.value().describe();
}

TEST(SigpipeTest, TheScopedBlockInThisThreadLeavesNoTrace) {
  auto [read_end, write_end] = pipe_or_die();
  read_end.reset();
  {
    ScopedSigpipeBlock guard;
    EXPECT_EQ(write_all(write_end.get(), as_bytes("x")).error(), EPIPE);
  }
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
}

TEST(SigpipeTest, AnAlreadyBlockedSigpipeStaysBlocked) {
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  sigset_t before;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &sigpipe, &before), 0);
  { ScopedSigpipeBlock guard; }
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, nullptr, &now);
  EXPECT_TRUE(sigismember(&now, SIGPIPE));
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

// ---------------------------------------------------------------- eventfd and epoll

TEST(EpollTest, EventfdWakesWaitAndDrains) {
  Result<Epoll> epoll = Epoll::create();
  ASSERT_TRUE(epoll.ok());
  Result<Fd> wake = make_eventfd();
  ASSERT_TRUE(wake.ok());
  ASSERT_TRUE(epoll.value().add(wake.value().get(), EPOLLIN, 42).ok());
  std::array<epoll_event, 4> events{};
  EXPECT_EQ(epoll.value().wait(events, 0).value(), 0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(notify_eventfd(wake.value().get()).ok());
  ASSERT_EQ(epoll.value().wait(events, 1000).value(), 1);
  EXPECT_EQ(events[0].data.u64, 42u);
  EXPECT_EQ(drain_eventfd(wake.value().get()).value(), 3u);
  EXPECT_EQ(drain_eventfd(wake.value().get()).value(), 0u);
  EXPECT_EQ(epoll.value().wait(events, 0).value(), 0);
}

TEST(EpollTest, NotifyFromAnotherThreadWakesABlockedWait) {
  Epoll epoll = Epoll::create().value();
  Fd wake = make_eventfd().value();
  ASSERT_TRUE(epoll.add(wake.get(), EPOLLIN, 7).ok());
  std::thread poker([fd = wake.get()] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    (void)notify_eventfd(fd);
  });
  std::array<epoll_event, 1> events{};
  Result<int> n = epoll.wait(events, -1);
  poker.join();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 1);
}

TEST(EpollTest, WaitTimesOutAfterItsTimeout) {
  Epoll epoll = Epoll::create().value();
  std::array<epoll_event, 1> events{};
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(epoll.wait(events, 60).value(), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(60));
}

TEST(EpollTest, ModifyAndRemove) {
  Epoll epoll = Epoll::create().value();
  auto [read_end, write_end] = pipe_or_die();
  std::array<epoll_event, 2> events{};
  ASSERT_TRUE(epoll.add(write_end.get(), EPOLLOUT, 1).ok());
  ASSERT_EQ(epoll.wait(events, 0).value(), 1);
  ASSERT_TRUE(epoll.modify(write_end.get(), EPOLLIN, 2).ok());
  EXPECT_EQ(epoll.wait(events, 0).value(), 0);
  EXPECT_EQ(epoll.add(write_end.get(), EPOLLOUT, 1).error(), EEXIST);
  ASSERT_TRUE(epoll.remove(write_end.get()).ok());
  Result<void> again = epoll.remove(write_end.get());
  EXPECT_EQ(again.error(), ENOENT);
  EXPECT_EQ(again.message(), "epoll_ctl(DEL): No such file or directory");
}

// ---------------------------------------------------------------- Unix sockets

TEST(SocketTest, ScmRightsRoundTrip) {
  auto pair = make_socketpair();
  ASSERT_TRUE(pair.ok());
  auto& [left, right] = pair.value();
  auto [read_end, write_end] = pipe_or_die();
  auto [read_end2, write_end2] = pipe_or_die();

  const int fds[] = {write_end.get(), write_end2.get()};
  Result<size_t> sent = send_with_fds(left.get(), as_bytes("hello"), fds);
  ASSERT_TRUE(sent.ok()) << sent.message();
  EXPECT_EQ(sent.value(), 5u);

  std::vector<std::byte> buffer(64);
  std::vector<Fd> received;
  Result<size_t> n = recv_with_fds(right.get(), buffer, received);
  ASSERT_TRUE(n.ok()) << n.message();
  EXPECT_EQ(to_string(std::span(buffer).first(n.value())), "hello");
  ASSERT_EQ(received.size(), 2u);
  for (const Fd& fd : received) {
    EXPECT_TRUE(is_cloexec(fd.get()));
    EXPECT_NE(fd.get(), write_end.get());
  }
  // The received descriptor is the same pipe.
  ASSERT_TRUE(write_all(received[0].get(), as_bytes("via scm")).ok());
  std::vector<std::byte> got(7);
  EXPECT_EQ(read_exact(read_end.get(), got).value(), 7u);
  EXPECT_EQ(to_string(got), "via scm");

  // Messages keep their boundaries, and a closed peer reads as end of file.
  ASSERT_TRUE(send_with_fds(left.get(), as_bytes("one"), {}).ok());
  ASSERT_TRUE(send_with_fds(left.get(), as_bytes("two"), {}).ok());
  left.reset();
  received.clear();
  EXPECT_EQ(recv_with_fds(right.get(), buffer, received).value(), 3u);
  EXPECT_EQ(recv_with_fds(right.get(), buffer, received).value(), 3u);
  EXPECT_EQ(recv_with_fds(right.get(), buffer, received).value(), 0u);
  EXPECT_TRUE(received.empty());
}

TEST(SocketTest, TruncatedMessageIsAnErrorAndLeaksNothing) {
  auto [left, right] = make_socketpair().value();
  auto [read_end, write_end] = pipe_or_die();
  const int fds[] = {write_end.get()};
  ASSERT_TRUE(send_with_fds(left.get(), as_bytes("a long message"), fds).ok());
  const std::vector<int> before = list_open_fds();
  std::vector<std::byte> small(4);
  std::vector<Fd> received;
  Result<size_t> n = recv_with_fds(right.get(), small, received);
  EXPECT_EQ(n.error(), EMSGSIZE);
  EXPECT_TRUE(received.empty());
  EXPECT_EQ(list_open_fds(), before);
}

TEST(SocketTest, ClosedPeerIsEpipeNotASignal) {
  auto [left, right] = make_socketpair().value();
  right.reset();
  Result<size_t> sent = send_with_fds(left.get(), as_bytes("x"), {});  // MSG_NOSIGNAL
  EXPECT_EQ(sent.error(), EPIPE);
  EXPECT_EQ(send_with_fds(left.get(), {}, {}).error(), EINVAL);  // empty message
}

// ---------------------------------------------------------------- close-on-exec, fd table

TEST(CloexecTest, EveryDescriptorTheLayerCreatesIsCloexec) {
  const std::vector<int> before = list_open_fds();
  {
    auto pipe = make_pipe().value();
    Fd event = make_eventfd().value();
    Epoll epoll = Epoll::create().value();
    auto sockets = make_socketpair().value();
    auto stream = make_stream_socketpair().value();
    Fd duplicate = dup_cloexec(STDERR_FILENO).value();
    Fd file = open_file("/proc/self/status", O_RDONLY).value();
    Result<pid_t> pid = fork_child([] {
      ::pause();
      return 0;
    });
    ASSERT_TRUE(pid.ok());
    ReapGuard child(pid.value());
    Fd pidfd = pidfd_open(pid.value()).value();
    const int fds[] = {pipe.second.get()};
    ASSERT_TRUE(send_with_fds(sockets.first.get(), as_bytes("fd"), fds).ok());
    std::vector<std::byte> buffer(8);
    std::vector<Fd> received;
    ASSERT_TRUE(recv_with_fds(sockets.second.get(), buffer, received).ok());

    const std::vector<int> during = list_open_fds();
    std::vector<int> created;
    std::set_difference(during.begin(), during.end(), before.begin(), before.end(),
                        std::back_inserter(created));
    // 2 pipe + eventfd + epoll + 2 seqpacket + 2 stream + dup + file + pidfd + received
    EXPECT_EQ(created.size(), 12u);
    for (int fd : created) EXPECT_TRUE(is_cloexec(fd)) << "descriptor " << fd;
    ASSERT_TRUE(pidfd_send_signal(pidfd.get(), SIGKILL).ok());
    EXPECT_EQ(child.wait().value().signal, SIGKILL);
  }
  EXPECT_EQ(list_open_fds(), before);  // and every one of them was closed again
}

TEST(CloexecTest, CloseFdsExceptKeepsOnlyTheListed) {
  Result<pid_t> pid = fork_child([] {
    auto a = make_pipe();
    auto b = make_pipe();
    if (!a.ok() || !b.ok()) return 10;
    const int keep[] = {b.value().first.get(), STDERR_FILENO, STDIN_FILENO, STDOUT_FILENO,
                        STDERR_FILENO};
    if (!close_fds_except(keep).ok()) return 11;
    std::vector<int> expected = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, b.value().first.get()};
    std::vector<int> now = list_open_fds();
    std::vector<int> kept;
    for (int fd : expected) {
      if (std::binary_search(now.begin(), now.end(), fd)) kept.push_back(fd);
    }
    return now == kept && std::count(now.begin(), now.end(), b.value().first.get()) == 1 ? 0 : 12;
  });
  ASSERT_TRUE(pid.ok());
  ReapGuard child(pid.value());
  EXPECT_EQ(child.wait().value(), (ExitStatus{0, 0, false}));
}

// ---------------------------------------------------------------- EINTR under a signal flood

std::atomic<int> g_signals_handled{0};
void count_signal(int) {
  g_signals_handled.fetch_add(1, std::memory_order_relaxed);
}

// Installs a no-op SIGUSR1 handler *without* SA_RESTART (so that blocking calls fail with EINTR
// unless retried) and sends SIGUSR1 to the test thread every 100 us. Test-only: restored after.
class SignalFlood {
 public:
  SignalFlood() {
    struct sigaction action {};
    action.sa_handler = count_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART
    sigaction(SIGUSR1, &action, &previous_);
    g_signals_handled = 0;
    thread_ = std::thread([this, target = pthread_self()] {
      while (!stop_.load()) {
        pthread_kill(target, SIGUSR1);
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    });
  }
  ~SignalFlood() {
    stop_ = true;
    thread_.join();
    sigaction(SIGUSR1, &previous_, nullptr);
  }

 private:
  struct sigaction previous_ {};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(EintrTest, BlockingCallsSurviveASignalFlood) {
  auto [read_end, write_end] = pipe_or_die();
  auto [read_end2, write_end2] = pipe_or_die();
  ASSERT_TRUE(set_pipe_capacity(write_end2.get(), 4096).ok());
  auto [left, right] = make_socketpair().value();
  Epoll epoll = Epoll::create().value();
  const std::vector<std::byte> big = pattern(size_t{1} << 20, 6);
  std::vector<std::byte> big_got;

  SignalFlood flood;
  // read_exact on a pipe fed slowly.
  std::thread slow_writer([fd = write_end.get()] {
    for (int i = 0; i < 100; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
      (void)write_all(fd, as_bytes("z"));
    }
  });
  std::vector<std::byte> got(100);
  Result<size_t> n = read_exact(read_end.get(), got);
  slow_writer.join();
  ASSERT_TRUE(n.ok()) << n.message();
  EXPECT_EQ(n.value(), 100u);

  // write_all into a one-page pipe drained slowly.
  std::thread slow_reader([&, fd = read_end2.get()] {
    std::vector<std::byte> chunk(8192);
    for (;;) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      IoResult r = read_some(fd, chunk);
      if (r.status != IoResult::Ok) break;
      big_got.insert(big_got.end(), chunk.begin(),
                     chunk.begin() + static_cast<std::ptrdiff_t>(r.bytes));
    }
  });
  Result<void> w = write_all(write_end2.get(), big);
  write_end2.reset();
  slow_reader.join();
  ASSERT_TRUE(w.ok()) << w.message();
  EXPECT_TRUE(big_got == big);

  // epoll_wait and poll keep their full timeout.
  std::array<epoll_event, 1> events{};
  auto start = std::chrono::steady_clock::now();
  Result<int> waited = epoll.wait(events, 80);
  ASSERT_TRUE(waited.ok()) << waited.message();
  EXPECT_EQ(waited.value(), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(80));
  pollfd entry{read_end.get(), POLLIN, 0};
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(poll_fds(std::span(&entry, 1), 80).value(), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(80));

  // recvmsg on a socket, sent to later.
  std::thread sender([fd = left.get()] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    (void)send_with_fds(fd, as_bytes("late"), {});
  });
  std::vector<std::byte> buffer(16);
  std::vector<Fd> fds;
  Result<size_t> received = recv_with_fds(right.get(), buffer, fds);
  sender.join();
  ASSERT_TRUE(received.ok()) << received.message();
  EXPECT_EQ(received.value(), 4u);

  // waitpid on a child that takes a while.
  Result<pid_t> pid = fork_child([] {
    ::usleep(50'000);
    return 5;
  });
  ASSERT_TRUE(pid.ok());
  ReapGuard child(pid.value());
  Result<ExitStatus> status = child.wait();
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(status.value().code, 5);

  EXPECT_GT(g_signals_handled.load(), 100) << "the flood did not interrupt anything";
}

// ---------------------------------------------------------------- processes

TEST(ProcessTest, ExitStatusDescribesItself) {
  EXPECT_EQ((ExitStatus{0, 3, false}).describe(), "exited with code 3");
  EXPECT_EQ((ExitStatus{9, 0, false}).describe(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ((ExitStatus{11, 0, true}).describe(), "killed by signal 11 (SIGSEGV), core dumped");
  EXPECT_EQ((ExitStatus{SIGRTMIN + 2, 0, false}).describe(),
            "killed by signal " + std::to_string(SIGRTMIN + 2) + " (SIGRTMIN+2)");
  EXPECT_EQ(ExitStatus::from_wait_status(3 << 8), (ExitStatus{0, 3, false}));
  EXPECT_EQ(ExitStatus::from_wait_status(SIGTERM), (ExitStatus{SIGTERM, 0, false}));
}

TEST(ProcessTest, ForkChildReportsExitCodesAndSignals) {
  Result<pid_t> exits = fork_child([] { return 3; });
  ASSERT_TRUE(exits.ok());
  ReapGuard first(exits.value());
  Result<ExitStatus> status = first.wait();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.value(), (ExitStatus{0, 3, false}));
  EXPECT_EQ(status.value().describe(), "exited with code 3");

  Result<pid_t> killed = fork_child([] {
    ::raise(SIGKILL);
    return 0;
  });
  ASSERT_TRUE(killed.ok());
  ReapGuard second(killed.value());
  status = second.wait();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.value(), (ExitStatus{SIGKILL, 0, false}));
  EXPECT_EQ(status.value().describe(), "killed by signal 9 (SIGKILL)");

  // A function pointer and context work as well as a lambda.
  static int exit_code = 17;
  Result<pid_t> plain =
      fork_child(ChildSetup{[](void* context) { return *static_cast<int*>(context); }, &exit_code});
  ASSERT_TRUE(plain.ok());
  ReapGuard third(plain.value());
  EXPECT_EQ(third.wait().value().code, 17);
}

void ignore_signal(int) {}

TEST(ProcessTest, ChildStartsWithDefaultDispositionsTheOriginalMaskAndADeathSignal) {
  // Test-only changes to this process, undone below: a SIGUSR2 handler, SIGHUP ignored, SIGUSR2
  // blocked in this thread.
  struct sigaction handler {};
  handler.sa_handler = ignore_signal;
  sigemptyset(&handler.sa_mask);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  struct sigaction old_usr2 {};
  struct sigaction old_hup {};
  sigaction(SIGUSR2, &handler, &old_usr2);
  sigaction(SIGHUP, &ignore, &old_hup);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigset_t old_mask;
  pthread_sigmask(SIG_BLOCK, &usr2, &old_mask);
  const pid_t parent = ::getpid();

  Result<pid_t> pid = fork_child([parent] {
    struct sigaction now {};
    sigaction(SIGUSR2, nullptr, &now);
    if (now.sa_handler != SIG_DFL) return 10;
    sigaction(SIGHUP, nullptr, &now);
    if (now.sa_handler != SIG_DFL) return 11;
    sigset_t mask;
    sigprocmask(SIG_SETMASK, nullptr, &mask);
    if (!sigismember(&mask, SIGUSR2)) return 12;  // the original mask is back...
    if (sigismember(&mask, SIGTERM)) return 13;   // ...not the all-blocked one
    int death_signal = 0;
    prctl(PR_GET_PDEATHSIG, &death_signal);
    if (death_signal != SIGKILL) return 14;
    if (::getppid() != parent) return 15;
    return 0;
  });
  sigset_t after;
  pthread_sigmask(SIG_SETMASK, &old_mask, &after);
  sigaction(SIGUSR2, &old_usr2, nullptr);
  sigaction(SIGHUP, &old_hup, nullptr);
  ASSERT_TRUE(pid.ok());
  ReapGuard child(pid.value());
  EXPECT_FALSE(sigismember(&after, SIGTERM));  // the parent's mask was restored too
  EXPECT_EQ(child.wait().value(), (ExitStatus{0, 0, false}));
}

TEST(ProcessTest, PidfdSignalAndWait) {
  Result<pid_t> pid = fork_child([] {
    ::pause();
    return 0;
  });
  ASSERT_TRUE(pid.ok());
  ReapGuard child(pid.value());
  Result<Fd> pidfd = pidfd_open(pid.value());
  ASSERT_TRUE(pidfd.ok()) << pidfd.message();

  Result<std::optional<ExitStatus>> early = wait_pidfd(pidfd.value().get(), true);
  ASSERT_TRUE(early.ok()) << early.message();
  EXPECT_FALSE(early.value().has_value());
  Result<std::optional<ExitStatus>> try_early = try_wait_pid(pid.value());
  ASSERT_TRUE(try_early.ok());
  EXPECT_FALSE(try_early.value().has_value());

  ASSERT_TRUE(pidfd_send_signal(pidfd.value().get(), SIGTERM).ok());
  Result<std::optional<ExitStatus>> done = wait_pidfd(pidfd.value().get(), false);
  ASSERT_TRUE(done.ok()) << done.message();
  ASSERT_TRUE(done.value().has_value());
  EXPECT_EQ(*done.value(), (ExitStatus{SIGTERM, 0, false}));
  (void)child.wait();  // already reaped by waitid: ECHILD, and disarms the guard

  EXPECT_EQ(pidfd_send_signal(pidfd.value().get(), SIGTERM).error(), ESRCH);
  EXPECT_EQ(wait_pid(pid.value()).error(), ECHILD);
}

TEST(ProcessTest, ChildDiesWithItsParent) {
  test::ScopedSubreaper subreaper;  // the orphaned grandchild comes to us, to be reaped
  auto [read_end, write_end] = pipe_or_die();
  Result<pid_t> middle = fork_child([fd = write_end.get()] {
    Result<pid_t> grandchild = fork_child([] {
      ::pause();
      return 0;
    });
    if (!grandchild.ok()) return 10;
    pid_t value = grandchild.value();
    if (!write_all(fd, std::as_bytes(std::span(&value, 1))).ok()) return 11;
    ::pause();
    return 0;
  });
  ASSERT_TRUE(middle.ok());
  ReapGuard middle_guard(middle.value());
  write_end.reset();
  pid_t grandchild = -1;
  ASSERT_EQ(read_exact(read_end.get(), std::as_writable_bytes(std::span(&grandchild, 1))).value(),
            sizeof grandchild);
  ASSERT_TRUE(send_signal(middle.value(), SIGKILL).ok());
  EXPECT_EQ(middle_guard.wait().value().signal, SIGKILL);

  std::optional<ExitStatus> orphan = test::wait_with_deadline(grandchild, 2000);
  ASSERT_TRUE(orphan.has_value()) << "the grandchild outlived its parent by 2 s";
  // Killed by its death signal, or, if its parent died while it was still starting (before
  // PR_SET_PDEATHSIG was armed), it noticed at the getppid() check.
  EXPECT_TRUE(*orphan == (ExitStatus{SIGKILL, 0, false}) ||
              *orphan == (ExitStatus{0, kParentGoneExitCode, false}))
      << orphan->describe();
  EXPECT_TRUE(test::process_gone(grandchild));
}

// ---------------------------------------------------------------- CPUs and cgroups

TEST(CpuTest, ParsesCgroupV2CpuMax) {
  EXPECT_EQ(parse_cgroup_v2_cpu_max("50000 100000"), 0.5);
  EXPECT_EQ(parse_cgroup_v2_cpu_max("150000 100000\n"), 1.5);
  EXPECT_EQ(parse_cgroup_v2_cpu_max("max 100000\n"), std::nullopt);
  EXPECT_EQ(parse_cgroup_v2_cpu_max("max"), std::nullopt);
  EXPECT_EQ(parse_cgroup_v2_cpu_max("200000"), 2.0);  // period defaults to 100000
  EXPECT_EQ(parse_cgroup_v2_cpu_max(""), std::nullopt);
  EXPECT_EQ(parse_cgroup_v2_cpu_max("abc 100000"), std::nullopt);
  EXPECT_EQ(parse_cgroup_v2_cpu_max("50000 0"), std::nullopt);
  EXPECT_EQ(parse_cgroup_v2_cpu_max("1 2 3"), std::nullopt);
}

TEST(CpuTest, ParsesCgroupV1Quota) {
  EXPECT_EQ(parse_cgroup_v1_cpu_quota("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(parse_cgroup_v1_cpu_quota("50000\n", "100000\n"), 0.5);
  EXPECT_EQ(parse_cgroup_v1_cpu_quota("250000", "100000"), 2.5);
  EXPECT_EQ(parse_cgroup_v1_cpu_quota("50000", ""), std::nullopt);
  EXPECT_EQ(parse_cgroup_v1_cpu_quota("x", "100000"), std::nullopt);
}

TEST(CpuTest, ParsesProcSelfCgroup) {
  const std::string hybrid =
      "9:name=systemd:/\n4:memory:/process_api/c45b\n3:cpuset:/\n2:cpuacct:/\n"
      "1:cpu:/pool/a:b\n0::/user.slice\n";
  EXPECT_EQ(parse_proc_self_cgroup(hybrid, "cpu"), "/pool/a:b");  // ':' inside a path is kept
  EXPECT_EQ(parse_proc_self_cgroup(hybrid, ""), "/user.slice");
  EXPECT_EQ(parse_proc_self_cgroup("5:cpu,cpuacct:/docker/abc\n", "cpu"), "/docker/abc");
  EXPECT_EQ(parse_proc_self_cgroup("5:cpuacct,cpuset:/x\n", "cpu"), std::nullopt);
  EXPECT_EQ(parse_proc_self_cgroup("0::/\n", ""), "/");
  EXPECT_EQ(parse_proc_self_cgroup("0::/\n", "cpu"), std::nullopt);
}

TEST(CpuTest, ParsesMountinfo) {
  const std::string mountinfo =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
      "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
  auto v1 = parse_mountinfo_cgroup(mountinfo, "cpu", "/a");
  ASSERT_TRUE(v1.has_value());
  EXPECT_EQ(v1->mount_point, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(v1->root, "/");
  auto v2 = parse_mountinfo_cgroup(mountinfo, "", "/");
  ASSERT_TRUE(v2.has_value());
  EXPECT_EQ(v2->mount_point, "/sys/fs/cgroup/unified");  // optional field "shared:9" skipped
  EXPECT_FALSE(parse_mountinfo_cgroup(mountinfo, "memory", "/").has_value());

  // A container: the hierarchy mounted from its own cgroup, twice; the better root wins.
  const std::string container =
      "100 90 0:40 /other /mnt/x rw - cgroup cgroup rw,cpu,cpuacct\n"
      "101 90 0:40 /docker/abc /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpuacct,cpu\n";
  auto mount = parse_mountinfo_cgroup(container, "cpu", "/docker/abc/inner");
  ASSERT_TRUE(mount.has_value());
  EXPECT_EQ(mount->root, "/docker/abc");
  EXPECT_EQ(mount->mount_point, "/sys/fs/cgroup/cpu x");  // \040 unescaped
}

TEST(CpuTest, CgroupDirectory) {
  EXPECT_EQ(cgroup_directory({"/", "/sys/fs/cgroup/cpu"}, "/a/b"), "/sys/fs/cgroup/cpu/a/b");
  EXPECT_EQ(cgroup_directory({"/", "/sys/fs/cgroup/cpu"}, "/"), "/sys/fs/cgroup/cpu");
  EXPECT_EQ(cgroup_directory({"/docker/abc", "/sys/fs/cgroup/cpu"}, "/docker/abc"),
            "/sys/fs/cgroup/cpu");
  EXPECT_EQ(cgroup_directory({"/docker/abc", "/sys/fs/cgroup/cpu"}, "/docker/abc/x"),
            "/sys/fs/cgroup/cpu/x");
  EXPECT_EQ(cgroup_directory({"/docker/abc", "/sys/fs/cgroup/cpu"}, "/docker/abcd"),
            "/sys/fs/cgroup/cpu");  // not under the root: the mount point
  EXPECT_EQ(cgroup_directory({"/", "/sys/fs/cgroup"}, "/../../x"), "/sys/fs/cgroup");
}

TEST(CpuTest, CombinesAffinityAndQuota) {
  EXPECT_EQ(combine_cpu_limits(8, 0.5), 1);
  EXPECT_EQ(combine_cpu_limits(8, 1.5), 2);
  EXPECT_EQ(combine_cpu_limits(8, 2.0), 2);
  EXPECT_EQ(combine_cpu_limits(8, 2.0000000001), 2);
  EXPECT_EQ(combine_cpu_limits(2, 4.0), 2);
  EXPECT_EQ(combine_cpu_limits(8, std::nullopt), 8);
  EXPECT_EQ(combine_cpu_limits(0, std::nullopt), 1);
  EXPECT_EQ(combine_cpu_limits(8, 0.001), 1);
}

TEST(CpuTest, QuotaFromAFakeFilesystem) {
  std::map<std::string, std::string> files = {
      {"/proc/self/cgroup", "2:cpuacct:/\n1:cpu:/a/b\n0::/x\n"},
      {"/proc/self/mountinfo",
       "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
       "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"},
      {"/sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us", "-1\n"},
      {"/sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us", "100000\n"},
      {"/sys/fs/cgroup/cpu/a/cpu.cfs_quota_us", "150000\n"},  // the parent limits
      {"/sys/fs/cgroup/cpu/a/cpu.cfs_period_us", "100000\n"},
      {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"},
      {"/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"},
      {"/sys/fs/cgroup/unified/x/cpu.max", "max 100000\n"},
  };
  FileReader read = [&](const std::string& path) -> std::optional<std::string> {
    auto it = files.find(path);
    if (it == files.end()) return std::nullopt;
    return it->second;
  };
  EXPECT_EQ(cgroup_cpu_quota(read), 1.5);
  EXPECT_EQ(combine_cpu_limits(8, cgroup_cpu_quota(read)), 2);

  files["/sys/fs/cgroup/unified/x/cpu.max"] = "50000 100000\n";  // v2 is tighter
  EXPECT_EQ(cgroup_cpu_quota(read), 0.5);

  files.erase("/sys/fs/cgroup/cpu/a/cpu.cfs_quota_us");
  files["/sys/fs/cgroup/unified/x/cpu.max"] = "max 100000\n";
  EXPECT_EQ(cgroup_cpu_quota(read), std::nullopt);

  files.erase("/proc/self/mountinfo");
  EXPECT_EQ(cgroup_cpu_quota(read), std::nullopt);
}

TEST(CpuTest, AvailableCpusOnThisMachine) {
  const int affinity = affinity_cpus();
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(affinity, CPU_COUNT(&set));
  const int available = available_cpus();
  EXPECT_GE(available, 1);
  EXPECT_LE(available, affinity);
}

// Root only, with cgroup v1's cpu controller at /sys/fs/cgroup/cpu (as on the dev machine): a
// child moved into a cgroup with half a CPU of quota sees available_cpus() == 1.
TEST(CpuTest, RealCgroupV1QuotaIsHonoured) {
  const std::string base = "/sys/fs/cgroup/cpu";
  struct stat info {};
  if (::geteuid() != 0 || ::stat((base + "/cpu.cfs_quota_us").c_str(), &info) != 0) {
    GTEST_SKIP() << "needs root and cgroup v1 cpu at " << base;
  }
  std::string self_cgroup = read_whole_file("/proc/self/cgroup").value();
  std::optional<std::string> own = parse_proc_self_cgroup(self_cgroup, "cpu");
  if (!own || *own != "/") GTEST_SKIP() << "this process is not in the root cpu cgroup";
  const std::string group = base + "/pipepool_test_" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(group.c_str(), 0755), 0) << std::strerror(errno);
  struct RemoveGroup {  // destroyed after the child below is reaped: the cgroup is empty then
    std::string path;
    ~RemoveGroup() { ::rmdir(path.c_str()); }
  } remove_group{group};
  auto write_file = [](const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text << std::flush;
    return static_cast<bool>(out);
  };
  ASSERT_TRUE(write_file(group + "/cpu.cfs_period_us", "100000"));
  ASSERT_TRUE(write_file(group + "/cpu.cfs_quota_us", "50000"));

  auto [go_read, go_write] = pipe_or_die();
  Result<pid_t> pid = fork_child([fd = go_read.get()] {
    std::byte go{};
    Result<size_t> n = read_exact(fd, std::span(&go, 1));
    if (!n.ok() || n.value() != 1) return 100;
    return available_cpus();  // after the parent moved us into the limited cgroup
  });
  ASSERT_TRUE(pid.ok());
  ReapGuard child(pid.value());
  EXPECT_TRUE(write_file(group + "/cgroup.procs", std::to_string(pid.value())));
  const std::byte go{1};
  ASSERT_TRUE(write_all(go_write.get(), std::span(&go, 1)).ok());
  Result<ExitStatus> status = child.wait();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.value().code, 1) << "half a CPU of quota must give one worker";
}

}  // namespace
}  // namespace pipepool::os
