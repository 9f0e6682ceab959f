// Fingerprints: 64-bit hashes of an engine's state, for the simulator's state cache (sim/
// explore.cpp). Two objects with equal fingerprints must behave alike from now on when fed the
// same events. Each class that joins a fingerprint hashes its own members (fingerprint(h) returns
// h mixed with them), so a new member is added in one place. No system calls.
//
// Payload bytes are not hashed: a frame is identified by its header (kind, task id, payload
// length). That is exact wherever one task id names one payload and its result is a function of
// the task (the engines never change a payload; the simulator's payloads and results are
// functions of the task's scenario), and it keeps a fingerprint cheap.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace pipepool::protocol {

inline uint64_t fingerprint_mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Raw bytes (a partial header, staged read-ahead bytes, a pipe's contents), eight at a time.
uint64_t fingerprint_bytes(uint64_t h, std::span<const std::byte> bytes);

inline uint64_t fingerprint_text(uint64_t h, std::string_view text) {
  return fingerprint_bytes(h, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

}  // namespace pipepool::protocol
