// pipepool/detail/payload.hpp: the bytes of one task or result on their way to a pipe (internal).
// Standard library only: the protocol, which makes no system call, includes it.
//
// A Payload is a list of segments (spans) and an owner that keeps them alive. The frame that
// carries it is written with one writev whose iovecs are the header and these segments, so a
// segment may point straight into the caller's objects (a gather-mode Writer, codec.hpp).
//
// THE LIFETIME INVARIANT. Memory a frame points into stays valid and unmodified until the peer has
// finished reading that frame. The owner is the one place that rule is kept: whoever builds a
// Payload either puts what its segments point into inside the owner (async calls, worker results),
// or, with an owner that holds nothing of it (synchronous calls borrowing the caller's arguments),
// does not let that memory go before every task holding the Payload has completed (a completed
// task's frame has been read by its worker, or will never be written again). A stronger rule
// (until the task's result has arrived, needed to vmsplice the segments) is the same owner kept
// longer.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace pipepool::detail {

class Payload {
 public:
  using Segment = std::span<const std::byte>;

  Payload() = default;
  // Owns `bytes` (one segment; none when empty). Implicit: a payload is often just a string.
  Payload(std::string bytes) {  // NOLINT(google-explicit-constructor)
    auto owned = std::make_shared<const std::string>(std::move(bytes));
    add(Segment(reinterpret_cast<const std::byte*>(owned->data()), owned->size()));
    owner_ = std::move(owned);
  }
  // `segments` in order; `owner` keeps them alive (see the invariant above). Empty segments are
  // dropped.
  Payload(std::span<const Segment> segments, std::shared_ptr<const void> owner)
      : owner_(std::move(owner)) {
    for (Segment segment : segments) add(segment);
  }
  // `first`, then `rest`, in order (a head and its bulk segments).
  Payload(Segment first, std::span<const Segment> rest, std::shared_ptr<const void> owner)
      : owner_(std::move(owner)) {
    add(first);
    for (Segment segment : rest) add(segment);
  }

  // Up to two segments (a head and one bulk value, the common case) are kept without allocating.
  std::span<const Segment> segments() const noexcept {
    return more_.empty() ? std::span<const Segment>(few_.data(), few_count_)
                         : std::span<const Segment>(more_);
  }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const std::shared_ptr<const void>& owner() const noexcept { return owner_; }

  // The bytes, copied into one string (Pool(0), tests).
  std::string flatten() const {
    std::string out;
    out.reserve(size_);
    for (Segment segment : segments()) {
      out.append(reinterpret_cast<const char*>(segment.data()), segment.size());
    }
    return out;
  }

 private:
  void add(Segment segment) {
    if (segment.empty()) return;
    size_ += segment.size();
    if (more_.empty() && few_count_ < few_.size()) {
      few_[few_count_++] = segment;
      return;
    }
    if (more_.empty()) more_.assign(few_.begin(), few_.end());
    more_.push_back(segment);
  }

  std::array<Segment, 2> few_{};
  std::size_t few_count_ = 0;
  std::vector<Segment> more_;  // all of them, once there are more than two
  std::shared_ptr<const void> owner_;
  std::size_t size_ = 0;
};

}  // namespace pipepool::detail
