#include "protocol/frame.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "protocol/fingerprint.hpp"

namespace pipepool::protocol {
namespace {

uint32_t header_check(const std::byte* bytes) {
  // FNV-1a over the first 24 bytes.
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < 24; ++i) {
    hash ^= static_cast<uint8_t>(bytes[i]);
    hash *= 16777619u;
  }
  return hash;
}

bool kind_allowed(uint8_t kind, Direction direction) {
  switch (static_cast<FrameKind>(kind)) {
    case FrameKind::Task:
    case FrameKind::RunBatch:
    case FrameKind::Shutdown:
    case FrameKind::Ack:
      return direction == Direction::ToWorker;
    case FrameKind::Started:
    case FrameKind::Result:
    case FrameKind::Error:
      return direction == Direction::ToParent;
  }
  return false;
}

uint64_t load_big_endian(const std::byte* bytes, size_t n) {
  uint64_t value = 0;
  for (size_t i = 0; i < n; ++i) value = value << 8 | static_cast<uint8_t>(bytes[i]);
  return value;
}

void store_big_endian(uint64_t value, std::byte* bytes, size_t n) {
  for (size_t i = n; i-- > 0; value >>= 8) bytes[i] = static_cast<std::byte>(value & 0xff);
}

}  // namespace

bool kind_has_payload(FrameKind kind) {
  return kind == FrameKind::Task || kind == FrameKind::Result || kind == FrameKind::Error;
}

void validate_wire_format(const WireFormat& wire) {
  if (!wire.python) return;
  const auto check = [](uint32_t bytes, const char* name) {
    if (bytes >= kPythonMinOverheadBytes && bytes <= kPythonMaxOverheadBytes) return;
    throw std::invalid_argument(
        std::string("pipepool: Framing::Python needs ") + name + " of at least " +
        std::to_string(kPythonMinOverheadBytes) +
        " bytes (pipepool's frame header travels inside each message's overhead) and at most " +
        std::to_string(kPythonMaxOverheadBytes) + "; got " + std::to_string(bytes));
  };
  check(wire.task_overhead_bytes, "python_task_overhead_bytes");
  check(wire.result_overhead_bytes, "python_result_overhead_bytes");
}

size_t encode_python_length(uint64_t message_bytes,
                            std::array<std::byte, kPythonMaxLengthBytes>& out) {
  if (message_bytes <= kPythonShortLengthMaxBytes) {
    store_big_endian(message_bytes, out.data(), 4);
    return 4;
  }
  store_big_endian(0xffffffff, out.data(), 4);  // struct.pack("!i", -1)
  store_big_endian(message_bytes, out.data() + 4, 8);
  return 12;
}

HeaderBytes encode_header(FrameKind kind, TaskId task_id, uint64_t payload_bytes) {
  HeaderBytes out{};
  std::memcpy(out.data(), &kFrameMagic, 4);
  out[4] = static_cast<std::byte>(kind);
  std::memcpy(out.data() + 8, &task_id, 8);
  std::memcpy(out.data() + 16, &payload_bytes, 8);
  uint32_t check = header_check(out.data());
  std::memcpy(out.data() + 24, &check, 4);
  return out;
}

