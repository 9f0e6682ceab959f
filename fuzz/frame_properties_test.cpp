// Properties of the frame layer: whatever the bytes and however a pipe splits them, the reader
// either returns exactly the frames that were written or reports a malformed frame; it never
// allocates past its bound.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/outbox.hpp"

namespace pipepool::protocol {
namespace {

struct Written {
  FrameKind kind;
  TaskId id;
  std::string payload;
};

// Feeds `stream` to a reader in pieces of the given sizes (cycled), as read(2) on a pipe would.
std::vector<Frame> read_all(const std::string& stream, const std::vector<size_t>& pieces,
                            Direction direction, uint64_t max_payload, bool& malformed) {
  FrameReader reader(direction, max_payload);
  std::vector<Frame> frames;
  size_t pos = 0, piece = 0;
  malformed = false;
  while (pos < stream.size()) {
    auto buffer = reader.buffer();
    size_t want =
        pieces.empty() ? buffer.size() : std::max<size_t>(1, pieces[piece++ % pieces.size()]);
    size_t n = std::min({want, buffer.size(), stream.size() - pos});
    std::memcpy(buffer.data(), stream.data() + pos, n);
    pos += n;
    auto status = reader.commit(n);
    if (status == FrameReader::Status::Malformed) {
      malformed = true;
      return frames;
    }
    if (status == FrameReader::Status::FrameReady) frames.push_back(reader.take());
  }
  return frames;
}

RC_GTEST_PROP(FrameProperties, OutboxThenReaderRoundTripsUnderAnySplit,
              (const std::vector<std::string>& payloads, const std::vector<size_t>& pieces)) {
  Outbox outbox;
  uint64_t sequence = 0;
  for (size_t i = 0; i < payloads.size(); ++i) {
    // Each payload in segments of 1, 2, 3, ... bytes: gather() must hand them out in order, as
    // separate iovecs, with header and padding around them.
    std::shared_ptr<const Payload> payload;
    if (!payloads[i].empty()) {
      auto owner = std::make_shared<const std::string>(payloads[i]);
      std::vector<Payload::Segment> segments;
      for (size_t at = 0, length = 1; at < owner->size(); at += length, ++length) {
        segments.emplace_back(reinterpret_cast<const std::byte*>(owner->data()) + at,
                              std::min(length, owner->size() - at));
      }
      payload = std::make_shared<const Payload>(std::move(segments), owner);
    }
    outbox.push({encode_header(FrameKind::Result, i + 1, payloads[i].size()), payload, sequence++});
  }
  // Drain the outbox in writes of arbitrary sizes, as a non-blocking pipe would take them.
  std::string stream;
  size_t piece = 0;
  while (!outbox.empty()) {
    std::vector<std::span<const std::byte>> segments;
    outbox.gather(segments, 3);
    size_t budget = pieces.empty() ? SIZE_MAX : pieces[piece++ % pieces.size()] + 1;
    size_t written = 0;
    for (auto s : segments) {
      size_t n = std::min(s.size(), budget - written);
      stream.append(reinterpret_cast<const char*>(s.data()), n);
      written += n;
      if (written == budget) break;
    }
    outbox.consume(written);
  }
  bool malformed;
  auto frames = read_all(stream, pieces, Direction::ToParent, 1 << 20, malformed);
  RC_ASSERT(!malformed);
  RC_ASSERT(frames.size() == payloads.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    RC_ASSERT(frames[i].header.task_id == i + 1);
    RC_ASSERT(frames[i].payload == payloads[i]);
  }
}

RC_GTEST_PROP(FrameProperties, CorruptingAnyHeaderByteIsDetected,
              (const std::string& payload, uint8_t position, uint8_t flip)) {
  RC_PRE(flip != 0);
  auto header = encode_header(FrameKind::Task, 7, payload.size());
  const size_t index = position % kHeaderBytes;
  header[index] ^= static_cast<std::byte>(flip);
  std::string stream(reinterpret_cast<const char*>(header.data()), kHeaderBytes);
  stream += payload;
  bool malformed;
  auto frames = read_all(stream, {}, Direction::ToWorker, 1 << 20, malformed);
  // Every header byte is covered by the magic, the check value or the reserved-zero rule.
  RC_ASSERT(malformed);
  RC_ASSERT(frames.empty());
}

RC_GTEST_PROP(FrameProperties, LengthsOverTheBoundAreRejectedBeforeAllocation, ()) {
  const uint64_t bound = 4096;
  const uint64_t length = *rc::gen::inRange<uint64_t>(bound + 1, UINT64_MAX);
  auto header = encode_header(FrameKind::Result, 1, length);
  std::string stream(reinterpret_cast<const char*>(header.data()), kHeaderBytes);
  bool malformed;
  read_all(stream, {}, Direction::ToParent, bound, malformed);
  RC_ASSERT(malformed);
}

RC_GTEST_PROP(FrameProperties, FramesOfTheWrongDirectionAreRejected, (bool task_to_parent)) {
  auto header = encode_header(task_to_parent ? FrameKind::Task : FrameKind::Result, 1, 0);
  std::string stream(reinterpret_cast<const char*>(header.data()), kHeaderBytes);
  bool malformed;
  read_all(stream, {}, task_to_parent ? Direction::ToParent : Direction::ToWorker, 1 << 20,
           malformed);
  RC_ASSERT(malformed);
}

}  // namespace
}  // namespace pipepool::protocol
