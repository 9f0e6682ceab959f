// Properties of the gather layout (codec.hpp "Scatter/gather", task.hpp): with any bulk threshold,
// a gather-mode encoding holds the same bytes as the contiguous one, only moved, and decodes back
// to the value; through an Outbox (its segments as separate iovecs, written in any split) and a
// FrameReader (read in any split) it arrives whole; damaged gathered payloads are ProtocolErrors.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "pipepool/codec.hpp"
#include "pipepool/detail/payload.hpp"
#include "pipepool/detail/task.hpp"
#include "protocol/frame.hpp"
#include "protocol/outbox.hpp"

namespace rc {
template <class T>
struct Arbitrary<std::optional<T>> {
  static Gen<std::optional<T>> arbitrary() {
    return gen::map(gen::maybe(gen::arbitrary<T>()), [](Maybe<T> value) {
      return value ? std::optional<T>(std::move(*value)) : std::optional<T>();
    });
  }
};
}  // namespace rc

namespace {

using pipepool::detail::GatherBuilder;
using pipepool::detail::Payload;

// Contiguous values at every depth the built-in codecs reach.
using Value = std::tuple<std::string, std::vector<int32_t>, std::optional<std::string>,
                         std::map<std::string, std::vector<double>>, std::vector<std::string>,
                         std::array<std::string, 2>, std::pair<uint8_t, std::string>>;

// Encodes `value` in gather mode with `threshold`: the payload (u64 head_bytes | head | bulk...).
Payload gathered(const Value& value, size_t threshold) {
  GatherBuilder builder(nullptr, threshold);
  pipepool::encode(builder.writer(), value);
  return std::move(builder).finish();
}

Value decode_gathered(const std::string& bytes, size_t threshold) {
  pipepool::Reader reader = pipepool::detail::open_gathered(bytes, threshold);
  Value value = pipepool::decode<Value>(reader);
  reader.expect_end();
  return value;
}

RC_GTEST_PROP(GatherProperties, SameBytesMovedAndDecodedBack, (const Value& value)) {
  const size_t threshold = *rc::gen::inRange<size_t>(1, 80);
  const Payload payload = gathered(value, threshold);
  const std::string contiguous = pipepool::encode_to_string(value);
  // The 8-byte head length is the only byte added; bulk segments are the values' own bytes.
  RC_ASSERT(payload.size() == contiguous.size() + sizeof(uint64_t));
  for (size_t i = 1; i < payload.segments().size(); ++i) {
    RC_ASSERT(payload.segments()[i].size() >= threshold);
  }
  RC_ASSERT(decode_gathered(payload.flatten(), threshold) == value);
  // Copying the bulk (for temporaries) changes where the bytes live, not what they are.
  GatherBuilder copying(nullptr, threshold);
  {
    pipepool::detail::WriterCopies copy(copying.writer(), true);
    pipepool::encode(copying.writer(), value);
  }
  const Payload copied = std::move(copying).finish();
  RC_ASSERT(copied.segments().size() == payload.segments().size());
  RC_ASSERT(copied.flatten() == payload.flatten());
  // A threshold nothing reaches puts everything in the head: the contiguous format exactly.
  const Payload inline_only = gathered(value, SIZE_MAX);
  RC_ASSERT(inline_only.segments().size() == 1u);
  RC_ASSERT(inline_only.flatten().substr(sizeof(uint64_t)) == contiguous);
}

RC_GTEST_PROP(GatherProperties, ThroughOutboxAndReaderUnderAnySplits,
              (const std::vector<Value>& values, bool python)) {
  using namespace pipepool::protocol;
  const size_t threshold = *rc::gen::inRange<size_t>(1, 80);
  WireFormat wire;
  if (python) wire = {true, 40, 96};
  Outbox outbox;
  for (size_t i = 0; i < values.size(); ++i) {
    outbox.push(make_out_frame(wire, Direction::ToParent, FrameKind::Result, i + 1,
                               std::make_shared<const Payload>(gathered(values[i], threshold)), i));
  }
  // Written in writes of random sizes, each one gather() as a writev would take it.
  std::string stream;
  while (!outbox.empty()) {
    std::vector<std::span<const std::byte>> iovecs;
    const size_t offered = outbox.gather(iovecs, 1 + *rc::gen::inRange<size_t>(0, 3));
    const size_t n = std::min(offered, *rc::gen::inRange<size_t>(1, 5000));
    size_t left = n;
    for (auto iovec : iovecs) {
      const size_t take = std::min(left, iovec.size());
      stream.append(reinterpret_cast<const char*>(iovec.data()), take);
      left -= take;
    }
    outbox.consume(n);
  }
  // Read in reads of random sizes (never more than the reader offers).
  FrameReader reader(Direction::ToParent, uint64_t{1} << 30, 0, 0, wire);
  std::vector<Frame> frames;
  for (size_t pos = 0; pos < stream.size();) {
    auto buffer = reader.buffer();
    const size_t n =
        std::min({buffer.size(), stream.size() - pos, *rc::gen::inRange<size_t>(1, 3000)});
    std::memcpy(buffer.data(), stream.data() + pos, n);
    pos += n;
    const auto status = reader.commit(n);
    RC_ASSERT(status != FrameReader::Status::Malformed);
    while (reader.has_frame()) frames.push_back(reader.take());
  }
  RC_ASSERT(frames.size() == values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    RC_ASSERT(frames[i].header.task_id == i + 1);
    RC_ASSERT(decode_gathered(frames[i].payload, threshold) == values[i]);
  }
}

RC_GTEST_PROP(GatherProperties, DamageIsAProtocolErrorNeverACrash, (const Value& value)) {
  const size_t threshold = *rc::gen::inRange<size_t>(1, 80);
  std::string bytes = gathered(value, threshold).flatten();
  const int damage = *rc::gen::inRange(0, 3);
  if (damage == 0) {
    bytes.resize(*rc::gen::inRange<size_t>(0, bytes.size()));  // truncated
  } else if (damage == 1) {
    const uint64_t head = *rc::gen::arbitrary<uint64_t>();  // any head length
    std::memcpy(bytes.data(), &head, sizeof head);
  } else if (!bytes.empty()) {
    const size_t at = *rc::gen::inRange<size_t>(0, bytes.size());
    bytes[at] = static_cast<char>(bytes[at] ^ (1 + *rc::gen::inRange(0, 255)));
  }
  // Decoding with any threshold (the writer's or another) either succeeds or throws ProtocolError.
  const size_t reader_threshold = *rc::gen::element(threshold, *rc::gen::inRange<size_t>(1, 80));
  try {
    (void)decode_gathered(bytes, reader_threshold);
  } catch (const pipepool::ProtocolError&) {
  }
}

}  // namespace
