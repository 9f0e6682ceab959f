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
// Parent -> worker: Task, RunBatch, Shutdown, Ack. Worker -> parent: Started, Result, Error.
//
// Ack (IoStrategy::splice_min_payload_bytes() > 0 only): task_id holds the number of spliced
// Result / Error frames (payload of at least that size) the parent has read from this worker
// process so far, cumulatively. A worker keeps the memory of a spliced result unmodified until an
// Ack counts it: vmsplice(2) put references to its pages into the pipe, not a copy. The parent
// sends one after each read that completed spliced results, non-blocking like every other frame,
// and none once the worker is told to shut down; a worker never waits for one.
// A reader validates the header (magic, kind allowed in its direction, check, reserved bytes,
// payload_bytes <= its configured maximum) before it allocates anything.
//
// Framing::Python (WireFormat::python). Every frame travels as one message of Python's
// multiprocessing.connection (CPython 3.8+, Connection._send_bytes / _recv_bytes on Linux): a
// big-endian length N, then N bytes of body. The length is 4 bytes ("!i"), or, for N > 2^31 - 1,
// 4 bytes of -1 followed by 8 bytes ("!Q"). The body is
//
//   offset      size             field
//   0           32               the frame header above (payload_bytes = P)
//   32          P                the payload
//   32 + P      overhead - 32    zero padding
//
// so N = P + the direction's overhead for Task (python_task_overhead_bytes) and Result / Error
// (python_result_overhead_bytes): the wire carries exactly N + 4 bytes, what the Python library
// sends for a pickled payload of P bytes wrapped in objects that pickle to `overhead` bytes. An
// overhead must therefore hold the header: at least kPythonMinOverheadBytes (32), at most
// kPythonMaxOverheadBytes. Control frames (RunBatch, Shutdown, Started) are messages of the header
// alone: N = 32, 36 bytes on the wire (Python's own would be a pickled tuple of about that size).
// Writes follow Python's _send_bytes: a message of N <= 16,384 goes out in one write call (length
// and body together); a larger one in two (the 4-byte length alone, then the body), three for the
// 12-byte length. Reads follow _recv_bytes: exactly 4 bytes (8 more for the long form), then
// exactly N bytes into one buffer. A reader bounds N by its maximum payload + overhead before
// allocating, and checks, once the body is in, that N is what its header's kind and payload_bytes
// imply and that the padding is zero.
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
  Ack = 4,       // no payload: task_id spliced results have been read (zero-copy strategies)
  Started = 16,  // no payload: the worker began task_id (sent when task timeouts are on)
  Result = 17,   // payload: the encoded result
  Error = 18,    // payload: the encoded error
};

enum class Direction { ToWorker, ToParent };

using HeaderBytes = std::array<std::byte, kHeaderBytes>;

// Framing::Python (see the top of this file).
inline constexpr uint64_t kPythonOneWriteMaxBytes = 16384;  // larger bodies: a write of their own
inline constexpr uint64_t kPythonShortLengthMaxBytes = 0x7fffffff;  // larger: the 12-byte length
inline constexpr uint32_t kPythonMinOverheadBytes = kHeaderBytes;
inline constexpr uint32_t kPythonMaxOverheadBytes = 65536;
inline constexpr size_t kPythonMaxLengthBytes = 12;

// How frames are put on the channel: pipepool's own (python = false), or as Python messages with
// these overheads (each within [kPythonMinOverheadBytes, kPythonMaxOverheadBytes]).
struct WireFormat {
  bool python = false;
  uint32_t task_overhead_bytes = 0;    // Task frames (parent -> worker)
  uint32_t result_overhead_bytes = 0;  // Result and Error frames (worker -> parent)

  uint32_t overhead_bytes(Direction direction) const {
    return direction == Direction::ToWorker ? task_overhead_bytes : result_overhead_bytes;
  }
  // Python: the message length N of a frame of `kind` with `payload_bytes` of payload.
  uint64_t message_bytes(Direction direction, bool has_payload, uint64_t payload_bytes) const {
    return has_payload ? payload_bytes + overhead_bytes(direction) : kHeaderBytes;
  }
};

// Throws std::invalid_argument, naming the field and the bounds, if `wire` is Python framing with
// an overhead outside [kPythonMinOverheadBytes, kPythonMaxOverheadBytes].
void validate_wire_format(const WireFormat& wire);

// Python's length in front of a message of `message_bytes`: 4 bytes big-endian, or 4 bytes of -1
// and 8 bytes big-endian above kPythonShortLengthMaxBytes. Returns its size (4 or 12).
size_t encode_python_length(uint64_t message_bytes,
                            std::array<std::byte, kPythonMaxLengthBytes>& out);

// Whether frames of `kind` carry a payload (Task, Result, Error).
bool kind_has_payload(FrameKind kind);

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

