// pipepool/detail/task.hpp: how a call becomes bytes and back (internal).
//
// Task and result payloads have the gather layout (codec.hpp, "Scatter/gather"):
//
//   u64 head_bytes | head | bulk0 | bulk1 ...
//
// Task head:      u64 trampoline address | callable bytes (sizeof F) | bound values (never bulk) |
//                 u64 item count | items (their large strings and vectors: the bulk segments)
// Result head:    u64 item count | results (void results encode as Unit, i.e. nothing)
// Error payload:  contiguous: u64 failing item index | dynamic type name | nearest standard type |
//                 message
//
// The writer's bulk segments point into the values being sent, and the frame's writev into them:
// see payload.hpp for how long they must live. A value is bulk when it is a contiguous value of at
// least kBulkThresholdBytes inside codecs that allow it; both ends decide it the same way.
//
// Workers are forked from the parent's image, so the trampoline's address and the callable's bytes
// mean the same thing there. That is why a task must be trivially copyable: its bytes are sent.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <forward_list>
#include <functional>
#include <iterator>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "pipepool/codec.hpp"
#include "pipepool/detail/call_state.hpp"
#include "pipepool/detail/payload.hpp"

namespace pipepool::detail {

// `in` reads the task's head and bulk; `out` receives the result (gather layout) or error payload.
using Trampoline = bool (*)(Reader& in, Payload& out);

// Writes the exception being handled (inside a catch block) as an error payload.
void encode_current_exception(std::string& out, uint64_t index);

// Runs a task payload (gather layout) in this process: the worker's (and Pool(0)'s) only entry
// point. Returns false with an error payload in `out` when the task threw; throws ProtocolError
// for bad bytes.
bool execute_task(std::string_view payload, Payload& out);

// A Reader in bulk mode over a payload in the gather layout, written with this bulk threshold.
// Throws ProtocolError when the head's length does not fit in the payload.
Reader open_gathered(std::string_view payload, size_t bulk_threshold_bytes = kBulkThresholdBytes);

// Builds a payload in the gather layout: encode through writer(), then finish(). The payload's
// owner holds the head and `keep` (what the bulk segments point into, when the builder must keep
// it alive; null when the caller guarantees it, payload.hpp).
class GatherBuilder {
 public:
  explicit GatherBuilder(std::shared_ptr<const void> keep = nullptr,
                         size_t bulk_threshold_bytes = kBulkThresholdBytes)
      : writer_((state_.head.resize(sizeof(uint64_t)), state_.head), state_.bulk, state_.copies,
                bulk_threshold_bytes) {
    state_.keep = std::move(keep);
  }
  // The writer points into this object: it stays where it was made.
  GatherBuilder(const GatherBuilder&) = delete;
  GatherBuilder& operator=(const GatherBuilder&) = delete;

  Writer& writer() noexcept { return writer_; }
  // The head so far (its first 8 bytes are the length finish() fills in).
  std::string& head() noexcept { return state_.head; }
  // Adds to what the payload keeps alive.
  void keep_also(std::shared_ptr<const void> more) { state_.also.push_back(std::move(more)); }

  Payload finish() && {
    const uint64_t head_bytes = state_.head.size() - sizeof(uint64_t);
    std::memcpy(state_.head.data(), &head_bytes, sizeof head_bytes);
    // No bulk segment: nothing points outside the head, so nothing else need be kept alive
    // (what `keep` and keep_also() hold is there for bulk segments only). The head alone is the
    // payload, with no more allocations than a plain encoded string: the common small task.
    if (state_.bulk.empty()) return Payload(std::move(state_.head));
    // Moved to the heap: a moved string keeps its heap buffer, a moved forward_list its nodes, so
    // the bulk segments (into the values, or into `copies`) stay valid; the head's segment is
    // taken after the move (a short head lives inside its string).
    auto state = std::make_shared<const State>(std::move(state_));
    const Payload::Segment head(reinterpret_cast<const std::byte*>(state->head.data()),
                                state->head.size());
    const std::span<const Payload::Segment> bulk(state->bulk);
    return Payload(head, bulk, std::shared_ptr<const void>(std::move(state)));
  }

 private:
  struct State {
    std::string head;
    std::vector<std::span<const std::byte>> bulk;
    std::forward_list<std::string> copies;  // bulk bytes of values that did not outlive encoding
    std::shared_ptr<const void> keep;
    std::vector<std::shared_ptr<const void>> also;
  };
  State state_;  // before writer_, which points into it
  Writer writer_;
};

// Turns bulk off in one scope, on both ends alike (the callable's bound values).
using WriterNoBulk = internal::CodecAccess::NoBulkScope<Writer>;
using ReaderNoBulk = internal::CodecAccess::NoBulkScope<Reader>;
// Copies bulk bytes instead of borrowing them, in one scope: for values that do not outlive the
// encoding (a converted argument, a view's computed item). The decoder cannot tell.
using WriterCopies = internal::CodecAccess::CopyScope;

}  // namespace pipepool::detail

