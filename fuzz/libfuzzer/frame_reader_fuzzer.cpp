// libFuzzer target: arbitrary bytes into a frame reader, in arbitrary pieces, in either direction.
// It must never crash, never read out of bounds, never allocate past its bound (the suite runs it
// with -malloc_limit_mb, so an allocation of a size a header merely claims is a crash). Input:
// byte 0 picks the direction (bit 7), read-ahead (bit 6: 4096 bytes, else exact reads) and the
// piece size (1 + byte % 64); the rest is the stream. A malformed stream must say why (error()).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "protocol/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pipepool::protocol;
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 64;
  const Direction direction = (data[0] & 0x80) != 0 ? Direction::ToWorker : Direction::ToParent;
  const size_t read_ahead = (data[0] & 0x40) != 0 ? 4096 : 0;
  constexpr uint64_t kMaxPayload = 1 << 16;
  FrameReader reader(direction, kMaxPayload, read_ahead);
  for (size_t pos = 1; pos < size;) {
    auto buffer = reader.buffer();
    if (buffer.empty()) std::abort();  // a reader that asks for nothing would hang its driver
    size_t n = std::min<size_t>({piece, buffer.size(), size - pos});
    std::memcpy(buffer.data(), data + pos, n);
    pos += n;
    auto status = reader.commit(n);
    while (reader.has_frame()) {
      const Frame frame = reader.take();
      if (frame.payload.size() > kMaxPayload) std::abort();  // past the bound
    }
    if (status == FrameReader::Status::Malformed) {
      if (reader.error().empty()) std::abort();  // broken without saying why
      return 0;
    }
  }
  return 0;
}
