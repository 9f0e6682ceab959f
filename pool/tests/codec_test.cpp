// Tests of pipepool/codec.hpp: round trips of every built-in codec, user codecs, and the decoder's
// defences against truncated, oversized and corrupted input.
#include "pipepool/codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "pipepool/errors.hpp"

namespace {

enum class Color : std::uint8_t { kRed = 1, kGreen = 2 };
enum PlainEnum { kPlainA = 7, kPlainB = -3 };

// A trivially copyable struct: sent as raw bytes by the fallback codec.
struct Sample {
  std::int32_t id;
  double weight;
  std::array<char, 5> tag;
  friend bool operator==(const Sample&, const Sample&) = default;
};

// Trivially copyable but not default constructible: decoded without a default constructor.
struct Meters {
  explicit constexpr Meters(double v) : value(v) {}
  double value;
  friend bool operator==(const Meters&, const Meters&) = default;
};

// Not trivially copyable, with a user codec.
struct Person {
  std::string name;
  std::vector<int> scores;
  friend bool operator==(const Person&, const Person&) = default;
};

// Not trivially copyable and without a codec.
struct NoCodec {
  std::string text;
};

// A user codec that lies about its minimum size: caught on encode.
struct Liar {};

// Copying throws once armed: makes a valueless variant.
struct Explosive {
  Explosive() = default;
  Explosive(const Explosive&) { throw std::runtime_error("copy"); }
  Explosive& operator=(const Explosive&) = default;
};

// A user codec that may write nothing and declares it.
struct Silent {
  std::string ignored;
};

}  // namespace

template <>
struct pipepool::Codec<Person> {
  static void encode(Writer& writer, const Person& person) {
    pipepool::encode(writer, person.name);
    pipepool::encode(writer, person.scores);
  }
  static Person decode(Reader& reader) {
    Person person;
    person.name = pipepool::decode<std::string>(reader);
    person.scores = pipepool::decode<std::vector<int>>(reader);
    return person;
  }
  static constexpr std::size_t kMinEncodedSize = 16;
};

template <>
struct pipepool::Codec<Liar> {
  static void encode(Writer&, const Liar&) {}
  static Liar decode(Reader& reader) {
    (void)reader.read_trivial<std::uint32_t>();
    return {};
  }
  static constexpr std::size_t kMinEncodedSize = 4;
};

template <>
struct pipepool::Codec<Explosive> {
  static void encode(Writer&, const Explosive&) {}
  static Explosive decode(Reader&) { return {}; }
};

template <>
struct pipepool::Codec<Silent> {
  static void encode(Writer&, const Silent&) {}
  static Silent decode(Reader&) { return {}; }
  static constexpr std::size_t kMinEncodedSize = 0;
};

