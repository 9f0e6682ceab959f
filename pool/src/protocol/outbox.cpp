#include "protocol/outbox.hpp"

#include <cassert>

#include "protocol/fingerprint.hpp"

namespace pipepool::protocol {

size_t Outbox::gather(std::vector<std::span<const std::byte>>& out, size_t max_frames) const {
  size_t total = 0;
  size_t skip = offset_;
  size_t taken = 0;
  for (const OutFrame& frame : frames_) {
    if (taken++ == max_frames) break;
    if (skip < kHeaderBytes) {
      out.emplace_back(frame.header.data() + skip, kHeaderBytes - skip);
      total += kHeaderBytes - skip;
      skip = 0;
    } else {
      skip -= kHeaderBytes;
    }
    if (skip < frame.payload_size()) {
      const auto* payload = reinterpret_cast<const std::byte*>(frame.payload->data());
      out.emplace_back(payload + skip, frame.payload_size() - skip);
      total += frame.payload_size() - skip;
    }
    skip = 0;
  }
  return total;
}

size_t Outbox::consume(size_t n) {
  size_t completed = 0;
  while (n > 0) {
    assert(!frames_.empty());
    size_t left = frames_.front().size() - offset_;
    if (n < left) {
      offset_ += n;
      return completed;
    }
    n -= left;
    frames_.pop_front();
    offset_ = 0;
    ++completed;
  }
  return completed;
}

uint64_t Outbox::fingerprint(uint64_t h, bool with_sequence) const {
  h = fingerprint_mix(h, (uint64_t{frames_.size()} << 32) ^ offset_);
  for (const OutFrame& frame : frames_) {
    h = fingerprint_bytes(h, frame.header);
    h = fingerprint_mix(h, frame.payload_size());
    if (with_sequence) h = fingerprint_mix(h, frame.sequence);
  }
  return h;
}

}  // namespace pipepool::protocol