// Incremental frame reader. With WireFormat::python it reads Python messages (see the top of this
// file): exactly the length (4 bytes, then 8 more for the long form), then exactly the whole body
// into one buffer; the payload is moved to the front of it once the body is complete (a memmove
// of the payload per frame: the price of a header in front of it). By default it asks for exactly
// the bytes of the frame it is in (header, then payload), as Python's Connection.recv does, so a
// worker never takes bytes of the next task out of the pipe before it is ready for it: that
// exactness is what makes a strategy's pipe deadlocks the same in the simulator and on real pipes.
// With `read_ahead_bytes` > 0 it reads up to that many bytes at a time into a staging buffer and
// parses every frame they hold (fewer system calls for small frames); a payload larger than the
// buffer is still read straight into place.
//
// Fewer page faults. A payload buffer the owner is done with can be handed back (recycle()): the
// next payload that fits goes into it instead of a freshly allocated (and freshly faulted) one.
// With read-ahead and `huge_page_advice_bytes` > 0, a payload of at least that many bytes that
// gets a new buffer is only reserved when its header is read; the next buffer() is then a staging
// one, and huge_page_advice() names the reserved memory, which the executor advises for
// transparent huge pages (madvise(MADV_HUGEPAGE)) *before* that read, so that the first touch of
// the buffer (its sizing, after the read) faults 2 MiB pages instead of 4 KiB ones. The reader
// itself makes no system call: advice is a request its executor carries out (or ignores).
class FrameReader {
 public:
  enum class Status { NeedMore, FrameReady, Malformed };

  FrameReader(Direction direction, uint64_t max_payload_bytes, size_t read_ahead_bytes = 0,
              uint64_t huge_page_advice_bytes = 0, WireFormat wire = {})
      : direction_(direction),
        max_payload_bytes_(max_payload_bytes),
        wire_(wire),
        stage_bytes_(read_ahead_bytes),
        advice_bytes_(read_ahead_bytes > 0 ? huge_page_advice_bytes : 0) {}
  // A copy reads on exactly as the original would (the simulator branches from saved worlds).
  // Spans handed out by the original's buffer() or huge_page_advice() point into the original:
  // ask the copy again.
  FrameReader(const FrameReader& other);
  FrameReader& operator=(const FrameReader& other);
  FrameReader(FrameReader&&) = default;
  FrameReader& operator=(FrameReader&&) = default;
  ~FrameReader() = default;

  // `h` mixed with everything that decides what this reader asks for and yields from now on
  // (fingerprint.hpp): the position in the frame, the partial header, staged bytes not yet
  // parsed, the frames ready (by header), and the recycled buffer's capacity where it decides
  // whether a payload waits for huge-page advice.
  uint64_t fingerprint(uint64_t h) const;

  // Where the next bytes go. Never empty.
  std::span<std::byte> buffer();
  // Memory to advise for huge pages before the read into buffer() (empty: none). Valid, and the
  // same, until the next commit().
  std::span<std::byte> huge_page_advice() const { return advice_; }

  // A payload buffer (of a frame taken earlier) that its owner no longer needs: the next payload
  // whose size is within its capacity is read into it. One is kept, the larger.
  void recycle(std::string buffer) {
    if (buffer.capacity() > spare_.capacity()) spare_ = std::move(buffer);
  }

  // n bytes were stored at buffer(). FrameReady: at least one frame can be taken. Malformed: the
  // stream is broken (frames completed before the damage can still be taken first).
  Status commit(size_t n);

  bool has_frame() const { return !ready_.empty(); }
  // The oldest completed frame (only when has_frame()).
  Frame take();

  // True when part of a frame has been read: end of file now means a truncated frame.
  bool mid_frame() const { return header_filled_ > 0 || length_filled_ > 0 || in_payload_; }
  const std::string& error() const { return error_; }

 private:
  std::span<std::byte> exact_buffer();
  // Consumes n bytes stored at exact_buffer(); false when the header is malformed.
  bool commit_exact(size_t n);
  // Sizes frame_.payload to body_bytes_ (or only reserves it, for advice).
  void start_payload();
  // Python: the length (4 or 12 bytes) is in; false if it is malformed or too large.
  bool python_length_done();
  // Python: the whole body is in frame_.payload; false if it is malformed.
  bool python_body_done();
  // Feeds bytes [0, n) of the staging buffer through the exact state machine; false if broken.
  bool feed_stage(size_t n);

  Direction direction_;
  uint64_t max_payload_bytes_;
  WireFormat wire_;
  HeaderBytes header_bytes_{};
  size_t header_filled_ = 0;
  std::array<std::byte, kPythonMaxLengthBytes> length_bytes_{};  // Python: the message length
  size_t length_filled_ = 0;
  size_t length_wanted_ = 4;  // 4, then 12 for the long form
  uint64_t body_bytes_ = 0;   // what frame_.payload is being filled to
  bool in_payload_ = false;
  size_t payload_filled_ = 0;
  Frame frame_;
  std::deque<Frame> ready_;
  size_t stage_bytes_;                  // 0: exact reads
  std::unique_ptr<std::byte[]> stage_;  // allocated, uninitialised, on first use
  bool direct_ = false;                 // the last buffer() was the payload itself
  uint64_t advice_bytes_;               // 0: never ask for huge pages
  std::span<std::byte> advice_{};       // reserved payload memory awaiting advice
  size_t leftover_ = 0;                 // staged bytes not fed yet (while advice is pending)
  std::string spare_;                   // a recycled payload buffer
  bool broken_ = false;
  std::string error_;
};

}  // namespace pipepool::protocol