namespace pipepool {
namespace {

using Nested = std::map<std::string, std::vector<std::optional<std::variant<int, std::string>>>>;

// --- Compile-time checks: what is and is not Encodable, without hard errors. ---

static_assert(Encodable<int>);
static_assert(Encodable<bool>);
static_assert(Encodable<long double>);
static_assert(Encodable<Color>);
static_assert(Encodable<Unit>);
static_assert(Encodable<std::string>);
static_assert(Encodable<std::vector<bool>>);
static_assert(Encodable<std::tuple<>>);
static_assert(Encodable<Nested>);
static_assert(Encodable<Sample>);
static_assert(Encodable<Meters>);
static_assert(Encodable<Person>);
static_assert(Encodable<std::vector<Person>>);
static_assert(!Encodable<std::unique_ptr<int>>);
static_assert(!Encodable<std::shared_ptr<int>>);
static_assert(!Encodable<int*>);
static_assert(!Encodable<const char*>);
static_assert(!Encodable<void>);
static_assert(!Encodable<int&>);
static_assert(!Encodable<int[3]>);
static_assert(!Encodable<NoCodec>);
static_assert(!Encodable<std::string_view>);
static_assert(!Encodable<std::span<const int>>);
static_assert(!Encodable<std::vector<std::unique_ptr<int>>>);
static_assert(!Encodable<std::array<int*, 2>>);
static_assert(!Encodable<std::pair<int, int*>>);
static_assert(!Encodable<std::optional<NoCodec>>);
static_assert(!Encodable<std::variant<int, std::unique_ptr<int>>>);
static_assert(!Encodable<std::map<std::string, NoCodec>>);
static_assert(!Encodable<std::tuple<int, std::unique_ptr<int>>>);

static_assert(min_encoded_size<int>() == 4);
static_assert(min_encoded_size<Unit>() == 0);
static_assert(min_encoded_size<std::tuple<>>() == 0);
static_assert(min_encoded_size<std::pair<int, double>>() == 12);
static_assert(min_encoded_size<std::array<std::int16_t, 3>>() == 6);
static_assert(min_encoded_size<std::variant<Unit, int>>() == 4);
static_assert(min_encoded_size<std::optional<std::string>>() == 1);

template <class T>
T round_trip(const T& value) {
  return decode_from_string<T>(encode_to_string(value));
}

template <class T>
void expect_round_trip(const T& value) {
  EXPECT_EQ(round_trip(value), value);
}

std::string u64_bytes(std::uint64_t value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

std::string u32_bytes(std::uint32_t value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

// Expects decode_from_string<T>(bytes) to throw ProtocolError whose message contains `needle`.
template <class T>
void expect_protocol_error(std::string_view bytes, std::string_view needle) {
  try {
    (void)decode_from_string<T>(bytes);
    ADD_FAILURE() << "decoding " << bytes.size() << " bytes did not throw; expected: " << needle;
  } catch (const ProtocolError& error) {
    EXPECT_NE(std::string_view(error.what()).find(needle), std::string_view::npos)
        << "message: " << error.what() << "\nexpected to contain: " << needle;
  }
}

// Expects encode_to_string(value) to throw ProtocolError whose message contains `needle`.
template <class T>
void expect_protocol_error_on_encode(const T& value, std::string_view needle) {
  try {
    (void)encode_to_string(value);
    ADD_FAILURE() << "encoding did not throw; expected: " << needle;
  } catch (const ProtocolError& error) {
    EXPECT_NE(std::string_view(error.what()).find(needle), std::string_view::npos)
        << "message: " << error.what() << "\nexpected to contain: " << needle;
  }
}

// Every strict prefix of the encoding of `value` must throw ProtocolError, both through
// decode_from_string and through a Reader.
template <class T>
void expect_every_prefix_throws(const T& value) {
  const std::string bytes = encode_to_string(value);
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    const std::string_view prefix(bytes.data(), length);
    EXPECT_THROW((void)decode_from_string<T>(prefix), ProtocolError) << "prefix " << length;
    Reader reader(prefix);
    EXPECT_THROW((void)decode<T>(reader), ProtocolError) << "prefix " << length;
  }
  EXPECT_EQ(decode_from_string<T>(bytes), value);
}

Nested sample_nested() {
  Nested nested;
  nested["empty"] = {};
  nested["mixed"] = {std::nullopt, 42, std::string("forty-two"), std::string(), -1};
  nested[""] = {std::optional<std::variant<int, std::string>>(std::string(300, 'x'))};
  return nested;
}

// --- Round trips. ---

TEST(CodecTest, ArithmeticAndEnumsRoundTripAsRawBytes) {
  expect_round_trip<std::int8_t>(-5);
  expect_round_trip<std::uint8_t>(250);
  expect_round_trip<std::int16_t>(-30000);
  expect_round_trip<std::uint16_t>(65000);
  expect_round_trip<std::int32_t>(std::numeric_limits<std::int32_t>::min());
  expect_round_trip<std::uint32_t>(4000000000U);
  expect_round_trip<std::int64_t>(std::numeric_limits<std::int64_t>::min());
  expect_round_trip<std::uint64_t>(std::numeric_limits<std::uint64_t>::max());
  expect_round_trip<char>('z');
  expect_round_trip<char8_t>(u8'a');
  expect_round_trip<float>(1.5F);
  expect_round_trip<double>(-0.125);
  expect_round_trip<double>(std::numeric_limits<double>::infinity());
  expect_round_trip<long double>(3.25L);
  expect_round_trip(Color::kGreen);
  expect_round_trip(kPlainB);
  EXPECT_EQ(encode_to_string(std::int32_t{7}).size(), 4U);
  EXPECT_EQ(encode_to_string(Color::kRed).size(), 1U);
  EXPECT_EQ(encode_to_string(1.0).size(), 8U);
}

TEST(CodecTest, BoolIsOneValidatedByte) {
  expect_round_trip(true);
  expect_round_trip(false);
  EXPECT_EQ(encode_to_string(true), std::string("\x01", 1));
  expect_protocol_error<bool>(std::string("\x02", 1), "invalid bool byte 2");
}

TEST(CodecTest, UnitAndEmptyTupleEncodeAsNothing) {
  EXPECT_EQ(encode_to_string(Unit{}), "");
  EXPECT_EQ(encode_to_string(std::tuple<>{}), "");
  expect_round_trip(Unit{});
  expect_round_trip(std::tuple<>{});
  expect_protocol_error<Unit>("x", "1 trailing byte(s)");
}

TEST(CodecTest, Strings) {
  expect_round_trip(std::string());
  expect_round_trip(std::string("hello"));
  expect_round_trip(std::string("with\0nul\xff bytes", 16));
  expect_round_trip(std::string(100000, 'q'));
  EXPECT_EQ(encode_to_string(std::string("abc")), u64_bytes(3) + "abc");
}

TEST(CodecTest, Vectors) {
  expect_round_trip(std::vector<int>{});
  expect_round_trip(std::vector<int>{1, -2, 3});
  expect_round_trip(std::vector<double>{0.5, 1e300});
  expect_round_trip(std::vector<std::string>{"", "a", std::string(1000, 'b')});
  expect_round_trip(std::vector<std::vector<int>>{{}, {1}, {2, 3}});
  expect_round_trip(std::vector<Color>{Color::kRed, Color::kGreen});
  expect_round_trip(std::vector<Unit>(5));
  expect_round_trip(std::vector<std::tuple<>>(3));
  expect_round_trip(std::vector<Meters>{Meters(1), Meters(2)});  // element-wise: no default ctor
  EXPECT_EQ(encode_to_string(std::vector<std::int16_t>{1, 2}).size(), 8U + 4U);
  EXPECT_EQ(encode_to_string(std::vector<Unit>(5)).size(), 8U);
}

TEST(CodecTest, VectorOfBoolIsPackedWithZeroPadding) {
  for (std::size_t size : {0, 1, 7, 8, 9, 64, 1001}) {
    std::vector<bool> bits(size);
    for (std::size_t i = 0; i < size; ++i) bits[i] = (i * 7 + 3) % 5 < 2;
    expect_round_trip(bits);
    EXPECT_EQ(encode_to_string(bits).size(), 8 + (size + 7) / 8) << size;
  }
  EXPECT_EQ(encode_to_string(std::vector<bool>{true, false, true}), u64_bytes(3) + "\x05");
  expect_protocol_error<std::vector<bool>>(u64_bytes(3) + "\x0d", "nonzero padding bits");
  expect_protocol_error<std::vector<bool>>(u64_bytes(9) + "\x01", "needs 2 bytes");
}

TEST(CodecTest, Arrays) {
  expect_round_trip(std::array<int, 3>{1, 2, 3});
  expect_round_trip(std::array<int, 0>{});
  expect_round_trip(std::array<std::string, 2>{"x", "yz"});
  expect_round_trip(std::array<bool, 3>{true, false, true});
  expect_round_trip(std::array<std::array<float, 2>, 2>{{{1, 2}, {3, 4}}});
  expect_round_trip(std::array<Meters, 2>{Meters(1.5), Meters(2.5)});
  EXPECT_EQ(encode_to_string(std::array<int, 3>{}).size(), 12U);
  EXPECT_EQ(encode_to_string(std::array<int, 0>{}).size(), 0U);
  expect_protocol_error<std::array<bool, 2>>(std::string("\x01\x03", 2), "invalid bool byte 3");
}

TEST(CodecTest, PairsAndTuples) {
  expect_round_trip(std::pair<int, std::string>{4, "four"});
  expect_round_trip(std::pair<std::vector<int>, bool>{{1, 2}, true});
  expect_round_trip(std::tuple<int>{9});
  expect_round_trip(std::tuple<int, std::string, double, Unit, bool>{1, "s", 2.5, {}, true});
  expect_round_trip(std::tuple<std::tuple<>, std::tuple<int>>{});
}

TEST(CodecTest, Optionals) {
  expect_round_trip(std::optional<int>{});
  expect_round_trip(std::optional<int>{5});
  expect_round_trip(std::optional<std::string>{""});
  expect_round_trip(std::optional<std::optional<int>>{std::optional<int>{}});
  EXPECT_EQ(encode_to_string(std::optional<int>{}), std::string("\0", 1));
  expect_protocol_error<std::optional<int>>(std::string("\x02", 1), "invalid presence byte 2");
}

TEST(CodecTest, Variants) {
  using V = std::variant<int, std::string, Unit, std::vector<int>>;
  expect_round_trip(V{7});
  expect_round_trip(V{std::string("seven")});
  expect_round_trip(V{Unit{}});
  expect_round_trip(V{std::vector<int>{7, 7}});
  using Same = std::variant<int, int>;
  const Same second(std::in_place_index<1>, 5);
  EXPECT_EQ(round_trip(second).index(), 1U);
  EXPECT_EQ(encode_to_string(V{Unit{}}), u32_bytes(2));
  expect_protocol_error<V>(u32_bytes(4), "alternative index 4 out of range");
  expect_protocol_error<V>(u32_bytes(0xFFFFFFFFU), "out of range (the variant has 4 alternatives)");
}

TEST(CodecTest, Maps) {
  expect_round_trip(std::map<int, int>{});
  expect_round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}, {"", 0}});
  expect_round_trip(std::map<int, std::string, std::greater<>>{{1, "x"}, {2, "y"}});
  expect_round_trip(std::unordered_map<std::string, std::vector<int>>{});
  expect_round_trip(std::unordered_map<std::string, std::vector<int>>{{"k", {1}}, {"j", {}}});
  expect_round_trip(std::map<Unit, Unit>{{Unit{}, Unit{}}});
}

