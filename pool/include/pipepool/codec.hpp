// pipepool/codec.hpp: the binary encoding of task arguments and results.
//
// A task's arguments travel from the parent to a worker, and its result back, as bytes on a pipe.
// This header turns values into those bytes and back. Both ends are the same binary (the worker is
// a fork of the parent), so the format is native-endian and unversioned; but the decoder trusts
// nothing: every length is checked against the bytes that remain *before* anything is allocated,
// and every inconsistency throws `pipepool::ProtocolError` with a message naming the type being
// decoded, the byte offset and what was wrong. A truncated, oversized or corrupted buffer never
// crashes the decoder nor makes it reserve memory for elements the input cannot hold (see Bounds).
//
// Example:
//
//   std::string bytes = pipepool::encode_to_string(std::map<std::string, int>{{"a", 1}});
//   auto back = pipepool::decode_from_string<std::map<std::string, int>>(bytes);
//
// Customisation point. A type is sent by `pipepool::Codec<T>`; specialise it for your own types,
// in namespace pipepool, before the type is first used with the pool:
//
//   struct Point3 { std::string label; std::vector<double> xyz; };
//
//   template <>
//   struct pipepool::Codec<Point3> {
//     static void encode(pipepool::Writer& writer, const Point3& point) {
//       pipepool::encode(writer, point.label);  // members go through pipepool::encode/decode,
//       pipepool::encode(writer, point.xyz);    // so they are bounded and checked like the rest
//     }
//     static Point3 decode(pipepool::Reader& reader) {
//       Point3 point;
//       point.label = pipepool::decode<std::string>(reader);
//       point.xyz = pipepool::decode<std::vector<double>>(reader);
//       return point;
//     }
//     // Optional: the fewest bytes encode() ever writes (default 1). Containers of Point3 use it
//     // to bound their length on decode. Declare 0 if encode() may write nothing.
//     static constexpr std::size_t kMinEncodedSize = 16;
//   };
//
// A decode() that finds bad bytes reports them with `reader.fail("what was wrong")`, which throws
// the ProtocolError. A type for which no codec exists is rejected at compile time by
// `pipepool::encode`/`decode` with a static_assert naming the supported types, and
// `pipepool::Encodable<T>` tests for it without error.
//
// Format (all integers native-endian; "length" is a u64):
//
//   arithmetic types, enums    the object's bytes (sizeof(T))
//   bool                       one byte, 0 or 1 (anything else is a ProtocolError)
//   Unit                       nothing (the result of a void task)
//   std::string                length, then the bytes
//   std::vector<T>             length, then the elements; one memcpy when T's codec is raw bytes
//   std::vector<bool>          length, then the bits packed 8 per byte, LSB first, zero padding
//   std::array<T, N>           the N elements (no length); one memcpy when T's codec is raw bytes
//   std::pair, std::tuple      the members in order (std::tuple<> is nothing)
//   std::optional<T>           one byte 0 (empty) or 1, then the value if present
//   std::variant<Ts...>        u32 alternative index (checked against the number of alternatives),
//                              then the alternative
//   std::map, unordered_map    length, then key, value, key, value, ...; a repeated key throws
//   trivially copyable classes the object's bytes (sizeof(T)), not validated
//
// WARNING for trivially copyable classes: they are copied byte for byte, with no check. A struct
// holding a pointer sends the pointer's value; in a forked worker that address points at the
// worker's own copy of the parent's memory *as of the fork*, not at the parent's object, and in
// the other direction it points at nothing useful at all. Members with invalid byte patterns (a
// bool other than 0/1) are not detected either. Specialise Codec<T> for such types.
//
// Bounds: a container of N elements is accepted only if N * kMinEncodedSize(element) bytes remain,
// so what the decoder allocates is at most sizeof(element) / kMinEncodedSize(element) times the
// input size (a 2^62 length in a 100-byte buffer is a ProtocolError, not a bad_alloc). Elements
// whose encoding may be empty (Unit, std::tuple<>, std::array<T, 0>, user codecs with
// kMinEncodedSize = 0) are not bounded by the input size, so a single Writer or Reader accepts at
// most kMaxZeroByteElements of them in total, on encode and on decode alike.
//
// Scatter/gather. The pool sends task arguments and results without copying their large
// contiguous parts: it encodes with a Writer in gather mode, which keeps small bytes in a *head*
// and records each contiguous value of at least kBulkThresholdBytes (a std::string's characters, a
// std::vector of raw elements, also inside tuples, pairs, optionals, variants, maps and arrays) as
// a span into the value (a *bulk segment*); the frame is then written with one writev pointing
// into the caller's objects. Its payload is `u64 head_bytes | head | bulk0 | bulk1 ...`; a Reader
// in bulk mode decodes it, both ends deciding bulk-or-inline the same way (by type and length),
// so nothing else is on the wire. encode_to_string/decode_from_string keep the contiguous format
// above. A user codec takes no part in it (everything it writes goes to the head) unless it opts
// in with
//
//     static constexpr bool kScatterGather = true;
//
// which promises: encode() passes pipepool::encode only references to memory that outlives the
// call and is not modified (members of the value, not temporaries: a temporary's bytes would be
// borrowed after it is gone); moving the value keeps that memory where it is (as moving a string's
// or vector's heap buffer does: the pool may move a value after encoding it, to keep it alive);
// and decode() moves what pipepool::decode returns into the result instead of copying or
// transforming it. A
// codec that writes raw bytes itself may call writer.write_contiguous(data, size) after a length
// prefix and read them with reader.read_contiguous(size).
//
// Thread safety: Writer and Reader are plain objects without synchronisation; the free functions
// are safe to call concurrently on distinct objects.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <forward_list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "pipepool/errors.hpp"

