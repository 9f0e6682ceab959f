// pool/README.md's transport example, compiled and run by ctest so that it stays true.
#include <pipepool/pipepool.hpp>

#include <cstdio>
#include <string>

std::string shout(std::string s) {
  for (char& c : s) c = static_cast<char>(c == 'a' ? 'A' : c);
  return s;
}

int main() {
  // Python's Pipe(): one AF_UNIX stream socketpair per worker, each message framed as
  // multiprocessing.connection frames it, with 100 / 60 bytes of "pickle" around each payload.
  pipepool::Pool pool(pipepool::Options{.processes = 2,
                                        .transport = pipepool::Transport::SocketPair,
                                        .framing = pipepool::Framing::Python,
                                        .python_task_overhead_bytes = 100,
                                        .python_result_overhead_bytes = 60});
  std::printf("SO_SNDBUF %llu bytes, pipe capacity %llu bytes\n",
              static_cast<unsigned long long>(pool.socket_sndbuf_bytes()),
              static_cast<unsigned long long>(pool.pipe_capacity_bytes()));
  const std::string big(1 << 20, 'a');  // a 1 MiB task: its length and its body in two writes
  std::printf("echoed %zu bytes: %s\n", pool.apply(shout, big).size(),
              pool.apply(shout, big) == std::string(1 << 20, 'A') ? "ok" : "WRONG");
  try {
    pipepool::Pool bad(pipepool::Options{.processes = 1,
                                         .framing = pipepool::Framing::Python,
                                         .python_task_overhead_bytes = 8,
                                         .python_result_overhead_bytes = 60});
  } catch (const std::invalid_argument& e) {
    std::printf("rejected: %s\n", e.what());
  }
  std::printf("socketpair example ok\n");
}