TEST(CodecTest, MapWithRepeatedKeyThrows) {
  const std::string bytes =
      u64_bytes(2) + u32_bytes(1) + u32_bytes(10) + u32_bytes(1) + u32_bytes(11);
  expect_protocol_error<std::map<int, int>>(bytes, "repeated key in map");
  expect_protocol_error<std::unordered_map<int, int>>(bytes, "repeated key in unordered_map");
}

TEST(CodecTest, NestedContainers) {
  expect_round_trip(sample_nested());
  expect_round_trip(Nested{});
  expect_round_trip(
      std::vector<std::map<int, std::pair<std::optional<std::string>, std::vector<bool>>>>{
          {}, {{1, {std::nullopt, {true}}}, {2, {"two", {}}}}});
}

TEST(CodecTest, UserCodec) {
  const Person person{"Ada", {1, 2, 3}};
  expect_round_trip(person);
  expect_round_trip(std::vector<Person>{person, Person{
                                                    "",
                                                    {},
                                                }});
  expect_round_trip(std::map<std::string, Person>{{"ada", person}});
  EXPECT_EQ(encode_to_string(person),
            encode_to_string(std::string("Ada")) + encode_to_string(std::vector<int>{1, 2, 3}));
  expect_every_prefix_throws(person);
}

TEST(CodecTest, UserTriviallyCopyableStructIsRawBytes) {
  Sample sample{};  // value-initialised: padding is zero, so the bytes compare equal
  sample.id = 12;
  sample.weight = 0.75;
  sample.tag = {'a', 'b', 'c', 'd', 'e'};
  expect_round_trip(sample);
  EXPECT_EQ(encode_to_string(sample).size(), sizeof(Sample));
  expect_round_trip(std::vector<Sample>(3, sample));
  EXPECT_EQ(encode_to_string(std::vector<Sample>(3, sample)).size(), 8 + 3 * sizeof(Sample));
  expect_round_trip(Meters(4.0));
}

