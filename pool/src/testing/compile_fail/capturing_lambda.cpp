// Must not compile: a task that captures (issue 10.12). The ctest pool_rejects_capturing_lambda
// compiles this file and expects the pool's static_assert message.
#include "pipepool/pipepool.hpp"

int main() {
  pipepool::Pool pool(0);
  int offset = 3;
  return pool.apply([&](int x) { return x + offset; }, 1);
}