namespace pipepool {

class Writer;
class Reader;

// The customisation point: `static void encode(Writer&, const T&)`, `static T decode(Reader&)`,
// and optionally `static constexpr std::size_t kMinEncodedSize`. See the header comment.
template <class T, class Enable = void>
struct Codec;

// Most elements with a possibly empty encoding that one Writer writes or one Reader reads, over
// all its containers. Bounds the memory a few bytes of input can make the decoder allocate.
inline constexpr std::size_t kMaxZeroByteElements = std::size_t{1} << 20;

// The result type of a task returning void. Encodes as nothing. Like std::monostate, all Units
// compare equal.
struct Unit {
  friend constexpr auto operator<=>(Unit, Unit) noexcept = default;
};

namespace internal {

struct CodecAccess;

// The name of T as the compiler spells it, for error messages.
template <class T>
constexpr std::string_view type_name() noexcept {
#if defined(__GNUC__) || defined(__clang__)
  constexpr std::string_view function = __PRETTY_FUNCTION__;
  constexpr std::size_t start = function.find("T = ");
  if constexpr (start == std::string_view::npos) {
    return "value";
  } else {
    constexpr std::size_t semicolon = function.find(';', start);
    constexpr std::size_t end =
        semicolon != std::string_view::npos ? semicolon : function.rfind(']');
    return function.substr(start + 4, end - (start + 4));
  }
#else
  return "value";
#endif
}

// Shortens libstdc++'s spellings: "std::__cxx11::basic_string<char>" -> "std::string".
inline std::string readable_type_name(std::string_view name) {
  std::string out(name);
  const auto replace_all = [&out](std::string_view from, std::string_view to) {
    for (std::size_t at = out.find(from); at != std::string::npos; at = out.find(from, at)) {
      out.replace(at, from.size(), to);
      at += to.size();
    }
  };
  replace_all("std::__cxx11::", "std::");
  replace_all("std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
              "std::string");
  replace_all("std::basic_string<char>", "std::string");
  return out;
}

[[noreturn]] inline void throw_protocol_error(std::string_view verb, std::string_view type,
                                              std::size_t offset, std::string_view problem) {
  std::string message = "pipepool: cannot ";
  message += verb;
  message += ' ';
  message += readable_type_name(type);
  message += " at byte ";
  message += std::to_string(offset);
  message += ": ";
  message += problem;
  throw ProtocolError(message);
}

}  // namespace internal

// Contiguous values of at least this many bytes (a std::string's characters, a std::vector of raw
// elements) travel as a separate bulk segment of a gather-mode payload instead of inside its head
// (see "Scatter/gather" in the header comment). The one place this number lives.
inline constexpr std::size_t kBulkThresholdBytes = 4096;

// Appends encoded values to a caller-owned std::string (the bytes are stored as char).
//
// Gather mode (the second constructor): small bytes go to the string (the *head*), and a contiguous
// value of at least the threshold written with write_contiguous() is recorded as a span into the
// value itself (a *bulk segment*), not copied. The spans borrow: the value must stay alive and
// unmodified until the bytes have been consumed (for the pool: until the peer has read the frame).
// Where the value does not live that long (a temporary), a copy scope (CodecAccess::CopyScope)
// makes bulk segments copies kept in `copies` instead: the layout, which the decoder must be able
// to predict from types and lengths alone, stays the same.
class Writer {
 public:
  // Appends to `buffer`, which must outlive the Writer. Existing contents are kept.
  explicit Writer(std::string& buffer) noexcept : buffer_(&buffer) {}
  // Gather mode: small bytes to `head`, contiguous values of at least `bulk_threshold_bytes` (> 0)
  // as spans appended to `bulk`. Both must outlive the Writer.
  // `copies` holds the bulk bytes copied in a copy scope (list nodes: they never move).
  Writer(std::string& head, std::vector<std::span<const std::byte>>& bulk,
         std::forward_list<std::string>& copies,
         std::size_t bulk_threshold_bytes = kBulkThresholdBytes) noexcept
      : buffer_(&head),
        bulk_(&bulk),
        copies_(&copies),
        bulk_threshold_(bulk_threshold_bytes == 0 ? 1 : bulk_threshold_bytes) {}

  // Appends `size` bytes from `data` (which may be null when size is 0). Always into the head.
  void write_bytes(const void* data, std::size_t size) {
    if (size != 0) buffer_->append(static_cast<const char*>(data), size);
  }

