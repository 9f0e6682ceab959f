// No shared memory, anywhere: in a private mount namespace where /dev/shm is an empty read-only
// tmpfs (as unusable as on AWS Lambda), Python's multiprocessing.Pool fails and this pool works.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pipepool/pipepool.hpp"

namespace {

int square(int x) {
  return x * x;
}

std::string run(const char* command, int& status) {
  std::string out;
  FILE* pipe = popen(command, "r");
  if (!pipe) return "popen failed";
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  status = pclose(pipe);
  return out;
}

TEST(NoSharedMemory, PythonsPoolFailsWherePipepoolWorks) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a mount namespace";
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(report[0]);
    auto say = [&](const std::string& line) {
      std::string l = line + "\n";
      (void)!write(report[1], l.data(), l.size());
    };
    if (unshare(CLONE_NEWNS) != 0 ||
        mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", "/dev/shm", "tmpfs", MS_RDONLY, "size=0") != 0) {
      say("setup failed: " + std::string(strerror(errno)));
      _exit(2);
    }
    int status = 0;
    std::string python =
        run("python3 -c 'import multiprocessing as mp; p = mp.Pool(2); print(\"python-ok\", "
            "p.map(abs, [-1, -2]))' 2>&1",
            status);
    say("python exit " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    say("python said " + python.substr(python.rfind("Error") == std::string::npos
                                           ? 0
                                           : python.rfind('\n', python.rfind("Error")) + 1));
    try {
      pipepool::Pool pool(2);
      auto ys = pool.map(square, std::vector<int>{1, 2, 3});
      say(ys == std::vector<int>{1, 4, 9} ? "pipepool ok" : "pipepool wrong result");
    } catch (const std::exception& e) {
      say(std::string("pipepool threw ") + e.what());
    }
    _exit(0);
  }
  close(report[1]);
  std::string text;
  char buffer[4096];
  while (ssize_t n = read(report[0], buffer, sizeof buffer)) {
    if (n < 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(report[0]);
  int status = 0;
  waitpid(child, &status, 0);
  std::printf("%s", text.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_EQ(text.find("python exit 0"), std::string::npos) << text;
  EXPECT_EQ(text.find("python-ok"), std::string::npos) << text;
  EXPECT_NE(text.find("OSError"), std::string::npos) << text;
  EXPECT_NE(text.find("pipepool ok"), std::string::npos) << text;
}

}  // namespace