bool decode_header(std::span<const std::byte, kHeaderBytes> bytes, Direction direction,
                   uint64_t max_payload_bytes, FrameHeader& out, std::string& error) {
  uint32_t magic, check;
  std::memcpy(&magic, bytes.data(), 4);
  std::memcpy(&check, bytes.data() + 24, 4);
  if (magic != kFrameMagic) {
    char text[64];
    std::snprintf(text, sizeof text, "bad frame magic 0x%08x", magic);
    error = text;
    return false;
  }
  if (check != header_check(bytes.data())) {
    error = "frame header check value mismatch";
    return false;
  }
  for (size_t i : {5, 6, 7, 28, 29, 30, 31}) {
    if (bytes[i] != std::byte{0}) {
      error = "non-zero reserved byte in frame header";
      return false;
    }
  }
  uint8_t kind = static_cast<uint8_t>(bytes[4]);
  if (!kind_allowed(kind, direction)) {
    error = "frame kind " + std::to_string(kind) + " not allowed " +
            (direction == Direction::ToParent ? "from a worker" : "from the parent");
    return false;
  }
  out.kind = static_cast<FrameKind>(kind);
  std::memcpy(&out.task_id, bytes.data() + 8, 8);
  std::memcpy(&out.payload_bytes, bytes.data() + 16, 8);
  if (!kind_has_payload(out.kind) && out.payload_bytes != 0) {
    error = std::string(to_string(out.kind)) + " frame with a payload";
    return false;
  }
  if (out.payload_bytes > max_payload_bytes) {
    error = "frame payload of " + std::to_string(out.payload_bytes) +
            " bytes exceeds the maximum of " + std::to_string(max_payload_bytes) + " bytes";
    return false;
  }
  return true;
}

const char* to_string(FrameKind kind) {
  switch (kind) {
    case FrameKind::Task:
      return "Task";
    case FrameKind::RunBatch:
      return "RunBatch";
    case FrameKind::Shutdown:
      return "Shutdown";
    case FrameKind::Ack:
      return "Ack";
    case FrameKind::Started:
      return "Started";
    case FrameKind::Result:
      return "Result";
    case FrameKind::Error:
      return "Error";
  }
  return "Unknown";
}

std::span<std::byte> FrameReader::exact_buffer() {
  if (!in_payload_ && wire_.python) {
    return {length_bytes_.data() + length_filled_, length_wanted_ - length_filled_};
  }
  if (!in_payload_) return {header_bytes_.data() + header_filled_, kHeaderBytes - header_filled_};
  auto* base = reinterpret_cast<std::byte*>(frame_.payload.data());
  return {base + payload_filled_, frame_.payload.size() - payload_filled_};
}

bool FrameReader::commit_exact(size_t n) {
  if (!in_payload_ && wire_.python) {
    length_filled_ += n;
    return length_filled_ < length_wanted_ || python_length_done();
  }
  if (!in_payload_) {
    header_filled_ += n;
    if (header_filled_ < kHeaderBytes) return true;
    header_filled_ = 0;
    if (!decode_header(header_bytes_, direction_, max_payload_bytes_, frame_.header, error_)) {
      return false;
    }
    frame_.payload.clear();
    if (frame_.header.payload_bytes == 0) {
      ready_.push_back(std::move(frame_));
      frame_ = Frame{};
      return true;
    }
    body_bytes_ = frame_.header.payload_bytes;
    start_payload();
    payload_filled_ = 0;
    in_payload_ = true;
    return true;
  }
  payload_filled_ += n;
  if (payload_filled_ < frame_.payload.size()) return true;
  in_payload_ = false;
  if (wire_.python) return python_body_done();
  ready_.push_back(std::move(frame_));
  frame_ = Frame{};
  return true;
}

bool FrameReader::python_length_done() {
  uint64_t length = load_big_endian(length_bytes_.data(), 4);
  if (length_wanted_ == 4 && length == 0xffffffff) {
    length_wanted_ = 12;  // Python's long form: 8 more bytes, read by themselves (_recv(8))
    return true;
  }
  if (length_wanted_ == 12) {
    length = load_big_endian(length_bytes_.data() + 4, 8);
  } else if (length > kPythonShortLengthMaxBytes) {
    error_ = "negative Python message length " + std::to_string(static_cast<int32_t>(length));
    return false;
  }
  length_filled_ = 0;
  length_wanted_ = 4;
  const uint64_t overhead = wire_.overhead_bytes(direction_);
  if (length < kHeaderBytes) {
    error_ = "Python message of " + std::to_string(length) +
             " bytes is shorter than a frame header (32 bytes)";
    return false;
  }
  const uint64_t room = std::max<uint64_t>(overhead, kHeaderBytes);
  if (length > room && length - room > max_payload_bytes_) {
    error_ = "Python message of " + std::to_string(length) + " bytes exceeds the maximum of " +
             std::to_string(max_payload_bytes_) + " bytes of payload + " +
             std::to_string(overhead) + " bytes of overhead";
    return false;
  }
  frame_ = Frame{};
  body_bytes_ = length;
  start_payload();
  payload_filled_ = 0;
  in_payload_ = true;
  return true;
}