  // The bytes of a contiguous value, after the length prefix that lets the decoder size it: in
  // gather mode, where bulk is allowed (see kScatterGather) and `size` reaches the threshold, a
  // borrowed bulk segment; otherwise as write_bytes. The decoder must read them with
  // Reader::read_contiguous(size).
  void write_contiguous(const void* data, std::size_t size) {
    if (bulk_ != nullptr && bulk_allowed_ && size >= bulk_threshold_) {
      if (!borrow_) {
        const std::string& copy = copies_->emplace_front(static_cast<const char*>(data), size);
        data = copy.data();
      }
      bulk_->emplace_back(static_cast<const std::byte*>(data), size);
      bulk_bytes_ += size;
    } else {
      write_bytes(data, size);
    }
  }

  // Appends the object representation of `value` (sizeof(T) bytes).
  template <class T>
  void write_trivial(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>, "write_trivial needs a trivially copyable type");
    write_bytes(std::addressof(value), sizeof(T));
  }

  // Appends a container length as a u64. `min_encoded_bytes_per_element` must be the value the
  // decoder passes to Reader::read_size; when it is 0 the count is charged against
  // kMaxZeroByteElements and going over throws ProtocolError.
  void write_size(std::size_t count, std::size_t min_encoded_bytes_per_element) {
    if (min_encoded_bytes_per_element == 0) {
      if (count > kMaxZeroByteElements - zero_byte_elements_) {
        fail("more than " + std::to_string(kMaxZeroByteElements) +
             " elements whose encoding is empty (kMaxZeroByteElements)");
      }
      zero_byte_elements_ += count;
    }
    write_trivial(static_cast<std::uint64_t>(count));
  }

  // Bytes written: in the buffer (including any that were there before this Writer), plus the
  // bulk segments recorded in gather mode.
  std::size_t size() const noexcept { return buffer_->size() + bulk_bytes_; }
  std::string& buffer() const noexcept { return *buffer_; }
  bool gather_mode() const noexcept { return bulk_ != nullptr; }
  // Bytes recorded as bulk segments so far (gather mode; 0 otherwise).
  std::size_t bulk_bytes() const noexcept { return bulk_bytes_; }

  // Throws ProtocolError naming the type being encoded, the offset and `problem`.
  [[noreturn]] void fail(std::string_view problem) const {
    internal::throw_protocol_error("encode", encoding_, size(), problem);
  }

 private:
  friend struct internal::CodecAccess;

  std::string* buffer_;
  std::vector<std::span<const std::byte>>* bulk_ = nullptr;
  std::forward_list<std::string>* copies_ = nullptr;
  std::size_t bulk_threshold_ = kBulkThresholdBytes;
  std::size_t bulk_bytes_ = 0;
  bool bulk_allowed_ = true;
  bool borrow_ = true;
  std::string_view encoding_ = "value";
  std::size_t zero_byte_elements_ = 0;
};

// Reads encoded values from a byte buffer it does not own. Every read is bounds-checked and
// throws ProtocolError (naming the type being decoded) when the bytes run out.
//
// Bulk mode (the second constructor) reads what a gather-mode Writer wrote: the head, and the
// bulk bytes, in the order the head's values name them, from a second buffer.
class Reader {
 public:
  // Reads from `bytes`, which must outlive the Reader.
  explicit Reader(std::string_view bytes) noexcept : bytes_(bytes) {}
  // Bulk mode: the head in `head`, the bulk segments one after another in `bulk`; the threshold
  // must be the writer's.
  Reader(std::string_view head, std::string_view bulk,
         std::size_t bulk_threshold_bytes = kBulkThresholdBytes) noexcept
      : bytes_(head),
        bulk_(bulk),
        bulk_mode_(true),
        bulk_threshold_(bulk_threshold_bytes == 0 ? 1 : bulk_threshold_bytes) {}

  // Copies the next `size` bytes into `out` (which may be null when size is 0).
  // Throws ProtocolError if fewer than `size` bytes remain; nothing is consumed then.
  void read_bytes(void* out, std::size_t size) {
    if (size > head_remaining()) fail_truncated(size);
    if (size != 0) std::memcpy(out, bytes_.data() + position_, size);
    position_ += size;
  }

  // The next `size` bytes, as a view into the input buffer. Throws like read_bytes.
  std::string_view read_view(std::size_t size) {
    if (size > head_remaining()) fail_truncated(size);
    std::string_view view = bytes_.substr(position_, size);
    position_ += size;
    return view;
  }

  // The bytes of a contiguous value written with Writer::write_contiguous(data, size): from the
  // bulk buffer when the writer would have made them a bulk segment, else as read_view.
  std::string_view read_contiguous(std::size_t size) {
    if (!takes_bulk(size)) return read_view(size);
    if (size > bulk_.size() - bulk_position_) {
      fail("truncated bulk: " + std::to_string(size) + " byte(s) needed, " +
           std::to_string(bulk_.size() - bulk_position_) + " remain");
    }
    std::string_view view = bulk_.substr(bulk_position_, size);
    bulk_position_ += size;
    return view;
  }
  // Whether a contiguous value of `size` bytes comes from the bulk (where the writer put it).
  bool takes_bulk(std::size_t size) const noexcept {
    return bulk_mode_ && bulk_allowed_ && size >= bulk_threshold_;
  }

