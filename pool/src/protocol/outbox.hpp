// Outbox: frames queued for one channel, written in order, possibly in pieces. No system calls.
//
// Each frame is one or more *write units*: the bytes one write call of the sender carries. With
// pipepool's framing a frame is one unit (header and payload in one writev). With Python's
// (WireFormat::python, see frame.hpp) a frame is a message: one unit when its body is at most
// kPythonOneWriteMaxBytes, else two (the 4-byte length, then the body) or three (the 12-byte
// length in its two parts, then the body), as Connection._send_bytes writes them. gather() never
// puts more than the units it is allowed into one writev, and never ends a writev's bytes past a
// unit boundary it was not allowed to cross, so an executor that writes each gather() with one
// write call (or one blocking loop, Python's _send) makes the calls Python makes.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pipepool/detail/payload.hpp"
#include "protocol/frame.hpp"

namespace pipepool::protocol {

using Payload = pipepool::detail::Payload;

// One frame to write. Its payload's segments become separate iovecs of the writev (gather()), so
// they may point into the objects of the caller or of a worker's task: such memory must stay valid
// and unmodified until the peer has read the frame (payload.hpp's invariant), which the payload's
// owner guarantees.
struct OutFrame {
  HeaderBytes header;
  std::shared_ptr<const Payload> payload;  // null: no payload; shared with the task's record
  uint64_t sequence = 0;                   // global order in which the engine produced frames
  // Python framing: the message length in front (4 or 12 bytes; 0: pipepool framing) and the zero
  // padding after the payload.
  std::array<std::byte, kPythonMaxLengthBytes> length{};
  uint8_t length_bytes = 0;
  uint32_t padding_bytes = 0;
  size_t payload_size() const { return payload ? payload->size() : 0; }
  size_t size() const { return length_bytes + kHeaderBytes + payload_size() + padding_bytes; }
  // The end (offset in the frame) of the write unit that holds byte `offset`.
  size_t unit_end(size_t offset) const;
};

// A frame of `kind` for the channel in `direction`, framed as `wire` says.
OutFrame make_out_frame(const WireFormat& wire, Direction direction, FrameKind kind, TaskId task,
                        std::shared_ptr<const Payload> payload, uint64_t sequence);

class Outbox {
 public:
  void push(OutFrame frame) { frames_.push_back(std::move(frame)); }
  bool empty() const { return frames_.empty(); }
  size_t frames() const { return frames_.size(); }
  const OutFrame& front() const { return frames_.front(); }

  // Appends the unwritten bytes of up to `max_units` write units (see above; a unit begun by an
  // earlier short write counts as one), as segments, to `out` (the shape of one writev). Returns
  // the number of bytes they hold.
  size_t gather(std::vector<std::span<const std::byte>>& out, size_t max_units) const;
  // The same, for a sender that splices (IoStrategy::splice_min_payload_bytes(), non-zero): the
  // payload of a frame of at least `splice_min_payload_bytes` is a write of its own, for
  // vmsplice(2). So the segments either end before such a payload (splice = false: copied bytes,
  // up to and including its header) or are exactly what is unwritten of one payload (splice =
  // true), never both. Headers are always copied: an OutFrame's header dies with the frame, while
  // a spliced payload's memory is kept by its owners (the task record; the child's retained
  // results) until the reader has read it.
  size_t gather(std::vector<std::span<const std::byte>>& out, size_t max_units,
                uint64_t splice_min_payload_bytes, bool& splice) const;

  // n bytes of what gather() returned were written. Returns how many frames completed.
  size_t consume(size_t n);

  // `h` mixed with the queued frames (headers, payload sizes; fingerprint.hpp) and the bytes of
  // the first already written; with_sequence: their sequence numbers too (the parent engine
  // orders blocking writes by them; the child engine never reads its own).
  uint64_t fingerprint(uint64_t h, bool with_sequence) const;

  // Drops everything (the worker is gone).
  void clear() {
    frames_.clear();
    offset_ = 0;
  }

 private:
  std::deque<OutFrame> frames_;
  size_t offset_ = 0;  // bytes of frames_.front() already written
};

}  // namespace pipepool::protocol
