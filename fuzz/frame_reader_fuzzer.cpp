// libFuzzer target: arbitrary bytes into the parent's frame reader, in arbitrary pieces. It must
// never crash, never read out of bounds, never allocate past its bound.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "protocol/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pipepool::protocol;
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 64;
  FrameReader reader(Direction::ToParent, 1 << 16);
  for (size_t pos = 1; pos < size;) {
    auto buffer = reader.buffer();
    size_t n = std::min<size_t>({piece, buffer.size(), size - pos});
    std::memcpy(buffer.data(), data + pos, n);
    pos += n;
    auto status = reader.commit(n);
    if (status == FrameReader::Status::Malformed) return 0;
    if (status == FrameReader::Status::FrameReady) (void)reader.take();
  }
  return 0;
}