  // Reads sizeof(T) bytes as a T (no default constructor needed). Throws like read_bytes.
  template <class T>
  T read_trivial() {
    static_assert(std::is_trivially_copyable_v<T>, "read_trivial needs a trivially copyable type");
    std::array<char, sizeof(T)> bytes;
    read_bytes(bytes.data(), sizeof(T));
    return std::bit_cast<T>(bytes);
  }

  // Reads a container length written by Writer::write_size and checks it: with a positive
  // `min_encoded_bytes_per_element`, count * min must not exceed the bytes remaining; with 0, the
  // count is charged against kMaxZeroByteElements. Throws ProtocolError otherwise, so the caller
  // may reserve `count` elements safely.
  std::size_t read_size(std::size_t min_encoded_bytes_per_element) {
    const std::uint64_t count = read_trivial<std::uint64_t>();
    if (min_encoded_bytes_per_element != 0) {
      if (count > remaining() / min_encoded_bytes_per_element) {
        fail("length " + std::to_string(count) + " needs at least " +
             std::to_string(min_encoded_bytes_per_element) + " byte(s) per element but only " +
             std::to_string(remaining()) + " bytes remain");
      }
    } else {
      if (count > kMaxZeroByteElements - zero_byte_elements_) {
        fail("length " + std::to_string(count) + " of elements whose encoding is empty exceeds " +
             "the " + std::to_string(kMaxZeroByteElements - zero_byte_elements_) +
             " left of kMaxZeroByteElements");
      }
      zero_byte_elements_ += static_cast<std::size_t>(count);
    }
    return static_cast<std::size_t>(count);
  }

  // Bytes not read yet: of the head, plus (bulk mode) of the bulk. Bounds lengths: every element
  // of a container has its minimum encoding somewhere in them.
  std::size_t remaining() const noexcept {
    return head_remaining() + (bulk_.size() - bulk_position_);
  }
  std::size_t head_remaining() const noexcept { return bytes_.size() - position_; }
  std::size_t position() const noexcept { return position_; }

  // Throws ProtocolError if any bytes are left.
  void expect_end() const {
    if (remaining() != 0) {
      fail(std::to_string(remaining()) + " trailing byte(s) after the value");
    }
  }

  // Throws ProtocolError naming the type being decoded, the offset and `problem`.
  [[noreturn]] void fail(std::string_view problem) const {
    internal::throw_protocol_error("decode", decoding_, position_, problem);
  }

 private:
  friend struct internal::CodecAccess;

  [[noreturn]] void fail_truncated(std::size_t size) const {
    fail("truncated input: " + std::to_string(size) + " byte(s) needed, " +
         std::to_string(head_remaining()) + " remain");
  }

  std::string_view bytes_;
  std::size_t position_ = 0;
  std::string_view bulk_;
  std::size_t bulk_position_ = 0;
  bool bulk_mode_ = false;
  std::size_t bulk_threshold_ = kBulkThresholdBytes;
  bool bulk_allowed_ = true;
  std::string_view decoding_ = "value";
  std::size_t zero_byte_elements_ = 0;
};

namespace internal {

template <class>
inline constexpr bool dependent_false = false;

// Sets the type named in a Writer's or Reader's error messages for one scope.
struct CodecAccess {
  template <class Stream>
  class TypeScope {
   public:
    TypeScope(Stream& stream, std::string_view type) noexcept
        : stream_(stream), previous_(current(stream)) {
      current(stream_) = type;
    }
    ~TypeScope() { current(stream_) = previous_; }
    TypeScope(const TypeScope&) = delete;
    TypeScope& operator=(const TypeScope&) = delete;

   private:
    Stream& stream_;
    std::string_view previous_;
  };

  static std::string_view& current(Writer& writer) noexcept { return writer.encoding_; }
  static std::string_view& current(Reader& reader) noexcept { return reader.decoding_; }

  // Turns bulk off for one scope (a codec that has not opted in, or a temporary being encoded);
  // it stays off in every scope nested inside.
  template <class Stream>
  class NoBulkScope {
   public:
    NoBulkScope(Stream& stream, bool off) noexcept
        : stream_(stream), previous_(stream.bulk_allowed_) {
      if (off) stream_.bulk_allowed_ = false;
    }
    ~NoBulkScope() { stream_.bulk_allowed_ = previous_; }
    NoBulkScope(const NoBulkScope&) = delete;
    NoBulkScope& operator=(const NoBulkScope&) = delete;

   private:
    Stream& stream_;
    bool previous_;
  };