namespace pipepool {

// A callable with arguments bound to it (pipepool::bind, pool.hpp): the bound values travel
// through the codec, the callable's bytes as they are.
template <class F, class... Bound>
struct BoundCall {
  F f;
  std::tuple<Bound...> bound;

  template <class... Args>
  decltype(auto) operator()(
      Args&&... args) const requires std::is_invocable_v<const F&, const Bound&..., Args&&...> {
    return std::apply(
        [&](const Bound&... values) -> decltype(auto) {
          return std::invoke(f, values..., std::forward<Args>(args)...);
        },
        bound);
  }
};

}  // namespace pipepool

namespace pipepool::detail {

template <class F>
inline constexpr bool is_bound_v = false;
template <class F, class... Bound>
inline constexpr bool is_bound_v<BoundCall<F, Bound...>> = true;

// A function pointer.
template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F>&& std::is_function_v<std::remove_pointer_t<F>>;
// A class with no data: a captureless lambda, a stateless functor.
template <class F>
inline constexpr bool is_stateless_class_v =
    std::is_class_v<F>&& std::is_empty_v<F>&& std::is_trivially_copyable_v<F>;

// What may be sent as a task: its bytes mean the same in a worker forked from this image.
template <class F>
inline constexpr bool is_sendable_callable_v =
    is_function_pointer_v<F> || is_stateless_class_v<F> || is_bound_v<F>;

template <class R>
using Stored = std::conditional_t<std::is_void_v<R>, Unit, R>;

// The parameter types of a callable whose signature is known (a function pointer, a lambda or
// functor with one non-template operator()), decayed: what arguments are converted to, as a call
// would convert them, before they are encoded. Unknown (a generic lambda): the arguments' types.
template <class Sig>
struct MemberSignature {
  static constexpr bool known = false;
};
#define PIPEPOOL_MEMBER_SIGNATURE(QUALIFIERS)         \
  template <class R, class C, class... A>             \
  struct MemberSignature<R (C::*)(A...) QUALIFIERS> { \
    static constexpr bool known = true;               \
    using params = std::tuple<std::decay_t<A>...>;    \
  };
PIPEPOOL_MEMBER_SIGNATURE()
PIPEPOOL_MEMBER_SIGNATURE(const)
PIPEPOOL_MEMBER_SIGNATURE(noexcept)
PIPEPOOL_MEMBER_SIGNATURE(const noexcept)
#undef PIPEPOOL_MEMBER_SIGNATURE

template <class F, class = void>
struct Signature {
  static constexpr bool known = false;
};
template <class R, class... A>
struct Signature<R (*)(A...)> {
  static constexpr bool known = true;
  using params = std::tuple<std::decay_t<A>...>;
};
template <class R, class... A>
struct Signature<R (*)(A...) noexcept> : Signature<R (*)(A...)> {};
template <class F>
struct Signature<F, std::void_t<decltype(&F::operator())>>
    : MemberSignature<decltype(&F::operator())> {};

template <size_t N, class Tuple>
struct DropFront;
template <class... Ts>
struct DropFront<0, std::tuple<Ts...>> {
  using type = std::tuple<Ts...>;
};
template <size_t N, class T, class... Ts>
requires(N > 0) struct DropFront<N, std::tuple<T, Ts...>> : DropFront<N - 1, std::tuple<Ts...>> {
};

// A bound call's parameters: those of its callable after the bound ones.
template <class F, class... Bound>
requires(Signature<F>::known&& std::tuple_size_v<typename Signature<F>::params> >=
         sizeof...(Bound)) struct Signature<BoundCall<F, Bound...>> {
  static constexpr bool known = true;
  using params = typename DropFront<sizeof...(Bound), typename Signature<F>::params>::type;
};

template <class F, size_t N>
constexpr bool signature_has_arity() {
  if constexpr (Signature<F>::known) {
    return std::tuple_size_v<typename Signature<F>::params> == N;
  } else {
    return false;
  }
}

template <class F, class Fallback, size_t N>
struct ParamsOr {
  using type = Fallback;
};
template <class F, class Fallback, size_t N>
requires(signature_has_arity<F, N>()) struct ParamsOr<F, Fallback, N> {
  using type = typename Signature<F>::params;
};

// The argument tuple a call f(args...) sends.
template <class F, class... Args>
using call_args_tuple_t = typename ParamsOr<F, std::tuple<Args...>, sizeof...(Args)>::type;
// ... for map/imap over items of type Item.
template <class F, class Item>
using args_tuple_t = call_args_tuple_t<F, std::remove_cvref_t<Item>>;

template <class F, class Tuple>
struct StarArgs;
template <class F, template <class...> class T, class... Ts>
struct StarArgs<F, T<Ts...>> {
  using type = call_args_tuple_t<F, std::remove_cvref_t<Ts>...>;
};
template <class F, class E, size_t N>
struct StarArgs<F, std::array<E, N>> {
  using type = typename ParamsOr<F, std::array<E, N>, N>::type;
};
// ... for starmap over tuples, pairs or arrays of arguments.
template <class F, class Item>
using star_args_tuple_t = typename StarArgs<F, std::remove_cvref_t<Item>>::type;

// The worker-side entry of one (F, argument tuple) pair.
// The callable's bytes (a captureless lambda: its one byte is padding, sent as zero).
template <class F>
void write_callable(Writer& writer, const F& f) {
  if constexpr (std::is_empty_v<F>) {
    const std::array<char, sizeof(F)> none{};
    writer.write_bytes(none.data(), none.size());
  } else {
    writer.write_trivial(f);
  }
}
template <class F>
F read_callable(Reader& in) {
  std::array<char, sizeof(F)> raw;
  in.read_bytes(raw.data(), sizeof(F));
  return std::bit_cast<F>(raw);
}

// A task's callable on the wire: its bytes, and for a bound call its bound values (encoded).
// The bound values are never bulk: the callable is a copy that does not outlive the encoding.
template <class F>
void encode_callable(Writer& writer, const F& f) {
  if constexpr (is_bound_v<F>) {
    write_callable(writer, f.f);
    WriterNoBulk inline_only(writer, true);
    pipepool::encode(writer, f.bound);
  } else {
    write_callable(writer, f);
  }
}
template <class F>
F decode_callable(Reader& in) {
  if constexpr (is_bound_v<F>) {
    auto inner = read_callable<decltype(F::f)>(in);
    ReaderNoBulk inline_only(in, true);
    return F{inner, pipepool::decode<decltype(F::bound)>(in)};
  } else {
    return read_callable<F>(in);
  }
}

// The worker-side entry of one (F, argument tuple) pair: runs every item and encodes its result
// in gather mode at once; a result that made bulk segments (they point into it) is moved into a
// list the payload's owner keeps until the frame is written (a move keeps a string's or vector's
// heap buffer, codec.hpp), the others are gone as before.
template <class F, class ArgsTuple>
bool run_chunk(Reader& in, Payload& out) {
  const F f = decode_callable<F>(in);
  const auto count = in.read_trivial<uint64_t>();
  using R = decltype(std::apply(f, std::declval<ArgsTuple>()));
  GatherBuilder builder;
  Writer& writer = builder.writer();
  writer.write_trivial<uint64_t>(count);
  std::shared_ptr<std::forward_list<Stored<R>>> kept;
  for (uint64_t i = 0; i < count; ++i) {
    ArgsTuple args = pipepool::decode<ArgsTuple>(in);
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply(f, std::move(args));
      } else {
        Stored<R> result = std::apply(f, std::move(args));
        const size_t bulk_before = writer.bulk_bytes();
        pipepool::encode(writer, result);
        if (writer.bulk_bytes() != bulk_before) {
          if (!kept) {
            kept = std::make_shared<std::forward_list<Stored<R>>>();
            builder.keep_also(kept);
          }
          kept->push_front(std::move(result));
        }
      }
    } catch (...) {
      std::string error;
      encode_current_exception(error, i);
      out = Payload(std::move(error));
      return false;
    }
  }
  in.expect_end();
  out = std::move(builder).finish();
  return true;
}

