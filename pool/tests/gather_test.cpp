// Scatter/gather (issue 11, item 1): a large contiguous value goes from the caller's object to the
// pipe with one writev pointing into it; async calls own what their frames point into.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <vector>

#include "pipepool/codec.hpp"
#include "pipepool/detail/payload.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/pool.hpp"

namespace {

using pipepool::detail::Payload;

struct Named {  // a user codec that has not opted in: everything into the head
  std::string name;
};
struct Opted {  // ... and one that has
  std::string name;
};

}  // namespace

template <>
struct pipepool::Codec<Named> {
  static void encode(Writer& writer, const Named& value) { pipepool::encode(writer, value.name); }
  static Named decode(Reader& reader) { return {pipepool::decode<std::string>(reader)}; }
};
template <>
struct pipepool::Codec<Opted> {
  static constexpr bool kScatterGather = true;
  static void encode(Writer& writer, const Opted& value) { pipepool::encode(writer, value.name); }
  static Opted decode(Reader& reader) { return {pipepool::decode<std::string>(reader)}; }
};

namespace {

std::string echo(std::string s) {
  return s;
}
size_t length_of(const std::string& s) {
  return s.size();
}
std::string name_of(Named n) {
  return n.name;
}
std::string opted_name(Opted n) {
  return n.name;
}
std::string join(std::tuple<std::string, std::vector<double>, std::optional<std::string>> t) {
  return std::get<0>(t) + std::to_string(std::get<1>(t).size()) + std::get<2>(t).value_or("-");
}

// Whether one of the payload's segments is exactly [data, data + size).
bool has_segment(const Payload& payload, const void* data, size_t size) {
  return std::ranges::any_of(payload.segments(), [&](Payload::Segment s) {
    return static_cast<const void*>(s.data()) == data && s.size() == size;
  });
}
// Whether a segment points into [data, data + size) at all.
bool points_into(const Payload& payload, const void* data, size_t size) {
  const auto* begin = static_cast<const std::byte*>(data);
  return std::ranges::any_of(payload.segments(), [&](Payload::Segment s) {
    return s.data() >= begin && s.data() < begin + size;
  });
}

template <class F, class... Args>
Payload sync_payload(F f, Args&&... args) {
  using ArgsTuple = pipepool::detail::call_args_tuple_t<F, std::decay_t<Args>...>;
  return pipepool::detail::encode_apply<F, ArgsTuple, false>(f, std::forward<Args>(args)...);
}
template <class F, class... Args>
Payload async_payload(F f, Args&&... args) {
  using ArgsTuple = pipepool::detail::call_args_tuple_t<F, std::decay_t<Args>...>;
  return pipepool::detail::encode_apply<F, ArgsTuple, true>(f, std::forward<Args>(args)...);
}

// Runs a task payload here, as a worker would, and decodes its one result.
template <class R>
R run_here(const Payload& task) {
  Payload result;
  EXPECT_TRUE(pipepool::detail::execute_task(task.flatten(), result));
  std::vector<R> out;
  pipepool::detail::decode_results<R>(result.flatten(), out);
  EXPECT_EQ(out.size(), 1u);
  return out.at(0);
}

TEST(GatherPayload, SynchronousApplyPointsIntoTheCallersString) {
  const std::string big(1 << 20, 'b');
  const Payload payload = sync_payload(echo, big);
  EXPECT_TRUE(has_segment(payload, big.data(), big.size()));
  EXPECT_EQ(payload.segments().size(), 2u);  // the head, then the string's own bytes
  EXPECT_EQ(run_here<std::string>(payload), big);
}

TEST(GatherPayload, SmallValuesStayInTheHead) {
  const std::string small(pipepool::kBulkThresholdBytes - 1, 's');
  const Payload payload = sync_payload(echo, small);
  EXPECT_EQ(payload.segments().size(), 1u);
  EXPECT_FALSE(points_into(payload, small.data(), small.size()));
  EXPECT_EQ(run_here<std::string>(payload), small);
}

TEST(GatherPayload, AsyncApplyMovesAnRvalueAndCopiesAnLvalueOnce) {
  std::string moved(1 << 20, 'm');
  const void* buffer = moved.data();
  const Payload from_rvalue = async_payload(echo, std::move(moved));
  EXPECT_TRUE(has_segment(from_rvalue, buffer, size_t{1} << 20));  // the same heap buffer

  std::string kept(1 << 20, 'k');
  const Payload from_lvalue = async_payload(echo, kept);
  EXPECT_FALSE(points_into(from_lvalue, kept.data(), kept.size()));
  EXPECT_EQ(from_lvalue.segments().size(), 2u);
  std::fill(kept.begin(), kept.end(), 'z');  // the call's copy is its own
  EXPECT_EQ(run_here<std::string>(from_lvalue), std::string(1 << 20, 'k'));
}

TEST(GatherPayload, ValuesInsideTuplesAndOptionalsAreBulk) {
  std::tuple<std::string, std::vector<double>, std::optional<std::string>> value{
      std::string(5000, 'a'), std::vector<double>(1000, 1.5), std::string(9000, 'c')};
  const Payload payload = sync_payload(join, value);
  EXPECT_TRUE(has_segment(payload, std::get<0>(value).data(), 5000));
  EXPECT_TRUE(has_segment(payload, std::get<1>(value).data(), 1000 * sizeof(double)));
  EXPECT_TRUE(has_segment(payload, std::get<2>(value)->data(), 9000));
  EXPECT_EQ(run_here<std::string>(payload),
            std::string(5000, 'a') + "1000" + std::string(9000, 'c'));
}

TEST(GatherPayload, UserCodecsAreBulkFreeUnlessTheyOptIn) {
  const Named named{std::string(1 << 16, 'n')};
  const Payload inline_payload = sync_payload(name_of, named);
  EXPECT_EQ(inline_payload.segments().size(), 1u);
  EXPECT_EQ(run_here<std::string>(inline_payload), named.name);

  const Opted opted{std::string(1 << 16, 'o')};
  const Payload bulk_payload = sync_payload(opted_name, opted);
  EXPECT_TRUE(has_segment(bulk_payload, opted.name.data(), opted.name.size()));
  EXPECT_EQ(run_here<std::string>(bulk_payload), opted.name);
}

TEST(GatherPayload, AConvertedArgumentIsNotBorrowed) {
  // A const char* becomes a std::string that is gone once encoded: its bulk segment is a copy
  // the payload keeps (the layout is what the worker expects from the type and the length).
  const std::string text(8192, 't');
  const Payload payload = sync_payload(echo, text.c_str());
  EXPECT_EQ(payload.segments().size(), 2u);
  EXPECT_FALSE(points_into(payload, text.data(), text.size()));
  EXPECT_EQ(run_here<std::string>(payload), text);
}

TEST(GatherPayload, BoundValuesStayInTheHead) {
  const auto bound = pipepool::bind(
      +[](std::string a, std::string b) { return a + b; }, std::string(8192, 'x'));
  const Payload payload = sync_payload(bound, std::string(10, 'y'));
  EXPECT_EQ(payload.segments().size(), 1u);
  EXPECT_EQ(run_here<std::string>(payload), std::string(8192, 'x') + std::string(10, 'y'));
}

TEST(GatherPayload, TheWorkersResultPointsIntoTheResultValue) {
  const std::string argument(1 << 20, 'r');  // a borrowed argument must outlive the payload
  const Payload task = sync_payload(echo, argument);
  Payload result;
  ASSERT_TRUE(pipepool::detail::execute_task(task.flatten(), result));
  ASSERT_EQ(result.segments().size(), 2u);  // head (count, length), then the string's bytes
  EXPECT_EQ(result.segments()[1].size(), size_t{1} << 20);
  EXPECT_EQ(result.size(), 8 + 8 + 8 + (size_t{1} << 20));
}

TEST(GatherPayload, AHeadLengthPastTheEndIsAProtocolError) {
  std::string bytes(16, '\0');
  bytes[0] = 100;  // head of 100 bytes in a payload of 16
  EXPECT_THROW(pipepool::detail::open_gathered(bytes), pipepool::ProtocolError);
  EXPECT_THROW(pipepool::detail::open_gathered("abc"), pipepool::ProtocolError);
}

// ---- through real workers --------------------------------------------------------------------

std::vector<std::string> big_strings() {
  std::vector<std::string> xs;
  for (int i = 0; i < 6; ++i) xs.push_back(std::string((size_t{1} << 18) + i * 4099, 'a' + i));
  xs.push_back("tiny");
  return xs;
}

TEST(GatherPool, EveryCallShapeRoundTripsLargeValues) {
  for (const bool sockets : {false, true}) {
    pipepool::Options options{.processes = 2};
    if (sockets) options.transport = pipepool::Transport::SocketPair;
    pipepool::Pool pool(options);
    const std::vector<std::string> xs = big_strings();
    EXPECT_EQ(pool.map(echo, xs, 2), xs);
    EXPECT_EQ(pool.apply(echo, xs[0]), xs[0]);
    EXPECT_EQ(pool.apply_async(echo, std::string(xs[1])).get(), xs[1]);
    std::vector<std::tuple<std::string>> tuples;
    for (const auto& x : xs) tuples.emplace_back(x);
    EXPECT_EQ(pool.starmap(echo, tuples), xs);
    // A view's computed values are temporaries: their bulk bytes are copies.
    std::vector<size_t> lengths;
    for (size_t n : pool.imap(
             length_of, xs | std::views::transform([](const std::string& s) { return s + s; }))) {
      lengths.push_back(n);
    }
    ASSERT_EQ(lengths.size(), xs.size());
    for (size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(lengths[i], 2 * xs[i].size());
  }
}

TEST(GatherPool, AsyncCallsOwnTheirArguments) {
  pipepool::Pool pool(2);
  std::vector<std::string> xs = big_strings();
  const std::vector<std::string> expected = xs;
  std::string one = xs[0];
  auto mapped = pool.map_async(echo, xs, 1);
  auto applied = pool.apply_async(echo, one);
  auto stream = pool.imap(echo, xs);
  // The caller reuses its objects at once; the calls sent what they held at submission.
  for (auto& x : xs) std::fill(x.begin(), x.end(), 'z');
  std::fill(one.begin(), one.end(), 'z');
  EXPECT_EQ(mapped.get(), expected);
  EXPECT_EQ(applied.get(), expected[0]);
  // imap reads its (borrowed) range as it goes: what it has not submitted yet is read now.
  size_t i = 0;
  for (const std::string& y : stream) {
    EXPECT_EQ(y.size(), expected[i].size());
    ++i;
  }
  EXPECT_EQ(i, expected.size());
}

TEST(GatherPool, AMovedRangeIsTakenNotCopied) {
  pipepool::Pool pool(1);
  std::vector<std::string> xs = big_strings();
  const std::vector<std::string> expected = xs;
  auto result = pool.map_async(echo, std::move(xs));
  EXPECT_EQ(result.get(), expected);
}

TEST(GatherPool, PythonFramingCarriesSegmentsToo) {
  pipepool::Options options{.processes = 2};
  options.framing = pipepool::Framing::Python;
  options.python_task_overhead_bytes = 64;
  options.python_result_overhead_bytes = 48;
  pipepool::Pool pool(options);
  const std::vector<std::string> xs = big_strings();
  EXPECT_EQ(pool.map(echo, xs, 3), xs);
}

TEST(GatherPool, InlinePoolRunsGatheredPayloads) {
  pipepool::Pool pool(0);
  const std::vector<std::string> xs = big_strings();
  EXPECT_EQ(pool.map(echo, xs), xs);
  EXPECT_EQ(pool.apply_async(echo, xs[2]).get(), xs[2]);
}

}  // namespace