  // Makes a gather-mode Writer copy its bulk segments (into its `copies`) instead of borrowing
  // them, for one scope and every scope nested in it: for values that do not outlive the
  // encoding. The bytes on the wire are the same.
  class CopyScope {
   public:
    CopyScope(Writer& writer, bool copy) noexcept : writer_(writer), previous_(writer.borrow_) {
      if (copy) writer_.borrow_ = false;
    }
    ~CopyScope() { writer_.borrow_ = previous_; }
    CopyScope(const CopyScope&) = delete;
    CopyScope& operator=(const CopyScope&) = delete;

   private:
    Writer& writer_;
    bool previous_;
  };
};

template <class T, template <class...> class Template>
inline constexpr bool is_specialization_of = false;
template <template <class...> class Template, class... Args>
inline constexpr bool is_specialization_of<Template<Args...>, Template> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <class T>
inline constexpr bool is_std_span = false;
template <class T, std::size_t Extent>
inline constexpr bool is_std_span<std::span<T, Extent>> = true;

// Trivially copyable class types sent as raw bytes: not the standard templates that have their own
// codec (their raw bytes could hold invalid states) nor non-owning views (their bytes are a
// pointer into the sender's memory).
template <class T>
inline constexpr bool has_own_std_codec_or_is_view =
    is_std_array<T> || is_std_span<T> || is_specialization_of<T, std::pair> ||
    is_specialization_of<T, std::tuple> || is_specialization_of<T, std::optional> ||
    is_specialization_of<T, std::variant> || is_specialization_of<T, std::basic_string_view>;
template <class T>
inline constexpr bool uses_raw_class_codec =
    std::conjunction_v<std::is_class<T>, std::is_trivially_copyable<T>,
                       std::bool_constant<!has_own_std_codec_or_is_view<T>>>;

// Marks a codec whose encoding is exactly the object's sizeof(T) bytes, so that containers of T
// can be copied with one memcpy.
struct RawBytesCodec {
  using pipepool_raw_bytes = void;
};
struct NotRawBytesCodec {};

#define PIPEPOOL_CODEC_UNSUPPORTED_MESSAGE                                                  \
  "pipepool: type T cannot be sent to a worker: use arithmetic types, enums, std::string, " \
  "std::vector, std::array, std::pair, std::tuple, std::optional, std::map, "               \
  "std::unordered_map, std::variant, trivially copyable structs, or specialise "            \
  "pipepool::Codec<T> (the instantiation notes name T; for a container, check the element " \
  "types)"

// The primary Codec for a type without one. Only its marker is looked at by Encodable; its member
// templates fire the static_assert only if something actually tries to encode or decode a T.
template <class T>
struct MissingCodec {
  using pipepool_missing_codec = void;

  template <class U = T>
  static void encode(Writer&, const U&) {
    static_assert(dependent_false<U>, PIPEPOOL_CODEC_UNSUPPORTED_MESSAGE);
  }
  template <class U = T>
  static U decode(Reader&) {
    static_assert(dependent_false<U>, PIPEPOOL_CODEC_UNSUPPORTED_MESSAGE);
  }
};

// Trivially copyable class types: the object's bytes. See the warning in the header comment.
template <class T>
struct RawClassCodec : RawBytesCodec {
  static constexpr std::size_t kMinEncodedSize = sizeof(T);
  static void encode(Writer& writer, const T& value) { writer.write_trivial(value); }
  static T decode(Reader& reader) { return reader.read_trivial<T>(); }
};

template <class C>
concept MarkedMissing = requires {
  typename C::pipepool_missing_codec;
};

}  // namespace internal

// The primary template: raw bytes for trivially copyable class types, otherwise no codec (using
// it is a compile-time error with the message above).
template <class T, class Enable>
struct Codec : std::conditional_t<internal::uses_raw_class_codec<T>, internal::RawClassCodec<T>,
                                  internal::MissingCodec<T>> {};

// True iff values of T can be sent to a worker: a built-in or user Codec<T> exists with
// `encode(Writer&, const T&)` and `T decode(Reader&)`. Never a hard error.
template <class T>
concept Encodable = !internal::MarkedMissing<Codec<T>> &&
                    requires(Writer & writer, Reader& reader, const T& value) {
  Codec<T>::encode(writer, value);
  { Codec<T>::decode(reader) } -> std::same_as<T>;
};

// The fewest bytes the encoding of a T can have: Codec<T>::kMinEncodedSize, or 1 if the codec does
// not declare it.
template <Encodable T>
constexpr std::size_t min_encoded_size() noexcept {
  if constexpr (requires { Codec<T>::kMinEncodedSize; }) {
    return Codec<T>::kMinEncodedSize;
  } else {
    return 1;
  }
}

// Whether Codec<T> may hand out bulk segments (scatter/gather, see the header comment): the
// built-in codecs and user codecs that declare `static constexpr bool kScatterGather = true`.
template <class T>
constexpr bool scatter_gather_codec() noexcept {
  if constexpr (requires { Codec<T>::kScatterGather; }) {
    return Codec<T>::kScatterGather;
  } else {
    return false;
  }
}

