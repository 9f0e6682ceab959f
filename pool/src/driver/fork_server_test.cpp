// Tests of the fork server on real processes: spawning, echoing through the pipes, pipe capacity,
// exit records, clean shutdown, and cleanup when the server's parent is killed.
#include "driver/fork_server.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "os/io.hpp"
#include "os/pipe.hpp"
#include "os_test_util.hpp"

namespace pipepool::driver {
namespace {

std::span<const std::byte> as_bytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

// Echoes the task pipe to the result pipe until end of file, then exits 0.
int echo_main(void*, int task_read_fd, int result_write_fd) {
  std::byte buffer[4096];
  for (;;) {
    os::IoResult r = os::read_some(task_read_fd, buffer);
    if (r.status == os::IoResult::Eof) return 0;
    if (r.status != os::IoResult::Ok) return 20;
    if (!os::write_all(result_write_fd, std::span(buffer, r.bytes)).ok()) return 21;
  }
}

// Reads one command byte: 'x' exits 7; 'f' writes the list of its open descriptors and exits;
// 's' (or end of file) sleeps until killed.
int command_main(void* context, int task_read_fd, int result_write_fd) {
  const int exit_code = *static_cast<const int*>(context);
  std::byte command{};
  os::Result<size_t> n = os::read_exact(task_read_fd, std::span(&command, 1));
  if (!n.ok()) return 30;
  switch (static_cast<char>(command)) {
    case 'x':
      return exit_code;
    case 'f': {
      std::string listing;
      for (int fd : os::list_open_fds()) listing += std::to_string(fd) + " ";
      listing += "| " + std::to_string(task_read_fd) + " " + std::to_string(result_write_fd);
      return os::write_all(result_write_fd, as_bytes(listing)).ok() ? 0 : 31;
    }
    default:
      for (;;) ::pause();
  }
}

int g_exit_code_seven = 7;

// Waits up to timeout_ms for `count` exit records.
std::map<pid_t, os::ExitStatus> collect_exits(ForkServer& server, size_t count, int timeout_ms) {
  std::map<pid_t, os::ExitStatus> exits;
  const long long deadline = os::test::monotonic_ms() + timeout_ms;
  while (exits.size() < count) {
    while (auto exit = server.read_event()) exits[exit->pid] = exit->status;
    if (exits.size() >= count || server.events_closed()) break;
    const long long left = deadline - os::test::monotonic_ms();
    if (left <= 0) break;
    pollfd entry{server.events_fd(), POLLIN, 0};
    (void)os::poll_fds(std::span(&entry, 1), static_cast<int>(left));
  }
  return exits;
}

TEST(ForkServerTest, SpawnsWorkersThatEcho) {
  os::Result<ForkServer> server = ForkServer::start(&echo_main, nullptr);
  ASSERT_TRUE(server.ok()) << server.message();
  EXPECT_GT(server.value().pid(), 0);

  std::vector<WorkerHandle> workers;
  for (int i = 0; i < 3; ++i) {
    os::Result<WorkerHandle> worker = server.value().spawn();
    ASSERT_TRUE(worker.ok()) << worker.message();
    EXPECT_GT(worker.value().pid, 0);
    EXPECT_EQ(worker.value().pipe_capacity_bytes, 65536u);  // the kernel default
    EXPECT_TRUE(os::is_cloexec(worker.value().task_write.get()));
    EXPECT_TRUE(os::is_cloexec(worker.value().result_read.get()));
    EXPECT_TRUE(os::is_cloexec(worker.value().pidfd.get()));
    workers.push_back(std::move(worker).value());
  }
  for (size_t i = 0; i < workers.size(); ++i) {
    const std::string message = "hello from task " + std::to_string(i);
    ASSERT_TRUE(os::write_all(workers[i].task_write.get(), as_bytes(message)).ok());
    std::string echoed(message.size(), '\0');
    os::Result<size_t> n =
        os::read_exact(workers[i].result_read.get(), std::as_writable_bytes(std::span(echoed)));
    ASSERT_TRUE(n.ok()) << n.message();
    EXPECT_EQ(echoed, message);
  }
  // End of file on the task pipe: each worker exits 0, and the server reports it.
  for (WorkerHandle& worker : workers) worker.task_write.reset();
  std::map<pid_t, os::ExitStatus> exits = collect_exits(server.value(), 3, 5000);
  ASSERT_EQ(exits.size(), 3u);
  for (const WorkerHandle& worker : workers) {
    ASSERT_TRUE(exits.count(worker.pid)) << worker.pid;
    EXPECT_EQ(exits[worker.pid], (os::ExitStatus{0, 0, false})) << exits[worker.pid].describe();
  }
}

TEST(ForkServerTest, PipeCapacityIsApplied) {
  ForkServerOptions options;
  options.pipe_capacity_bytes = size_t{1} << 20;
  os::Result<ForkServer> server = ForkServer::start(&echo_main, nullptr, options);
  ASSERT_TRUE(server.ok()) << server.message();
  os::Result<WorkerHandle> worker = server.value().spawn();
  ASSERT_TRUE(worker.ok()) << worker.message();
  EXPECT_EQ(worker.value().pipe_capacity_bytes, size_t{1} << 20);
  EXPECT_EQ(os::pipe_capacity(worker.value().task_write.get()).value(), size_t{1} << 20);
  EXPECT_EQ(os::pipe_capacity(worker.value().result_read.get()).value(), size_t{1} << 20);

  options.pipe_capacity_bytes = 100000;  // rounded up to 32 pages
  os::Result<ForkServer> rounded = ForkServer::start(&echo_main, nullptr, options);
  ASSERT_TRUE(rounded.ok());
  os::Result<WorkerHandle> other = rounded.value().spawn();
  ASSERT_TRUE(other.ok()) << other.message();
  EXPECT_EQ(other.value().pipe_capacity_bytes, 131072u);
  EXPECT_EQ(os::pipe_capacity(other.value().task_write.get()).value(), 131072u);
}

TEST(ForkServerTest, WorkerKeepsOnlyStdioAndItsPipes) {
  os::Result<ForkServer> server = ForkServer::start(&command_main, &g_exit_code_seven);
  ASSERT_TRUE(server.ok());
  os::Result<WorkerHandle> worker = server.value().spawn();
  ASSERT_TRUE(worker.ok()) << worker.message();
  ASSERT_TRUE(os::write_all(worker.value().task_write.get(), as_bytes("f")).ok());
  std::string listing(256, '\0');
  os::Result<size_t> n =
      os::read_exact(worker.value().result_read.get(), std::as_writable_bytes(std::span(listing)));
  ASSERT_TRUE(n.ok());
  listing.resize(n.value());
  // "<open fds> | <task_read> <result_write>": exactly stdio plus the two pipe ends.
  const size_t bar = listing.find('|');
  ASSERT_NE(bar, std::string::npos) << listing;
  std::string task_read, result_write;
  {
    std::string rest = listing.substr(bar + 2);
    task_read = rest.substr(0, rest.find(' '));
    result_write = rest.substr(rest.find(' ') + 1);
  }
  std::vector<int> expected = {0, 1, 2, std::stoi(task_read), std::stoi(result_write)};
  std::sort(expected.begin(), expected.end());
  std::string expected_text;
  for (int fd : expected) expected_text += std::to_string(fd) + " ";
  EXPECT_EQ(listing.substr(0, bar), expected_text) << listing;
}

TEST(ForkServerTest, SocketpairWorkersKeepOnlyStdioAndTheirSocket) {
  ForkServerOptions options;
  options.socketpairs = true;
  options.socket_sndbuf_bytes = 50000;
  os::Result<ForkServer> server = ForkServer::start(&command_main, &g_exit_code_seven, options);
  ASSERT_TRUE(server.ok()) << server.message();
  os::Result<WorkerHandle> worker = server.value().spawn();
  ASSERT_TRUE(worker.ok()) << worker.message();
  const WorkerHandle& w = worker.value();
  EXPECT_TRUE(w.socket);
  EXPECT_EQ(w.pipe_capacity_bytes, 0u);
  EXPECT_EQ(w.socket_sndbuf_bytes, 100000u);  // doubled by the kernel
  // Two descriptors of one socket, both close-on-exec, neither non-blocking.
  EXPECT_NE(w.task_write.get(), w.result_read.get());
  EXPECT_TRUE(os::is_cloexec(w.task_write.get()));
  EXPECT_TRUE(os::is_cloexec(w.result_read.get()));
  ASSERT_TRUE(os::write_all(w.task_write.get(), as_bytes("f")).ok());
  std::string listing(256, '\0');
  // The worker writes its listing and exits: read to end of file, through the other descriptor.
  os::Result<size_t> n =
      os::read_exact(w.result_read.get(), std::as_writable_bytes(std::span(listing)));
  ASSERT_TRUE(n.ok());
  listing.resize(n.value());
  // "<open fds> | <fd> <fd>": stdio plus the one socket end, passed as both descriptors.
  const size_t bar = listing.find('|');
  ASSERT_NE(bar, std::string::npos) << listing;
  const std::string rest = listing.substr(bar + 2);
  const int fd = std::stoi(rest.substr(0, rest.find(' ')));
  EXPECT_EQ(std::stoi(rest.substr(rest.find(' ') + 1)), fd);
  std::vector<int> expected = {0, 1, 2, fd};
  std::sort(expected.begin(), expected.end());
  std::string expected_text;
  for (int e : expected) expected_text += std::to_string(e) + " ";
  EXPECT_EQ(listing.substr(0, bar), expected_text) << listing;
  std::map<pid_t, os::ExitStatus> exits = collect_exits(server.value(), 1, 5000);
  EXPECT_EQ(exits[w.pid], (os::ExitStatus{0, 0, false}));
}

TEST(ForkServerTest, ExitRecordsCarryCodesAndSignals) {
  os::Result<ForkServer> server = ForkServer::start(&command_main, &g_exit_code_seven);
  ASSERT_TRUE(server.ok()) << server.message();
  EXPECT_FALSE(server.value().read_event().has_value());  // nothing yet, and it does not block

  os::Result<WorkerHandle> exits_seven = server.value().spawn();
  os::Result<WorkerHandle> sleeper = server.value().spawn();
  ASSERT_TRUE(exits_seven.ok() && sleeper.ok());
  ASSERT_TRUE(os::write_all(exits_seven.value().task_write.get(), as_bytes("x")).ok());
  ASSERT_TRUE(os::write_all(sleeper.value().task_write.get(), as_bytes("s")).ok());
  ASSERT_TRUE(os::pidfd_send_signal(sleeper.value().pidfd.get(), SIGKILL).ok());

  std::map<pid_t, os::ExitStatus> exits = collect_exits(server.value(), 2, 5000);
  ASSERT_EQ(exits.size(), 2u);
  EXPECT_EQ(exits[exits_seven.value().pid], (os::ExitStatus{0, 7, false}));
  EXPECT_EQ(exits[exits_seven.value().pid].describe(), "exited with code 7");
  EXPECT_EQ(exits[sleeper.value().pid], (os::ExitStatus{SIGKILL, 0, false}));
  EXPECT_EQ(exits[sleeper.value().pid].describe(), "killed by signal 9 (SIGKILL)");

  // The parent's pidfd is readable once the worker is gone (it cannot waitid: not its child).
  pollfd entry{sleeper.value().pidfd.get(), POLLIN, 0};
  EXPECT_EQ(os::poll_fds(std::span(&entry, 1), 0).value(), 1);
}

TEST(ForkServerTest, SpawnBeyondMaxWorkersFailsWithEagain) {
  ForkServerOptions options;
  options.max_workers = 2;
  os::Result<ForkServer> server = ForkServer::start(&command_main, &g_exit_code_seven, options);
  ASSERT_TRUE(server.ok());
  os::Result<WorkerHandle> a = server.value().spawn();
  os::Result<WorkerHandle> b = server.value().spawn();
  ASSERT_TRUE(a.ok() && b.ok());
  os::Result<WorkerHandle> c = server.value().spawn();
  EXPECT_EQ(c.error(), EAGAIN);
  EXPECT_EQ(c.message(), "fork server: too many workers: Resource temporarily unavailable");

  // An exit frees a slot only once the parent has read its record.
  ASSERT_TRUE(os::write_all(a.value().task_write.get(), as_bytes("x")).ok());
  pollfd entry{a.value().pidfd.get(), POLLIN, 0};
  ASSERT_EQ(os::poll_fds(std::span(&entry, 1), 5000).value(), 1);
  ASSERT_EQ(collect_exits(server.value(), 1, 5000).size(), 1u);
  os::Result<WorkerHandle> d = server.value().spawn();
  EXPECT_TRUE(d.ok()) << d.message();
}

TEST(ForkServerTest, ShutdownLeavesNoProcessAndNoDescriptor) {
  const std::vector<int> fds_before = os::list_open_fds();
  std::vector<pid_t> pids;
  {
    os::Result<ForkServer> server = ForkServer::start(&command_main, &g_exit_code_seven);
    ASSERT_TRUE(server.ok()) << server.message();
    pids.push_back(server.value().pid());
    std::vector<WorkerHandle> workers;
    for (int i = 0; i < 3; ++i) {
      os::Result<WorkerHandle> worker = server.value().spawn();
      ASSERT_TRUE(worker.ok()) << worker.message();
      pids.push_back(worker.value().pid);
      // Busy workers: sleeping in pause(), their pipes still open on our side.
      ASSERT_TRUE(os::write_all(worker.value().task_write.get(), as_bytes("s")).ok());
      workers.push_back(std::move(worker).value());
    }
    server.value().shutdown();
    EXPECT_EQ(server.value().pid(), -1);
    server.value().shutdown();  // idempotent
    EXPECT_EQ(server.value().spawn().error(), ESHUTDOWN);
    for (pid_t pid : pids) EXPECT_TRUE(os::test::process_gone(pid)) << "pid " << pid;
    for (const WorkerHandle& worker : workers) {  // the workers' pipe ends were closed
      std::byte byte{};
      EXPECT_EQ(os::read_some(worker.result_read.get(), std::span(&byte, 1)).status,
                os::IoResult::Eof);
    }
  }
  EXPECT_EQ(os::list_open_fds(), fds_before);
}

TEST(ForkServerTest, DestructorShutsDownAndMoveKeepsOneOwner) {
  pid_t server_pid = -1;
  pid_t worker_pid = -1;
  {
    os::Result<ForkServer> started = ForkServer::start(&echo_main, nullptr);
    ASSERT_TRUE(started.ok());
    ForkServer server = std::move(started).value();
    ForkServer moved = std::move(server);
    EXPECT_EQ(server.pid(), -1);  // NOLINT: testing the moved-from state
    server.shutdown();            // a no-op on the moved-from object
    server_pid = moved.pid();
    os::Result<WorkerHandle> worker = moved.spawn();
    ASSERT_TRUE(worker.ok());
    worker_pid = worker.value().pid;
  }
  EXPECT_TRUE(os::test::process_gone(server_pid));
  EXPECT_TRUE(os::test::process_gone(worker_pid));
}

TEST(ForkServerTest, AServerThatDiesIsReportedNotWaitedFor) {
  os::test::ScopedSubreaper subreaper;  // the orphaned worker comes to us, to be reaped
  os::Result<ForkServer> server = ForkServer::start(&command_main, &g_exit_code_seven);
  ASSERT_TRUE(server.ok());
  os::Result<WorkerHandle> worker = server.value().spawn();
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(os::send_signal(server.value().pid(), SIGKILL).ok());

  // The events socket reaches end of file, and the worker follows its server (death signal).
  EXPECT_TRUE(collect_exits(server.value(), 1, 5000).empty());
  EXPECT_TRUE(server.value().events_closed());
  pollfd entry{worker.value().pidfd.get(), POLLIN, 0};
  EXPECT_EQ(os::poll_fds(std::span(&entry, 1), 2000).value(), 1) << "worker outlived its server";
  os::test::Disappearance gone = os::test::wait_until_gone(worker.value().pid, 2000);
  EXPECT_TRUE(gone.gone);
  os::Result<WorkerHandle> again = server.value().spawn();
  EXPECT_FALSE(again.ok());
  EXPECT_TRUE(again.error() == EPIPE || again.error() == ECONNRESET) << again.message();
  const pid_t server_pid = server.value().pid();
  server.value().shutdown();  // reaps the dead server
  EXPECT_TRUE(os::test::process_gone(server_pid));
}

// The pool's process dies abruptly: its fork server and the workers must follow, quickly.
TEST(ForkServerTest, KillingTheServersParentKillsServerAndWorkers) {
  os::test::ScopedSubreaper subreaper;  // orphans come to this process, which reaps them
  auto report = os::make_pipe();
  ASSERT_TRUE(report.ok());
  auto& [report_read, report_write] = report.value();

  os::Result<pid_t> intermediate = os::fork_child([fd = report_write.get()] {
    os::Result<ForkServer> server = ForkServer::start(&command_main, &g_exit_code_seven);
    if (!server.ok()) return 10;
    os::Result<WorkerHandle> worker = server.value().spawn();
    if (!worker.ok()) return 11;
    if (!os::write_all(worker.value().task_write.get(), as_bytes("s")).ok()) return 12;
    const pid_t pids[2] = {server.value().pid(), worker.value().pid};
    if (!os::write_all(fd, std::as_bytes(std::span(pids))).ok()) return 13;
    for (;;) ::pause();
  });
  ASSERT_TRUE(intermediate.ok());
  os::test::ReapGuard intermediate_guard(intermediate.value());
  report_write.reset();
  pid_t pids[2] = {-1, -1};
  ASSERT_EQ(os::read_exact(report_read.get(), std::as_writable_bytes(std::span(pids))).value(),
            sizeof pids);

  ASSERT_TRUE(os::send_signal(intermediate.value(), SIGKILL).ok());
  EXPECT_EQ(intermediate_guard.wait().value().signal, SIGKILL);
  // Both must be gone within 2 s, whoever reaps them (orphans come to this subreaper).
  // The server is SIGKILLed by its death signal, or sees end of file on its control socket first
  // and exits 0 after killing and reaping its workers. A worker is SIGKILLed (death signal, or
  // by the server), or exits kParentGoneExitCode if its server died while it was still starting.
  const long long start = os::test::monotonic_ms();
  const auto left_ms = [&] {
    return static_cast<int>(std::max(0LL, start + 2000 - os::test::monotonic_ms()));
  };
  os::test::Disappearance server = os::test::wait_until_gone(pids[0], left_ms());
  ASSERT_TRUE(server.gone) << "the fork server outlived its parent by 2 s";
  if (server.status) {
    EXPECT_TRUE(*server.status == (os::ExitStatus{SIGKILL, 0, false}) ||
                *server.status == (os::ExitStatus{0, 0, false}))
        << server.status->describe();
  }
  os::test::Disappearance worker = os::test::wait_until_gone(pids[1], left_ms());
  ASSERT_TRUE(worker.gone) << "the worker outlived its parent's parent by 2 s";
  if (worker.status) {
    EXPECT_TRUE(*worker.status == (os::ExitStatus{SIGKILL, 0, false}) ||
                *worker.status == (os::ExitStatus{0, os::kParentGoneExitCode, false}))
        << worker.status->describe();
  }
}

}  // namespace
}  // namespace pipepool::driver
