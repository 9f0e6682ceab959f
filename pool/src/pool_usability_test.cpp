// Issue 10: what a user of Python's Pool hits in the first hour. One test (or more) per item, on
// real workers and, where it applies, on Pool(0).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pipepool/pipepool.hpp"

namespace {

using namespace std::chrono_literals;

// ---- 1: task output reaches a stdout that is a file, once -------------------------------------

int print_line(int x) {
  std::printf("task line %d\n", x);  // no flush: a file is fully buffered
  return x;
}

// Runs `body` in a child whose stdout is a fully buffered file; returns what the file holds.
template <class Body>
std::string stdout_of_child(Body body) {
  char path[] = "/tmp/pipepool_stdout_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, STDOUT_FILENO);
    setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
    int code = 0;
    try {
      body();
    } catch (...) {
      code = 3;
    }
    std::fflush(nullptr);
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  close(fd);
  unlink(path);
  return text.str();
}

size_t count_of(const std::string& text, const std::string& line) {
  size_t n = 0;
  for (size_t at = text.find(line); at != std::string::npos; at = text.find(line, at + 1)) ++n;
  return n;
}

TEST(PoolUsability, WorkerOutputToAFileIsFlushedOnceOnEveryExitPath) {
  const std::string text = stdout_of_child([] {
    std::printf("parent before the pool\n");  // still in the buffer when the pool forks
    pipepool::Pool pool(pipepool::Options{.processes = 2, .maxtasksperchild = 3});
    pool.map(print_line, std::vector<int>{11, 12, 13, 14, 15, 16, 17}, 1);
    pool.close();
    pool.join();
    std::printf("parent after the pool\n");
  });
  EXPECT_EQ(count_of(text, "parent before the pool\n"), 1u) << text;
  EXPECT_EQ(count_of(text, "parent after the pool\n"), 1u) << text;
  for (int x = 11; x <= 17; ++x) {
    EXPECT_EQ(count_of(text, "task line " + std::to_string(x) + "\n"), 1u) << x << "\n" << text;
  }
}

TEST(PoolUsability, InlinePoolOutputToAFileIsPrintedOnce) {
  const std::string text = stdout_of_child([] {
    pipepool::Pool pool(0);
    pool.map(print_line, std::vector<int>{21, 22}, 1);
  });
  EXPECT_EQ(count_of(text, "task line 21\n"), 1u) << text;
  EXPECT_EQ(count_of(text, "task line 22\n"), 1u) << text;
}

}  // namespace