bool FrameReader::python_body_done() {
  std::string& body = frame_.payload;
  const uint64_t length = body.size();
  if (!decode_header(std::span<const std::byte, kHeaderBytes>(
                         reinterpret_cast<const std::byte*>(body.data()), kHeaderBytes),
                     direction_, max_payload_bytes_, frame_.header, error_)) {
    return false;
  }
  const uint64_t payload = frame_.header.payload_bytes;
  const uint64_t expected =
      wire_.message_bytes(direction_, kind_has_payload(frame_.header.kind), payload);
  if (length != expected) {
    error_ = "Python message of " + std::to_string(length) + " bytes holds a " +
             to_string(frame_.header.kind) + " frame of " + std::to_string(payload) +
             " payload bytes, which makes a message of " + std::to_string(expected) + " bytes";
    return false;
  }
  if (std::any_of(body.begin() + static_cast<std::ptrdiff_t>(kHeaderBytes + payload), body.end(),
                  [](char c) { return c != 0; })) {
    error_ = "non-zero padding in a Python message";
    return false;
  }
  body.erase(0, kHeaderBytes);  // the payload to the front: one memmove
  body.resize(payload);
  ready_.push_back(std::move(frame_));
  frame_ = Frame{};
  return true;
}

void FrameReader::start_payload() {
  const size_t size = body_bytes_;
  if (spare_.capacity() >= size) {
    // Reuse: no allocation, no fault; resize() fills only what the spare's size lacks.
    frame_.payload = std::move(spare_);
    spare_ = std::string();
    frame_.payload.resize(size);
    return;
  }
  if (advice_bytes_ != 0 && size >= advice_bytes_) {
    // Reserve only: the first touch (resize) waits until the executor has advised the memory.
    frame_.payload.reserve(size);
    advice_ = {reinterpret_cast<std::byte*>(frame_.payload.data()), frame_.payload.capacity()};
    return;
  }
  frame_.payload.resize(size);
}

bool FrameReader::feed_stage(size_t n) {
  size_t used = 0;
  while (used < n) {
    if (!advice_.empty()) {
      // The payload is only reserved: keep the rest staged until the advice has been carried out.
      std::memmove(stage_.get(), stage_.get() + used, n - used);
      leftover_ = n - used;
      return true;
    }
    std::span<std::byte> into = exact_buffer();
    size_t take = std::min(into.size(), n - used);
    std::copy_n(stage_.get() + used, take, into.data());
    used += take;
    if (!commit_exact(take)) return false;
  }
  leftover_ = 0;
  return true;
}

std::span<std::byte> FrameReader::buffer() {
  if (!advice_.empty()) {
    // Advice pending: read into the staging buffer, behind the bytes kept there (at least one
    // byte of the last read completed the header, so there is room).
    direct_ = false;
    if (!stage_) stage_.reset(new std::byte[stage_bytes_]);
    return {stage_.get() + leftover_, stage_bytes_ - leftover_};
  }
  std::span<std::byte> exact = exact_buffer();
  direct_ = stage_bytes_ == 0 || exact.size() >= stage_bytes_;
  if (direct_) return exact;
  if (!stage_) stage_.reset(new std::byte[stage_bytes_]);  // no zero fill: it is written first
  return {stage_.get(), stage_bytes_};
}

