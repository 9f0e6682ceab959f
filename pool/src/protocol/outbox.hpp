// Outbox: frames queued for one pipe, written in order, possibly in pieces. No system calls.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "protocol/frame.hpp"

namespace pipepool::protocol {

struct OutFrame {
  HeaderBytes header;
  std::shared_ptr<const std::string> payload;  // null: no payload; shared with the task's record
  uint64_t sequence = 0;                       // global order in which the engine produced frames
  size_t payload_size() const { return payload ? payload->size() : 0; }
  size_t size() const { return kHeaderBytes + payload_size(); }
};

class Outbox {
 public:
  void push(OutFrame frame) { frames_.push_back(std::move(frame)); }
  bool empty() const { return frames_.empty(); }
  size_t frames() const { return frames_.size(); }
  const OutFrame& front() const { return frames_.front(); }

  // Appends the unwritten bytes of up to `max_frames` frames, as segments, to `out` (the shape of
  // one writev). Returns the number of bytes they hold.
  size_t gather(std::vector<std::span<const std::byte>>& out, size_t max_frames) const;

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
