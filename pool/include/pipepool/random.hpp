// pipepool/random.hpp: the seeded generator the pool hands to schedulers.
//
// Randomness in pipepool is always seeded and injected (Options::seed), never drawn from the
// environment, so that the simulator can replay a run exactly. splitmix64: small and fast; not for
// cryptography.
#pragma once

#include <cstdint>

namespace pipepool {

class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}

  // Next 64 uniformly distributed bits.
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  // The generator's whole state (for fingerprints of a simulated pool's state).
  uint64_t state() const { return state_; }

  // Uniform in [0, bound); bound must be > 0. Rejection sampling: no modulo bias.
  uint64_t below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do {
      x = next();
    } while (x >= limit);
    return x % bound;
  }

 private:
  uint64_t state_;
};

}  // namespace pipepool
