#include "protocol/outbox.hpp"

#include <algorithm>
#include <cassert>

#include "protocol/fingerprint.hpp"

namespace pipepool::protocol {
namespace {

// The source of every frame's padding: zeros, as long as the longest padding allowed.
const std::array<std::byte, kPythonMaxOverheadBytes>& zeros() {
  static const std::array<std::byte, kPythonMaxOverheadBytes> bytes{};
  return bytes;
}

// Appends the bytes [from, to) of `frame` to `out`; returns how many.
size_t append_range(const OutFrame& frame, size_t from, size_t to,
                    std::vector<std::span<const std::byte>>& out) {
  size_t at = 0;
  const auto add = [&](std::span<const std::byte> piece) {
    const size_t begin = std::max(from, at);
    const size_t end = std::min(to, at + piece.size());
    if (begin < end) out.push_back(piece.subspan(begin - at, end - begin));
    at += piece.size();
  };
  add({frame.length.data(), frame.length_bytes});
  add({frame.header.data(), kHeaderBytes});
  if (frame.payload) {
    for (std::span<const std::byte> segment : frame.payload->segments()) {
      if (at >= to) break;
      add(segment);
    }
  }
  add({zeros().data(), frame.padding_bytes});
  return to - from;
}

}  // namespace

size_t OutFrame::unit_end(size_t offset) const {
  const size_t body = size() - length_bytes;
  if (length_bytes == 0 || body <= kPythonOneWriteMaxBytes) return size();
  if (offset < 4) return 4;  // the length (or the -1 of the long form) by itself
  if (offset < length_bytes) return length_bytes;  // the long form's 8-byte length
  return size();
}

OutFrame make_out_frame(const WireFormat& wire, Direction direction, FrameKind kind, TaskId task,
                        std::shared_ptr<const Payload> payload, uint64_t sequence) {
  OutFrame frame;
  const uint64_t payload_bytes = payload ? payload->size() : 0;
  frame.header = encode_header(kind, task, payload_bytes);
  frame.payload = std::move(payload);
  frame.sequence = sequence;
  if (wire.python) {
    const bool has_payload = kind_has_payload(kind);
    const uint64_t message = wire.message_bytes(direction, has_payload, payload_bytes);
    frame.length_bytes = static_cast<uint8_t>(encode_python_length(message, frame.length));
    frame.padding_bytes = has_payload ? wire.overhead_bytes(direction) - kHeaderBytes : 0;
  }
  return frame;
}

size_t Outbox::gather(std::vector<std::span<const std::byte>>& out, size_t max_units) const {
  bool splice = false;
  return gather(out, max_units, 0, splice);
}

size_t Outbox::gather(std::vector<std::span<const std::byte>>& out, size_t max_units,
                      uint64_t splice_min_payload_bytes, bool& splice) const {
  splice = false;
  size_t total = 0;
  size_t skip = offset_;
  size_t units = 0;
  for (const OutFrame& frame : frames_) {
    const bool spliced =
        splice_min_payload_bytes != 0 && frame.payload_size() >= splice_min_payload_bytes;
    const size_t payload_begin = frame.length_bytes + kHeaderBytes;
    const size_t payload_end = payload_begin + frame.payload_size();
    while (skip < frame.size()) {
      if (spliced && skip >= payload_begin && skip < payload_end) {
        if (total != 0) return total;  // copied bytes first, the payload by itself next
        splice = true;
        return append_range(frame, skip, payload_end, out);
      }
      if (units++ == max_units) return total;
      size_t end = frame.unit_end(skip);
      if (spliced && skip < payload_begin) end = std::min(end, payload_begin);
      total += append_range(frame, skip, end, out);
      skip = end;
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