// Starts a task payload for callable f in `builder`, to be followed by `count` encoded items.
// Returns the offset of the count in the head, for set_task_count when the number of items is
// known only afterwards.
template <class F, class ArgsTuple>
size_t begin_task(GatherBuilder& builder, const F& f, uint64_t count) {
  const Trampoline trampoline = &run_chunk<F, ArgsTuple>;
  Writer& writer = builder.writer();
  writer.write_trivial(reinterpret_cast<uintptr_t>(trampoline));
  encode_callable(writer, f);
  const size_t count_at = builder.head().size();
  writer.write_trivial<uint64_t>(count);
  return count_at;
}

inline void set_task_count(GatherBuilder& builder, size_t count_at, uint64_t count) {
  std::memcpy(builder.head().data() + count_at, &count, sizeof count);
}

// Decodes a chunk's results (gather layout), appending them to `out`.
template <class R>
void decode_results(const std::string& payload, std::vector<Stored<R>>& out) {
  Reader reader = open_gathered(payload);
  const size_t count = reader.read_size(min_encoded_size<Stored<R>>());
  // Appending chunk after chunk: an exact reserve() each time would copy the whole vector per
  // chunk (quadratic); let the vector grow geometrically instead.
  if (out.empty()) out.reserve(count);
  for (size_t i = 0; i < count; ++i) out.push_back(pipepool::decode<Stored<R>>(reader));
  reader.expect_end();
}

// Python's default chunksize rule for map: ceil(n / (4 * workers)), at least 1.
inline size_t default_chunksize(size_t items, int workers) {
  if (items == 0) return 1;
  size_t divisor = 4 * static_cast<size_t>(workers > 0 ? workers : 1);
  return (items + divisor - 1) / divisor;
}

}  // namespace pipepool::detail