// --- Hostile input. ---

TEST(CodecTest, EveryTruncatedPrefixThrows) {
  expect_every_prefix_throws(std::int64_t{-1});
  expect_every_prefix_throws(true);
  expect_every_prefix_throws(std::string("truncate me"));
  expect_every_prefix_throws(std::vector<int>{1, 2, 3});
  expect_every_prefix_throws(std::vector<std::string>{"a", "", "bc"});
  expect_every_prefix_throws(
      std::vector<bool>{true, false, true, true, false, true, true, true, false, true});
  expect_every_prefix_throws(std::array<std::string, 2>{"p", "q"});
  expect_every_prefix_throws(std::pair<int, std::string>{1, "one"});
  expect_every_prefix_throws(std::tuple<int, std::optional<double>, bool>{1, 2.0, false});
  expect_every_prefix_throws(std::optional<std::string>{"opt"});
  expect_every_prefix_throws(std::variant<int, std::string>{std::string("var")});
  expect_every_prefix_throws(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  expect_every_prefix_throws(std::unordered_map<int, std::string>{{1, "a"}, {2, "b"}});
  expect_every_prefix_throws(std::vector<Unit>(4));
  expect_every_prefix_throws(sample_nested());
}

TEST(CodecTest, TruncationMessageNamesTheInnermostType) {
  std::string strings = encode_to_string(std::vector<std::string>{"abcdef", "gh"});
  strings.pop_back();
  expect_protocol_error<std::vector<std::string>>(
      strings,
      "cannot decode std::string at byte 30: length 2 needs at least 1 byte(s) per "
      "element but only 1 bytes remain");
  using Record = std::tuple<std::string, std::pair<std::int32_t, double>>;
  std::string record = encode_to_string(Record{"r", {1, 2}});
  record.pop_back();
  expect_protocol_error<Record>(record,
                                "cannot decode double at byte 13: truncated input: 8 byte(s) "
                                "needed, 7 remain");
}

TEST(CodecTest, OversizedLengthsThrowBeforeAllocating) {
  const std::string huge = u64_bytes(std::uint64_t{1} << 62);
  expect_protocol_error<std::string>(huge, "length 4611686018427387904 needs at least 1 byte(s)");
  expect_protocol_error<std::string>(huge, "cannot decode std::string at byte 8");
  expect_protocol_error<std::vector<char>>(huge + "abc", "only 3 bytes remain");
  expect_protocol_error<std::vector<double>>(huge, "cannot decode std::vector<double> at byte 8");
  expect_protocol_error<std::vector<std::string>>(huge, "needs at least 8 byte(s) per element");
  expect_protocol_error<std::vector<bool>>(huge, "length 4611686018427387904");
  expect_protocol_error<std::map<int, std::string>>(huge, "needs at least 12 byte(s)");
  expect_protocol_error<std::unordered_map<int, int>>(huge, "needs at least 8 byte(s)");
  expect_protocol_error<Nested>(huge, "length 4611686018427387904");
  expect_protocol_error<std::vector<Unit>>(huge, "elements whose encoding is empty");
  expect_protocol_error<std::vector<std::tuple<>>>(huge, "kMaxZeroByteElements");
  expect_protocol_error<std::vector<bool>>(u64_bytes(std::numeric_limits<std::uint64_t>::max()),
                                           "length 18446744073709551615");
  // An inner length: the outer vector has one element whose string claims 2^62 bytes.
  expect_protocol_error<std::vector<std::string>>(u64_bytes(1) + huge + "xy",
                                                  "cannot decode std::string at byte 16");
  // Via a user codec.
  expect_protocol_error<Person>(huge, "std::string");
}

TEST(CodecTest, ZeroByteElementsShareOneBudgetPerReaderAndWriter) {
  expect_round_trip(std::vector<Unit>(kMaxZeroByteElements));
  const std::vector<std::vector<Unit>> two_halves(2, std::vector<Unit>(kMaxZeroByteElements / 2));
  expect_round_trip(two_halves);
  const std::vector<std::vector<Unit>> too_many(2, std::vector<Unit>(kMaxZeroByteElements / 2 + 1));
  expect_protocol_error_on_encode(too_many, "cannot encode std::vector<pipepool::Unit>");
  // Hand-made input: two inner vectors claiming half the budget plus one each.
  const std::string inner = u64_bytes(kMaxZeroByteElements / 2 + 1);
  expect_protocol_error<std::vector<std::vector<Unit>>>(u64_bytes(2) + inner + inner,
                                                        "kMaxZeroByteElements");
  // A user codec that declares kMinEncodedSize = 0 is under the same budget.
  EXPECT_THROW((void)encode_to_string(std::vector<Silent>(kMaxZeroByteElements + 1)),
               ProtocolError);
  EXPECT_EQ(decode_from_string<std::vector<Silent>>(u64_bytes(3)).size(), 3U);
}

TEST(CodecTest, UserCodecWritingLessThanItsMinimumFailsOnEncode) {
  expect_protocol_error_on_encode(std::vector<Liar>(3), "cannot encode std::vector<");
  expect_protocol_error_on_encode(std::vector<Liar>(3), "kMinEncodedSize (4)");
}

TEST(CodecTest, TrailingBytesThrowInDecodeFromString) {
  expect_protocol_error<int>(encode_to_string(5) + "z", "cannot decode int at byte 4: 1 trailing");
  expect_protocol_error<std::vector<int>>(encode_to_string(std::vector<int>{1}) + "zz",
                                          "2 trailing byte(s)");
  // A Reader leaves trailing bytes to the caller.
  const std::string two = encode_to_string(1) + encode_to_string(std::string("x"));
  Reader reader(two);
  EXPECT_EQ(decode<int>(reader), 1);
  EXPECT_EQ(reader.position(), 4U);
  EXPECT_EQ(reader.remaining(), 9U);
  EXPECT_THROW(reader.expect_end(), ProtocolError);
  EXPECT_EQ(decode<std::string>(reader), "x");
  EXPECT_NO_THROW(reader.expect_end());
}

TEST(CodecTest, ValuelessVariantFailsOnEncode) {
  std::variant<int, Explosive> valueless;
  EXPECT_THROW(valueless = Explosive{}, std::runtime_error);
  ASSERT_TRUE(valueless.valueless_by_exception());
  expect_protocol_error_on_encode(valueless, "valueless_by_exception");
}

TEST(CodecTest, WriterAndReaderPrimitives) {
  std::string buffer = "head";
  Writer writer(buffer);
  writer.write_trivial(std::uint16_t{0x0102});
  writer.write_bytes("xyz", 3);
  writer.write_bytes(nullptr, 0);
  EXPECT_EQ(writer.size(), 9U);
  EXPECT_EQ(&writer.buffer(), &buffer);

  Reader reader(std::string_view(buffer).substr(4));
  EXPECT_EQ(reader.read_trivial<std::uint16_t>(), 0x0102);
  char out[3];
  reader.read_bytes(out, 3);
  EXPECT_EQ(std::string_view(out, 3), "xyz");
  reader.read_bytes(nullptr, 0);
  EXPECT_EQ(reader.remaining(), 0U);
  EXPECT_THROW(reader.read_bytes(out, 1), ProtocolError);
  EXPECT_THROW((void)reader.read_view(1), ProtocolError);
  EXPECT_EQ(reader.position(), 5U);  // a failed read consumes nothing
}

TEST(CodecTest, LargeVectorOfCharUsesTheBulkPath) {
  constexpr std::size_t kSize = std::size_t{64} << 20;
  std::vector<char> big(kSize);
  for (std::size_t i = 0; i < kSize; i += 4093) big[i] = static_cast<char>(i * 31);
  big.back() = 'E';
  const std::string bytes = encode_to_string(big);
  ASSERT_EQ(bytes.size(), 8 + kSize);
  const auto back = decode_from_string<std::vector<char>>(bytes);
  EXPECT_TRUE(back == big);
  std::string truncated = bytes;
  truncated.pop_back();
  EXPECT_THROW((void)decode_from_string<std::vector<char>>(truncated), ProtocolError);
}

}  // namespace
}  // namespace pipepool
