// libFuzzer target: arbitrary bytes into the codec's decoder, for every supported kind of type,
// nested containers and variants included. Input: byte 0 picks the type (kTypes below, modulo
// their number); the rest is decoded as it. Bad bytes must throw pipepool::ProtocolError with a
// message naming the type (anything else thrown, a crash, a sanitizer report or an allocation
// over -malloc_limit_mb is a finding). Bytes that decode must re-encode to bytes that decode to
// the same encoding again (encode . decode is idempotent), except for an unordered_map: its
// encoding follows its bucket order, which depends on how the map was built (two equal maps may
// encode their elements in different orders), so there the re-decoded map must equal the first.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "pipepool/codec.hpp"

namespace {

enum class Colour : uint8_t { Red, Green, Blue };
// No padding: a trivially copyable class is sent as its object bytes, and padding bytes need not
// survive a copy, so a padded struct would fail the idempotence check without any bug.
struct Quote {
  double price;
  int32_t volume;
  int32_t lots;
};
static_assert(sizeof(Quote) == 16);

template <class T>
struct IsUnorderedMap : std::false_type {};
template <class K, class V, class H, class E, class A>
struct IsUnorderedMap<std::unordered_map<K, V, H, E, A>> : std::true_type {};

template <class T>
void round_trip(std::string_view bytes) {
  T value;
  try {
    value = pipepool::decode_from_string<T>(bytes);
  } catch (const pipepool::ProtocolError& e) {
    if (std::string_view(e.what()).find("pipepool: cannot decode") == std::string_view::npos) {
      std::fprintf(stderr, "ProtocolError without the decoder's prefix: %s\n", e.what());
      std::abort();
    }
    return;
  }
  const std::string once = pipepool::encode_to_string(value);
  if constexpr (IsUnorderedMap<T>::value) {
    if (pipepool::decode_from_string<T>(once) != value) {
      std::fprintf(stderr, "decode(encode(decode(x))) != decode(x)\n");
      std::abort();
    }
  } else {
    const std::string twice = pipepool::encode_to_string(pipepool::decode_from_string<T>(once));
    if (once != twice) {
      std::fprintf(stderr, "encode(decode(encode(decode(x)))) != encode(decode(x))\n");
      std::abort();
    }
  }
}

using Nested = std::vector<std::vector<std::variant<int64_t, std::string>>>;
using MapOfOptionals = std::map<int32_t, std::optional<std::vector<std::pair<std::string, bool>>>>;
using VariantOfContainers =
    std::optional<std::variant<std::map<std::string, std::string>, std::vector<bool>, Nested>>;

using Decoder = void (*)(std::string_view);
constexpr Decoder kTypes[] = {
    round_trip<int32_t>,
    round_trip<bool>,
    round_trip<double>,
    round_trip<std::string>,
    round_trip<std::vector<int32_t>>,
    round_trip<std::vector<bool>>,
    round_trip<std::vector<std::string>>,
    round_trip<std::array<uint16_t, 3>>,
    round_trip<std::array<std::string, 2>>,
    round_trip<std::pair<int8_t, std::string>>,
    round_trip<std::tuple<int32_t, std::string, double>>,
    round_trip<std::tuple<>>,
    round_trip<std::optional<std::string>>,
    round_trip<std::variant<int32_t, std::string, std::vector<double>>>,
    round_trip<std::map<std::string, int32_t>>,
    round_trip<std::unordered_map<int32_t, std::vector<std::string>>>,
    round_trip<Nested>,
    round_trip<MapOfOptionals>,
    round_trip<VariantOfContainers>,
    round_trip<std::vector<pipepool::Unit>>,
    round_trip<std::vector<std::tuple<>>>,
    round_trip<std::vector<std::vector<pipepool::Unit>>>,
    round_trip<Colour>,
    round_trip<Quote>,
    round_trip<std::vector<Quote>>,
    round_trip<std::map<Colour, std::vector<std::optional<Quote>>>>,
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t type = data[0] % std::size(kTypes);
  kTypes[type](std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}
