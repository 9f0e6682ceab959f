// Frames: what parent and worker say to each other. No system calls.
//
// A frame is a fixed 32-byte header followed by `payload_bytes` of payload:
//
//   offset size field
//   0      4    magic        'PPF1' (0x31465050 little endian)
//   4      1    kind         FrameKind
//   5      3    reserved     zero
//   8      8    task_id
//   16     8    payload_bytes
//   24     4    check        a hash of bytes 0..24: catches torn or misaligned streams
//   28     4    reserved     zero
//
// Parent -> worker: Task, RunBatch, Shutdown. Worker -> parent: Started, Result, Error.
// A reader validates the header (magic, kind allowed in its direction, check, reserved bytes,
// payload_bytes <= its configured maximum) before it allocates anything.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pipepool::protocol {

using TaskId = uint64_t;
using WorkerId = uint32_t;

inline constexpr size_t kHeaderBytes = 32;
inline constexpr uint32_t kFrameMagic = 0x31465050;  // "PPF1"

enum class FrameKind : uint8_t {
  Task = 1,      // payload: the encoded task (opaque to the engine)
  RunBatch = 2,  // no payload: run what you have read (Batched)
  Shutdown = 3,  // no payload: exit once idle
  Started = 16,  // no payload: the worker began task_id (sent when task timeouts are on)
  Result = 17,   // payload: the encoded result
  Error = 18,    // payload: the encoded error
};

enum class Direction { ToWorker, ToParent };

using HeaderBytes = std::array<std::byte, kHeaderBytes>;

struct FrameHeader {
  FrameKind kind{};
  TaskId task_id = 0;
  uint64_t payload_bytes = 0;
};

HeaderBytes encode_header(FrameKind kind, TaskId task_id, uint64_t payload_bytes);

// Validates and decodes a header. On failure returns false and sets `error` to a sentence that
// names what was wrong ("bad magic 0x...", "payload of 9 GiB exceeds the 1 GiB maximum", ...).
bool decode_header(std::span<const std::byte, kHeaderBytes> bytes, Direction direction,
                   uint64_t max_payload_bytes, FrameHeader& out, std::string& error);

const char* to_string(FrameKind kind);

struct Frame {
  FrameHeader header;
  std::string payload;
};

// Incremental frame reader. By default it asks for exactly the bytes of the frame it is in (header,
// then payload), as Python's Connection.recv does, so a worker never takes bytes of the next task
// out of the pipe before it is ready for it: that exactness is what makes a strategy's pipe
// deadlocks the same in the simulator and on real pipes. With `read_ahead_bytes` > 0 it reads up to
// that many bytes at a time into a staging buffer and parses every frame they hold (fewer system
// calls for small frames); a payload larger than the buffer is still read straight into place.
class FrameReader {
 public:
  enum class Status { NeedMore, FrameReady, Malformed };

  FrameReader(Direction direction, uint64_t max_payload_bytes, size_t read_ahead_bytes = 0)
      : direction_(direction),
        max_payload_bytes_(max_payload_bytes),
        stage_bytes_(read_ahead_bytes) {}

  // Where the next bytes go. Never empty.
  std::span<std::byte> buffer();

  // n bytes were stored at buffer(). FrameReady: at least one frame can be taken. Malformed: the
  // stream is broken (frames completed before the damage can still be taken first).
  Status commit(size_t n);

  bool has_frame() const { return !ready_.empty(); }
  // The oldest completed frame (only when has_frame()).
  Frame take();

  // True when part of a frame has been read: end of file now means a truncated frame.
  bool mid_frame() const { return header_filled_ > 0 || in_payload_; }
  const std::string& error() const { return error_; }

 private:
  std::span<std::byte> exact_buffer();
  // Consumes n bytes stored at exact_buffer(); false when the header is malformed.
  bool commit_exact(size_t n);

  Direction direction_;
  uint64_t max_payload_bytes_;
  HeaderBytes header_bytes_{};
  size_t header_filled_ = 0;
  bool in_payload_ = false;
  size_t payload_filled_ = 0;
  Frame frame_;
  std::deque<Frame> ready_;
  size_t stage_bytes_;                  // 0: exact reads
  std::unique_ptr<std::byte[]> stage_;  // allocated, uninitialised, on first use
  bool direct_ = false;                 // the last buffer() was the payload itself
  bool broken_ = false;
  std::string error_;
};

}  // namespace pipepool::protocol
