// tools/proc: the reader against this process's own pipes, sockets and threads.
#include "proc_reader.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace pipepool::proc {
namespace {

uint64_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

TEST(ProcReader, ParsesStatWithParenthesesAndSpacesInTheName) {
  const auto stat = parse_stat("42 (a (b) c) S 7 42 42 0 -1 4194560 1 2 3 4 15 16 0 0 20 0 1 0");
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->id, 42);
  EXPECT_EQ(stat->comm, "a (b) c");
  EXPECT_EQ(stat->state, 'S');
  EXPECT_EQ(stat->ppid, 7);
  EXPECT_EQ(stat->cpu_ticks(), 31u);
  EXPECT_FALSE(parse_stat("garbage"));
  EXPECT_FALSE(parse_stat("1 (x) S 2"));
}

TEST(ProcReader, SeesThisProcessAndItsThreads) {
  const auto self = read_process_stat(::getpid());
  ASSERT_TRUE(self);
  EXPECT_EQ(self->ppid, ::getppid());
  std::atomic<bool> stop{false};
  std::thread sleeper([&] {
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  });
  const std::vector<pid_t> threads = list_threads(::getpid());
  EXPECT_GE(threads.size(), 2u);
  EXPECT_NE(std::find(threads.begin(), threads.end(), ::getpid()), threads.end());
  const SyscallState call = read_syscall(::getpid(), ::getpid());
  EXPECT_EQ(call.access, Access::Ok);
  stop = true;
  sleeper.join();
  EXPECT_EQ(process_tree(::getpid()).front(), ::getpid());
  EXPECT_TRUE(process_tree(0x7ffffff0).empty());
  EXPECT_EQ(syscall_name(SYS_write), "write");
}

TEST(ProcReader, PipeEndsModesFillAndHolders) {
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  ASSERT_EQ(::write(ends[1], "hello", 5), 5);
  const auto reader = read_fd(::getpid(), ends[0]);
  const auto writer = read_fd(::getpid(), ends[1]);
  ASSERT_TRUE(reader && writer);
  EXPECT_EQ(reader->kind, FdKind::Pipe);
  EXPECT_EQ(reader->inode, inode_of(ends[0]));
  EXPECT_EQ(reader->target, "pipe:[" + std::to_string(reader->inode) + "]");
  EXPECT_TRUE(reader->readable());
  EXPECT_FALSE(reader->writable());
  EXPECT_TRUE(writer->writable());
  EXPECT_FALSE(writer->readable());
  for (int fd : ends) {  // through either end: the same pipe
    const auto fill = pipe_fill(::getpid(), fd);
    ASSERT_TRUE(fill);
    EXPECT_EQ(fill->queued_bytes, 5u);
    EXPECT_EQ(fill->capacity_bytes, static_cast<uint64_t>(::fcntl(ends[0], F_GETPIPE_SZ)));
  }
  char buffer[5];
  EXPECT_EQ(::read(ends[0], buffer, 5), 5) << "pipe_fill took nothing out";
  const HolderIndex holders = index_holders({::getpid()});
  const auto& held = holders.by_inode.at(reader->inode);
  EXPECT_EQ(held.size(), 2u);
  ::close(ends[0]);
  ::close(ends[1]);
}

TEST(ProcReader, UnixSocketPeersAndQueuesFromSockDiag) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  ASSERT_EQ(::send(pair[0], "0123456789", 10, 0), 10);
  const auto sockets = unix_sockets();
  ASSERT_TRUE(sockets);
  const uint64_t a = inode_of(pair[0]);
  const uint64_t b = inode_of(pair[1]);
  ASSERT_TRUE(sockets->count(a) && sockets->count(b));
  EXPECT_EQ(sockets->at(a).peer_inode, b);
  EXPECT_EQ(sockets->at(b).peer_inode, a);
  EXPECT_EQ(sockets->at(a).type, SOCK_STREAM);
  EXPECT_EQ(sockets->at(b).receive_queue_bytes, 10u);
  EXPECT_GT(sockets->at(a).send_queue_bytes, 0u);  // sk_wmem_alloc: charged to the sender
  EXPECT_TRUE(sockets->at(a).have_meminfo);
  EXPECT_GT(sockets->at(a).send_buffer_bytes, 0u);
  const auto entry = read_fd(::getpid(), pair[0]);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->kind, FdKind::Socket);
  EXPECT_EQ(entry->inode, a);
  ::close(pair[0]);
  ::close(pair[1]);
}

}  // namespace
}  // namespace pipepool::proc