// Appends the encoding of `value`. Throws ProtocolError if the value cannot be encoded (a
// valueless std::variant, more than kMaxZeroByteElements empty elements), plus whatever the
// allocator throws. A T without a codec is a compile-time error.
template <class T>
void encode(Writer& writer, const T& value) {
  static_assert(Encodable<T>, PIPEPOOL_CODEC_UNSUPPORTED_MESSAGE);
  if constexpr (Encodable<T>) {
    internal::CodecAccess::TypeScope<Writer> scope(writer, internal::type_name<T>());
    internal::CodecAccess::NoBulkScope<Writer> bulk(writer, !scatter_gather_codec<T>());
    Codec<T>::encode(writer, value);
  }
}

// Decodes one T from the reader's current position. Throws ProtocolError for truncated or
// inconsistent bytes (the message names the innermost type being decoded). Bytes after the value
// are left for the caller.
template <class T>
T decode(Reader& reader) {
  static_assert(Encodable<T>, PIPEPOOL_CODEC_UNSUPPORTED_MESSAGE);
  if constexpr (Encodable<T>) {
    internal::CodecAccess::TypeScope<Reader> scope(reader, internal::type_name<T>());
    internal::CodecAccess::NoBulkScope<Reader> bulk(reader, !scatter_gather_codec<T>());
    return Codec<T>::decode(reader);
  }
}

// The encoding of `value` as a new string. Throws like encode().
template <class T>
std::string encode_to_string(const T& value) {
  std::string bytes;
  Writer writer(bytes);
  pipepool::encode(writer, value);
  return bytes;
}

// Decodes a T that must span all of `bytes`. Throws like decode(), and ProtocolError if bytes are
// left over.
template <class T>
T decode_from_string(std::string_view bytes) {
  Reader reader(bytes);
  T value = pipepool::decode<T>(reader);
  internal::CodecAccess::TypeScope<Reader> scope(reader, internal::type_name<T>());
  reader.expect_end();
  return value;
}

namespace internal {

// True if Codec<T> encodes exactly the object's bytes, so arrays of T can be copied at once.
template <class T>
concept RawBytes = Encodable<T> && std::is_trivially_copyable_v<T> && requires {
  typename Codec<T>::pipepool_raw_bytes;
};

// Writes a length and the elements of a range, checking that each element wrote at least the
// minimum its codec declares (so that the decoder's bound holds).
template <class Element, class Range>
void encode_elements(Writer& writer, const Range& range, std::size_t count) {
  constexpr std::size_t kMin = min_encoded_size<Element>();
  writer.write_size(count, kMin);
  const std::size_t start = writer.size();
  for (const auto& element : range) pipepool::encode(writer, element);
  if (kMin != 0 && (writer.size() - start) / kMin < count) {
    writer.fail("the codec of an element type wrote fewer bytes than its kMinEncodedSize (" +
                std::to_string(kMin) + ")");
  }
}

// The same for maps: key and value pairs.
template <class Key, class Value, class Map>
void encode_map(Writer& writer, const Map& map) {
  constexpr std::size_t kMin = min_encoded_size<Key>() + min_encoded_size<Value>();
  writer.write_size(map.size(), kMin);
  const std::size_t start = writer.size();
  for (const auto& [key, value] : map) {
    pipepool::encode(writer, key);
    pipepool::encode(writer, value);
  }
  if (kMin != 0 && (writer.size() - start) / kMin < map.size()) {
    writer.fail("the codec of the key or value type wrote fewer bytes than its kMinEncodedSize");
  }
}

}  // namespace internal

// Arithmetic types (except bool) and enums: the object's bytes.
template <class T>
struct Codec<
    T, std::enable_if_t<(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) || std::is_enum_v<T>>>
    : internal::RawBytesCodec {
  static constexpr std::size_t kMinEncodedSize = sizeof(T);
  static void encode(Writer& writer, T value) { writer.write_trivial(value); }
  static T decode(Reader& reader) { return reader.read_trivial<T>(); }
};

// bool: one byte, 0 or 1.
template <>
struct Codec<bool> {
  static constexpr std::size_t kMinEncodedSize = 1;
  static void encode(Writer& writer, bool value) {
    writer.write_trivial(static_cast<std::uint8_t>(value ? 1 : 0));
  }
  static bool decode(Reader& reader) {
    const auto byte = reader.read_trivial<std::uint8_t>();
    if (byte > 1) reader.fail("invalid bool byte " + std::to_string(byte) + " (expected 0 or 1)");
    return byte == 1;
  }
};

// Unit: nothing.
template <>
struct Codec<Unit> {
  static constexpr std::size_t kMinEncodedSize = 0;
  static void encode(Writer&, Unit) {}
  static Unit decode(Reader&) { return {}; }
};

// std::string: length, then the bytes.
template <>
struct Codec<std::string> {
  static constexpr std::size_t kMinEncodedSize = sizeof(std::uint64_t);
  static constexpr bool kScatterGather = true;
  static void encode(Writer& writer, const std::string& value) {
    writer.write_size(value.size(), 1);
    writer.write_contiguous(value.data(), value.size());
  }
  static std::string decode(Reader& reader) {
    const std::size_t size = reader.read_size(1);
    return std::string(reader.read_contiguous(size));
  }
};

