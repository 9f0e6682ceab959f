// bench/echo_load.hpp: what one echo benchmark moves, shared by the pool and raw-pipe versions so
// that both move exactly the same bytes per iteration.
//
// Every iteration sends kMessagesPerWorker messages to each worker at once (a map of
// 2 x workers tasks for the pool) and waits for every reply. A message carries in_bytes() of
// payload and its reply out_bytes(); bytes processed count both directions, payload only (no
// framing, no codec overhead).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bench_mode.hpp"

namespace pipepool::bench {

// Several tasks per worker in flight: that is where I/O disciplines differ (and deadlock).
inline constexpr int kMessagesPerWorker = 2;
// The small side of an asymmetric load.
inline constexpr uint64_t kSmallSideBytes = 8;

enum class Shape {
  Symmetric,  // size in, size out (an echo)
  LargeIn,    // size in, 8 bytes out
  LargeOut,   // 8 bytes in, size out
};

inline std::string_view shape_name(Shape shape) {
  switch (shape) {
    case Shape::Symmetric:
      return "symmetric";
    case Shape::LargeIn:
      return "large_in";
    case Shape::LargeOut:
      return "large_out";
  }
  return "?";
}

struct EchoLoad {
  Shape shape = Shape::Symmetric;
  uint64_t size_bytes = 0;
  bool enlarged_pipes = true;
  int workers = 1;
  // Messages in flight per worker in each iteration (the benchmarks: kMessagesPerWorker; the
  // whole-job measurements of whole_job.cpp: 1).
  int messages_per_worker = kMessagesPerWorker;

  uint64_t in_bytes() const { return shape == Shape::LargeOut ? kSmallSideBytes : size_bytes; }
  uint64_t out_bytes() const { return shape == Shape::LargeIn ? kSmallSideBytes : size_bytes; }
  int messages() const { return messages_per_worker * workers; }
  uint64_t bytes_per_iteration() const {
    return static_cast<uint64_t>(messages()) * (in_bytes() + out_bytes());
  }

  // "pipe:enlarged/workers:2/shape:symmetric/size:1048576": the part of the benchmark name that
  // bench/report.py matches between implementations.
  std::string name_suffix() const {
    return std::string("pipe:") + (enlarged_pipes ? "enlarged" : "default") +
           "/workers:" + std::to_string(workers) + "/shape:" + std::string(shape_name(shape)) +
           "/size:" + std::to_string(size_bytes);
  }
};

// Every load of the mode, in the order they are registered and reported: by shape, workers, pipe
// capacity, then size.
inline std::vector<EchoLoad> echo_loads(const BenchMode& mode) {
  std::vector<EchoLoad> loads;
  for (Shape shape : {Shape::Symmetric, Shape::LargeIn, Shape::LargeOut}) {
    const auto& sizes =
        shape == Shape::Symmetric ? mode.echo_sizes_bytes : mode.asymmetric_sizes_bytes;
    for (int workers : mode.echo_workers) {
      for (bool enlarged : {false, true}) {
        for (uint64_t size : sizes) {
          loads.push_back(
              {.shape = shape, .size_bytes = size, .enlarged_pipes = enlarged, .workers = workers});
        }
      }
    }
  }
  return loads;
}

}  // namespace pipepool::bench
