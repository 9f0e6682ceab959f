#include "protocol/fingerprint.hpp"

#include <cstring>

namespace pipepool::protocol {

uint64_t fingerprint_bytes(uint64_t h, std::span<const std::byte> bytes) {
  h = fingerprint_mix(h, bytes.size());
  size_t i = 0;
  // Four independent lanes, folded at the end: a pipe's 64 KiB is hashed at memory speed.
  uint64_t lane[4] = {h, h ^ 0x1234567, h ^ 0x89ABCDEF, h ^ 0x13579BDF};
  for (; i + 32 <= bytes.size(); i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t v;
      std::memcpy(&v, bytes.data() + i + 8 * k, 8);
      lane[k] = (lane[k] ^ v) * 0x9E3779B97F4A7C15ULL;
      lane[k] ^= lane[k] >> 29;
    }
  }
  for (int k = 0; k < 4; ++k) h = fingerprint_mix(h, lane[k]);
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t v;
    std::memcpy(&v, bytes.data() + i, 8);
    h = fingerprint_mix(h, v);
  }
  uint64_t tail = 0;
  if (i < bytes.size()) std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  return fingerprint_mix(h, tail);
}

}  // namespace pipepool::protocol