// std::vector<T>: length, then the elements (one memcpy when T's codec is raw bytes).
template <Encodable T, class Allocator>
struct Codec<std::vector<T, Allocator>> {
  using Vector = std::vector<T, Allocator>;
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize = sizeof(std::uint64_t);
  static constexpr bool kBulk = internal::RawBytes<T> && std::default_initializable<T>;

  static void encode(Writer& writer, const Vector& value) {
    if constexpr (kBulk) {
      writer.write_size(value.size(), sizeof(T));
      writer.write_contiguous(value.data(), value.size() * sizeof(T));
    } else {
      internal::encode_elements<T>(writer, value, value.size());
    }
  }

  static Vector decode(Reader& reader) {
    if constexpr (kBulk) {
      const std::size_t count = reader.read_size(sizeof(T));
      const std::string_view bytes = reader.read_contiguous(count * sizeof(T));
      Vector out(count);
      if (count != 0) std::memcpy(out.data(), bytes.data(), bytes.size());
      return out;
    } else {
      const std::size_t count = reader.read_size(min_encoded_size<T>());
      Vector out;
      out.reserve(count);
      for (std::size_t i = 0; i < count; ++i) out.push_back(pipepool::decode<T>(reader));
      return out;
    }
  }
};

// std::vector<bool>: length, then the bits, 8 per byte, least significant first, zero padding.
template <class Allocator>
struct Codec<std::vector<bool, Allocator>> {
  using Vector = std::vector<bool, Allocator>;
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize = sizeof(std::uint64_t);

  static void encode(Writer& writer, const Vector& value) {
    writer.write_trivial(static_cast<std::uint64_t>(value.size()));
    std::string bits((value.size() + 7) / 8, '\0');
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (value[i]) bits[i / 8] = static_cast<char>(bits[i / 8] | (1 << (i % 8)));
    }
    writer.write_bytes(bits.data(), bits.size());
  }

  static Vector decode(Reader& reader) {
    const auto count = reader.read_trivial<std::uint64_t>();
    const std::uint64_t byte_count = count / 8 + (count % 8 != 0 ? 1 : 0);
    if (byte_count > reader.remaining()) {
      reader.fail("length " + std::to_string(count) + " needs " + std::to_string(byte_count) +
                  " bytes but only " + std::to_string(reader.remaining()) + " remain");
    }
    const std::string_view bits = reader.read_view(static_cast<std::size_t>(byte_count));
    if (count % 8 != 0 && (static_cast<unsigned char>(bits.back()) >> (count % 8)) != 0) {
      reader.fail("nonzero padding bits after the last element");
    }
    Vector out(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = ((static_cast<unsigned char>(bits[i / 8]) >> (i % 8)) & 1U) != 0;
    }
    return out;
  }
};

// std::array<T, N>: the N elements (one memcpy when T's codec is raw bytes).
template <Encodable T, std::size_t N>
struct Codec<std::array<T, N>>
    : std::conditional_t<internal::RawBytes<T> && N != 0 &&
                             sizeof(std::array<T, N>) == N * sizeof(T),
                         internal::RawBytesCodec, internal::NotRawBytesCodec> {
  using Array = std::array<T, N>;
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize = N * min_encoded_size<T>();
  static constexpr bool kBulk =
      internal::RawBytes<T> && N != 0 && sizeof(std::array<T, N>) == N * sizeof(T);

  static void encode([[maybe_unused]] Writer& writer, const Array& value) {
    if constexpr (kBulk) {
      writer.write_bytes(value.data(), N * sizeof(T));
    } else {
      for (const T& element : value) pipepool::encode(writer, element);
    }
  }

  static Array decode([[maybe_unused]] Reader& reader) {
    if constexpr (kBulk) {
      return reader.read_trivial<Array>();
    } else if constexpr (std::default_initializable<T> && std::is_move_assignable_v<T>) {
      Array out{};
      for (T& element : out) element = pipepool::decode<T>(reader);
      return out;
    } else {
      return decode_each(reader, std::make_index_sequence<N>{});
    }
  }

 private:
  template <std::size_t... I>
  static Array decode_each([[maybe_unused]] Reader& reader, std::index_sequence<I...>) {
    // A braced list is evaluated left to right.
    return Array{((void)I, pipepool::decode<T>(reader))...};
  }
};

// std::pair: first, then second.
template <Encodable First, Encodable Second>
struct Codec<std::pair<First, Second>> {
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize =
      min_encoded_size<First>() + min_encoded_size<Second>();
  static void encode(Writer& writer, const std::pair<First, Second>& value) {
    pipepool::encode(writer, value.first);
    pipepool::encode(writer, value.second);
  }
  static std::pair<First, Second> decode(Reader& reader) {
    // A braced list is evaluated left to right.
    return std::pair<First, Second>{pipepool::decode<First>(reader),
                                    pipepool::decode<Second>(reader)};
  }
};