FrameReader::Status FrameReader::commit(size_t n) {
  if (broken_) return Status::Malformed;
  if (direct_) {
    if (!commit_exact(n)) broken_ = true;
  } else {
    if (!advice_.empty()) {
      // The executor has advised the reserved payload (or chose not to): size it now.
      advice_ = {};
      frame_.payload.resize(body_bytes_);
    }
    // Feed the staged bytes through the exact state machine, frame after frame.
    if (!feed_stage(leftover_ + n)) broken_ = true;
  }
  if (broken_) return Status::Malformed;
  return ready_.empty() ? Status::NeedMore : Status::FrameReady;
}

Frame FrameReader::take() {
  Frame frame = std::move(ready_.front());
  ready_.pop_front();
  return frame;
}

FrameReader::FrameReader(const FrameReader& other)
    : direction_(other.direction_),
      max_payload_bytes_(other.max_payload_bytes_),
      wire_(other.wire_),
      header_bytes_(other.header_bytes_),
      header_filled_(other.header_filled_),
      length_bytes_(other.length_bytes_),
      length_filled_(other.length_filled_),
      length_wanted_(other.length_wanted_),
      body_bytes_(other.body_bytes_),
      in_payload_(other.in_payload_),
      payload_filled_(other.payload_filled_),
      frame_(other.frame_),
      ready_(other.ready_),
      stage_bytes_(other.stage_bytes_),
      direct_(other.direct_),
      advice_bytes_(other.advice_bytes_),
      leftover_(other.leftover_),
      spare_(),
      broken_(other.broken_),
      error_(other.error_) {
  // Only the staged bytes not yet parsed matter; the rest of the buffer is written before it is
  // read, so a copy allocates it (uninitialised) when it first needs it.
  if (other.stage_ && leftover_ > 0) {
    stage_.reset(new std::byte[stage_bytes_]);
    std::memcpy(stage_.get(), other.stage_.get(), leftover_);
  }
  // The recycled buffer's capacity decides later payloads' paths (reuse, or wait for advice).
  spare_.reserve(other.spare_.capacity());
  if (!other.advice_.empty()) {
    // A reserved payload awaiting advice: reserve as much in the copy (std::string's copy keeps
    // the size, not the capacity).
    frame_.payload.reserve(other.frame_.payload.capacity());
    advice_ = {reinterpret_cast<std::byte*>(frame_.payload.data()), frame_.payload.capacity()};
  }
}

FrameReader& FrameReader::operator=(const FrameReader& other) {
  if (this != &other) *this = FrameReader(other);
  return *this;
}

uint64_t FrameReader::fingerprint(uint64_t h) const {
  h = fingerprint_mix(h, (uint64_t{in_payload_} << 63) ^ (uint64_t{broken_} << 62) ^
                             (uint64_t{advice_.empty()} << 61) ^ (uint64_t{header_filled_} << 40) ^
                             payload_filled_);
  h = fingerprint_bytes(h, std::span<const std::byte>(header_bytes_.data(), header_filled_));
  // Python framing: how far into the message's length, and what the body is filled to.
  h = fingerprint_mix(
      h, (uint64_t{length_filled_} << 48) ^ (uint64_t{length_wanted_} << 40) ^ body_bytes_);
  h = fingerprint_bytes(h, std::span<const std::byte>(length_bytes_.data(), length_filled_));
  if (in_payload_) {
    h = fingerprint_mix(
        h, (static_cast<uint64_t>(frame_.header.kind) << 56) ^ frame_.header.payload_bytes);
    h = fingerprint_mix(h, frame_.header.task_id);
  }
  if (leftover_ > 0) h = fingerprint_bytes(h, std::span<const std::byte>(stage_.get(), leftover_));
  h = fingerprint_mix(h, ready_.size());
  for (const Frame& f : ready_) {
    h = fingerprint_mix(h, (static_cast<uint64_t>(f.header.kind) << 56) ^ f.header.payload_bytes);
    h = fingerprint_mix(h, f.header.task_id);
  }
  if (advice_bytes_ != 0) h = fingerprint_mix(h, spare_.capacity());
  if (broken_) h = fingerprint_text(h, error_);
  return h;
}

}  // namespace pipepool::protocol