// std::tuple: the members in order; std::tuple<> is nothing.
template <Encodable... Ts>
struct Codec<std::tuple<Ts...>> {
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize = (std::size_t{0} + ... + min_encoded_size<Ts>());
  static void encode([[maybe_unused]] Writer& writer, const std::tuple<Ts...>& value) {
    std::apply([&](const Ts&... members) { (pipepool::encode(writer, members), ...); }, value);
  }
  static std::tuple<Ts...> decode([[maybe_unused]] Reader& reader) {
    // A braced list is evaluated left to right.
    return std::tuple<Ts...>{pipepool::decode<Ts>(reader)...};
  }
};

// std::optional: a byte 0 or 1, then the value if present.
template <Encodable T>
struct Codec<std::optional<T>> {
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize = 1;
  static void encode(Writer& writer, const std::optional<T>& value) {
    writer.write_trivial(static_cast<std::uint8_t>(value.has_value() ? 1 : 0));
    if (value.has_value()) pipepool::encode(writer, *value);
  }
  static std::optional<T> decode(Reader& reader) {
    const auto flag = reader.read_trivial<std::uint8_t>();
    if (flag == 0) return std::nullopt;
    if (flag != 1) {
      reader.fail("invalid presence byte " + std::to_string(flag) + " (expected 0 or 1)");
    }
    return std::optional<T>(std::in_place, pipepool::decode<T>(reader));
  }
};

// std::variant: u32 alternative index, then the alternative.
template <Encodable... Ts>
struct Codec<std::variant<Ts...>> {
  using Variant = std::variant<Ts...>;
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize =
      sizeof(std::uint32_t) + std::min({min_encoded_size<Ts>()...});

  static void encode(Writer& writer, const Variant& value) {
    if (value.valueless_by_exception()) writer.fail("the variant is valueless_by_exception");
    writer.write_trivial(static_cast<std::uint32_t>(value.index()));
    std::visit([&writer](const auto& alternative) { pipepool::encode(writer, alternative); },
               value);
  }

  static Variant decode(Reader& reader) {
    const auto index = reader.read_trivial<std::uint32_t>();
    if (index >= sizeof...(Ts)) {
      reader.fail("alternative index " + std::to_string(index) + " out of range (the variant has " +
                  std::to_string(sizeof...(Ts)) + " alternatives)");
    }
    static constexpr std::array<Variant (*)(Reader&), sizeof...(Ts)> decoders =
        make_decoders(std::index_sequence_for<Ts...>{});
    return decoders[index](reader);
  }

 private:
  template <std::size_t I>
  static Variant decode_alternative(Reader& reader) {
    return Variant(std::in_place_index<I>,
                   pipepool::decode<std::variant_alternative_t<I, Variant>>(reader));
  }
  template <std::size_t... I>
  static constexpr std::array<Variant (*)(Reader&), sizeof...(I)> make_decoders(
      std::index_sequence<I...>) {
    return {&decode_alternative<I>...};
  }
};

// std::map: length, then key, value, key, value, ...; a repeated key is a ProtocolError.
template <Encodable Key, Encodable Value, class Compare, class Allocator>
struct Codec<std::map<Key, Value, Compare, Allocator>> {
  using Map = std::map<Key, Value, Compare, Allocator>;
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize = sizeof(std::uint64_t);

  static void encode(Writer& writer, const Map& value) {
    internal::encode_map<Key, Value>(writer, value);
  }

  static Map decode(Reader& reader) {
    const std::size_t count = reader.read_size(min_encoded_size<Key>() + min_encoded_size<Value>());
    Map out;
    for (std::size_t i = 0; i < count; ++i) {
      Key key = pipepool::decode<Key>(reader);
      Value value = pipepool::decode<Value>(reader);
      const std::size_t size_before = out.size();
      out.emplace_hint(out.end(), std::move(key), std::move(value));  // sorted input: O(1)
      if (out.size() == size_before) reader.fail("repeated key in map");
    }
    return out;
  }
};

// std::unordered_map: as std::map.
template <Encodable Key, Encodable Value, class Hash, class KeyEqual, class Allocator>
struct Codec<std::unordered_map<Key, Value, Hash, KeyEqual, Allocator>> {
  using Map = std::unordered_map<Key, Value, Hash, KeyEqual, Allocator>;
  static constexpr bool kScatterGather = true;
  static constexpr std::size_t kMinEncodedSize = sizeof(std::uint64_t);

  static void encode(Writer& writer, const Map& value) {
    internal::encode_map<Key, Value>(writer, value);
  }

  static Map decode(Reader& reader) {
    const std::size_t count = reader.read_size(min_encoded_size<Key>() + min_encoded_size<Value>());
    Map out;
    out.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      Key key = pipepool::decode<Key>(reader);
      Value value = pipepool::decode<Value>(reader);
      if (!out.emplace(std::move(key), std::move(value)).second) {
        reader.fail("repeated key in unordered_map");
      }
    }
    return out;
  }
};

#undef PIPEPOOL_CODEC_UNSUPPORTED_MESSAGE

}  // namespace pipepool
